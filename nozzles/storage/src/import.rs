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

/// Sample lines of `text` with their line numbers (comments and blank lines skipped).
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
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
/// their value and timestamp are read. Samples without a timestamp get `now_ms`.
pub fn scan(text: &str, now_ms: i64) -> Result<Scanned, ImportError> {
    let mut by_text: HashMap<&str, u32> = HashMap::new();
    let mut out = Scanned::default();
    for (line, l) in lines(text) {
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
