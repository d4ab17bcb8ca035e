//! One worker of an [`IngressClient`](super::IngressClient): a long-lived `BatchSender`
//! stream to one target, fed from the shared queue. A stream that breaks gives back the
//! batch it had not written and counts what it wrote lately as unconfirmed; the worker
//! reconnects with backoff while the other targets carry the queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{
    BACKOFF_MAX, BACKOFF_MIN, MAX_BATCH_BYTES, MAX_BATCH_ENVELOPES, PACE_BELOW_ENVELOPES,
    STREAM_QUEUE_BATCHES, Stats,
};
use crate::DEFAULT_MAX_MESSAGE_BYTES;
use crate::queue::DropQueue;
use crate::raw::grpc::ingress_client::IngressClient as RawIngressClient;
use crate::raw::{RawBatch, RawEnvelope};
use crate::transport;

/// A batch a worker took from the queue and has not handed to a stream yet. It survives
/// reconnects; if the worker ends still holding it (cancelled, aborted), it is counted as
/// `dropped_shutdown`, never lost silently.
struct InHand {
    batch: Vec<RawEnvelope>,
    stats: Arc<Stats>,
}

impl Drop for InHand {
    fn drop(&mut self) {
        if !self.batch.is_empty() {
            self.stats
                .dropped_shutdown
                .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
        }
    }
}

/// One stream's sender, with its settings from the client's [`Config`](super::Config).
pub(super) struct Worker {
    /// Pacing of small batches.
    pub(super) min_batch_interval: Duration,
    /// `TCP_USER_TIMEOUT` of its connections; also sets the unconfirmed window (twice it).
    pub(super) peer_ack_timeout: Duration,
    /// The target, for logs.
    pub(super) target: String,
    /// Where it connects.
    pub(super) endpoint: tonic::transport::Endpoint,
    /// The client's shared queue.
    pub(super) queue: Arc<DropQueue<RawEnvelope>>,
    /// The client's counters.
    pub(super) stats: Arc<Stats>,
    /// Ends it.
    pub(super) cancel: CancellationToken,
}

/// How a stream ended.
enum Ended {
    /// The queue is closed and drained: the worker is done.
    Drained,
    /// The stream broke or the server ended it: reconnect.
    Broken,
    /// Cancelled.
    Cancelled,
}

