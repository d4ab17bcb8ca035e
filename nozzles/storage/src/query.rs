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

/// The series ids matching a planned selector (any of its matcher groups), this node's
/// first, then the peers' ([`crate::object::peers::global`]).
pub fn select(shared: &Shared, groups: &[Vec<promql_parser::label::Matcher>]) -> Vec<SeriesId> {
    let mut ids: BTreeSet<SeriesId> = BTreeSet::new();
    {
        let store = shared.lock();
        for g in groups {
            ids.extend(store.catalog.select(g));
        }
    }
    let mut ids: Vec<SeriesId> = ids.into_iter().collect();
    ids.extend(shared.peers.select(groups));
    ids
}

/// The labels of a series, `__name__` included.
pub fn labels(shared: &Shared, ids: &[SeriesId]) -> Vec<Arc<Labels>> {
    let label = |key: &crate::model::SeriesKey| {
        let mut l = key.labels.clone();
        l.insert("__name__".into(), key.name.clone());
        Arc::new(l)
    };
    let store = shared.lock();
    ids.iter()
        .map(|id| match crate::object::peers::split(*id) {
            (0, _) => label(store.catalog.key(*id)),
            _ => match shared.peers.key(*id) {
                Some(key) => label(&key),
                None => Arc::new(Labels::new()),
            },
        })
        .collect()
}

/// Label names over `ids` (every series when `None`), of this node and its peers.
pub fn label_names(shared: &Shared, ids: Option<&[SeriesId]>) -> BTreeSet<String> {
    let (mine, theirs) = partition(ids);
    let mut out = shared.lock().catalog.label_names(mine.as_deref());
    out.extend(shared.peers.label_names(theirs.as_deref()));
    out
}

/// Values of `name` over `ids` (every series when `None`), of this node and its peers.
pub fn label_values(shared: &Shared, name: &str, ids: Option<&[SeriesId]>) -> BTreeSet<String> {
    let (mine, theirs) = partition(ids);
    let mut out = shared.lock().catalog.label_values(name, mine.as_deref());
    out.extend(shared.peers.label_values(name, theirs.as_deref()));
    out
}

type Ids = Option<Vec<SeriesId>>;

/// Splits ids into this node's and the peers'.
fn partition(ids: Option<&[SeriesId]>) -> (Ids, Ids) {
    match ids {
        None => (None, None),
        Some(ids) => {
            let (mine, theirs) = ids
                .iter()
                .partition(|id| crate::object::peers::split(**id).0 == 0);
            (Some(mine), Some(theirs))
        }
    }
}

/// Merges series with equal labels (one series written by several nodes over time):
/// samples in time order, and for a timestamp two nodes hold, one of them.
fn merge_equal(series: Vec<Series>) -> Vec<Series> {
    let mut at: std::collections::HashMap<Arc<Labels>, usize> = Default::default();
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    let mut merged = false;
    for s in series {
        match at.get(&s.labels) {
            Some(&i) => {
                out[i].points.extend(s.points);
                merged = true;
            }
            None => {
                at.insert(Arc::clone(&s.labels), out.len());
                out.push(s);
            }
        }
    }
    if merged {
        for s in &mut out {
            s.points.sort_by_key(|p| p.0);
            s.points.dedup_by_key(|p| p.0);
        }
    }
    out
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
        if ids
            .last()
            .is_some_and(|id| crate::object::peers::split(*id).0 > 0)
        {
            series = merge_equal(series);
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
