//! `hydrant emit`: a load generator speaking `Ingress.BatchSender`.
//!
//! Every envelope carries a tag `seq` numbered per source id from 0, and a timestamp taken
//! just before it is sent, so `hydrant firehose --stats` can audit loss, duplicates and
//! latency. Sources are spread over the streams so each source's sequence stays ordered.
//! Sending applies backpressure (the emitter waits for the stream), so the emitter itself
//! never drops: whatever is lost, is lost downstream.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES;
use hydrant_proto::envelope::now_nanos;
use hydrant_proto::raw::grpc::ingress_client::IngressClient;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::transport::{self, Tls};
use hydrant_proto::v2::{self, Envelope, envelope::Message};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Envelopes per batch when the rate is unlimited.
pub const UNPACED_BATCH: usize = 500;

/// Batches queued towards one stream before the generator waits.
const STREAM_QUEUE_BATCHES: usize = 4;

/// What to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmitKind {
    /// Log lines of `--payload-bytes`.
    Log,
    /// Gauges of `--metrics` metrics.
    Gauge,
    /// Counter increments.
    Counter,
    /// `http` timers.
    Timer,
    /// All four in rotation.
    Mixed,
}

/// Load generator settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Agent or doppler address.
    pub to: String,
    /// Envelopes to send in total.
    pub count: u64,
    /// Envelopes per second in total; `None` sends as fast as the receiver takes them.
    pub rate: Option<f64>,
    /// Distinct source ids (`emit-0` … `emit-{K-1}`).
    pub sources: usize,
    /// Log payload size.
    pub payload_bytes: usize,
    /// Envelope kind.
    pub kind: EmitKind,
    /// Concurrent streams.
    pub streams: usize,
    /// Metrics per gauge envelope.
    pub metrics: usize,
    /// Leave out the `seq` tag, so envelopes of a source share identical tags as real app
    /// logs do (no loss audit then).
    pub no_seq: bool,
}

/// The one-line result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Envelopes sent and acknowledged by the end of their stream.
    pub sent: u64,
    /// Wall time.
    pub seconds: f64,
    /// `sent / seconds`.
    pub rate: f64,
}

/// Errors while emitting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad address or TLS.
    #[error(transparent)]
    Transport(#[from] transport::Error),
    /// Could not connect.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The receiver refused or broke the stream.
    #[error("stream to {addr} failed: {status}")]
    Stream {
        /// The address.
        addr: String,
        /// The gRPC status.
        status: tonic::Status,
    },
}

/// The metric names of an emitted gauge: a cell's container metrics, then numbered ones.
const GAUGE_NAMES: [&str; 5] = ["cpu", "memory", "disk", "memory_quota", "disk_quota"];

/// A gauge of `n` metrics (one: `value`) all holding `value`.
fn gauge(n: usize, value: f64) -> v2::Gauge {
    let mut g = v2::Gauge::default();
    for i in 0..n {
        let name = match (n, GAUGE_NAMES.get(i)) {
            (1, _) => "value".to_owned(),
            (_, Some(name)) => (*name).to_owned(),
            _ => format!("metric_{i}"),
        };
        g.metrics.insert(
            name,
            v2::GaugeValue {
                unit: "count".into(),
                value,
            },
        );
    }
    g
}

/// Builds the envelopes of one source.
#[derive(Debug)]
struct Source {
    template: Envelope,
    seq: u64,
    shape: Shape,
    /// A log line's payload.
    payload: Bytes,
    /// The gauge encoded once, when nothing but its time and values change (no `seq`).
    encoded: Option<Encoded>,
}

/// Bits no emitted value has, marking where each value goes in [`Encoded::body`].
const VALUE_MARK: u64 = 0x7ff4_a5a5_5a5a_0000;

/// An envelope encoded once without its timestamp, with where its gauge values sit: each
/// envelope is the timestamp field, then a copy of the body with the values written in.
/// The generator then costs little next to what it measures.
#[derive(Debug)]
struct Encoded {
    body: Vec<u8>,
    values: Vec<usize>,
}

impl Encoded {
    fn new(template: &Envelope) -> Option<Encoded> {
        let mut env = template.clone();
        env.timestamp = 0; // left out of the encoding
        let Some(Message::Gauge(g)) = &mut env.message else {
            return None;
        };
        for (i, v) in g.metrics.values_mut().enumerate() {
            v.value = f64::from_bits(VALUE_MARK + i as u64);
        }
        let n = g.metrics.len() as u64;
        let body = env.encode_to_vec();
        let values = (0..n)
            .map(|i| {
                let mark = (VALUE_MARK + i).to_le_bytes();
                body.windows(8).position(|w| w == mark)
            })
            .collect::<Option<Vec<usize>>>()?;
        Some(Encoded { body, values })
    }

