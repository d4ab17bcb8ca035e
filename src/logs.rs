//! `hydrant logs APP [--recent]`: an app's logs from the log cache, printed as the cf CLI
//! prints them, or tailed live over server-sent events.
//!
//! - `--recent` reads the newest 1,000 log envelopes, newest first, and prints them oldest
//!   first. On 429 it halves the limit and asks again, as the cf CLI does.
//! - Without `--recent`, it prints a short backlog, then streams from `/v2/read` (push, not
//!   polling). Envelopes are held in a small reorder window so they print in timestamp
//!   order. A dropped stream is resumed: the gap is read back from the cache, and
//!   envelopes already printed are skipped, so nothing is lost or duplicated.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use hydrant_proto::v2::{Envelope, envelope::Message};
use serde_json::Value;

mod decode;

pub use decode::from_json;

/// The cf CLI's `RecentLogsLines`.
pub const RECENT_LIMIT: usize = 1000;

/// How long a streamed envelope waits for earlier ones that arrive late.
pub const REORDER_WINDOW: Duration = Duration::from_millis(30);

/// Lines of backlog printed before tailing.
pub const BACKLOG: usize = 10;

/// Errors of `hydrant logs`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log cache did not answer.
    #[error(
        "cannot reach the log cache at {url} ({source}); is `hydrant logcache` running? (set --log-cache or HYDRANT_LOG_CACHE)"
    )]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The log cache refused the request.
    #[error("log cache answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The log cache does not accept the token (it answers 404, as Log Cache does; the
    /// client finds out through the meta listing).
    #[error(
        "the log cache refused to read {what}: {why} (pass --token or set HYDRANT_TOKEN; `hydrant up` keeps one in hydrant-data/token)"
    )]
    Refused {
        /// What was asked for.
        what: String,
        /// Which refusal it was.
        why: &'static str,
    },
    /// The scheduler knows no such app.
    #[error(transparent)]
    App(#[from] crate::apps::Error),
    /// Output failed (e.g. a closed pipe).
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// Which lines to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this instance.
    pub instance: Option<String>,
    /// Only OUT (false) or ERR (true).
    pub err: Option<bool>,
    /// Only these source types (`APP` matches `APP/PROC/WEB`).
    pub source_types: Vec<String>,
    /// Only lines matching.
    pub grep: Option<regex::Regex>,
}

impl Filter {
    /// Whether `env` passes.
    pub fn passes(&self, env: &Envelope) -> bool {
        let Some(Message::Log(log)) = &env.message else {
            return false;
        };
        if self
            .instance
            .as_ref()
            .is_some_and(|i| *i != env.instance_id)
        {
            return false;
        }
        if self.err.is_some_and(|e| e != (log.r#type == 1)) {
            return false;
        }
        let st = env.tags.get("source_type").map_or("", String::as_str);
        if !self.source_types.is_empty()
            && !self
                .source_types
                .iter()
                .any(|want| st == want || st.starts_with(&format!("{want}/")))
        {
            return false;
        }
        self.grep
            .as_ref()
            .is_none_or(|re| re.is_match(&String::from_utf8_lossy(&log.payload)))
    }
}

/// Formats a UNIX-ns timestamp as the cf CLI does: `2006-01-02T15:04:05.00-0700` in `tz`.
pub fn format_time<Tz: chrono::TimeZone>(tz: &Tz, nanos: i64) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let t: DateTime<Tz> = tz.timestamp_nanos(nanos);
    let centis = nanos.rem_euclid(1_000_000_000) / 10_000_000;
    format!(
        "{}.{centis:02}{}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.format("%z")
    )
}

/// The cf CLI's lines for one log envelope: three spaces, time, `[SOURCE_TYPE/INSTANCE]`,
/// `OUT|ERR`, message; one header per line of a multi-line payload; ERR in red if `color`.
pub fn format_log<Tz: chrono::TimeZone>(tz: &Tz, env: &Envelope, color: bool) -> Vec<String>
where
    Tz::Offset: std::fmt::Display,
{
    let Some(Message::Log(log)) = &env.message else {
        return Vec::new();
    };
    let err = log.r#type == 1;
    let stream = if err { "ERR" } else { "OUT" };
    let source_type = env.tags.get("source_type").map_or("", String::as_str);
    let header = format!(
        "{} [{}/{}] {stream} ",
        format_time(tz, env.timestamp),
        source_type,
        env.instance_id
    );
    let text = String::from_utf8_lossy(&log.payload);
    text.trim_end_matches(['\r', '\n'])
        .split('\n')
        .map(|line| {
            let line = line.trim_end_matches('\r');
            if color && err {
                format!("   \x1b[31m{header}{line}\x1b[0m")
            } else {
                format!("   {header}{line}")
            }
        })
        .collect()
}

