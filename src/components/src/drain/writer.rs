//! One drain: its own bounded queue and its own task, so a slow or dead drain costs its own
//! envelopes (counted) and never slows ingest or another drain.
//!
//! - [`Drain::offer`] queues what the drain wants, never waiting: past
//!   [`DRAIN_BUFFER`] envelopes the oldest are dropped, as Loggregator's per-drain diode.
//! - The task renders RFC 5424 ([`super::rfc5424`]) and writes it: `syslog` and
//!   `syslog-tls` as octet-counted frames on one connection, `https` one POST per message,
//!   `https-batch` POSTs of what arrived within [`HTTPS_BATCH_INTERVAL`], up to
//!   [`HTTPS_BATCH_BYTES`] each (Loggregator's batch writer).
//! - A failed write is retried with backoff from 1 ms, doubling up to [`RETRY_MAX`], at
//!   most [`ATTEMPTS`] times (Loggregator's retry writer), then the batch is dropped and
//!   counted.
//! - Losses reach the app's own log at most once per [`NOTICE_INTERVAL`]: `N messages
//!   lost for application GUID in user provided syslog drain with url URL` (the URL
//!   without user info and query), and so does `Failed to connect to URL`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hydrant_proto::queue::DropQueue;
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::v2::Envelope;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::rfc5424;
use super::url::{DrainUrl, Scheme};

/// Envelopes waiting for one drain by default (Loggregator's per-drain diode holds
/// 10,000).
pub const DRAIN_BUFFER: usize = 10_000;

/// Envelopes rendered and written at once.
const WRITE_BATCH: usize = 500;

/// Dial, write and POST timeout (Loggregator's 10 s).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at one batch before it is dropped (Loggregator's `maxRetries`).
pub const ATTEMPTS: u32 = 22;

/// Longest pause between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(15);

/// Least time between two notices about one drain in its app's log.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a new TLS session is watched for the server's refusal before it is written to.
const TLS_VERDICT: Duration = Duration::from_millis(200);

/// Largest `https-batch` POST body (Loggregator's 512 KiB).
pub const HTTPS_BATCH_BYTES: usize = 512 * 1024;

/// Longest a message waits for more to share its `https-batch` POST (Loggregator's 1 s).
pub const HTTPS_BATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Most envelopes gathered for one round of `https-batch` POSTs.
const HTTPS_BATCH_ENVELOPES: usize = 5_000;

/// Where and how one drain sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The drain.
    pub url: DrainUrl,
    /// The app it drains, or none for an aggregate drain (every app).
    pub app_id: Option<String>,
    /// HOSTNAME for messages without org/space tags.
    pub hostname: String,
    /// CA to trust (PEM; the system's roots when empty).
    pub ca: String,
    /// Client certificate and key (PEM; none when empty).
    pub cert: String,
    /// The certificate's key.
    pub key: String,
}

/// A drain's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages written (a gauge envelope may make several).
    pub sent: AtomicU64,
    /// Envelopes lost: evicted from the queue, or given up after every attempt.
    pub dropped: AtomicU64,
    /// Failed connections and writes.
    pub errors: AtomicU64,
    /// Whether the last write succeeded.
    pub healthy: AtomicBool,
}

/// Sends a notice into the app's log stream (through the agent).
pub type Notify = Arc<dyn Fn(Envelope) + Send + Sync>;

/// A running drain.
pub struct Drain {
    /// Where it sends.
    pub target: Target,
    queue: DropQueue<RawEnvelope>,
    /// Counters.
    pub stats: Stats,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("url", &self.target.url.anonymized())
            .field("app_id", &self.target.app_id)
            .finish_non_exhaustive()
    }
}

impl Drain {
    /// Starts a drain's task; it ends when `cancel` fires or [`Drain::stop`] is called.
    pub fn start(
        target: Target,
        buffer: usize,
        notify: Notify,
        cancel: &CancellationToken,
    ) -> Arc<Drain> {
        let drain = Arc::new(Drain {
            target,
            queue: DropQueue::new(buffer, usize::MAX, |_| 1),
            stats: Stats::default(),
            cancel: cancel.child_token(),
        });
        tokio::spawn(Arc::clone(&drain).run(Arc::clone(&notify)));
        tokio::spawn(Arc::clone(&drain).notice_losses(notify));
        drain
    }

    /// Stops it (a binding that went away); what it still holds is dropped uncounted.
    pub fn stop(&self) {
        self.cancel.cancel();
        self.queue.close();
    }

    /// Queues `env` when the drain wants its kind. Never waits.
    pub fn offer(&self, env: &RawEnvelope) {
        if !self.target.url.data.wants(env.kind()) {
            return;
        }
        let pushed = self.queue.push(env.clone());
        if pushed.dropped > 0 {
            self.stats.dropped.fetch_add(pushed.dropped as u64, Relaxed);
        }
    }

