//! Log rows on disk: hourly Parquet parts under `<data>/logs/`, sorted by (source_id, ts)
//! and zstd-compressed. Each maintenance pass writes the buffered rows (one part per hour
//! they fall in), merges the parts of hours that are over, and drops hours past retention.
//! Rows being written stay visible to SQL until their part is recorded; a failed write
//! puts them back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use tokio::sync::RwLock;

use super::{LogTable, schema, to_batch};
use crate::model::LogRow;
use crate::store::buffer::hour_of;
use crate::store::parts::{self, Part};

/// The directory of the log parts, under the data dir.
pub const LOGS: &str = "logs";

/// Buffered rows, rows being written, and the parts on disk.
#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    buffer: LogTable,
    writing: Vec<LogRow>,
    parts: Vec<Part>,
    next_seq: u64,
    /// Rows written to parts since start.
    pub written: u64,
    /// Damaged parts moved to quarantine when the store opened.
    pub quarantined: u64,
}

/// One part to write.
#[derive(Debug)]
pub struct Write {
    /// Its hour.
    pub hour: i64,
    /// Its sequence number.
    pub seq: u64,
    /// Its rows, sorted.
    pub batch: RecordBatch,
}

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 1,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
        ]))
        .build()
}

/// Sorts a `logs` batch by (source_id, ts).
fn sorted(batch: &RecordBatch) -> std::io::Result<RecordBatch> {
    let keys = [
        SortColumn {
            values: std::sync::Arc::clone(batch.column(1)),
            options: None,
        },
        SortColumn {
            values: std::sync::Arc::clone(batch.column(0)),
            options: None,
        },
    ];
    let order = lexsort_to_indices(&keys, None).map_err(std::io::Error::other)?;
    take_record_batch(batch, &order).map_err(std::io::Error::other)
}

impl LogStore {
    /// Opens the parts under `dir` (the data dir); `max_rows` bounds the buffer.
    pub fn open(dir: &Path, max_rows: usize) -> LogStore {
        let found = parts::discover_table(dir, LOGS);
        let parts = found.parts;
        let next_seq = parts.iter().map(|p| p.seq + 1).max().unwrap_or(0);
        LogStore {
            dir: dir.to_owned(),
            buffer: LogTable::new(max_rows),
            writing: Vec::new(),
            parts,
            next_seq,
            written: 0,
            quarantined: found.quarantined,
        }
    }

    /// Adds a row to the buffer.
    pub fn push(&mut self, row: LogRow) {
        self.buffer.push(row);
    }

    /// The buffer (rows held, evictions).
    pub fn buffer(&self) -> &LogTable {
        &self.buffer
    }

    /// Rows in memory: buffered and being written.
    pub fn rows_in_memory(&self) -> usize {
        self.buffer.len() + self.writing.len()
    }

    /// The parts on disk.
    pub fn parts(&self) -> Vec<Part> {
        self.parts.clone()
    }

    /// Rows not in a part yet, as batches (for SQL).
    pub fn batches(&self) -> Vec<RecordBatch> {
        let mut out = vec![self.buffer.to_batch()];
        if !self.writing.is_empty() {
            out.push(to_batch(self.writing.iter()));
        }
        out
    }

    /// Moves the buffered rows to "being written" and returns one part per hour to write.
    /// Nothing when a write is already under way.
    pub fn begin_write(&mut self) -> Vec<Write> {
        if !self.writing.is_empty() || self.buffer.is_empty() {
            return Vec::new();
        }
        self.writing = self.buffer.take();
        let mut hours: BTreeMap<i64, Vec<&LogRow>> = BTreeMap::new();
        for row in &self.writing {
            hours
                .entry(hour_of(row.ts / 1_000_000))
                .or_default()
                .push(row);
        }
        let mut out = Vec::new();
        for (hour, rows) in hours {
            let seq = self.next_seq;
            self.next_seq += 1;
            let batch = to_batch(rows.into_iter());
            out.push(Write { hour, seq, batch });
        }
        out
    }

