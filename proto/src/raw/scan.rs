//! The byte-level walks behind [`RawEnvelope`](super::RawEnvelope): the quick validating
//! pass `parse` tries first ([`quick`]), the validating primitives of the precise pass that
//! words every refusal, and allocation-free iterators over already validated envelopes.

use bytes::Buf;
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use super::{InvalidEnvelope, Kind, RawEnvelope, Span, decode_error};

/// The routing facts of `whole` when it is an envelope of the common shapes (logs and
/// gauges with tags; no deprecated tags, counters, timers or events), strictly valid; `None`
/// otherwise, for the precise pass to read or refuse. One tight walk: fields and lengths
/// read inline, strings checked as ASCII first. It accepts only what the precise pass
/// accepts (a test holds the two equal), so refusals are always worded by the latter.
pub(super) fn quick(whole: &[u8]) -> Option<RawEnvelope> {
    let mut env = RawEnvelope::default();
    let mut buf = whole;
    while !buf.is_empty() {
        let at = whole.len() - buf.len();
        match checked_field(&mut buf)? {
            (1, VARINT, v) => env.timestamp = varint_value(v) as i64,
            (2, LEN, s) => env.source_id = span(whole, utf8(s)?),
            (8, LEN, s) => env.instance_id = span(whole, utf8(s)?),
            (9, LEN, entry) => walk(entry, |field| match field {
                (1 | 2, LEN, s) => utf8(s).map(drop),
                (1 | 2, _, _) => None,
                _ => Some(()),
            })?,
            (4, LEN, log) => {
                walk(log, |field| match field {
                    (1, LEN, _) | (2, VARINT, _) => Some(()),
                    (1 | 2, _, _) => None,
                    _ => Some(()),
                })?;
                env.set_kind(Kind::Log);
            }
            (6, LEN, gauge) => {
                walk(gauge, |field| match field {
                    (1, LEN, entry) => walk(entry, |field| match field {
                        (1, LEN, s) => utf8(s).map(drop),
                        (2, LEN, value) => walk(value, |field| match field {
                            (1, LEN, s) => utf8(s).map(drop),
                            (2, FIXED64, _) => Some(()),
                            (1 | 2, _, _) => None,
                            _ => Some(()),
                        }),
                        (1 | 2, _, _) => None,
                        _ => Some(()),
                    }),
                    (1, _, _) => None,
                    _ => Some(()),
                })?;
                if env.kind != Kind::Gauge {
                    env.set_kind(Kind::Gauge);
                    env.gauge = Span::of(&whole[at..], at);
                }
            }
            // The other envelope fields, or a known field of the wrong wire type.
            (1..=10, _, _) => return None,
            _ => {} // unknown fields are skipped, as prost skips them
        }
    }
    Some(env)
}

/// Hands every field of `body` to `check`; `None` if one fails or the walk does.
#[inline(always)]
fn walk<'a>(
    mut body: &'a [u8],
    mut check: impl FnMut((u32, u8, &'a [u8])) -> Option<()>,
) -> Option<()> {
    while !body.is_empty() {
        check(checked_field(&mut body)?)?;
    }
    Some(())
}

/// [`next_field`], except that a varint of ten bytes or more (valid or not: prost's
/// decoder decides) is left to the precise pass.
#[inline(always)]
fn checked_field<'a>(buf: &mut &'a [u8]) -> Option<(u32, u8, &'a [u8])> {
    let field = next_field(buf)?;
    (field.1 != VARINT || field.2.len() < 10).then_some(field)
}

/// The value of a varint of at most nine bytes (all of which are valid).
#[inline(always)]
fn varint_value(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |value, b| (value << 7) | u64::from(b & 0x7f))
}

/// `bytes` when they are UTF-8.
#[inline(always)]
fn utf8(bytes: &[u8]) -> Option<&[u8]> {
    (bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()).then_some(bytes)
}

/// Every preferred tag of a validated envelope as `(key, value)` bytes, in wire order.
pub(super) struct TagBytes<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Iterator for TagBytes<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        // Validated by `parse`, so the walk cannot fail; stop quietly if it does.
        while let Some((tag, wire, entry)) = next_field(&mut self.buf) {
            if tag != 9 || wire != LEN {
                continue;
            }
            let (mut k, mut v) = (&[][..], &[][..]);
            let mut entry = entry;
            while let Some(field) = next_field(&mut entry) {
                match field {
                    (1, LEN, b) => k = b,
                    (2, LEN, b) => v = b,
                    _ => {}
                }
            }
            return Some((k, v));
        }
        None
    }
}

/// Every metric of a validated envelope's gauge as `(name bytes, value)`, in wire order,
/// across every `gauge` field in `fields` (protobuf merges a repeated message field). A
/// map entry without a value reads 0, and repeated value fields merge (the last value
/// wins), as a full decode reads them.
pub(super) struct GaugeMetrics<'a> {
    /// Top-level fields still to walk.
    pub(super) fields: &'a [u8],
    /// The rest of the gauge body being read.
    pub(super) body: &'a [u8],
}

