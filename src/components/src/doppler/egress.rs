//! `loggregator.v2.Egress` on the doppler: the Firehose. Each subscription drains its own
//! drop-oldest buffer into its gRPC stream, so a slow reader only ever loses its own data.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures::Stream;
use hydrant_proto::ingress::{MAX_BATCH_BYTES, MAX_BATCH_ENVELOPES};
use hydrant_proto::raw::grpc::egress_server::Egress;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::v2::{EgressBatchRequest, EgressRequest};
use tonic::{Request, Response, Status};

use super::hub::{Hub, Subscription};
use crate::router::Spec;

/// The egress service.
#[derive(Debug, Clone)]
pub(super) struct EgressService {
    pub(super) hub: Arc<Hub>,
}

/// Unsubscribes when the client's stream is dropped (disconnect or doppler shutdown).
struct Guard {
    hub: Arc<Hub>,
    sub: Arc<Subscription>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.sub);
        tracing::debug!(shard_id = %self.sub.shard_id, "firehose subscription closed");
    }
}

impl Guard {
    /// The next batch for this subscriber; `None` once its buffer is closed and empty.
    async fn next(&self) -> Option<Vec<RawEnvelope>> {
        let mut batch = Vec::new();
        if self
            .sub
            .queue
            .pop_batch(MAX_BATCH_ENVELOPES, MAX_BATCH_BYTES, &mut batch)
            .await
            == 0
        {
            return None;
        }
        self.sub.shard.egress.fetch_add(batch.len() as u64, Relaxed);
        Some(batch)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl EgressService {
    fn subscribe(&self, request: &EgressBatchRequest) -> Result<Guard, Status> {
        let max = self.hub.limits().selectors;
        let spec = Spec::from_request_within(request, max).inspect_err(|_| {
            self.hub.stats.subscriptions_rejected.inc();
        })?;
        let sub = self
            .hub
            .subscribe(spec)
            .ok_or_else(|| Status::unavailable("doppler is shutting down"))?;
        tracing::debug!(shard_id = %sub.shard_id, "firehose subscription opened");
        Ok(Guard {
            hub: Arc::clone(&self.hub),
            sub,
        })
    }
}

/// Where `/v2/read` on the doppler's HTTP port subscribes: straight on the hub, with the
/// same buffers and accounting as gRPC subscribers.
#[derive(Debug, Clone)]
pub(super) struct HubSource(pub(super) Arc<Hub>);

impl hydrant_runtime::sse::Source for HubSource {
    fn subscribe(
        &self,
        request: EgressBatchRequest,
    ) -> Pin<Box<dyn Future<Output = Result<hydrant_runtime::sse::BatchStream, Status>> + Send + '_>>
    {
        Box::pin(async move {
            let guard = EgressService {
                hub: Arc::clone(&self.0),
            }
            .subscribe(&request)?;
            let stream = futures::stream::unfold(guard, |guard| async move {
                let batch = guard.next().await?;
                Some((RawBatch::from(batch), guard))
            });
            Ok(Box::pin(stream) as hydrant_runtime::sse::BatchStream)
        })
    }
}

#[tonic::async_trait]
impl Egress for EgressService {
    type ReceiverStream = BoxStream<RawEnvelope>;
    type BatchedReceiverStream = BoxStream<RawBatch>;

    async fn receiver(
        &self,
        request: Request<EgressRequest>,
    ) -> Result<Response<Self::ReceiverStream>, Status> {
        let r = request.into_inner();
        let batch_request = EgressBatchRequest {
            shard_id: r.shard_id,
            legacy_selector: r.legacy_selector,
            use_preferred_tags: r.use_preferred_tags,
            selectors: r.selectors,
            deterministic_name: r.deterministic_name,
        };
        let guard = self.subscribe(&batch_request)?;
        let stream = futures::stream::unfold(guard, |guard| async move {
            let batch = guard.next().await?;
            Some((futures::stream::iter(batch.into_iter().map(Ok)), guard))
        });
        Ok(Response::new(Box::pin(futures::StreamExt::flatten(stream))))
    }

    async fn batched_receiver(
        &self,
        request: Request<EgressBatchRequest>,
    ) -> Result<Response<Self::BatchedReceiverStream>, Status> {
        let guard = self.subscribe(request.get_ref())?;
        let stream = futures::stream::unfold(guard, |guard| async move {
            let batch = guard.next().await?;
            Some((Ok(RawBatch::from(batch)), guard))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
