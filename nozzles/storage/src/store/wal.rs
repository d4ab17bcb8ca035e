//! The write-ahead log: files `wal/<hour>.<seq>.wal`, one per generation of an open hour
//! partition (a late sample for an hour being sealed starts a new generation, so sealing
//! never deletes a file that still takes appends), of framed
//! records `[len u32][crc32 u32][payload]`, each payload a run of 24-byte samples
//! (series id u64, ts i64 ms, value f64, little-endian). A record is acknowledged once
//! `fdatasync` returns.
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

/// Bytes per sample in a record.
pub const SAMPLE_BYTES: usize = 24;

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

    /// Appends one record and syncs it.
    pub fn append(&mut self, samples: &[Sample]) -> std::io::Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.record);
        buf.clear();
        buf.reserve(8 + samples.len() * SAMPLE_BYTES);
        buf.extend_from_slice(&((samples.len() * SAMPLE_BYTES) as u32).to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        for (id, ts, v) in samples {
            buf.extend_from_slice(&id.to_le_bytes());
            buf.extend_from_slice(&ts.to_le_bytes());
            buf.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
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

/// The record at `at`, when it is whole and intact: its payload's end.
fn record_at(bytes: &[u8], at: usize) -> Option<usize> {
    let header = bytes.get(at..at + 8)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len == 0 || len > MAX_RECORD_BYTES || !len.is_multiple_of(SAMPLE_BYTES) {
        return None;
    }
    let payload = bytes.get(at + 8..at + 8 + len)?;
    (crc(payload) == sum).then_some(at + 8 + len)
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
        let end = match record_at(&bytes, at) {
            Some(end) => end,
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