impl<'a> Iterator for GaugeMetrics<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<(&'a [u8], f64)> {
        // Validated by `parse`, so errors cannot occur; stop if they do.
        loop {
            while let Some((tag, wire, entry)) = next_field(&mut self.body) {
                if tag == 1 && wire == LEN {
                    return Some(gauge_entry(entry));
                }
            }
            if !self.body.is_empty() {
                return None; // a walk that failed (not after `parse`)
            }
            loop {
                match next_field(&mut self.fields)? {
                    (6, LEN, body) => {
                        self.body = body;
                        break;
                    }
                    _ => continue,
                }
            }
        }
    }
}

/// One `metrics` map entry: its key and its value's `value`.
fn gauge_entry(mut entry: &[u8]) -> (&[u8], f64) {
    let (mut key, mut value) = (&[][..], 0.0);
    while let Some(field) = next_field(&mut entry) {
        match field {
            (1, LEN, b) => key = b,
            (2, LEN, mut body) => {
                while let Some(field) = next_field(&mut body) {
                    if let (2, FIXED64, b) = field {
                        value = f64::from_le_bytes(b.try_into().unwrap_or_default());
                    }
                }
            }
            _ => {}
        }
    }
    (key, value)
}

/// Wire types as they appear in a key's low three bits.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// The next field of a message `parse` validated: its number, wire type (the key's low
/// bits) and bytes (a length-delimited field's body, else the value's encoding). `None`
/// at the end, or where the bytes are not what `parse` accepts. One-byte keys and lengths
/// below 16 KiB (nearly all of them) are read inline; the rest goes through prost.
#[inline(always)]
fn next_field<'a>(buf: &mut &'a [u8]) -> Option<(u32, u8, &'a [u8])> {
    let (&key, rest) = buf.split_first()?;
    if key >= 0x80 || key >> 3 == 0 {
        return next_field_slow(buf);
    }
    let (tag, wire) = (u32::from(key >> 3), key & 7);
    let len = match wire {
        VARINT => rest.iter().position(|b| b & 0x80 == 0)? + 1,
        FIXED64 => 8,
        FIXED32 => 4,
        LEN => {
            let (len, at) = match *rest {
                [n, ..] if n < 0x80 => (usize::from(n), 1),
                [lo, hi, ..] if hi < 0x80 => (usize::from(lo & 0x7f) | usize::from(hi) << 7, 2),
                _ => return next_field_slow(buf),
            };
            let body = rest.get(at..at + len)?;
            *buf = &rest[at + len..];
            return Some((tag, wire, body));
        }
        _ => return next_field_slow(buf),
    };
    let value = rest.get(..len)?;
    *buf = &rest[len..];
    Some((tag, wire, value))
}

/// [`next_field`] for long keys and lengths and for groups.
#[cold]
#[inline(never)]
fn next_field_slow<'a>(buf: &mut &'a [u8]) -> Option<(u32, u8, &'a [u8])> {
    let (tag, wire) = decode_key(buf).ok()?;
    let before = *buf;
    if wire == WireType::LengthDelimited {
        return take_len(buf).ok().map(|body| (tag, LEN, body));
    }
    skip_field(wire, tag, buf, DecodeContext::default()).ok()?;
    Some((tag, wire as u8, &before[..before.len() - buf.len()]))
}

// ---- validating primitives------------------------------------------------------------------

pub(super) type Result<T, E = InvalidEnvelope> = std::result::Result<T, E>;

#[cold]
#[inline(never)]
pub(super) fn malformed(field: &'static str, reason: impl ToString) -> InvalidEnvelope {
    InvalidEnvelope::Malformed {
        field,
        reason: reason.to_string(),
    }
}

#[inline]
pub(super) fn span(whole: &[u8], part: &[u8]) -> Span {
    if part.is_empty() {
        return Span::default();
    }
    Span::of(part, part.as_ptr() as usize - whole.as_ptr() as usize)
}

#[inline]
pub(super) fn key(buf: &mut &[u8], field: &'static str) -> Result<(u32, WireType)> {
    match one_byte_key(buf) {
        Some(k) => Ok(k),
        None => decode_key(buf).map_err(|e| malformed(field, e)),
    }
}

/// A valid key of one byte (fields 1 to 15, most keys), read inline; `None` leaves `buf`
/// as it was for prost's decoder, which also words the errors.
#[inline]
fn one_byte_key(buf: &mut &[u8]) -> Option<(u32, WireType)> {
    let &b = buf.first()?;
    if b >= 0x80 || b >> 3 == 0 {
        return None;
    }
    let wire = WireType::try_from(u64::from(b & 7)).ok()?;
    *buf = &buf[1..];
    Some((u32::from(b >> 3), wire))
}

