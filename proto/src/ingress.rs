//! A batching `Ingress.BatchSender` client that never blocks its caller.
//!
//! [`IngressClient::send`] puts envelopes into a bounded [`DropQueue`]; one worker per
//! target (a doppler, or an agent) takes whatever is waiting — one envelope under light load,
//! up to [`MAX_BATCH_ENVELOPES`] under heavy load — and writes it to a long-lived
//! `BatchSender` stream. There is no fixed linger: an envelope leaves as soon as a worker is
//! free, so latency stays in the sub-millisecond range when idle and batches grow only when
//! the link is busy. Several targets share the one queue, so a faster or healthier target
//! naturally takes more of the load, and a target that goes away stops taking any while its
//! worker reconnects with exponential backoff. Meanwhile the queue absorbs the backlog up to
//! its bound and then drops the oldest, counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::discovery::{self, Discovery, Resolver};
use crate::queue::{DropQueue, Pushed};
use crate::raw::RawEnvelope;
use crate::transport::{self, Tls};
use crate::{DEFAULT_MAX_MESSAGE_BYTES, envelope};

mod worker;

use worker::Worker;

/// Most envelopes in one batch. Large enough that per-batch costs (HTTP/2 frame, syscall,
/// wakeups) vanish at high rates; small enough that one batch is a short burst for the
/// receiving doppler's subscription buffers.
pub const MAX_BATCH_ENVELOPES: usize = 1000;

/// Most bytes in one batch, well under the 10 MiB message limit of every hop.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Envelopes larger than this can never be forwarded (they would exceed the message limit
/// of the next hop once framed); they are refused at [`IngressClient::send`] and counted.
pub const MAX_ENVELOPE_BYTES: usize = DEFAULT_MAX_MESSAGE_BYTES - 1024;

/// Default bound of the send queue, in envelopes: 100,000 is ~0.2 s of the pipeline's
/// peak rate and ~30 MiB of 200-byte logs — enough to ride out a doppler restart.
pub const DEFAULT_BUFFER_ENVELOPES: usize = 100_000;

/// Default bound of the send queue, in bytes.
pub const DEFAULT_BUFFER_BYTES: usize = 256 * 1024 * 1024;

/// Least time between two batches on one stream while traffic trickles in. An envelope
/// arriving on an idle stream leaves at once; one arriving right after a send waits at most
/// this long, so a stream of single envelopes becomes batches of a millisecond's worth.
pub const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(1);

/// Batches smaller than this count as a trickle and are paced by the batch interval; larger
/// ones mean the link is busy and batching already adapts without waiting.
pub const PACE_BELOW_ENVELOPES: usize = 32;

/// Batches handed to one stream but not yet written by the HTTP/2 layer. Kept tiny: while
/// the stream is busy, envelopes wait in the queue and the next batch grows instead.
const STREAM_QUEUE_BATCHES: usize = 2;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Settings for an [`IngressClient`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses (`host:port` or URIs) to send to; load is spread across all of them.
    pub targets: Vec<String>,
    /// mTLS, or plaintext when `None`.
    pub tls: Option<Tls>,
    /// Queue bound in envelopes.
    pub buffer_envelopes: usize,
    /// Queue bound in bytes.
    pub buffer_bytes: usize,
    /// Concurrent streams per target (more streams use more cores on the receiver).
    pub streams_per_target: usize,
    /// Pacing of small batches (see [`MIN_BATCH_INTERVAL`]); zero sends every envelope as
    /// soon as the stream is free, trading CPU for the lowest latency.
    pub min_batch_interval: Duration,
    /// How a target given as a DNS name is resolved: one set of streams per address it
    /// resolves to, kept current (see [`crate::discovery`]).
    pub discovery: Discovery,
    /// How long written data may go unacknowledged by a target's host before its
    /// connection is given up and the other targets take over (see
    /// [`transport::PEER_ACK_TIMEOUT`]).
    pub peer_ack_timeout: Duration,
}

impl Config {
    /// Defaults for the given targets.
    pub fn new(targets: Vec<String>) -> Config {
        Config {
            targets,
            tls: None,
            buffer_envelopes: DEFAULT_BUFFER_ENVELOPES,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            streams_per_target: 1,
            min_batch_interval: MIN_BATCH_INTERVAL,
            discovery: Discovery::default(),
            peer_ack_timeout: transport::PEER_ACK_TIMEOUT,
        }
    }
}