/// A log cache client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the log cache at `base`, sending with `http` (see
    /// [`hydrant_runtime::https::client`]).
    pub fn new(base: &str, token: Option<String>, http: reqwest::Client) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        }
    }

    fn get(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(format!("{}{path_and_query}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn unreachable(&self, source: reqwest::Error) -> Error {
        Error::Unreachable {
            url: self.base.clone(),
            source,
        }
    }

    /// Reads log envelopes of `source` (`start` inclusive, newest first if `descending`).
    /// Returns `Ok(None)` on 429 so the caller can lower the limit.
    pub async fn read_logs(
        &self,
        source: &str,
        start: i64,
        limit: usize,
        descending: bool,
    ) -> Result<Option<Vec<Envelope>>, Error> {
        let source: String = form_urlencoded::byte_serialize(source.as_bytes()).collect();
        let q = format!(
            "/api/v1/read/{source}?envelope_types=LOG&start_time={start}&limit={limit}&descending={descending}"
        );
        let resp = self.get(&q).send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if status == 200 {
            return Ok(Some(decode::batch(&bytes)));
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match status {
            429 => Ok(None),
            // Log Cache answers 404 to an unknown source, to a source the token may not
            // read, and to a token it does not accept. The last is told apart by the meta
            // listing, which a refused token cannot read either; the first two stay alike
            // on purpose (a token cannot probe which sources exist).
            404 => match self.meta().await? {
                None => Err(Error::Refused {
                    what: source,
                    why: "it does not accept this token, or none was given",
                }),
                Some(_) => Ok(Some(Vec::new())),
            },
            _ => Err(Error::Api {
                status,
                message: body["message"].as_str().unwrap_or_default().to_owned(),
            }),
        }
    }

    /// The meta listing (what the token may read), or `None` when the cache refuses the
    /// token.
    async fn meta(&self) -> Result<Option<Value>, Error> {
        let resp = self
            .get("/api/v1/meta")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Ok(Some(body["meta"].clone()))
    }

    /// Whether the cache holds (or held) anything for `source_id`; an error when it
    /// refuses the token.
    ///
    /// One read of at most one envelope of any type: its cost does not grow with the
    /// number of sources cached. The meta listing (whose cost does) is read only when
    /// that read finds nothing.
    pub async fn knows(&self, source_id: &str) -> Result<bool, Error> {
        let source: String = form_urlencoded::byte_serialize(source_id.as_bytes()).collect();
        let resp = self
            .get(&format!("/api/v1/read/{source}?limit=1"))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let found = body["envelopes"]["batch"]
            .as_array()
            .is_some_and(|b| !b.is_empty());
        match status {
            200 if found => Ok(true),
            // Nothing to read: the meta listing says whether the source is known (its
            // envelopes may have expired) and whether the token was refused.
            200 | 404 => match self.meta().await? {
                Some(meta) => Ok(meta.get(source_id).is_some()),
                None => Err(Error::Refused {
                    what: "its meta listing".into(),
                    why: "it does not accept this token, or none was given",
                }),
            },
            _ => Err(Error::Api {
                status,
                message: body["message"].as_str().unwrap_or_default().to_owned(),
            }),
        }
    }

    /// The newest `limit` logs, oldest first, halving the limit on 429.
    pub async fn recent(
        &self,
        source: &str,
        start: i64,
        limit: usize,
    ) -> Result<Vec<Envelope>, Error> {
        let mut limit = limit;
        while limit >= 1 {
            if let Some(mut envs) = self.read_logs(source, start, limit, true).await? {
                envs.reverse();
                return Ok(envs);
            }
            limit /= 2;
        }
        Err(Error::Api {
            status: 429,
            message: "even one envelope is too large to read".into(),
        })
    }
}

/// Where output goes, with de-duplication across backlog, stream and resumes.
struct Printer<'a, W: Write> {
    out: &'a mut W,
    filter: &'a Filter,
    json: bool,
    color: bool,
    seen: HashSet<(i64, String, u64)>,
    order: VecDeque<(i64, String, u64)>,
    last_ts: i64,
}

fn payload_hash(env: &Envelope) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(Message::Log(l)) = &env.message {
        l.payload.hash(&mut h);
        l.r#type.hash(&mut h);
    }
    h.finish()
}

/// Keys remembered for de-duplication (a few seconds of a busy app).
const DEDUP_KEYS: usize = 100_000;

