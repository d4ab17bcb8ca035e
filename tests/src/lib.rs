//! Test harness: in-process dopplers and agents on port 0, Firehose collectors, a minimal
//! HTTP client for `/metrics`, the `hydrant` binary for process-level tests, and real
//! third-party servers ([`servers`]) and a headless browser ([`browser`]).
//!
//! Every wait is bounded: helpers poll with a deadline and fail with what they saw.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hydrant::{agent, cell, doppler};
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::subscriber::Subscriber;
use hydrant_proto::transport::Tls;
use hydrant_proto::v2::EgressBatchRequest;
use hydrant_runtime::https::ClientTls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod browser;
#[cfg(test)]
mod e2e;
pub mod guard;
pub mod rsyslog;
pub mod s3;
pub mod servers;

/// Default bound for any wait in the tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// Binds 127.0.0.1:0.
pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback")
}

/// A doppler running in-process.
#[derive(Debug)]
pub struct TestDoppler {
    /// gRPC address.
    pub grpc: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// How to reach the HTTP port when the doppler has certificates (HTTPS).
    pub https: Option<ClientTls>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), doppler::Error>>,
}

impl TestDoppler {
    /// Starts a doppler with `config` on fresh ports.
    pub async fn start(config: doppler::Config) -> TestDoppler {
        let grpc = listener().await;
        TestDoppler::start_on(config, grpc).await
    }

    /// Starts a doppler on an already bound gRPC listener (to restart on the same port).
    pub async fn start_on(config: doppler::Config, grpc: TcpListener) -> TestDoppler {
        let http = listener().await;
        let (g, h) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let https = config.tls.as_ref().map(ClientTls::of);
        let task = tokio::spawn(doppler::run(config, grpc, http, shutdown.clone()));
        wait_healthy_over(h, https.as_ref()).await;
        TestDoppler {
            grpc: g,
            http: h,
            https,
            shutdown,
            task,
        }
    }

    /// Stops gracefully and waits.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("doppler stops")
            .unwrap()
            .unwrap();
    }

    /// The value of a metric sample.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_over(self.http, self.https.as_ref(), name, labels).await
    }
}

/// An agent running in-process.
#[derive(Debug)]
pub struct TestAgent {
    /// gRPC address.
    pub grpc: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// How to reach the HTTP port when the agent has certificates (HTTPS).
    pub https: Option<ClientTls>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), agent::Error>>,
}

impl TestAgent {
    /// Starts an agent forwarding to `dopplers`.
    pub async fn start(mut config: agent::Config, dopplers: &[SocketAddr]) -> TestAgent {
        config.dopplers = dopplers.iter().map(|d| d.to_string()).collect();
        TestAgent::start_with(config).await
    }

    /// Starts an agent forwarding to the dopplers `config` names (addresses or DNS names).
    pub async fn start_with(config: agent::Config) -> TestAgent {
        TestAgent::start_on(listener().await, config).await
    }

    /// Starts an agent whose gRPC port is `grpc` (bound earlier, so that what sends to it
    /// can be started first).
    pub async fn start_on(grpc: TcpListener, config: agent::Config) -> TestAgent {
        let http = listener().await;
        let (g, h) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let https = config.server_tls.as_ref().map(ClientTls::of);
        let task = tokio::spawn(agent::run(config, grpc, http, shutdown.clone()));
        wait_healthy_over(h, https.as_ref()).await;
        TestAgent {
            grpc: g,
            http: h,
            https,
            shutdown,
            task,
        }
    }

    /// Starts a graceful stop without waiting for it.
    pub fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops gracefully (flushing) and waits.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("agent stops")
            .unwrap()
            .unwrap();
    }

    /// The value of a metric sample.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_over(self.http, self.https.as_ref(), name, labels).await
    }
}

/// A cell running in-process, with fast metrics and backoff for tests.
#[derive(Debug)]
pub struct TestCell {
    /// Scheduler API address.
    pub api: SocketAddr,
    /// `http://…` base URL of the API.
    pub url: String,
    /// Where instances live.
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), cell::Error>>,
}

impl TestCell {
    /// Test defaults: metrics every second, restart backoff from 200 ms, 2 s stop grace.
    pub fn config(agent: SocketAddr) -> cell::Config {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hydrant-cell-{}-{n}", std::process::id()));
        let mut c = cell::Config::new(agent.to_string(), dir);
        c.metrics_interval = Duration::from_secs(1);
        c.stop_grace = Duration::from_secs(2);
        c.backoff.base = Duration::from_millis(200);
        c.backoff.max = Duration::from_secs(5);
        c.backoff.startup = Duration::from_millis(300);
        c
    }

    /// Starts a cell.
    pub async fn start(config: cell::Config) -> TestCell {
        let api = listener().await;
        let addr = api.local_addr().unwrap();
        let data_dir = config.data_dir.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(cell::run(config, api, shutdown.clone()));
        wait_healthy(addr).await;
        TestCell {
            api: addr,
            url: format!("http://{addr}"),
            data_dir,
            shutdown,
            task,
        }
    }

    /// A scheduler client.
    pub fn client(&self) -> hydrant::apps::Client {
        hydrant::apps::Client::new(&self.url, None, hydrant_runtime::https::plain_client())
    }

    /// Stops every instance and the cell.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("cell stops")
            .unwrap()
            .unwrap();
    }
}

/// Removes the data dir however the test ends. Instances need no help: each one's group is
/// killed when its cell's end drops the pipe its watcher reads (`cell::process`).
impl Drop for TestCell {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A log cache running in-process.
#[derive(Debug)]
pub struct TestLogCache {
    /// HTTP address.
    pub http: SocketAddr,
    /// `http://…` base URL.
    pub url: String,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), hydrant_logcache::Error>>,
}

