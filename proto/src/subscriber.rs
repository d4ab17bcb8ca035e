//! A Firehose subscriber (`Egress.BatchedReceiver`) that reconnects with backoff.
//!
//! Nozzles call [`Subscriber::next`] in a loop. A broken or refused connection is retried
//! with exponential backoff (counted, see [`Subscriber::take_reconnects`]); an answer that retrying
//! cannot fix (`InvalidArgument`, `Unauthenticated`, `PermissionDenied`, `Unimplemented`)
//! is returned as an error instead, so a misconfigured nozzle fails loudly.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};

use crate::DEFAULT_MAX_MESSAGE_BYTES;
use crate::raw::RawBatch;
use crate::raw::grpc::egress_client::EgressClient;
use crate::transport::{self, Tls};
use crate::v2::{self, EgressBatchRequest, Selector, selector::Message as Sel};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Selector constructors.
pub mod select {
    use super::*;

    fn of(source_id: &str, message: Sel) -> Selector {
        Selector {
            source_id: source_id.to_owned(),
            message: Some(message),
        }
    }
    /// Logs (of `source_id`, or of every source when empty).
    pub fn log(source_id: &str) -> Selector {
        of(source_id, Sel::Log(v2::LogSelector {}))
    }
    /// Counters, optionally only the one named `name` (empty: all).
    pub fn counter(source_id: &str, name: &str) -> Selector {
        of(
            source_id,
            Sel::Counter(v2::CounterSelector {
                name: name.to_owned(),
            }),
        )
    }
    /// Gauges carrying every one of `names` (empty: all gauges).
    pub fn gauge(source_id: &str, names: &[&str]) -> Selector {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        of(source_id, Sel::Gauge(v2::GaugeSelector { names }))
    }
    /// Timers.
    pub fn timer(source_id: &str) -> Selector {
        of(source_id, Sel::Timer(v2::TimerSelector {}))
    }
    /// Events.
    pub fn event(source_id: &str) -> Selector {
        of(source_id, Sel::Event(v2::EventSelector {}))
    }
    /// One selector per envelope type: everything from `source_id` (or everything at all).
    pub fn all(source_id: &str) -> Vec<Selector> {
        vec![
            log(source_id),
            counter(source_id, ""),
            gauge(source_id, &[]),
            timer(source_id),
            event(source_id),
        ]
    }
}

/// Reserved `deterministic_name`: members of a shard group that set it (or a name starting
/// with it and `:`, e.g. `hydrant:source-id:autoscaler-0`, which also orders the members)
/// receive every envelope of a given source id, of every kind, on the same member:
/// `crc64(source_id) % members`. Loggregator's own `deterministic_name` hashes metric names,
/// which scatters one app over all members; stateful per-app consumers such as the
/// autoscaler need all of an app's metrics in one place. Clients that never send this
/// value see no change.
pub const SOURCE_AFFINITY: &str = "hydrant:source-id";

/// The member of `members` (in name order) that [`SOURCE_AFFINITY`] sends `source_id` to:
/// `crc64(source_id) % members`, with Go's `crc64.ECMA` checksum as Loggregator computes
/// it. A log cache cluster owns sources by the same function, so with every node
/// subscribed each source arrives where it is kept.
pub fn source_member(source_id: &str, members: usize) -> usize {
    (crc64(source_id) % members.max(1) as u64) as usize
}

/// Go's `crc64.Checksum(s, crc64.MakeTable(crc64.ECMA))`.
pub fn crc64(s: &str) -> u64 {
    const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
    CRC.checksum(s.as_bytes())
}

/// A subscription request with the given shard id and selectors.
pub fn request(shard_id: &str, selectors: Vec<Selector>) -> EgressBatchRequest {
    EgressBatchRequest {
        shard_id: shard_id.to_owned(),
        selectors,
        ..EgressBatchRequest::default()
    }
}

/// A reconnecting Firehose subscription.
#[derive(Debug)]
pub struct Subscriber {
    addr: String,
    endpoint: tonic::transport::Endpoint,
    request: EgressBatchRequest,
    stream: Option<Streaming<RawBatch>>,
    backoff: Duration,
    connected_once: bool,
    cancel: CancellationToken,
    /// Streams re-established after the first and not yet taken by
    /// [`take_reconnects`](Self::take_reconnects).
    reconnects: u64,
    /// Why the last attempt to connect failed, if it did.
    last_error: Option<Status>,
}

