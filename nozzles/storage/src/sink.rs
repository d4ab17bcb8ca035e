//! Forwarding sinks: every stored sample is also sent to other systems. One trait, one
//! [`Forwarder`] per sink: a bounded drop-oldest queue (ingest never waits on a sink),
//! batching, retries with backoff on 5xx, 429 and connection errors, and counters for
//! what was sent, retried and dropped. A sink whose server is down never blocks ingest
//! or the other sinks.
//!
//! - [`remote_write`]: Prometheus remote write 1.0 (protobuf + snappy).
//! - `influx` (feature `influxdb`): InfluxDB v2 line protocol through the `influxdb2` crate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hydrant_proto::queue::DropQueue;
use hydrant_runtime::metrics::Text;
use tokio_util::sync::CancellationToken;

use crate::model::SeriesKey;
use crate::telemetry::names;

#[cfg(feature = "influxdb")]
pub mod influx;
pub mod remote_write;

/// Samples queued per sink; beyond it the oldest are dropped (counted).
pub const QUEUE_SAMPLES: usize = 200_000;

/// Samples per request.
pub const BATCH_SAMPLES: usize = 5_000;

/// Attempts per batch before it is dropped.
pub const MAX_ATTEMPTS: u32 = 6;

/// First retry delay (doubling, up to [`MAX_BACKOFF`]).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One sample to forward.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The series.
    pub key: Arc<SeriesKey>,
    /// Milliseconds since the epoch.
    pub ts: i64,
    /// Value.
    pub value: f64,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Whether trying again may help (5xx, 429, no connection).
    pub retryable: bool,
    /// What happened.
    pub message: String,
}

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination for samples.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// A short name for metrics (`remote_write`, `influxdb`).
    fn name(&self) -> &'static str;
    /// Where it sends (a URL), to tell sinks of one kind apart.
    fn target(&self) -> String;
    /// Sends one batch.
    fn send<'a>(&'a self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SendError>>;
}

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct Stats {
    /// Samples delivered.
    pub sent: AtomicU64,
    /// Samples dropped after the last attempt or a permanent refusal.
    pub failed: AtomicU64,
    /// Attempts retried.
    pub retries: AtomicU64,
    /// Samples still queued (or in a batch being sent) when the stop's grace period ended.
    pub dropped_shutdown: AtomicU64,
    /// The last attempt's error while the sink is failing; cleared by a delivery.
    pub failing: std::sync::Mutex<Option<String>>,
}

impl Stats {
    fn set_failing(&self, error: Option<&str>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = error.map(str::to_owned);
    }
}

