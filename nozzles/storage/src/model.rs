//! From envelopes to series and log rows. Pure: the caller owns the running totals.
//!
//! - Gauge: one series per metric key, `name{source_id, instance_id, …tags}`.
//! - Counter: `<name>_total` (unless the name already ends in `_total`) from `total`.
//! - Timer: `<name>_seconds` = (stop − start) in seconds, one sample per timer (timers of
//!   one series in one millisecond are kept, at consecutive milliseconds); the `http`
//!   timer also counts requests in `http_requests_total`.
//! - Log: a row of the log table, and `log_lines_total{source_id, instance_id,
//!   source_type, stream}` counts lines.
//! - Event: a row of the log table with stream `EVENT` (title and body as the payload).
//!
//! Names are sanitised as Prometheus requires: metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label
//! names `[a-zA-Z_][a-zA-Z0-9_]*`; other characters become `_`, and a leading digit gets a
//! `_` in front. Label values are kept as they are (invalid UTF-8 was refused upstream).

use std::collections::BTreeMap;

use hydrant_proto::v2::{self, envelope::Message};
use hydrant_runtime::series::names as series;

/// A series' identity: metric name and labels (sorted, `__name__` excluded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// One sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The series.
    pub key: SeriesKey,
    /// Milliseconds since the epoch.
    pub ts: i64,
    /// Value.
    pub value: f64,
    /// Whether `value` is an increment to add to the series' running total (counted
    /// series the envelope does not carry a total for).
    pub increment: bool,
    /// Whether this is an observation of its own (a timer) that must not replace another
    /// of the same series and millisecond: it is stored at the next free millisecond.
    pub distinct: bool,
}

/// A log (or event) row.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Nanoseconds since the epoch.
    pub ts: i64,
    /// Source id.
    pub source_id: String,
    /// Instance id.
    pub instance_id: String,
    /// `source_type` tag (`APP/PROC/WEB`, `RTR`, …).
    pub source_type: String,
    /// `OUT`, `ERR` or `EVENT`.
    pub stream: &'static str,
    /// The line.
    pub payload: Vec<u8>,
}

/// Replaces characters Prometheus does not allow in a metric name.
pub fn metric_name(s: &str) -> String {
    sanitize(s, true)
}

/// Replaces characters Prometheus does not allow in a label name.
pub fn label_name(s: &str) -> String {
    sanitize(s, false)
}

