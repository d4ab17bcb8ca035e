//! `POST /api/v1/sql`: read-only SQL through DataFusion over three tables:
//! `samples(series_id, ts, value)` (every Parquet part plus the buffer),
//! `series(series_id, name, labels)` (labels as a JSON object) and
//! `logs(ts, source_id, instance_id, source_type, stream, payload)` (every log part plus
//! the rows in memory). With an object store, peers' series (under tagged ids), samples
//! and log rows are in the same tables.

use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SQLOptions, SessionContext};

use crate::logs::store::{LOGS, LogStore};
use crate::object::peers;
use crate::store::buffer;
use crate::store::maintain::Shared;
use crate::store::parts::{METRICS, Part};

/// Errors running SQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// DataFusion refused or failed the query.
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// The result could not be encoded.
    #[error("encoding the result: {0}")]
    Encode(#[from] arrow::error::ArrowError),
    /// A peer's part could not be fetched from the object store.
    #[error("{0}")]
    Peer(#[from] crate::object::Error),
}

/// This node's series, then each peer's, under their tagged ids.
fn series_batch(shared: &Shared) -> RecordBatch {
    let (mut ids, mut names, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut add = |catalog: &crate::catalog::Catalog, node: usize| {
        for id in 0..catalog.len() as u64 {
            let key = catalog.key(id);
            ids.push(peers::global(node, id));
            names.push(key.name.clone());
            labels.push(serde_json::to_string(&key.labels).unwrap_or_default());
        }
    };
    add(&shared.lock().catalog, 0);
    for (i, n) in shared.peers.nodes().iter().enumerate() {
        add(&n.catalog, i + 1);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("labels", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(labels)),
        ],
    )
    .expect("columns match the schema")
}

/// Runs one read-only statement in `ctx` (a session of the query memory pool).
pub async fn run(
    shared: &Shared,
    logs: &Mutex<LogStore>,
    ctx: &SessionContext,
    query: &str,
) -> Result<Vec<RecordBatch>, Error> {
    let _files = shared.files.read().await;
    let (parts, samples) = {
        let store = shared.lock();
        (store.all_parts(), store.buffer_batches())
    };
    // Peers' samples carry their own ids: each node's parts are a view that tags them.
    let mut views = Vec::new();
    let mut by_node: std::collections::BTreeMap<usize, Vec<Part>> = Default::default();
    for (node, p) in shared.peers.all_parts(METRICS) {
        by_node
            .entry(node)
            .or_default()
            .push(shared.peers.local(&p).await?);
    }
    for (node, parts) in by_node {
        let name = format!("samples_node_{node}");
        let paths: Vec<String> = parts
            .iter()
            .map(|p| p.path.to_string_lossy().into_owned())
            .collect();
        let schema = buffer::schema();
        let opts = ParquetReadOptions::default().schema(&schema);
        let df = ctx.read_parquet(paths, opts).await?;
        ctx.register_table(name.as_str(), df.into_view())?;
        views.push(format!(
            "SELECT series_id + CAST({} AS BIGINT UNSIGNED) AS series_id, ts, value FROM {name}",
            peers::global(node, 0)
        ));
    }
    register(ctx, "samples", buffer::schema(), &parts, samples, &views).await?;
    ctx.register_batch("series", series_batch(shared))?;
    let (mut log_parts, log_rows) = {
        let l = logs.lock().unwrap_or_else(|p| p.into_inner());
        (l.parts(), l.batches())
    };
    for (_, p) in shared.peers.all_parts(LOGS) {
        log_parts.push(shared.peers.local(&p).await?);
    }
    register(
        ctx,
        "logs",
        crate::logs::schema(),
        &log_parts,
        log_rows,
        &[],
    )
    .await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(query, options).await?;
    Ok(df.collect().await?)
}

/// Registers `name` as its Parquet parts plus the batches still in memory.
async fn register(
    ctx: &SessionContext,
    name: &str,
    schema: arrow::datatypes::SchemaRef,
    parts: &[Part],
    mut memory: Vec<RecordBatch>,
    views: &[String],
) -> Result<(), Error> {
    if memory.is_empty() {
        memory.push(RecordBatch::new_empty(Arc::clone(&schema)));
    }
    let table = MemTable::try_new(Arc::clone(&schema), vec![memory])?;
    let in_memory = format!("{name}_memory");
    ctx.register_table(in_memory.as_str(), Arc::new(table))?;
    let mut union = if parts.is_empty() {
        format!("SELECT * FROM {in_memory}")
    } else {
        let paths: Vec<String> = parts
            .iter()
            .map(|p| p.path.to_string_lossy().into_owned())
            .collect();
        let df = ctx
            .read_parquet(paths, ParquetReadOptions::default().schema(&schema))
            .await?;
        ctx.register_table(format!("{name}_parquet").as_str(), df.into_view())?;
        format!("SELECT * FROM {name}_parquet UNION ALL SELECT * FROM {in_memory}")
    };
    for v in views {
        union.push_str(" UNION ALL ");
        union.push_str(v);
    }
    ctx.register_table(name, ctx.sql(&union).await?.into_view())?;
    Ok(())
}

/// Rows as a JSON array of objects.
pub fn to_json(batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs)?;
    w.finish()?;
    let out = w.into_inner();
    Ok(if out.is_empty() { b"[]".to_vec() } else { out })
}

/// Rows as an Arrow IPC stream.
pub fn to_arrow(batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let schema = batches
        .first()
        .map_or_else(|| Arc::new(Schema::empty()), RecordBatch::schema);
    let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(w.into_inner()?)
}