impl Forwarder {
    /// Why the sink is failing (its last attempt's error), or `None` while it delivers.
    pub fn failing(&self) -> Option<String> {
        self.stats
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Writes every forwarder's counters into `t`, labelled by sink and target.
pub fn render(forwarders: &[Forwarder], t: &mut Text) {
    for f in forwarders {
        let (sink, target) = (("sink", f.name), ("target", f.target.as_str()));
        for (result, n) in [
            ("sent", f.stats.sent.load(Relaxed)),
            ("failed", f.stats.failed.load(Relaxed)),
            ("overflow", f.overflowed()),
            ("shutdown", f.stats.dropped_shutdown.load(Relaxed)),
        ] {
            let labels = [sink, target, ("result", result)];
            t.sample(names::SINK_SAMPLES, &labels, n as f64);
        }
        let retries = f.stats.retries.load(Relaxed) as f64;
        t.sample(names::SINK_RETRIES, &[sink, target], retries);
        t.sample(names::SINK_QUEUE, &[sink, target], f.queued() as f64);
    }
}

/// A sink with its queue and delivery task.
#[derive(Debug)]
pub struct Forwarder {
    /// The sink's name.
    pub name: &'static str,
    /// Its target.
    pub target: String,
    queue: Arc<DropQueue<Sample>>,
    /// Counters.
    pub stats: Arc<Stats>,
}

impl Forwarder {
    /// The forwarder and its delivery task, which the caller runs: it delivers until
    /// `cancel`, then drains what is queued (retries cut short) and ends. Whatever is left
    /// when the task is dropped (a stop's grace period over) is counted as
    /// `dropped_shutdown`.
    pub fn new(
        sink: Arc<dyn Sink>,
        cancel: CancellationToken,
    ) -> (Forwarder, impl Future<Output = ()> + Send + 'static) {
        let queue = Arc::new(DropQueue::new(QUEUE_SAMPLES, usize::MAX, |_: &Sample| 1));
        let stats = Arc::new(Stats::default());
        let delivery = deliver(
            Arc::clone(&sink),
            Arc::clone(&queue),
            Arc::clone(&stats),
            cancel,
        );
        let forwarder = Forwarder {
            name: sink.name(),
            target: sink.target(),
            queue,
            stats,
        };
        (forwarder, delivery)
    }

    /// Queues samples without waiting. Samples refused because the forwarder has stopped
    /// are counted as `dropped_shutdown`.
    pub fn push(&self, samples: impl IntoIterator<Item = Sample>) {
        let pushed = self.queue.push_all(samples);
        if pushed.refused > 0 {
            self.stats
                .dropped_shutdown
                .fetch_add(pushed.refused as u64, Relaxed);
        }
    }

    /// Samples waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Samples evicted from a full queue.
    pub fn overflowed(&self) -> u64 {
        self.queue.dropped()
    }
}

/// Counts what a delivery task still holds when it ends early (dropped by a stop).
struct Leftover {
    queue: Arc<DropQueue<Sample>>,
    stats: Arc<Stats>,
    batch: Vec<Sample>,
}

impl Drop for Leftover {
    fn drop(&mut self) {
        self.queue.close();
        let mut rest = std::mem::take(&mut self.batch);
        self.queue.try_pop_batch(usize::MAX, usize::MAX, &mut rest);
        if !rest.is_empty() {
            self.stats
                .dropped_shutdown
                .fetch_add(rest.len() as u64, Relaxed);
        }
    }
}

async fn deliver(
    sink: Arc<dyn Sink>,
    queue: Arc<DropQueue<Sample>>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) {
    let mut held = Leftover {
        queue: Arc::clone(&queue),
        stats: Arc::clone(&stats),
        batch: Vec::with_capacity(BATCH_SAMPLES),
    };
    let batch = &mut held.batch;
    loop {
        batch.clear();
        let n = tokio::select! {
            n = queue.pop_batch(BATCH_SAMPLES, usize::MAX, batch) => n,
            () = cancel.cancelled() => {
                queue.close();
                queue.try_pop_batch(BATCH_SAMPLES, usize::MAX, batch)
            }
        };
        if n == 0 {
            return;
        }
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            match sink.send(batch).await {
                Ok(()) => {
                    stats.sent.fetch_add(n as u64, Relaxed);
                    stats.set_failing(None);
                    break;
                }
                Err(e) if e.retryable && attempt < MAX_ATTEMPTS && !cancel.is_cancelled() => {
                    stats.retries.fetch_add(1, Relaxed);
                    stats.set_failing(Some(&e.message));
                    tracing::debug!(sink = sink.name(), error = %e.message, attempt, "retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = cancel.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    stats.failed.fetch_add(n as u64, Relaxed);
                    stats.set_failing(Some(&e.message));
                    tracing::warn!(sink = sink.name(), error = %e.message, samples = n, "dropping a batch");
                    break;
                }
            }
        }
        if cancel.is_cancelled() && queue.is_empty() {
            return;
        }
    }
}

/// Maps an HTTP status to a send result.
pub(crate) fn status(code: u16, body: &str) -> Result<(), SendError> {
    if (200..300).contains(&code) {
        return Ok(());
    }
    Err(SendError {
        retryable: code >= 500 || code == 429,
        message: format!(
            "HTTP {code}: {}",
            body.chars().take(300).collect::<String>()
        ),
    })
}
