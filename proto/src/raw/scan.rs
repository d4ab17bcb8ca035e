//! The byte-level walks behind [`RawEnvelope`](super::RawEnvelope): validating primitives
//! used by `parse`, and allocation-free iterators over already validated envelopes.

use bytes::Buf;
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use super::{InvalidEnvelope, Span, decode_error};

/// Every preferred tag of a validated envelope as `(key, value)` bytes, in wire order.
pub(super) struct TagBytes<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Iterator for TagBytes<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        // Validated by `parse`, so the walk cannot fail; stop quietly if it does.
        while self.buf.has_remaining() {
            let (tag, wire) = next_key(&mut self.buf)?;
            if tag != 9 || wire != WireType::LengthDelimited {
                skip_field(wire, tag, &mut self.buf, DecodeContext::default()).ok()?;
                continue;
            }
            let mut entry = take_len(&mut self.buf).ok()?;
            let (mut k, mut v) = (&[][..], &[][..]);
            while entry.has_remaining() {
                let (t, w) = next_key(&mut entry)?;
                match (t, w) {
                    (1, WireType::LengthDelimited) => k = take_len(&mut entry).ok()?,
                    (2, WireType::LengthDelimited) => v = take_len(&mut entry).ok()?,
                    _ => skip_field(w, t, &mut entry, DecodeContext::default()).ok()?,
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
            while self.body.has_remaining() {
                let (tag, wire) = next_key(&mut self.body)?;
                if tag != 1 || wire != WireType::LengthDelimited {
                    skip_field(wire, tag, &mut self.body, DecodeContext::default()).ok()?;
                    continue;
                }
                let entry = take_len(&mut self.body).ok()?;
                return gauge_entry(entry);
            }
            if !self.fields.has_remaining() {
                return None;
            }
            let (tag, wire) = next_key(&mut self.fields)?;
            if tag == 6 && wire == WireType::LengthDelimited {
                self.body = take_len(&mut self.fields).ok()?;
            } else {
                skip_field(wire, tag, &mut self.fields, DecodeContext::default()).ok()?;
            }
        }
    }
}

/// One `metrics` map entry: its key and its value's `value`.
fn gauge_entry(mut entry: &[u8]) -> Option<(&[u8], f64)> {
    let (mut key, mut value) = (&[][..], 0.0);
    while entry.has_remaining() {
        let (t, w) = next_key(&mut entry)?;
        match (t, w) {
            (1, WireType::LengthDelimited) => key = take_len(&mut entry).ok()?,
            (2, WireType::LengthDelimited) => {
                let mut body = take_len(&mut entry).ok()?;
                while body.has_remaining() {
                    let (t, w) = next_key(&mut body)?;
                    if (t, w) == (2, WireType::SixtyFourBit) && body.len() >= 8 {
                        value = body.get_f64_le();
                    } else {
                        skip_field(w, t, &mut body, DecodeContext::default()).ok()?;
                    }
                }
            }
            _ => skip_field(w, t, &mut entry, DecodeContext::default()).ok()?,
        }
    }
    Some((key, value))
}

// ---- validating primitives------------------------------------------------------------------

pub(super) type Result<T, E = InvalidEnvelope> = std::result::Result<T, E>;

pub(super) fn malformed(field: &'static str, reason: impl ToString) -> InvalidEnvelope {
    InvalidEnvelope::Malformed {
        field,
        reason: reason.to_string(),
    }
}

pub(super) fn span(whole: &[u8], part: &[u8]) -> Span {
    if part.is_empty() {
        return Span::default();
    }
    Span::of(part, part.as_ptr() as usize - whole.as_ptr() as usize)
}

pub(super) fn key(buf: &mut &[u8], field: &'static str) -> Result<(u32, WireType)> {
    match one_byte_key(buf) {
        Some(k) => Ok(k),
        None => decode_key(buf).map_err(|e| malformed(field, e)),
    }
}

/// A valid key of one byte (fields 1 to 15, most keys), read inline; `None` leaves `buf`
/// as it was for prost's decoder, which also words the errors.
fn one_byte_key(buf: &mut &[u8]) -> Option<(u32, WireType)> {
    let &b = buf.first()?;
    if b >= 0x80 || b >> 3 == 0 {
        return None;
    }
    let wire = WireType::try_from(u64::from(b & 7)).ok()?;
    *buf = &buf[1..];
    Some((u32::from(b >> 3), wire))
}

/// The next key of an envelope `parse` validated.
fn next_key(buf: &mut &[u8]) -> Option<(u32, WireType)> {
    one_byte_key(buf).or_else(|| decode_key(buf).ok())
}

pub(super) fn expect_wire(wire: WireType, want: WireType, field: &'static str) -> Result<()> {
    if wire == want {
        Ok(())
    } else {
        Err(malformed(
            field,
            format!("wire type {wire:?}, expected {want:?}"),
        ))
    }
}

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

pub(super) fn bytes_field<'a>(
    buf: &mut &'a [u8],
    wire: WireType,
    field: &'static str,
) -> Result<&'a [u8]> {
    expect_wire(wire, WireType::LengthDelimited, field)?;
    take_len(buf).map_err(|e| malformed(field, e))
}

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

pub(super) fn varint(buf: &mut &[u8], wire: WireType, field: &'static str) -> Result<u64> {
    expect_wire(wire, WireType::Varint, field)?;
    decode_varint(buf).map_err(|e| malformed(field, e))
}

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
