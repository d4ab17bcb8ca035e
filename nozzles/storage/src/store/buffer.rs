//! The write buffer: samples by hour partition and series, queryable as soon as they are
//! inserted, sealed into Parquet a partition at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::wal::Wal;
use crate::catalog::SeriesId;

/// Milliseconds per partition.
pub const HOUR_MS: i64 = 3_600_000;

/// The hour partition of a timestamp (ms).
pub fn hour_of(ts: i64) -> i64 {
    ts.div_euclid(HOUR_MS)
}

/// Rows by hour partition, each hour's rows allocated once.
pub type HourRows = BTreeMap<i64, Vec<(SeriesId, i64, f64)>>;

/// `samples` split by hour partition, in their order.
pub fn rows_by_hour(samples: &[(SeriesId, i64, f64)]) -> HourRows {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for s in samples {
        *counts.entry(hour_of(s.1)).or_default() += 1;
    }
    let mut rows: HourRows = counts
        .into_iter()
        .map(|(hour, n)| (hour, Vec::with_capacity(n)))
        .collect();
    for s in samples {
        rows.entry(hour_of(s.1)).or_default().push(*s);
    }
    rows
}

/// The schema of the `samples` table.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
    ]))
}

/// One series' samples in a partition.
#[derive(Debug, Default)]
struct Column {
    /// (time, value) in arrival order, side by side: appending touches one cache line.
    points: Vec<(i64, f64)>,
    /// Whether a sample arrived after one with a later time.
    unsorted: bool,
}

impl Column {
    fn push(&mut self, ts: i64, v: f64) {
        if self.points.last().is_some_and(|last| last.0 > ts) {
            self.unsorted = true;
        }
        self.points.push((ts, v));
    }

    /// Sorted by time; a repeated timestamp keeps the last value written.
    fn points(&self) -> Vec<(i64, f64)> {
        let mut p = self.points.clone();
        if self.unsorted {
            p.sort_by_key(|(t, _)| *t); // stable: arrival order within a timestamp
        }
        p.dedup_by(|later, kept| {
            // `dedup_by` keeps the first of a run: carry the later value into it.
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        p
    }
}

/// Series ids per page of [`Columns`]' slot table.
const SLOT_PAGE: usize = 4096;

/// A partition's columns by series id. Ids are dense numbers the catalog assigns, so a
/// table indexed by id finds a column without hashing; it is paged, so a partition
/// holding a few series of high ids costs a page per 4,096 ids, not a slot per id.
#[derive(Debug, Default)]
struct Columns {
    /// Per page of ids: each id's index in `columns` plus one (0: no column).
    slots: Vec<Option<Box<[u32]>>>,
    columns: Vec<(SeriesId, Column)>,
}

impl Columns {
    fn slot(id: SeriesId) -> (usize, usize) {
        let id = usize::try_from(id).expect("series ids are dense and fit in memory");
        (id / SLOT_PAGE, id % SLOT_PAGE)
    }

    fn get(&self, id: SeriesId) -> Option<&Column> {
        let (page, i) = Columns::slot(id);
        let slot = self.slots.get(page)?.as_ref()?[i];
        (slot > 0).then(|| &self.columns[slot as usize - 1].1)
    }

    /// `id`'s column, created empty if it has none.
    fn entry(&mut self, id: SeriesId) -> &mut Column {
        let slot = self.slot_of(id);
        &mut self.columns[slot as usize].1
    }

    /// `id`'s index in `columns`, its column created empty if it has none.
    fn slot_of(&mut self, id: SeriesId) -> u32 {
        let (page, i) = Columns::slot(id);
        if self.slots.len() <= page {
            self.slots.resize_with(page + 1, || None);
        }
        let slots = self.slots[page].get_or_insert_with(|| vec![0; SLOT_PAGE].into());
        if slots[i] == 0 {
            self.columns.push((id, Column::default()));
            slots[i] = u32::try_from(self.columns.len()).expect("fewer than 2^32 series");
        }
        slots[i] - 1
    }

    fn ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.columns.iter().map(|(id, _)| *id)
    }
}

/// One hour of samples.
#[derive(Debug)]
pub struct Partition {
    /// The hour (ms / 3,600,000).
    pub hour: i64,
    series: Columns,
    /// Samples held.
    pub rows: usize,
    /// The write-ahead logs holding its samples (the last takes appends).
    pub wal: Vec<Wal>,
}

impl Partition {
    fn new(hour: i64) -> Partition {
        Partition {
            hour,
            series: Columns::default(),
            rows: 0,
            wal: Vec::new(),
        }
    }

