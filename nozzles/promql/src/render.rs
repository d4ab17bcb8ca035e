//! Prometheus' JSON for query results, written straight to bytes: a matrix of 1,000
//! series × 241 points is 4.7 MB of JSON, and building a `serde_json::Value` tree for it
//! costs more than evaluating the query.

use hydrant_proto::json::{write_str, write_str_map};
use serde_json::{Number, Value as Json};

use crate::Value;

/// A timestamp (ms) as Prometheus writes it: seconds, with a fraction only when needed.
pub fn time_json(t: i64) -> Json {
    if t % 1000 == 0 {
        Json::Number(Number::from(t / 1000))
    } else {
        Number::from_f64(t as f64 / 1000.0).map_or(Json::Null, Json::Number)
    }
}

/// The whole success response for a result, `{"status":"success","data":{…}}`, written
/// straight to bytes: a matrix of 1,000 series × 241 points is 4.7 MB of JSON, and building
/// a `serde_json::Value` tree for it costs more than evaluating the query.
pub fn render(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(match v {
        Value::Matrix(m) => 64 + m.iter().map(|s| 128 + 24 * s.points.len()).sum::<usize>(),
        Value::Vector(_, s) => 64 + 160 * s.len(),
        _ => 96,
    });
    out.extend_from_slice(br#"{"status":"success","data":{"resultType":""#);
    match v {
        Value::Scalar(t, x) => {
            out.extend_from_slice(br#"scalar","result":"#);
            point(&mut out, *t, *x);
        }
        Value::String(t, s) => {
            out.extend_from_slice(br#"string","result":["#);
            time(&mut out, *t);
            out.push(b',');
            write_str(&mut out, s);
            out.push(b']');
        }
        Value::Vector(t, samples) => {
            out.extend_from_slice(br#"vector","result":["#);
            for (i, (labels, x)) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"metric":"#);
                write_str_map(&mut out, labels.iter());
                out.extend_from_slice(br#","value":"#);
                point(&mut out, *t, *x);
                out.push(b'}');
            }
            out.push(b']');
        }
        Value::Matrix(series) => {
            out.extend_from_slice(br#"matrix","result":["#);
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"metric":"#);
                write_str_map(&mut out, s.labels.iter());
                out.extend_from_slice(br#","values":["#);
                for (j, (t, x)) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    point(&mut out, *t, *x);
                }
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b"}}");
    out
}

/// `/api/v1/series`' answer, `{"status":"success","data":[{labels}, …]}`, straight to
/// bytes as [`render`] does.
pub fn render_series(series: &[std::sync::Arc<crate::Labels>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + 128 * series.len());
    out.extend_from_slice(br#"{"status":"success","data":["#);
    for (i, labels) in series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str_map(&mut out, labels.iter());
    }
    out.extend_from_slice(b"]}");
    out
}

/// `[time, "value"]`.
fn point(out: &mut Vec<u8>, t: i64, x: f64) {
    use std::io::Write as _;
    out.push(b'[');
    time(out, t);
    out.extend_from_slice(b",\"");
    if x.is_finite() {
        let _ = write!(out, "{x}");
    } else {
        out.extend_from_slice(crate::format_value(x).as_bytes());
    }
    out.extend_from_slice(b"\"]");
}

fn time(out: &mut Vec<u8>, t: i64) {
    use std::io::Write as _;
    let _ = if t % 1000 == 0 {
        write!(out, "{}", t / 1000)
    } else {
        match time_json(t) {
            Json::Number(n) => write!(out, "{n}"),
            _ => write!(out, "null"),
        }
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn series_render_as_prometheus_json() {
        let a: crate::Labels = [("__name__", "up"), ("job", "a \"b\"")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let bytes = super::render_series(&[Arc::new(a), Arc::new(crate::Labels::new())]);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "success", "data": [{"__name__": "up", "job": "a \"b\""}, {}]})
        );
        assert_eq!(
            super::render_series(&[]),
            br#"{"status":"success","data":[]}"#
        );
    }
}
