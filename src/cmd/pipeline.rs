//! Flags and glue for the pipeline: `doppler`, `agent`, `emit`, `firehose`, `certs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use hydrant::{agent, certs, doppler, emit, firehose, pending};
use hydrant_runtime::config::{Invalid, Invalids};
use hydrant_runtime::shutdown;

use super::{ComponentArgs, TlsArgs, bind, parse_bytes, parse_duration, parse_tag};

#[derive(Debug, Args)]
pub(crate) struct DopplerArgs {
    /// gRPC address for Ingress and Egress.
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub(crate) grpc: SocketAddr,
    /// HTTP address for /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub(crate) http: SocketAddr,
    /// Per-subscription buffer in envelopes (oldest dropped beyond it).
    #[arg(long, default_value_t = doppler::DEFAULT_SUBSCRIPTION_BUFFER)]
    pub(crate) subscription_buffer: usize,
    /// Per-subscription buffer in bytes.
    #[arg(long, default_value_t = doppler::DEFAULT_SUBSCRIPTION_BUFFER_BYTES)]
    pub(crate) subscription_buffer_bytes: usize,
    /// Most selectors one subscription may carry (more is refused, InvalidArgument).
    #[arg(long, default_value_t = hydrant::router::MAX_SELECTORS)]
    pub(crate) max_selectors: usize,
    /// Largest gRPC message accepted.
    #[arg(long, default_value_t = hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES)]
    pub(crate) max_message_bytes: usize,
    /// Time a new gRPC connection has to send its first bytes before it is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) handshake_timeout: Duration,
    #[command(flatten)]
    pub(crate) pending: PendingArgs,
    #[command(flatten)]
    pub(crate) component: ComponentArgs,
}

/// What half-received gRPC messages may hold (`hydrant_components::pending`).
#[derive(Debug, Args)]
pub(crate) struct PendingArgs {
    /// Bytes all half-received gRPC messages may announce together (e.g. 64MiB; default:
    /// 64 MiB, at least the per-connection budget).
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_pending_bytes: Option<usize>,
    /// Bytes the half-received messages of one connection may announce together (default:
    /// 16 MiB, at least --max-message-bytes).
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_pending_bytes_per_connection: Option<usize>,
    /// Time a gRPC message has from its header to its last byte.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) message_timeout: Duration,
}

