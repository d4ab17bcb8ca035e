//! The storage nozzle: every metric from the Firehose in an embedded time-series store,
//! queryable with PromQL and SQL.
//!
//! - [`model`]: envelopes → series points and log rows.
//! - [`catalog`]: series ids, labels, the inverted index and the cardinality guard.
//! - [`promql`]: the PromQL evaluator (pure; planned fetches, Prometheus semantics).
//! - [`store`]: the engine (write buffer, WAL, Parquet parts, compaction, retention).

pub mod catalog;
pub mod model;
pub mod promql;
pub mod store;
