//! The write-ahead log: files `wal/<hour>.<seq>.wal`, one per generation of an open hour
//! partition (a late sample for an hour being sealed starts a new generation, so sealing
//! never deletes a file that still takes appends), of framed
//! records `[len u32][crc32 u32][payload]`, each payload a run of 24-byte samples
//! (series id u64, ts i64 ms, value f64, little-endian). A record is acknowledged once
//! `fdatasync` returns; on replay a torn or corrupt tail (a crash mid-write) ends the file.

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

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

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
}

impl Wal {
    /// Opens (or creates) the log `id` in `dir` for appending.
    pub fn open(dir: &Path, id: WalId) -> std::io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(id.file());
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Wal { id, path, file })
    }

    /// Appends one record and syncs it.
    pub fn append(&mut self, samples: &[Sample]) -> std::io::Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(8 + samples.len() * SAMPLE_BYTES);
        buf.extend_from_slice(&((samples.len() * SAMPLE_BYTES) as u32).to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        for (id, ts, v) in samples {
            buf.extend_from_slice(&id.to_le_bytes());
            buf.extend_from_slice(&ts.to_le_bytes());
            buf.extend_from_slice(&v.to_le_bytes());
        }
        let crc = CRC.checksum(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all(&buf)?;
        self.file.sync_data()
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

/// Reads every intact record of log `id`; returns the samples and whether a torn or
/// corrupt tail was dropped (it is then truncated away so appends continue cleanly).
pub fn replay(dir: &Path, id: WalId) -> std::io::Result<(Vec<Sample>, bool)> {
    let path = dir.join(id.file());
    let mut bytes = Vec::new();
    File::open(&path)?.read_to_end(&mut bytes)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let end = at + 8 + len;
        if len > MAX_RECORD_BYTES || !len.is_multiple_of(SAMPLE_BYTES) || end > bytes.len() {
            break;
        }
        let payload = &bytes[at + 8..end];
        if CRC.checksum(payload) != crc {
            break;
        }
        for s in payload.chunks_exact(SAMPLE_BYTES) {
            let id = u64::from_le_bytes(s[0..8].try_into().unwrap_or_default());
            let ts = i64::from_le_bytes(s[8..16].try_into().unwrap_or_default());
            let v = f64::from_le_bytes(s[16..24].try_into().unwrap_or_default());
            out.push((id, ts, v));
        }
        at = end;
    }
    let torn = at != bytes.len();
    if torn {
        let f = OpenOptions::new().write(true).open(&path)?;
        f.set_len(at as u64)?;
        f.sync_all()?;
    }
    Ok((out, torn))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: WalId = WalId { hour: 7, seq: 3 };

    #[test]
    fn round_trip_and_torn_tails() {
        let dir = std::env::temp_dir().join(format!("hydrant-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = Wal::open(&dir, ID).unwrap();
        w.append(&[(1, 10, 1.5), (2, 11, -0.0)]).unwrap();
        w.append(&[(3, 12, f64::NAN)]).unwrap();
        drop(w);
        let (got, torn) = replay(&dir, ID).unwrap();
        assert!(!torn);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (1, 10, 1.5));
        assert!(got[2].2.is_nan());
        // A crash mid-write leaves half a record: it is dropped and truncated away.
        let path = dir.join("7.3.wal");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[48, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
        drop(f);
        let (got, torn) = replay(&dir, ID).unwrap();
        assert!(torn);
        assert_eq!(got.len(), 3);
        let mut w = Wal::open(&dir, ID).unwrap();
        w.append(&[(4, 13, 2.0)]).unwrap();
        assert_eq!(
            replay(&dir, ID).unwrap().0.len(),
            4,
            "appends continue after the cut"
        );
        // A flipped bit fails the checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(replay(&dir, ID).unwrap().0.len(), 3);
        assert_eq!(ids(&dir), [ID]);
        w.remove().unwrap();
        assert!(ids(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
