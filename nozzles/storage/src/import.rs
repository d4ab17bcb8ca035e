//! `POST /api/v1/import/prometheus`: samples in the Prometheus text format, each with an
//! optional millisecond timestamp (VictoriaMetrics' import format), for backfill and
//! migrations. A body is all or nothing: it is checked whole before anything is stored,
//! and a bad line is refused with its number. Names are sanitised as for envelopes.

use std::collections::BTreeMap;

use hydrant_runtime::exposition;

use crate::model::{self, Point, SeriesKey};

/// Largest body accepted (a 413 beyond it).
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

/// Samples stored per call into the store: one WAL sync, and bounded memory, per chunk.
pub const CHUNK_SAMPLES: usize = 50_000;

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

/// Checks every line; the first bad one is the error. Returns the number of samples.
pub fn check(text: &str) -> Result<usize, ImportError> {
    let mut n = 0;
    for (line, l) in lines(text) {
        // Only parsing can fail; building the point comes in the storing pass.
        exposition::parse(l).map_err(|e| ImportError {
            line,
            message: e.to_string(),
        })?;
        n += 1;
    }
    Ok(n)
}

/// Calls `store` with the samples of `text` in chunks of [`CHUNK_SAMPLES`]; stops at the
/// first error (callers [`check`] first). Samples without a timestamp get `now_ms`.
pub fn for_each_chunk<E>(
    text: &str,
    now_ms: i64,
    mut store: impl FnMut(&[Point]) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<ImportError>,
{
    let mut chunk = Vec::with_capacity(CHUNK_SAMPLES.min(1024));
    for (line, l) in lines(text) {
        chunk.push(point(line, l, now_ms)?);
        if chunk.len() == CHUNK_SAMPLES {
            store(&chunk)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        store(&chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(#[allow(dead_code)] ImportError);

    impl From<ImportError> for E {
        fn from(e: ImportError) -> E {
            E(e)
        }
    }

    #[test]
    fn samples_are_sanitised_and_stamped() {
        let text = "# a comment\n\nhttp.requests{code=\"200\",__name__=\"x\",empty=\"\"} 3 1700000000000\nup 1\n";
        assert_eq!(check(text), Ok(2));
        let mut got = Vec::new();
        for_each_chunk(text, 42, |c| {
            got.extend_from_slice(c);
            Ok::<_, E>(())
        })
        .unwrap();
        assert_eq!(got[0].key.name, "http_requests");
        assert_eq!(got[0].key.labels.len(), 1, "no __name__, no empty label");
        assert_eq!((got[0].ts, got[0].value), (1_700_000_000_000, 3.0));
        assert_eq!((got[1].key.name.as_str(), got[1].ts), ("up", 42));
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = check("up 1\nup{a=b} 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: label \"a\""), "{e}");
    }

    #[test]
    fn large_bodies_are_stored_in_chunks() {
        let text: String = (0..CHUNK_SAMPLES + 10)
            .map(|i| format!("x {i} {i}\n"))
            .collect();
        let mut sizes = Vec::new();
        for_each_chunk(&text, 0, |c| {
            sizes.push(c.len());
            Ok::<_, E>(())
        })
        .unwrap();
        assert_eq!(sizes, [CHUNK_SAMPLES, 10]);
    }
}
