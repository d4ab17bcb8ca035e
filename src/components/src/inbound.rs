//! The Ingress service shared by the agent and the doppler ([`IngressService`] over a
//! [`Sink`]): client streams are read message by message until the client ends them or the
//! component stops taking data, with refused messages counted and answered with a status
//! that names the problem.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hydrant_proto::raw::grpc::ingress_server::Ingress;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::v2::{BatchSenderResponse, IngressResponse, SendResponse};
use hydrant_proto::{HTTP2_CONNECTION_WINDOW, HTTP2_STREAM_WINDOW};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use hydrant_runtime::instrument::Gauge;

use crate::status::{RejectionCounts, next_message};

/// When the component stops taking data, a stream is still read until it has been quiet this
/// long (what the client sent before the stop is in flight or in the connection's buffers)…
pub const STOP_READ_IDLE: Duration = Duration::from_millis(100);

/// …but for no longer than this in all, after which a client still sending is told
/// `Unavailable`, so it knows the rest was not taken and can send it elsewhere.
pub const STOP_READ_MAX: Duration = Duration::from_secs(1);

/// Hands every message of `stream` to `sink`. Returns `Ok` when the client ends the stream,
/// or when `stop` fires and the stream then falls quiet (everything the client sent was
/// taken); `Err` with the reason when a message is refused, or `Unavailable` when the
/// client keeps sending past [`STOP_READ_MAX`] after the stop. A stream never ends `Ok`
/// while what its client sent is left unread.
pub async fn drain<T>(
    mut stream: Streaming<T>,
    stop: &CancellationToken,
    open_streams: &Gauge,
    rejected: &RejectionCounts,
    mut sink: impl FnMut(T),
) -> Result<(), Status> {
    let _open = open_streams.track();
    let mut stopped = pin!(stop.cancelled());
    loop {
        let message = tokio::select! {
            biased;
            m = next_message(&mut stream, rejected) => m?,
            () = &mut stopped => return read_out(stream, rejected, sink).await,
        };
        match message {
            Some(m) => sink(m),
            None => return Ok(()),
        }
    }
}

/// After the stop: takes what the client already sent, until the stream is quiet for
/// [`STOP_READ_IDLE`], ends, or [`STOP_READ_MAX`] passes.
async fn read_out<T>(
    mut stream: Streaming<T>,
    rejected: &RejectionCounts,
    mut sink: impl FnMut(T),
) -> Result<(), Status> {
    let deadline = tokio::time::Instant::now() + STOP_READ_MAX;
    loop {
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(STOP_READ_IDLE);
        match tokio::time::timeout(wait, next_message(&mut stream, rejected)).await {
            Ok(Ok(Some(m))) => sink(m),
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(status)) => return Err(status),
            // Quiet: everything sent before the stop was taken.
            Err(_) if tokio::time::Instant::now() < deadline => return Ok(()),
            Err(_) => {
                return Err(Status::unavailable(
                    "stopping: messages sent from now on are not taken; send them elsewhere",
                ));
            }
        }
    }
}

/// Where accepted envelopes go: the doppler's hub or the agent's forwarding queue.
pub trait Sink: Send + Sync + 'static {
    /// Component name for messages ("doppler", "agent").
    const NAME: &'static str;
    /// Takes a validated batch. Must not block.
    fn accept(&self, batch: Vec<RawEnvelope>);
    /// The open-streams gauge.
    fn open_streams(&self) -> &Gauge;
    /// Rejection counters.
    fn rejected(&self) -> &RejectionCounts;
}

/// `loggregator.v2.Ingress` over a [`Sink`]: `Sender`, `BatchSender` and `Send`.
#[derive(Debug)]
pub struct IngressService<S> {
    /// Receives everything accepted.
    pub sink: Arc<S>,
    /// Fires when the component stops taking data: open streams end cleanly.
    pub stop: CancellationToken,
}

#[tonic::async_trait]
impl<S: Sink> Ingress for IngressService<S> {
    async fn sender(
        &self,
        request: Request<Streaming<RawEnvelope>>,
    ) -> Result<Response<IngressResponse>, Status> {
        let s = &self.sink;
        drain(
            request.into_inner(),
            &self.stop,
            s.open_streams(),
            s.rejected(),
            |e| s.accept(vec![e]),
        )
        .await?;
        Ok(Response::new(IngressResponse {}))
    }

    async fn batch_sender(
        &self,
        request: Request<Streaming<RawBatch>>,
    ) -> Result<Response<BatchSenderResponse>, Status> {
        let s = &self.sink;
        drain(
            request.into_inner(),
            &self.stop,
            s.open_streams(),
            s.rejected(),
            |b| s.accept(b.batch),
        )
        .await?;
        Ok(Response::new(BatchSenderResponse {}))
    }

    async fn send(&self, request: Request<RawBatch>) -> Result<Response<SendResponse>, Status> {
        if self.stop.is_cancelled() {
            return Err(Status::unavailable(format!("{} is shutting down", S::NAME)));
        }
        self.sink.accept(request.into_inner().batch);
        Ok(Response::new(SendResponse {}))
    }
}

/// The Ingress service for `sink`, with `max_message_bytes` on both directions.
pub fn ingress_server<S: Sink>(
    sink: Arc<S>,
    stop: CancellationToken,
    max_message_bytes: usize,
) -> hydrant_proto::raw::grpc::ingress_server::IngressServer<IngressService<S>> {
    hydrant_proto::raw::grpc::ingress_server::IngressServer::new(IngressService { sink, stop })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// A gRPC server builder as every Hydrant server uses it: large HTTP/2 windows, keepalives
/// that notice dead peers, and mTLS when configured.
pub fn server(
    tls: Option<&hydrant_proto::transport::Tls>,
) -> Result<Server, tonic::transport::Error> {
    let builder = Server::builder()
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .http2_keepalive_interval(Some(Duration::from_secs(15)))
        .http2_keepalive_timeout(Some(Duration::from_secs(15)));
    match tls {
        Some(tls) => builder.tls_config(tls.server_config()),
        None => Ok(builder),
    }
}

/// The budget of half-received messages for `sink`'s server, counting refusals in its
/// rejections (see [`crate::pending`]).
pub fn budget<S: Sink>(
    limits: crate::pending::Limits,
    sink: &Arc<S>,
) -> Arc<crate::pending::Budget> {
    let sink = Arc::clone(sink);
    Arc::new(crate::pending::Budget::new(limits, move |reason| {
        sink.rejected().inc(reason)
    }))
}

/// The response layer that reports decode failures the way ingress handlers do, counting
/// them in `sink`'s rejections (see [`crate::status::remap_response`]).
pub fn remap_layer<S: Sink>(
    sink: Arc<S>,
) -> tower::util::MapResponseLayer<
    impl Fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> + Clone,
> {
    tower::util::MapResponseLayer::new(move |r| crate::status::remap_response(sink.rejected(), r))
}
