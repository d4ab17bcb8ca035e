//! Hydrant: an observability pipeline in the tradition of Cloud Foundry's Loggregator.
//!
//! This crate is the `hydrant` binary and what only it needs: the CLI and the clients
//! behind it. The components it runs live in their own crates, re-exported here:
//! - `hydrant-components`: [`router`], [`doppler`], [`agent`], [`cell`] and what they share
//!   ([`status`], [`inbound`]).
//! - the nozzles under `nozzles/`: log cache, storage, autoscaler.
//!
//! Here:
//! - [`apps`]: the client of the cell's API (`hydrant apps`, `hydrant push`).
//! - [`logs`]: `hydrant logs`, recent and live app logs from the log cache.
//! - [`emit`] and [`firehose`]: the load generator and the Firehose subscriber CLIs.
//! - [`up`]: one command runs the whole system; [`demo`] its demo app.
//! - [`console`]: the web console, a page over the components' APIs.
//! - [`certs`]: development mTLS material.
//! - [`telemetry`]: every metric of every crate, for the dashboards check.
//!
//! Wire types and clients live in the `hydrant-proto` crate; what every component shares
//! beyond the wire (`/metrics` and `/healthz`, self-metrics, shutdown, the `/v2/read`
//! gateway) in `hydrant-runtime`.

pub use hydrant_components::{
    agent, cell, connections, doppler, drain, inbound, pending, router, status, v1,
};

pub mod apps;
pub mod certs;
pub mod console;
pub mod demo;
pub mod emit;
pub mod firehose;
pub mod logs;
pub mod telemetry;
pub mod up;
