//! Flags and glue for `hydrant storage` (built with the default `storage` feature).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use hydrant::shutdown;
use hydrant_storage::store;

use super::{TlsArgs, bind, parse_duration};

#[derive(Debug, Args)]
pub(crate) struct StorageArgs {
    /// Doppler to read the Firehose from; repeat to read several.
    #[arg(long = "from", default_value = "127.0.0.1:8082")]
    dopplers: Vec<String>,
    /// Address of the query API (Prometheus-compatible, plus /api/v1/sql).
    #[arg(long, default_value = "127.0.0.1:9400")]
    http: SocketAddr,
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
    /// Rows kept in the log table.
    #[arg(long, default_value_t = hydrant_storage::logs::DEFAULT_MAX_ROWS)]
    max_log_rows: usize,
    /// Name the dopplers' certificates must carry.
    #[arg(long, default_value = "doppler")]
    tls_server_name: String,
    #[command(flatten)]
    tls: TlsArgs,
}

/// `hydrant storage`.
pub(crate) async fn storage(a: StorageArgs) -> anyhow::Result<()> {
    if a.retention < Duration::from_secs(3600) {
        bail!("--retention must be at least 1h (whole hours are dropped)");
    }
    if a.max_series_per_metric == 0 || a.max_log_rows == 0 {
        bail!("--max-series-per-metric and --max-log-rows must be at least 1");
    }
    let config = hydrant_storage::Config {
        dopplers: a.dopplers.clone(),
        tls: a.tls.load(&a.tls_server_name)?,
        store: store::Config {
            dir: a.data_dir.clone(),
            wal: !a.no_wal,
            max_series_per_metric: a.max_series_per_metric,
            retention: a.retention,
            seal_rows: store::DEFAULT_SEAL_ROWS,
        },
        max_log_rows: a.max_log_rows,
        maintenance: hydrant_storage::service::DEFAULT_MAINTENANCE,
    };
    let http = bind("--http", a.http).await?;
    tracing::info!(http = %a.http, data_dir = %a.data_dir.display(), wal = !a.no_wal, "storage listening");
    hydrant_storage::run(config, http, shutdown::on_signal()).await?;
    Ok(())
}