/// Counters for an [`IngressClient`]; all monotonic except `connected`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Envelopes written to a stream.
    pub sent: AtomicU64,
    /// Batches written to a stream.
    pub batches: AtomicU64,
    /// Envelopes evicted from the full queue.
    pub dropped_overflow: AtomicU64,
    /// Envelopes refused for exceeding [`MAX_ENVELOPE_BYTES`].
    pub dropped_oversize: AtomicU64,
    /// Envelopes still queued when the client was closed and the grace period ran out.
    pub dropped_shutdown: AtomicU64,
    /// Streams (re)established after the first.
    pub reconnects: AtomicU64,
    /// Failed connection attempts and broken streams.
    pub errors: AtomicU64,
    /// Streams currently open.
    pub connected: AtomicI64,
    /// Envelopes written to a stream in the last two ack timeouts before it broke: what
    /// may have been in flight to a host that went away, so possibly lost (an upper bound;
    /// a stream ended by its server also counts).
    pub unconfirmed: AtomicU64,
}

impl Stats {
    /// All envelopes lost by this client so far.
    pub fn dropped(&self) -> u64 {
        self.dropped_overflow.load(Ordering::Relaxed)
            + self.dropped_oversize.load(Ordering::Relaxed)
            + self.dropped_shutdown.load(Ordering::Relaxed)
    }
}

/// A running client; dropping it aborts the workers (use [`close`](Self::close) to flush).
/// It dereferences to its [`Sender`].
#[derive(Debug)]
pub struct IngressClient {
    sender: Sender,
    workers: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
}

/// The cheap, cloneable sending side of an [`IngressClient`].
#[derive(Debug, Clone)]
pub struct Sender {
    queue: Arc<DropQueue<RawEnvelope>>,
    stats: Arc<Stats>,
}

impl std::ops::Deref for IngressClient {
    type Target = Sender;

    fn deref(&self) -> &Sender {
        &self.sender
    }
}

fn weigh(env: &RawEnvelope) -> usize {
    env.bytes().len()
}

/// Starts `streams_per_target` workers sending to `target`.
fn spawn_workers(
    config: &Config,
    target: &str,
    queue: &Arc<DropQueue<RawEnvelope>>,
    stats: &Arc<Stats>,
    cancel: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, transport::Error> {
    let endpoint = transport::endpoint(target, config.tls.as_ref())?;
    Ok((0..config.streams_per_target.max(1))
        .map(|_| {
            let worker = Worker {
                min_batch_interval: config.min_batch_interval,
                peer_ack_timeout: config.peer_ack_timeout,
                target: target.to_owned(),
                endpoint: endpoint.clone(),
                queue: Arc::clone(queue),
                stats: Arc::clone(stats),
                cancel: cancel.clone(),
            };
            tokio::spawn(worker.run())
        })
        .collect())
}

/// Keeps one set of workers per address a name resolves to: starts them for an address
/// that appears, stops them for one that goes. Ends, with its workers, when the queue is
/// closed and drained or `cancel` fires.
async fn follow(
    mut addrs: tokio::sync::watch::Receiver<std::collections::BTreeSet<SocketAddr>>,
    queue: Arc<DropQueue<RawEnvelope>>,
    cancel: CancellationToken,
    spawn: impl Fn(SocketAddr, CancellationToken) -> Result<Vec<JoinHandle<()>>, transport::Error>,
) {
    let mut running = discovery::PerAddress::default();
    loop {
        let current = addrs.borrow_and_update().clone();
        running.update(&current, &cancel, "ingress", &spawn);
        tokio::select! {
            changed = addrs.changed() => if changed.is_err() { break },
            // The queue closes without waking anyone: look every 100 ms.
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if queue.is_closed() && queue.is_empty() { break }
            }
            () = cancel.cancelled() => break,
        }
    }
    for handles in running.into_values() {
        futures::future::join_all(handles).await;
    }
}

