//! The write-ahead log: files `wal/<hour>.<seq>.wal`, one per generation of an open hour
//! partition (a late sample for an hour being sealed starts a new generation, so sealing
//! never deletes a file that still takes appends), of framed
//! records `[len u32][crc32c u32][payload]`. A record is acknowledged once `fdatasync`
//! returns. Payloads come in two layouts, told apart by the length's top bit:
//! - compact (bit set; what is written): per sample, the series id and the time (ms) as
//!   zig-zag varint deltas from the previous sample's, then the value (f64, little-endian):
//!   10 to 12 bytes for a Firehose gauge's or an import's samples, half what the kernel
//!   copied per sample before;
//! - fixed (bit clear; written before): 24 bytes per sample (series id u64, ts i64 ms,
//!   value f64, little-endian), still read.
//!
//! Faults:
//! - A failed append (a full disk) is cut back off the file at once, so a torn record never
//!   sits before records acknowledged later.
//! - On replay a corrupt record is skipped and counted, and reading resumes at the next
//!   intact record; only a torn tail (no intact record after it: a crash mid-write) is cut
//!   off.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::catalog::SeriesId;

/// Bytes per sample in a fixed-layout record.
pub const SAMPLE_BYTES: usize = 24;

/// The length's top bit: the payload is in the compact layout.
const COMPACT: u32 = 1 << 31;

/// Most bytes a sample takes in the compact layout (two 10-byte varints and a value).
const MAX_COMPACT_SAMPLE_BYTES: usize = 28;

/// Most samples per record, so every record stays under [`MAX_RECORD_BYTES`] (a group of
/// large gauges can bring millions of samples to one append).
pub const RECORD_SAMPLES: usize = 1 << 20;
const _: () = assert!(RECORD_SAMPLES * MAX_COMPACT_SAMPLE_BYTES + 8 <= MAX_RECORD_BYTES);

/// Largest record accepted on replay (a corrupt length must not allocate gigabytes).
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// One sample as logged: series id, ts (ms), value.
pub type Sample = (SeriesId, i64, f64);

use super::crc;

/// Which log file: the hour it holds and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalId {
    /// The hour partition.
    pub hour: i64,
    /// Generation (unique across the data dir).
    pub seq: u64,
}

impl WalId {
    fn file(&self) -> String {
        format!("{}.{}.wal", self.hour, self.seq)
    }
}

/// An open log file.
#[derive(Debug)]
pub struct Wal {
    /// Which file.
    pub id: WalId,
    path: PathBuf,
    file: File,
    /// Bytes of whole records: where a failed append is cut back to.
    len: u64,
    /// The record being written, kept from one append to the next: fresh memory for
    /// every append costs the kernel a page zeroing per page.
    record: Vec<u8>,
}

impl Wal {
    /// Opens (or creates) the log `id` in `dir` for appending.
    pub fn open(dir: &Path, id: WalId) -> std::io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(id.file());
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Wal {
            id,
            path,
            file,
            len,
            record: Vec::new(),
        })
    }

    /// Appends `samples` (one record per [`RECORD_SAMPLES`]) and syncs them.
    pub fn append(&mut self, samples: &[Sample]) -> std::io::Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.record);
        buf.clear();
        buf.reserve(samples.len().min(RECORD_SAMPLES) * MAX_COMPACT_SAMPLE_BYTES + 8);
        for chunk in samples.chunks(RECORD_SAMPLES) {
            let start = buf.len();
            buf.extend_from_slice(&[0; 8]);
            let (mut last_id, mut last_ts) = (0u64, 0i64);
            for &(id, ts, v) in chunk {
                put_varint(&mut buf, zigzag(id.wrapping_sub(last_id) as i64));
                put_varint(&mut buf, zigzag(ts.wrapping_sub(last_ts)));
                buf.extend_from_slice(&v.to_le_bytes());
                (last_id, last_ts) = (id, ts);
            }
            let len = u32::try_from(buf.len() - start - 8).expect("records are below 64 MiB");
            buf[start..start + 4].copy_from_slice(&(len | COMPACT).to_le_bytes());
            let sum = crc(&buf[start + 8..]);
            buf[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        let record_len = buf.len() as u64;
        self.record = buf;
        match written {
            Ok(()) => {
                self.len += record_len;
                Ok(())
            }
            Err(e) => {
                // Cut the torn record off (best effort: the file is then what it was).
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Deletes the file (its partition is sealed into Parquet).
    pub fn remove(self) -> std::io::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
    }
}

/// Every log in `dir`, oldest hour and generation first.
pub fn ids(dir: &Path) -> Vec<WalId> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<WalId> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (hour, seq) = name.strip_suffix(".wal")?.split_once('.')?;
            Some(WalId {
                hour: hour.parse().ok()?,
                seq: seq.parse().ok()?,
            })
        })
        .collect();
    out.sort_unstable();
    out
}

