//! The storage engine: catalog + write buffer (+ WAL) + Parquet parts, with sealing,
//! compaction and retention. Reads merge the Parquet parts (through DataFusion) with the
//! buffer, so a sample is queryable from the moment it is ingested.
//!
//! Layout under the data dir: `series.jsonl` (the catalog, append-only, id order),
//! `wal/<hour>.wal` (per open partition), `metrics/date=…/hour=…/part-*.parquet`.
//!
//! Durability: with the WAL on, new series are synced to `series.jsonl` and samples to the
//! WAL before `ingest` returns, so everything counted as ingested survives a crash.
//! Sealing writes the part (temp file, sync, rename) before deleting the WAL.
//!
//! Faults (a full disk, a crash, damaged bytes):
//! - Each catalog line carries its id and a CRC-32 of its JSON. A failed catalog or WAL
//!   write is cut back off its file and the batch's new series are forgotten, so nothing
//!   unacknowledged ever sits before what is acknowledged later.
//! - Loading skips and counts a damaged catalog line or WAL record and goes on; a series
//!   whose line is lost keeps its id under a placeholder (`hydrant_lost_series`), and so
//!   does an id only the WAL knows: no id is ever given to another series, so no sample is
//!   ever attributed to the wrong one.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::RecordBatch;

use crate::catalog::{Catalog, SeriesId};
use crate::model::Point;

pub mod buffer;
pub mod cache;
pub mod maintain;
pub mod parts;
mod read;
pub mod series_log;
pub mod wal;

/// The checksum of every record and file the store writes (WAL records, catalog lines,
/// Parquet parts): CRC-32C, with the CPU's CRC instruction where it has one (SSE 4.2;
/// the table-driven form before it took a twentieth of the Firehose writer's time).
pub fn crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

pub use series_log::LOST_SERIES;

use buffer::{Buffer, HOUR_MS, hour_of};
use parts::Part;
pub use read::{normalize, push_batch, read_parts};

/// A partition is sealed this long after its hour ends (late samples still land in it).
pub const SEAL_GRACE_MS: i64 = 5 * 60 * 1000;

