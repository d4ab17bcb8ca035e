//! Runs PromQL against the store: plan, fetch every selector's series through the store
//! (Parquet via DataFusion, plus the buffer), evaluate, and render Prometheus' JSON.

use std::collections::BTreeSet;
use std::sync::Arc;

use hydrant_proto::json::{write_str, write_str_map};
#[cfg(test)]
use serde_json::json;
use serde_json::{Number, Value as Json};

use crate::catalog::SeriesId;
use crate::promql::{
    self, Data, Error, Evaluator, LOOKBACK_MS, Labels, MAX_DURATION_MS, MAX_SAMPLES, MAX_TIME_MS,
    Series, Value,
};
use crate::store::maintain::Shared;

/// The series ids matching a planned selector (any of its matcher groups).
pub fn select(shared: &Shared, groups: &[Vec<promql_parser::label::Matcher>]) -> Vec<SeriesId> {
    let store = shared.lock();
    let mut ids: BTreeSet<SeriesId> = BTreeSet::new();
    for g in groups {
        ids.extend(store.catalog.select(g));
    }
    ids.into_iter().collect()
}

/// The labels of a series, `__name__` included.
pub fn labels(shared: &Shared, ids: &[SeriesId]) -> Vec<Arc<Labels>> {
    let store = shared.lock();
    ids.iter()
        .map(|id| {
            let key = store.catalog.key(*id);
            let mut l = key.labels.clone();
            l.insert("__name__".into(), key.name.clone());
            Arc::new(l)
        })
        .collect()
}

async fn fetch(
    shared: &Shared,
    expr: &promql_parser::parser::Expr,
    start: i64,
    end: i64,
) -> Result<Data, Error> {
    let mut data = Data::default();
    let mut total = 0usize;
    for need in promql::plan(expr, start, end, LOOKBACK_MS) {
        let ids = select(shared, &need.matchers);
        let names = labels(shared, &ids);
        let samples = shared
            .fetch(&ids, need.from, need.to)
            .await
            .map_err(|e| Error::Execution(e.to_string()))?;
        let mut series = Vec::with_capacity(ids.len());
        for (id, labels) in ids.iter().zip(names) {
            let points = samples.get(id).cloned().unwrap_or_default();
            total += points.len();
            if total > MAX_SAMPLES {
                return Err(Error::Execution(
                    "query processing would load too many samples into memory in query execution"
                        .into(),
                ));
            }
            series.push(Series { labels, points });
        }
        data.selected.push(series);
    }
    Ok(data)
}

/// An instant query at `t` (ms).
pub async fn instant(
    shared: &Shared,
    query: &str,
    t: i64,
    limits: &promql::limits::Limits,
) -> Result<Value, Error> {
    let expr = promql::parse_within(query, limits)?;
    let data = fetch(shared, &expr, t, t).await?;
    Evaluator::new(&expr, &data, LOOKBACK_MS).instant(&expr, t)
}

/// A range query over `[start, end]` every `step` (ms).
pub async fn range(
    shared: &Shared,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
    limits: &promql::limits::Limits,
) -> Result<Value, Error> {
    promql::check_range(start, end, step)?;
    let expr = promql::parse_within(query, limits)?;
    let data = fetch(shared, &expr, start, end).await?;
    Evaluator::new(&expr, &data, LOOKBACK_MS).range(&expr, start, end, step)
}

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

/// `[time, "value"]`.
fn point(out: &mut Vec<u8>, t: i64, x: f64) {
    use std::io::Write as _;
    out.push(b'[');
    time(out, t);
    out.extend_from_slice(b",\"");
    if x.is_finite() {
        let _ = write!(out, "{x}");
    } else {
        out.extend_from_slice(promql::format_value(x).as_bytes());
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

/// Parses a Prometheus time parameter (float seconds or RFC 3339) into ms.
///
/// Times are clamped to ±[`MAX_TIME_MS`] (tens of millions of years), so no later
/// arithmetic on them can overflow.
pub fn parse_time(s: &str) -> Result<i64, Error> {
    let ms = if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        (secs * 1000.0).round() as i64
    } else {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .map_err(|_| Error::BadData(format!("cannot parse {s:?} to a valid timestamp")))?
    };
    Ok(ms.clamp(-MAX_TIME_MS, MAX_TIME_MS))
}

/// Parses a step or duration parameter (float seconds or `15s`, `1m`, …) into ms.
pub fn parse_duration(s: &str) -> Result<i64, Error> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok(((secs * 1000.0).round() as i64).clamp(-MAX_DURATION_MS, MAX_DURATION_MS));
    }
    duration_units(s)
        .ok_or_else(|| Error::BadData(format!("cannot parse {s:?} to a valid duration")))
}

/// Prometheus' duration syntax (`1h30m`, `500ms`, `2w`: units in decreasing order, each at
/// most once) in ms, saturating at [`MAX_DURATION_MS`]. Written here rather than taken
/// from the PromQL parser, whose conversion panics on durations beyond `Duration`'s range.
fn duration_units(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().unwrap_or(i64::MAX);
        rest = &rest[digits..];
        // "ms" before "m", so match the longest unit first.
        let (i, (unit, ms)) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())?;
        rest = &rest[unit.len()..];
        next_unit = i + 1;
        total = total.saturating_add(n.saturating_mul(*ms));
    }
    (!s.is_empty()).then_some(total.min(MAX_DURATION_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_prometheus_syntax() {
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert_eq!(parse_duration("1m500ms").unwrap(), 60_500);
        assert_eq!(parse_duration("2w").unwrap(), 14 * 86_400_000);
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("100000000y").unwrap(), MAX_DURATION_MS);
        for bad in ["", "m", "1x", "1m1h", "1m1m", "-5m", "1.5m", "5m "] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parameters_and_rendering() {
        assert_eq!(parse_time("1795315594.693").unwrap(), 1_795_315_594_693);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000);
        assert!(parse_duration("soon").is_err());
        assert_eq!(time_json(4_000), json!(4));
        assert_eq!(time_json(1_500), json!(1.5));
        let parsed = |v: &Value| serde_json::from_slice::<Json>(&render(v)).unwrap();
        assert_eq!(
            parsed(&Value::Scalar(4_000, 2.0)),
            json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
        );
        let labels = Arc::new(Labels::from([
            ("__name__".to_owned(), "cpu".to_owned()),
            ("job".to_owned(), "a \"b\"\n".to_owned()),
        ]));
        let matrix = Value::Matrix(vec![Series {
            labels: Arc::clone(&labels),
            points: vec![(1_500, 0.25), (3_000, f64::NAN), (4_000, f64::INFINITY)],
        }]);
        assert_eq!(
            parsed(&matrix),
            json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"__name__": "cpu", "job": "a \"b\"\n"},
                 "values": [[1.5, "0.25"], [3, "NaN"], [4, "+Inf"]]}]}})
        );
        let vector = Value::Vector(2_000, vec![(labels, -1e-7)]);
        assert_eq!(
            parsed(&vector),
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"__name__": "cpu", "job": "a \"b\"\n"}, "value": [2, "-0.0000001"]}]}})
        );
        assert_eq!(
            parsed(&Value::String(1_000, "x\"".into())),
            json!({"status": "success", "data": {"resultType": "string", "result": [1, "x\""]}})
        );
    }
}
