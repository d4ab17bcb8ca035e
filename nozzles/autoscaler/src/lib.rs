//! The autoscaler nozzle.
//!
//! - [`service`]: the `hydrant autoscaler` process (ingest, ticks, actuation, reload).
//! - [`api`]: its HTTP API (apps, history, explain; policies read, checked, saved and replayed; `/metrics`, `/healthz`).
//! - [`telemetry`]: metric names.
//! - [`replay`]: a policy's decisions over stored metrics (dry run).
//! - [`actuator`]: carries out scales (cell/Cloud Foundry, Kubernetes, webhook).
//! - [`aggregate`]: container gauges and `http` timers → app-level samples, as CF computes them.
//! - [`fleet`]: the pure core over every app (observe, tick → effects, completed, explain).
//! - [`history`]: scaling history records (CF's `scaling_histories` fields and more).
//! - [`notify`]: alert delivery to Alertmanager (v2 API) and a webhook.
//! - [`alert`]: alert states with Prometheus `for:` / `keep_firing_for` semantics.
//! - [`engine`]: the pure rule engine (Cloud Foundry semantics, explained decisions).
//! - [`schedule`]: schedules at run time (limits, start/end scaling, overlaps).
//! - [`policy`]: Cloud Foundry app-autoscaler policies (YAML or JSON) with Hydrant's
//!   extensions, validated with every problem reported at file:line:column.

pub mod actuator;
pub mod aggregate;
pub mod alert;
pub mod api;
pub mod engine;
pub mod fleet;
pub mod history;
pub mod notify;
pub mod policy;
pub mod replay;
pub mod schedule;
pub mod service;
pub mod telemetry;

pub use service::{Config, Error, SHARD_ID, run};
