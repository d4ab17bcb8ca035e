//! Flags and glue for `hydrant console` (see `hydrant::console`): where the components'
//! APIs are, and how the console itself is reached.

use std::net::SocketAddr;

use clap::Args;
use hydrant::console::{self, Upstream};
use hydrant_runtime::config::{Invalid, Invalids};
use hydrant_runtime::{https, shutdown};

use super::{ComponentArgs, bind, check_url, parse_tag};

#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    /// Address of the console (the page, its API calls, /metrics and /healthz).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub(crate) http: SocketAddr,
    /// The scheduler API (apps, instances, push, scale, delete), e.g. http://127.0.0.1:8090.
    #[arg(long)]
    pub(crate) cell: Option<String>,
    /// The log cache API (recent and live logs).
    #[arg(long)]
    pub(crate) logcache: Option<String>,
    /// The storage nozzle's query API (charts).
    #[arg(long)]
    pub(crate) storage: Option<String>,
    /// The autoscaler API (policies, history, explain, dry runs).
    #[arg(long)]
    pub(crate) autoscaler: Option<String>,
    /// Another component whose /healthz the platform page shows, as NAME=URL (the four
    /// APIs above are shown already); repeatable.
    #[arg(long = "component", value_parser = parse_tag)]
    pub(crate) components: Vec<(String, String)>,
    /// Serve HTTPS with --tls-cert and --tls-key (without it the console serves plain HTTP
    /// and the certificates are only for its own connections).
    #[arg(long)]
    pub(crate) https: bool,
    #[command(flatten)]
    pub(crate) component: ComponentArgs,
}

/// The console's config from its flags, with every problem it would refuse.
pub(crate) fn build(a: &ConsoleArgs) -> Result<console::Config, Invalids> {
    let mut problems = Vec::new();
    let tls = a.component.tls.check("console", &mut problems);
    let access = a.component.access.access(&mut problems);
    let mut upstreams = Vec::new();
    for (upstream, url) in [
        (Upstream::Cell, &a.cell),
        (Upstream::Logcache, &a.logcache),
        (Upstream::Storage, &a.storage),
        (Upstream::Autoscaler, &a.autoscaler),
    ] {
        if let Some(url) = url {
            check_url(upstream.name(), url, &mut problems);
            upstreams.push((upstream, url.trim_end_matches('/').to_owned()));
        }
    }
    let mut components: Vec<(String, String)> = Vec::new();
    for (name, url) in &a.components {
        check_url("component", url, &mut problems);
        components.push((name.clone(), url.trim_end_matches('/').to_owned()));
    }
    for (upstream, url) in &upstreams {
        if !components.iter().any(|(n, _)| n == upstream.name()) {
            components.push((upstream.name().to_owned(), url.clone()));
        }
    }
    if a.https && tls.is_none() {
        problems.push(Invalid::new(
            "https",
            "needs --tls-ca, --tls-cert and --tls-key (the console's certificate)",
        ));
    }
    let client_tls = tls.as_ref().map(https::ClientTls::of).unwrap_or_default();
    let http = https::client(&client_tls)
        .map_err(|e| problems.push(Invalid::new("tls-ca", e.to_string())))
        .ok();
    Invalids::check(problems)?;
    Ok(console::Config {
        upstreams,
        components,
        http: http.expect("checked above"),
        access,
        tls: if a.https { tls.clone() } else { None },
        self_metrics: a.component.self_metrics.config(
            "console",
            a.http,
            tls.map(|mut t| {
                t.server_name = "metron".into();
                t
            }),
            super::DEFAULT_AGENT,
        ),
        grace: a.component.grace(),
    })
}

/// `hydrant console`.
pub(crate) async fn console(a: ConsoleArgs) -> anyhow::Result<()> {
    let config = build(&a)?;
    let http = bind("--http", a.http).await?;
    let scheme = if a.https { "https" } else { "http" };
    tracing::info!(url = %format!("{scheme}://{}", a.http), "console running");
    console::run(config, http, shutdown::on_signal()).await?;
    Ok(())
}
