//! The `hydrant` command: one binary, one subcommand per component or tool. Flags and glue
//! are in `cmd/`; the components themselves are the `hydrant` library and the nozzle crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// mimalloc: steadier tail latency than glibc malloc with large, long-lived caches.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cmd::{SchedulerArgs, apps_cmd, autoscaler_cmd, logs_cmd, pipeline, policy_cmd};

#[derive(Debug, Parser)]
#[command(
    name = "hydrant",
    version,
    about = "A Loggregator-compatible observability pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive envelopes from agents and serve them as the Firehose.
    Doppler(pipeline::DopplerArgs),
    /// Accept envelopes from local emitters and forward them to dopplers.
    Agent(pipeline::AgentArgs),
    /// Generate load over Ingress.BatchSender, with sequence numbers for loss audits.
    Emit(pipeline::EmitArgs),
    /// Subscribe to a doppler's Firehose and print envelopes or a loss/latency summary.
    Firehose(pipeline::FirehoseArgs),
    /// Generate a CA and component certificates for a development mTLS setup.
    Certs(pipeline::CertsArgs),
    /// Run app instances as processes, stream their logs and metrics, serve the scheduler API.
    Cell(apps_cmd::CellArgs),
    /// Create an app on the cell: `hydrant push NAME [-i N] [--memory 256M] -- COMMAND…`.
    Push(apps_cmd::PushArgs),
    /// Set an app's instance count.
    Scale(apps_cmd::ScaleArgs),
    /// List apps with running/desired instances, cpu and memory.
    Apps(SchedulerArgs),
    /// Delete an app (its instances are stopped).
    Delete(apps_cmd::DeleteArgs),
    /// Keep recent envelopes per source from the Firehose; serve Log Cache's read API.
    Logcache(logs_cmd::LogcacheArgs),
    /// Show an app's logs: `--recent` for the newest 1000 lines, otherwise tail live.
    Logs(logs_cmd::LogsArgs),
    /// Validate autoscaling policies: `hydrant policy check FILE…`.
    Policy(policy_cmd::PolicyArgs),
    /// Scale apps by policy from the Firehose; `history APP` and `explain APP` query it.
    Autoscaler(Box<autoscaler_cmd::AutoscalerArgs>),
    /// Store every metric from the Firehose and serve PromQL and SQL (Grafana reads it).
    #[cfg(feature = "storage")]
    Storage(cmd::storage_cmd::StorageArgs),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Doppler(a) => pipeline::doppler(a).await,
        Command::Agent(a) => pipeline::agent(a).await,
        Command::Emit(a) => pipeline::emit(a).await,
        Command::Firehose(a) => pipeline::firehose(a).await,
        Command::Certs(a) => pipeline::certs(a).await,
        Command::Cell(a) => apps_cmd::cell(a).await,
        Command::Push(a) => apps_cmd::push(a).await,
        Command::Scale(a) => apps_cmd::scale(a).await,
        Command::Apps(a) => apps_cmd::apps(a).await,
        Command::Delete(a) => apps_cmd::delete(a).await,
        Command::Logcache(a) => logs_cmd::logcache(a).await,
        Command::Logs(a) => logs_cmd::logs(a).await,
        Command::Policy(a) => policy_cmd::policy(a).await,
        Command::Autoscaler(a) => autoscaler_cmd::autoscaler(*a).await,
        #[cfg(feature = "storage")]
        Command::Storage(a) => cmd::storage_cmd::storage(a).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