impl PendingArgs {
    /// The limits for `max_message` bytes, or why they cannot work.
    fn limits(&self, max_message: usize) -> Result<pending::Limits, Invalid> {
        let defaults = pending::Limits::for_max_message(max_message);
        let per_connection = self
            .max_pending_bytes_per_connection
            .unwrap_or(defaults.per_connection);
        let limits = pending::Limits {
            per_connection,
            total: self
                .max_pending_bytes
                .unwrap_or(defaults.total.max(per_connection)),
            message_timeout: self.message_timeout,
            max_message,
        };
        match limits.problem() {
            None => Ok(limits),
            Some(p) => Err(Invalid::new("max-pending-bytes", p)),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// gRPC address for local emitters.
    #[arg(long, default_value = "127.0.0.1:3458")]
    pub(crate) grpc: SocketAddr,
    /// Doppler to forward to; repeat to spread load over several.
    #[arg(long = "doppler", default_value = "127.0.0.1:8082")]
    pub(crate) dopplers: Vec<String>,
    /// HTTP address for /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:14821")]
    pub(crate) http: SocketAddr,
    /// Tag added to every envelope that lacks it, as KEY=VALUE; repeatable.
    #[arg(long = "tag", value_parser = parse_tag)]
    pub(crate) tags: Vec<(String, String)>,
    /// Forwarding buffer in envelopes (oldest dropped beyond it while dopplers lag).
    #[arg(long, default_value_t = hydrant_proto::ingress::DEFAULT_BUFFER_ENVELOPES)]
    pub(crate) buffer: usize,
    /// Forwarding buffer in bytes.
    #[arg(long, default_value_t = hydrant_proto::ingress::DEFAULT_BUFFER_BYTES)]
    pub(crate) buffer_bytes: usize,
    /// Concurrent streams to each doppler.
    #[arg(long, default_value_t = 1)]
    pub(crate) streams_per_doppler: usize,
    /// Time a new gRPC connection has to send its first bytes before it is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) handshake_timeout: Duration,
    /// Least time between small batches to a doppler (0ms: send each envelope at once, for
    /// the lowest latency at a higher CPU cost).
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub(crate) min_batch_interval: Duration,
    /// Largest gRPC message accepted from emitters.
    #[arg(long, default_value_t = hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES)]
    pub(crate) max_message_bytes: usize,
    #[command(flatten)]
    pub(crate) pending: PendingArgs,
    /// UDP address for dropsonde (Loggregator v1) datagrams from legacy emitters, or `off`
    /// (default: 127.0.0.1:3457, Loggregator's, skipped with a warning when taken).
    #[arg(long)]
    pub(crate) udp: Option<String>,
    /// OTLP over gRPC (OpenTelemetry SDKs and collectors), or `off` (default:
    /// 127.0.0.1:4317, skipped with a warning when taken).
    #[arg(long)]
    pub(crate) otlp_grpc: Option<String>,
    /// OTLP over HTTP/protobuf (`POST /v1/logs`, `/v1/metrics`), or `off` (default:
    /// 127.0.0.1:4318, skipped with a warning when taken).
    #[arg(long)]
    pub(crate) otlp_http: Option<String>,
    /// On a Kubernetes node: the kubelet's pod log directory (`/var/log/pods`), whose
    /// container logs are sent as log envelopes (source id `namespace/workload`).
    #[arg(long)]
    pub(crate) cri_logs: Option<std::path::PathBuf>,
    /// Scheduler whose apps' syslog drain bindings this agent writes (a cell's API; its
    /// `/internal/v5/syslog_drain_urls`, as Cloud Controller serves Loggregator's agents).
    #[arg(long)]
    pub(crate) drain_bindings: Option<String>,
    /// Token file for --drain-bindings: a token that may write (the list carries drains'
    /// TLS keys).
    #[arg(long)]
    pub(crate) drain_bindings_token_file: Option<std::path::PathBuf>,
    /// Syslog drain (syslog://, syslog-tls://, https://, https-batch://) that receives
    /// every app's logs; repeatable.
    #[arg(long = "aggregate-drain")]
    pub(crate) aggregate_drains: Vec<String>,
    /// Envelopes each syslog drain may hold while it lags (the oldest are dropped beyond
    /// it, counted, and the app is told).
    #[arg(long, default_value_t = hydrant::drain::writer::DRAIN_BUFFER)]
    pub(crate) drain_buffer: usize,
    /// Time between two polls of --drain-bindings.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub(crate) drain_refresh: Duration,
    /// Name the dopplers' certificates must carry.
    #[arg(long, default_value = "doppler")]
    pub(crate) tls_server_name: String,
    #[command(flatten)]
    pub(crate) component: ComponentArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EmitArgs {
    /// Agent (or doppler) address.
    #[arg(long, default_value = "127.0.0.1:3458")]
    pub(crate) to: String,
    /// Envelopes to send.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) count: u64,
    /// Envelopes per second (default: as fast as the receiver takes them).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Distinct source ids.
    #[arg(long, default_value_t = 1)]
    pub(crate) sources: usize,
    /// Log payload size in bytes.
    #[arg(long, default_value_t = 200)]
    pub(crate) payload_bytes: usize,
    /// Envelope kind.
    #[arg(long, value_enum, default_value = "log")]
    pub(crate) kind: emit::EmitKind,
    /// Concurrent streams (at most one per source).
    #[arg(long, default_value_t = 1)]
    pub(crate) streams: usize,
    /// Metrics per gauge envelope (a cell's container metrics carry five: cpu, memory,
    /// disk and the two quotas).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) metrics: u16,
    /// Leave out the per-source `seq` tag (envelopes of a source then share their tags, as
    /// real app logs do; `firehose --stats` cannot audit loss).
    #[arg(long)]
    pub(crate) no_seq: bool,
    /// Name the receiver's certificate must carry.
    #[arg(long, default_value = "metron")]
    pub(crate) tls_server_name: String,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct FirehoseArgs {
    /// Doppler address.
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub(crate) from: String,
    /// Shard id: subscribers with the same one split the stream.
    #[arg(long, default_value = "")]
    pub(crate) shard_id: String,
    /// Only these source ids; repeatable.
    #[arg(long = "source-id")]
    pub(crate) source_ids: Vec<String>,
    /// Only these types; repeatable.
    #[arg(long = "type", value_enum)]
    pub(crate) types: Vec<firehose::TypeArg>,
    /// Exit after this many envelopes.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Exit after this long (e.g. 30s, 2m, 500ms).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Print one protojson envelope per line.
    #[arg(long, conflicts_with = "stats")]
    pub(crate) json: bool,
    /// Print one JSON summary (received, rate, lost, latency percentiles) at the end.
    #[arg(long)]
    pub(crate) stats: bool,
    /// Name the doppler's certificate must carry.
    #[arg(long, default_value = "doppler")]
    pub(crate) tls_server_name: String,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CertsArgs {
    /// Directory to write into.
    #[arg(long, default_value = "hydrant-data/certs")]
    pub(crate) out: PathBuf,
    /// Component names to issue certificates for; repeatable.
    #[arg(long = "name")]
    pub(crate) names: Vec<String>,
}

/// `hydrant doppler`.
pub(crate) async fn doppler(a: DopplerArgs) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let access = a.component.access.access(&mut problems);
    let pending = a
        .pending
        .limits(a.max_message_bytes)
        .map_err(|p| problems.push(p))
        .ok();
    Invalids::check(problems)?;
    let config = doppler::Config {
        access,
        pending,
        tls: a.component.tls.load("doppler")?,
        max_message_bytes: a.max_message_bytes,
        buffer: doppler::BufferLimits {
            envelopes: a.subscription_buffer,
            bytes: a.subscription_buffer_bytes,
            selectors: a.max_selectors,
        },
        handshake_timeout: a.handshake_timeout,
        grace: a.component.grace(),
        self_metrics: a.component.self_metrics.config(
            "doppler",
            a.http,
            a.component.tls.load("metron")?,
            super::DEFAULT_AGENT,
        ),
    };
    let grpc = bind("--grpc", a.grpc).await?;
    let http = bind("--http", a.http).await?;
    tracing::info!(grpc = %a.grpc, http = %a.http, tls = config.tls.is_some(), "doppler listening");
    doppler::run(config, grpc, http, shutdown::on_signal()).await?;
    Ok(())
}

/// `hydrant agent`.
pub(crate) async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    let tls = a.component.tls.load(&a.tls_server_name)?;
    // An agent sends its own metrics to its own ingress unless told otherwise.
    let self_metrics = a.component.self_metrics.config(
        "agent",
        a.http,
        a.component.tls.load("metron")?,
        &a.grpc.to_string(),
    );
    let mut problems = Vec::new();
    let access = a.component.access.access(&mut problems);
    let pending = a
        .pending
        .limits(a.max_message_bytes)
        .map_err(|p| problems.push(p))
        .ok();
    let drains = drains(&a, tls.as_ref(), &mut problems);
    Invalids::check(problems)?;
    let udp = bind_udp(a.udp.as_deref())?;
    let otlp_grpc = bind_otlp(
        "--otlp-grpc",
        a.otlp_grpc.as_deref(),
        agent::otlp::DEFAULT_GRPC,
    )?;
    let otlp_http = bind_otlp(
        "--otlp-http",
        a.otlp_http.as_deref(),
        agent::otlp::DEFAULT_HTTP,
    )?;
    let config = agent::Config {
        otlp_grpc,
        otlp_http,
        access,
        pending,
        udp,
        cri_logs: a.cri_logs.clone(),
        drains,
        handshake_timeout: a.handshake_timeout,
        server_tls: tls.clone(),
        dopplers: a.dopplers.clone(),
        doppler_tls: tls,
        discovery: a.component.discovery(),
        tags: a.tags.into_iter().collect::<BTreeMap<_, _>>(),
        buffer_envelopes: a.buffer,
        buffer_bytes: a.buffer_bytes,
        streams_per_doppler: a.streams_per_doppler,
        min_batch_interval: a.min_batch_interval,
        max_message_bytes: a.max_message_bytes,
        grace: a.component.grace(),
        self_metrics,
    };
    let grpc = bind("--grpc", a.grpc).await?;
    let http = bind("--http", a.http).await?;
    tracing::info!(grpc = %a.grpc, http = %a.http, dopplers = ?a.dopplers, "agent listening");
    agent::run(config, grpc, http, shutdown::on_signal()).await?;
    Ok(())
}

/// What the agent would refuse of its flags (for `hydrant config check`).
pub(crate) fn agent_problems(a: &AgentArgs) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let tls = a.component.tls.check(&a.tls_server_name, &mut problems);
    a.component.access.access(&mut problems);
    drains(a, tls.as_ref(), &mut problems);
    problems
}

/// The agent's syslog drains from its flags; every unusable one is a named problem.
fn drains(
    a: &AgentArgs,
    tls: Option<&hydrant_proto::transport::Tls>,
    problems: &mut Vec<Invalid>,
) -> hydrant::drain::bindings::Config {
    for url in &a.aggregate_drains {
        if let Err(e) = hydrant::drain::url::DrainUrl::parse(url) {
            problems.push(Invalid::new("aggregate-drain", e.to_string()));
        }
    }
    if a.drain_refresh < Duration::from_secs(1) {
        problems.push(Invalid::new("drain-refresh", "must be at least 1s"));
    }
    let source = a.drain_bindings.as_ref().and_then(|addr| {
        let p = super::Peer::new(
            tls,
            a.drain_bindings_token_file.as_deref(),
            ("drain-bindings", "drain-bindings-token-file"),
            problems,
        )?;
        Some(hydrant::drain::bindings::Source {
            url: hydrant_runtime::https::url(addr, &p.tls),
            token: p.token,
            http: p.http,
        })
    });
    hydrant::drain::bindings::Config {
        source,
        aggregate: a.aggregate_drains.clone(),
        refresh: Some(a.drain_refresh),
        buffer: Some(a.drain_buffer.max(1)),
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "hydrant".into()),
    }
}

/// An OTLP port of the agent: a given address must bind; the default is skipped with a
/// warning when another process has it; `off` is none.
fn bind_otlp(
    flag: &str,
    value: Option<&str>,
    default: &str,
) -> anyhow::Result<Option<std::sync::Arc<std::net::TcpListener>>> {
    let addr = match value {
        Some("off") => return Ok(None),
        Some(addr) => addr,
        None => default,
    };
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("{flag} {addr:?}: {e}"))?;
    match std::net::TcpListener::bind(parsed) {
        Ok(l) => {
            tracing::info!(addr = %parsed, "agent: taking OTLP ({flag})");
            Ok(Some(std::sync::Arc::new(l)))
        }
        Err(e) if value.is_none() && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(addr = %parsed, "agent: the OTLP port is taken; no OTLP there (set {flag})");
            Ok(None)
        }
        Err(e) => bail!("{flag} {parsed}: cannot bind: {e}"),
    }
}

