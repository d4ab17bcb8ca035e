//! The autoscaler nozzle.
//!
//! - [`aggregate`]: container gauges and `http` timers → app-level samples, as CF computes them.
//! - [`fleet`]: the pure core over every app (observe, tick → effects, completed, explain).
//! - [`history`]: scaling history records (CF's `scaling_histories` fields and more).
//! - [`alert`]: alert states with Prometheus `for:` / `keep_firing_for` semantics.
//! - [`engine`]: the pure rule engine (Cloud Foundry semantics, explained decisions).
//! - [`schedule`]: schedules at run time (limits, start/end scaling, overlaps).
//! - [`policy`]: Cloud Foundry app-autoscaler policies (YAML or JSON) with Hydrant's
//!   extensions, validated with every problem reported at file:line:column.

pub mod aggregate;
pub mod alert;
pub mod engine;
pub mod fleet;
pub mod history;
pub mod policy;
pub mod schedule;
