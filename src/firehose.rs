//! `hydrant firehose`: subscribe to a doppler's Firehose and print envelopes (text or
//! Loggregator protojson, one per line) or, with `--stats`, a loss and latency summary.

use std::io::Write as _;
use std::time::Duration;

use hydrant_proto::envelope::now_nanos;
use hydrant_proto::json;
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::subscriber::{Subscriber, request, select};
use hydrant_proto::transport::{self, Tls};
use hydrant_proto::v2::{Selector, envelope::Message};
use tokio_util::sync::CancellationToken;

pub mod stats;

/// Envelope types to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TypeArg {
    /// Logs.
    Log,
    /// Counters.
    Counter,
    /// Gauges.
    Gauge,
    /// Timers.
    Timer,
    /// Events.
    Event,
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One readable line per envelope.
    Text,
    /// One protojson envelope per line.
    Json,
    /// One JSON summary at the end.
    Stats,
}

/// Subscriber settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Doppler address.
    pub from: String,
    /// Shard id (empty: a private copy of the stream).
    pub shard_id: String,
    /// Source ids to select (empty: all).
    pub source_ids: Vec<String>,
    /// Types to select (empty: all).
    pub types: Vec<TypeArg>,
    /// Stop after this many envelopes.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Output mode.
    pub output: Output,
}

/// Errors while subscribing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad address or TLS.
    #[error(transparent)]
    Transport(#[from] transport::Error),
    /// The doppler refused the subscription.
    #[error("subscription refused: {0}")]
    Refused(tonic::Status),
    /// Writing output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// No stream was ever established: nothing was read, so nothing can be reported.
    #[error(
        "never connected to the doppler at {addr}: {why}{}",
        if *tls { "" } else { " (a doppler with TLS needs --tls-ca, --tls-cert and --tls-key)" }
    )]
    NeverConnected {
        /// The doppler.
        addr: String,
        /// The last reason a connection failed.
        why: String,
        /// Whether TLS was configured.
        tls: bool,
    },
}

/// The selectors for `types` × `source_ids`.
pub fn selectors(source_ids: &[String], types: &[TypeArg]) -> Vec<Selector> {
    let sources: Vec<&str> = if source_ids.is_empty() {
        vec![""]
    } else {
        source_ids.iter().map(String::as_str).collect()
    };
    let types = if types.is_empty() {
        vec![
            TypeArg::Log,
            TypeArg::Counter,
            TypeArg::Gauge,
            TypeArg::Timer,
            TypeArg::Event,
        ]
    } else {
        types.to_vec()
    };
    let mut out = Vec::new();
    for s in sources {
        for t in &types {
            out.push(match t {
                TypeArg::Log => select::log(s),
                TypeArg::Counter => select::counter(s, ""),
                TypeArg::Gauge => select::gauge(s, &[]),
                TypeArg::Timer => select::timer(s),
                TypeArg::Event => select::event(s),
            });
        }
    }
    out
}

/// Subscribes and prints until `count`, `duration` or `cancel`; returns the stats summary
/// in `--stats` mode.
pub async fn run(
    opts: Options,
    tls: Option<Tls>,
    cancel: CancellationToken,
) -> Result<Option<stats::Summary>, Error> {
    let stop = cancel.child_token();
    if let Some(d) = opts.duration {
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            s.cancel();
        });
    }
    let req = request(&opts.shard_id, selectors(&opts.source_ids, &opts.types));
    let mut sub = Subscriber::new(&opts.from, tls.as_ref(), req, stop.clone())?;
    let mut stats = stats::Stats::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let limit = opts.count.unwrap_or(u64::MAX);
    let mut seen = 0u64;
    while seen < limit {
        let Some(batch) = sub.next().await.map_err(Error::Refused)? else {
            break;
        };
        let now = now_nanos();
        for env in batch.batch.iter().take((limit - seen) as usize) {
            seen += 1;
            match opts.output {
                Output::Stats => {
                    let seq = env.tag("seq").and_then(|s| s.parse().ok());
                    stats.record(env.source_id(), seq, env.timestamp(), now);
                }
                Output::Json => {
                    serde_json::to_writer(&mut out, &json::envelope(&env.decode()))
                        .map_err(std::io::Error::from)?;
                    out.write_all(b"\n")?;
                }
                Output::Text => writeln!(out, "{}", text_line(env))?,
            }
        }
        if opts.output != Output::Stats {
            out.flush()?;
        }
    }
    out.flush()?;
    if !sub.connected_once() {
        let why = sub.last_error().map_or_else(
            || "stopped before the first attempt".to_owned(),
            |s| s.message().to_owned(),
        );
        return Err(Error::NeverConnected {
            addr: opts.from.clone(),
            why,
            tls: tls.is_some(),
        });
    }
    Ok((opts.output == Output::Stats).then(|| stats.finish()))
}

/// A readable one-line rendering.
pub fn text_line(raw: &RawEnvelope) -> String {
    let env = raw.decode();
    let head = format!("{} {} [{}]", env.timestamp, env.source_id, env.instance_id);
    match &env.message {
        Some(Message::Log(l)) => {
            let stream = if l.r#type == 1 { "ERR" } else { "OUT" };
            format!(
                "{head} LOG {stream} {}",
                String::from_utf8_lossy(&l.payload)
            )
        }
        Some(Message::Counter(c)) => format!(
            "{head} COUNTER {} delta={} total={}",
            c.name, c.delta, c.total
        ),
        Some(Message::Gauge(g)) => {
            let mut m: Vec<String> = g
                .metrics
                .iter()
                .map(|(k, v)| format!("{k}={}{}", v.value, v.unit))
                .collect();
            m.sort();
            format!("{head} GAUGE {}", m.join(" "))
        }
        Some(Message::Timer(t)) => {
            format!(
                "{head} TIMER {} {:.3}ms",
                t.name,
                (t.stop - t.start) as f64 / 1e6
            )
        }
        Some(Message::Event(e)) => format!("{head} EVENT {}: {}", e.title, e.body),
        None => format!("{head} (empty)"),
    }
}
