//! The subcommands' flags and glue: each function turns parsed flags into a component's
//! config and runs it. Shared flag types and parsers live here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use hydrant::apps;
use hydrant_proto::transport::Tls;
use hydrant_runtime::access::{Access, Tokens};
use hydrant_runtime::config::Invalid;
use hydrant_runtime::https;
use hydrant_runtime::selfmetrics;
use tokio::net::TcpListener;

pub(crate) mod apps_cmd;
pub(crate) mod autoscaler_cmd;
pub(crate) mod components;
pub(crate) mod config;
pub(crate) mod console_cmd;
pub(crate) mod drain_cmd;
pub(crate) mod logs_cmd;
pub(crate) mod otlp_cmd;
pub(crate) mod pipeline;
pub(crate) mod policy_cmd;
#[cfg(feature = "storage")]
pub(crate) mod storage_cmd;
pub(crate) mod up_cmd;

/// What a component started with these flags would refuse (nothing for the commands that
/// are not components): `hydrant config check` runs the same checks as start-up.
pub(crate) fn refused(command: &crate::Command) -> Vec<Invalid> {
    use crate::Command;
    let refused = match command {
        Command::Cell(a) => apps_cmd::build(a).err(),
        Command::Logcache(a) => logs_cmd::build(a).err(),
        Command::Autoscaler(a) => return autoscaler_cmd::check(a),
        Command::Agent(a) => return pipeline::agent_problems(a),
        Command::OtlpExport(a) => otlp_cmd::build(a).err(),
        Command::Console(a) => console_cmd::build(a).err(),
        #[cfg(feature = "storage")]
        Command::Storage(a) => storage_cmd::build(a).err(),
        _ => None,
    };
    refused.map(|e| e.0).unwrap_or_default()
}

/// mTLS flags shared by every gRPC command.
#[derive(Debug, Args)]
pub(crate) struct TlsArgs {
    /// CA certificate (PEM); enables mTLS together with --tls-cert and --tls-key.
    #[arg(long, env = "HYDRANT_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// This component's certificate (PEM).
    #[arg(long, env = "HYDRANT_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// This component's private key (PEM).
    #[arg(long, env = "HYDRANT_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
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

    /// For a CLI client (`emit`, `firehose`): `load`, or, when no TLS flag is given, the
    /// client certificate `hydrant up` keeps in its default data directory, when it is there.
    pub(crate) fn load_for_cli(&self, server_name: &str) -> anyhow::Result<Option<Tls>> {
        if self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some() {
            return self.load(server_name);
        }
        let dir = std::path::Path::new(up_cmd::DEFAULT_DATA_DIR).join(up_cmd::CERTS_DIR);
        let files = [
            dir.join("ca.pem"),
            dir.join("client.pem"),
            dir.join("client-key.pem"),
        ];
        if !files.iter().all(|f| f.exists()) {
            return Ok(None);
        }
        let [ca, cert, key] = &files;
        Tls::from_files(Some(ca), Some(cert), Some(key), server_name).map_err(|e| {
            anyhow::anyhow!(
                "{e} (the certificates of `hydrant up` in {})",
                dir.display()
            )
        })
    }

    /// Like `load`, adding a problem (named by the flags) instead of failing.
    fn check(&self, server_name: &str, problems: &mut Vec<Invalid>) -> Option<Tls> {
        self.load(server_name).unwrap_or_else(|e| {
            problems.push(Invalid::new("tls-ca", format!("{e:#}")));
            None
        })
    }
}

/// The flags every long-running component shares: who may use its HTTP API, mTLS,
/// self-metrics, and the grace period that bounds its whole orderly stop.
#[derive(Debug, Args)]
pub(crate) struct ComponentArgs {
    /// Seconds allowed for an orderly stop (what overruns is named, then aborted).
    #[arg(long, default_value_t = hydrant_runtime::shutdown::DEFAULT_GRACE.as_secs())]
    pub(crate) grace_secs: u64,
    #[command(flatten)]
    pub(crate) access: AccessArgs,
    #[command(flatten)]
    pub(crate) self_metrics: SelfMetricsArgs,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// DNS server that resolves peers given by name (e.g. `--from dopplers.svc:8082`, every
    /// address of which is used); default: the system's resolvers.
    #[arg(long)]
    pub(crate) dns_server: Option<std::net::SocketAddr>,
    /// How often a peer given by name is resolved again (a doppler added behind the name is
    /// used from then on).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) dns_refresh: Duration,
}

