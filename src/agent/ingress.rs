//! `loggregator.v2.Ingress` on the agent: local emitters send here; everything is accepted
//! into the forwarding queue without waiting on a doppler.

use std::sync::Arc;

use hydrant_proto::raw::grpc::ingress_server::Ingress;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::v2::{BatchSenderResponse, IngressResponse, SendResponse};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::State;
use crate::inbound::drain;

/// The agent's ingress service.
#[derive(Debug, Clone)]
pub(super) struct AgentIngress {
    pub(super) state: Arc<State>,
    pub(super) stop: CancellationToken,
}

#[tonic::async_trait]
impl Ingress for AgentIngress {
    async fn sender(
        &self,
        request: Request<Streaming<RawEnvelope>>,
    ) -> Result<Response<IngressResponse>, Status> {
        let s = &self.state.stats;
        drain(
            request.into_inner(),
            &self.stop,
            &s.ingress_streams,
            &s.rejected,
            |e| self.state.accept(vec![e]),
        )
        .await?;
        Ok(Response::new(IngressResponse {}))
    }

    async fn batch_sender(
        &self,
        request: Request<Streaming<RawBatch>>,
    ) -> Result<Response<BatchSenderResponse>, Status> {
        let s = &self.state.stats;
        drain(
            request.into_inner(),
            &self.stop,
            &s.ingress_streams,
            &s.rejected,
            |b| self.state.accept(b.batch),
        )
        .await?;
        Ok(Response::new(BatchSenderResponse {}))
    }

    async fn send(&self, request: Request<RawBatch>) -> Result<Response<SendResponse>, Status> {
        if self.stop.is_cancelled() {
            return Err(Status::unavailable("agent is shutting down"));
        }
        self.state.accept(request.into_inner().batch);
        Ok(Response::new(SendResponse {}))
    }
}
