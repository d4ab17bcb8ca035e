//! `POST /api/v1/import/prometheus`: samples in the Prometheus text format, each with an
//! optional millisecond timestamp (VictoriaMetrics' import format), for backfill and
//! migrations. A body is all or nothing: it is checked whole before anything is stored,
//! and a bad line is refused with its number. Names are sanitised as for envelopes.

use std::collections::{BTreeMap, HashMap};

use hydrant_runtime::exposition;

use crate::model::{self, Point, SeriesKey};

mod parallel;

pub use parallel::{BLOCK_BYTES, BLOCKS_QUEUED, MAX_PARSE_THREADS, ParallelScanner};

/// Largest body accepted (a 413 beyond it).
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

/// Samples stored per call into the store: one WAL sync per hour a chunk touches (a sync
/// costs milliseconds, so chunks are large), and the store's lock released between chunks
/// (each holds it for tens of milliseconds) so Firehose ingest and queries go on.
pub const CHUNK_SAMPLES: usize = 500_000;

/// A line that is not a sample.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("line {line}: {message}")]
pub struct ImportError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl From<ImportError> for crate::promql::Error {
    fn from(e: ImportError) -> Self {
        crate::promql::Error::BadData(e.to_string())
    }
}

/// Sample lines of `text` with their line numbers, the first being `first + 1` (comments
/// and blank lines skipped).
fn lines(text: &str, first: usize) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(move |(i, l)| (first + i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn point(line: usize, text: &str, now_ms: i64) -> Result<Point, ImportError> {
    let s = exposition::parse(text).map_err(|e| ImportError {
        line,
        message: e.to_string(),
    })?;
    let mut labels = BTreeMap::new();
    for (k, v) in s.labels {
        if k == "__name__" {
            continue;
        }
        if !v.is_empty() {
            labels.insert(model::label_name(&k), v);
        }
    }
    Ok(Point {
        key: SeriesKey {
            name: model::metric_name(&s.name),
            labels,
        },
        ts: s.timestamp_ms.unwrap_or(now_ms),
        value: s.value,
        increment: false,
        distinct: false,
    })
}

/// An import body, checked whole: its distinct series, each parsed once, and every
/// sample as (index into `keys`, ms, value).
#[derive(Debug, Default)]
pub struct Scanned {
    /// The series, in order of first appearance.
    pub keys: Vec<SeriesKey>,
    /// The samples.
    pub rows: Vec<(u32, i64, f64)>,
}

/// Reads a body as it arrives, chunk by chunk, each chunk's whole lines at once (a line cut
/// by a chunk's end waits for the next): the body is never held whole, so an import
/// touches little fresh memory. A series is parsed in full the first time its text
/// appears; later lines of it are found by that text and only their value and timestamp
/// are read. Samples without a timestamp get `now_ms`. The first bad line is the error.
#[derive(Debug)]
pub struct Scanner {
    now_ms: i64,
    by_text: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    out: Scanned,
    /// The start of a line the last chunk cut.
    carry: Vec<u8>,
    /// Lines read so far.
    line: usize,
    /// Bytes read so far (for UTF-8 errors).
    offset: usize,
}

impl Scanner {
    /// A scanner for a body of about `size_hint` bytes.
    pub fn new(now_ms: i64, size_hint: usize) -> Scanner {
        Scanner {
            now_ms,
            by_text: HashMap::default(),
            // About one sample per 48 bytes of text: most bodies never regrow the rows.
            out: Scanned {
                keys: Vec::new(),
                rows: Vec::with_capacity(size_hint.min(MAX_IMPORT_BYTES) / 48),
            },
            carry: Vec::new(),
            line: 0,
            offset: 0,
        }
    }

    /// Reads the whole lines `chunk` completes or holds.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ImportError> {
        let mut rest = chunk;
        if !self.carry.is_empty() {
            let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
                self.carry.extend_from_slice(rest);
                return Ok(());
            };
            self.carry.extend_from_slice(&rest[..=nl]);
            rest = &rest[nl + 1..];
            let line = std::mem::take(&mut self.carry);
            self.read(&line)?;
            self.carry = line;
            self.carry.clear();
        }
        match rest.iter().rposition(|b| *b == b'\n') {
            Some(nl) => {
                self.read(&rest[..=nl])?;
                self.carry.extend_from_slice(&rest[nl + 1..]);
            }
            None => self.carry.extend_from_slice(rest),
        }
        Ok(())
    }

    /// Reads the last line (when the body does not end with a newline); the samples.
    pub fn finish(mut self) -> Result<Scanned, ImportError> {
        if !self.carry.is_empty() {
            let last = std::mem::take(&mut self.carry);
            self.read(&last)?;
        }
        Ok(self.out)
    }

    /// Reads a block of whole lines (the last may lack its newline) that starts at line
    /// `line + 1` and byte `offset` of the body.
    fn read_block(&mut self, bytes: &[u8], line: usize, offset: usize) -> Result<(), ImportError> {
        (self.line, self.offset) = (line, offset);
        self.read(bytes)
    }

    /// Reads whole lines.
    fn read(&mut self, bytes: &[u8]) -> Result<(), ImportError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let good = e.valid_up_to();
            ImportError {
                line: self.line + newlines(&bytes[..good]) + 1,
                message: format!("not UTF-8 (byte {} of the body)", self.offset + good),
            }
        })?;
        for (line, l) in lines(text, self.line) {
            self.sample(line, l)?;
        }
        self.line += newlines(bytes);
        self.offset += bytes.len();
        Ok(())
    }

    fn sample(&mut self, line: usize, l: &str) -> Result<(), ImportError> {
        let out = &mut self.out;
        let Some((series, rest)) = exposition::split(l) else {
            // Not splittable: the full parser names the problem (or reads it).
            let p = point(line, l, self.now_ms)?;
            out.keys.push(p.key);
            out.rows.push((out.keys.len() as u32 - 1, p.ts, p.value));
            return Ok(());
        };
        let index = match self.by_text.get(series) {
            Some(i) => *i,
            None => {
                let p = point(line, l, self.now_ms)?;
                out.keys.push(p.key);
                let i = out.keys.len() as u32 - 1;
                self.by_text.insert(series.into(), i);
                i
            }
        };
        let (value, ts) = exposition::value_and_time(rest).map_err(|e| ImportError {
            line,
            message: e.to_string(),
        })?;
        out.rows.push((index, ts.unwrap_or(self.now_ms), value));
        Ok(())
    }
}

