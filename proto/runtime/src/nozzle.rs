//! What every nozzle does with the Firehose: one reconnecting subscription per doppler,
//! all with the same request (shard id, selectors), each an accept-phase task of the
//! nozzle's [`Lifecycle`] that hands every batch to the nozzle's [`Handler`] and counts
//! reconnects. A doppler that refuses the subscription ends the nozzle with [`Refused`].
//!
//! A handler that is slow holds up only its own subscription: the doppler buffers for it
//! and then drops its oldest envelopes, counted as this subscriber's.
//!
//! A doppler given as a DNS name (`dopplers.hydrant.svc:8082`) stands for every address it
//! resolves to: one subscription each, added and dropped as the answer changes
//! ([`hydrant_proto::discovery`]).

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use hydrant_proto::discovery::{self, Discovery, Resolver};
use hydrant_proto::raw::RawBatch;
use hydrant_proto::subscriber::Subscriber;
use hydrant_proto::transport::{self, Tls};
use hydrant_proto::v2::EgressBatchRequest;

use crate::lifecycle::{Lifecycle, Phase};

/// The dopplers a nozzle reads, and how it reaches them.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// Doppler addresses.
    pub dopplers: Vec<String>,
    /// mTLS towards them.
    pub tls: Option<Tls>,
    /// How doppler names are resolved.
    pub discovery: Discovery,
}

/// A doppler refused the nozzle's subscription (a bad request, a TLS identity it does not
/// accept): not worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("doppler {doppler} refused the subscription: {status}")]
pub struct Refused {
    /// Which doppler.
    pub doppler: String,
    /// Its answer.
    pub status: tonic::Status,
}

/// A nozzle's side of the Firehose.
pub trait Handler: Send + Sync + 'static {
    /// Takes one batch. Awaiting here slows only this subscription.
    fn batch(&self, batch: RawBatch) -> impl Future<Output = ()> + Send;

    /// `n` subscriptions were re-established since the last call (for the nozzle's
    /// reconnect counter).
    fn reconnected(&self, n: u64);
}

/// Subscribes to every doppler of `source` with `request`: each subscription is an
/// accept-phase task of `life`, named `firehose <doppler>`, that hands batches to
/// `handler` until the accept phase ends.
pub fn subscribe<E, H>(
    life: &mut Lifecycle<E>,
    source: &Source,
    request: &EgressBatchRequest,
    handler: &Arc<H>,
) -> Result<(), transport::Error>
where
    E: From<Refused> + Display + Send + 'static,
    H: Handler,
{
    let accept = life.token(Phase::Accept);
    for doppler in &source.dopplers {
        if let Some((host, port)) = discovery::dns_name(doppler) {
            let resolver =
                Arc::new(Resolver::new(&source.discovery).map_err(transport::Error::Discovery)?);
            let mut addrs = discovery::watch(
                resolver,
                host,
                port,
                source.discovery.refresh,
                accept.clone(),
            );
            let (source, request, handler) = (source.clone(), request.clone(), Arc::clone(handler));
            let accept = accept.clone();
            life.spawn(Phase::Accept, format!("firehose {doppler}"), async move {
                let mut running = discovery::PerAddress::default();
                loop {
                    let current = addrs.borrow_and_update().clone();
                    running.update(&current, &accept, "firehose", |addr, stop| {
                        let target = addr.to_string();
                        let sub =
                            Subscriber::new(&target, source.tls.as_ref(), request.clone(), stop)?;
                        tokio::spawn(follow_one(sub, target, Arc::clone(&handler)));
                        Ok::<(), transport::Error>(())
                    });
                    tokio::select! {
                        changed = addrs.changed() => if changed.is_err() { break },
                        () = accept.cancelled() => break,
                    }
                }
                Ok(())
            });
            continue;
        }
        let mut sub = Subscriber::new(
            doppler,
            source.tls.as_ref(),
            request.clone(),
            accept.clone(),
        )?;
        let handler = Arc::clone(handler);
        let doppler = doppler.clone();
        life.spawn(Phase::Accept, format!("firehose {doppler}"), async move {
            pump(&mut sub, handler.as_ref())
                .await
                .map_err(|status| Refused { doppler, status }.into())
        });
    }
    Ok(())
}

/// Hands every batch of `sub` to `handler` until the subscription ends (`Ok`) or the
/// doppler refuses it.
async fn pump<H: Handler>(sub: &mut Subscriber, handler: &H) -> Result<(), tonic::Status> {
    while let Some(batch) = sub.next().await? {
        handler.batch(batch).await;
        handler.reconnected(sub.take_reconnects());
    }
    Ok(())
}

/// One discovered doppler's subscription, until it is cancelled; a refusal is logged (the
/// other addresses go on).
async fn follow_one<H: Handler>(mut sub: Subscriber, doppler: String, handler: Arc<H>) {
    if let Err(status) = pump(&mut sub, handler.as_ref()).await {
        tracing::error!(%doppler, %status, "firehose: the doppler refused the subscription");
    }
}
