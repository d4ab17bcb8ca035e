//! Flags and glue for logs: `logcache`, `logs`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use hydrant::apps;
use hydrant_runtime::shutdown;

use hydrant_runtime::config::{Invalid, Invalids};
use hydrant_runtime::https;

use super::{ComponentArgs, SchedulerArgs, bind, parse_bytes, parse_duration, parse_regex};

/// The log cache `hydrant logs` reads unless told otherwise (https with a CA, else http).
pub(crate) const DEFAULT_LOG_CACHE: &str = "127.0.0.1:8080";

#[derive(Debug, Args)]
pub(crate) struct LogcacheArgs {
    /// Doppler to read the Firehose from; repeat to read several.
    #[arg(long = "from", default_value = "127.0.0.1:8082")]
    pub(crate) dopplers: Vec<String>,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) http: SocketAddr,
    /// Envelopes kept per source.
    #[arg(long, default_value_t = hydrant_logcache::DEFAULT_MAX_PER_SOURCE)]
    pub(crate) max_per_source: usize,
    /// Memory budget (e.g. 512MiB, 2GiB).
    #[arg(long, default_value = "512MiB", value_parser = parse_bytes)]
    pub(crate) memory_limit: usize,
    /// Name the dopplers' certificates must carry.
    #[arg(long, default_value = "doppler")]
    pub(crate) tls_server_name: String,
    /// Scheduler that names the guids of apps in app-scoped tokens (`apps: [web]`), as Log
    /// Cache asks Cloud Controller: a URL, or an address (https with certificates). Without
    /// it app scopes read nothing.
    #[arg(long)]
    pub(crate) scheduler: Option<String>,
    /// File whose first line is the bearer token for --scheduler.
    #[arg(long)]
    pub(crate) scheduler_token_file: Option<std::path::PathBuf>,
    /// Storage nozzle whose `logs` table fills the cache at start (the newest lines of
    /// every source), so a restart does not empty `hydrant logs --recent`; a URL, or an
    /// address (https with certificates). `hydrant up` sets it.
    #[arg(long)]
    pub(crate) warm_from: Option<String>,
    /// File whose first line is a token reading every source of --warm-from.
    #[arg(long)]
    pub(crate) warm_token_file: Option<std::path::PathBuf>,
    /// Most lines read when warming.
    #[arg(long, default_value_t = hydrant_logcache::warm::DEFAULT_MAX_ROWS)]
    pub(crate) warm_max_rows: usize,
    /// How far back warming reads (e.g. 24h).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub(crate) warm_lookback: Duration,
    /// Every log cache node's API address, in the same order on every node (Log Cache's
    /// NODE_ADDRS; comma-separated or repeated). With --node-index this node keeps its
    /// share of the sources and answers reads for all of them.
    #[arg(long, value_delimiter = ',')]
    pub(crate) node_addrs: Vec<String>,
    /// This node's place in --node-addrs, from 0 (Log Cache's NODE_INDEX).
    #[arg(long)]
    pub(crate) node_index: Option<usize>,
    /// File whose first line is a token the other nodes accept for writes (the envelopes
    /// forwarded to their owner).
    #[arg(long)]
    pub(crate) node_token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) component: ComponentArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// App name or guid (or any source id).
    pub(crate) app: String,
    /// Print the newest 1000 lines and exit.
    #[arg(long)]
    pub(crate) recent: bool,
    /// Log cache: a URL, or an address (https with a CA, else http).
    #[arg(
        long,
        env = "HYDRANT_LOG_CACHE",
        default_value = DEFAULT_LOG_CACHE
    )]
    pub(crate) log_cache: String,
    /// Only this instance index.
    #[arg(long)]
    pub(crate) instance: Option<String>,
    /// Only OUT or ERR lines.
    #[arg(long = "type", value_parser = ["OUT", "ERR"])]
    pub(crate) stream: Option<String>,
    /// Only these source types (APP, CELL, API, …); repeatable.
    #[arg(long = "source-type")]
    pub(crate) source_types: Vec<String>,
    /// Only lines matching this regular expression.
    #[arg(long, value_parser = parse_regex)]
    pub(crate) grep: Option<regex::Regex>,
    /// Only lines newer than this (e.g. 10m).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) since: Option<Duration>,
    /// One protojson envelope per line.
    #[arg(long)]
    pub(crate) json: bool,
    /// Stop tailing after this long.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

