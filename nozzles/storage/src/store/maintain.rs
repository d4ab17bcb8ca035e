//! Background work on a shared store: sealing due partitions, compacting hours with several
//! parts into one, and dropping expired hours; plus the merged read of parts and buffer.
//! File writes happen outside the store's mutex; `files` (a read-write lock) keeps
//! compaction and retention from deleting a part a query is reading.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{Float64Array, Int64Array, RecordBatch, UInt64Array};
use tokio::sync::RwLock;

use super::cache::{Decoded, PartCache};
use super::{Error, Store, buffer, normalize, parts, push_batch, read_parts};
use crate::catalog::SeriesId;
use crate::object::peers::{self, Peers};

/// A store shared by ingest, queries and maintenance.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    /// Distinct series ids per part, read once per part (parts never change).
    part_series: Mutex<HashMap<PathBuf, Arc<Vec<SeriesId>>>>,
    /// Parts decoded for PromQL reads.
    decoded: Mutex<PartCache>,
    /// Parts being decoded, each with the gate later readers wait on.
    decoding: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Held for reading while parts are read; for writing while they are deleted.
    pub files: RwLock<()>,
    /// Part files that could not be deleted after leaving the index (they take disk
    /// space until removed by hand).
    pub delete_failures: AtomicU64,
    /// Other storage nodes sharing an object store (none without one).
    pub peers: Peers,
}

