//! Decoded parts for PromQL reads. A part never changes once written, so the first query
//! that needs one decodes it whole (series ids, timestamps, values) with the `parquet`
//! crate, and later queries take their windows from memory by binary search: no query
//! planning, no file opening, no decoding per selector. Decoded parts are kept in a
//! least-recently-used cache with a byte budget; a part larger than a quarter of the
//! budget is not cached and is read through DataFusion instead (SQL always is).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::Error;
use crate::catalog::SeriesId;

/// Memory decoded parts may hold by default (`--part-cache`).
pub const DEFAULT_PART_CACHE_BYTES: usize = 512 * 1024 * 1024;

/// Bytes one decoded sample takes (timestamp and value).
const SAMPLE_BYTES: usize = 16;

/// One part, decoded: per series (sorted), its rows in `ts`/`values`, sorted by time.
#[derive(Debug, Default)]
pub struct Decoded {
    ids: Vec<SeriesId>,
    /// `ids[i]`'s rows are `starts[i]..starts[i + 1]`.
    starts: Vec<usize>,
    ts: Vec<i64>,
    values: Vec<f64>,
}

impl Decoded {
    /// Reads and decodes the part at `path` (sorted by series, then time, as written);
    /// `None` when it holds more than `max_rows` rows.
    pub fn read(path: &Path, max_rows: usize) -> Result<Option<Decoded>, Error> {
        let bad = |message: String| Error::Part {
            path: path.to_owned(),
            message,
        };
        let file = std::fs::File::open(path).map_err(super::io(path))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
        let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        if rows > max_rows {
            return Ok(None);
        }
        let reader = builder.build().map_err(|e| bad(e.to_string()))?;
        let mut d = Decoded {
            ts: Vec::with_capacity(rows),
            values: Vec::with_capacity(rows),
            ..Decoded::default()
        };
        for batch in reader {
            let batch = batch.map_err(|e| bad(e.to_string()))?;
            let (Some(s), Some(t), Some(v)) = (
                batch.column(0).as_any().downcast_ref::<UInt64Array>(),
                batch.column(1).as_any().downcast_ref::<Int64Array>(),
                batch.column(2).as_any().downcast_ref::<Float64Array>(),
            ) else {
                return Err(bad("not a samples part (series_id, ts, value)".into()));
            };
            for i in 0..s.len() {
                let id = s.value(i);
                if d.ids.last() != Some(&id) {
                    if d.ids.last().is_some_and(|last| *last > id) {
                        return Err(bad("rows are not sorted by series".into()));
                    }
                    d.ids.push(id);
                    d.starts.push(d.ts.len());
                }
                d.ts.push(t.value(i));
                d.values.push(v.value(i));
            }
        }
        d.starts.push(d.ts.len());
        Ok(Some(d))
    }

    /// Memory it holds.
    pub fn bytes(&self) -> usize {
        self.ts.len() * SAMPLE_BYTES + self.ids.len() * 16
    }

    /// Appends the samples of `ids` in `[start, end]` to `out`.
    pub fn fetch(
        &self,
        ids: &[SeriesId],
        start: i64,
        end: i64,
        out: &mut BTreeMap<SeriesId, Vec<(i64, f64)>>,
    ) {
        for id in ids {
            let Ok(i) = self.ids.binary_search(id) else {
                continue;
            };
            let rows = self.starts[i]..self.starts[i + 1];
            let ts = &self.ts[rows.clone()];
            let lo = ts.partition_point(|t| *t < start);
            let hi = ts.partition_point(|t| *t <= end);
            if lo < hi {
                let base = rows.start;
                out.entry(*id)
                    .or_default()
                    .extend((base + lo..base + hi).map(|r| (self.ts[r], self.values[r])));
            }
        }
    }
}

