//! Runs PromQL against the store: plan, fetch every selector's series through the store
//! (Parquet via DataFusion, plus the buffer), evaluate, and render Prometheus' JSON.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Number, Value as Json, json};

use crate::catalog::SeriesId;
use crate::promql::{
    self, Data, Error, Evaluator, LOOKBACK_MS, Labels, MAX_SAMPLES, Series, Value,
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
pub async fn instant(shared: &Shared, query: &str, t: i64) -> Result<Value, Error> {
    let expr = promql::parse(query)?;
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
) -> Result<Value, Error> {
    promql::check_range(start, end, step)?;
    let expr = promql::parse(query)?;
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

fn metric(labels: &Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// Prometheus' `data` object for a result.
pub fn render(v: &Value) -> Json {
    match v {
        Value::Scalar(t, x) => {
            json!({"resultType": "scalar", "result": [time_json(*t), promql::format_value(*x)]})
        }
        Value::String(t, s) => json!({"resultType": "string", "result": [time_json(*t), s]}),
        Value::Vector(t, samples) => {
            let result: Vec<Json> = samples
                .iter()
                .map(|(l, x)| json!({"metric": metric(l), "value": [time_json(*t), promql::format_value(*x)]}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        Value::Matrix(series) => {
            let result: Vec<Json> = series
                .iter()
                .map(|s| {
                    let values: Vec<Json> = s
                        .points
                        .iter()
                        .map(|(t, x)| json!([time_json(*t), promql::format_value(*x)]))
                        .collect();
                    json!({"metric": metric(&s.labels), "values": values})
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
    }
}

/// Parses a Prometheus time parameter (float seconds or RFC 3339) into ms.
pub fn parse_time(s: &str) -> Result<i64, Error> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| Error::BadData(format!("cannot parse {s:?} to a valid timestamp")))
}

/// Parses a step or duration parameter (float seconds or `15s`, `1m`, …) into ms.
pub fn parse_duration(s: &str) -> Result<i64, Error> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| Error::BadData(format!("cannot parse {s:?} to a valid duration")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            render(&Value::Scalar(4_000, 2.0)),
            json!({"resultType": "scalar", "result": [4, "2"]})
        );
    }
}