    fn app_label(&self) -> &str {
        self.target.app_id.as_deref().unwrap_or("")
    }

    async fn run(self: Arc<Self>, notify: Notify) {
        let mut out = Output::new(&self.target);
        let options = rfc5424::Options {
            hostname: self.target.hostname.clone(),
            omit_tags: self.target.url.omit_metadata,
        };
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        let mut last_connect_notice: Option<tokio::time::Instant> = None;
        loop {
            batch.clear();
            let n = tokio::select! {
                n = self.queue.pop_batch(WRITE_BATCH, usize::MAX, &mut batch) => n,
                () = self.cancel.cancelled() => return,
            };
            if n == 0 {
                return;
            }
            if self.target.url.scheme == Scheme::HttpsBatch {
                let due = tokio::time::Instant::now() + HTTPS_BATCH_INTERVAL;
                while batch.len() < HTTPS_BATCH_ENVELOPES {
                    tokio::select! {
                        n = self.queue.pop_batch(WRITE_BATCH, usize::MAX, &mut batch) => if n == 0 { break },
                        () = tokio::time::sleep_until(due) => break,
                        () = self.cancel.cancelled() => return,
                    }
                }
            }
            let n = batch.len();
            let messages: Vec<Vec<u8>> = batch
                .iter()
                .flat_map(|raw| rfc5424::messages(&raw.decode(), &options))
                .collect();
            let mut pause = Duration::from_millis(1);
            let mut delivered = false;
            for attempt in 0..ATTEMPTS {
                match out.write(&messages, &self.stats).await {
                    Ok(()) => {
                        delivered = true;
                        break;
                    }
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Relaxed);
                        self.stats.healthy.store(false, Relaxed);
                        let url = self.target.url.anonymized();
                        tracing::warn!(%url, app = self.app_label(), attempt, error = %e, "drain: write failed; retrying in {pause:?}");
                        let due =
                            last_connect_notice.is_none_or(|t| t.elapsed() >= NOTICE_INTERVAL);
                        if e.connect
                            && due
                            && let Some(app) = &self.target.app_id
                        {
                            last_connect_notice = Some(tokio::time::Instant::now());
                            notify(super::app_notice(
                                app,
                                format!("Failed to connect to {url}"),
                            ));
                        }
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = self.cancel.cancelled() => return,
                        }
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                }
            }
            if delivered {
                self.stats.sent.fetch_add(messages.len() as u64, Relaxed);
                self.stats.healthy.store(true, Relaxed);
            } else {
                self.stats.dropped.fetch_add(n as u64, Relaxed);
            }
        }
    }

    /// Tells the app, at most once per [`NOTICE_INTERVAL`], how many envelopes its drain
    /// lost since the last notice (an aggregate drain's losses go to the agent's log).
    async fn notice_losses(self: Arc<Self>, notify: Notify) {
        let mut told = 0;
        let mut tick = tokio::time::interval(NOTICE_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.cancel.cancelled() => return,
            }
            let dropped = self.stats.dropped.load(Relaxed);
            if dropped == told {
                continue;
            }
            let lost = dropped - told;
            told = dropped;
            let url = self.target.url.anonymized();
            match &self.target.app_id {
                Some(app) => {
                    tracing::warn!(%url, %app, lost, "drain: messages lost");
                    notify(super::app_notice(
                        app,
                        format!(
                            "{lost} messages lost for application {app} in user provided syslog drain with url {url}"
                        ),
                    ));
                }
                None => tracing::warn!(%url, lost, "drain: messages lost for aggregate drain"),
            }
        }
    }
}

