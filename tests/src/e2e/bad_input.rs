//! Bad input never crashes a component: garbage bytes, oversized messages and invalid UTF-8
//! get a clear status and a counter, and the server keeps serving.

use crate::{Collector, TestDoppler, eventually};
use hydrant::doppler;
use hydrant::telemetry::names;
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v2::ingress_client::IngressClient as ProstIngressClient;
use hydrant_proto::v2::{Envelope, EnvelopeBatch};
use tokio::io::AsyncWriteExt;

async fn still_serving(d: &TestDoppler) {
    let c = Collector::start(d.grpc, request("probe", vec![select::log("")]), None);
    eventually("probe subscription", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "probe")])
            .await
            == 1.0
    })
    .await;
    super::send(d.grpc, [hydrant_proto::envelope::log("probe", "ok", false)]).await;
    eventually("probe delivered", || async { c.got.len() == 1 }).await;
    c.stop().await.unwrap();
}

#[tokio::test]
async fn garbage_bytes_on_the_grpc_port() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 4096][..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
    ] {
        let mut s = tokio::net::TcpStream::connect(d.grpc).await.unwrap();
        let _ = s.write_all(garbage).await;
        let _ = s.shutdown().await;
    }
    still_serving(&d).await;
    d.stop().await;
}

/// Bytes sent as a gRPC message verbatim, to put invalid frames on the wire.
#[derive(Clone, Debug, Default, PartialEq)]
struct Opaque(Vec<u8>);

impl prost::Message for Opaque {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Calls `path` with `frame` as the request message; returns the status.
pub(super) async fn call_with_frame(
    addr: std::net::SocketAddr,
    path: &'static str,
    frame: Vec<u8>,
) -> tonic::Status {
    let channel = hydrant_proto::transport::endpoint(&addr.to_string(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Opaque, Opaque>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(Opaque(frame)), path, codec)
        .await
        .unwrap_err()
}

/// EnvelopeBatch { batch: [Envelope { source_id: "\xff\xfe" }] }.
pub(super) const BAD_UTF8_BATCH: &[u8] = &[0x0a, 4, 0x12, 2, 0xff, 0xfe];

#[tokio::test]
async fn invalid_utf8_source_id_is_refused_with_its_field_named() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    assert!(RawEnvelope::parse(bytes::Bytes::from_static(&BAD_UTF8_BATCH[2..])).is_err());

    // Unary Send: decoded by tonic before any handler; the response layer remaps it.
    let status = call_with_frame(
        d.grpc,
        "/loggregator.v2.Ingress/Send",
        BAD_UTF8_BATCH.to_vec(),
    )
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("source_id is not valid UTF-8"),
        "{}",
        status.message()
    );

    // BatchSender stream: refused by the handler, the stream ends with the same status.
    let channel = hydrant_proto::transport::endpoint(&d.grpc.to_string(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Opaque, Opaque>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/loggregator.v2.Ingress/BatchSender");
    let frames = futures::stream::iter(vec![Opaque(BAD_UTF8_BATCH.to_vec())]);
    let status = grpc
        .client_streaming(tonic::Request::new(frames), path, codec)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("envelope 0: source_id is not valid UTF-8"),
        "{}",
        status.message()
    );

    // Truncated protobuf.
    let status = call_with_frame(d.grpc, "/loggregator.v2.Ingress/Send", vec![0x0a, 9, 0x12]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    assert_eq!(
        d.metric(names::DOPPLER_REJECTED, &[("reason", "invalid_utf8")])
            .await,
        2.0
    );
    assert_eq!(
        d.metric(names::DOPPLER_REJECTED, &[("reason", "malformed")])
            .await,
        1.0
    );
    still_serving(&d).await;
    d.stop().await;
}

#[tokio::test]
async fn oversized_message_is_refused_with_the_limit() {
    let config = doppler::Config {
        max_message_bytes: 64 * 1024,
        ..Default::default()
    };
    let d = TestDoppler::start(config).await;
    let channel = hydrant_proto::transport::endpoint(&d.grpc.to_string(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ProstIngressClient::new(channel);
    let big = Envelope {
        source_id: "big".into(),
        message: Some(hydrant_proto::v2::envelope::Message::Log(
            hydrant_proto::v2::Log {
                payload: vec![b'x'; 100 * 1024].into(),
                r#type: 0,
            },
        )),
        ..Default::default()
    };
    let status = client
        .send(EnvelopeBatch { batch: vec![big] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("limit"), "{}", status.message());
    still_serving(&d).await;
    d.stop().await;
}