    fn envelope(&self, timestamp: i64, value: f64, buf: &mut BytesMut) -> RawEnvelope {
        buf.reserve(1 + 10 + self.body.len());
        prost::encoding::encode_key(1, prost::encoding::WireType::Varint, buf);
        prost::encoding::encode_varint(timestamp as u64, buf);
        let start = buf.len();
        buf.extend_from_slice(&self.body);
        for &at in &self.values {
            buf[start + at..start + at + 8].copy_from_slice(&value.to_le_bytes());
        }
        RawEnvelope::parse(buf.split().freeze()).expect("a prost encoding with values written in")
    }
}

impl Source {
    fn new(id: String, shape: Shape, payload: &Bytes) -> Source {
        let message = match shape.kind {
            EmitKind::Log | EmitKind::Mixed => Message::Log(v2::Log {
                payload: payload.clone(),
                r#type: v2::log::Type::Out as i32,
            }),
            EmitKind::Gauge => Message::Gauge(gauge(shape.metrics, 0.0)),
            EmitKind::Counter => Message::Counter(v2::Counter::default()),
            EmitKind::Timer => Message::Timer(v2::Timer::default()),
        };
        let mut template = Envelope {
            source_id: id,
            instance_id: "0".into(),
            ..Envelope::default()
        };
        template.message = Some(message);
        if shape.seq {
            template.tags.insert("seq".into(), String::new());
        }
        let encoded = match shape.kind {
            EmitKind::Gauge if !shape.seq => Encoded::new(&template),
            _ => None,
        };
        Source {
            template,
            seq: 0,
            shape,
            payload: payload.clone(),
            encoded,
        }
    }

    fn next(&mut self, buf: &mut BytesMut) -> RawEnvelope {
        let now = now_nanos();
        let seq = self.seq;
        self.seq += 1;
        if let Some(encoded) = &self.encoded {
            return encoded.envelope(now, seq as f64, buf);
        }
        let env = &mut self.template;
        env.timestamp = now;
        if let Some(slot) = env.tags.get_mut("seq") {
            slot.clear();
            use std::fmt::Write as _;
            let _ = write!(slot, "{seq}");
        }
        let kind = match self.shape.kind {
            EmitKind::Mixed => [
                EmitKind::Log,
                EmitKind::Gauge,
                EmitKind::Counter,
                EmitKind::Timer,
            ][(seq % 4) as usize],
            k => k,
        };
        env.message = Some(match kind {
            // The gauge is kept from one envelope to the next, its values updated.
            EmitKind::Gauge => match env.message.take() {
                Some(Message::Gauge(mut g)) => {
                    for v in g.metrics.values_mut() {
                        v.value = seq as f64;
                    }
                    Message::Gauge(g)
                }
                _ => Message::Gauge(gauge(self.shape.metrics, seq as f64)),
            },
            EmitKind::Counter => Message::Counter(v2::Counter {
                name: "emitted".into(),
                delta: 1,
                total: 0,
            }),
            EmitKind::Timer => Message::Timer(v2::Timer {
                name: "http".into(),
                start: now - 1_000_000,
                stop: now,
            }),
            _ => match env.message.take() {
                Some(m @ Message::Log(_)) => m,
                _ => Message::Log(v2::Log {
                    payload: self.payload.clone(),
                    r#type: 0,
                }),
            },
        });
        buf.reserve(env.encoded_len());
        env.encode(buf).expect("reserved");
        RawEnvelope::parse(buf.split().freeze()).expect("prost output is valid")
    }
}