    /// Every sample sorted by (series, time), duplicates resolved, as one batch.
    pub fn to_batch(&self) -> RecordBatch {
        let mut columns: Vec<&(SeriesId, Column)> = self.series.columns.iter().collect();
        columns.sort_unstable_by_key(|(id, _)| *id);
        let (mut s, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for (id, column) in columns {
            for (ts, value) in column.points() {
                s.push(*id);
                t.push(ts);
                v.push(value);
            }
        }
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(UInt64Array::from(s)),
                Arc::new(Int64Array::from(t)),
                Arc::new(Float64Array::from(v)),
            ],
        )
        .expect("columns match the schema")
    }
}

/// Open partitions, and those being sealed (still visible to reads until their part is
/// recorded, so a query never misses data in flight to Parquet).
#[derive(Debug, Default)]
pub struct Buffer {
    parts: BTreeMap<i64, Partition>,
    sealing: Vec<Partition>,
    rows: usize,
    gather: Gather,
}

/// Inserts of at least this many samples are gathered by series first ([`Gather`]).
const GATHER_MIN_SAMPLES: usize = 4096;

/// Groups a large insert's samples by column before appending them. A Firehose group
/// interleaves thousands of series one sample each, and appending in arrival order
/// touches three cold cache lines per sample (the column and both its tails); gathered,
/// each column is touched once per insert. A stable counting sort on the column slots:
/// within a series the arrival order, and so "last write wins", is kept.
#[derive(Debug, Default)]
struct Gather {
    /// Each sample's column slot.
    slots: Vec<u32>,
    /// Per slot: its samples' count, then where its run starts in `points`.
    starts: Vec<u32>,
    /// The samples' (time, value), grouped by slot.
    points: Vec<(i64, f64)>,
}

impl Gather {
    fn insert(&mut self, columns: &mut Columns, samples: &[(SeriesId, i64, f64)]) {
        let Gather {
            slots,
            starts,
            points,
        } = self;
        slots.clear();
        slots.extend(samples.iter().map(|s| columns.slot_of(s.0)));
        starts.clear();
        starts.resize(columns.columns.len() + 1, 0);
        for &slot in slots.iter() {
            starts[slot as usize + 1] += 1;
        }
        let mut at = 0;
        for start in starts.iter_mut() {
            at += *start;
            *start = at;
        }
        // `starts[slot]` is now where slot's run begins; it moves forward as it fills.
        points.clear();
        points.resize(samples.len(), (0, 0.0));
        for (&slot, s) in slots.iter().zip(samples) {
            let next = &mut starts[slot as usize];
            points[*next as usize] = (s.1, s.2);
            *next += 1;
        }
        // Each slot's run ends where the next one began: `starts[slot]` after filling.
        let mut begin = 0;
        for (slot, &end) in starts[..columns.columns.len()].iter().enumerate() {
            if end > begin {
                let column = &mut columns.columns[slot].1;
                for &(ts, v) in &points[begin as usize..end as usize] {
                    column.push(ts, v);
                }
            }
            begin = end;
        }
    }
}

impl Buffer {
    /// Inserts a sample; returns its partition (to attach a WAL).
    pub fn insert(&mut self, id: SeriesId, ts: i64, v: f64) -> &mut Partition {
        let hour = hour_of(ts);
        let p = self
            .parts
            .entry(hour)
            .or_insert_with(|| Partition::new(hour));
        p.series.entry(id).push(ts, v);
        p.rows += 1;
        self.rows += 1;
        p
    }

