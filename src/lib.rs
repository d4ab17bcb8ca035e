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
//! - Cross-cutting: [`admin`] (`/metrics`, `/healthz`), [`telemetry`] (every metric name),
//!   [`status`] (errors to gRPC statuses), [`inbound`] (reading ingress streams),
//!   [`shutdown`] (signals and grace periods).
//!
//! Wire types and clients live in the `hydrant-proto` crate.

pub mod admin;
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
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod up;
