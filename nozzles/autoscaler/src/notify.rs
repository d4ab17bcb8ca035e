//! Alert delivery to Alertmanager's v2 API and to a webhook, off the tick path: the tick
//! loop hands changes to a bounded queue (drops counted) and one task sends them, retrying
//! with backoff.
//!
//! As Prometheus does: only firing and resolved alerts are sent; firing alerts are re-sent
//! every [`RESEND_INTERVAL`] with `endsAt` = now + 4 × that interval, so Alertmanager
//! resolves them by itself if the autoscaler goes away; a resolved alert is sent once with
//! `endsAt` = the time it resolved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hydrant_runtime::instrument::{Family, Gauge};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alert::Transition;
use crate::engine::Time;
use crate::fleet::AlertChange;
use crate::telemetry::names;

/// Alert changes queued for delivery; beyond it changes are dropped and counted.
pub const ALERT_QUEUE_CAPACITY: usize = 4096;

/// Firing alerts are re-sent this often (Prometheus' `resend_delay` is 1 m).
pub const RESEND_INTERVAL: Duration = Duration::from_secs(60);

/// Attempts per delivery (backoff 250 ms, doubling).
pub const MAX_ATTEMPTS: u32 = 5;

/// The `alertname` label.
pub const ALERT_NAME: &str = "HydrantScalingRule";

/// Where alerts go.
#[derive(Debug, Clone, Default)]
pub struct Receivers {
    /// Alertmanager base URLs (each gets every alert, as Prometheus sends to all).
    pub alertmanagers: Vec<String>,
    /// Webhook URL (Alertmanager's webhook payload shape).
    pub webhook: Option<String>,
    /// This autoscaler's URL, for `generatorURL`.
    pub external_url: String,
}

hydrant_runtime::labels! {
    /// Where an alert delivery went and how it ended: the labels of
    /// `alert_notifications_total`.
    pub enum Delivery {
        /// Alertmanager took it.
        AlertmanagerOk => [("receiver", "alertmanager"), ("result", "ok")],
        /// Alertmanager did not take it after every attempt.
        AlertmanagerFailed => [("receiver", "alertmanager"), ("result", "failed")],
        /// The webhook took it.
        WebhookOk => [("receiver", "webhook"), ("result", "ok")],
        /// The webhook did not take it after every attempt.
        WebhookFailed => [("receiver", "webhook"), ("result", "failed")],
        /// Dropped because the queue was full.
        Dropped => [("receiver", "any"), ("result", "dropped")],
    }
}

hydrant_runtime::instruments! {
    /// Delivery counters.
    pub struct Stats {
        /// Alerts firing now.
        pub firing: Gauge = names::ALERTS_FIRING,
        /// Deliveries, by receiver and result.
        pub deliveries: Family<Delivery> = names::ALERT_NOTIFICATIONS,
    }
}

/// The sending half; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<AlertChange>,
    /// Counters.
    pub stats: Arc<Stats>,
}

impl Notifier {
    /// The notifier and its delivery task, which the caller runs; the task ends when
    /// `cancel` fires, after sending what was queued by then.
    pub fn new(
        receivers: Receivers,
        cancel: CancellationToken,
    ) -> (Notifier, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(ALERT_QUEUE_CAPACITY);
        let stats = Arc::new(Stats::default());
        let delivery = deliver(receivers, rx, Arc::clone(&stats), cancel);
        (Notifier { tx, stats }, delivery)
    }

    /// Queues a change without waiting.
    pub fn send(&self, change: AlertChange) {
        if self.tx.try_send(change).is_err() {
            self.stats.deliveries.inc(Delivery::Dropped);
        }
    }
}

fn rfc3339(t: Time) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The Alertmanager v2 `postableAlert` for a change.
pub fn postable(c: &AlertChange, external_url: &str, now: Time) -> Value {
    let resolved = c.transition == Transition::Resolved;
    let ends = if resolved {
        c.at
    } else {
        now + 4 * RESEND_INTERVAL.as_secs() as Time
    };
    let value = c
        .value
        .map_or_else(|| "no data".to_owned(), |v| v.to_string());
    json!({
        "labels": {
            "alertname": ALERT_NAME,
            "app": c.app,
            "app_id": c.target,
            "rule": c.rule.to_string(),
            "metric": c.metric,
            "adjustment": c.adjustment,
            "severity": "warning",
        },
        "annotations": {
            "summary": format!("{}: {}", c.app, c.summary),
            "description": format!("{} is {value}; rule {} ({}) of {}", c.metric, c.rule, c.adjustment, c.app),
        },
        "startsAt": rfc3339(c.since),
        "endsAt": rfc3339(ends),
        "generatorURL": format!("{}/v1/apps/{}/explain", external_url.trim_end_matches('/'), c.app),
    })
}