impl TestLogCache {
    /// Starts a log cache reading from `dopplers`, and waits until it is subscribed to each.
    pub async fn start(
        config: hydrant_logcache::Config,
        dopplers: &[&TestDoppler],
    ) -> TestLogCache {
        TestLogCache::start_on(listener().await, config, dopplers).await
    }

    /// Starts one on `http` (bound by the caller, e.g. to know a cluster's addresses
    /// first), and waits until it is subscribed to each doppler.
    pub async fn start_on(
        http: TcpListener,
        config: hydrant_logcache::Config,
        dopplers: &[&TestDoppler],
    ) -> TestLogCache {
        let addr = http.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(hydrant_logcache::run(config, http, shutdown.clone()));
        wait_healthy(addr).await;
        for d in dopplers {
            eventually("log cache subscribed", || async {
                d.metric(
                    hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
                    &[("shard_id", "log-cache")],
                )
                .await
                    >= 1.0
            })
            .await;
        }
        TestLogCache {
            http: addr,
            url: format!("http://{addr}"),
            shutdown,
            task,
        }
    }

    /// Stops it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("log cache stops")
            .unwrap()
            .unwrap();
    }
}

/// Envelopes collected by a background Firehose subscriber.
#[derive(Debug, Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<RawEnvelope>>>);

impl Collected {
    /// How many so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Whether none yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of everything so far.
    pub fn all(&self) -> Vec<RawEnvelope> {
        self.0.lock().unwrap().clone()
    }

    /// Per source id, the `seq` tags received (in arrival order).
    pub fn seqs(&self) -> HashMap<String, Vec<u64>> {
        let mut out: HashMap<String, Vec<u64>> = HashMap::new();
        for e in self.0.lock().unwrap().iter() {
            if let Some(seq) = e.tag("seq").and_then(|s| s.parse().ok()) {
                out.entry(e.source_id().to_owned()).or_default().push(seq);
            }
        }
        out
    }
}

/// A running subscriber that collects everything it receives.
#[derive(Debug)]
pub struct Collector {
    /// What arrived.
    pub got: Collected,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), tonic::Status>>,
}

impl Collector {
    /// Subscribes to `doppler` with `request` and collects in the background.
    pub fn start(doppler: SocketAddr, request: EgressBatchRequest, tls: Option<&Tls>) -> Collector {
        let cancel = CancellationToken::new();
        let got = Collected::default();
        let mut sub = Subscriber::new(&doppler.to_string(), tls, request, cancel.clone()).unwrap();
        let sink = got.clone();
        let task = tokio::spawn(async move {
            while let Some(batch) = sub.next().await? {
                sink.0.lock().unwrap().extend(batch.batch);
            }
            Ok(())
        });
        Collector { got, cancel, task }
    }

    /// Stops and returns what arrived, or the status that ended the subscription.
    pub async fn stop(self) -> Result<Collected, tonic::Status> {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("collector stops")
            .unwrap()?;
        Ok(self.got)
    }

    /// Whether the subscription task has ended (e.g. refused).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Polls `check` every 10 ms until it returns true or `WAIT` passes; panics with `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Like [`eventually`] with its own bound, for waits longer than `WAIT` (scaling, real
/// servers starting).
pub async fn eventually_within<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {bound:?} waiting for: {what}");
}

/// Waits until `/healthz` answers.
pub async fn wait_healthy(http: SocketAddr) {
    wait_healthy_over(http, None).await;
}

/// Waits until `/healthz` answers, over HTTPS with `tls`.
pub async fn wait_healthy_over(http: SocketAddr, tls: Option<&ClientTls>) {
    eventually("healthz", || async move {
        get_over(http, tls, "/healthz").await.is_ok()
    })
    .await;
}

/// A GET on loopback, over HTTPS when `tls` is given; returns (status, body).
pub async fn get_over(
    addr: SocketAddr,
    tls: Option<&ClientTls>,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let Some(tls) = tls else {
        return http_get(addr, path).await;
    };
    let client = hydrant_runtime::https::client(tls).map_err(std::io::Error::other)?;
    let resp = client
        .get(format!("https://{addr}{path}"))
        .timeout(WAIT)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(std::io::Error::other)?;
    Ok((status, body))
}

/// A minimal HTTP/1.1 GET on loopback; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Parses Prometheus text into `name{labels}` → value, labels sorted.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        out.insert(series.to_owned(), value.parse().unwrap_or(f64::NAN));
    }
    out
}

/// The value of `name{labels}` scraped from `http` (0 when absent).
pub async fn metric(http: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_over(http, None, name, labels).await
}

/// [`metric`] over HTTPS with `tls`.
pub async fn metric_over(
    http: SocketAddr,
    tls: Option<&ClientTls>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let (_, body) = get_over(http, tls, "/metrics")
        .await
        .expect("scrape /metrics");
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", l.join(","))
    };
    parse_metrics(&body).get(&key).copied().unwrap_or(0.0)
}

/// The `hydrant` binary, built on first use if the test run did not build it.
pub fn hydrant_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/hydrant_e2e-… → target/<profile>/hydrant
        let exe = std::env::current_exe().expect("test exe path");
        let profile_dir = exe
            .parent()
            .and_then(|p| p.parent())
            .expect("target/<profile>");
        let bin = profile_dir.join("hydrant");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "hydrant", "--bin", "hydrant"]);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo build for the hydrant binary");
        assert!(status.success(), "building the hydrant binary failed");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}
