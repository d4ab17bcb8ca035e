//! Envelopes as RFC 5424 syslog messages, byte for byte as Loggregator's syslog agent
//! writes them (`loggregator-agent-release` `egress/syslog/rfc5424.go` over
//! `go-loggregator/rfc5424`):
//!
//! - `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - [SD]… MSG`, PRI 14 (user.info) for OUT and
//!   metrics, 11 (user.err) for ERR; the timestamp in UTC with microseconds, trailing zeros
//!   dropped, offset `+00:00`.
//! - HOSTNAME is `org.space.app` from the `organization_name`, `space_name` and `app_name`
//!   tags (each part sanitized to `[-a-zA-Z0-9]`, at most 63 characters) when the org or
//!   space tag is present, else the binding's hostname; APP-NAME the source id; PROCID
//!   `[SOURCE_TYPE/instance]` for logs, `[instance]` for metrics.
//! - Tags go in `[tags@47450 k="v" …]` (sorted by key); a gauge is one message per metric
//!   (`gauge@47450` name, value, unit), a counter `counter@47450` (name, total, delta), a
//!   timer `timer@47450` (name, start, stop), an event `event@47450` (title, body).
//! - A log's payload loses its NUL bytes and ends in exactly one added newline if it had
//!   none; a metric's message is empty and the line ends in `" \n"`.
//!
//! Two deliberate differences:
//! - A tag whose name RFC 5424 cannot carry (a space, `=`, `]`, `"`, a non-ASCII byte) is
//!   left out of the structured data instead of failing the whole message, so such a tag
//!   never costs a log line.
//! - An `app_name` tag alone does not make the HOSTNAME (Loggregator would write
//!   `..app`): a cell's apps have no org or space, and their binding's hostname is the
//!   app's name.

use std::fmt::Write as _;

use hydrant_proto::v2::Envelope;
use hydrant_proto::v2::envelope::Message;

/// The Cloud Foundry Foundation's IANA enterprise number, in every SD-ID.
pub const ENTERPRISE: &str = "47450";

/// Longest HOSTNAME, APP-NAME, PROCID (RFC 5424).
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;
const MAX_PROCID: usize = 128;

/// A `(name, value)` structured-data element.
type Sd = (&'static str, Vec<(String, String)>);

/// What the converter needs besides the envelope.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// HOSTNAME when the envelope has no org/space/app tags.
    pub hostname: String,
    /// Leave out the `tags@47450` element (`disable-metadata`/`omit-metadata`).
    pub omit_tags: bool,
}

/// The envelope's syslog messages (several for a gauge with several metrics; none for a
/// kind syslog does not carry).
pub fn messages(env: &Envelope, o: &Options) -> Vec<Vec<u8>> {
    let hostname = hostname(env, &o.hostname);
    let tags = if o.omit_tags { None } else { tags_sd(env) };
    let metric = |sd: Sd| metric_message(env, &hostname, sd, tags.as_ref());
    match &env.message {
        Some(Message::Log(log)) => {
            let priority = if log.r#type == 1 { 11 } else { 14 };
            let source_type = env.tags.get("source_type").map_or("", String::as_str);
            let procid = process_id(&sanitize_procid(source_type), &env.instance_id);
            let mut payload: Vec<u8> = log.payload.iter().copied().filter(|&b| b != 0).collect();
            if payload.last() != Some(&b'\n') {
                payload.push(b'\n');
            }
            let mut out = header(priority, env.timestamp, &hostname, &env.source_id, &procid);
            structured(&mut out, tags.iter());
            out.push(b' ');
            out.extend_from_slice(&payload);
            vec![out]
        }
        Some(Message::Gauge(g)) => {
            let mut names: Vec<&String> = g.metrics.keys().collect();
            names.sort();
            names
                .into_iter()
                .map(|name| {
                    let v = &g.metrics[name];
                    metric((
                        "gauge",
                        vec![
                            ("name".into(), name.clone()),
                            ("value".into(), format_float(v.value)),
                            ("unit".into(), v.unit.clone()),
                        ],
                    ))
                })
                .collect()
        }
        Some(Message::Counter(c)) => vec![metric((
            "counter",
            vec![
                ("name".into(), c.name.clone()),
                ("total".into(), c.total.to_string()),
                ("delta".into(), c.delta.to_string()),
            ],
        ))],
        Some(Message::Timer(t)) => vec![metric((
            "timer",
            vec![
                ("name".into(), t.name.clone()),
                ("start".into(), t.start.to_string()),
                ("stop".into(), t.stop.to_string()),
            ],
        ))],
        Some(Message::Event(e)) => vec![metric((
            "event",
            vec![
                ("title".into(), e.title.clone()),
                ("body".into(), e.body.clone()),
            ],
        ))],
        None => Vec::new(),
    }
}

