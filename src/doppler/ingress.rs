//! `loggregator.v2.Ingress` on the doppler: agents stream batches in, the hub routes them.

use std::sync::Arc;

use hydrant_proto::raw::grpc::ingress_server::Ingress;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::v2::{BatchSenderResponse, IngressResponse, SendResponse};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::hub::Hub;
use crate::inbound::drain;

/// The ingress service.
#[derive(Debug, Clone)]
pub(super) struct IngressService {
    pub(super) hub: Arc<Hub>,
    /// Fires when the doppler stops taking data: open streams end cleanly.
    pub(super) stop: CancellationToken,
}

#[tonic::async_trait]
impl Ingress for IngressService {
    async fn sender(
        &self,
        request: Request<Streaming<RawEnvelope>>,
    ) -> Result<Response<IngressResponse>, Status> {
        let s = &self.hub.stats;
        drain(
            request.into_inner(),
            &self.stop,
            &s.ingress_streams,
            &s.rejected,
            |e| self.hub.ingest(vec![e]),
        )
        .await?;
        Ok(Response::new(IngressResponse {}))
    }

    async fn batch_sender(
        &self,
        request: Request<Streaming<RawBatch>>,
    ) -> Result<Response<BatchSenderResponse>, Status> {
        let s = &self.hub.stats;
        drain(
            request.into_inner(),
            &self.stop,
            &s.ingress_streams,
            &s.rejected,
            |b| self.hub.ingest(b.batch),
        )
        .await?;
        Ok(Response::new(BatchSenderResponse {}))
    }

    async fn send(&self, request: Request<RawBatch>) -> Result<Response<SendResponse>, Status> {
        if self.stop.is_cancelled() {
            return Err(Status::unavailable("doppler is shutting down"));
        }
        self.hub.ingest(request.into_inner().batch);
        Ok(Response::new(SendResponse {}))
    }
}