impl Worker {
    pub(super) async fn run(self) {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        let mut in_hand = InHand {
            batch: Vec::new(),
            stats: Arc::clone(&self.stats),
        };
        let pending = &mut in_hand.batch;
        loop {
            let channel = tokio::select! {
                c = transport::connect_sender(&self.endpoint, self.peer_ack_timeout) => c,
                () = self.cancel.cancelled() => return,
            };
            let channel = match channel {
                Ok(c) => c,
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    self.give_back(pending);
                    tracing::debug!(target = %self.target, error = %e, "ingress: connect failed");
                    if self.queue.is_closed() && self.queue.is_empty() && pending.is_empty() {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.cancel.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if !first {
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            self.stats.connected.fetch_add(1, Ordering::Relaxed);
            let ended = self.stream(channel, pending, &mut backoff).await;
            self.stats.connected.fetch_sub(1, Ordering::Relaxed);
            match ended {
                Ended::Drained | Ended::Cancelled => return,
                Ended::Broken => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    self.give_back(pending);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.cancel.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// A broken stream: what was written to it lately may be lost.
    fn broken(&self, recent: &mut Recent) -> Ended {
        let n = recent.total();
        if n > 0 {
            self.stats.unconfirmed.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(target = %self.target, unconfirmed = n, "ingress: stream broke with envelopes possibly in flight");
        }
        Ended::Broken
    }

    /// Hands a batch this worker could not send back to the shared queue, first in line,
    /// so a worker of another target sends it while this one reconnects.
    fn give_back(&self, pending: &mut Vec<RawEnvelope>) {
        let evicted = self.queue.give_back(std::mem::take(pending));
        if evicted > 0 {
            self.stats
                .dropped_overflow
                .fetch_add(evicted as u64, Ordering::Relaxed);
        }
    }

    async fn stream(
        &self,
        channel: tonic::transport::Channel,
        pending: &mut Vec<RawEnvelope>,
        backoff: &mut Duration,
    ) -> Ended {
        let mut client = RawIngressClient::new(channel)
            .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel::<RawBatch>(STREAM_QUEUE_BATCHES);
        let mut call = Box::pin(async move { client.batch_sender(ReceiverStream::new(rx)).await });
        let target = &self.target;
        // When the last batch was small (a trickle), and when it was sent.
        let mut last_small_send: Option<tokio::time::Instant> = None;
        let mut recent = Recent::new(2 * self.peer_ack_timeout);
        loop {
            // Pace a trickle: right after a small batch, let envelopes accumulate for up to
            // the batch interval instead of paying a frame and a syscall per envelope. Busy
            // links (large batches), full batches and idle links never wait.
            if let Some(due) = last_small_send.map(|t| t + self.min_batch_interval)
                && tokio::time::Instant::now() < due
                && self.queue.len() < MAX_BATCH_ENVELOPES
            {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    r = &mut call => {
                        tracing::warn!(%target, result = ?r.err(), "ingress: stream ended by server");
                        return self.broken(&mut recent);
                    }
                    () = self.cancel.cancelled() => return Ended::Cancelled,
                }
            }
            if pending.is_empty() {
                tokio::select! {
                    n = self.queue.pop_batch(MAX_BATCH_ENVELOPES, MAX_BATCH_BYTES, pending) => {
                        if n == 0 {
                            // Closed and drained: end the stream cleanly and wait for the
                            // server to acknowledge it, so everything written is delivered.
                            drop(tx);
                            let ack = tokio::time::timeout(Duration::from_secs(5), call).await;
                            if !matches!(ack, Ok(Ok(_))) && !router_eof(&ack) {
                                // What this stream carried is unconfirmed; say so.
                                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%target, result = ?ack, "ingress: final flush not acknowledged");
                            }
                            return Ended::Drained;
                        }
                    }
                    r = &mut call => {
                        tracing::warn!(%target, result = ?r.err(), "ingress: stream ended by server");
                        return self.broken(&mut recent);
                    }
                    () = self.cancel.cancelled() => return Ended::Cancelled,
                }
            }
            // Reserve room first so the batch is only moved once it is certain to be taken:
            // a stream that breaks meanwhile leaves it in `pending` for the next connection.
            tokio::select! {
                permit = tx.reserve() => match permit {
                    Ok(permit) => {
                        let n = pending.len() as u64;
                        permit.send(RawBatch::from(std::mem::take(pending)));
                        last_small_send = (n < PACE_BELOW_ENVELOPES as u64)
                            .then(tokio::time::Instant::now);
                        recent.record(n);
                        self.stats.sent.fetch_add(n, Ordering::Relaxed);
                        self.stats.batches.fetch_add(1, Ordering::Relaxed);
                        *backoff = BACKOFF_MIN;
                    }
                    Err(_) => {
                        tracing::warn!(%target, "ingress: stream closed, reconnecting");
                        return self.broken(&mut recent);
                    }
                },
                r = &mut call => {
                    tracing::warn!(%target, result = ?r.err(), "ingress: stream broken, reconnecting");
                    return self.broken(&mut recent);
                }
                () = self.cancel.cancelled() => return Ended::Cancelled,
            }
        }
    }
}

/// Envelopes written to a stream within the last `window`, in per-batch records.
struct Recent {
    window: Duration,
    sends: std::collections::VecDeque<(tokio::time::Instant, u64)>,
}

impl Recent {
    fn new(window: Duration) -> Recent {
        Recent {
            window,
            sends: std::collections::VecDeque::new(),
        }
    }

    fn record(&mut self, n: u64) {
        let now = tokio::time::Instant::now();
        self.forget_before(now);
        self.sends.push_back((now, n));
    }

    fn forget_before(&mut self, now: tokio::time::Instant) {
        while self
            .sends
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            self.sends.pop_front();
        }
    }

    fn total(&mut self) -> u64 {
        self.forget_before(tokio::time::Instant::now());
        self.sends.iter().map(|(_, n)| n).sum()
    }
}

/// Whether a closed stream's answer is a Loggregator router's acknowledgement: its
/// `BatchSender` reads until the client's end of stream and returns that `io.EOF` as the
/// call's error, which grpc-go sends as `Unknown` "EOF". Everything sent was read.
fn router_eof<T>(ack: &Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> bool {
    matches!(ack, Ok(Err(s)) if s.code() == tonic::Code::Unknown && s.message() == "EOF")
}