/// What replaying one log found.
#[derive(Debug, Default, PartialEq)]
pub struct Replayed {
    /// The samples of every intact record, in file order.
    pub samples: Vec<Sample>,
    /// Corrupt records skipped (a run of damaged bytes counts once).
    pub corrupt: u64,
    /// Whether a torn tail was cut off.
    pub torn: bool,
}

/// The record at `at`, when it is whole and intact: its payload's end and whether it is
/// compact.
fn record_at(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
    let header = bytes.get(at..at + 8)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let sum = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let compact = len & COMPACT != 0;
    let len = (len & !COMPACT) as usize;
    if len == 0 || len > MAX_RECORD_BYTES || (!compact && !len.is_multiple_of(SAMPLE_BYTES)) {
        return None;
    }
    let payload = bytes.get(at + 8..at + 8 + len)?;
    (crc(payload) == sum).then_some((at + 8 + len, compact))
}

/// The samples of an intact compact payload, appended to `out`; `None` (and `out` as it
/// was) when it does not decode whole, which only a writer bug could cause.
fn read_compact(mut payload: &[u8], out: &mut Vec<Sample>) -> Option<()> {
    let before = out.len();
    let (mut id, mut ts) = (0u64, 0i64);
    while !payload.is_empty() {
        let decoded = (|| {
            id = id.wrapping_add(unzigzag(take_varint(&mut payload)?) as u64);
            ts = ts.wrapping_add(unzigzag(take_varint(&mut payload)?));
            let (value, rest) = payload.split_first_chunk::<8>()?;
            payload = rest;
            Some(f64::from_le_bytes(*value))
        })();
        match decoded {
            Some(v) => out.push((id, ts, v)),
            None => {
                out.truncate(before);
                return None;
            }
        }
    }
    Some(())
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn put_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push(n as u8 | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn take_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *buf = &buf[i + 1..];
            return Some(n);
        }
    }
    None
}

