//! `POST /api/v1/import/prometheus`: samples in the Prometheus text format, each with an
//! optional millisecond timestamp (VictoriaMetrics' import format), for backfill and
//! migrations. A body is all or nothing: it is checked whole before anything is stored,
//! and a bad line is refused with its number. Names are sanitised as for envelopes.

use std::collections::{BTreeMap, HashMap};

use hydrant_runtime::exposition;

use crate::model::{self, Point, SeriesKey};

/// Largest body accepted (a 413 beyond it).
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

/// Samples stored per call into the store: one WAL sync per hour a chunk touches (a sync
/// costs milliseconds, so chunks are large), and the store's lock released between chunks
/// (each holds it for tens of milliseconds) so Firehose ingest and queries go on.
pub const CHUNK_SAMPLES: usize = 500_000;

/// A line that is not a sample.
#[derive(Debug, thiserror::Error, PartialEq)]
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

/// Bodies at least this large are read by several threads, each a run of whole lines.
pub const PARALLEL_SCAN_BYTES: usize = 1024 * 1024;

/// Most threads one body is read by.
pub const MAX_SCAN_THREADS: usize = 8;

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

/// Checks and reads every line; the first bad one is the error. A series is parsed in full
/// the first time its text appears; later lines of it are found by that text and only
/// their value and timestamp are read. Samples without a timestamp get `now_ms`. A large
/// body is cut into runs of whole lines read by threads of their own, then merged in
/// order (series numbered by first appearance, as one thread would).
pub fn scan(text: &str, now_ms: i64) -> Result<Scanned, ImportError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_SCAN_THREADS)
        .min(text.len() / PARALLEL_SCAN_BYTES)
        .max(1);
    if threads == 1 {
        return scan_lines(text, 0, now_ms);
    }
    // Runs end just after a newline; each knows how many lines come before it.
    let bytes = text.as_bytes();
    let mut runs: Vec<(&str, usize)> = Vec::with_capacity(threads);
    let (mut from, mut line) = (0, 0);
    for i in 1..=threads {
        let mut to = (text.len() * i / threads).max(from);
        while to < text.len() && bytes[to - 1] != b'\n' {
            to += 1;
        }
        if to > from {
            let run = &text[from..to];
            runs.push((run, line));
            line += bytecount(run);
            from = to;
        }
    }
    let scanned: Vec<Result<Scanned, ImportError>> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|&(run, first)| s.spawn(move || scan_lines(run, first, now_ms)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let rows = scanned
        .iter()
        .map(|p| p.as_ref().map_or(0, |p| p.rows.len()))
        .sum();
    let mut out = Scanned {
        keys: Vec::new(),
        rows: Vec::with_capacity(rows),
    };
    let mut index: HashMap<SeriesKey, u32, foldhash::fast::RandomState> = HashMap::default();
    for part in scanned {
        let part = part?;
        let remap: Vec<u32> = part
            .keys
            .into_iter()
            .map(|k| {
                *index.entry(k).or_insert_with_key(|k| {
                    out.keys.push(k.clone());
                    out.keys.len() as u32 - 1
                })
            })
            .collect();
        out.rows.extend(
            part.rows
                .into_iter()
                .map(|(k, t, v)| (remap[k as usize], t, v)),
        );
    }
    Ok(out)
}

/// Newlines in `text`.
fn bytecount(text: &str) -> usize {
    text.bytes().filter(|b| *b == b'\n').count()
}

/// [`scan`] of one run of lines, the first being line `first + 1`.
fn scan_lines(text: &str, first: usize, now_ms: i64) -> Result<Scanned, ImportError> {
    let mut by_text: HashMap<&str, u32, foldhash::fast::RandomState> = HashMap::default();
    // About one sample per 48 bytes of text: most bodies never regrow the rows.
    let mut out = Scanned {
        keys: Vec::new(),
        rows: Vec::with_capacity(text.len() / 48),
    };
    for (line, l) in lines(text, first) {
        let Some((series, rest)) = exposition::split(l) else {
            // Not splittable: the full parser names the problem (or reads it).
            let p = point(line, l, now_ms)?;
            out.keys.push(p.key);
            out.rows.push((out.keys.len() as u32 - 1, p.ts, p.value));
            continue;
        };
        let index = match by_text.get(series) {
            Some(i) => *i,
            None => {
                let p = point(line, l, now_ms)?;
                out.keys.push(p.key);
                let i = out.keys.len() as u32 - 1;
                by_text.insert(series, i);
                i
            }
        };
        let (value, ts) = exposition::value_and_time(rest).map_err(|e| ImportError {
            line,
            message: e.to_string(),
        })?;
        out.rows.push((index, ts.unwrap_or(now_ms), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_large_body_read_by_threads_reads_as_one_thread_does() {
        let mut text = String::from("# HELP x\n");
        for i in 0..90_000 {
            text.push_str(&format!(
                "load{{app=\"a{}\",i=\"{}\"}} {i} {}\n",
                i % 7,
                i % 13,
                i * 10
            ));
            if i % 1000 == 0 {
                text.push_str("\n# a comment\nup 1\n");
            }
        }
        assert!(text.len() > 2 * PARALLEL_SCAN_BYTES);
        let whole = scan_lines(&text, 0, 5).unwrap();
        let split = scan(&text, 5).unwrap();
        assert_eq!(split.keys, whole.keys);
        assert_eq!(split.rows, whole.rows);
        // A bad line deep in the body is named by its line in the whole body.
        let mut bad = text.clone();
        bad.push_str("load{app=} 1\n");
        let lines = bad.lines().count();
        let e = scan(&bad, 5).unwrap_err();
        assert_eq!(e.line, lines, "{e}");
        // The first bad line wins, even when a later run has one too.
        let early = format!("up 1\nup{{a=b}} 2\n{bad}");
        assert_eq!(scan(&early, 5).unwrap_err().line, 2);
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
