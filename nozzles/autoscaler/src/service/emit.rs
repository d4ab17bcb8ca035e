//! What the autoscaler sends back into the Firehose: each decision and alert change as a
//! log line (`[AUTOSCALER/0]`) and an event, and per-app metrics: scales carried out
//! (every tick, zeros included) and the time from breach to scale.

use hydrant_proto::envelope;
use hydrant_proto::v2;

use super::{Autoscaler, SOURCE_TYPE};
use crate::alert::Transition;
use crate::fleet::AlertChange;
use crate::history::{self, Record};
use crate::telemetry::names;

/// The `direction` label of the per-app scale counters, by index in `app_totals`.
const DIRECTIONS: [&str; 2] = ["out", "in"];

impl Autoscaler {
    /// Sends a log line and an event about `record` into the Firehose.
    pub(super) fn emit_record(&self, record: &Record) {
        if self.emitter.is_none() {
            return;
        }
        let what = match record.status {
            history::Status::Succeeded => format!(
                "Scaled app {} from {} to {} instances",
                record.app, record.old_instances, record.new_instances
            ),
            history::Status::Failed => format!(
                "Failed to scale app {} from {} to {} instances",
                record.app, record.old_instances, record.new_instances
            ),
            _ => format!("Scaling app {} ignored", record.app),
        };
        let mut line = format!("{what}: {}", record.reason);
        for extra in [&record.message, &record.error] {
            if !extra.is_empty() {
                line.push_str(&format!("; {extra}"));
            }
        }
        let body = serde_json::to_string(record).unwrap_or_default();
        self.emit_record_metrics(record);
        self.emit(
            &record.app_id,
            &record.app,
            &line,
            record.status == history::Status::Failed,
            &what,
            body,
        );
    }

    /// Counts a carried-out scale for the per-app counters and, for a dynamic scale, sends
    /// the time from the start of the breach to the scale.
    fn emit_record_metrics(&self, record: &Record) {
        let Some(client) = &self.emitter else { return };
        if record.status != history::Status::Succeeded
            || record.new_instances == record.old_instances
        {
            return;
        }
        let direction = usize::from(record.new_instances < record.old_instances);
        self.app_totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(record.app_id.clone())
            .or_default()[direction] += 1;
        let since = record.window.as_ref().and_then(|w| w.breaching_since);
        if let (history::ScalingType::Dynamic, Some(since)) = (record.scaling_type, since) {
            let seconds = (record.timestamp / 1_000_000_000 - since).max(0) as f64;
            let mut gauge = envelope::gauge(
                &record.app_id,
                [(names::APP_BREACH_TO_SCALE, seconds, "seconds")],
            );
            gauge.instance_id = "0".into();
            gauge.tags.insert("app_name".into(), record.app.clone());
            client.send_envelope(&gauge);
        }
    }

    /// Sends every managed app's scale counters (zeros included, so the first scale is an
    /// increase a query can see).
    pub(super) fn emit_app_counters(&self) {
        let Some(client) = &self.emitter else { return };
        let apps: Vec<(String, String)> = self
            .fleet()
            .apps()
            .iter()
            .filter_map(|(name, m)| m.guid.clone().map(|g| (g, name.clone())))
            .collect();
        let totals = self.app_totals.lock().unwrap_or_else(|p| p.into_inner());
        for (guid, name) in apps {
            let counts = totals.get(&guid).copied().unwrap_or_default();
            for (direction, total) in DIRECTIONS.into_iter().zip(counts) {
                let mut e = envelope::counter(&guid, names::APP_SCALINGS, 0);
                if let Some(v2::envelope::Message::Counter(c)) = &mut e.message {
                    c.total = total;
                }
                e.instance_id = "0".into();
                e.tags.insert("app_name".into(), name.clone());
                e.tags.insert("direction".into(), direction.into());
                client.send_envelope(&e);
            }
        }
    }

    pub(super) fn emit_alert(&self, c: &AlertChange) {
        if self.emitter.is_none() || c.transition == Transition::Reset {
            return;
        }
        let state = match c.transition {
            Transition::Pending => "pending",
            Transition::Firing => "firing",
            _ => "resolved",
        };
        let value = c
            .value
            .map_or_else(|| "no data".to_owned(), |v| v.to_string());
        let line = format!(
            "Alert {state}: {} (rule {}, {}; {} is {value})",
            c.summary, c.rule, c.adjustment, c.metric
        );
        let title = format!("Alert {state}: {}", c.summary);
        let body = crate::notify::postable(c, "", c.at).to_string();
        self.emit(&c.target, &c.app, &line, false, &title, body);
    }

    /// Sends the refused policy files' errors into the Firehose (an error line and an
    /// event from the autoscaler itself), so they show where operators look.
    pub(super) fn emit_policy_problems(&self) {
        let problems = self
            .policy_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if problems.is_empty() {
            return;
        }
        let line = format!("Policy files refused: {}", problems.join("; "));
        let body = serde_json::json!({ "problems": problems }).to_string();
        self.emit("autoscaler", "", &line, true, "Policy files refused", body);
    }

    fn emit(&self, source_id: &str, app: &str, line: &str, err: bool, title: &str, body: String) {
        let Some(client) = &self.emitter else { return };
        let tag = |mut e: v2::Envelope| {
            e.instance_id = "0".into();
            e.tags.insert("source_type".into(), SOURCE_TYPE.into());
            e.tags.insert("app_name".into(), app.into());
            e.tags.insert("origin".into(), "hydrant-autoscaler".into());
            e
        };
        client.send_envelope(&tag(envelope::log(source_id, line.to_owned(), err)));
        client.send_envelope(&tag(envelope::event(source_id, title, body)));
    }
}
