//! The log cache nozzle: keeps the recent envelopes of every source from the Firehose and
//! serves them through a Log Cache-compatible HTTP API, plus live tailing over server-sent
//! events.
//!
//! - [`store`]: the pure cache (ordering, eviction, reads).

pub mod store;