impl ComponentArgs {
    fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }

    /// How peers given by DNS name are resolved.
    pub(crate) fn discovery(&self) -> hydrant_proto::discovery::Discovery {
        hydrant_proto::discovery::Discovery {
            dns_server: self.dns_server,
            refresh: self.dns_refresh.max(Duration::from_secs(1)),
        }
    }
}

/// Who may use a component's HTTP API.
#[derive(Debug, Args)]
pub(crate) struct AccessArgs {
    /// Bearer tokens the HTTP API accepts: a file of one line (an admin token; `hydrant up`
    /// writes one) or YAML with scoped tokens (see README, "Security").
    #[arg(long, alias = "auth-file")]
    pub(crate) token_file: Option<PathBuf>,
    /// Serve the HTTP API without tokens. Anyone who can reach the port can use it.
    #[arg(long, conflicts_with = "token_file")]
    pub(crate) insecure_open: bool,
    /// A host name the HTTP API answers to besides IP addresses and localhost (requests
    /// naming any other host are refused, against DNS rebinding).
    #[arg(long = "allowed-host")]
    pub(crate) allowed_hosts: Vec<String>,
}

impl AccessArgs {
    /// Who may use the HTTP API: a token file is required unless `--insecure-open`.
    pub(crate) fn access(&self, problems: &mut Vec<Invalid>) -> Access {
        let mut access = match (&self.token_file, self.insecure_open) {
            (Some(path), _) => match Tokens::load(path) {
                Ok(tokens) => Access::tokens(tokens),
                Err(e) => {
                    problems.push(Invalid::new("token-file", e.to_string()));
                    Access::open()
                }
            },
            (None, true) => Access::open(),
            (None, false) => {
                problems.push(Invalid::new(
                    "token-file",
                    "is required: the HTTP API needs tokens (`hydrant up` makes a token file \
                     in its data directory), or pass --insecure-open to serve it without",
                ));
                Access::open()
            }
        };
        access.allowed_hosts = self.allowed_hosts.clone();
        access
    }
}

/// Self-metrics flags shared by every long-running component.
#[derive(Debug, Args)]
pub(crate) struct SelfMetricsArgs {
    /// Agent to send this component's own metrics to, as envelopes with the component's
    /// name as source_id (default 127.0.0.1:3458; an agent sends to its own --grpc).
    #[arg(long)]
    pub(crate) self_metrics_agent: Option<String>,
    /// Time between two snapshots of the component's own metrics.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) self_metrics_interval: Duration,
    /// Do not send own metrics as envelopes (they stay on /metrics).
    #[arg(long)]
    pub(crate) no_self_metrics: bool,
}

/// The default agent address.
pub(crate) const DEFAULT_AGENT: &str = "127.0.0.1:3458";

impl SelfMetricsArgs {
    /// The setting for component `name`, told apart from its peers by its HTTP address;
    /// without `--self-metrics-agent` it sends to `agent` (the component's own agent, or
    /// [`DEFAULT_AGENT`]).
    pub(crate) fn config(
        &self,
        name: &str,
        http: SocketAddr,
        tls: Option<Tls>,
        agent: &str,
    ) -> Option<selfmetrics::SelfMetrics> {
        (!self.no_self_metrics).then(|| selfmetrics::SelfMetrics {
            agent: self
                .self_metrics_agent
                .clone()
                .unwrap_or_else(|| agent.to_owned()),
            tls,
            source_id: name.to_owned(),
            instance_id: http.to_string(),
            interval: self.self_metrics_interval,
        })
    }
}

/// Where the scheduler API is.
#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    /// Scheduler API: a URL, or an address (https with a CA, else http).
    #[arg(long, env = "HYDRANT_SCHEDULER", default_value = apps::DEFAULT_SCHEDULER)]
    pub(crate) scheduler: String,
    #[command(flatten)]
    pub(crate) token: ClientToken,
}