/// Newlines in `bytes`.
fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole body at once (a [`Scanner`] fed one chunk).
    pub(super) fn scan(text: &str, now_ms: i64) -> Result<Scanned, ImportError> {
        let mut s = Scanner::new(now_ms, text.len());
        s.feed(text.as_bytes())?;
        s.finish()
    }

    #[test]
    fn samples_are_sanitised_and_stamped() {
        let text = "# a comment\n\nhttp.requests{code=\"200\",__name__=\"x\",empty=\"\"} 3 1700000000000\nup 1\n";
        let got = scan(text, 42).unwrap();
        assert_eq!(got.keys[0].name, "http_requests");
        assert_eq!(got.keys[0].labels.len(), 1, "no __name__, no empty label");
        assert_eq!(got.rows, [(0, 1_700_000_000_000, 3.0), (1, 42, 1.0)]);
        assert_eq!(got.keys[1].name, "up");
    }

    #[test]
    fn each_series_is_parsed_once_and_found_by_its_text() {
        let text = "x{a=\"1\"} 1 10\nx{a=\"2\"} 2 10\nx{a=\"1\"} 3 20\n  x{a=\"2\"}   4\n";
        let got = scan(text, 99).unwrap();
        assert_eq!(got.keys.len(), 2);
        assert_eq!(
            got.rows,
            [(0, 10, 1.0), (1, 10, 2.0), (0, 20, 3.0), (1, 99, 4.0)]
        );
    }

    #[test]
    fn a_body_fed_in_any_chunks_reads_as_a_whole() {
        let mut text = String::from("# HELP x\n");
        for i in 0..3_000 {
            text.push_str(&format!(
                "load{{app=\"a{}\",i=\"ü{}\"}} {i} {}\n",
                i % 7,
                i % 13,
                i * 10
            ));
            if i % 100 == 0 {
                text.push_str("\n# a comment\nup 1\n");
            }
        }
        text.push_str("last 7 70"); // no final newline
        let whole = scan(&text, 5).unwrap();
        assert_eq!(whole.rows.len(), 3_000 + 30 + 1);
        for size in [1, 2, 3, 7, 64, 1000, 65_536] {
            let mut s = Scanner::new(5, 0);
            for chunk in text.as_bytes().chunks(size) {
                s.feed(chunk).unwrap();
            }
            let got = s.finish().unwrap();
            assert_eq!(got.keys, whole.keys, "chunks of {size}");
            assert_eq!(got.rows, whole.rows, "chunks of {size}");
        }
        // A bad line deep in the body is named by its line in the whole body, whatever
        // the chunks; and so is a byte that is not UTF-8.
        let mut bad = text.clone();
        bad.push_str("\nload{app=} 1\n");
        let lines = bad.lines().count();
        let mut broken = text.clone().into_bytes();
        broken.extend_from_slice(b"\nup 1\nup{a=\"\xff\"} 2\n");
        for size in [1, 5, 4096] {
            let mut s = Scanner::new(5, 0);
            let e = bad
                .as_bytes()
                .chunks(size)
                .try_for_each(|c| s.feed(c))
                .and_then(|()| s.finish().map(drop))
                .unwrap_err();
            assert_eq!(e.line, lines, "{e}");
            let mut s = Scanner::new(5, 0);
            let e = broken
                .chunks(size)
                .try_for_each(|c| s.feed(c))
                .and_then(|()| s.finish().map(drop))
                .unwrap_err();
            assert_eq!(e.line, lines + 1, "{e}");
            assert!(e.message.starts_with("not UTF-8 (byte"), "{e}");
        }
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = scan("up 1\nup{a=b} 2\n", 0).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: label \"a\""), "{e}");
        // A known series with a bad value is still caught.
        let e = scan("up 1\nup one\n", 0).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = scan("up 1\nup 1 2 3\n", 0).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
