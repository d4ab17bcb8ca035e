//! The autoscaler's two loops: ticks (evaluate every app, carry out the effects) and the
//! refresh of instance counts from the platform.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Autoscaler, Error, ScaleResult, unix_now};
use crate::alert::Transition;
use crate::fleet::Effect;

/// Every `every`: one tick of the fleet, and its effects carried out (scale calls as
/// tasks, alerts to the notifier, records kept and emitted).
pub(super) async fn ticks(
    scaler: Arc<Autoscaler>,
    every: Duration,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = cancel.cancelled() => return Ok(()),
        }
        let now = unix_now();
        let started = Instant::now();
        let effects = scaler.fleet().tick(now);
        let took = started.elapsed();
        scaler.stats.ticks.inc();
        scaler.stats.tick.set(took);
        scaler.emit_app_counters();
        for effect in effects {
            match effect {
                Effect::Scale(req) => {
                    let s = Arc::clone(&scaler);
                    scaler.scale_calls.spawn(async move {
                        let scaler = s;
                        let result = if scaler.shadow {
                            scaler.stats.scale_calls.inc(ScaleResult::Shadow);
                            Ok("shadow mode: not carried out".to_owned())
                        } else {
                            let r = scaler.actuator.scale(&req).await.map_err(|e| e.to_string());
                            let c = if r.is_ok() { ScaleResult::Ok } else { ScaleResult::Error };
                            scaler.stats.scale_calls.inc(c);
                            r
                        };
                        if let Err(e) = &result {
                            tracing::warn!(app = %req.app, error = %e, "scale failed");
                        }
                        let record = scaler.fleet().completed(&req.app, result, unix_now());
                        if let Some(record) = record {
                            tracing::info!(app = %record.app, from = record.old_instances, to = record.new_instances, status = record.status.label(), reason = %record.reason, "scaling decision");
                            scaler.count(&record);
                            scaler.keep(&record, true);
                            scaler.emit_record(&record);
                        }
                    });
                }
                Effect::Alert(change) => {
                    if matches!(change.transition, Transition::Firing | Transition::Resolved) {
                        scaler.keep_alerts();
                    }
                    scaler.emit_alert(&change);
                    scaler.notifier.send(change);
                }
                Effect::Recorded(record) => {
                    scaler.count(&record);
                    scaler.keep(&record, false);
                    scaler.emit_record(&record);
                }
            }
        }
    }
}

/// Every `every`: the instance counts the platform reports, into the fleet.
pub(super) async fn refresh(
    scaler: Arc<Autoscaler>,
    every: Duration,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = cancel.cancelled() => return Ok(()),
        }
        match scaler.actuator.list().await {
            Ok(Some(apps)) => {
                let mut fleet = scaler.fleet();
                for a in apps {
                    fleet.set_instances(&a.id, &a.name, a.instances);
                }
            }
            Ok(None) => {}
            Err(e) => {
                scaler.stats.list_errors.inc();
                tracing::warn!(error = %e, "cannot read instance counts");
            }
        }
    }
}
