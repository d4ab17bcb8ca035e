//! The writer: Firehose batches into the store, several batches per WAL sync.
//!
//! Most of what the Firehose carries is gauges of series seen before, and for those the
//! writer neither decodes the envelope nor builds the series' labels. It reads the source
//! id, instance id, tags and each metric's name and value from the encoded bytes
//! ([`RawEnvelope`]), writes them as one identity string (tags sorted by key, every field
//! length-prefixed, so two different envelopes never share one) and finds the series id
//! in [`SeriesCache`]. An identity not cached yet gets its labels built as
//! [`model::map`] builds them and its id from the catalog, then joins the cache. Logs,
//! counters, timers, events, envelopes with deprecated tags and envelopes repeating a tag
//! or metric name take the decoding path ([`model::map`]).
//!
//! A cached id stays right: the catalog never gives an id to another series (it only
//! forgets series whose catalog write failed, and the cache learns ids after that write).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydrant_proto::raw::{Kind, RawBatch, RawEnvelope, text};
use hydrant_proto::v2;
use tokio::sync::mpsc;

use crate::catalog::SeriesId;
use crate::model::{self, SeriesKey};
use crate::service::{Stage, Storage};
use crate::store;

/// Firehose batches waiting for the writer (all dopplers' subscriptions share it). A full
/// queue pauses the readers, so the dopplers' per-subscription buffers absorb a burst (and
/// count what they must drop).
pub const INGEST_QUEUE_BATCHES: usize = 64;

/// Most envelopes stored together: one WAL sync covers them all (group commit).
pub const GROUP_COMMIT_ENVELOPES: usize = 50_000;

/// A failing write (a full disk fails every batch) is logged at most this often, with how
/// many failed since the last line.
pub const WRITE_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Most identities [`SeriesCache`] holds; past it the cache starts over, so a burst of
/// new series costs the decoding path once more per series rather than memory without
/// bound (the catalog's per-metric cap bounds the series themselves).
pub const SERIES_CACHE_ENTRIES: usize = 1 << 20;

/// Stores queued batches, several per WAL sync when they pile up, until the queue closes.
pub(crate) async fn write(storage: Arc<Storage>, mut rx: mpsc::Receiver<RawBatch>) {
    let mut last_logged: Option<Instant> = None;
    let mut failed_since = 0u64;
    let mut state = State::default();
    while let Some(first) = rx.recv().await {
        let mut n = first.batch.len();
        let mut raw = vec![first];
        while n < GROUP_COMMIT_ENVELOPES {
            match rx.try_recv() {
                Ok(b) => {
                    n += b.batch.len();
                    raw.push(b);
                }
                Err(_) => break,
            }
        }
        let s = Arc::clone(&storage);
        let mut held = std::mem::take(&mut state);
        let result = tokio::task::spawn_blocking(move || {
            s.stats.received.add(n as u64);
            let stored = store_group(&s, &raw, &mut held);
            (stored, held)
        })
        .await;
        let result = match result {
            Ok((stored, kept)) => {
                state = kept;
                stored.map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("writer task failed: {e}")),
        };
        if let Err(error) = result {
            storage.stats.errors.inc(Stage::Ingest);
            storage.stats.unstored.add(n as u64);
            failed_since += 1;
            if last_logged.is_none_or(|t| t.elapsed() >= WRITE_ERROR_LOG_INTERVAL) {
                tracing::error!(
                    %error,
                    failed_batches = failed_since,
                    "storage: batches could not be stored (counted in hydrant_storage_unstored_envelopes_total)"
                );
                last_logged = Some(Instant::now());
                failed_since = 0;
            }
        }
    }
}

/// Series ids by identity string, for the gauges' fast path.
#[derive(Debug)]
pub struct SeriesCache {
    ids: HashMap<Box<[u8]>, SeriesId, foldhash::fast::RandomState>,
    /// Most identities held ([`SERIES_CACHE_ENTRIES`]).
    max: usize,
}

impl Default for SeriesCache {
    fn default() -> SeriesCache {
        SeriesCache::with_max(SERIES_CACHE_ENTRIES)
    }
}

impl SeriesCache {
    /// An empty cache holding at most `max` identities.
    pub fn with_max(max: usize) -> SeriesCache {
        SeriesCache {
            ids: HashMap::default(),
            max,
        }
    }

    /// Identities held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn learn(&mut self, identity: Box<[u8]>, id: SeriesId) {
        if self.ids.len() >= self.max {
            self.ids.clear();
        }
        self.ids.insert(identity, id);
    }
}

/// What the writer keeps from one group to the next: the cache, and the group's buffers
/// (fresh memory for every group costs the kernel a page zeroing per page).
#[derive(Debug, Default)]
pub struct State {
    cache: SeriesCache,
    group: Group,
}

