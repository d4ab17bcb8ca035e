//! The `hydrant` command: one binary, one subcommand per component or tool. Flags and glue
//! are in `cmd/`; the components themselves are the `hydrant` library and the nozzle crates.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod cmd;

/// mimalloc: steadier tail latency than glibc malloc with large, long-lived caches.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cmd::{apps_cmd, autoscaler_cmd, config, logs_cmd, pipeline, policy_cmd, up_cmd};

#[derive(Debug, Parser)]
#[command(
    name = "hydrant",
    version,
    about = "A Loggregator-compatible observability pipeline"
)]
struct Cli {
    /// Config file setting the components' flags (default: ./hydrant.yaml when it exists).
    #[arg(long, global = true, env = "HYDRANT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system on this machine: doppler, agent, cell, log cache, storage and
    /// autoscaler, supervised; `--demo` also pushes an app that scales.
    Up(up_cmd::UpArgs),
    /// Check a config file: `hydrant config check [FILE]`.
    Config(up_cmd::ConfigArgs),
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
    /// List apps with running/desired instances, mean cpu, memory, and crashed instances.
    Apps(apps_cmd::AppsArgs),
    /// Show one app as `cf app` does: its settings and each instance's state and usage.
    App(apps_cmd::AppArgs),
    /// Delete an app (its instances are stopped).
    Delete(apps_cmd::DeleteArgs),
    /// Send the Firehose's logs and metrics to an OpenTelemetry (OTLP/HTTP) endpoint.
    OtlpExport(cmd::otlp_cmd::OtlpExportArgs),
    /// Syslog drains: `hydrant drain create APP URL`, `hydrant drain delete NAME`.
    Drain(cmd::drain_cmd::DrainArgs),
    /// List syslog drains and the apps they drain.
    Drains(cmd::drain_cmd::DrainsArgs),
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
    /// Serve the web console: apps, instances, live logs, charts, policies, platform health.
    Console(cmd::console_cmd::ConsoleArgs),
    /// The demo app `up --demo` pushes (run by a cell: it reads PORT and VCAP_APPLICATION).
    #[command(hide = true)]
    DemoApp,
}

impl Command {
    /// A client of the platform's APIs (it asks, prints and exits), not a component or a
    /// load tool.
    fn is_client(&self) -> bool {
        match self {
            Command::Push(_)
            | Command::Scale(_)
            | Command::Apps(_)
            | Command::Delete(_)
            | Command::Drain(_)
            | Command::Drains(_)
            | Command::App(_)
            | Command::Logs(_)
            | Command::Policy(_)
            | Command::Config(_) => true,
            Command::Autoscaler(a) => !a.serves(),
            _ => false,
        }
    }
}

async fn run(cli: Cli, file: Option<config::File>) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(a) => up_cmd::up(a, file).await,
        Command::Config(a) => up_cmd::config(a, cli.config),
        Command::DemoApp => up_cmd::demo_app().await,
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
        Command::Drain(a) => cmd::drain_cmd::drain(a).await,
        Command::OtlpExport(a) => cmd::otlp_cmd::otlp_export(a).await,
        Command::Drains(a) => cmd::drain_cmd::drains(a).await,
        Command::App(a) => apps_cmd::app(a).await,
        Command::Logcache(a) => logs_cmd::logcache(a).await,
        Command::Logs(a) => logs_cmd::logs(a).await,
        Command::Policy(a) => policy_cmd::policy(a).await,
        Command::Autoscaler(a) => autoscaler_cmd::autoscaler(*a).await,
        #[cfg(feature = "storage")]
        Command::Storage(a) => cmd::storage_cmd::storage(a).await,
        Command::Console(a) => cmd::console_cmd::console(a).await,
    }
}

/// The command line with the config file's flags for the subcommand's section added
/// (flags given on the command line win), and the file.
fn parse(argv: Vec<OsString>) -> Result<(Cli, Option<config::File>), ParseError> {
    let command = Cli::command().mut_subcommands(|c| c.args_override_self(true));
    let matches = command.clone().try_get_matches_from(&argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let path = match &cli.config {
        Some(p) => p.clone(),
        None if std::path::Path::new(config::DEFAULT_FILE).exists() => config::DEFAULT_FILE.into(),
        None => return Ok((cli, None)),
    };
    let Some((name, sub)) = matches.subcommand() else {
        return Ok((cli, None));
    };
    // `config check` reports problems itself; other commands take no section.
    if !cmd::components::sections().any(|s| s == name) || sub.subcommand().is_some() {
        return Ok((cli, None));
    }
    let file = config::load(&path, &command)?;
    let extra = file.args(name, |id| {
        sub.value_source(id) == Some(ValueSource::CommandLine)
    });
    if extra.is_empty() {
        return Ok((cli, Some(file)));
    }
    let mut argv = argv;
    argv.extend(extra);
    let matches = command
        .try_get_matches_from(&argv)
        .map_err(|e| ParseError::Merged(path.display().to_string(), e))?;
    Ok((Cli::from_arg_matches(&matches)?, Some(file)))
}

#[derive(Debug, thiserror::Error)]
enum ParseError {
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("with the flags from {0}: {1}")]
    Merged(String, clap::Error),
}

fn main() -> ExitCode {
    let (cli, file) = match parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {}", e.to_string().trim_end());
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // Every connection is a descriptor: take the hard limit, not the usual soft 1,024, so
    // a crowd of idle connections cannot lock clients out.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(nofile = n, "descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
    }
    // A command that makes a few requests and exits runs on one thread: starting worker
    // threads costs more than such a command does (`hydrant logs --recent` end to end).
    let mut builder = if cli.command.is_client() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