impl IngressClient {
    /// Starts the workers. Connections are made in the background; sending works at once.
    ///
    /// # Panics
    /// Must be called inside a tokio runtime.
    pub fn start(config: Config) -> Result<IngressClient, transport::Error> {
        let queue = Arc::new(DropQueue::new(
            config.buffer_envelopes,
            config.buffer_bytes,
            weigh,
        ));
        let stats = Arc::new(Stats::default());
        let cancel = CancellationToken::new();
        let mut workers = Vec::new();
        let mut resolver = None;
        for target in &config.targets {
            if let Some((host, port)) = discovery::dns_name(target) {
                let resolver = match &resolver {
                    Some(r) => Arc::clone(r),
                    None => {
                        let r = Arc::new(
                            Resolver::new(&config.discovery)
                                .map_err(transport::Error::Discovery)?,
                        );
                        resolver = Some(Arc::clone(&r));
                        r
                    }
                };
                let addrs = discovery::watch(
                    resolver,
                    host,
                    port,
                    config.discovery.refresh,
                    cancel.clone(),
                );
                let spawn = {
                    let (config, queue, stats) =
                        (config.clone(), Arc::clone(&queue), Arc::clone(&stats));
                    move |addr: SocketAddr, cancel: CancellationToken| {
                        spawn_workers(&config, &addr.to_string(), &queue, &stats, &cancel)
                    }
                };
                workers.push(tokio::spawn(follow(
                    addrs,
                    Arc::clone(&queue),
                    cancel.clone(),
                    spawn,
                )));
                continue;
            }
            workers.extend(spawn_workers(&config, target, &queue, &stats, &cancel)?);
        }
        Ok(IngressClient {
            sender: Sender { queue, stats },
            workers,
            cancel,
        })
    }

    /// A handle for sending from elsewhere.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Stops accepting envelopes and sends what is queued, waiting at most `grace`; whatever
    /// is still queued or in a worker's hand after that is counted in `dropped_shutdown`
    /// before this returns.
    pub async fn close(mut self, grace: Duration) {
        let queue = &self.sender.queue;
        queue.close();
        let mut workers = std::mem::take(&mut self.workers);
        let all = futures::future::join_all(workers.iter_mut());
        if tokio::time::timeout(grace, all).await.is_err() {
            self.cancel.cancel();
            // Cancelled workers return at once, counting the batch in their hand.
            futures::future::join_all(workers).await;
            self.discard_queued("grace period over, queue discarded");
        }
    }

    /// Closes the queue and counts what is still in it as `dropped_shutdown`.
    fn discard_queued(&self, why: &'static str) {
        let queue = &self.sender.queue;
        queue.close();
        let mut rest = Vec::new();
        queue.try_pop_batch(usize::MAX, usize::MAX, &mut rest);
        if !rest.is_empty() {
            self.sender
                .stats
                .dropped_shutdown
                .fetch_add(rest.len() as u64, Ordering::Relaxed);
            tracing::warn!(lost = rest.len(), "ingress client: {why}");
        }
    }
}

impl Sender {
    /// Queues envelopes for sending. Never blocks; returns what was dropped to make room.
    pub fn send_all(&self, envelopes: impl IntoIterator<Item = RawEnvelope>) -> Pushed {
        let stats = &self.stats;
        let fits = envelopes.into_iter().filter(|e| {
            let ok = e.bytes().len() <= MAX_ENVELOPE_BYTES;
            if !ok {
                stats.dropped_oversize.fetch_add(1, Ordering::Relaxed);
            }
            ok
        });
        let pushed = self.queue.push_all(fits);
        if pushed.dropped > 0 {
            stats
                .dropped_overflow
                .fetch_add(pushed.dropped as u64, Ordering::Relaxed);
        }
        if pushed.refused > 0 {
            stats
                .dropped_shutdown
                .fetch_add(pushed.refused as u64, Ordering::Relaxed);
        }
        pushed
    }

    /// Queues one envelope.
    pub fn send(&self, envelope: RawEnvelope) -> Pushed {
        self.send_all(std::iter::once(envelope))
    }

    /// Queues a prost envelope (encodes it once).
    pub fn send_envelope(&self, envelope: &crate::v2::Envelope) -> Pushed {
        self.send(RawEnvelope::from_envelope(envelope))
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Envelopes waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// Dropping the client (without [`IngressClient::close`], or when a shutdown aborts the
/// close) stops the workers and counts what it still held as `dropped_shutdown`: the queue
/// here, each worker's batch in hand by the worker itself.
impl Drop for IngressClient {
    fn drop(&mut self) {
        self.cancel.cancel();
        for w in &self.workers {
            w.abort();
        }
        self.discard_queued("dropped with envelopes queued");
    }
}

/// Stamps `timestamp` with now when the emitter left it 0, as Loggregator's agent does.
pub fn stamp_if_unset(env: &mut crate::v2::Envelope) {
    if env.timestamp == 0 {
        env.timestamp = envelope::now_nanos();
    }
}
