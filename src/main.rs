//! The `hydrant` command: one binary, one subcommand per component or tool.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use hydrant::{agent, apps, cell, certs, doppler, emit, firehose, shutdown};
use hydrant_proto::transport::Tls;
use tokio::net::TcpListener;

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
    Doppler(DopplerArgs),
    /// Accept envelopes from local emitters and forward them to dopplers.
    Agent(AgentArgs),
    /// Generate load over Ingress.BatchSender, with sequence numbers for loss audits.
    Emit(EmitArgs),
    /// Subscribe to a doppler's Firehose and print envelopes or a loss/latency summary.
    Firehose(FirehoseArgs),
    /// Generate a CA and component certificates for a development mTLS setup.
    Certs(CertsArgs),
    /// Run app instances as processes, stream their logs and metrics, serve the scheduler API.
    Cell(CellArgs),
    /// Create an app on the cell: `hydrant push NAME [-i N] [--memory 256M] -- COMMAND…`.
    Push(PushArgs),
    /// Set an app's instance count.
    Scale(ScaleArgs),
    /// List apps with running/desired instances, cpu and memory.
    Apps(SchedulerArgs),
    /// Delete an app (its instances are stopped).
    Delete(DeleteArgs),
    /// Keep recent envelopes per source from the Firehose; serve Log Cache's read API.
    Logcache(LogcacheArgs),
    /// Show an app's logs: `--recent` for the newest 1000 lines, otherwise tail live.
    Logs(LogsArgs),
}

#[derive(Debug, Args)]
struct LogcacheArgs {
    /// Doppler to read the Firehose from; repeat to read several.
    #[arg(long = "from", default_value = "127.0.0.1:8082")]
    dopplers: Vec<String>,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Envelopes kept per source.
    #[arg(long, default_value_t = hydrant_logcache::DEFAULT_MAX_PER_SOURCE)]
    max_per_source: usize,
    /// Memory budget (e.g. 512MiB, 2GiB).
    #[arg(long, default_value = "512MiB", value_parser = parse_bytes)]
    memory_limit: usize,
    /// YAML file of bearer tokens (default: the API is open).
    #[arg(long)]
    auth_file: Option<PathBuf>,
    /// Name the dopplers' certificates must carry.
    #[arg(long, default_value = "doppler")]
    tls_server_name: String,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct LogsArgs {
    /// App name or guid (or any source id).
    app: String,
    /// Print the newest 1000 lines and exit.
    #[arg(long)]
    recent: bool,
    /// Log cache URL.
    #[arg(
        long,
        env = "HYDRANT_LOG_CACHE",
        default_value = "http://127.0.0.1:8080"
    )]
    log_cache: String,
    /// Only this instance index.
    #[arg(long)]
    instance: Option<String>,
    /// Only OUT or ERR lines.
    #[arg(long = "type", value_parser = ["OUT", "ERR"])]
    stream: Option<String>,
    /// Only these source types (APP, CELL, API, …); repeatable.
    #[arg(long = "source-type")]
    source_types: Vec<String>,
    /// Only lines matching this regular expression.
    #[arg(long, value_parser = parse_regex)]
    grep: Option<regex::Regex>,
    /// Only lines newer than this (e.g. 10m).
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// One protojson envelope per line.
    #[arg(long)]
    json: bool,
    /// Stop tailing after this long.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| format!("invalid regular expression: {e}"))
}

fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (e.g. 512MiB, 2GiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    if n == 0 {
        return Err("the size must be greater than zero".into());
    }
    Ok(n * mult)
}