/// Reads every intact record of log `id`, skipping (and counting) corrupt ones; a torn
/// tail is cut off so appends continue cleanly.
pub fn replay(dir: &Path, id: WalId) -> std::io::Result<Replayed> {
    let path = dir.join(id.file());
    let mut bytes = Vec::new();
    File::open(&path)?.read_to_end(&mut bytes)?;
    let mut out = Replayed::default();
    let mut at = 0;
    while at < bytes.len() {
        let (end, compact) = match record_at(&bytes, at) {
            Some(found) => found,
            None => {
                // Damage: resume at the next intact record, if there is one.
                match (at + 1..bytes.len()).find(|&p| record_at(&bytes, p).is_some()) {
                    Some(next) => {
                        out.corrupt += 1;
                        tracing::warn!(file = %path.display(), offset = at, skipped = next - at, "corrupt WAL record skipped");
                        at = next;
                        continue;
                    }
                    None => break,
                }
            }
        };
        if compact {
            if read_compact(&bytes[at + 8..end], &mut out.samples).is_none() {
                out.corrupt += 1;
                tracing::warn!(file = %path.display(), offset = at, "undecodable WAL record skipped");
            }
            at = end;
            continue;
        }
        for s in bytes[at + 8..end].chunks_exact(SAMPLE_BYTES) {
            let id = u64::from_le_bytes(s[0..8].try_into().unwrap_or_default());
            let ts = i64::from_le_bytes(s[8..16].try_into().unwrap_or_default());
            let v = f64::from_le_bytes(s[16..24].try_into().unwrap_or_default());
            out.samples.push((id, ts, v));
        }
        at = end;
    }
    if at != bytes.len() {
        out.torn = true;
        tracing::warn!(file = %path.display(), offset = at, cut = bytes.len() - at, "torn WAL tail cut off");
        let f = OpenOptions::new().write(true).open(&path)?;
        f.set_len(at as u64)?;
        f.sync_all()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: WalId = WalId { hour: 7, seq: 3 };

    #[test]
    fn checksums_are_crc32c() {
        // The check value of CRC-32C (iSCSI), the sum every WAL, catalog line and part
        // written so far carries: a different algorithm would make them all "damaged".
        assert_eq!(crc(b"123456789"), 0xe306_9283);
        assert_eq!(crc(b""), 0);
        let long: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, b) = long.split_at(4_321);
        assert_eq!(crc32c::crc32c_append(crc(a), b), crc(&long));
    }

    fn bits(samples: &[Sample]) -> Vec<(u64, i64, u64)> {
        samples
            .iter()
            .map(|&(id, ts, v)| (id, ts, v.to_bits()))
            .collect()
    }

    #[test]
    fn compact_records_keep_every_sample_exactly_and_fixed_ones_are_still_read() {
        let dir = std::env::temp_dir().join(format!("hydrant-wal-c-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A record in the fixed layout, as written before, first in the file.
        let old: Sample = (9, 1_700_000_000_000, 0.25);
        let mut fixed = Vec::new();
        fixed.extend_from_slice(&old.0.to_le_bytes());
        fixed.extend_from_slice(&old.1.to_le_bytes());
        fixed.extend_from_slice(&old.2.to_le_bytes());
        let mut file = (SAMPLE_BYTES as u32).to_le_bytes().to_vec();
        file.extend_from_slice(&crc(&fixed).to_le_bytes());
        file.extend_from_slice(&fixed);
        std::fs::write(dir.join(ID.file()), &file).unwrap();
        // Extreme deltas both ways, every special value, repeated ids and times.
        let samples: Vec<Sample> = vec![
            (0, 0, -0.0),
            (u64::MAX, i64::MIN, f64::NAN),
            (1, i64::MAX, f64::INFINITY),
            (1, i64::MAX, f64::NEG_INFINITY),
            (7, -1, f64::MIN_POSITIVE),
            (6, 1_700_000_000_000, 1e300),
            (6, 1_700_000_010_000, f64::from_bits(0x7ff8_dead_beef_0001)),
        ];
        let mut w = Wal::open(&dir, ID).unwrap();
        w.append(&samples).unwrap();
        // More samples than one record holds: several records, one sync.
        let many: Vec<Sample> = (0..RECORD_SAMPLES as u64 + 5)
            .map(|i| (i % 5_000, 1_700_000_000_000 + (i / 5_000) as i64, i as f64))
            .collect();
        w.append(&many).unwrap();
        drop(w);
        let r = replay(&dir, ID).unwrap();
        assert_eq!((r.corrupt, r.torn), (0, false));
        let mut want = vec![old];
        want.extend(&samples);
        want.extend(&many);
        assert_eq!(bits(&r.samples), bits(&want));
        let size = std::fs::metadata(dir.join(ID.file())).unwrap().len() as usize;
        assert!(
            size < many.len() * 12,
            "{size} bytes for {} samples",
            many.len()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn round_trip_and_torn_tails() {
        let dir = std::env::temp_dir().join(format!("hydrant-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = Wal::open(&dir, ID).unwrap();
        w.append(&[(1, 10, 1.5), (2, 11, -0.0)]).unwrap();
        w.append(&[(3, 12, f64::NAN)]).unwrap();
        drop(w);
        let r = replay(&dir, ID).unwrap();
        assert!(!r.torn);
        let got = r.samples;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (1, 10, 1.5));
        assert!(got[2].2.is_nan());
        // A crash mid-write leaves half a record: it is dropped and truncated away.
        let path = dir.join("7.3.wal");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[48, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
        drop(f);
        let r = replay(&dir, ID).unwrap();
        assert!(r.torn);
        assert_eq!(r.samples.len(), 3);
        let mut w = Wal::open(&dir, ID).unwrap();
        w.append(&[(4, 13, 2.0)]).unwrap();
        assert_eq!(
            replay(&dir, ID).unwrap().samples.len(),
            4,
            "appends continue after the cut"
        );
        // A flipped bit in the middle fails one record's checksum: it is skipped and
        // counted, and the records after it are still read.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let r = replay(&dir, ID).unwrap();
        assert_eq!((r.samples.len(), r.corrupt, r.torn), (2, 1, false));
        let kept: Vec<(u64, i64)> = r.samples.iter().map(|(id, ts, _)| (*id, *ts)).collect();
        assert_eq!(kept, [(3, 12), (4, 13)]);
        // A mangled length too: reading resumes at the next intact record.
        bytes[20] ^= 1;
        bytes[0] = 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let r = replay(&dir, ID).unwrap();
        assert_eq!((r.samples.len(), r.corrupt), (2, 1));
        assert_eq!(ids(&dir), [ID]);
        drop(w);
        std::fs::remove_file(&path).unwrap();
        assert!(ids(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
