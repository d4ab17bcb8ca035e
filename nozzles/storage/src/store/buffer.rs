//! The write buffer: samples by hour partition and series, queryable as soon as they are
//! inserted, sealed into Parquet a partition at a time.

use std::collections::{BTreeMap, HashMap};
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

#[derive(Debug, Default)]
struct Column {
    ts: Vec<i64>,
    values: Vec<f64>,
    sorted: bool,
}

impl Column {
    fn push(&mut self, ts: i64, v: f64) {
        if self.ts.last().is_some_and(|last| *last > ts) {
            self.sorted = false;
        }
        self.ts.push(ts);
        self.values.push(v);
    }

    /// Sorted by time; a repeated timestamp keeps the last value written.
    fn points(&self) -> Vec<(i64, f64)> {
        let mut p: Vec<(i64, f64)> = self
            .ts
            .iter()
            .copied()
            .zip(self.values.iter().copied())
            .collect();
        if !self.sorted {
            p.sort_by_key(|(t, _)| *t);
        }
        let mut out: Vec<(i64, f64)> = Vec::with_capacity(p.len());
        for (t, v) in p {
            match out.last_mut() {
                Some(last) if last.0 == t => last.1 = v,
                _ => out.push((t, v)),
            }
        }
        out
    }
}

/// One hour of samples.
#[derive(Debug)]
pub struct Partition {
    /// The hour (ms / 3,600,000).
    pub hour: i64,
    /// Keyed with a fast hasher: ids are dense numbers we assign, not attacker input.
    series: HashMap<SeriesId, Column, foldhash::fast::RandomState>,
    /// Samples held.
    pub rows: usize,
    /// The write-ahead logs holding its samples (the last takes appends).
    pub wal: Vec<Wal>,
}

impl Partition {
    fn new(hour: i64) -> Partition {
        Partition {
            hour,
            series: HashMap::default(),
            rows: 0,
            wal: Vec::new(),
        }
    }

    /// Every sample sorted by (series, time), duplicates resolved, as one batch.
    pub fn to_batch(&self) -> RecordBatch {
        let mut ids: Vec<SeriesId> = self.series.keys().copied().collect();
        ids.sort_unstable();
        let (mut s, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for id in ids {
            for (ts, value) in self.series[&id].points() {
                s.push(id);
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
}

impl Buffer {
    /// Inserts a sample; returns its partition (to attach a WAL).
    pub fn insert(&mut self, id: SeriesId, ts: i64, v: f64) -> &mut Partition {
        let hour = hour_of(ts);
        let p = self
            .parts
            .entry(hour)
            .or_insert_with(|| Partition::new(hour));
        p.series.entry(id).or_default().push(ts, v);
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
        // Runs of one series (an import's lines) find their column once.
        for run in samples.chunk_by(|a, b| a.0 == b.0) {
            let column = p.series.entry(run[0].0).or_default();
            for &(_, ts, v) in run {
                column.push(ts, v);
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
                for (id, c) in p.series {
                    let col = newer.series.entry(id).or_default();
                    for (t, v) in c.ts.into_iter().zip(c.values) {
                        col.push(t, v);
                    }
                    col.sorted = false;
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
                if let Some(c) = p.series.get(id) {
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
            out.extend(p.series.keys());
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
}