#[derive(Debug, Args)]
struct CellArgs {
    /// Address of the scheduler API (and /metrics, /healthz).
    #[arg(long, default_value = "127.0.0.1:9022")]
    api: SocketAddr,
    /// Agent to send logs and metrics to.
    #[arg(long, default_value = "127.0.0.1:3458")]
    agent: String,
    /// Instance working directories live here.
    #[arg(long, default_value = "hydrant-data/cell")]
    data_dir: PathBuf,
    /// Interval of container metrics (e.g. 15s, 1s).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    metrics_interval: Duration,
    /// Per-instance log rate limit in bytes per second (default: unlimited).
    #[arg(long)]
    log_rate_limit: Option<u64>,
    /// Time between SIGTERM and SIGKILL when stopping an instance.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    stop_grace: Duration,
    /// File holding the bearer token the API requires (default: no authentication).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Name the agent's certificate must carry.
    #[arg(long, default_value = "metron")]
    tls_server_name: String,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Where the scheduler API is.
#[derive(Debug, Args)]
struct SchedulerArgs {
    /// Scheduler API URL.
    #[arg(long, env = "HYDRANT_SCHEDULER", default_value = apps::DEFAULT_SCHEDULER)]
    scheduler: String,
    /// Bearer token for the scheduler API.
    #[arg(long, env = "HYDRANT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl SchedulerArgs {
    fn client(&self) -> apps::Client {
        apps::Client::new(&self.scheduler, self.token.clone())
    }
}

#[derive(Debug, Args)]
struct PushArgs {
    /// App name.
    name: String,
    /// Instances to run.
    #[arg(short = 'i', long, default_value_t = 1)]
    instances: u32,
    /// Memory quota per instance (e.g. 256M, 1G).
    #[arg(short = 'm', long, default_value = "256M")]
    memory: String,
    /// Disk quota per instance (e.g. 1G).
    #[arg(short = 'k', long, default_value = "1G")]
    disk: String,
    /// Environment variable KEY=VALUE; repeatable.
    #[arg(short = 'e', long = "env", value_parser = parse_tag)]
    env: Vec<(String, String)>,
    /// The command each instance runs (through /bin/sh -c).
    #[arg(last = true, required = true)]
    command: Vec<String>,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

#[derive(Debug, Args)]
struct ScaleArgs {
    /// App name or guid.
    name: String,
    /// Desired instances.
    #[arg(short = 'i', long, allow_negative_numbers = true)]
    instances: i64,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    /// App name or guid.
    name: String,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --token-file {}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        bail!(
            "--token-file {}: the first line must hold the token",
            path.display()
        );
    }
    Ok(token)
}

/// mTLS flags shared by every gRPC command.
#[derive(Debug, Args)]
struct TlsArgs {
    /// CA certificate (PEM); enables mTLS together with --tls-cert and --tls-key.
    #[arg(long, env = "HYDRANT_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// This component's certificate (PEM).
    #[arg(long, env = "HYDRANT_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// This component's private key (PEM).
    #[arg(long, env = "HYDRANT_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn load(&self, server_name: &str) -> anyhow::Result<Option<Tls>> {
        Ok(Tls::from_files(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            server_name,
        )?)
    }
}

