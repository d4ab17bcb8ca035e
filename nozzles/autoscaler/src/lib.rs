//! The autoscaler nozzle.
//!
//! - [`policy`]: Cloud Foundry app-autoscaler policies (YAML or JSON) with Hydrant's
//!   extensions, validated with every problem reported at file:line:column.

pub mod policy;