    /// Inserts samples that all fall in `hour`, finding the partition once.
    pub fn insert_hour(&mut self, hour: i64, samples: &[(SeriesId, i64, f64)]) {
        let p = self
            .parts
            .entry(hour)
            .or_insert_with(|| Partition::new(hour));
        // Worth it when columns get several samples each (a Firehose group read while
        // the writer is behind); a few thousand series of one sample each are not.
        if samples.len() >= GATHER_MIN_SAMPLES && samples.len() >= 4 * p.series.columns.len() {
            self.gather.insert(&mut p.series, samples);
        } else {
            // Runs of one series (an import's lines) find their column once.
            for run in samples.chunk_by(|a, b| a.0 == b.0) {
                let column = p.series.entry(run[0].0);
                for &(_, ts, v) in run {
                    column.push(ts, v);
                }
            }
        }
        p.rows += samples.len();
        self.rows += samples.len();
    }

    /// The partition of `hour`, created if needed.
    pub fn partition(&mut self, hour: i64) -> &mut Partition {
        self.parts
            .entry(hour)
            .or_insert_with(|| Partition::new(hour))
    }

    /// Samples held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Open hours, oldest first.
    pub fn hours(&self) -> Vec<i64> {
        self.parts.keys().copied().collect()
    }

    /// Starts sealing `hour`: its partition stays readable; returns its sorted batch.
    pub fn begin_seal(&mut self, hour: i64) -> Option<RecordBatch> {
        let p = self.parts.remove(&hour)?;
        let batch = p.to_batch();
        self.sealing.push(p);
        Some(batch)
    }

    /// Ends sealing `hour` (its part is recorded): returns the partition, for its WALs.
    pub fn end_seal(&mut self, hour: i64) -> Option<Partition> {
        let i = self.sealing.iter().position(|p| p.hour == hour)?;
        let p = self.sealing.remove(i);
        self.rows -= p.rows;
        Some(p)
    }

    /// Sealing `hour` failed: its partition goes back (merged with any newer samples).
    pub fn abort_seal(&mut self, hour: i64) {
        let Some(i) = self.sealing.iter().position(|p| p.hour == hour) else {
            return;
        };
        let p = self.sealing.remove(i);
        match self.parts.get_mut(&hour) {
            Some(newer) => {
                // The sealing samples were written first: they go first, so a newer
                // write of the same timestamp still wins.
                for (id, c) in p.series.columns {
                    let col = newer.series.entry(id);
                    let written_since = std::mem::replace(col, c);
                    for (t, v) in written_since.points {
                        col.push(t, v);
                    }
                }
                newer.rows += p.rows;
                let mut wal = p.wal;
                wal.append(&mut newer.wal);
                newer.wal = wal;
            }
            None => {
                self.parts.insert(hour, p);
            }
        }
    }

    /// Removes a partition outright (retention).
    pub fn take(&mut self, hour: i64) -> Option<Partition> {
        let p = self.parts.remove(&hour)?;
        self.rows -= p.rows;
        Some(p)
    }

    /// Adds the samples of `ids` within `[start, end]` to `out`.
    pub fn fetch(
        &self,
        ids: &[SeriesId],
        start: i64,
        end: i64,
        out: &mut BTreeMap<SeriesId, Vec<(i64, f64)>>,
    ) {
        let (lo, hi) = (hour_of(start), hour_of(end));
        if lo > hi {
            return; // an empty window (and `range` panics on a reversed one)
        }
        let sealing = self.sealing.iter().filter(|p| p.hour >= lo && p.hour <= hi);
        for p in self.parts.range(lo..=hi).map(|(_, p)| p).chain(sealing) {
            for id in ids {
                if let Some(c) = p.series.get(*id) {
                    let points = c.points();
                    let lo = points.partition_point(|(t, _)| *t < start);
                    let hi = points.partition_point(|(t, _)| *t <= end);
                    if lo < hi {
                        out.entry(*id)
                            .or_default()
                            .extend_from_slice(&points[lo..hi]);
                    }
                }
            }
        }
    }

    /// Adds the ids of series with samples in hours `lo..=hi` to `out`.
    pub fn series_between(&self, lo: i64, hi: i64, out: &mut std::collections::BTreeSet<SeriesId>) {
        if lo > hi {
            return; // an empty window (and `range` panics on a reversed one)
        }
        let sealing = self.sealing.iter().filter(|p| p.hour >= lo && p.hour <= hi);
        for p in self.parts.range(lo..=hi).map(|(_, p)| p).chain(sealing) {
            out.extend(p.series.ids());
        }
    }