/// The agent's dropsonde socket: `--udp ADDR` must bind; the default is skipped with a
/// warning when another agent has it; `off` is none.
fn bind_udp(flag: Option<&str>) -> anyhow::Result<Option<std::sync::Arc<std::net::UdpSocket>>> {
    let addr = match flag {
        Some("off") => return Ok(None),
        Some(addr) => addr,
        None => hydrant::v1::DEFAULT_UDP,
    };
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("--udp {addr:?}: {e}"))?;
    match std::net::UdpSocket::bind(parsed) {
        Ok(s) => {
            tracing::info!(udp = %parsed, "agent: reading dropsonde (Loggregator v1) datagrams");
            Ok(Some(std::sync::Arc::new(s)))
        }
        Err(e) if flag.is_none() && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(udp = %parsed, "agent: the dropsonde port is taken; no v1 UDP (set --udp)");
            Ok(None)
        }
        Err(e) => bail!("--udp {parsed}: cannot bind: {e}"),
    }
}

/// `hydrant emit`.
pub(crate) async fn emit(a: EmitArgs) -> anyhow::Result<()> {
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
        metrics: usize::from(a.metrics),
        no_seq: a.no_seq,
    };
    let summary = emit::run(
        opts,
        a.tls.load_for_cli(&a.tls_server_name)?,
        shutdown::on_signal(),
    )
    .await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// `hydrant firehose`.
pub(crate) async fn firehose(a: FirehoseArgs) -> anyhow::Result<()> {
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
    let tls = a.tls.load_for_cli(&a.tls_server_name)?;
    if let Some(summary) = firehose::run(opts, tls, shutdown::on_signal()).await? {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

/// `hydrant certs`.
pub(crate) async fn certs(a: CertsArgs) -> anyhow::Result<()> {
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
    Ok(())
}