fn permanent(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::Unimplemented
    )
}

impl Subscriber {
    /// A subscriber to the doppler at `addr`; it connects on the first [`next`](Self::next).
    /// It stops (returns `Ok(None)`) when `cancel` fires.
    pub fn new(
        addr: &str,
        tls: Option<&Tls>,
        request: EgressBatchRequest,
        cancel: CancellationToken,
    ) -> Result<Subscriber, transport::Error> {
        Ok(Subscriber {
            addr: addr.to_owned(),
            endpoint: transport::endpoint(addr, tls)?,
            request,
            stream: None,
            backoff: BACKOFF_MIN,
            connected_once: false,
            cancel,
            reconnects: 0,
            last_error: None,
        })
    }

    /// Whether a stream was ever established.
    pub fn connected_once(&self) -> bool {
        self.connected_once
    }

    /// Why the last attempt to connect failed (cleared by a success).
    pub fn last_error(&self) -> Option<&Status> {
        self.last_error.as_ref()
    }

    /// Connects now instead of on the first [`next`](Self::next), so the doppler has
    /// registered the subscription when this returns `Ok`. A failure to connect is left for
    /// `next` to retry; only a permanent refusal is returned.
    pub async fn connect_now(&mut self) -> Result<(), Status> {
        if self.stream.is_some() {
            return Ok(());
        }
        match self.connect().await {
            Ok(stream) => {
                self.connected_once = true;
                self.stream = Some(stream);
                Ok(())
            }
            Err(status) if permanent(&status) => Err(status),
            Err(_) => Ok(()),
        }
    }

    /// Streams re-established since the last call (for adding to a counter).
    pub fn take_reconnects(&mut self) -> u64 {
        std::mem::take(&mut self.reconnects)
    }

    /// The next batch; `Ok(None)` once cancelled; `Err` for a permanent refusal.
    pub async fn next(&mut self) -> Result<Option<RawBatch>, Status> {
        loop {
            if self.cancel.is_cancelled() {
                return Ok(None);
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.connect().await {
                    Ok(stream) => {
                        if self.connected_once {
                            self.reconnects += 1;
                        }
                        self.connected_once = true;
                        self.last_error = None;
                        self.stream = Some(stream);
                    }
                    Err(status) if permanent(&status) => return Err(status),
                    Err(status) if status.code() == Code::Cancelled => {}
                    Err(status) => {
                        // Said once per new reason until a stream is up, then quietly.
                        let new =
                            self.last_error.as_ref().map(Status::message) != Some(status.message());
                        if new && !self.connected_once {
                            tracing::warn!(addr = %self.addr, error = %status.message(), "firehose: cannot connect; retrying");
                        } else {
                            tracing::debug!(addr = %self.addr, %status, "firehose: connect failed");
                        }
                        self.last_error = Some(status);
                        self.pause().await;
                    }
                }
                continue;
            };
            let message = tokio::select! {
                m = stream.message() => m,
                () = self.cancel.cancelled() => return Ok(None),
            };
            match message {
                Ok(Some(batch)) => {
                    self.backoff = BACKOFF_MIN;
                    return Ok(Some(batch));
                }
                Ok(None) => {
                    tracing::info!(addr = %self.addr, "firehose: stream ended by server; reconnecting");
                    self.stream = None;
                }
                Err(status) if permanent(&status) => return Err(status),
                Err(status) => {
                    tracing::warn!(addr = %self.addr, %status, "firehose: stream broken; reconnecting");
                    self.stream = None;
                    self.pause().await;
                }
            }
        }
    }

    async fn connect(&self) -> Result<Streaming<RawBatch>, Status> {
        let channel = tokio::select! {
            c = self.endpoint.connect() => c.map_err(|e| Status::unavailable(e.to_string()))?,
            () = self.cancel.cancelled() => return Err(Status::cancelled("shutting down")),
        };
        let mut client = EgressClient::new(channel)
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES);
        Ok(client
            .batched_receiver(self.request.clone())
            .await?
            .into_inner())
    }

    async fn pause(&mut self) {
        tokio::select! {
            () = tokio::time::sleep(self.backoff) => {}
            () = self.cancel.cancelled() => {}
        }
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}