impl Shared {
    /// Deletes a part file that has left the index; a failure is counted and logged.
    fn delete(&self, path: &std::path::Path) {
        self.cache().forget(path);
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                self.delete_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %path.display(), error = %e, "storage: cannot delete a part file");
            }
        }
    }

    /// Shares a store.
    pub fn new(store: Store) -> Arc<Shared> {
        let budget = store.config.part_cache_bytes;
        Arc::new(Shared {
            store: Mutex::new(store),
            part_series: Mutex::default(),
            decoded: Mutex::new(PartCache::new(budget)),
            decoding: Mutex::default(),
            files: RwLock::new(()),
            delete_failures: AtomicU64::new(0),
            peers: Peers::default(),
        })
    }

    /// The store. Held for one batch or one buffer copy, never across an await.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The samples of `ids` in `[start, end]` (ms), from Parquet and the buffer, sorted.
    /// Ids of peers ([`peers::global`]) are read from their parts.
    pub async fn fetch(
        &self,
        ids: &[SeriesId],
        start: i64,
        end: i64,
    ) -> Result<BTreeMap<SeriesId, Vec<(i64, f64)>>, Error> {
        let _files = self.files.read().await;
        let mut groups = peers::by_node(ids);
        let local = groups.remove(&0).unwrap_or_default();
        let mut buffered = BTreeMap::new();
        let parts = {
            let store = self.lock();
            store.fetch_buffer(&local, start, end, &mut buffered);
            store.parts_between(start, end)
        };
        let mut out = BTreeMap::new();
        self.read_into(&parts, &local, start, end, &mut out).await?;
        for (id, points) in buffered {
            out.entry(id).or_default().extend(points);
        }
        let (lo, hi) = (buffer::hour_of(start), buffer::hour_of(end));
        for (node, ids) in groups {
            let parts = self.peer_parts(node, lo, hi).await?;
            let mut theirs = BTreeMap::new();
            self.read_into(&parts, &ids, start, end, &mut theirs)
                .await?;
            out.extend(
                theirs
                    .into_iter()
                    .map(|(id, points)| (peers::global(node, id), points)),
            );
        }
        normalize(&mut out);
        Ok(out)
    }

    /// Peer `node`'s metric parts in the hours `[lo, hi]`, on local disk (downloaded now
    /// when they are not yet).
    async fn peer_parts(&self, node: usize, lo: i64, hi: i64) -> Result<Vec<parts::Part>, Error> {
        let mut out = Vec::new();
        for p in self.peers.parts_between(node, parts::METRICS, lo, hi) {
            out.push(self.peers.local(&p).await.map_err(|e| Error::Part {
                path: p.part.path.clone(),
                message: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Adds the samples of `ids` in `parts` to `out`, part by part in (hour, seq) order:
    /// for a repeated timestamp the later part wins.
    async fn read_into(
        &self,
        parts: &[parts::Part],
        ids: &[SeriesId],
        start: i64,
        end: i64,
        out: &mut BTreeMap<SeriesId, Vec<(i64, f64)>>,
    ) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        for part in parts {
            match self.decoded(part).await? {
                Some(d) => d.fetch(ids, start, end, out),
                None => read_parts(std::slice::from_ref(part), ids, start, end, out).await?,
            }
        }
        Ok(())
    }

    /// The decoded-parts cache.
    fn cache(&self) -> MutexGuard<'_, PartCache> {
        self.decoded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `part` decoded, from the cache or read now; `None` when it is too large to keep.
    /// Queries that miss the same part at once decode it once: the first holds the part's
    /// gate while decoding, the others wait on it and then find it cached.
    async fn decoded(&self, part: &parts::Part) -> Result<Option<Arc<Decoded>>, Error> {
        {
            let mut cache = self.cache();
            if let Some(d) = cache.get(&part.path) {
                return Ok(Some(d));
            }
            if cache.too_large(&part.path) {
                cache.miss(); // read through DataFusion
                return Ok(None);
            }
        }
        let gate = Arc::clone(
            self.decoding
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(part.path.clone())
                .or_default(),
        );
        let _held = gate.lock().await;
        let decoded = self.decode(part).await;
        self.decoding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&part.path);
        decoded
    }

    /// [`Shared::decoded`] behind the part's gate: cached meanwhile, or decoded now.
    async fn decode(&self, part: &parts::Part) -> Result<Option<Arc<Decoded>>, Error> {
        let max_rows = {
            let mut cache = self.cache();
            if let Some(d) = cache.get(&part.path) {
                return Ok(Some(d));
            }
            cache.miss();
            if cache.too_large(&part.path) {
                return Ok(None);
            }
            cache.max_rows()
        };
        let path = part.path.clone();
        let read = tokio::task::spawn_blocking(move || Decoded::read(&path, max_rows))
            .await
            .map_err(|e| Error::Part {
                path: part.path.clone(),
                message: format!("decoding task failed: {e}"),
            })??;
        let mut cache = self.cache();
        Ok(match read {
            Some(d) => {
                let d = Arc::new(d);
                cache.put(part.path.clone(), Arc::clone(&d));
                Some(d)
            }
            None => {
                cache.mark_too_large(part.path.clone());
                None
            }
        })
    }

    /// Decoded-parts cache figures: bytes held, hits, misses.
    pub fn part_cache_stats(&self) -> (usize, u64, u64) {
        let c = self.cache();
        (c.bytes(), c.hits, c.misses)
    }

    /// The series with samples in the hours `[start, end]` (ms) touches: Prometheus'
    /// block-level answer for `/labels` and `/series` with a time range, at hour
    /// granularity.
    pub async fn series_between(&self, start: i64, end: i64) -> Result<BTreeSet<SeriesId>, Error> {
        let _files = self.files.read().await;
        let mut out = BTreeSet::new();
        let parts = {
            let store = self.lock();
            store.buffer_series_between(start, end, &mut out);
            store.parts_between(start, end)
        };
        // Gathered in a vector, sorted once: parts of one hour repeat most ids.
        let mut ids: Vec<SeriesId> = out.into_iter().collect();
        for part in parts {
            ids.extend(self.part_ids(&part).await?.iter());
        }
        let (lo, hi) = (buffer::hour_of(start), buffer::hour_of(end));
        let peers = self.peers.nodes().len();
        for node in 1..=peers {
            for part in self.peer_parts(node, lo, hi).await? {
                let theirs = self.part_ids(&part).await?;
                ids.extend(theirs.iter().map(|id| peers::global(node, *id)));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids.into_iter().collect())
    }

    /// The distinct series ids of a part, read once.
    async fn part_ids(&self, part: &parts::Part) -> Result<Arc<Vec<SeriesId>>, Error> {
        let cached = self
            .part_series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&part.path)
            .cloned();
        if let Some(ids) = cached {
            return Ok(ids);
        }
        let p = part.clone();
        let read = tokio::task::spawn_blocking(move || parts::series_ids(&p)).await;
        let ids = read
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| Error::Io {
                path: part.path.clone(),
                source,
            })?;
        let ids = Arc::new(ids);
        let mut live: Vec<PathBuf> = self
            .lock()
            .all_parts()
            .into_iter()
            .map(|p| p.path)
            .collect();
        live.extend(
            self.peers
                .all_parts(parts::METRICS)
                .into_iter()
                .map(|(_, p)| p.part.path),
        );
        let mut cache = self.part_series.lock().unwrap_or_else(|p| p.into_inner());
        // Forget compacted and expired parts.
        cache.retain(|path, _| live.contains(path));
        cache.insert(part.path.clone(), Arc::clone(&ids));
        Ok(ids)
    }

    /// Deletes local copies of peers' parts the peers no longer have, once no query reads
    /// them.
    pub async fn forget_peer_parts(&self, stale: &[PathBuf]) {
        if stale.is_empty() {
            return;
        }
        let _files = self.files.write().await;
        for path in stale {
            self.delete(path);
        }
    }

    /// Seals every due partition at `now` (ms); returns how many.
    pub async fn seal_due(&self, now: i64) -> Result<usize, Error> {
        let due = self.lock().due(now);
        let dir = self.lock().config().dir.clone();
        let mut n = 0;
        for hour in due {
            let Some((batch, seq)) = self.lock().take(hour) else {
                continue;
            };
            let written = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || parts::write(&dir, hour, seq, &batch))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            };
            self.lock().sealed(hour, written)?;
            n += 1;
        }
        Ok(n)
    }

    /// Merges each closed hour with several parts into one; returns how many hours.
    pub async fn compact(&self) -> Result<usize, Error> {
        let candidates = self.lock().compactable();
        let dir = self.lock().config().dir.clone();
        let mut n = 0;
        for (hour, old) in candidates {
            let seq = old.iter().map(|p| p.seq).max().unwrap_or(0) + 1;
            let inputs = old.clone();
            let dir2 = dir.clone();
            let written = tokio::task::spawn_blocking(move || {
                let batches = parts::read_all(&inputs)?;
                let merged = merge(&batches);
                parts::write(&dir2, hour, seq, &merged)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| Error::Io {
                path: dir.join(parts::hour_dir(hour)),
                source,
            })?;
            let _files = self.files.write().await;
            let gone = self.lock().replace(&old, written);
            for p in gone {
                self.delete(&p.path);
            }
            n += 1;
        }
        Ok(n)
    }

    /// Drops hours older than the retention at `now` (ms); returns how many parts.
    pub async fn expire(&self, now: i64) -> usize {
        let _files = self.files.write().await;
        let (gone, dir) = {
            let mut store = self.lock();
            (store.expire(now), store.config().dir.clone())
        };
        for p in &gone {
            self.delete(&p.path);
            parts::remove_empty(&dir, p.hour);
        }
        gone.len()
    }
}

/// Merges batches of parts (in part order) into one sorted batch; for a repeated
/// (series, ts) the later part wins.
fn merge(batches: &[RecordBatch]) -> RecordBatch {
    let mut all = BTreeMap::new();
    for b in batches {
        push_batch(b, &mut all);
    }
    normalize(&mut all);
    let (mut s, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for (id, points) in all {
        for (ts, value) in points {
            s.push(id);
            t.push(ts);
            v.push(value);
        }
    }
    RecordBatch::try_new(
        buffer::schema(),
        vec![
            Arc::new(UInt64Array::from(s)),
            Arc::new(Int64Array::from(t)),
            Arc::new(Float64Array::from(v)),
        ],
    )
    .expect("columns match the schema")
}
