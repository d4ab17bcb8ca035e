//! The shared runtime of Hydrant's components and nozzles: everything they have in common
//! beyond the wire contract (`hydrant-proto`), which stays free of servers and `/proc`.
//!
//! Reading order:
//! - [`access`]: who may use an HTTP API: tokens and their scopes, the `Host` and
//!   `Origin` checks, one guard in front of every server.
//! - [`config`]: refused settings, named by flag and reported all at once.
//! - [`metrics`]: declared metrics ([`metrics!`]) and the Prometheus text writer.
//! - [`instrument`]: counters, gauges and labelled families that know their metric, and
//!   structs of them that render themselves ([`instruments!`]).
//! - [`series`]: the app series (container metrics, derived log and HTTP series) that
//!   the cell and the storage nozzle produce and dashboards read.
//! - [`admin`]: `/metrics` and `/healthz` over what a component reports ([`admin::Observe`]),
//!   and serving a component's HTTP API.
//! - [`https`]: TLS on the HTTP ports, and the one way to build an HTTP client.
//! - [`selfmetrics`]: a component's own metrics sent as envelopes through an agent, with
//!   process memory and CPU from `/proc`.
//! - [`exposition`]: parsing Prometheus text lines.
//! - [`shutdown`]: signals, the grace period, and stopping when a supervisor goes away.
//! - [`lifecycle`]: the one way a component runs and stops: named tasks, phases (accept,
//!   flush, serve), one grace period, overruns named.
//! - [`nozzle`]: a nozzle's Firehose subscriptions (one per doppler) feeding its handler.
//! - [`yaml`]: size and nesting limits on users' YAML, checked before it is loaded.
//! - [`sse`]: `/v2/read`, the Firehose as server-sent events over any [`sse::Source`].
//!
//! Dependencies point one way: `hydrant-proto` ← this crate ← components (doppler, agent,
//! cell, nozzles) ← the `hydrant` binary. A tidy test keeps it so.

pub mod access;
pub mod admin;
pub mod config;
pub mod exposition;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod https;
pub mod instrument;
pub mod lifecycle;
pub mod metrics;
pub mod nozzle;
pub mod selfmetrics;
pub mod series;
pub mod shutdown;
pub mod sse;
pub mod time;
pub mod yaml;
