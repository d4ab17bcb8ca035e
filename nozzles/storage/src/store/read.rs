//! Reading parts through DataFusion (what the decoded-parts cache does not hold), and
//! merging reads into per-series, time-sorted samples.

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, UInt64Array};
use datafusion::prelude::{ParquetReadOptions, SessionContext, col, lit};

use super::parts::Part;
use super::{Error, buffer};
use crate::catalog::SeriesId;

/// Reads the samples of `ids` in `[start, end]` from `parts` through DataFusion into `out`.
pub async fn read_parts(
    parts: &[Part],
    ids: &[SeriesId],
    start: i64,
    end: i64,
    out: &mut BTreeMap<SeriesId, Vec<(i64, f64)>>,
) -> Result<(), Error> {
    if parts.is_empty() || ids.is_empty() {
        return Ok(());
    }
    let paths: Vec<String> = parts
        .iter()
        .map(|p| p.path.to_string_lossy().into_owned())
        .collect();
    let schema = buffer::schema();
    let df = fetch_context()
        .read_parquet(paths, ParquetReadOptions::default().schema(&schema))
        .await?;
    let list = ids.iter().map(|id| lit(*id)).collect();
    let df = df.filter(
        col("ts")
            .gt_eq(lit(start))
            .and(col("ts").lt_eq(lit(end)))
            .and(col("series_id").in_list(list, false)),
    )?;
    for batch in df.collect().await? {
        push_batch(&batch, out);
    }
    Ok(())
}

/// The DataFusion session every PromQL fetch uses: made once (a session registers hundreds
/// of functions), with filters pushed into the Parquet decoder so only the wanted series'
/// rows are decoded.
fn fetch_context() -> &'static SessionContext {
    static CONTEXT: std::sync::OnceLock<SessionContext> = std::sync::OnceLock::new();
    CONTEXT.get_or_init(|| {
        let mut config = datafusion::prelude::SessionConfig::new();
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        SessionContext::new_with_config(config)
    })
}

/// Appends a `samples`-shaped batch to per-series vectors.
pub fn push_batch(batch: &RecordBatch, out: &mut BTreeMap<SeriesId, Vec<(i64, f64)>>) {
    let (Some(s), Some(t), Some(v)) = (
        batch.column(0).as_any().downcast_ref::<UInt64Array>(),
        batch.column(1).as_any().downcast_ref::<Int64Array>(),
        batch.column(2).as_any().downcast_ref::<Float64Array>(),
    ) else {
        return;
    };
    for i in 0..s.len() {
        out.entry(s.value(i))
            .or_default()
            .push((t.value(i), v.value(i)));
    }
}

/// Sorts each series by time; for a repeated timestamp the later-added value wins.
pub fn normalize(out: &mut BTreeMap<SeriesId, Vec<(i64, f64)>>) {
    for points in out.values_mut() {
        points.sort_by_key(|(t, _)| *t); // stable: later additions stay later
        let mut dedup: Vec<(i64, f64)> = Vec::with_capacity(points.len());
        for (t, v) in points.drain(..) {
            match dedup.last_mut() {
                Some(last) if last.0 == t => last.1 = v,
                _ => dedup.push((t, v)),
            }
        }
        *points = dedup;
    }
}