/// Stores one group of batches: gauges of cached series by id, new ones once the catalog
/// gave them ids, everything else decoded; one WAL sync for all. Returns the samples stored.
pub fn store_group(
    storage: &Storage,
    batches: &[RawBatch],
    state: &mut State,
) -> Result<usize, store::Error> {
    let State { cache, group } = state;
    group.clear();
    let mut scratch = Scratch::default();
    for env in batches.iter().flat_map(|b| &b.batch) {
        if !group.gauge(env, cache, &mut scratch) {
            group.decoded.push(env.decode());
        }
    }
    if !group.keys.is_empty() {
        let ids = storage.shared.lock().resolve(&group.keys)?;
        for (identity, i) in group.new.drain() {
            if let Some(id) = ids[i] {
                cache.learn(identity, id);
            }
        }
        let before = group.known.len();
        group.known.extend(
            group
                .pending
                .iter()
                .filter_map(|&(i, ts, v)| ids[i].map(|id| (id, ts, v))),
        );
        let refused = group.pending.len() - (group.known.len() - before);
        if refused > 0 {
            storage.shared.lock().refuse(refused as u64);
        }
    }
    storage.ingest(&group.decoded, &group.known)
}

/// One group sorted by path.
#[derive(Debug, Default)]
struct Group {
    /// Samples of cached series.
    known: Vec<(SeriesId, i64, f64)>,
    /// Identities not cached, with their index in `keys`.
    new: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    /// Their series keys, in first-seen order.
    keys: Vec<SeriesKey>,
    /// Samples of those series: index in `keys`, time, value; in arrival order.
    pending: Vec<(usize, i64, f64)>,
    /// Envelopes for the decoding path.
    decoded: Vec<v2::Envelope>,
}

/// Buffers reused from one envelope to the next (borrowing from the group's batches).
#[derive(Debug, Default)]
struct Scratch<'a> {
    identity: Vec<u8>,
    tags: Vec<(&'a [u8], &'a [u8])>,
    metrics: Vec<(&'a [u8], f64)>,
}

impl Group {
    fn clear(&mut self) {
        self.known.clear();
        self.new.clear();
        self.keys.clear();
        self.pending.clear();
        self.decoded.clear();
    }

    /// Sorts a gauge's samples into `known` or `pending`; `false` (nothing recorded) when
    /// the envelope needs the decoding path.
    fn gauge<'a>(
        &mut self,
        env: &'a RawEnvelope,
        cache: &SeriesCache,
        scratch: &mut Scratch<'a>,
    ) -> bool {
        if env.kind() != Kind::Gauge || env.has_deprecated_tags() {
            return false;
        }
        // A repeated tag key or metric name is decoded as its last occurrence: left to
        // the decoder. Gauges carry a handful of metrics, so that check is quadratic.
        let Scratch {
            identity,
            tags,
            metrics,
        } = scratch;
        tags.clear();
        tags.extend(env.tag_bytes());
        tags.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if tags.windows(2).any(|w| w[0].0 == w[1].0) {
            return false;
        }
        metrics.clear();
        metrics.extend(env.gauge_metrics());
        if metrics
            .iter()
            .enumerate()
            .any(|(i, a)| metrics[..i].iter().any(|b| a.0 == b.0))
        {
            return false;
        }
        identity.clear();
        put(identity, env.source_id().as_bytes());
        put(identity, env.instance_id().as_bytes());
        identity.extend_from_slice(&(tags.len() as u32).to_le_bytes());
        for (k, v) in tags.iter() {
            put(identity, k);
            put(identity, v);
        }
        let base = identity.len();
        let ts = env.timestamp() / 1_000_000;
        for &(name, value) in metrics.iter() {
            identity.truncate(base);
            put(identity, name);
            if let Some(&id) = cache.ids.get(&identity[..]) {
                self.known.push((id, ts, value));
                continue;
            }
            let i = match self.new.get(&identity[..]) {
                Some(&i) => i,
                None => {
                    let i = self.keys.len();
                    self.keys.push(key_of(env, tags, name));
                    self.new.insert(identity.clone().into_boxed_slice(), i);
                    i
                }
            };
            self.pending.push((i, ts, value));
        }
        true
    }
}

/// Appends a length-prefixed field.
fn put(identity: &mut Vec<u8>, field: &[u8]) {
    identity.extend_from_slice(&(field.len() as u32).to_le_bytes());
    identity.extend_from_slice(field);
}

/// The series of metric `name` of gauge `env`, as [`model::map`] names it.
fn key_of(env: &RawEnvelope, tags: &[(&[u8], &[u8])], name: &[u8]) -> SeriesKey {
    SeriesKey {
        name: model::metric_name(text(name)),
        labels: model::labels(
            tags.iter().map(|&(k, v)| (text(k), text(v))),
            [],
            env.source_id(),
            env.instance_id(),
        ),
    }
}

#[cfg(test)]
mod tests;
