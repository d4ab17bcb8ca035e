//! The storage nozzle: every metric from the Firehose in an embedded time-series store,
//! queryable with PromQL and SQL.
//!
//! - [`model`]: envelopes → series points and log rows.
//! - [`catalog`]: series ids, labels, the inverted index and the cardinality guard.
//! - [`store`]: the engine (write buffer, WAL, Parquet parts, compaction, retention).

pub mod catalog;
pub mod model;
pub mod store;