/// Decoded parts by path, least recently used first out.
#[derive(Debug)]
pub struct PartCache {
    budget: usize,
    bytes: usize,
    tick: u64,
    parts: HashMap<PathBuf, (Arc<Decoded>, u64)>,
    /// Parts found too large to decode whole (not opened again to find out).
    large: HashSet<PathBuf>,
    /// Reads that found their part decoded, and reads that had to decode it.
    pub hits: u64,
    /// See `hits`.
    pub misses: u64,
}

impl PartCache {
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> PartCache {
        PartCache {
            budget,
            bytes: 0,
            tick: 0,
            parts: HashMap::new(),
            large: HashSet::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// Most rows a part may have to be decoded whole: its decoded size must fit a quarter
    /// of the budget.
    pub fn max_rows(&self) -> usize {
        self.budget / 4 / SAMPLE_BYTES
    }

    /// Whether `path` is known to be too large to decode whole.
    pub fn too_large(&self, path: &Path) -> bool {
        self.large.contains(path)
    }

    /// Remembers that `path` is too large to decode whole.
    pub fn mark_too_large(&mut self, path: PathBuf) {
        self.large.insert(path);
    }

    /// The decoded part at `path`, if cached (counted as a hit).
    pub fn get(&mut self, path: &Path) -> Option<Arc<Decoded>> {
        self.tick += 1;
        let tick = self.tick;
        let (d, used) = self.parts.get_mut(path)?;
        *used = tick;
        self.hits += 1;
        Some(Arc::clone(d))
    }

    /// Counts a read that had to decode the part from disk.
    pub fn miss(&mut self) {
        self.misses += 1;
    }

    /// Keeps `d` for `path`, evicting the least recently used parts beyond the budget.
    pub fn put(&mut self, path: PathBuf, d: Arc<Decoded>) {
        self.tick += 1;
        let size = d.bytes();
        if let Some((old, _)) = self.parts.insert(path, (d, self.tick)) {
            self.bytes -= old.bytes();
        }
        self.bytes += size;
        while self.bytes > self.budget {
            let Some(oldest) = self
                .parts
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some((gone, _)) = self.parts.remove(&oldest) {
                self.bytes -= gone.bytes();
            }
        }
    }

    /// Forgets parts that left the index (compacted or expired).
    pub fn forget(&mut self, path: &Path) {
        self.large.remove(path);
        if let Some((gone, _)) = self.parts.remove(path) {
            self.bytes -= gone.bytes();
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(ids: &[(SeriesId, &[(i64, f64)])]) -> Arc<Decoded> {
        let mut d = Decoded::default();
        for (id, pts) in ids {
            d.ids.push(*id);
            d.starts.push(d.ts.len());
            for (t, v) in *pts {
                d.ts.push(*t);
                d.values.push(*v);
            }
        }
        d.starts.push(d.ts.len());
        Arc::new(d)
    }

    #[test]
    fn windows_come_from_the_decoded_rows() {
        let d = decoded(&[(1, &[(10, 1.0), (20, 2.0), (30, 3.0)]), (4, &[(15, 9.0)])]);
        let mut out = BTreeMap::new();
        d.fetch(&[1, 2, 4], 20, 30, &mut out);
        assert_eq!(out[&1], [(20, 2.0), (30, 3.0)]);
        assert!(!out.contains_key(&2));
        assert!(!out.contains_key(&4), "15 is before the window");
    }

    #[test]
    fn the_least_recently_used_part_leaves_first() {
        let one = decoded(&[(1, &[(1, 1.0); 4])]);
        let size = one.bytes();
        let mut c = PartCache::new(size * 2);
        c.put("a".into(), Arc::clone(&one));
        c.put("b".into(), Arc::clone(&one));
        assert!(c.get(Path::new("a")).is_some());
        c.put("c".into(), one);
        assert!(c.get(Path::new("b")).is_none(), "b was used least recently");
        assert!(c.get(Path::new("a")).is_some() && c.get(Path::new("c")).is_some());
        assert_eq!(c.bytes(), size * 2);
        c.forget(Path::new("a"));
        assert_eq!(c.bytes(), size);
        assert_eq!(PartCache::new(64 * 1024).max_rows(), 1024);
    }
}
