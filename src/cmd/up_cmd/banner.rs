//! What `hydrant up` tells its user once everything runs (where each component is, what
//! to run next), and pushing the demo app.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hydrant::apps;
use hydrant::cell::contract::InstanceState;

use super::{DEMO, Planned, Terminal, endpoint};

pub(super) fn print_endpoints(
    term: &Terminal,
    planned: &[Planned],
    logs: &Path,
    policies: &Path,
    token: &Path,
    token_value: &str,
    ca: &Path,
) {
    term.line(format_args!("\nHydrant is up:\n"));
    for p in planned {
        term.line(format_args!(
            "  {:<11} {:<24} {}",
            p.spec.name, p.main.0, p.main.1
        ));
    }
    term.line(format_args!(
        "\n  every component serves /metrics and /healthz; logs in {}/\n  policies in {}/ (reloaded on change)\n  \
         API token in {} (the CLI uses it from this directory; elsewhere set HYDRANT_TOKEN)\n  \
         CA in {} (every port but the console's is TLS; the CLI trusts it from this directory; elsewhere set HYDRANT_TLS_CA)",
        logs.display(),
        policies.display(),
        token.display(),
        ca.display()
    ));
    let env = [
        ("HYDRANT_SCHEDULER", "cell", apps::DEFAULT_SCHEDULER),
        (
            "HYDRANT_LOG_CACHE",
            "logcache",
            super::super::logs_cmd::DEFAULT_LOG_CACHE,
        ),
        (
            "HYDRANT_AUTOSCALER",
            "autoscaler",
            super::super::autoscaler_cmd::DEFAULT_AUTOSCALER,
        ),
        (
            "HYDRANT_STORAGE",
            "storage",
            super::super::autoscaler_cmd::DEFAULT_STORAGE,
        ),
    ];
    let exports: Vec<String> = env
        .iter()
        .filter_map(|(var, name, default)| {
            endpoint(planned, name)
                .filter(|e| e.rsplit("://").next() != Some(default))
                .map(|e| format!("export {var}={e}"))
        })
        .collect();
    term.line(format_args!("\nNext:"));
    if let Some(console) = endpoint(planned, "console") {
        // The token rides in the fragment, which the browser never sends: the page signs
        // in with it and takes it out of the address bar.
        term.line(format_args!(
            "  open {console}/#token={token_value}    # the web console, signed in"
        ));
    }
    if !exports.is_empty() {
        term.line(format_args!(
            "  {}    # non-default addresses",
            exports.join("; ")
        ));
    }
    term.line(format_args!(
        "  hydrant push hello -- 'while true; do echo hello; sleep 1; done'\n  \
         hydrant logs hello"
    ));
    if let Some(storage) = endpoint(planned, "storage") {
        let token = token.display();
        let ca = ca.display();
        term.line(format_args!(
            "  curl -s --cacert {ca} -H \"Authorization: Bearer $(cat {token})\" '{storage}/api/v1/query?query=cpu'\n  \
             Grafana: add {storage} as a Prometheus data source with that bearer token \
             (header Authorization) and {ca} as its CA, import dashboards/*.json"
        ));
    }
    term.line(format_args!(""));
}

/// Pushes the demo app and says how to load it.
pub(super) async fn push_demo(
    term: &Terminal,
    planned: &[Planned],
    exe: &Path,
    token: &str,
    tls: &hydrant_runtime::https::ClientTls,
    certs: &Path,
) -> anyhow::Result<()> {
    let scheduler = endpoint(planned, "cell").context("no cell")?;
    let agent = endpoint(planned, "agent").context("no agent")?;
    let client = apps::Client::new(
        scheduler,
        Some(token.to_owned()),
        hydrant_runtime::https::client(tls)?,
    );
    let command = format!("exec {} demo-app", shell_quote(&exe.display().to_string()));
    // The demo app sends its timers to the agent with the client certificate.
    let absolute = |f: &str| {
        let path = certs.join(f);
        path.canonicalize().unwrap_or(path).display().to_string()
    };
    let env = BTreeMap::from([
        ("HYDRANT_AGENT".to_owned(), agent.to_owned()),
        ("HYDRANT_TLS_CA".to_owned(), absolute("ca.pem")),
        ("HYDRANT_TLS_CERT".to_owned(), absolute("client.pem")),
        ("HYDRANT_TLS_KEY".to_owned(), absolute("client-key.pem")),
    ]);
    // The cell keeps its apps across restarts: a demo app from an earlier `up` is reused.
    let app = match client.find(DEMO).await {
        Ok(app) => app,
        Err(apps::Error::NotFound(_)) => client
            .push(DEMO, &command, 1, 128, 256, &env)
            .await
            .context("pushing the demo app")?,
        Err(e) => return Err(e).context("looking for the demo app"),
    };
    let guid = app.guid;
    let mut port = None;
    for _ in 0..50 {
        let stats = client.stats(&guid).await.unwrap_or_default();
        port = stats
            .iter()
            .find(|s| s.state == InstanceState::Running)
            .and_then(|s| s.detail.as_ref()?.port);
        if port.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let port = port.map_or_else(|| "PORT".to_owned(), |p| p.to_string());
    term.line(format_args!(
        "The demo app is pushed, with a policy that scales it on CPU (1 to 3 instances):"
    ));
    for (command, what) in [
        (format!("hydrant logs {DEMO}"), "its logs, live"),
        (
            format!("curl '127.0.0.1:{port}/burn?seconds=300'"),
            "burn a core: it scales out in 1-2 min",
        ),
        ("hydrant apps".to_owned(), "instances and CPU"),
        (
            format!("hydrant autoscaler explain {DEMO}"),
            "each rule's value and what comes next",
        ),
        (
            format!("hydrant autoscaler history {DEMO}"),
            "what it decided, and why",
        ),
    ] {
        term.line(format_args!("  {command:<44} # {what}"));
    }
    term.line(format_args!(""));
    Ok(())
}

/// `s` quoted for `/bin/sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
