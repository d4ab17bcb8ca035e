//! The long-running components in one list: their `hydrant.yaml` sections, the order
//! `hydrant up` starts and stops them, the flags `up` gives them, and what their main
//! address serves. Adding a component is one entry here, plus its subcommand and its
//! addresses in `up_cmd::plan`.

use std::path::Path;

/// One component as `up` and the config file know it.
#[derive(Debug)]
pub(crate) struct Component {
    /// Its subcommand and config section.
    pub(crate) name: &'static str,
    /// Its place in `up`'s stop order (0 stops first).
    pub(crate) stop_rank: u8,
    /// What its main address serves (`up`'s banner).
    pub(crate) serves: &'static str,
    /// Whether this build has it (storage is a cargo feature).
    pub(crate) built: bool,
    /// Flags `up` sets unless the config file does, under `up`'s data directory.
    pub(crate) up_flags: fn(&Path) -> Vec<(&'static str, String)>,
    /// The certificate `up` gives it (Loggregator's names for the doppler and the agent),
    /// for its gRPC connections and its HTTPS port.
    pub(crate) cert: &'static str,
}

fn none(_: &Path) -> Vec<(&'static str, String)> {
    Vec::new()
}

fn under(data: &Path, sub: &str) -> String {
    data.join(sub).display().to_string()
}

/// In start order: each component's dependencies come first. The stop order puts the
/// console first (it only forwards), the apps and ingress next, then the router, and the
/// nozzles (which flush) last.
pub(crate) const COMPONENTS: &[Component] = &[
    Component {
        name: "doppler",
        cert: "doppler",
        stop_rank: 3,
        serves: "Firehose and ingress (gRPC)",
        built: true,
        up_flags: none,
    },
    Component {
        name: "agent",
        cert: "metron",
        stop_rank: 2,
        serves: "ingress for apps and components (gRPC); syslog drains",
        built: true,
        up_flags: |d| {
            vec![
                (
                    "drain-bindings-token-file",
                    under(d, super::up_cmd::TOKEN_FILE),
                ),
                ("drain-refresh", "5s".into()),
            ]
        },
    },
    Component {
        name: "cell",
        cert: "cell",
        stop_rank: 1,
        serves: "scheduler API: hydrant push, apps, scale",
        built: true,
        up_flags: |d| {
            vec![
                ("data-dir", under(d, "cell")),
                ("metrics-interval", "5s".into()),
            ]
        },
    },
    Component {
        name: "logcache",
        cert: "logcache",
        stop_rank: 5,
        serves: "Log Cache API: hydrant logs APP",
        built: true,
        up_flags: |d| {
            vec![
                ("scheduler-token-file", under(d, super::up_cmd::TOKEN_FILE)),
                ("warm-token-file", under(d, super::up_cmd::TOKEN_FILE)),
            ]
        },
    },
    Component {
        name: "storage",
        cert: "storage",
        stop_rank: 6,
        serves: "Prometheus query API (Grafana), /api/v1/sql",
        built: cfg!(feature = "storage"),
        up_flags: |d| vec![("data-dir", under(d, "storage"))],
    },
    Component {
        name: "autoscaler",
        cert: "autoscaler",
        stop_rank: 4,
        serves: "autoscaler API: history, explain",
        built: true,
        up_flags: |d| {
            vec![
                ("policies", under(d, "policies")),
                ("data-dir", under(d, "autoscaler")),
                ("stat-window", "30s".into()),
                ("scheduler-token-file", under(d, super::up_cmd::TOKEN_FILE)),
            ]
        },
    },
    Component {
        name: "console",
        cert: "console",
        stop_rank: 0,
        serves: "web console: apps, logs, charts, policies",
        built: true,
        up_flags: none,
    },
];

/// Every certificate `up` makes: one per component, and `client` for the CLI.
pub(crate) fn cert_names() -> Vec<String> {
    COMPONENTS
        .iter()
        .map(|c| c.cert.to_owned())
        .chain(std::iter::once("client".to_owned()))
        .collect()
}

/// The component called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Component> {
    COMPONENTS.iter().find(|c| c.name == name)
}

/// The sections a config file may have: `up` and every component.
pub(crate) fn sections() -> impl Iterator<Item = &'static str> {
    std::iter::once("up").chain(COMPONENTS.iter().map(|c| c.name))
}

/// The components this build has, in stop order.
pub(crate) fn stop_order() -> Vec<&'static str> {
    let mut built: Vec<&Component> = COMPONENTS.iter().filter(|c| c.built).collect();
    built.sort_by_key(|c| c.stop_rank);
    built.into_iter().map(|c| c.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_a_permutation_and_every_component_is_a_subcommand() {
        let mut ranks: Vec<u8> = COMPONENTS.iter().map(|c| c.stop_rank).collect();
        ranks.sort_unstable();
        assert_eq!(ranks, (0..COMPONENTS.len() as u8).collect::<Vec<_>>());
        let cli = <crate::Cli as clap::CommandFactory>::command();
        for c in COMPONENTS {
            assert!(
                cli.find_subcommand(c.name).is_some(),
                "{} is no subcommand",
                c.name
            );
        }
    }
}
