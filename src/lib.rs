//! Hydrant: an observability pipeline in the tradition of Cloud Foundry's Loggregator.
//!
//! Reading order:
//! - [`router`]: the pure fan-out core (selectors, shard groups, deterministic routing).
//! - [`doppler`]: Ingress + the Firehose (Egress) around the router.
//! - [`agent`]: per-cell ingress that completes envelopes and forwards them to dopplers.
//! - [`cell`]: runs app instances as processes, streams their logs and metrics, scales them.
//! - [`logs`]: `hydrant logs`, recent and live app logs from the log cache.
//! - [`emit`] and [`firehose`]: the load generator and the Firehose subscriber CLIs.
//! - [`certs`]: development mTLS material.
//! - Cross-cutting: [`telemetry`] (every metric name), [`status`] (errors to gRPC
//!   statuses), [`inbound`] (reading ingress streams).
//!
//! Wire types and clients live in the `hydrant-proto` crate; what every component shares
//! beyond the wire (`/metrics` and `/healthz`, self-metrics, shutdown, the `/v2/read`
//! gateway) in `hydrant-runtime`.

pub mod agent;
pub mod apps;
pub mod cell;
pub mod certs;
pub mod demo;
pub mod doppler;
pub mod emit;
pub mod firehose;
pub mod inbound;
pub mod logs;
pub mod router;
pub mod status;
pub mod telemetry;
pub mod up;
