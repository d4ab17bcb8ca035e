//! Parquet parts: `metrics/date=YYYY-MM-DD/hour=HH/part-<hour>-<seq>.parquet`, each sorted
//! by (series_id, ts), zstd-compressed, timestamps delta-encoded and values byte-stream-split
//! (the layout that gets Parquet near the compact TSDB formats). Written to a temporary
//! name, synced, then renamed, so a crash never leaves a half file under a part name.
//!
//! The final name carries a CRC-32 of the whole file (`part-<hour>-<seq>.<crc>.parquet`).
//! When a store opens, a part that is empty, fails its checksum or has no readable Parquet
//! footer is moved to `quarantine/` with an error naming it, and counted: one damaged file
//! never fails every query, and flipped bytes never change values silently.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::buffer::HOUR_MS;

/// Rows per row group: small enough that min/max statistics on the sorted series_id skip
/// most of a part when a query wants a few series, large enough to compress well.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// One Parquet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The file.
    pub path: PathBuf,
    /// Its hour.
    pub hour: i64,
    /// Sequence within the hour (compaction writes a higher one).
    pub seq: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// The directory of the samples of an hour, relative to the data dir.
pub fn hour_dir(hour: i64) -> PathBuf {
    table_hour_dir(METRICS, hour)
}

/// The directory holding the samples' parts.
pub const METRICS: &str = "metrics";

/// The directory of an hour of `table` (`metrics`, `logs`), relative to the data dir.
pub fn table_hour_dir(table: &str, hour: i64) -> PathBuf {
    let t = chrono::DateTime::from_timestamp_millis(hour * HOUR_MS).unwrap_or_default();
    PathBuf::from(table)
        .join(t.format("date=%Y-%m-%d").to_string())
        .join(t.format("hour=%H").to_string())
}

fn properties() -> WriterProperties {
    let ts = ColumnPath::from("ts");
    let value = ColumnPath::from("value");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_column_dictionary_enabled(ts.clone(), false)
        .set_column_encoding(ts, Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(value.clone(), false)
        .set_column_encoding(value, Encoding::BYTE_STREAM_SPLIT)
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 1,
                descending: false,
                nulls_first: false,
            },
        ]))
        .build()
}

/// Writes `batch` (already sorted) as part `seq` of `hour` under `dir`.
pub fn write(dir: &Path, hour: i64, seq: u64, batch: &RecordBatch) -> std::io::Result<Part> {
    write_table(dir, METRICS, hour, seq, batch, properties())
}

/// A file that checksums what is written through it, so a part's CRC costs no second read.
struct Checksummed {
    file: File,
    /// CRC-32C of what was written so far.
    crc: u32,
}

impl std::io::Write for Checksummed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Writes `batch` as part `seq` of `hour` of `table`: to a temporary name, synced, renamed.
pub fn write_table(
    dir: &Path,
    table: &str,
    hour: i64,
    seq: u64,
    batch: &RecordBatch,
    properties: WriterProperties,
) -> std::io::Result<Part> {
    let folder = dir.join(table_hour_dir(table, hour));
    std::fs::create_dir_all(&folder)?;
    let tmp = folder.join(format!(".part-{hour}-{seq:06}.tmp"));
    let file = Checksummed {
        file: File::create(&tmp)?,
        crc: 0,
    };
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties))
        .map_err(std::io::Error::other)?;
    writer.write(batch).map_err(std::io::Error::other)?;
    let written = writer.into_inner().map_err(std::io::Error::other)?;
    written.file.sync_all()?;
    let crc = written.crc;
    let path = folder.join(format!("part-{hour}-{seq:06}.{crc:08x}.parquet"));
    std::fs::rename(&tmp, &path)?;
    File::open(&folder)?.sync_all()?;
    let bytes = std::fs::metadata(&path)?.len();
    Ok(Part {
        path,
        hour,
        seq,
        bytes,
    })
}

use super::crc;

/// Where damaged parts are moved, under the data dir.
pub const QUARANTINE: &str = "quarantine";

/// The parts found when a store opens, and how many damaged ones were set aside.
#[derive(Debug, Default)]
pub struct Found {
    /// Intact parts, oldest hour first.
    pub parts: Vec<Part>,
    /// Parts moved to [`QUARANTINE`].
    pub quarantined: u64,
}

/// Every part under `dir`, oldest hour first; temporary files of an interrupted write are
/// deleted and damaged parts quarantined.
pub fn discover(dir: &Path) -> Found {
    discover_table(dir, METRICS)
}