fn sanitize(s: &str, colon: bool) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphabetic()
            || c == '_'
            || (colon && c == ':')
            || (i > 0 && c.is_ascii_digit());
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
            out.push(c);
        } else {
            out.push(if ok { c } else { '_' });
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn base_labels(env: &v2::Envelope) -> BTreeMap<String, String> {
    let tags = env.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let deprecated = env
        .deprecated_tags
        .iter()
        .map(|(k, v)| (k.as_str(), hydrant_proto::envelope::value_to_string(v)));
    labels(tags, deprecated, &env.source_id, &env.instance_id)
}

/// The labels every series of an envelope carries: its tags (names sanitised; a preferred
/// tag wins over a deprecated one of the same name), then `source_id` and `instance_id`
/// from the envelope's own fields (an empty instance id: none), never `__name__`.
pub fn labels<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    deprecated: impl IntoIterator<Item = (&'a str, String)>,
    source_id: &str,
    instance_id: &str,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (k, v) in tags {
        labels.insert(label_name(k), v.to_owned());
    }
    for (k, v) in deprecated {
        labels.entry(label_name(k)).or_insert(v);
    }
    // The envelope's own fields win over tags of the same name.
    labels.insert("source_id".into(), source_id.to_owned());
    if !instance_id.is_empty() {
        labels.insert("instance_id".into(), instance_id.to_owned());
    } else {
        labels.remove("instance_id");
    }
    labels.remove("__name__");
    labels
}

fn with_suffix(name: &str, suffix: &str) -> String {
    let name = metric_name(name);
    if name.ends_with(suffix) {
        name
    } else {
        format!("{name}{suffix}")
    }
}

/// What one envelope becomes: points, and a log row for logs and events.
pub fn map(env: &v2::Envelope, points: &mut Vec<Point>) -> Option<LogRow> {
    let ts = env.timestamp / 1_000_000;
    match env.message.as_ref()? {
        Message::Gauge(g) => {
            // Every metric but the last gets a copy of the labels; the last takes them (a
            // gauge of one metric, the common case, copies nothing).
            let mut labels = base_labels(env);
            let mut metrics = g.metrics.iter().peekable();
            while let Some((name, v)) = metrics.next() {
                let labels = if metrics.peek().is_some() {
                    labels.clone()
                } else {
                    std::mem::take(&mut labels)
                };
                points.push(Point {
                    key: SeriesKey {
                        name: metric_name(name),
                        labels,
                    },
                    ts,
                    value: v.value,
                    increment: false,
                    distinct: false,
                });
            }
            None
        }
        Message::Counter(c) => {
            points.push(Point {
                key: SeriesKey {
                    name: with_suffix(&c.name, "_total"),
                    labels: base_labels(env),
                },
                ts,
                value: c.total as f64,
                increment: false,
                distinct: false,
            });
            None
        }
        Message::Timer(t) => {
            let labels = base_labels(env);
            points.push(Point {
                key: SeriesKey {
                    name: with_suffix(&t.name, "_seconds"),
                    labels: labels.clone(),
                },
                ts,
                value: (t.stop - t.start) as f64 / 1e9,
                increment: false,
                distinct: true,
            });
            if t.name == "http" {
                points.push(Point {
                    key: SeriesKey {
                        name: series::HTTP_REQUESTS.into(),
                        labels,
                    },
                    ts,
                    value: 1.0,
                    increment: true,
                    distinct: false,
                });
            }
            None
        }
        Message::Log(l) => {
            let stream = if l.r#type == v2::log::Type::Err as i32 {
                "ERR"
            } else {
                "OUT"
            };
            let source_type = env.tags.get("source_type").cloned().unwrap_or_default();
            let mut labels = BTreeMap::from([
                ("source_id".to_owned(), env.source_id.clone()),
                ("source_type".to_owned(), source_type.clone()),
                ("stream".to_owned(), stream.to_owned()),
            ]);
            if !env.instance_id.is_empty() {
                labels.insert("instance_id".into(), env.instance_id.clone());
            }
            if let Some(app) = env.tags.get("app_name") {
                labels.insert("app_name".into(), app.clone());
            }
            points.push(Point {
                key: SeriesKey {
                    name: series::LOG_LINES.into(),
                    labels,
                },
                ts,
                value: 1.0,
                increment: true,
                distinct: false,
            });
            Some(LogRow {
                ts: env.timestamp,
                source_id: env.source_id.clone(),
                instance_id: env.instance_id.clone(),
                source_type,
                stream,
                payload: l.payload.to_vec(),
            })
        }
        Message::Event(e) => Some(LogRow {
            ts: env.timestamp,
            source_id: env.source_id.clone(),
            instance_id: env.instance_id.clone(),
            source_type: env.tags.get("source_type").cloned().unwrap_or_default(),
            stream: "EVENT",
            payload: format!("{}: {}", e.title, e.body).into_bytes(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrant_proto::envelope;

    #[test]
    fn names_are_sanitised_like_prometheus() {
        assert_eq!(metric_name("http.requests-count"), "http_requests_count");
        assert_eq!(metric_name("9lives"), "_9lives");
        assert_eq!(metric_name("a:b"), "a:b");
        assert_eq!(label_name("a:b"), "a_b");
        assert_eq!(label_name("ümlaut"), "_mlaut");
        assert_eq!(metric_name(""), "_");
    }

    #[test]
    fn gauges_counters_timers_and_logs() {
        let mut g = envelope::gauge(
            "app",
            [("cpu", 12.5, "percentage"), ("memory.rss", 1.0, "bytes")],
        );
        g.instance_id = "1".into();
        g.timestamp = 1_700_000_000_123_456_789;
        g.tags.insert("app-name".into(), "web".into());
        g.tags.insert("source_id".into(), "spoofed".into());
        let mut points = Vec::new();
        assert!(map(&g, &mut points).is_none());
        points.sort_by(|a, b| a.key.name.cmp(&b.key.name));
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].key.name, "cpu");
        assert_eq!(points[0].ts, 1_700_000_000_123);
        assert_eq!(points[1].key.name, "memory_rss");
        assert_eq!(
            points[0].key.labels, points[1].key.labels,
            "every metric of a gauge carries the envelope's labels"
        );
        let labels: Vec<(&str, &str)> = points[0]
            .key
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("app_name", "web"),
                ("instance_id", "1"),
                ("source_id", "app")
            ],
            "tags sanitised; the envelope's source_id wins"
        );

        let mut c = envelope::counter("app", "requests", 1);
        if let Some(Message::Counter(x)) = &mut c.message {
            x.total = 42;
        }
        points.clear();
        map(&c, &mut points);
        assert_eq!(
            (points[0].key.name.as_str(), points[0].value),
            ("requests_total", 42.0)
        );
        let c = envelope::counter("app", "bytes_total", 1);
        points.clear();
        map(&c, &mut points);
        assert_eq!(points[0].key.name, "bytes_total", "no double suffix");

        let t = envelope::timer("app", "http", 1_000_000_000, 1_250_000_000);
        points.clear();
        map(&t, &mut points);
        assert_eq!(points.len(), 2);
        assert_eq!(
            (points[0].key.name.as_str(), points[0].value),
            ("http_seconds", 0.25)
        );
        assert_eq!(points[1].key.name, series::HTTP_REQUESTS);
        assert!(points[1].increment);

        let mut l = envelope::log("app", "hello", true);
        l.tags.insert("source_type".into(), "APP/PROC/WEB".into());
        l.instance_id = "0".into();
        points.clear();
        let row = map(&l, &mut points).unwrap();
        assert_eq!(
            (row.stream, row.source_type.as_str()),
            ("ERR", "APP/PROC/WEB")
        );
        assert_eq!(row.payload, b"hello");
        assert_eq!(points[0].key.name, series::LOG_LINES);
        assert_eq!(points[0].key.labels["stream"], "ERR");

        let e = envelope::event("app", "Scaled", "1 → 2");
        points.clear();
        let row = map(&e, &mut points).unwrap();
        assert_eq!(
            (row.stream, row.payload.as_slice()),
            ("EVENT", "Scaled: 1 → 2".as_bytes())
        );
        assert!(points.is_empty());
    }
}
