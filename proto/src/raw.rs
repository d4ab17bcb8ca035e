//! Zero-copy envelopes for the forwarding hot path.
//!
//! A doppler only needs an envelope's source id, message kind and metric names to route it.
//! [`RawEnvelope`] keeps the envelope's encoded bytes (a reference-counted slice of the
//! received frame) plus those routing facts, found by one validating pass over the bytes
//! ([`RawEnvelope::parse`]) that allocates nothing. Forwarding to any number of subscribers
//! then costs a reference-count increment each, and re-encoding is a memcpy.
//!
//! Validation is as strict as a full prost decode of `loggregator.v2.Envelope`: wrong wire
//! types, truncated fields, bad varints and invalid UTF-8 in any string field are rejected, so
//! nothing downstream receives an envelope its own decoder would refuse.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, decode_varint, encode_key, encode_varint, encoded_len_varint,
    skip_field,
};
use prost::{DecodeError, Message};

/// gRPC stubs whose envelope types are [`RawEnvelope`] and [`RawBatch`].
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::clone_on_ref_ptr
)]
pub mod grpc {
    include!(concat!(env!("OUT_DIR"), "/raw/loggregator.v2.rs"));
}

pub mod codec;
mod scan;
#[cfg(test)]
mod tests;

use scan::{
    GaugeMetrics, Result, TagBytes, bytes_field, check_gauge_value, check_value, key, map_entry,
    message, skip, span, string, varint,
};

/// The variant of an envelope's `message` oneof.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// No message set (valid on the wire; matches no selector).
    #[default]
    None,
    /// `Log` (field 4).
    Log,
    /// `Counter` (field 5).
    Counter,
    /// `Gauge` (field 6).
    Gauge,
    /// `Timer` (field 7).
    Timer,
    /// `Event` (field 10).
    Event,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvalidEnvelope {
    /// The bytes are not a well-formed protobuf message.
    #[error("malformed protobuf in {field}: {reason}")]
    Malformed {
        /// Field path where decoding failed.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A string field holds bytes that are not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Field path of the offending string.
        field: &'static str,
    },
}

impl InvalidEnvelope {
    /// A short label for counters (`malformed` or `invalid_utf8`).
    pub fn reason_label(&self) -> &'static str {
        match self {
            InvalidEnvelope::Malformed { .. } => "malformed",
            InvalidEnvelope::InvalidUtf8 { .. } => "invalid_utf8",
        }
    }
}

/// An encoded, validated `loggregator.v2.Envelope` with its routing facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawEnvelope {
    bytes: Bytes,
    kind: Kind,
    source_id: Span,
    instance_id: Span,
    /// Counter or timer name.
    name: Span,
    /// From the first `gauge` field of the message in force to the end: a message field
    /// given several times is merged, so every `gauge` field from there on counts.
    gauge: Span,
    timestamp: i64,
    has_deprecated_tags: bool,
}

