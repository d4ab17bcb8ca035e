//! The doppler's shared state: the subscription registry, each subscription's bounded
//! buffer, and the counters. Ingest routes a batch with no lock held (the routing table is
//! an immutable snapshot swapped on every subscribe/unsubscribe) and pushes into each
//! subscriber's drop-oldest queue, so it never waits on a subscriber.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use hydrant_proto::queue::DropQueue;
use hydrant_proto::raw::RawEnvelope;

use hydrant_runtime::instrument::{Counter, Gauge};

use crate::router::{Registry, Routed, Spec, SubId, Table};
use crate::status::RejectionCounts;
use crate::telemetry::names;

/// Distinct shard ids tracked with their own counters; beyond this, shard ids share the
/// label `_other` so a client cannot blow up the doppler's metric cardinality.
pub const MAX_SHARD_LABELS: usize = 1000;

/// Counters for one shard id (monotonic; kept after its subscriptions leave).
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Envelopes handed to subscribers' streams.
    pub egress: AtomicU64,
    /// Envelopes evicted from lagging subscribers' buffers, or left in them at disconnect.
    pub dropped: AtomicU64,
    /// Open subscriptions.
    pub subscriptions: AtomicI64,
}

/// One subscription's buffer and accounting.
#[derive(Debug)]
pub struct Subscription {
    /// Its id in the router.
    pub id: SubId,
    /// Shard id as requested.
    pub shard_id: String,
    /// Drop-oldest buffer between ingest and the subscriber's stream.
    pub queue: DropQueue<RawEnvelope>,
    /// Counters of its shard id.
    pub shard: Arc<ShardStats>,
}

#[derive(Debug, Default)]
struct Snapshot {
    table: Arc<Table>,
    /// `subs[i]` is the subscription at the table's dense index `i`.
    subs: Vec<Arc<Subscription>>,
}

hydrant_runtime::instruments! {
    /// Doppler-wide counters (the per-shard ones are in [`ShardStats`]).
    pub struct Stats {
        /// Envelopes accepted.
        pub ingress: Counter = names::DOPPLER_INGRESS,
        /// Messages accepted (batches, or single envelopes on `Sender`).
        pub ingress_batches: Counter = names::DOPPLER_INGRESS_BATCHES,
        /// Ingress messages refused.
        pub rejected: RejectionCounts = names::DOPPLER_REJECTED,
        /// Open ingress streams.
        pub ingress_streams: Gauge = names::DOPPLER_INGRESS_STREAMS,
        /// Subscriptions accepted.
        pub subscriptions_total: Counter = names::DOPPLER_SUBSCRIPTIONS_TOTAL,
        /// Subscriptions refused.
        pub subscriptions_rejected: Counter = names::DOPPLER_SUBSCRIPTIONS_REJECTED,
    }
}

/// Per-subscription bounds.
#[derive(Debug, Clone, Copy)]
pub struct BufferLimits {
    /// Envelopes buffered per subscription.
    pub envelopes: usize,
    /// Bytes buffered per subscription.
    pub bytes: usize,
    /// Selectors per subscription.
    pub selectors: usize,
}

/// The state shared by the ingress and egress services.
#[derive(Debug)]
pub struct Hub {
    registry: Mutex<(Registry, BTreeMap<SubId, Arc<Subscription>>)>,
    snapshot: RwLock<Arc<Snapshot>>,
    shards: Mutex<BTreeMap<String, Arc<ShardStats>>>,
    limits: BufferLimits,
    closed: std::sync::atomic::AtomicBool,
    /// Doppler-wide counters.
    pub stats: Stats,
}

fn weigh(env: &RawEnvelope) -> usize {
    env.bytes().len()
}

impl Hub {
    /// An empty hub.
    pub fn new(limits: BufferLimits) -> Hub {
        Hub {
            registry: Mutex::default(),
            snapshot: RwLock::default(),
            shards: Mutex::default(),
            limits,
            closed: Default::default(),
            stats: Stats::default(),
        }
    }

    /// The per-subscription bounds.
    pub fn limits(&self) -> BufferLimits {
        self.limits
    }