impl SchedulerArgs {
    fn client(&self) -> anyhow::Result<apps::Client> {
        let tls = self.token.tls()?;
        Ok(apps::Client::new(
            &https::url(&self.scheduler, &tls),
            self.token.get()?,
            https::client(&tls)?,
        ))
    }
}

/// How a CLI command reaches Hydrant's HTTP APIs: the token it sends, and the CA it trusts.
#[derive(Debug, Args)]
pub(crate) struct ClientToken {
    /// Bearer token for Hydrant's APIs (default: the one `hydrant up` wrote to
    /// ./hydrant-data/token, when it exists).
    #[arg(long, env = "HYDRANT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// CA certificate (PEM) the APIs' certificates chain to; addresses without a scheme are
    /// then reached over https (default: ./hydrant-data/certs/ca.pem, which `hydrant up`
    /// writes, when it exists).
    #[arg(long = "tls-ca", env = "HYDRANT_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
}

impl ClientToken {
    /// `--token`, else the token `hydrant up` keeps under its default data directory.
    pub(crate) fn get(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        let path = std::path::Path::new(up_cmd::DEFAULT_DATA_DIR).join(up_cmd::TOKEN_FILE);
        if !path.exists() {
            return Ok(None);
        }
        read_token(&path).map(Some)
    }

    /// `--tls-ca`, else the CA `hydrant up` keeps under its default data directory, else
    /// none (plain http, and the system's roots for https:// URLs).
    pub(crate) fn tls(&self) -> anyhow::Result<https::ClientTls> {
        let ca = match &self.tls_ca {
            Some(path) => path.clone(),
            None => {
                let path = up_cmd::default_ca();
                if !path.exists() {
                    return Ok(https::ClientTls::default());
                }
                path
            }
        };
        https::ClientTls::ca_file(&ca).context("--tls-ca")
    }

    /// An HTTP client with [`ClientToken::tls`], and `addr` as a URL for it.
    pub(crate) fn client_for(&self, addr: &str) -> anyhow::Result<(reqwest::Client, String)> {
        let tls = self.tls()?;
        Ok((https::client(&tls)?, https::url(addr, &tls)))
    }
}

pub(crate) fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Adds a problem for flag `flag` unless `url` is an http:// or https:// URL.
pub(crate) fn check_url(flag: &str, url: &str, problems: &mut Vec<Invalid>) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.push(Invalid::new(
            flag,
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
        "d" => n * 86_400.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m, h or d)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"))
}

pub(crate) fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| format!("invalid regular expression: {e}"))
}

pub(crate) fn parse_bytes(s: &str) -> Result<usize, String> {
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

pub(crate) async fn bind(flag: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {flag} {addr}"))
}

pub(crate) fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
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

/// How a component calls a peer (the scheduler, the storage nozzle, another node): a
/// client trusting the component's CA, and the token read from a file.
pub(crate) struct Peer {
    pub(crate) tls: hydrant_runtime::https::ClientTls,
    pub(crate) token: Option<String>,
    pub(crate) http: reqwest::Client,
}

impl Peer {
    /// The peer's client; `None` with the problem (named by `flags`: the address flag,
    /// the token file flag) when a file cannot be read or the client cannot be built.
    pub(crate) fn new(
        tls: Option<&hydrant_proto::transport::Tls>,
        token_file: Option<&std::path::Path>,
        (flag, token_flag): (&'static str, &'static str),
        problems: &mut Vec<Invalid>,
    ) -> Option<Peer> {
        let tls = tls
            .map(hydrant_runtime::https::ClientTls::of)
            .unwrap_or_default();
        let token = match token_file {
            Some(path) => match read_token(path) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(Invalid::new(token_flag, format!("{e:#}")));
                    return None;
                }
            },
            None => None,
        };
        match hydrant_runtime::https::client(&tls) {
            Ok(http) => Some(Peer { tls, token, http }),
            Err(e) => {
                problems.push(Invalid::new(flag, e.to_string()));
                None
            }
        }
    }
}