/// A byte range inside [`RawEnvelope::bytes`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(bytes: &[u8], base: usize) -> Span {
        // Envelopes are bounded by the 10 MiB-ish message limit, far below u32::MAX.
        Span {
            start: base as u32,
            end: (base + bytes.len()) as u32,
        }
    }
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl RawEnvelope {
    /// Validates `bytes` as an encoded `Envelope` and records its routing facts.
    pub fn parse(bytes: Bytes) -> Result<RawEnvelope, InvalidEnvelope> {
        match scan::quick(&bytes) {
            Some(env) => Ok(RawEnvelope { bytes, ..env }),
            None => RawEnvelope::parse_precise(bytes),
        }
    }

    /// [`parse`](Self::parse) one field at a time, naming the field of any refusal.
    fn parse_precise(bytes: Bytes) -> Result<RawEnvelope, InvalidEnvelope> {
        let mut env = RawEnvelope::default();
        let whole: &[u8] = &bytes;
        let mut buf = whole;
        while buf.has_remaining() {
            let at = whole.len() - buf.len();
            let (tag, wire) = key(&mut buf, "envelope")?;
            match tag {
                1 => env.timestamp = varint(&mut buf, wire, "timestamp")? as i64,
                2 => env.source_id = span(whole, string(&mut buf, wire, "source_id")?),
                3 => {
                    map_entry(&mut buf, wire, "deprecated_tags", check_value)?;
                    env.has_deprecated_tags = true;
                }
                4 => {
                    message(&mut buf, wire, "log", |b, t, w| match t {
                        1 => bytes_field(b, w, "log.payload").map(drop),
                        2 => varint(b, w, "log.type").map(drop),
                        _ => skip(b, w, t, "log"),
                    })?;
                    env.set_kind(Kind::Log);
                }
                5 => {
                    let mut name = &[][..];
                    message(&mut buf, wire, "counter", |b, t, w| match t {
                        1 => string(b, w, "counter.name").map(|s| name = s),
                        2 => varint(b, w, "counter.delta").map(drop),
                        3 => varint(b, w, "counter.total").map(drop),
                        _ => skip(b, w, t, "counter"),
                    })?;
                    env.set_kind(Kind::Counter);
                    env.name = span(whole, name);
                }
                6 => {
                    message(&mut buf, wire, "gauge", |b, t, w| match t {
                        1 => map_entry(b, w, "gauge.metrics", check_gauge_value),
                        _ => skip(b, w, t, "gauge"),
                    })?;
                    if env.kind != Kind::Gauge {
                        env.set_kind(Kind::Gauge);
                        env.gauge = Span::of(&whole[at..], at);
                    }
                }
                7 => {
                    let mut name = &[][..];
                    message(&mut buf, wire, "timer", |b, t, w| match t {
                        1 => string(b, w, "timer.name").map(|s| name = s),
                        2 => varint(b, w, "timer.start").map(drop),
                        3 => varint(b, w, "timer.stop").map(drop),
                        _ => skip(b, w, t, "timer"),
                    })?;
                    env.set_kind(Kind::Timer);
                    env.name = span(whole, name);
                }
                8 => env.instance_id = span(whole, string(&mut buf, wire, "instance_id")?),
                9 => map_entry(&mut buf, wire, "tags", |b, t, w| match t {
                    2 => string(b, w, "tags.value").map(drop),
                    _ => skip(b, w, t, "tags"),
                })?,
                10 => {
                    message(&mut buf, wire, "event", |b, t, w| match t {
                        1 => string(b, w, "event.title").map(drop),
                        2 => string(b, w, "event.body").map(drop),
                        _ => skip(b, w, t, "event"),
                    })?;
                    env.set_kind(Kind::Event);
                }
                _ => skip(&mut buf, wire, tag, "envelope")?,
            }
        }
        env.bytes = bytes;
        Ok(env)
    }

    /// Encodes a prost envelope and wraps it (validation cannot fail for a prost-built value
    /// whose strings are Rust `String`s).
    pub fn from_envelope(envelope: &crate::v2::Envelope) -> RawEnvelope {
        RawEnvelope::parse(Bytes::from(envelope.encode_to_vec()))
            .expect("a prost-encoded envelope is always valid")
    }

    fn set_kind(&mut self, kind: Kind) {
        // A later oneof member replaces an earlier one, as in prost; the name belongs to it.
        if self.kind != kind {
            self.name = Span::default();
            self.gauge = Span::default();
        }
        self.kind = kind;
    }

    /// The encoded envelope.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The `message` variant.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// UNIX nanoseconds as sent.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The source id (validated UTF-8).
    pub fn source_id(&self) -> &str {
        self.str_at(self.source_id)
    }

    /// The instance id (validated UTF-8).
    pub fn instance_id(&self) -> &str {
        self.str_at(self.instance_id)
    }

    /// The counter or timer name; empty for other kinds.
    pub fn name(&self) -> &str {
        self.str_at(self.name)
    }

    /// Whether the envelope carries any `deprecated_tags`.
    pub fn has_deprecated_tags(&self) -> bool {
        self.has_deprecated_tags
    }

    /// The metric names of a gauge, in wire order (duplicates possible); empty for other kinds.
    pub fn gauge_names(&self) -> impl Iterator<Item = &str> {
        self.gauge_metrics().map(|(name, _)| text(name))
    }

    /// The metrics of a gauge as `(name, value)`, in wire order (duplicates possible: a
    /// full decode keeps the last), without decoding; empty for other kinds. Names are
    /// bytes `parse` checked as UTF-8.
    pub fn gauge_metrics(&self) -> impl Iterator<Item = (&[u8], f64)> {
        GaugeMetrics {
            fields: &self.bytes[self.gauge.range()],
            body: &[],
        }
    }

    /// The value of preferred tag `key` (the last one, if repeated), without decoding.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    /// Every preferred tag `(key, value)` in wire order, without decoding.
    pub fn tags(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tag_bytes().map(|(k, v)| (text(k), text(v)))
    }

    /// Every preferred tag as `(key, value)` bytes (checked as UTF-8 by `parse`), in wire
    /// order (duplicates possible: a full decode keeps the last).
    pub fn tag_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        TagBytes { buf: &self.bytes }
    }

    /// The envelope with `tags` added where it does not already carry the key. Map entries
    /// are appended to the encoded bytes (protobuf maps merge entry by entry), so nothing is
    /// decoded; an envelope that already has every key is returned as is.
    pub fn with_default_tags<'a>(
        &self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> RawEnvelope {
        let mut wanted: Vec<(&str, &str, bool)> =
            tags.into_iter().map(|(k, v)| (k, v, false)).collect();
        // One pass over the envelope's tags marks the keys it already has.
        for (have, _) in self.tags() {
            for w in wanted.iter_mut().filter(|w| w.0 == have) {
                w.2 = true;
            }
        }
        let mut extra: Vec<u8> = Vec::new();
        for (k, v, present) in wanted {
            if present {
                continue;
            }
            let entry_len = 1
                + encoded_len_varint(k.len() as u64)
                + k.len()
                + 1
                + encoded_len_varint(v.len() as u64)
                + v.len();
            encode_key(9, WireType::LengthDelimited, &mut extra);
            encode_varint(entry_len as u64, &mut extra);
            for (field, text) in [(1, k), (2, v)] {
                encode_key(field, WireType::LengthDelimited, &mut extra);
                encode_varint(text.len() as u64, &mut extra);
                extra.extend_from_slice(text.as_bytes());
            }
        }
        if extra.is_empty() {
            return self.clone();
        }
        let mut bytes = Vec::with_capacity(self.bytes.len() + extra.len());
        bytes.extend_from_slice(&self.bytes);
        bytes.extend_from_slice(&extra);
        // Spans point into the unchanged prefix, so the routing facts stay valid.
        RawEnvelope {
            bytes: Bytes::from(bytes),
            ..self.clone()
        }
    }

    /// Decodes the full prost envelope (the slow path, for rewriting).
    pub fn decode(&self) -> crate::v2::Envelope {
        crate::v2::Envelope::decode(self.bytes.clone())
            .expect("RawEnvelope bytes were validated when parsed")
    }

    fn str_at(&self, span: Span) -> &str {
        text(&self.bytes[span.range()])
    }
}

