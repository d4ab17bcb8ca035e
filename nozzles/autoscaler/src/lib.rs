//! The autoscaler nozzle.
//!
//! - [`alert`]: alert states with Prometheus `for:` / `keep_firing_for` semantics.
//! - [`engine`]: the pure rule engine (Cloud Foundry semantics, explained decisions).
//! - [`schedule`]: schedules at run time (limits, start/end scaling, overlaps).
//! - [`policy`]: Cloud Foundry app-autoscaler policies (YAML or JSON) with Hydrant's
//!   extensions, validated with every problem reported at file:line:column.

pub mod alert;
pub mod engine;
pub mod policy;
pub mod schedule;