/// The hour, sequence and CRC-32 a part's file name carries:
/// `part-<hour>-<seq>.<crc>.parquet`, or `part-<hour>-<seq>.parquet` as written before
/// checksums.
fn parse_name(name: &str) -> Option<(i64, u64, Option<u32>)> {
    let stem = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (stem, crc) = match stem.split_once('.') {
        Some((stem, crc)) => (stem, u32::from_str_radix(crc, 16).ok()),
        None => (stem, None),
    };
    let (hour, seq) = stem.split_once('-')?;
    Some((hour.parse().ok()?, seq.parse().ok()?, crc))
}

/// The CRC-32 a part's file name carries.
pub fn name_crc(path: &Path) -> Option<u32> {
    parse_name(path.file_name()?.to_str()?)?.2
}

/// Why a part cannot be used, if it cannot.
pub fn damage(path: &Path, expected: Option<u32>) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    if bytes.is_empty() {
        return Some("is empty".into());
    }
    if let Some(want) = expected {
        let got = crc(&bytes);
        if got != want {
            return Some(format!("fails its checksum ({got:08x}, not {want:08x})"));
        }
    }
    let footer = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes::Bytes::from(bytes));
    footer
        .err()
        .map(|e| format!("has no readable Parquet footer: {e}"))
}

/// Moves a damaged part out of the way, into `quarantine/<table>/`.
fn quarantine(dir: &Path, table: &str, path: &Path, why: &str) {
    let to = dir.join(QUARANTINE).join(table);
    let name = path.file_name().unwrap_or_default();
    let moved = std::fs::create_dir_all(&to).and_then(|()| std::fs::rename(path, to.join(name)));
    match moved {
        Ok(()) => {
            tracing::error!(part = %path.display(), quarantine = %to.display(), "a damaged part {why}; moved to quarantine, its samples are not served")
        }
        Err(e) => {
            tracing::error!(part = %path.display(), error = %e, "a damaged part {why} and cannot be moved to quarantine")
        }
    }
}

/// Every part of `table` under `dir`, as [`discover`].
pub fn discover_table(dir: &Path, table: &str) -> Found {
    let mut found = Found::default();
    let metrics = dir.join(table);
    let Ok(dates) = std::fs::read_dir(&metrics) else {
        return found;
    };
    for date in dates.flatten() {
        let Ok(hours) = std::fs::read_dir(date.path()) else {
            continue;
        };
        for hour in hours.flatten() {
            let Ok(files) = std::fs::read_dir(hour.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(f.path());
                    continue;
                }
                let Some((h, seq, crc)) = parse_name(&name) else {
                    continue;
                };
                if let Some(why) = damage(&f.path(), crc) {
                    quarantine(dir, table, &f.path(), &why);
                    found.quarantined += 1;
                    continue;
                }
                found.parts.push(Part {
                    path: f.path(),
                    hour: h,
                    seq,
                    bytes: f.metadata().map(|m| m.len()).unwrap_or(0),
                });
            }
        }
    }
    found.parts.sort_by_key(|p| (p.hour, p.seq));
    found
}

/// Reads whole parts (for compaction), in order.
pub fn read_all(parts: &[Part]) -> std::io::Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for p in parts {
        let file = File::open(&p.path)?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(std::io::Error::other)?
            .build()
            .map_err(std::io::Error::other)?;
        for batch in reader {
            out.push(batch.map_err(std::io::Error::other)?);
        }
    }
    Ok(out)
}

/// The distinct series ids in a part, ascending (only the `series_id` column is read).
pub fn series_ids(part: &Part) -> std::io::Result<Vec<u64>> {
    use arrow::array::{Array, UInt64Array};
    let file = File::open(&part.path)?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(std::io::Error::other)?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [0]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(std::io::Error::other)?;
    let mut out: Vec<u64> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(std::io::Error::other)?;
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| std::io::Error::other("series_id is not UInt64"))?;
        for i in 0..ids.len() {
            let id = ids.value(i);
            if out.last() != Some(&id) {
                out.push(id);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Removes an hour's directory when it holds no more parts.
pub fn remove_empty(dir: &Path, hour: i64) {
    remove_empty_table(dir, METRICS, hour);
}

/// Removes an hour's directory of `table` when it holds no more parts.
pub fn remove_empty_table(dir: &Path, table: &str, hour: i64) {
    let folder = dir.join(table_hour_dir(table, hour));
    if std::fs::remove_dir(&folder).is_ok()
        && let Some(date) = folder.parent()
    {
        let _ = std::fs::remove_dir(date);
    }
}

/// Shared handle type for parts lists.
pub type Parts = Arc<Vec<Part>>;
