//! Flags and glue for the cell and its apps: `cell`, `push`, `scale`, `apps`, `delete`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use hydrant::{apps, cell};
use hydrant_runtime::config::Invalids;
use hydrant_runtime::shutdown;

use super::{AccessArgs, SchedulerArgs, SelfMetricsArgs, TlsArgs, bind, parse_duration, parse_tag};

#[derive(Debug, Args)]
pub(crate) struct CellArgs {
    /// Address of the scheduler API (and /metrics, /healthz).
    #[arg(long, default_value = "127.0.0.1:9022")]
    pub(crate) api: SocketAddr,
    /// Agent to send logs and metrics to.
    #[arg(long, default_value = "127.0.0.1:3458")]
    pub(crate) agent: String,
    /// Instance working directories live here.
    #[arg(long, default_value = "hydrant-data/cell")]
    pub(crate) data_dir: PathBuf,
    /// Interval of container metrics (e.g. 15s, 1s).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub(crate) metrics_interval: Duration,
    /// Per-instance log rate limit in bytes per second (default: unlimited).
    #[arg(long)]
    pub(crate) log_rate_limit: Option<u64>,
    /// Time between SIGTERM and SIGKILL when stopping an instance.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) stop_grace: Duration,
    #[command(flatten)]
    pub(crate) access: AccessArgs,
    /// Name the agent's certificate must carry.
    #[arg(long, default_value = "metron")]
    pub(crate) tls_server_name: String,
    #[command(flatten)]
    pub(crate) self_metrics: SelfMetricsArgs,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// App name.
    pub(crate) name: String,
    /// Instances to run.
    #[arg(short = 'i', long, default_value_t = 1)]
    pub(crate) instances: u32,
    /// Memory quota per instance (e.g. 256M, 1G).
    #[arg(short = 'm', long, default_value = "256M")]
    pub(crate) memory: String,
    /// Disk quota per instance (e.g. 1G).
    #[arg(short = 'k', long, default_value = "1G")]
    pub(crate) disk: String,
    /// Environment variable KEY=VALUE; repeatable.
    #[arg(short = 'e', long = "env", value_parser = parse_tag)]
    pub(crate) env: Vec<(String, String)>,
    /// After `--`, what each instance runs: one argument is a shell command line
    /// (`-- 'while true; do echo hi; sleep 1; done'`); several are a program and its
    /// arguments, passed unchanged (`-- sh -c 'while :; do sleep 1; done'`).
    #[arg(last = true, required = true)]
    pub(crate) command: Vec<String>,
    /// Return once the app is created, without waiting for its instances to run.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Time the instances have to run before push fails (as `cf push`'s start timeout).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// App name or guid.
    pub(crate) name: String,
    /// Desired instances.
    #[arg(short = 'i', long, allow_negative_numbers = true)]
    pub(crate) instances: Option<i64>,
    /// New memory quota per instance (e.g. 512M, 1G); instances restart one at a time.
    #[arg(short = 'm', long)]
    pub(crate) memory: Option<String>,
    /// New disk quota per instance (e.g. 2G); instances restart one at a time.
    #[arg(short = 'k', long)]
    pub(crate) disk: Option<String>,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AppsArgs {
    /// Print every app with its instances' stats as JSON, one app per line.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AppArgs {
    /// App name or guid.
    pub(crate) name: String,
    /// Print the app and its instances' stats as JSON (Cloud Controller's resources).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// App name or guid.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

/// The cell's config from its flags, with every problem it would refuse.
pub(crate) fn build(a: &CellArgs) -> Result<cell::Config, Invalids> {
    let mut problems = Vec::new();
    // The cell's own metrics go to the agent it sends its apps' envelopes to.
    let tls = a.tls.check(&a.tls_server_name, &mut problems);
    let self_metrics = a.self_metrics.config("cell", a.api, tls.clone(), &a.agent);
    let mut config = cell::Config::new(a.agent.clone(), a.data_dir.clone());
    config.self_metrics = self_metrics;
    config.agent_tls = tls;
    config.metrics_interval = a.metrics_interval;
    config.log_rate_limit = a.log_rate_limit;
    config.stop_grace = a.stop_grace;
    config.access = a.access.access(&mut problems);
    problems.extend(config.validate());
    Invalids::check(problems)?;
    Ok(config)
}

/// `hydrant cell`.
pub(crate) async fn cell(a: CellArgs) -> anyhow::Result<()> {
    let config = build(&a)?;
    let api = bind("--api", a.api).await?;
    tracing::info!(api = %a.api, agent = %config.agent, data_dir = %config.data_dir.display(), "cell listening");
    cell::run(config, api, shutdown::on_signal()).await?;
    Ok(())
}

/// `hydrant push`.
pub(crate) async fn push(a: PushArgs) -> anyhow::Result<()> {
    let memory = apps::parse_megabytes(&a.memory).context("--memory")?;
    let disk = apps::parse_megabytes(&a.disk).context("--disk")?;
    let env: BTreeMap<String, String> = a.env.into_iter().collect();
    let command = apps::command_line(&a.command);
    let client = a.scheduler.client()?;
    let app = client
        .push(&a.name, &command, a.instances, memory, disk, &env)
        .await?;
    println!(
        "pushed {} ({}) with {} instance(s)",
        a.name, app.guid, a.instances
    );
    if !a.no_wait && a.instances > 0 {
        client
            .wait_started(&a.name, &app.guid, a.instances, a.timeout)
            .await?;
        println!(
            "{}: {} of {} instances running",
            a.name, a.instances, a.instances
        );
    }
    Ok(())
}

/// `hydrant scale`.
///
/// `-i` alone scales horizontally; `-m`/`-k` change the quotas (Cloud Controller's
/// `memory_in_mb`/`disk_in_mb` on the same route), after which the cell restarts the
/// instances one at a time.
pub(crate) async fn scale(a: ScaleArgs) -> anyhow::Result<()> {
    if a.instances.is_none() && a.memory.is_none() && a.disk.is_none() {
        anyhow::bail!("nothing to scale: give -i INSTANCES, -m MEMORY or -k DISK");
    }
    let mb = |v: &Option<String>, flag: &str| -> anyhow::Result<Option<i64>> {
        v.as_deref()
            .map(|v| {
                apps::parse_megabytes(v)
                    .map(|m| m as i64)
                    .context(flag.to_owned())
            })
            .transpose()
    };
    let change = hydrant::cell::contract::Scale {
        instances: a.instances,
        memory_in_mb: mb(&a.memory, "--memory")?,
        disk_in_mb: mb(&a.disk, "--disk")?,
    };
    let p = a.scheduler.client()?.scale_to(&a.name, &change).await?;
    let mut done = Vec::new();
    if let Some(n) = change.instances {
        done.push(format!("{n} instance(s)"));
    }
    if let Some(m) = change.memory_in_mb {
        done.push(format!("{m}M memory"));
    }
    if let Some(d) = change.disk_in_mb {
        done.push(format!("{d}M disk"));
    }
    println!("scaled {} to {}", a.name, done.join(", "));
    if change.memory_in_mb.is_some() || change.disk_in_mb.is_some() {
        println!(
            "{} instance(s) restart one at a time with the new quotas",
            p.instances
        );
    }
    Ok(())
}

/// `hydrant apps`.
pub(crate) async fn apps(a: AppsArgs) -> anyhow::Result<()> {
    let client = a.scheduler.client()?;
    if a.json {
        for app in client.apps().await? {
            let stats = client.stats(&app.guid).await?;
            println!("{}", serde_json::json!({ "app": app, "instances": stats }));
        }
    } else {
        print!("{}", client.table().await?);
    }
    Ok(())
}

/// `hydrant app`.
pub(crate) async fn app(a: AppArgs) -> anyhow::Result<()> {
    let client = a.scheduler.client()?;
    if a.json {
        let app = client.find(&a.name).await?;
        let stats = client.stats(&app.guid).await?;
        println!("{}", serde_json::json!({ "app": app, "instances": stats }));
    } else {
        print!("{}", client.details(&a.name).await?);
    }
    Ok(())
}

/// `hydrant delete`.
pub(crate) async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    a.scheduler.client()?.delete(&a.name).await?;
    println!("deleted {}", a.name);
    Ok(())
}
