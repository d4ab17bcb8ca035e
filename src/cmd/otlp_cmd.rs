//! `hydrant otlp-export`: the OTLP export nozzle (see `hydrant_otlp`), sending the
//! Firehose's logs and metrics to an OpenTelemetry endpoint.

use std::net::SocketAddr;

use clap::Args;
use hydrant_runtime::config::{Invalid, Invalids};
use hydrant_runtime::{https, shutdown};

use super::{ComponentArgs, bind, check_url, parse_tag};

#[derive(Debug, Args)]
pub(crate) struct OtlpExportArgs {
    /// Doppler to read the Firehose from; repeat to read several.
    #[arg(long = "from", default_value = "127.0.0.1:8082")]
    pub(crate) dopplers: Vec<String>,
    /// OTLP/HTTP endpoint, e.g. http://collector:4318 (logs go to /v1/logs, metrics to
    /// /v1/metrics).
    #[arg(long)]
    pub(crate) to: String,
    /// Header sent with every export, as NAME=VALUE (an API key); repeatable.
    #[arg(long = "header", value_parser = parse_tag)]
    pub(crate) headers: Vec<(String, String)>,
    /// CA certificate (PEM file) the endpoint's certificate chains to (default: the
    /// system's roots).
    #[arg(long)]
    pub(crate) to_ca: Option<std::path::PathBuf>,
    /// Address of /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:9600")]
    pub(crate) http: SocketAddr,
    /// Name the dopplers' certificates must carry.
    #[arg(long, default_value = "doppler")]
    pub(crate) tls_server_name: String,
    #[command(flatten)]
    pub(crate) component: ComponentArgs,
}

/// The exporter's config from its flags, with every problem it would refuse.
pub(crate) fn build(a: &OtlpExportArgs) -> Result<hydrant_otlp::Config, Invalids> {
    let mut problems = Vec::new();
    let tls = a.component.tls.check(&a.tls_server_name, &mut problems);
    let access = a.component.access.access(&mut problems);
    check_url("to", &a.to, &mut problems);
    let client_tls = match &a.to_ca {
        Some(path) => https::ClientTls::ca_file(path)
            .map_err(|e| problems.push(Invalid::new("to-ca", e.to_string())))
            .unwrap_or_default(),
        None => https::ClientTls::default(),
    };
    let http = https::client(&client_tls)
        .map_err(|e| problems.push(Invalid::new("to-ca", e.to_string())))
        .ok();
    Invalids::check(problems)?;
    Ok(hydrant_otlp::Config {
        source: hydrant_runtime::nozzle::Source {
            dopplers: a.dopplers.clone(),
            tls: tls.clone(),
            discovery: a.component.discovery(),
        },
        endpoint: a.to.clone(),
        headers: a.headers.clone(),
        http: http.expect("checked above"),
        access,
        self_metrics: a.component.self_metrics.config(
            "otlp-export",
            a.http,
            a.component.tls.check("metron", &mut Vec::new()),
            super::DEFAULT_AGENT,
        ),
        grace: a.component.grace(),
    })
}

/// `hydrant otlp-export`.
pub(crate) async fn otlp_export(a: OtlpExportArgs) -> anyhow::Result<()> {
    let config = build(&a)?;
    let http = bind("--http", a.http).await?;
    tracing::info!(to = %a.to, dopplers = ?a.dopplers, "otlp export running");
    hydrant_otlp::run(config, http, shutdown::on_signal()).await?;
    Ok(())
}