    /// Routes a batch to every matching subscription. Never blocks on a subscriber.
    pub fn ingest(&self, batch: Vec<RawEnvelope>) {
        self.stats.ingress.add(batch.len() as u64);
        self.stats.ingress_batches.inc();
        let snapshot = Arc::clone(&self.snapshot.read().unwrap_or_else(|p| p.into_inner()));
        if snapshot.subs.is_empty() {
            return;
        }
        let mut routed = Routed::default();
        snapshot.table.route(&batch, &mut routed);
        for (sub, envelopes) in snapshot.subs.iter().zip(routed.out) {
            if envelopes.is_empty() {
                continue;
            }
            let pushed = sub.queue.push_all(envelopes);
            let lost = pushed.dropped + pushed.refused;
            if lost > 0 {
                sub.shard.dropped.fetch_add(lost as u64, Relaxed);
                tracing::debug!(shard_id = %sub.shard_id, dropped = lost, "slow subscriber; dropped oldest envelopes");
            }
        }
    }

    /// Registers a subscription. `None` once the hub is closing.
    pub fn subscribe(&self, spec: Spec) -> Option<Arc<Subscription>> {
        if self.closed.load(Relaxed) {
            return None;
        }
        let shard = self.shard(&spec.shard_id);
        let mut guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let (registry, subs) = &mut *guard;
        let shard_id = spec.shard_id.clone();
        let id = registry.subscribe(spec);
        let sub = Arc::new(Subscription {
            id,
            shard_id,
            queue: DropQueue::new(self.limits.envelopes, self.limits.bytes, weigh),
            shard,
        });
        sub.shard.subscriptions.fetch_add(1, Relaxed);
        subs.insert(id, Arc::clone(&sub));
        self.publish(registry, subs);
        self.stats.subscriptions_total.inc();
        Some(sub)
    }

    /// Removes a subscription; whatever was still buffered for it counts as dropped.
    pub fn unsubscribe(&self, sub: &Subscription) {
        let mut guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let (registry, subs) = &mut *guard;
        if registry.unsubscribe(sub.id) {
            subs.remove(&sub.id);
            self.publish(registry, subs);
            sub.shard.subscriptions.fetch_sub(1, Relaxed);
        }
        drop(guard);
        sub.queue.close();
        let mut left = Vec::new();
        sub.queue.try_pop_batch(usize::MAX, usize::MAX, &mut left);
        if !left.is_empty() {
            sub.shard.dropped.fetch_add(left.len() as u64, Relaxed);
        }
    }

    /// Subscriptions still open (their streams have not ended).
    pub fn open_subscriptions(&self) -> usize {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .len()
    }

    /// Refuses new subscriptions and closes every buffer: subscribers receive what is
    /// buffered, then their streams end.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
        let guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        for sub in guard.1.values() {
            sub.queue.close();
        }
    }

    fn publish(&self, registry: &Registry, subs: &BTreeMap<SubId, Arc<Subscription>>) {
        let table = registry.table();
        let subs = (0..table.len())
            .map(|i| Arc::clone(&subs[&table.sub_at(i)]))
            .collect();
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { table, subs });
    }

    fn shard(&self, shard_id: &str) -> Arc<ShardStats> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        let key = if shards.contains_key(shard_id) || shards.len() < MAX_SHARD_LABELS {
            shard_id
        } else {
            "_other"
        };
        Arc::clone(shards.entry(key.to_owned()).or_default())
    }

    /// Empties every buffer still held at the end of a stop (its subscriber's stream did
    /// not end in time) and counts what it held as dropped; returns how many.
    pub fn discard_buffered(&self) -> usize {
        let guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        for sub in guard.1.values() {
            sub.queue.close();
            let mut left = Vec::new();
            sub.queue.try_pop_batch(usize::MAX, usize::MAX, &mut left);
            sub.shard.dropped.fetch_add(left.len() as u64, Relaxed);
            total += left.len();
        }
        total
    }

    /// `(shard id, counters, buffered envelopes)` for every shard id seen.
    pub fn shard_report(&self) -> Vec<(String, Arc<ShardStats>, usize)> {
        let shards = self
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut buffered: BTreeMap<&str, usize> = BTreeMap::new();
        for sub in guard.1.values() {
            *buffered.entry(sub.shard_id.as_str()).or_default() += sub.queue.len();
        }
        shards
            .into_iter()
            .map(|(id, stats)| {
                let b = buffered.get(id.as_str()).copied().unwrap_or(0);
                (id, stats, b)
            })
            .collect()
    }
}

impl crate::inbound::Sink for Hub {
    const NAME: &'static str = "doppler";

    fn accept(&self, batch: Vec<RawEnvelope>) {
        self.ingest(batch);
    }

    fn open_streams(&self) -> &Gauge {
        &self.stats.ingress_streams
    }

    fn rejected(&self) -> &RejectionCounts {
        &self.stats.rejected
    }
}
