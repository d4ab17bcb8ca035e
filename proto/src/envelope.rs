//! Builders and accessors for `loggregator.v2` envelopes.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::v2::{self, Envelope, envelope::Message};

/// Now as UNIX nanoseconds, the unit of every Loggregator timestamp.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// An envelope with the given source and message, stamped now.
pub fn new(source_id: impl Into<String>, message: Message) -> Envelope {
    Envelope {
        timestamp: now_nanos(),
        source_id: source_id.into(),
        message: Some(message),
        ..Envelope::default()
    }
}

/// A log line (`OUT` unless `err`).
pub fn log(source_id: impl Into<String>, payload: impl Into<Bytes>, err: bool) -> Envelope {
    let r#type = if err {
        v2::log::Type::Err
    } else {
        v2::log::Type::Out
    };
    new(
        source_id,
        Message::Log(v2::Log {
            payload: payload.into(),
            r#type: r#type as i32,
        }),
    )
}

/// A counter increment; the agent fills in `total`.
pub fn counter(source_id: impl Into<String>, name: impl Into<String>, delta: u64) -> Envelope {
    new(
        source_id,
        Message::Counter(v2::Counter {
            name: name.into(),
            delta,
            total: 0,
        }),
    )
}

/// A gauge with `(name, value, unit)` metrics.
pub fn gauge<'a>(
    source_id: impl Into<String>,
    metrics: impl IntoIterator<Item = (&'a str, f64, &'a str)>,
) -> Envelope {
    let metrics: HashMap<String, v2::GaugeValue> = metrics
        .into_iter()
        .map(|(name, value, unit)| {
            (
                name.to_owned(),
                v2::GaugeValue {
                    unit: unit.to_owned(),
                    value,
                },
            )
        })
        .collect();
    new(source_id, Message::Gauge(v2::Gauge { metrics }))
}

/// A timer from `start` to `stop` (UNIX nanoseconds).
pub fn timer(
    source_id: impl Into<String>,
    name: impl Into<String>,
    start: i64,
    stop: i64,
) -> Envelope {
    new(
        source_id,
        Message::Timer(v2::Timer {
            name: name.into(),
            start,
            stop,
        }),
    )
}

/// An event.
pub fn event(
    source_id: impl Into<String>,
    title: impl Into<String>,
    body: impl Into<String>,
) -> Envelope {
    new(
        source_id,
        Message::Event(v2::Event {
            title: title.into(),
            body: body.into(),
        }),
    )
}

/// The `loggregator.v2` name of the message kind (`log`, `counter`, …), or `none`.
pub fn kind_name(envelope: &Envelope) -> &'static str {
    match envelope.message {
        Some(Message::Log(_)) => "log",
        Some(Message::Counter(_)) => "counter",
        Some(Message::Gauge(_)) => "gauge",
        Some(Message::Timer(_)) => "timer",
        Some(Message::Event(_)) => "event",
        None => "none",
    }
}

/// Renders a typed tag value as the string a preferred tag carries.
pub fn value_to_string(value: &v2::Value) -> String {
    match &value.data {
        Some(v2::value::Data::Text(s)) => s.clone(),
        Some(v2::value::Data::Integer(i)) => i.to_string(),
        Some(v2::value::Data::Decimal(d)) => d.to_string(),
        None => String::new(),
    }
}

/// Moves `deprecated_tags` into `tags` as strings (Loggregator's `use_preferred_tags`).
/// A preferred tag of the same name wins.
pub fn prefer_tags(envelope: &mut Envelope) {
    for (k, v) in envelope.deprecated_tags.drain() {
        envelope
            .tags
            .entry(k)
            .or_insert_with(|| value_to_string(&v));
    }
}
