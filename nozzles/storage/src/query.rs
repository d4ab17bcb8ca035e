//! Runs PromQL against the store: plan, fetch every selector's series through the store
//! (decoded Parquet parts from memory, DataFusion for parts too large to keep decoded, plus
//! the buffer), evaluate, and render Prometheus' JSON.

use std::collections::BTreeSet;
use std::sync::Arc;

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

pub use hydrant_promql::params::{parse_duration, parse_time};
pub use hydrant_promql::render::{render, time_json};
