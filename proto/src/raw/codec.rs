//! The codec of the raw services (`raw::grpc`): tonic-prost's, except that a message that
//! fails to decode is answered `InvalidArgument` with a machine-readable reason in the
//! status details ([`Rejected`]). Servers classify bad input by that reason, which this
//! crate owns, never by the wording of tonic's or prost's errors.

use std::marker::PhantomData;

use bytes::{Buf, Bytes};
use prost::Message;
use prost::encoding::{WireType, decode_key};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use super::scan::{malformed, skip, take_len};
use super::{InvalidEnvelope, RawBatch, RawEnvelope};
use crate::v2;

/// Why a message was refused, carried in the status details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not a well-formed message.
    Malformed,
    /// A string field is not UTF-8.
    InvalidUtf8,
}

impl Rejected {
    const MALFORMED: &'static [u8] = b"hydrant.rejected/malformed";
    const INVALID_UTF8: &'static [u8] = b"hydrant.rejected/invalid_utf8";

    /// The `InvalidArgument` status for a message refused for this reason.
    pub fn status(self, message: String) -> Status {
        let details = match self {
            Rejected::Malformed => Self::MALFORMED,
            Rejected::InvalidUtf8 => Self::INVALID_UTF8,
        };
        Status::with_details(Code::InvalidArgument, message, Bytes::from_static(details))
    }

    /// The reason a status from this codec carries, if it is one.
    pub fn of(status: &Status) -> Option<Rejected> {
        if status.code() != Code::InvalidArgument {
            return None;
        }
        match status.details() {
            Self::MALFORMED => Some(Rejected::Malformed),
            Self::INVALID_UTF8 => Some(Rejected::InvalidUtf8),
            _ => None,
        }
    }
}

impl From<&InvalidEnvelope> for Rejected {
    fn from(e: &InvalidEnvelope) -> Rejected {
        match e {
            InvalidEnvelope::Malformed { .. } => Rejected::Malformed,
            InvalidEnvelope::InvalidUtf8 { .. } => Rejected::InvalidUtf8,
        }
    }
}

/// A message the raw services receive, decoded with a typed failure.
pub trait WireMessage: Message + Default + Sized {
    /// Decodes a whole message; the error is the status to answer with.
    fn decode_wire(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        Self::decode(buf).map_err(|e| Rejected::Malformed.status(e.to_string()))
    }
}

impl WireMessage for RawEnvelope {
    fn decode_wire(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        RawEnvelope::parse(bytes).map_err(|e| Rejected::from(&e).status(e.to_string()))
    }
}

impl WireMessage for RawBatch {
    fn decode_wire(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        parse_batch(&bytes).map_err(|(index, e)| {
            let what = match index {
                Some(i) => format!("envelope {i}: {e}"),
                None => e.to_string(),
            };
            Rejected::from(&e).status(what)
        })
    }
}

/// An `EnvelopeBatch`: field 1 repeated, each validated as an envelope. The error names
/// the envelope's index when one was at fault.
fn parse_batch(bytes: &Bytes) -> Result<RawBatch, (Option<usize>, InvalidEnvelope)> {
    let mut batch = RawBatch::default();
    let mut buf: &[u8] = bytes;
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf).map_err(|e| (None, malformed("batch", e)))?;
        if tag != 1 {
            skip(&mut buf, wire, tag, "batch").map_err(|e| (None, e))?;
            continue;
        }
        if wire != WireType::LengthDelimited {
            return Err((
                None,
                malformed("batch", "EnvelopeBatch.batch: wrong wire type"),
            ));
        }
        let one = take_len(&mut buf).map_err(|e| (None, malformed("batch", e)))?;
        let env =
            RawEnvelope::parse(bytes.slice_ref(one)).map_err(|e| (Some(batch.batch.len()), e))?;
        batch.batch.push(env);
    }
    Ok(batch)
}

/// The request and response messages of the raw services that are ordinary prost types.
macro_rules! prost_wire {
    ($($t:ty),* $(,)?) => { $(impl WireMessage for $t {})* };
}

prost_wire!(
    v2::EgressRequest,
    v2::EgressBatchRequest,
    v2::IngressResponse,
    v2::BatchSenderResponse,
    v2::SendResponse,
);

/// The codec the raw services are generated with.
#[derive(Debug)]
pub struct RawCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for RawCodec<T, U> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

impl<T, U> Codec for RawCodec<T, U>
where
    T: Message + Send + 'static,
    U: WireMessage + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = RawEncoder<T>;
    type Decoder = RawDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder(PhantomData)
    }
}

/// Encodes as prost does.
#[derive(Debug)]
pub struct RawEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for RawEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("cannot encode: {e}")))
    }
}

/// Decodes with [`WireMessage::decode_wire`].
#[derive(Debug)]
pub struct RawDecoder<U>(PhantomData<U>);

impl<U: WireMessage> Decoder for RawDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode_wire(buf).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_survives_the_trip_through_status_details() {
        for reason in [Rejected::Malformed, Rejected::InvalidUtf8] {
            let status = reason.status("why".into());
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(Rejected::of(&status), Some(reason));
            // What a server's response headers carry, read back as a client or layer does.
            let mut headers = tonic::codegen::http::HeaderMap::new();
            status.add_header(&mut headers).unwrap();
            let back = Status::from_header_map(&headers).unwrap();
            assert_eq!(Rejected::of(&back), Some(reason));
        }
        assert_eq!(Rejected::of(&Status::invalid_argument("no details")), None);
        assert_eq!(Rejected::of(&Status::internal("failed to decode")), None);
    }

    #[test]
    fn a_batch_names_the_envelope_at_fault() {
        let good = RawEnvelope::from_envelope(&crate::envelope::log("a", "x", false));
        let mut bytes = RawBatch::from(vec![good.clone(), good]).encode_to_vec();
        // A third envelope whose source_id (field 2) holds invalid UTF-8.
        bytes.extend_from_slice(&[0x0a, 4, 0x12, 2, 0xff, 0xfe]);
        let (index, e) = parse_batch(&Bytes::from(bytes)).unwrap_err();
        assert_eq!(index, Some(2));
        assert_eq!(Rejected::from(&e), Rejected::InvalidUtf8);
        let (index, e) = parse_batch(&Bytes::from_static(&[0x0a, 9, 0x12])).unwrap_err();
        assert_eq!((index, Rejected::from(&e)), (None, Rejected::Malformed));
    }
}