impl<W: Write> Printer<'_, W> {
    fn print(&mut self, env: &Envelope) -> std::io::Result<()> {
        let key = (env.timestamp, env.instance_id.clone(), payload_hash(env));
        if self.seen.contains(&key) {
            return Ok(());
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        if self.order.len() > DEDUP_KEYS
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.last_ts = self.last_ts.max(env.timestamp);
        if !self.filter.passes(env) {
            return Ok(());
        }
        if self.json {
            writeln!(self.out, "{}", hydrant_proto::json::envelope(env))?;
        } else {
            for line in format_log(&Local, env, self.color) {
                writeln!(self.out, "{line}")?;
            }
        }
        Ok(())
    }
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Options {
    /// Source id (app guid) or app name.
    pub source: String,
    /// Print the newest logs and exit.
    pub recent: bool,
    /// Only logs newer than this.
    pub since: Option<Duration>,
    /// Line filters.
    pub filter: Filter,
    /// One protojson envelope per line.
    pub json: bool,
    /// ERR in red.
    pub color: bool,
    /// Stop tailing after this long (tests and scripts).
    pub duration: Option<Duration>,
}

/// Runs `hydrant logs`.
pub async fn run(client: &Client, opts: &Options, out: &mut impl Write) -> Result<(), Error> {
    let start = opts.since.map_or(0, |d| {
        hydrant_proto::envelope::now_nanos() - d.as_nanos() as i64
    });
    let mut p = Printer {
        out,
        filter: &opts.filter,
        json: opts.json,
        color: opts.color,
        seen: HashSet::new(),
        order: VecDeque::new(),
        last_ts: 0,
    };
    let limit = if opts.recent || opts.since.is_some() {
        RECENT_LIMIT
    } else {
        BACKLOG
    };
    let backlog = client.recent(&opts.source, start, limit).await?;
    // Streaming needs the source id; an app name is resolved through what the cache holds.
    let source_id = backlog
        .last()
        .map_or_else(|| opts.source.clone(), |e| e.source_id.clone());
    for env in &backlog {
        p.print(env)?;
    }
    p.out.flush()?;
    if opts.recent {
        return Ok(());
    }
    let deadline = opts.duration.map(|d| Instant::now() + d);
    tail::tail(client, &source_id, &mut p, deadline).await
}

mod tail;

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ts: i64, text: &str, err: bool) -> Envelope {
        let mut e = hydrant_proto::envelope::log("guid", text.to_owned(), err);
        e.timestamp = ts;
        e.instance_id = "2".into();
        e.tags.insert("source_type".into(), "APP/PROC/WEB".into());
        e
    }

    #[test]
    fn formats_like_the_cf_cli() {
        let tz = chrono::FixedOffset::west_opt(7 * 3600).unwrap();
        // 2006-01-02T22:04:05.123Z is 15:04:05.12 at -0700.
        let ts = 1_136_239_445_123_456_789;
        assert_eq!(format_time(&tz, ts), "2006-01-02T15:04:05.12-0700");
        assert_eq!(
            format_log(&tz, &log(ts, "hello", false), false),
            ["   2006-01-02T15:04:05.12-0700 [APP/PROC/WEB/2] OUT hello"]
        );
        assert_eq!(
            format_log(&tz, &log(ts, "a\r\nb\n", true), false),
            [
                "   2006-01-02T15:04:05.12-0700 [APP/PROC/WEB/2] ERR a",
                "   2006-01-02T15:04:05.12-0700 [APP/PROC/WEB/2] ERR b"
            ]
        );
        assert_eq!(
            format_log(&tz, &log(ts, "x", true), true)[0],
            "   \x1b[31m2006-01-02T15:04:05.12-0700 [APP/PROC/WEB/2] ERR x\x1b[0m"
        );
    }

    #[test]
    fn filters_lines() {
        let f = Filter {
            instance: Some("2".into()),
            err: Some(true),
            source_types: vec!["APP".into()],
            grep: regex::Regex::new("x").ok(),
        };
        assert!(f.passes(&log(1, "xyz", true)));
        assert!(!f.passes(&log(1, "xyz", false)));
        assert!(!f.passes(&log(1, "abc", true)));
        let mut other = log(1, "xyz", true);
        other.tags.insert("source_type".into(), "CELL".into());
        assert!(!f.passes(&other));
    }

    #[test]
    fn reads_protojson_back() {
        let e = log(42, "héllo \u{1}", true);
        assert_eq!(from_json(&hydrant_proto::json::envelope(&e)), Some(e));
    }
}
