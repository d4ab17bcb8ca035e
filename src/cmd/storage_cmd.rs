//! Flags and glue for `hydrant storage` (built with the default `storage` feature).

use hydrant_storage::promql::limits as promql_limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hydrant_runtime::shutdown;
use hydrant_storage::sink::Sink;
use hydrant_storage::sink::remote_write::RemoteWrite;
use hydrant_storage::store;

use hydrant_runtime::config::{Invalid, Invalids};

use super::{ComponentArgs, bind, parse_duration};

#[derive(Debug, Args)]
pub(crate) struct StorageArgs {
    /// Doppler to read the Firehose from; repeat to read several.
    #[arg(long = "from", default_value = "127.0.0.1:8082")]
    dopplers: Vec<String>,
    /// Address of the query API (Prometheus-compatible, plus /api/v1/sql).
    #[arg(long, default_value = "127.0.0.1:9400")]
    pub(crate) http: SocketAddr,
    /// Data directory.
    #[arg(long, default_value = "hydrant-data/storage")]
    data_dir: PathBuf,
    /// Whole hours older than this are dropped (e.g. 15d, 36h).
    #[arg(long, default_value = "15d", value_parser = parse_duration)]
    retention: Duration,
    /// Do not sync samples to a write-ahead log (a crash then loses the open hour).
    #[arg(long)]
    no_wal: bool,
    /// Series per metric name beyond which new series are refused (and counted).
    #[arg(long, default_value_t = hydrant_storage::catalog::DEFAULT_MAX_SERIES_PER_METRIC)]
    max_series_per_metric: usize,
    /// Log rows held in memory between two writes to Parquet (the oldest are dropped
    /// beyond it, counted).
    #[arg(long, default_value_t = hydrant_storage::logs::DEFAULT_MAX_ROWS)]
    max_log_rows: usize,
    /// Time one PromQL or SQL query may run before it is stopped (503 `timeout`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    query_timeout: Duration,
    /// Memory all SQL queries together may hold (e.g. 1GiB); a query needing more is
    /// refused.
    #[arg(long, default_value = "1GiB", value_parser = super::parse_bytes)]
    query_memory: usize,
    /// Memory decoded Parquet parts may hold for PromQL reads (e.g. 512MiB): a query over
    /// cached parts reads memory instead of planning, opening and decoding files.
    #[arg(long, default_value = "512MiB", value_parser = super::parse_bytes)]
    part_cache: usize,
    /// Threads queries run on, apart from ingest and the API.
    #[arg(long, default_value_t = hydrant_storage::queries::DEFAULT_QUERY_THREADS)]
    query_threads: usize,
    /// Longest PromQL query accepted, in bytes.
    #[arg(long, default_value_t = promql_limits::MAX_QUERY_BYTES)]
    promql_max_bytes: usize,
    /// Deepest bracket nesting a PromQL query may have.
    #[arg(long, default_value_t = promql_limits::MAX_NESTING)]
    promql_max_depth: usize,
    /// Most operators in one PromQL query.
    #[arg(long, default_value_t = promql_limits::MAX_OPERATORS)]
    promql_max_operators: usize,
    /// Most selectors one PromQL query may read.
    #[arg(long, default_value_t = promql_limits::MAX_SELECTORS)]
    promql_max_selectors: usize,
    /// Also send every stored sample to this Prometheus remote-write URL
    /// (e.g. http://prometheus:9090/api/v1/write).
    #[arg(long)]
    remote_write_url: Option<String>,
    /// Also write every stored sample to this InfluxDB v2 server.
    #[cfg(feature = "influxdb")]
    #[arg(long, requires_all = ["influx_org", "influx_bucket"])]
    influx_url: Option<String>,
    /// InfluxDB organization.
    #[cfg(feature = "influxdb")]
    #[arg(long)]
    influx_org: Option<String>,
    /// InfluxDB bucket.
    #[cfg(feature = "influxdb")]
    #[arg(long)]
    influx_bucket: Option<String>,
    /// InfluxDB token.
    #[cfg(feature = "influxdb")]
    #[arg(
        long,
        env = "HYDRANT_INFLUX_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    influx_token: String,
    /// Keep Parquet parts and the catalog on this object store too, shared with other
    /// storage nodes: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or
    /// file:///dir. Credentials come from the provider's environment variables
    /// (AWS_ACCESS_KEY_ID, …). Nodes then split the Firehose by source id and each
    /// answers queries over all of them.
    #[arg(long, requires = "node_id")]
    object_store: Option<String>,
    /// An option of the object store's client, KEY=VALUE (e.g.
    /// aws_endpoint=http://127.0.0.1:9000, aws_allow_http=true); repeat for several.
    #[arg(long = "object-store-option", value_parser = parse_option)]
    object_store_options: Vec<(String, String)>,
    /// This node's name in the object store (unique per node, stable across restarts).
    #[arg(long)]
    node_id: Option<String>,
    /// How often to seal what is buffered, publish it, and read the other nodes.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    object_sync: Duration,
    /// Name the dopplers' certificates must carry.
    #[arg(long, default_value = "doppler")]
    tls_server_name: String,
    #[command(flatten)]
    component: ComponentArgs,
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn sinks(a: &StorageArgs, problems: &mut Vec<Invalid>) -> Vec<Arc<dyn Sink>> {
    let mut out: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(url) = &a.remote_write_url {
        if url.starts_with("http://") || url.starts_with("https://") {
            out.push(Arc::new(RemoteWrite::new(url)));
        } else {
            problems.push(Invalid::new(
                "remote-write-url",
                format!("must be an http(s) URL, got {url:?}"),
            ));
        }
    }
    #[cfg(feature = "influxdb")]
    if let Some(url) = &a.influx_url {
        out.push(Arc::new(hydrant_storage::sink::influx::Influx::new(
            hydrant_storage::sink::influx::Config {
                url: url.clone(),
                org: a.influx_org.clone().unwrap_or_default(),
                bucket: a.influx_bucket.clone().unwrap_or_default(),
                token: a.influx_token.clone(),
            },
        )));
    }
    out
}

/// The storage nozzle's config from its flags, with every problem it would refuse.
pub(crate) fn build(a: &StorageArgs) -> Result<hydrant_storage::Config, Invalids> {
    let mut problems = Vec::new();
    let tls = a.component.tls.check(&a.tls_server_name, &mut problems);
    let self_tls = a.component.tls.check("metron", &mut Vec::new());
    let sinks = sinks(a, &mut problems);
    let access = a.component.access.access(&mut problems);
    let config = hydrant_storage::Config {
        discovery: a.component.discovery(),
        access,
        queries: hydrant_storage::queries::Limits {
            timeout: a.query_timeout,
            memory: a.query_memory,
            threads: a.query_threads,
            promql: promql_limits::Limits {
                max_bytes: a.promql_max_bytes,
                max_nesting: a.promql_max_depth,
                max_operators: a.promql_max_operators,
                max_selectors: a.promql_max_selectors,
            },
        },
        dopplers: a.dopplers.clone(),
        tls,
        store: store::Config {
            dir: a.data_dir.clone(),
            wal: !a.no_wal,
            max_series_per_metric: a.max_series_per_metric,
            retention: a.retention,
            seal_rows: store::DEFAULT_SEAL_ROWS,
            part_cache_bytes: a.part_cache,
        },
        max_log_rows: a.max_log_rows,
        maintenance: hydrant_storage::service::DEFAULT_MAINTENANCE,
        sinks,
        self_metrics: a.component.self_metrics.config(
            "storage",
            a.http,
            self_tls,
            super::DEFAULT_AGENT,
        ),
        grace: a.component.grace(),
        object: a
            .object_store
            .as_ref()
            .map(|url| hydrant_storage::object::Config {
                url: url.clone(),
                options: a.object_store_options.clone(),
                node: a.node_id.clone().unwrap_or_default(),
                sync: a.object_sync,
            }),
    };
    problems.extend(config.validate());
    Invalids::check(problems)?;
    Ok(config)
}

/// `hydrant storage`.
pub(crate) async fn storage(a: StorageArgs) -> anyhow::Result<()> {
    let config = build(&a)?;
    // Transparent huge pages off for this process: the allocator gives freed memory back
    // to the kernel in small pieces, and with huge pages each reuse faulted in and zeroed
    // 2 MiB. Measured on the Firehose writer at 2.5 M samples/s: 0.42–0.54 µs of CPU per
    // sample with them, 0.33–0.35 without (BENCHMARKS.md).
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
    }
    let http = bind("--http", a.http).await?;
    tracing::info!(http = %a.http, data_dir = %a.data_dir.display(), wal = !a.no_wal, "storage listening");
    hydrant_storage::run(config, http, shutdown::on_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    fn parse(flags: &[&str]) -> Result<super::StorageArgs, String> {
        let mut argv = vec!["hydrant", "storage", "--insecure-open"];
        argv.extend_from_slice(flags);
        match crate::Cli::try_parse_from(argv) {
            Ok(cli) => match cli.command {
                crate::Command::Storage(a) => Ok(a),
                _ => Err("not storage".into()),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    fn refused(flags: &[&str]) -> String {
        let a = parse(flags).unwrap();
        super::build(&a).unwrap_err().to_string()
    }

    #[test]
    fn object_store_flags_are_checked_by_name() {
        let e = parse(&["--object-store", "s3://b/p"]).unwrap_err();
        assert!(e.contains("--node-id"), "{e}");
        let e = parse(&["--object-store-option", "novalue"]).unwrap_err();
        assert!(e.contains("is not KEY=VALUE"), "{e}");
        let e = refused(&["--object-store", "ftp://h/x", "--node-id", "a"]);
        assert!(
            e.contains("object-store") && e.contains("not supported"),
            "{e}"
        );
        let e = refused(&["--object-store", "file:///tmp/x", "--node-id", "a/b"]);
        assert!(
            e.contains("node-id") && e.contains("not a node name"),
            "{e}"
        );
        let e = refused(&[
            "--object-store",
            "s3://b/p",
            "--node-id",
            "a",
            "--object-store-option",
            "colour=blue",
        ]);
        assert!(e.contains("object-store") && e.contains("colour"), "{e}");
        let dir = std::env::temp_dir().join(format!("hydrant-objflags-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        let a = parse(&["--object-store", &url, "--node-id", "storage-0"]).unwrap();
        let config = super::build(&a).unwrap();
        let o = config.object.unwrap();
        assert_eq!((o.node.as_str(), o.sync.as_secs()), ("storage-0", 60));
        let _ = std::fs::remove_dir_all(dir);
    }
}