/// Default buffer size that forces sealing the oldest partition early.
pub const DEFAULT_SEAL_ROWS: usize = 8 * 1024 * 1024;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("storage {path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// DataFusion failed reading parts.
    #[error("storage query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// A part could not be decoded.
    #[error("storage part {path}: {message}")]
    Part {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub dir: PathBuf,
    /// Sync every ingest to a write-ahead log.
    pub wal: bool,
    /// Series cap per metric name.
    pub max_series_per_metric: usize,
    /// Whole hours older than this are dropped.
    pub retention: Duration,
    /// Buffer rows that force an early seal.
    pub seal_rows: usize,
    /// Memory decoded parts may hold for PromQL reads ([`cache`]).
    pub part_cache_bytes: usize,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Samples stored (after the WAL sync when enabled).
    pub ingested: u64,
    /// Samples refused by the cardinality cap.
    pub refused: u64,
    /// Parts written by sealing.
    pub sealed: u64,
    /// Compactions done.
    pub compactions: u64,
    /// Hours dropped by retention.
    pub expired_hours: u64,
    /// WAL samples replayed at start.
    pub replayed: u64,
    /// WAL files whose torn tail was dropped at start.
    pub torn_wals: u64,
    /// Damaged catalog lines and WAL records skipped at start.
    pub corrupt_records: u64,
    /// Damaged Parquet parts moved to quarantine at start.
    pub quarantined_parts: u64,
}

/// The engine's state (behind the nozzle's mutex).
#[derive(Debug)]
pub struct Store {
    config: Config,
    /// The series catalog.
    pub catalog: Catalog,
    buffer: Buffer,
    parts: Vec<Part>,
    series_log: File,
    /// Bytes of whole lines in `series_log`: where a failed append is cut back to.
    series_log_len: u64,
    /// Running totals of counted series (request and log-line counters).
    totals: HashMap<SeriesId, f64>,
    /// Per series of distinct observations (timers): the last timestamp received and the
    /// millisecond it was stored at, so observations sharing one are all kept.
    distinct_last: HashMap<SeriesId, (i64, i64)>,
    /// Counters.
    pub stats: Stats,
    /// Next WAL generation.
    next_wal: u64,
}

impl Store {
    /// Opens the store in `config.dir`: loads the catalog, finds the parts, replays the WAL.
    pub fn open(config: Config) -> Result<Store, Error> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let log_path = dir.join("series.jsonl");
        let (catalog, corrupt) = series_log::load(&log_path, config.max_series_per_metric)?;
        let series_log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let series_log_len = series_log.metadata().map_err(io(&log_path))?.len();
        let found = parts::discover(&dir);
        let mut store = Store {
            parts: found.parts,
            catalog,
            buffer: Buffer::default(),
            series_log,
            series_log_len,
            totals: HashMap::new(),
            distinct_last: HashMap::new(),
            stats: Stats {
                corrupt_records: corrupt,
                quarantined_parts: found.quarantined,
                ..Stats::default()
            },
            next_wal: 0,
            config,
        };
        let wal_dir = dir.join("wal");
        let known = store.catalog.len();
        for id in wal::ids(&wal_dir) {
            let replayed = wal::replay(&wal_dir, id).map_err(io(&wal_dir))?;
            store.stats.torn_wals += u64::from(replayed.torn);
            store.stats.corrupt_records += replayed.corrupt;
            store.stats.replayed += replayed.samples.len() as u64;
            for (sid, ts, v) in replayed.samples {
                // An id only the WAL knows (its catalog line was lost) keeps its place.
                while store.catalog.len() as SeriesId <= sid
                    && sid < (known as SeriesId).saturating_add(series_log::MAX_LOST_IDS)
                {
                    let next = store.catalog.len() as SeriesId;
                    store.catalog.insert(series_log::lost(next));
                }
                if (sid as usize) < store.catalog.len() {
                    store.buffer.insert(sid, ts, v);
                } else {
                    store.stats.corrupt_records += 1;
                }
            }
            // The file backs its hour's partition until that is sealed.
            let w = wal::Wal::open(&wal_dir, id).map_err(io(&wal_dir))?;
            store.buffer.partition(id.hour).wal.push(w);
            store.next_wal = store.next_wal.max(id.seq + 1);
        }
        if store.catalog.len() > known {
            tracing::warn!(
                placeholders = store.catalog.len() - known,
                "WAL samples of series whose catalog line was lost kept under {LOST_SERIES}"
            );
            series_log::rewrite(&log_path, &store.catalog)?;
            store.series_log = OpenOptions::new()
                .append(true)
                .open(&log_path)
                .map_err(io(&log_path))?;
            store.series_log_len = store.series_log.metadata().map_err(io(&log_path))?.len();
        }
        Ok(store)
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Samples in the buffer.
    pub fn buffer_rows(&self) -> usize {
        self.buffer.rows()
    }

    /// Parquet parts and their total size.
    pub fn parts(&self) -> (usize, u64) {
        (self.parts.len(), self.parts.iter().map(|p| p.bytes).sum())
    }

    /// Stores points; returns how many were stored (the rest hit the cardinality cap).
    pub fn ingest(&mut self, points: &[Point]) -> Result<usize, Error> {
        self.ingest_mixed(points, &[], None)
    }

    /// Stores points together with samples of series already given ids
    /// ([`Store::resolve`]), one WAL record per hour for both, and appends what was stored
    /// to `forward` (for the sinks) when given.
    pub fn ingest_mixed(
        &mut self,
        points: &[Point],
        resolved: &[(SeriesId, i64, f64)],
        forward: Option<&mut Vec<crate::sink::Sample>>,
    ) -> Result<usize, Error> {
        // The common case, the writer's fast path within one hour, is stored as it is.
        if points.is_empty()
            && let Some(first) = resolved.first()
            && resolved.iter().all(|s| hour_of(s.1) == hour_of(first.1))
        {
            return self.store_rows([(hour_of(first.1), resolved)], forward);
        }
        let mut rows = buffer::rows_by_hour(resolved);
        let mut new_series = String::new();
        let known_before = self.catalog.len();
        for p in points {
            let Some(id) = self.id_of(&p.key, &mut new_series) else {
                self.stats.refused += 1;
                continue;
            };
            let value = if p.increment {
                let total = self.totals.entry(id).or_default();
                *total += p.value;
                *total
            } else {
                p.value
            };
            let ts = if p.distinct {
                let last = self.distinct_last.entry(id).or_insert((i64::MIN, i64::MIN));
                let ts = if p.ts == last.0 { last.1 + 1 } else { p.ts };
                *last = (p.ts, ts);
                ts
            } else {
                p.ts
            };
            rows.entry(hour_of(ts)).or_default().push((id, ts, value));
        }
        self.log_series(&new_series, known_before)?;
        self.store_rows(rows.iter().map(|(h, r)| (*h, &r[..])), forward)
    }

    /// Ids for `keys` (`None`: refused by the series cap), new series logged durably
    /// before this returns, as [`Store::ingest`] does.
    pub fn resolve(
        &mut self,
        keys: &[crate::model::SeriesKey],
    ) -> Result<Vec<Option<SeriesId>>, Error> {
        let mut new_series = String::new();
        let known_before = self.catalog.len();
        let ids = keys
            .iter()
            .map(|key| self.id_of(key, &mut new_series))
            .collect();
        self.log_series(&new_series, known_before)?;
        Ok(ids)
    }

    /// `key`'s id, a new series' catalog line appended to `new_series` (for
    /// [`Store::log_series`]); `None` when the series cap refuses it.
    fn id_of(
        &mut self,
        key: &crate::model::SeriesKey,
        new_series: &mut String,
    ) -> Option<SeriesId> {
        let (id, new) = self.catalog.get_or_insert(key).ok()?;
        if new {
            new_series.push_str(&series_log::line(id, key));
            new_series.push('\n');
        }
        Some(id)
    }

    /// Counts samples refused by the series cap outside [`Store::ingest`] (an import).
    pub fn refuse(&mut self, n: u64) {
        self.stats.refused += n;
    }

    /// Appends the catalog lines of new series (synced with the WAL on); on failure forgets
    /// the series added since `known_before`, so their ids are given again.
    fn log_series(&mut self, new_series: &str, known_before: usize) -> Result<(), Error> {
        if new_series.is_empty() {
            return Ok(());
        }
        let log_path = self.config.dir.join("series.jsonl");
        let mut written = self.series_log.write_all(new_series.as_bytes());
        if self.config.wal {
            written = written.and_then(|()| self.series_log.sync_data());
        }
        if let Err(e) = written {
            let _ = self.series_log.set_len(self.series_log_len);
            self.catalog.rollback(known_before);
            return Err(io(&log_path)(e));
        }
        self.series_log_len += new_series.len() as u64;
        Ok(())
    }

    /// Writes rows, by hour, to the WAL (when on) and the buffer.
    fn store_rows<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (i64, &'a [(SeriesId, i64, f64)])>,
        mut forward: Option<&mut Vec<crate::sink::Sample>>,
    ) -> Result<usize, Error> {
        let mut stored = 0;
        let wal_dir = self.config.dir.join("wal");
        for (hour, samples) in rows {
            if self.config.wal {
                let seq = self.next_wal;
                let part = self.buffer.partition(hour);
                if part.wal.is_empty() {
                    let id = wal::WalId { hour, seq };
                    part.wal
                        .push(wal::Wal::open(&wal_dir, id).map_err(io(&wal_dir))?);
                    self.next_wal += 1;
                }
                let part = self.buffer.partition(hour);
                if let Some(w) = part.wal.last_mut() {
                    w.append(samples).map_err(io(&wal_dir))?;
                }
            }
            self.buffer.insert_hour(hour, samples);
            if let Some(out) = forward.as_deref_mut() {
                out.extend(samples.iter().map(|(id, ts, v)| crate::sink::Sample {
                    key: self.catalog.key_arc(*id),
                    ts: *ts,
                    value: *v,
                }));
            }
            stored += samples.len();
        }
        self.stats.ingested += stored as u64;
        Ok(stored)
    }

    /// Hours to seal at `now` (ms): closed hours past the grace period, and the oldest hour
    /// while the buffer is over its row budget.
    pub fn due(&self, now: i64) -> Vec<i64> {
        let mut hours: Vec<i64> = self
            .buffer
            .hours()
            .into_iter()
            .filter(|h| (h + 1) * HOUR_MS + SEAL_GRACE_MS <= now)
            .collect();
        if hours.is_empty()
            && self.buffer.rows() > self.config.seal_rows
            && let Some(oldest) = self.buffer.hours().first()
        {
            hours.push(*oldest);
        }
        hours
    }

    /// Starts sealing `hour`: returns its sorted batch and the part sequence to use. The
    /// partition stays readable until [`sealed`](Self::sealed).
    pub fn take(&mut self, hour: i64) -> Option<(RecordBatch, u64)> {
        let seq = self
            .parts
            .iter()
            .filter(|p| p.hour == hour)
            .map(|p| p.seq + 1)
            .max()
            .unwrap_or(0);
        self.buffer.begin_seal(hour).map(|b| (b, seq))
    }

    /// Records the written part and drops the partition with its WALs, in one step for
    /// readers; or, when writing failed, puts the partition back.
    pub fn sealed(&mut self, hour: i64, result: std::io::Result<Part>) -> Result<(), Error> {
        match result {
            Ok(part) => {
                self.parts.push(part);
                self.parts.sort_by_key(|p| (p.hour, p.seq));
                self.stats.sealed += 1;
                let wal_dir = self.config.dir.join("wal");
                if let Some(p) = self.buffer.end_seal(hour) {
                    for w in p.wal {
                        w.remove().map_err(io(&wal_dir))?;
                    }
                }
                Ok(())
            }
            Err(source) => {
                self.buffer.abort_seal(hour);
                Err(Error::Io {
                    path: self.config.dir.join("metrics"),
                    source,
                })
            }
        }
    }

    /// Parts overlapping `[start, end]` (ms).
    pub fn parts_between(&self, start: i64, end: i64) -> Vec<Part> {
        let (lo, hi) = (hour_of(start), hour_of(end));
        self.parts
            .iter()
            .filter(|p| p.hour >= lo && p.hour <= hi)
            .cloned()
            .collect()
    }

    /// Adds the ids of buffered series with samples in the hours `[start, end]` touches.
    pub fn buffer_series_between(
        &self,
        start: i64,
        end: i64,
        out: &mut std::collections::BTreeSet<SeriesId>,
    ) {
        self.buffer
            .series_between(hour_of(start), hour_of(end), out);
    }

    /// Adds the buffered samples of `ids` in `[start, end]` to `out`.
    pub fn fetch_buffer(
        &self,
        ids: &[SeriesId],
        start: i64,
        end: i64,
        out: &mut BTreeMap<SeriesId, Vec<(i64, f64)>>,
    ) {
        self.buffer.fetch(ids, start, end, out);
    }

    /// Every buffered sample as batches (for SQL).
    pub fn buffer_batches(&self) -> Vec<RecordBatch> {
        self.buffer.batches()
    }

    /// Every part (for SQL).
    pub fn all_parts(&self) -> Vec<Part> {
        self.parts.clone()
    }

    /// Hours with more than one part (compaction candidates), excluding open ones.
    pub fn compactable(&self) -> Vec<(i64, Vec<Part>)> {
        let open = self.buffer.hours();
        let mut by_hour: BTreeMap<i64, Vec<Part>> = BTreeMap::new();
        for p in &self.parts {
            by_hour.entry(p.hour).or_default().push(p.clone());
        }
        by_hour
            .into_iter()
            .filter(|(h, parts)| parts.len() > 1 && !open.contains(h))
            .collect()
    }

    /// Replaces `old` parts with `new` (compaction); returns the files to delete.
    pub fn replace(&mut self, old: &[Part], new: Part) -> Vec<Part> {
        self.parts.retain(|p| !old.contains(p));
        self.parts.push(new);
        self.parts.sort_by_key(|p| (p.hour, p.seq));
        self.stats.compactions += 1;
        old.to_vec()
    }

    /// Drops everything older than the retention at `now` (ms); returns the parts to delete.
    pub fn expire(&mut self, now: i64) -> Vec<Part> {
        let keep_from = hour_of(now - self.config.retention.as_millis() as i64);
        let (gone, kept): (Vec<Part>, Vec<Part>) = std::mem::take(&mut self.parts)
            .into_iter()
            .partition(|p| p.hour < keep_from);
        self.parts = kept;
        let mut hours: Vec<i64> = gone.iter().map(|p| p.hour).collect();
        for h in self.buffer.hours().into_iter().filter(|h| *h < keep_from) {
            if let Some(p) = self.buffer.take(h) {
                hours.push(h);
                for w in p.wal {
                    let _ = w.remove();
                }
            }
        }
        hours.sort_unstable();
        hours.dedup();
        self.stats.expired_hours += hours.len() as u64;
        gone
    }
}

#[cfg(test)]
mod tests;