#[derive(Debug, Args)]
struct DopplerArgs {
    /// gRPC address for Ingress and Egress.
    #[arg(long, default_value = "127.0.0.1:8082")]
    grpc: SocketAddr,
    /// HTTP address for /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:8081")]
    http: SocketAddr,
    /// Per-subscription buffer in envelopes (oldest dropped beyond it).
    #[arg(long, default_value_t = doppler::DEFAULT_SUBSCRIPTION_BUFFER)]
    subscription_buffer: usize,
    /// Per-subscription buffer in bytes.
    #[arg(long, default_value_t = doppler::DEFAULT_SUBSCRIPTION_BUFFER_BYTES)]
    subscription_buffer_bytes: usize,
    /// Largest gRPC message accepted.
    #[arg(long, default_value_t = hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Seconds allowed for an orderly stop.
    #[arg(long, default_value_t = shutdown::DEFAULT_GRACE.as_secs())]
    grace_secs: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// gRPC address for local emitters.
    #[arg(long, default_value = "127.0.0.1:3458")]
    grpc: SocketAddr,
    /// Doppler to forward to; repeat to spread load over several.
    #[arg(long = "doppler", default_value = "127.0.0.1:8082")]
    dopplers: Vec<String>,
    /// HTTP address for /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:14821")]
    http: SocketAddr,
    /// Tag added to every envelope that lacks it, as KEY=VALUE; repeatable.
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Forwarding buffer in envelopes (oldest dropped beyond it while dopplers lag).
    #[arg(long, default_value_t = hydrant_proto::ingress::DEFAULT_BUFFER_ENVELOPES)]
    buffer: usize,
    /// Forwarding buffer in bytes.
    #[arg(long, default_value_t = hydrant_proto::ingress::DEFAULT_BUFFER_BYTES)]
    buffer_bytes: usize,
    /// Concurrent streams to each doppler.
    #[arg(long, default_value_t = 1)]
    streams_per_doppler: usize,
    /// Least time between small batches to a doppler (0ms: send each envelope at once, for
    /// the lowest latency at a higher CPU cost).
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    min_batch_interval: Duration,
    /// Largest gRPC message accepted from emitters.
    #[arg(long, default_value_t = hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Name the dopplers' certificates must carry.
    #[arg(long, default_value = "doppler")]
    tls_server_name: String,
    /// Seconds allowed for flushing on stop.
    #[arg(long, default_value_t = shutdown::DEFAULT_GRACE.as_secs())]
    grace_secs: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct EmitArgs {
    /// Agent (or doppler) address.
    #[arg(long, default_value = "127.0.0.1:3458")]
    to: String,
    /// Envelopes to send.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Envelopes per second (default: as fast as the receiver takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Distinct source ids.
    #[arg(long, default_value_t = 1)]
    sources: usize,
    /// Log payload size in bytes.
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Envelope kind.
    #[arg(long, value_enum, default_value = "log")]
    kind: emit::EmitKind,
    /// Concurrent streams (at most one per source).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Name the receiver's certificate must carry.
    #[arg(long, default_value = "metron")]
    tls_server_name: String,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct FirehoseArgs {
    /// Doppler address.
    #[arg(long, default_value = "127.0.0.1:8082")]
    from: String,
    /// Shard id: subscribers with the same one split the stream.
    #[arg(long, default_value = "")]
    shard_id: String,
    /// Only these source ids; repeatable.
    #[arg(long = "source-id")]
    source_ids: Vec<String>,
    /// Only these types; repeatable.
    #[arg(long = "type", value_enum)]
    types: Vec<firehose::TypeArg>,
    /// Exit after this many envelopes.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this long (e.g. 30s, 2m, 500ms).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Print one protojson envelope per line.
    #[arg(long, conflicts_with = "stats")]
    json: bool,
    /// Print one JSON summary (received, rate, lost, latency percentiles) at the end.
    #[arg(long)]
    stats: bool,
    /// Name the doppler's certificate must carry.
    #[arg(long, default_value = "doppler")]
    tls_server_name: String,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Directory to write into.
    #[arg(long, default_value = "hydrant-data/certs")]
    out: PathBuf,
    /// Component names to issue certificates for; repeatable.
    #[arg(long = "name")]
    names: Vec<String>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 30s, 2m, 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

async fn bind(flag: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {flag} {addr}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Doppler(a) => {
            let config = doppler::Config {
                tls: a.tls.load("doppler")?,
                max_message_bytes: a.max_message_bytes,
                buffer: doppler::BufferLimits {
                    envelopes: a.subscription_buffer,
                    bytes: a.subscription_buffer_bytes,
                },
                grace: Duration::from_secs(a.grace_secs),
            };
            let grpc = bind("--grpc", a.grpc).await?;
            let http = bind("--http", a.http).await?;
            tracing::info!(grpc = %a.grpc, http = %a.http, tls = config.tls.is_some(), "doppler listening");
            doppler::run(config, grpc, http, shutdown::on_signal()).await?;
        }
        Command::Agent(a) => {
            let tls = a.tls.load(&a.tls_server_name)?;
            let config = agent::Config {
                server_tls: tls.clone(),
                dopplers: a.dopplers.clone(),
                doppler_tls: tls,
                tags: a.tags.into_iter().collect::<BTreeMap<_, _>>(),
                buffer_envelopes: a.buffer,
                buffer_bytes: a.buffer_bytes,
                streams_per_doppler: a.streams_per_doppler,
                min_batch_interval: a.min_batch_interval,
                max_message_bytes: a.max_message_bytes,
                grace: Duration::from_secs(a.grace_secs),
            };
            let grpc = bind("--grpc", a.grpc).await?;
            let http = bind("--http", a.http).await?;
            tracing::info!(grpc = %a.grpc, http = %a.http, dopplers = ?a.dopplers, "agent listening");
            agent::run(config, grpc, http, shutdown::on_signal()).await?;
        }
        Command::Emit(a) => {
            if a.sources == 0 {
                bail!("--sources must be at least 1");
            }
            if matches!(a.rate, Some(r) if !(r > 0.0 && r.is_finite())) {
                bail!("--rate must be a positive number");
            }
            let opts = emit::Options {
                to: a.to,
                count: a.count,
                rate: a.rate,
                sources: a.sources,
                payload_bytes: a.payload_bytes,
                kind: a.kind,
                streams: a.streams,
            };
            let summary =
                emit::run(opts, a.tls.load(&a.tls_server_name)?, shutdown::on_signal()).await?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Firehose(a) => {
            let output = if a.stats {
                firehose::Output::Stats
            } else if a.json {
                firehose::Output::Json
            } else {
                firehose::Output::Text
            };
            let opts = firehose::Options {
                from: a.from,
                shard_id: a.shard_id,
                source_ids: a.source_ids,
                types: a.types,
                count: a.count,
                duration: a.duration,
                output,
            };
            let tls = a.tls.load(&a.tls_server_name)?;
            if let Some(summary) = firehose::run(opts, tls, shutdown::on_signal()).await? {
                println!("{}", serde_json::to_string(&summary)?);
            }
        }
        Command::Cell(a) => {
            let mut config = cell::Config::new(a.agent, a.data_dir);
            config.agent_tls = a.tls.load(&a.tls_server_name)?;
            config.metrics_interval = a.metrics_interval;
            config.log_rate_limit = a.log_rate_limit;
            config.stop_grace = a.stop_grace;
            config.api_token = a.token_file.as_deref().map(read_token).transpose()?;
            if a.metrics_interval.is_zero() {
                bail!("--metrics-interval must be greater than zero");
            }
            if a.log_rate_limit == Some(0) {
                bail!("--log-rate-limit must be at least 1 byte per second");
            }
            let api = bind("--api", a.api).await?;
            tracing::info!(api = %a.api, agent = %config.agent, data_dir = %config.data_dir.display(), "cell listening");
            cell::run(config, api, shutdown::on_signal()).await?;
        }
        Command::Push(a) => {
            let memory = apps::parse_megabytes(&a.memory).context("--memory")?;
            let disk = apps::parse_megabytes(&a.disk).context("--disk")?;
            let env: BTreeMap<String, String> = a.env.into_iter().collect();
            let command = a.command.join(" ");
            let app = a
                .scheduler
                .client()
                .push(&a.name, &command, a.instances, memory, disk, &env)
                .await?;
            println!(
                "pushed {} ({}) with {} instance(s)",
                a.name,
                app["guid"].as_str().unwrap_or_default(),
                a.instances
            );
        }
        Command::Scale(a) => {
            a.scheduler.client().scale(&a.name, a.instances).await?;
            println!("scaled {} to {} instance(s)", a.name, a.instances);
        }
        Command::Apps(a) => print!("{}", a.client().table().await?),
        Command::Delete(a) => {
            a.scheduler.client().delete(&a.name).await?;
            println!("deleted {}", a.name);
        }
        Command::Logcache(a) => {
            let mut config = hydrant_logcache::Config::new(a.dopplers.clone());
            config.tls = a.tls.load(&a.tls_server_name)?;
            config.limits.max_per_source = a.max_per_source;
            config.limits.memory_bytes = a.memory_limit;
            config.auth = a
                .auth_file
                .as_deref()
                .map(hydrant_logcache::auth::Auth::load)
                .transpose()?;
            if a.max_per_source == 0 {
                bail!("--max-per-source must be at least 1");
            }
            let http = bind("--http", a.http).await?;
            tracing::info!(http = %a.http, dopplers = ?a.dopplers, auth = config.auth.is_some(), "log cache listening");
            hydrant_logcache::run(config, http, shutdown::on_signal()).await?;
        }
        Command::Logs(a) => {
            let token = a.scheduler.token.clone();
            // Names are resolved through the scheduler when it is there; otherwise the log
            // cache resolves them from the app_name tag.
            let client = hydrant::logs::Client::new(&a.log_cache, token);
            let source = match a.scheduler.client().find(&a.app).await {
                Ok(app) => app["guid"].as_str().unwrap_or(&a.app).to_owned(),
                // Not an app: it may still be a source id (a component such as "doppler").
                Err(apps::Error::NotFound(name)) => {
                    if !client.knows(&name).await? {
                        bail!(
                            "app '{name}' not found (unknown to the scheduler and the log cache)"
                        );
                    }
                    name
                }
                Err(_) => a.app.clone(),
            };
            let opts = hydrant::logs::Options {
                source,
                recent: a.recent,
                since: a.since,
                filter: hydrant::logs::Filter {
                    instance: a.instance,
                    err: a.stream.map(|s| s == "ERR"),
                    source_types: a.source_types,
                    grep: a.grep,
                },
                json: a.json,
                color: std::io::IsTerminal::is_terminal(&std::io::stdout()),
                duration: a.duration,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            hydrant::logs::run(&client, &opts, &mut out).await?;
        }
        Command::Certs(a) => {
            let names: Vec<String> = if a.names.is_empty() {
                certs::DEFAULT_NAMES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            } else {
                a.names
            };
            for path in certs::generate_all(&a.out, &names)? {
                println!("{}", path.display());
            }
        }
    }
    Ok(())
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
