//! The autoscaler nozzle.
//!
//! - [`engine`]: the pure rule engine (Cloud Foundry semantics, explained decisions).
//! - [`policy`]: Cloud Foundry app-autoscaler policies (YAML or JSON) with Hydrant's
//!   extensions, validated with every problem reported at file:line:column.

pub mod engine;
pub mod policy;