    /// Records the written parts, or puts the rows back when the write failed.
    pub fn end_write(&mut self, result: std::io::Result<Vec<Part>>) -> std::io::Result<()> {
        let rows = std::mem::take(&mut self.writing);
        match result {
            Ok(parts) => {
                self.written += rows.len() as u64;
                self.parts.extend(parts);
                self.parts.sort_by_key(|p| (p.hour, p.seq));
                Ok(())
            }
            Err(e) => {
                self.buffer.restore(rows);
                Err(e)
            }
        }
    }

    /// Hours before the one of `now_ms` with several parts, and a fresh sequence number
    /// for each merged part.
    pub fn compactable(&mut self, now_ms: i64) -> Vec<(i64, Vec<Part>, u64)> {
        let current = hour_of(now_ms);
        let mut by_hour: BTreeMap<i64, Vec<Part>> = BTreeMap::new();
        for p in self.parts.iter().filter(|p| p.hour < current) {
            by_hour.entry(p.hour).or_default().push(p.clone());
        }
        let mut out = Vec::new();
        for (hour, parts) in by_hour.into_iter().filter(|(_, p)| p.len() > 1) {
            let seq = self.next_seq;
            self.next_seq += 1;
            out.push((hour, parts, seq));
        }
        out
    }

    /// Replaces `old` parts by `new` in the list.
    pub fn replace(&mut self, old: &[Part], new: Part) {
        self.parts.retain(|p| !old.contains(p));
        self.parts.push(new);
        self.parts.sort_by_key(|p| (p.hour, p.seq));
    }

    /// Removes from the list the parts of hours wholly older than `retention`; returns them.
    pub fn expire(&mut self, now_ms: i64, retention: Duration) -> Vec<Part> {
        let oldest = hour_of(now_ms - retention.as_millis() as i64);
        let (gone, kept) = self.parts.drain(..).partition(|p| p.hour < oldest);
        self.parts = kept;
        gone
    }
}

/// What one maintenance pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Parts written from the buffer.
    pub written: usize,
    /// Hours merged into one part.
    pub compacted: usize,
    /// Parts dropped by retention.
    pub expired: usize,
}