/// The log cache's config from its flags, with every problem it would refuse.
pub(crate) fn build(a: &LogcacheArgs) -> Result<hydrant_logcache::Config, Invalids> {
    let mut problems = Vec::new();
    let mut config = hydrant_logcache::Config::new(a.dopplers.clone());
    config.tls = a.component.tls.check(&a.tls_server_name, &mut problems);
    config.limits.max_per_source = a.max_per_source;
    config.self_metrics = a.component.self_metrics.config(
        "logcache",
        a.http,
        a.component.tls.check("metron", &mut Vec::new()),
        super::DEFAULT_AGENT,
    );
    config.limits.memory_bytes = a.memory_limit;
    config.discovery = a.component.discovery();
    config.grace = a.component.grace();
    config.access = a.component.access.access(&mut problems);
    let tls = config.tls.clone();
    let mut peer = |token_file: &Option<std::path::PathBuf>,
                    flags: (&'static str, &'static str)| {
        super::Peer::new(tls.as_ref(), token_file.as_deref(), flags, &mut problems)
    };
    if let Some(addr) = &a.scheduler
        && let Some(p) = peer(
            &a.scheduler_token_file,
            ("scheduler", "scheduler-token-file"),
        )
    {
        config.scheduler = Some(hydrant_logcache::directory::Scheduler {
            url: https::url(addr, &p.tls),
            token: p.token,
            http: p.http,
        });
    }
    if let Some(addr) = &a.warm_from
        && let Some(p) = peer(&a.warm_token_file, ("warm-from", "warm-token-file"))
    {
        config.warm = Some(hydrant_logcache::warm::Warm {
            url: https::url(addr, &p.tls),
            token: p.token,
            http: p.http,
            max_rows: a.warm_max_rows,
            lookback: a.warm_lookback,
            patience: hydrant_logcache::warm::DEFAULT_PATIENCE,
        });
    }
    match (a.node_addrs.is_empty(), a.node_index) {
        (true, None) => {}
        (true, Some(_)) => problems.push(Invalid::new(
            "node-index",
            "needs --node-addrs, the list it indexes",
        )),
        (false, None) => problems.push(Invalid::new(
            "node-addrs",
            "needs --node-index, this node's place in the list",
        )),
        (false, Some(index)) => {
            if let Some(p) = peer(&a.node_token_file, ("node-addrs", "node-token-file")) {
                config.cluster = Some(hydrant_logcache::cluster::Cluster {
                    nodes: a.node_addrs.iter().map(|n| https::url(n, &p.tls)).collect(),
                    index,
                    token: p.token,
                    http: p.http,
                });
            }
        }
    }
    problems.extend(config.validate());
    Invalids::check(problems)?;
    Ok(config)
}

/// `hydrant logcache`.
pub(crate) async fn logcache(a: LogcacheArgs) -> anyhow::Result<()> {
    let config = build(&a)?;
    let http = bind("--http", a.http).await?;
    tracing::info!(http = %a.http, dopplers = ?a.dopplers, open = config.access.tokens.is_none(), "log cache listening");
    hydrant_logcache::run(config, http, shutdown::on_signal()).await?;
    Ok(())
}

/// `hydrant logs`.
pub(crate) async fn logs(a: LogsArgs) -> anyhow::Result<()> {
    let token = a.scheduler.token.get()?;
    let tls = a.scheduler.token.tls()?;
    let http = hydrant_runtime::https::client(&tls)?;
    let url = |addr: &str| hydrant_runtime::https::url(addr, &tls);
    // Names are resolved through the scheduler when it is there; otherwise the log
    // cache resolves them from the app_name tag.
    let scheduler = apps::Client::new(&url(&a.scheduler.scheduler), token.clone(), http.clone());
    let client = hydrant::logs::Client::new(&url(&a.log_cache), token, http);
    let source = match scheduler.find(&a.app).await {
        Ok(app) => app.guid,
        // Not an app: it may still be a source id (a component such as "doppler").
        Err(apps::Error::NotFound(name)) => {
            if !client.knows(&name).await? {
                bail!("app '{name}' not found (unknown to the scheduler and the log cache)");
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
    Ok(())
}