#[inline]
pub(super) fn expect_wire(wire: WireType, want: WireType, field: &'static str) -> Result<()> {
    if wire == want {
        Ok(())
    } else {
        Err(wrong_wire(wire, want, field))
    }
}

#[cold]
#[inline(never)]
fn wrong_wire(wire: WireType, want: WireType, field: &'static str) -> InvalidEnvelope {
    malformed(field, format!("wire type {wire:?}, expected {want:?}"))
}

#[inline]
pub(super) fn take_len<'a>(buf: &mut &'a [u8]) -> std::result::Result<&'a [u8], DecodeError> {
    let len = match buf.first() {
        Some(&b) if b < 0x80 => {
            *buf = &buf[1..];
            u64::from(b)
        }
        _ => decode_varint(buf)?,
    };
    if len > buf.len() as u64 {
        return Err(decode_error("buffer underflow"));
    }
    let (head, tail) = buf.split_at(len as usize);
    *buf = tail;
    Ok(head)
}

#[inline]
pub(super) fn bytes_field<'a>(
    buf: &mut &'a [u8],
    wire: WireType,
    field: &'static str,
) -> Result<&'a [u8]> {
    expect_wire(wire, WireType::LengthDelimited, field)?;
    take_len(buf).map_err(|e| malformed(field, e))
}

#[inline]
pub(super) fn string<'a>(
    buf: &mut &'a [u8],
    wire: WireType,
    field: &'static str,
) -> Result<&'a [u8]> {
    let bytes = bytes_field(buf, wire, field)?;
    // ASCII, the common case, is checked inline.
    if !bytes.is_ascii() {
        std::str::from_utf8(bytes).map_err(|_| InvalidEnvelope::InvalidUtf8 { field })?;
    }
    Ok(bytes)
}

#[inline]
pub(super) fn varint(buf: &mut &[u8], wire: WireType, field: &'static str) -> Result<u64> {
    expect_wire(wire, WireType::Varint, field)?;
    decode_varint(buf).map_err(|e| malformed(field, e))
}

#[inline]
pub(super) fn fixed64(buf: &mut &[u8], wire: WireType, field: &'static str) -> Result<()> {
    expect_wire(wire, WireType::SixtyFourBit, field)?;
    if buf.len() < 8 {
        return Err(malformed(field, "buffer underflow"));
    }
    buf.advance(8);
    Ok(())
}

pub(super) fn skip(buf: &mut &[u8], wire: WireType, tag: u32, field: &'static str) -> Result<()> {
    skip_field(wire, tag, buf, DecodeContext::default()).map_err(|e| malformed(field, e))
}

/// Walks a length-delimited sub-message, handing each field to `field_fn`; returns its body.
#[inline]
pub(super) fn message<'a>(
    buf: &mut &'a [u8],
    wire: WireType,
    field: &'static str,
    mut field_fn: impl FnMut(&mut &'a [u8], u32, WireType) -> Result<()>,
) -> Result<&'a [u8]> {
    let body = bytes_field(buf, wire, field)?;
    let mut inner = body;
    while inner.has_remaining() {
        let (tag, wire) = key(&mut inner, field)?;
        field_fn(&mut inner, tag, wire)?;
    }
    Ok(body)
}

/// A map entry: key (field 1) is a string; `value_fn` checks the other fields.
#[inline]
pub(super) fn map_entry<'a>(
    buf: &mut &'a [u8],
    wire: WireType,
    field: &'static str,
    mut value_fn: impl FnMut(&mut &'a [u8], u32, WireType) -> Result<()>,
) -> Result<()> {
    message(buf, wire, field, |b, t, w| match t {
        1 => string(b, w, field).map(drop),
        _ => value_fn(b, t, w),
    })
    .map(drop)
}

pub(super) fn check_value(buf: &mut &[u8], tag: u32, wire: WireType) -> Result<()> {
    match tag {
        2 => message(buf, wire, "deprecated_tags.value", |b, t, w| match t {
            1 => string(b, w, "deprecated_tags.value.text").map(drop),
            2 => varint(b, w, "deprecated_tags.value.integer").map(drop),
            3 => fixed64(b, w, "deprecated_tags.value.decimal"),
            _ => skip(b, w, t, "deprecated_tags.value"),
        })
        .map(drop),
        _ => skip(buf, wire, tag, "deprecated_tags"),
    }
}

pub(super) fn check_gauge_value(buf: &mut &[u8], tag: u32, wire: WireType) -> Result<()> {
    match tag {
        2 => message(buf, wire, "gauge.metrics.value", |b, t, w| match t {
            1 => string(b, w, "gauge.metrics.value.unit").map(drop),
            2 => fixed64(b, w, "gauge.metrics.value.value"),
            _ => skip(b, w, t, "gauge.metrics.value"),
        })
        .map(drop),
        _ => skip(buf, wire, tag, "gauge.metrics"),
    }
}
