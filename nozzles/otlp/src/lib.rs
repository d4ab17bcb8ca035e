//! The OTLP export nozzle: reads the Firehose (shard id `otlp-export`) and sends its logs
//! and metrics to an OpenTelemetry endpoint (an OpenTelemetry Collector, any OTLP/HTTP
//! backend) as `POST {endpoint}/v1/logs` and `/v1/metrics`, protobuf, in Loggregator's
//! mapping ([`hydrant_proto::otlp::export`]).
//!
//! The same rules as every sink: envelopes wait in a bounded drop-oldest queue
//! ([`QUEUE_ENVELOPES`]), so a slow endpoint costs this nozzle's envelopes (counted) and
//! never the doppler's; a failed request is retried with backoff ([`RETRY_MIN`] doubling
//! to [`RETRY_MAX`]) up to [`ATTEMPTS`] times, then its envelopes are dropped and counted;
//! an answer the endpoint will not change its mind about (4xx other than 408 and 429) is
//! not retried; a partial success's rejected records are counted too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hydrant_proto::otlp::export;
use hydrant_proto::queue::DropQueue;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::subscriber::{request, select};
use hydrant_runtime::access::Access;
use hydrant_runtime::admin::Observe;
use hydrant_runtime::lifecycle::{Lifecycle, Phase};
use hydrant_runtime::metrics::Text;
use hydrant_runtime::{nozzle, selfmetrics};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod telemetry;

use telemetry::{METRICS, names};

/// The Firehose shard id: exporters share it and split the stream.
pub const SHARD_ID: &str = "otlp-export";

/// Envelopes waiting to be exported; beyond it the oldest are dropped (counted).
pub const QUEUE_ENVELOPES: usize = 100_000;

/// Envelopes per export round (each round is at most one logs and one metrics request).
pub const BATCH_ENVELOPES: usize = 2_000;

/// Longest an envelope waits for its round to fill.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Attempts at one request before its envelopes are dropped.
pub const ATTEMPTS: u32 = 5;

/// First pause between attempts.
pub const RETRY_MIN: Duration = Duration::from_millis(500);

/// Longest pause between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Timeout of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of an exporter.
#[derive(Debug, Clone)]
pub struct Config {
    /// The dopplers it reads.
    pub source: nozzle::Source,
    /// OTLP/HTTP base URL (`http://collector:4318`).
    pub endpoint: String,
    /// Extra headers on every request (`authorization`, an API key).
    pub headers: Vec<(String, String)>,
    /// The HTTP client (TLS settings for the endpoint).
    pub http: reqwest::Client,
    /// Who may read `/metrics`.
    pub access: Access,
    /// Where its own metrics go.
    pub self_metrics: Option<selfmetrics::SelfMetrics>,
    /// Time to flush on stop.
    pub grace: Duration,
}