    /// Every open partition as a batch (for SQL).
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.parts
            .values()
            .chain(&self.sealing)
            .map(Partition::to_batch)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_and_duplicates_resolve_on_read() {
        let mut b = Buffer::default();
        b.insert(1, 2_000, 2.0);
        b.insert(1, 1_000, 1.0);
        b.insert(1, 2_000, 2.5);
        b.insert(2, HOUR_MS + 5, 9.0);
        assert_eq!(b.rows(), 4);
        assert_eq!(b.hours(), [0, 1]);
        let mut out = BTreeMap::new();
        b.fetch(&[1, 2], 0, 2 * HOUR_MS, &mut out);
        assert_eq!(out[&1], [(1_000, 1.0), (2_000, 2.5)], "last write wins");
        assert_eq!(out[&2], [(HOUR_MS + 5, 9.0)]);
        let mut out = BTreeMap::new();
        b.fetch(&[1], 1_500, 1_999, &mut out);
        assert!(out.is_empty());
        let p = b.take(0).unwrap();
        let batch = p.to_batch();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(b.rows(), 1);
        assert_eq!(hour_of(-1), -1);
    }

    #[test]
    fn columns_are_found_by_id_across_pages() {
        let mut c = Columns::default();
        let ids = [0, 1, 4095, 4096, 10_000_000, 7];
        for (n, id) in ids.iter().enumerate() {
            c.entry(*id).push(n as i64, n as f64);
        }
        c.entry(4096).push(100, 1.0);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(c.get(*id).unwrap().points[0].0, n as i64, "id {id}");
        }
        assert_eq!(c.get(4096).unwrap().points, [(3, 3.0), (100, 1.0)]);
        for missing in [2, 4094, 4097, 9_999_999, 10_000_001, u32::MAX as u64 * 4] {
            assert!(c.get(missing).is_none(), "id {missing}");
        }
        assert_eq!(c.ids().collect::<Vec<_>>(), ids);
        // Pages are made only where ids are: two low pages and the one of 10,000,000.
        assert_eq!(c.slots.iter().flatten().count(), 3);
    }

    #[test]
    fn a_gathered_insert_stores_what_sample_by_sample_does() {
        // Interleaved series, out-of-order times and repeated timestamps (the last written
        // wins), in two inserts so gathered runs extend existing columns.
        let samples: Vec<(SeriesId, i64, f64)> = (0..3 * GATHER_MIN_SAMPLES as u64)
            .map(|i| {
                // (id, ts) repeats every 6,060 samples for the ids below 101.
                let id = (i * 7) % 101 + if i % 5 == 0 { 5_000 } else { 0 };
                let ts = ((i * 13) % 60) as i64;
                (id, ts, i as f64)
            })
            .collect();
        let (a, b) = samples.split_at(GATHER_MIN_SAMPLES + 17);
        let mut gathered = Buffer::default();
        gathered.insert_hour(0, a);
        gathered.insert_hour(0, b);
        let mut one_by_one = Buffer::default();
        for &(id, ts, v) in &samples {
            one_by_one.insert(id, ts, v);
        }
        assert_eq!(gathered.rows(), samples.len());
        assert_eq!(gathered.batches(), one_by_one.batches());
        let ids: Vec<SeriesId> = (0..6_000).collect();
        let (mut x, mut y) = (BTreeMap::new(), BTreeMap::new());
        gathered.fetch(&ids, 0, HOUR_MS, &mut x);
        one_by_one.fetch(&ids, 0, HOUR_MS, &mut y);
        assert_eq!(x, y);
        assert!(x.len() > 150, "{} series", x.len());
    }

    #[test]
    fn a_failed_seal_puts_samples_back_under_newer_writes() {
        let mut b = Buffer::default();
        b.insert(1, 1_000, 1.0);
        b.insert(1, 2_000, 2.0);
        assert!(b.begin_seal(0).is_some());
        b.insert(1, 2_000, 2.5); // rewritten while sealing
        b.insert(1, 500, 0.5);
        b.abort_seal(0);
        let mut out = BTreeMap::new();
        b.fetch(&[1], 0, HOUR_MS, &mut out);
        assert_eq!(out[&1], [(500, 0.5), (1_000, 1.0), (2_000, 2.5)]);
        assert_eq!(b.rows(), 4);
    }
}
