//! The storage nozzle: every metric from the Firehose in an embedded time-series store,
//! queryable with PromQL and SQL.
//!
//! - [`service`]: the `hydrant storage` process (ingest, maintenance, API).
//! - [`api`]: the Prometheus-compatible HTTP API and SQL.
//! - [`telemetry`]: metric names.
//! - [`sink`]: forwarding to Prometheus remote write and InfluxDB v2.
//! - [`model`]: envelopes → series points and log rows.
//! - [`writer`]: Firehose batches into the store (a fast path for known gauge series).
//! - [`catalog`]: series ids, labels, the inverted index and the cardinality guard.
//! - [`promql`]: the PromQL evaluator (pure; planned fetches, Prometheus semantics).
//! - [`query`]: PromQL against the store, Prometheus' JSON.
//! - [`sql`]: read-only SQL over `samples`, `series` and `logs`.
//! - [`queries`]: where queries run: their own threads, a time limit, a memory pool.
//! - [`logs`]: the bounded log table.
//! - [`store`]: the engine (write buffer, WAL, Parquet parts, compaction, retention).
//! - [`object`]: Parquet parts and catalogs on an object store, and the peers read from it.
//! - [`cluster`]: a node's sync with the object store (publish, read peers).

pub mod api;
pub mod catalog;
pub mod cluster;
pub mod import;
pub mod logs;
pub mod model;
pub mod object;
pub use hydrant_promql as promql;
pub mod queries;
pub mod query;
pub mod service;
pub mod sink;
pub mod sql;
pub mod telemetry;
pub mod writer;

pub use service::{Config, Error, SHARD_ID, run};
pub mod store;