fn metric_message(env: &Envelope, hostname: &str, sd: Sd, tags: Option<&Sd>) -> Vec<u8> {
    let procid = format!("[{}]", env.instance_id);
    let mut out = header(14, env.timestamp, hostname, &env.source_id, &procid);
    structured(&mut out, std::iter::once(&sd).chain(tags));
    out.extend_from_slice(b" \n");
    out
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - `
fn header(priority: u8, timestamp: i64, hostname: &str, app: &str, procid: &str) -> Vec<u8> {
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        "<{priority}>1 {} {} {} {} - ",
        timestamp_text(timestamp),
        nil(&printable(hostname, MAX_HOSTNAME)),
        nil(&printable(app, MAX_APP_NAME)),
        nil(&printable(procid, MAX_PROCID)),
    );
    out.into_bytes()
}

fn structured<'a>(out: &mut Vec<u8>, elements: impl Iterator<Item = &'a Sd>) {
    let mut any = false;
    for (id, params) in elements {
        any = true;
        let _ = write!(Buf(out), "[{id}@{ENTERPRISE}");
        for (name, value) in params {
            let _ = write!(Buf(out), " {name}=\"{}\"", escape(value));
        }
        out.push(b']');
    }
    if !any {
        out.push(b'-');
    }
}

/// `fmt::Write` into a byte buffer.
struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The envelope's tags as `tags@47450`, sorted; names RFC 5424 cannot carry are left out.
fn tags_sd(env: &Envelope) -> Option<Sd> {
    let mut names: Vec<&String> = env.tags.keys().filter(|k| valid_sd_name(k)).collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    Some((
        "tags",
        names
            .into_iter()
            .map(|k| (k.clone(), env.tags[k].clone()))
            .collect(),
    ))
}

fn valid_sd_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '"' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn nil(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// At most `max` bytes of printable US-ASCII (33..=126): other bytes are dropped, as a
/// value Go's writer would refuse must not cost the line.
fn printable(s: &str, max: usize) -> String {
    s.bytes()
        .filter(|b| (33..=126).contains(b))
        .take(max)
        .map(char::from)
        .collect()
}

/// `org.space.app` from the envelope's tags, or `default`.
fn hostname(env: &Envelope, default: &str) -> String {
    let tag = |k: &str| env.tags.get(k);
    let (org, space, app) = (tag("organization_name"), tag("space_name"), tag("app_name"));
    if org.is_none() && space.is_none() {
        return default.to_owned();
    }
    let part = |v: Option<&String>| {
        let s = sanitize_hostname(v.map_or("", String::as_str));
        s.chars().take(63).collect::<String>()
    };
    format!("{}.{}.{}", part(org), part(space), part(app))
}

/// Whitespace runs become `-`, characters outside `[-a-zA-Z0-9]` go, trailing dashes go.
fn sanitize_hostname(s: &str) -> String {
    let dashed = dash_spaces(s);
    let kept: String = dashed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    kept.trim_end_matches('-').to_owned()
}

/// Whitespace runs become `-`, non-graphic characters go, trailing dashes go.
fn sanitize_procid(s: &str) -> String {
    let dashed = dash_spaces(s);
    let kept: String = dashed.chars().filter(|c| c.is_ascii_graphic()).collect();
    kept.trim_end_matches('-').to_owned()
}

fn dash_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('-');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// `[SOURCE_TYPE/instance]`, or `[SOURCE_TYPE]` without an instance; at most 128 bytes.
fn process_id(source_type: &str, instance: &str) -> String {
    let kind = source_type.to_uppercase().replace(' ', "-");
    if instance.is_empty() {
        return format!("[{kind}]");
    }
    let room = MAX_PROCID.saturating_sub(kind.len() + 3);
    let instance: String = instance.chars().take(room).collect();
    format!("[{kind}/{instance}]")
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`: the shortest digits that read back as `v`,
/// in exponent form when the exponent is below -4 or from 6 (so 52428800 is `5.24288e+07`).
fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip digits too, with the exact exponent.
    let e_form = format!("{v:e}");
    let (mantissa, exp) = e_form.split_once('e').unwrap_or((&e_form, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{v}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// RFC 3339 in UTC with microseconds, trailing zeros (and a bare dot) dropped, `+00:00`.
fn timestamp_text(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let micros = nanos.rem_euclid(1_000_000_000) / 1_000;
    let base = chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let frac = if micros == 0 {
        String::new()
    } else {
        let digits = format!("{micros:06}");
        format!(".{}", digits.trim_end_matches('0'))
    };
    format!("{base}{frac}+00:00")
}

#[cfg(test)]
mod tests;