/// Sends `opts.count` envelopes and reports.
pub async fn run(
    opts: Options,
    tls: Option<Tls>,
    cancel: CancellationToken,
) -> Result<Summary, Error> {
    let endpoint = transport::endpoint(&opts.to, tls.as_ref())?;
    let streams = opts.streams.clamp(1, opts.sources.max(1));
    let payload = Bytes::from(vec![b'x'; opts.payload_bytes]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        // Stream s owns sources s, s+streams, …; and an even share of the count.
        let ids: Vec<String> = (s..opts.sources.max(1))
            .step_by(streams)
            .map(|i| format!("emit-{i}"))
            .collect();
        let share =
            opts.count / streams as u64 + u64::from((s as u64) < opts.count % streams as u64);
        let rate = opts.rate.map(|r| r / streams as f64);
        let channel = endpoint.connect().await.map_err(|source| Error::Connect {
            addr: opts.to.clone(),
            source,
        })?;
        let (payload, cancel, addr) = (payload.clone(), cancel.clone(), opts.to.clone());
        let shape = Shape {
            kind: opts.kind,
            seq: !opts.no_seq,
            metrics: opts.metrics.max(1),
        };
        tasks.push(tokio::spawn(async move {
            one_stream(channel, ids, share, rate, shape, payload, cancel)
                .await
                .map_err(|status| Error::Stream { addr, status })
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.expect("emit stream task panicked")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Summary {
        sent,
        seconds,
        rate: sent as f64 / seconds.max(1e-9),
    })
}

/// What one stream's envelopes look like.
#[derive(Debug, Clone, Copy)]
struct Shape {
    kind: EmitKind,
    /// With a `seq` tag.
    seq: bool,
    /// Metrics per gauge.
    metrics: usize,
}

async fn one_stream(
    channel: tonic::transport::Channel,
    ids: Vec<String>,
    count: u64,
    rate: Option<f64>,
    shape: Shape,
    payload: Bytes,
    cancel: CancellationToken,
) -> Result<u64, tonic::Status> {
    let mut client =
        IngressClient::new(channel).max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<RawBatch>(STREAM_QUEUE_BATCHES);
    let call = tokio::spawn(async move { client.batch_sender(ReceiverStream::new(rx)).await });
    let mut sources: Vec<Source> = ids
        .into_iter()
        .map(|id| Source::new(id, shape, &payload))
        .collect();
    // Paced: about one batch per millisecond; unpaced: big batches.
    let batch_size = match rate {
        Some(r) => ((r / 1000.0).ceil() as usize).clamp(1, UNPACED_BATCH),
        None => UNPACED_BATCH,
    };
    let mut buf = BytesMut::with_capacity(1 << 20);
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut next_source = 0;
    while sent < count && !cancel.is_cancelled() {
        if let Some(r) = rate {
            let due = started + Duration::from_secs_f64(sent as f64 / r);
            tokio::time::sleep_until(due).await;
        }
        let n = batch_size.min((count - sent) as usize);
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            batch.push(sources[next_source].next(&mut buf));
            next_source = (next_source + 1) % sources.len();
        }
        if tx.send(RawBatch::from(batch)).await.is_err() {
            break; // the call ended early; its status says why
        }
        sent += n as u64;
    }
    drop(tx);
    match call.await {
        Ok(Ok(_)) => Ok(sent),
        Ok(Err(status)) => Err(status),
        Err(e) => Err(tonic::Status::internal(format!(
            "emit stream task failed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: EmitKind, seq: bool, metrics: usize) -> Shape {
        Shape { kind, seq, metrics }
    }

    fn metrics(raw: &RawEnvelope) -> Vec<(String, f64)> {
        let mut m: Vec<(String, f64)> = raw
            .gauge_metrics()
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v))
            .collect();
        m.sort_by(|a, b| a.0.cmp(&b.0));
        m
    }

    #[test]
    fn gauges_carry_the_metrics_asked_for_each_envelope_its_own_values() {
        let payload = Bytes::new();
        let mut buf = BytesMut::new();
        let mut one = Source::new("s".into(), shape(EmitKind::Gauge, false, 1), &payload);
        one.next(&mut buf);
        let second = one.next(&mut buf);
        assert_eq!(metrics(&second), [("value".to_owned(), 1.0)]);

        let mut cell = Source::new("s".into(), shape(EmitKind::Gauge, true, 7), &payload);
        let first = cell.next(&mut buf);
        let second = cell.next(&mut buf);
        let names: Vec<String> = metrics(&second).into_iter().map(|m| m.0).collect();
        assert_eq!(
            names,
            [
                "cpu",
                "disk",
                "disk_quota",
                "memory",
                "memory_quota",
                "metric_5",
                "metric_6"
            ]
        );
        assert!(metrics(&first).iter().all(|m| m.1 == 0.0));
        assert!(metrics(&second).iter().all(|m| m.1 == 1.0));
        assert_eq!(second.tag("seq"), Some("1"));

        // Without `seq`, the gauge is written from its encoding: the same envelope.
        let mut quick = Source::new("s".into(), shape(EmitKind::Gauge, false, 5), &payload);
        assert!(quick.encoded.is_some());
        quick.next(&mut buf);
        let fast = quick.next(&mut buf).decode();
        let mut want = quick.template.clone();
        want.timestamp = fast.timestamp;
        if let Some(Message::Gauge(g)) = &mut want.message {
            g.metrics.values_mut().for_each(|v| v.value = 1.0);
        }
        assert_eq!(fast, want);
        assert!(fast.timestamp > 1_700_000_000_000_000_000);

        let mut mixed = Source::new("s".into(), shape(EmitKind::Mixed, false, 5), &payload);
        let kinds: Vec<_> = (0..8)
            .map(|_| mixed.next(&mut buf))
            .map(|e| (e.kind(), e.gauge_metrics().count()))
            .collect();
        assert_eq!(kinds[1], (hydrant_proto::raw::Kind::Gauge, 5));
        assert_eq!(kinds[5], (hydrant_proto::raw::Kind::Gauge, 5));
    }
}