/// One maintenance pass: write, compact, expire. `files` is held for writing while parts
/// are deleted, so SQL never loses a file it is reading.
pub async fn maintain(
    logs: &Mutex<LogStore>,
    files: &RwLock<()>,
    now_ms: i64,
    retention: Duration,
) -> std::io::Result<Pass> {
    let lock = || logs.lock().unwrap_or_else(|p| p.into_inner());
    let mut pass = Pass::default();
    let (dir, writes) = {
        let mut l = lock();
        (l.dir.clone(), l.begin_write())
    };
    if !writes.is_empty() {
        let d = dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            writes
                .iter()
                .map(|w| parts::write_table(&d, LOGS, w.hour, w.seq, &w.batch, properties()))
                .collect::<std::io::Result<Vec<Part>>>()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        pass.written = result.as_ref().map_or(0, Vec::len);
        lock().end_write(result)?;
    }
    let compactable = lock().compactable(now_ms);
    for (hour, old, seq) in compactable {
        let d = dir.clone();
        let inputs = old.clone();
        let merged = tokio::task::spawn_blocking(move || {
            let batches = parts::read_all(&inputs)?;
            let batch = concat_batches(&schema(), &batches).map_err(std::io::Error::other)?;
            parts::write_table(&d, LOGS, hour, seq, &sorted(&batch)?, properties())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))?;
        let _w = files.write().await;
        lock().replace(&old, merged);
        for p in &old {
            std::fs::remove_file(&p.path)?;
        }
        pass.compacted += 1;
    }
    let gone = lock().expire(now_ms, retention);
    if !gone.is_empty() {
        let _w = files.write().await;
        for p in &gone {
            let _ = std::fs::remove_file(&p.path);
            parts::remove_empty_table(&dir, LOGS, p.hour);
        }
        pass.expired = gone.len();
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_NS: i64 = 3_600_000_000_000;

    fn row(source: &str, ts: i64) -> LogRow {
        LogRow {
            ts,
            source_id: source.into(),
            instance_id: "0".into(),
            source_type: "APP/PROC/WEB".into(),
            stream: "OUT",
            payload: format!("line at {ts}").into_bytes(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hydrant-logs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn rows_on_disk(l: &LogStore) -> usize {
        parts::read_all(&l.parts())
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    }

    #[tokio::test]
    async fn rows_reach_parts_are_merged_per_hour_and_expire() {
        let dir = scratch("cycle");
        let logs = Mutex::new(LogStore::open(&dir, 100));
        let files = RwLock::new(());
        let now_ms = 10 * 3_600_000 + 60_000; // early in hour 10
        for (source, hour) in [("b", 8), ("a", 8), ("a", 9), ("a", 10)] {
            logs.lock().unwrap().push(row(source, hour * HOUR_NS + 1));
        }
        let pass = maintain(&logs, &files, now_ms, Duration::from_secs(86_400))
            .await
            .unwrap();
        assert_eq!(pass.written, 3, "one part per hour");
        logs.lock().unwrap().push(row("c", 8 * HOUR_NS + 5));
        logs.lock().unwrap().push(row("a", 10 * HOUR_NS + 5));
        let pass = maintain(&logs, &files, now_ms, Duration::from_secs(86_400))
            .await
            .unwrap();
        assert_eq!(
            (pass.written, pass.compacted),
            (2, 1),
            "hour 8 merged, hour 10 is open"
        );
        {
            let l = logs.lock().unwrap();
            assert_eq!(l.rows_in_memory(), 0);
            assert_eq!(l.written, 6);
            assert_eq!(rows_on_disk(&l), 6);
            let hour8: Vec<_> = l.parts().into_iter().filter(|p| p.hour == 8).collect();
            assert_eq!(hour8.len(), 1);
            let merged = parts::read_all(&hour8).unwrap();
            let sources = merged[0]
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            let order: Vec<&str> = sources.iter().flatten().collect();
            assert_eq!(order, ["a", "b", "c"], "sorted by source");
        }
        // Reopening finds the parts; retention of 1 h keeps hours 9 and 10 only.
        let logs = Mutex::new(LogStore::open(&dir, 100));
        assert_eq!(rows_on_disk(&logs.lock().unwrap()), 6);
        let pass = maintain(&logs, &files, now_ms, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(pass.expired, 1);
        assert_eq!(rows_on_disk(&logs.lock().unwrap()), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A damaged log part is set aside and counted like a damaged metrics part, and the
    /// intact one still answers.
    #[tokio::test]
    async fn damaged_log_parts_are_quarantined_and_counted() {
        let dir = scratch("quarantine");
        let logs = Mutex::new(LogStore::open(&dir, 100));
        let files = RwLock::new(());
        let now_ms = 10 * 3_600_000 + 60_000;
        for hour in [8, 9] {
            logs.lock().unwrap().push(row("a", hour * HOUR_NS + 1));
        }
        maintain(&logs, &files, now_ms, Duration::from_secs(86_400))
            .await
            .unwrap();
        let parts = logs.lock().unwrap().parts();
        assert_eq!(parts.len(), 2);
        assert_eq!(logs.lock().unwrap().quarantined, 0);
        let mut bytes = std::fs::read(&parts[0].path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        std::fs::write(&parts[0].path, bytes).unwrap();

        let reopened = LogStore::open(&dir, 100);
        assert_eq!(reopened.quarantined, 1);
        assert_eq!(rows_on_disk(&reopened), 1);
        assert_eq!(
            std::fs::read_dir(dir.join(parts::QUARANTINE).join(LOGS))
                .unwrap()
                .count(),
            1
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_puts_the_rows_back() {
        let dir = scratch("fail");
        let mut l = LogStore::open(&dir, 10);
        l.push(row("a", 1));
        l.push(row("a", 2));
        let writes = l.begin_write();
        assert_eq!(writes.len(), 1);
        assert_eq!(l.rows_in_memory(), 2, "rows being written stay visible");
        assert_eq!(
            l.batches().iter().map(RecordBatch::num_rows).sum::<usize>(),
            2
        );
        assert!(
            l.end_write(Err(std::io::Error::other("disk full")))
                .is_err()
        );
        assert_eq!(l.buffer().len(), 2);
        assert_eq!(l.written, 0);
    }
}