/// Why a write failed; `connect` when no connection could be made.
#[derive(Debug)]
struct WriteError {
    connect: bool,
    message: String,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn failed(connect: bool, message: impl std::fmt::Display) -> WriteError {
    WriteError {
        connect,
        message: message.to_string(),
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The protocol side of a drain.
enum Output {
    /// `syslog`, `syslog-tls`: one connection, kept.
    Socket {
        target: Target,
        conn: Option<Box<dyn Stream>>,
    },
    /// `https`, `https-batch`.
    Http {
        client: Result<reqwest::Client, String>,
        url: String,
        batched: bool,
    },
}

impl Output {
    fn new(target: &Target) -> Output {
        match target.url.scheme {
            Scheme::Syslog | Scheme::SyslogTls => Output::Socket {
                target: target.clone(),
                conn: None,
            },
            Scheme::Https | Scheme::HttpsBatch => Output::Http {
                client: client_tls(target).and_then(|tls| {
                    hydrant_runtime::https::client_builder(&tls)
                        .and_then(|b| Ok(b.timeout(IO_TIMEOUT).build()?))
                        .map_err(|e| e.to_string())
                }),
                url: target.url.post_url(),
                batched: target.url.scheme == Scheme::HttpsBatch,
            },
        }
    }

    async fn write(&mut self, messages: &[Vec<u8>], stats: &Stats) -> Result<(), WriteError> {
        match self {
            Output::Socket { target, conn } => {
                // A syslog server never writes: anything readable is its close. What was
                // written since may not have been read: counted as an error, and logged.
                if let Some(c) = conn.as_mut() {
                    let mut probe = [0u8; 64];
                    if let Ok(r) = tokio::time::timeout(Duration::ZERO, c.read(&mut probe)).await
                        && matches!(r, Ok(0) | Err(_))
                    {
                        stats.errors.fetch_add(1, Relaxed);
                        tracing::warn!(url = %target.url, "drain: the server closed the connection; reconnecting");
                        *conn = None;
                    }
                }
                if conn.is_none() {
                    *conn = Some(connect(target).await?);
                }
                let mut frames = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
                for m in messages {
                    frames.extend_from_slice(m.len().to_string().as_bytes());
                    frames.push(b' ');
                    frames.extend_from_slice(m);
                }
                let c = conn.as_mut().expect("connected above");
                let written = tokio::time::timeout(IO_TIMEOUT, async {
                    c.write_all(&frames).await?;
                    c.flush().await
                })
                .await;
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        *conn = None;
                        Err(failed(false, e))
                    }
                    Err(_) => {
                        *conn = None;
                        Err(failed(false, "write timed out"))
                    }
                }
            }
            Output::Http {
                client,
                url,
                batched,
            } => {
                let client = client.as_ref().map_err(|e| failed(true, e))?;
                if *batched {
                    for body in batches(messages) {
                        post(client, url, body).await?;
                    }
                } else {
                    for m in messages {
                        post(client, url, m.clone()).await?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Messages concatenated into bodies of at most [`HTTPS_BATCH_BYTES`] (a larger message
/// goes alone).
fn batches(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for m in messages {
        match out.last_mut() {
            Some(last) if last.len() + m.len() <= HTTPS_BATCH_BYTES => last.extend_from_slice(m),
            _ => out.push(m.clone()),
        }
    }
    out
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), WriteError> {
    let r = client
        .post(url)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .map_err(|e| failed(e.is_connect(), without_url(&e)))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(failed(false, format!("POST answered {}", r.status())))
    }
}

/// A reqwest error's text without the URL it carries (which may hold credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "the drain");
    }
    s
}

fn client_tls(target: &Target) -> Result<hydrant_runtime::https::ClientTls, String> {
    Ok(hydrant_runtime::https::ClientTls {
        ca: (!target.ca.is_empty()).then(|| target.ca.clone().into_bytes()),
        identity: (!target.cert.is_empty() && !target.key.is_empty()).then(|| {
            (
                target.cert.clone().into_bytes(),
                target.key.clone().into_bytes(),
            )
        }),
    })
}

async fn connect(target: &Target) -> Result<Box<dyn Stream>, WriteError> {
    let addr = (target.url.host.as_str(), target.url.port);
    let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| failed(true, "connect timed out"))?
        .map_err(|e| failed(true, e))?;
    let _ = tcp.set_nodelay(true);
    if target.url.scheme != Scheme::SyslogTls {
        return Ok(Box::new(tcp));
    }
    let mut config = client_tls(target)
        .and_then(|t| t.rustls().map_err(|e| e.to_string()))
        .map_err(|e| failed(true, e))?;
    config.alpn_protocols.clear();
    let name = rustls::pki_types::ServerName::try_from(target.url.host.clone())
        .map_err(|e| failed(true, e))?;
    let tls = tokio::time::timeout(
        IO_TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| failed(true, "TLS handshake timed out"))?
    .map_err(|e| failed(true, format!("TLS handshake failed: {e}")))?;
    // With TLS 1.3 a server that refuses the client's certificate says so only after the
    // handshake: wait a moment for that, rather than write into a session it will drop.
    let mut tls = tls;
    let mut probe = [0u8; 64];
    match tokio::time::timeout(TLS_VERDICT, tls.read(&mut probe)).await {
        Ok(Ok(0)) => Err(failed(
            true,
            "the server closed the TLS session after the handshake (does it want a client certificate?)",
        )),
        Ok(Err(e)) => Err(failed(
            true,
            format!("the server refused the TLS session: {e}"),
        )),
        _ => Ok(Box::new(tls)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_batches_stay_under_their_size() {
        let m = vec![b'x'; 200 * 1024];
        let bodies = batches(&[m.clone(), m.clone(), m.clone(), vec![b'y'; 600 * 1024]]);
        let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
        assert_eq!(sizes, [400 * 1024, 200 * 1024, 600 * 1024]);
    }
}