/// A string field's bytes, from an envelope [`RawEnvelope::parse`] validated, as text
/// (empty if they were not UTF-8, which would be a bug in `parse`).
pub fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// A batch of raw envelopes, wire-compatible with `loggregator.v2.EnvelopeBatch`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawBatch {
    /// The envelopes, in order.
    pub batch: Vec<RawEnvelope>,
}

impl From<Vec<RawEnvelope>> for RawBatch {
    fn from(batch: Vec<RawEnvelope>) -> Self {
        RawBatch { batch }
    }
}

/// The encoded length of field 1 holding `env`, tag and length prefix included.
fn batch_entry_len(env: &RawEnvelope) -> usize {
    let len = env.bytes.len();
    1 + encoded_len_varint(len as u64) + len
}

impl Message for RawBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for env in &self.batch {
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint(env.bytes.len() as u64, buf);
            buf.put_slice(&env.bytes);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != 1 {
            return skip_field(wire_type, tag, buf, ctx);
        }
        if wire_type != WireType::LengthDelimited {
            return Err(decode_error("EnvelopeBatch.batch: wrong wire type"));
        }
        let len = decode_varint(buf)?;
        if len > buf.remaining() as u64 {
            return Err(decode_error("EnvelopeBatch.batch: truncated envelope"));
        }
        let bytes = buf.copy_to_bytes(len as usize);
        let env = RawEnvelope::parse(bytes)
            .map_err(|e| decode_error(format!("envelope {}: {e}", self.batch.len())))?;
        self.batch.push(env);
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.batch.iter().map(batch_entry_len).sum()
    }

    fn clear(&mut self) {
        self.batch.clear();
    }
}

impl Message for RawEnvelope {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    fn merge_field(
        &mut self,
        _tag: u32,
        _wire_type: WireType,
        _buf: &mut impl Buf,
        _ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Only reachable if a RawEnvelope were nested in another message, which no
        // generated stub does: it is always decoded whole through `merge` below.
        Err(decode_error(
            "RawEnvelope must be decoded as a whole message",
        ))
    }

    fn merge(&mut self, mut buf: impl Buf) -> Result<(), DecodeError> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        *self = RawEnvelope::parse(bytes).map_err(|e| decode_error(e.to_string()))?;
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        *self = RawEnvelope::default();
    }
}

/// prost offers no other way to describe a custom decode failure; the constructor is
/// deprecated only because it was meant to be internal, and tonic shows the text to peers.
#[allow(deprecated)]
#[cold]
pub(super) fn decode_error(description: impl Into<std::borrow::Cow<'static, str>>) -> DecodeError {
    DecodeError::new(description)
}
