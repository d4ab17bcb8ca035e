//! Loggregator v1 ingress, so a foundation can swap components one at a time: the
//! doppler serves `plumbing.DopplerIngestor/Pusher` (what a loggregator-agent sends to its
//! routers), and the agent reads dropsonde UDP datagrams (what legacy emitters send to
//! their local agent, port 3457). Both convert each envelope to v2 as Loggregator does
//! (`hydrant_proto::v1`) and hand it to the same [`Sink`] as v2 ingress.
//!
//! As Loggregator's router, a Pusher stream outlives a bad payload (it is counted as
//! `malformed` and skipped): a loggregator-agent never reads its stream's answer, and a
//! stream ended early only fails its next write. As the agent, a datagram is one envelope;
//! one without a `source_id` tag gets its origin, and one without deployment, job, index or
//! ip gets the agent's tag of that name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::v1::{self, events, plumbing};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::inbound::{Sink, drain};
use crate::status::Reason;

/// Where Loggregator's agents take dropsonde datagrams.
pub const DEFAULT_UDP: &str = "127.0.0.1:3457";

/// The largest datagram read (Loggregator's agent reads 65,535 bytes).
pub const MAX_DATAGRAM: usize = 65_535;

/// Datagrams read without waiting and handed on as one batch.
const DATAGRAMS_PER_BATCH: usize = 256;

/// `plumbing.DopplerIngestor` over a [`Sink`].
#[derive(Debug)]
pub struct PusherService<S> {
    /// Receives every converted envelope.
    pub sink: Arc<S>,
    /// Fires when the component stops taking data.
    pub stop: CancellationToken,
}

/// Decodes and converts one v1 envelope, counting a refusal.
fn convert<S: Sink>(
    sink: &S,
    bytes: &[u8],
    fill: impl FnOnce(&mut events::Envelope),
) -> Option<RawEnvelope> {
    match v1::decode(bytes) {
        Ok(mut e) => {
            fill(&mut e);
            Some(RawEnvelope::from_envelope(&v1::to_v2(&e)))
        }
        Err(why) => {
            sink.rejected().inc(Reason::Malformed);
            tracing::debug!(%why, "v1 envelope refused");
            None
        }
    }
}

#[tonic::async_trait]
impl<S: Sink> plumbing::doppler_ingestor_server::DopplerIngestor for PusherService<S> {
    async fn pusher(
        &self,
        request: Request<Streaming<plumbing::EnvelopeData>>,
    ) -> Result<Response<plumbing::PushResponse>, Status> {
        let s = &self.sink;
        drain(
            request.into_inner(),
            &self.stop,
            s.open_streams(),
            s.rejected(),
            |data: plumbing::EnvelopeData| {
                if let Some(e) = convert(s.as_ref(), &data.payload, |_| {}) {
                    s.accept(vec![e]);
                }
            },
        )
        .await?;
        Ok(Response::new(plumbing::PushResponse {}))
    }
}

/// The Pusher service for `sink`, with `max_message_bytes` on both directions.
pub fn pusher_server<S: Sink>(
    sink: Arc<S>,
    stop: CancellationToken,
    max_message_bytes: usize,
) -> plumbing::doppler_ingestor_server::DopplerIngestorServer<PusherService<S>> {
    plumbing::doppler_ingestor_server::DopplerIngestorServer::new(PusherService { sink, stop })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// What the agent fills into a dropsonde envelope (its loggregator-agent's `Tagger`):
/// deployment, job, index and ip from its own tags of those names, where the envelope has
/// none.
#[derive(Debug, Clone, Default)]
pub struct Tagger {
    deployment: Option<String>,
    job: Option<String>,
    index: Option<String>,
    ip: Option<String>,
}

impl Tagger {
    /// From the agent's tags.
    pub fn new(tags: &BTreeMap<String, String>) -> Tagger {
        Tagger {
            deployment: tags.get("deployment").cloned(),
            job: tags.get("job").cloned(),
            index: tags.get("index").cloned(),
            ip: tags.get("ip").cloned(),
        }
    }

    fn fill(&self, e: &mut events::Envelope) {
        // The agent's event unmarshaller: no source_id tag (or an empty one) is the origin.
        if e.tags.get("source_id").is_none_or(String::is_empty) {
            e.tags.insert("source_id".into(), e.origin().to_owned());
        }
        for (field, value) in [
            (&mut e.deployment, &self.deployment),
            (&mut e.job, &self.job),
            (&mut e.index, &self.index),
            (&mut e.ip, &self.ip),
        ] {
            if field.is_none() {
                field.clone_from(value);
            }
        }
    }
}

/// Reads dropsonde datagrams from `socket` until `stop`, one envelope each, and hands
/// them to `sink` in batches of what has arrived.
pub async fn serve_udp<S: Sink>(
    socket: UdpSocket,
    sink: Arc<S>,
    tagger: Tagger,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let first = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            () = stop.cancelled() => return,
        };
        let mut batch = Vec::new();
        let mut take = |r: std::io::Result<(usize, SocketAddr)>, buf: &[u8]| match r {
            Ok((n, _)) => {
                if let Some(e) = convert(sink.as_ref(), &buf[..n], |e| tagger.fill(e)) {
                    batch.push(e);
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => {
                tracing::warn!(error = %e, "agent: reading a dropsonde datagram failed");
                false
            }
        };
        if take(first, &buf) {
            for _ in 1..DATAGRAMS_PER_BATCH {
                let r = socket.try_recv_from(&mut buf);
                if !take(r, &buf) {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            sink.accept(batch);
        }
    }
}
