//! The Ingress service shared by the agent and the doppler ([`IngressService`] over a
//! [`Sink`]): client streams are read message by message until the client ends them or the
//! component stops taking data, with refused messages counted and answered with a status
//! that names the problem.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use hydrant_proto::raw::grpc::ingress_server::Ingress;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::v2::{BatchSenderResponse, IngressResponse, SendResponse};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::status::{RejectionCounts, next_message};

/// Keeps an open-streams gauge up to date for the life of a stream.
struct StreamGauge<'a>(&'a AtomicI64);

impl Drop for StreamGauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Hands every message of `stream` to `sink`. Returns `Ok` when the client ends the stream
/// or `stop` fires; `Err` with the reason when a message is refused.
pub async fn drain<T>(
    mut stream: Streaming<T>,
    stop: &CancellationToken,
    open_streams: &AtomicI64,
    rejected: &RejectionCounts,
    mut sink: impl FnMut(T),
) -> Result<(), Status> {
    open_streams.fetch_add(1, Relaxed);
    let _gauge = StreamGauge(open_streams);
    let mut stopped = pin!(stop.cancelled());
    loop {
        let message = tokio::select! {
            biased;
            m = next_message(&mut stream, rejected) => m?,
            () = &mut stopped => return Ok(()),
        };
        match message {
            Some(m) => sink(m),
            None => return Ok(()),
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
    fn open_streams(&self) -> &AtomicI64;
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
