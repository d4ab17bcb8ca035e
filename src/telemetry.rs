//! Every metric Hydrant exposes: [`all`] gathers the components', the runtime's and the
//! nozzles' tables (each declared once in its own crate) so dashboards can be checked
//! against every name.

pub use hydrant_components::telemetry::{METRICS, names};
pub use hydrant_runtime::metrics::{Metric, Text, Type};

/// Every name a dashboard may use: the components' metrics and the app series.
pub fn dashboard_names() -> Vec<&'static str> {
    all()
        .into_iter()
        .chain(hydrant_runtime::series::METRICS)
        .map(|m| m.name)
        .collect()
}

/// Every declared metric of every component and nozzle.
pub fn all() -> Vec<&'static Metric> {
    let all = hydrant_components::telemetry::METRICS
        .iter()
        .chain(hydrant_runtime::selfmetrics::METRICS)
        .chain(hydrant_logcache::telemetry::METRICS)
        .chain(hydrant_autoscaler::telemetry::METRICS)
        .chain(hydrant_otlp::telemetry::METRICS)
        .chain(crate::console::telemetry::METRICS);
    #[cfg(feature = "storage")]
    let all = all.chain(hydrant_storage::telemetry::METRICS);
    all.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for m in all() {
            assert!(seen.insert(m.name), "{} declared twice", m.name);
            assert!(m.name.starts_with("hydrant_"), "{}", m.name);
            assert_eq!(
                m.kind == Type::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
    }
}