/// Errors running an exporter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A doppler refused the subscription.
    #[error("otlp export: {0}")]
    Refused(#[from] nozzle::Refused),
    /// The HTTP server failed.
    #[error("otlp export: {0}")]
    Io(#[from] std::io::Error),
    /// A doppler address or TLS setting is unusable.
    #[error("otlp export: {0}")]
    Transport(#[from] hydrant_proto::transport::Error),
}

#[derive(Debug, Default)]
struct Stats {
    received: AtomicU64,
    sent_logs: AtomicU64,
    sent_points: AtomicU64,
    overflow: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    unsupported: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
}

struct Exporter {
    queue: DropQueue<RawEnvelope>,
    stats: Stats,
}

impl nozzle::Handler for Exporter {
    async fn batch(&self, batch: RawBatch) {
        let envelopes = batch.batch;
        self.stats
            .received
            .fetch_add(envelopes.len() as u64, Relaxed);
        let pushed = self.queue.push_all(envelopes);
        self.stats
            .overflow
            .fetch_add(pushed.dropped as u64, Relaxed);
    }

    fn reconnected(&self, n: u64) {
        self.stats.reconnects.fetch_add(n, Relaxed);
    }
}

/// Why a request failed, and whether another attempt may succeed.
struct Failure {
    retry: bool,
    message: String,
}

/// Sends one protobuf body to `path`; the number of records the endpoint rejected.
async fn post(config: &Config, path: &str, body: Vec<u8>) -> Result<i64, Failure> {
    let url = format!("{}{path}", config.endpoint.trim_end_matches('/'));
    let mut req = config
        .http
        .post(&url)
        .timeout(REQUEST_TIMEOUT)
        .header("content-type", "application/x-protobuf")
        .body(body);
    for (k, v) in &config.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let r = req.send().await.map_err(|e| Failure {
        retry: true,
        message: format!("{url}: {e}"),
    })?;
    let status = r.status();
    let bytes = r.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let code = status.as_u16();
        return Err(Failure {
            retry: code == 408 || code == 429 || code >= 500,
            message: format!(
                "{url}: {status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        });
    }
    // A partial success names how many records it did not take.
    let rejected = if path == "/v1/logs" {
        hydrant_proto::otlp::logs_service::ExportLogsServiceResponse::decode(&bytes[..])
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_log_records)
    } else {
        hydrant_proto::otlp::metrics_service::ExportMetricsServiceResponse::decode(&bytes[..])
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_data_points)
    };
    Ok(rejected)
}

/// Sends with retries, counting the items sent, rejected, or failed after the last attempt.
async fn deliver(
    config: &Config,
    stats: &Stats,
    path: &str,
    body: Vec<u8>,
    items: u64,
    cancel: &CancellationToken,
) {
    let mut pause = RETRY_MIN;
    for attempt in 1..=ATTEMPTS {
        match post(config, path, body.clone()).await {
            Ok(rejected) => {
                let rejected = u64::try_from(rejected).unwrap_or(0).min(items);
                stats.rejected.fetch_add(rejected, Relaxed);
                let counter = if path == "/v1/logs" {
                    &stats.sent_logs
                } else {
                    &stats.sent_points
                };
                counter.fetch_add(items - rejected, Relaxed);
                return;
            }
            Err(f) => {
                stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(attempt, error = %f.message, "otlp export: request failed");
                if !f.retry || attempt == ATTEMPTS {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = cancel.cancelled() => break,
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
    stats.failed.fetch_add(items, Relaxed);
}

/// Exports what the queue holds, round by round, until it is closed and empty.
async fn send_loop(config: Arc<Config>, exporter: Arc<Exporter>, cancel: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH_ENVELOPES);
    loop {
        batch.clear();
        if exporter
            .queue
            .pop_batch(BATCH_ENVELOPES, usize::MAX, &mut batch)
            .await
            == 0
        {
            return;
        }
        let due = tokio::time::Instant::now() + BATCH_INTERVAL;
        while batch.len() < BATCH_ENVELOPES && !exporter.queue.is_closed() {
            tokio::select! {
                n = exporter.queue.pop_batch(BATCH_ENVELOPES - batch.len(), usize::MAX, &mut batch) => if n == 0 { break },
                () = tokio::time::sleep_until(due) => break,
            }
        }
        let envelopes: Vec<_> = batch.iter().map(RawEnvelope::decode).collect();
        let now = u64::try_from(hydrant_proto::envelope::now_nanos()).unwrap_or(0);
        let out = export::export(&envelopes, now);
        let stats = &exporter.stats;
        stats.unsupported.fetch_add(out.skipped as u64, Relaxed);
        let requests = [
            ("/v1/logs", out.log_records, out.logs.encode_to_vec()),
            ("/v1/metrics", out.points, out.metrics.encode_to_vec()),
        ];
        for (path, items, body) in requests {
            if items > 0 {
                deliver(&config, stats, path, body, items as u64, &cancel).await;
            }
        }
    }
}

struct Observed {
    exporter: Arc<Exporter>,
}

impl Observe for Observed {
    fn metrics(&self) -> String {
        let s = &self.exporter.stats;
        let mut t = Text::new(METRICS);
        t.sample(names::RECEIVED, &[], s.received.load(Relaxed) as f64);
        t.sample(
            names::SENT,
            &[("signal", "logs")],
            s.sent_logs.load(Relaxed) as f64,
        );
        t.sample(
            names::SENT,
            &[("signal", "metrics")],
            s.sent_points.load(Relaxed) as f64,
        );
        for (reason, n) in [
            ("overflow", &s.overflow),
            ("failed", &s.failed),
            ("rejected", &s.rejected),
            ("unsupported", &s.unsupported),
        ] {
            t.sample(
                names::DROPPED,
                &[("reason", reason)],
                n.load(Relaxed) as f64,
            );
        }
        t.sample(names::ERRORS, &[], s.errors.load(Relaxed) as f64);
        t.sample(names::QUEUED, &[], self.exporter.queue.len() as f64);
        t.sample(names::RECONNECTS, &[], s.reconnects.load(Relaxed) as f64);
        t.finish()
    }

    fn health(&self) -> (bool, serde_json::Value) {
        (
            true,
            serde_json::json!({
                "component": "otlp-export",
                "status": "ok",
                "queued": self.exporter.queue.len(),
            }),
        )
    }
}

/// Runs an exporter: its subscriptions, its sender, `/metrics` and `/healthz` on `http`.
/// On stop the subscriptions end, then what is queued is sent within the grace period.
pub async fn run(
    config: Config,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut life: Lifecycle<Error> = Lifecycle::new("otlp-export", config.grace);
    let exporter = Arc::new(Exporter {
        queue: DropQueue::new(QUEUE_ENVELOPES, usize::MAX, |_| 1),
        stats: Stats::default(),
    });
    let req = request(SHARD_ID, select::all(""));
    nozzle::subscribe(&mut life, &config.source, &req, &exporter)?;
    let config = Arc::new(config);
    let cancel = life.token(Phase::Serve);
    let sender = tokio::spawn(send_loop(
        Arc::clone(&config),
        Arc::clone(&exporter),
        cancel,
    ));
    let closing = Arc::clone(&exporter);
    life.on_stop(Phase::Flush, "export queued envelopes", async move {
        closing.queue.close();
        let _ = sender.await;
        Ok(())
    });
    let observe: Arc<dyn Observe> = Arc::new(Observed {
        exporter: Arc::clone(&exporter),
    });
    selfmetrics::register(
        &mut life,
        Arc::clone(&observe),
        config.self_metrics.as_ref(),
    )?;
    let router = hydrant_runtime::access::Guard::new(
        config.access.clone(),
        hydrant_runtime::access::reads_and_writes,
    )
    .wrap(hydrant_runtime::admin::router(observe));
    let tls = hydrant_runtime::https::server_tls(config.source.tls.as_ref())
        .map_err(std::io::Error::from)?;
    hydrant_runtime::admin::spawn(&mut life, http, router, tls);
    life.run(shutdown).await?;
    Ok(())
}