async fn post(http: &reqwest::Client, url: &str, body: &Value, cancel: &CancellationToken) -> bool {
    let mut backoff = Duration::from_millis(250);
    for attempt in 1..=MAX_ATTEMPTS {
        match http.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(%url, status = %r.status(), "alert refused; not retrying");
                return false;
            }
            Ok(r) => tracing::debug!(%url, status = %r.status(), attempt, "alert delivery failed"),
            Err(e) => tracing::debug!(%url, error = %e, attempt, "alert delivery failed"),
        }
        if attempt < MAX_ATTEMPTS {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = cancel.cancelled() => return false,
            }
            backoff *= 2;
        }
    }
    tracing::warn!(%url, "alert delivery failed after {MAX_ATTEMPTS} attempts");
    false
}

fn now() -> Time {
    chrono::Utc::now().timestamp()
}

async fn deliver(
    receivers: Receivers,
    mut rx: mpsc::Receiver<AlertChange>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) {
    let http = hydrant_runtime::https::plain_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| hydrant_runtime::https::plain_client());
    // Firing alerts by (app, rule), for re-sending.
    let mut firing: BTreeMap<(String, usize), AlertChange> = BTreeMap::new();
    let mut resend = tokio::time::interval(RESEND_INTERVAL);
    resend.tick().await;
    loop {
        let batch: Vec<AlertChange> = tokio::select! {
            () = cancel.cancelled() => {
                // The last changes (a policy removed at the end, a resolution) still go out.
                let mut last = Vec::new();
                while let Ok(c) = rx.try_recv() {
                    last.push(c);
                }
                if last.is_empty() {
                    return;
                }
                rx.close();
                last
            }
            c = rx.recv() => match c {
                Some(c) => {
                    let mut batch = vec![c];
                    while let Ok(c) = rx.try_recv() {
                        batch.push(c);
                    }
                    batch
                }
                None => return,
            },
            _ = resend.tick() => firing.values().cloned().collect(),
        };
        let mut send = Vec::new();
        for c in batch {
            let key = (c.app.clone(), c.rule);
            match c.transition {
                Transition::Firing => {
                    firing.insert(key, c.clone());
                }
                Transition::Resolved => {
                    firing.remove(&key);
                }
                Transition::Pending | Transition::Reset => continue,
            }
            send.push(c);
        }
        stats
            .firing
            .set(i64::try_from(firing.len()).unwrap_or(i64::MAX));
        if send.is_empty() {
            continue;
        }
        let t = now();
        let alerts: Vec<Value> = send
            .iter()
            .map(|c| postable(c, &receivers.external_url, t))
            .collect();
        let body = Value::Array(alerts.clone());
        for am in &receivers.alertmanagers {
            let url = format!("{}/api/v2/alerts", am.trim_end_matches('/'));
            let ok = post(&http, &url, &body, &cancel).await;
            stats.deliveries.inc(if ok {
                Delivery::AlertmanagerOk
            } else {
                Delivery::AlertmanagerFailed
            });
        }
        if let Some(url) = &receivers.webhook {
            let payload = webhook_payload(&send, alerts, &receivers.external_url);
            let ok = post(&http, url, &payload, &cancel).await;
            stats.deliveries.inc(if ok {
                Delivery::WebhookOk
            } else {
                Delivery::WebhookFailed
            });
        }
    }
}

/// Alertmanager's webhook payload (version 4) for a batch.
fn webhook_payload(changes: &[AlertChange], alerts: Vec<Value>, external_url: &str) -> Value {
    let status_of = |c: &AlertChange| {
        if c.transition == Transition::Resolved {
            "resolved"
        } else {
            "firing"
        }
    };
    let alerts: Vec<Value> = changes
        .iter()
        .zip(alerts)
        .map(|(c, mut a)| {
            a["status"] = json!(status_of(c));
            let fp = a["labels"].as_object().map(fingerprint).unwrap_or_default();
            a["fingerprint"] = json!(fp);
            a
        })
        .collect();
    let status = if changes.iter().any(|c| status_of(c) == "firing") {
        "firing"
    } else {
        "resolved"
    };
    let common = |field: &str| -> Map<String, Value> {
        let mut maps = alerts.iter().filter_map(|a| a[field].as_object());
        let Some(first) = maps.next() else {
            return Map::new();
        };
        let mut common = first.clone();
        for m in maps {
            common.retain(|k, v| m.get(k) == Some(v));
        }
        common
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{ALERT_NAME}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "hydrant-autoscaler",
        "groupLabels": { "alertname": ALERT_NAME },
        "commonLabels": common("labels"),
        "commonAnnotations": common("annotations"),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

/// An alert's fingerprint as Alertmanager computes it (Prometheus' label-set signature):
/// FNV-1a over the labels sorted by name, each name and value followed by a 0xff byte, in
/// 16 hex digits.
pub fn fingerprint(labels: &Map<String, Value>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut names: Vec<&String> = labels.keys().collect();
    names.sort();
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for name in names {
        add(name.as_bytes());
        add(&[0xff]);
        add(labels[name].as_str().unwrap_or_default().as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}
