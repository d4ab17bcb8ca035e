//! Loggregator v1: dropsonde envelopes (`events`), the agent-to-doppler `DopplerIngestor`
//! service (`plumbing`), and the conversion to v2 that Loggregator applies to them, so a
//! foundation can swap its components for Hydrant's one at a time.
//!
//! [`decode`] refuses what Loggregator's Go decoder refuses: bytes that are not an
//! `events.Envelope`, a missing required field (Go checks proto2 `required`; the schema
//! here declares them optional so presence can be checked and the field named), an enum
//! value the protocol does not define, and an envelope without the message its event type
//! names. [`to_v2`] is go-loggregator's `conversion.ToV2(envelope, true)` (preferred
//! tags), which the router and the udp-forwarder both use.

use std::collections::HashMap;

use prost::Message as _;

use crate::v2;

/// Dropsonde's `events` package.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::clone_on_ref_ptr
)]
pub mod events {
    include!(concat!(env!("OUT_DIR"), "/v1/events.rs"));
}

/// The v1 gRPC hop (`plumbing.DopplerIngestor/Pusher`).
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::clone_on_ref_ptr
)]
pub mod plumbing {
    include!(concat!(env!("OUT_DIR"), "/v1/plumbing.rs"));
}

use events::envelope::EventType;

/// Why a v1 envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not protobuf, or not an `events.Envelope`.
    #[error("not a dropsonde envelope: {0}")]
    Decode(String),
    /// A field the protocol requires is absent.
    #[error("dropsonde envelope without its required field {0}")]
    Missing(&'static str),
    /// An enum value the protocol does not define.
    #[error("dropsonde envelope with an unknown {field} value {value}")]
    Enum {
        /// The field.
        field: &'static str,
        /// The value.
        value: i32,
    },
}

fn need<T>(field: Option<T>, name: &'static str) -> Result<T, Invalid> {
    field.ok_or(Invalid::Missing(name))
}

fn known<T: TryFrom<i32>>(value: Option<i32>, name: &'static str) -> Result<T, Invalid> {
    let v = need(value, name)?;
    T::try_from(v).map_err(|_| Invalid::Enum {
        field: name,
        value: v,
    })
}

/// Decodes one marshalled `events.Envelope` (a UDP datagram, an `EnvelopeData` payload)
/// and checks it as Loggregator does.
pub fn decode(bytes: &[u8]) -> Result<events::Envelope, Invalid> {
    let e = events::Envelope::decode(bytes).map_err(|err| Invalid::Decode(err.to_string()))?;
    check(&e)?;
    Ok(e)
}

fn check_uuid(u: Option<&events::Uuid>, name: &'static str) -> Result<(), Invalid> {
    if let Some(u) = u {
        need(u.low, name)?;
        need(u.high, name)?;
    }
    Ok(())
}

/// Go's required-field check over the envelope and every message set in it, then the
/// agent's: the message the event type names must be there.
fn check(e: &events::Envelope) -> Result<(), Invalid> {
    need(e.origin.as_ref(), "origin")?;
    let kind: EventType = known(e.event_type, "eventType")?;
    if let Some(m) = &e.log_message {
        need(m.message.as_ref(), "logMessage.message")?;
        known::<events::log_message::MessageType>(m.message_type, "logMessage.message_type")?;
        need(m.timestamp, "logMessage.timestamp")?;
    }
    if let Some(m) = &e.value_metric {
        need(m.name.as_ref(), "valueMetric.name")?;
        need(m.value, "valueMetric.value")?;
        need(m.unit.as_ref(), "valueMetric.unit")?;
    }
    if let Some(m) = &e.counter_event {
        need(m.name.as_ref(), "counterEvent.name")?;
        need(m.delta, "counterEvent.delta")?;
    }
    if let Some(m) = &e.container_metric {
        need(m.application_id.as_ref(), "containerMetric.applicationId")?;
        need(m.instance_index, "containerMetric.instanceIndex")?;
        need(m.cpu_percentage, "containerMetric.cpuPercentage")?;
        need(m.memory_bytes, "containerMetric.memoryBytes")?;
        need(m.disk_bytes, "containerMetric.diskBytes")?;
    }
    if let Some(m) = &e.error {
        need(m.source.as_ref(), "error.source")?;
        need(m.code, "error.code")?;
        need(m.message.as_ref(), "error.message")?;
    }
    if let Some(m) = &e.http_start_stop {
        need(m.start_timestamp, "httpStartStop.startTimestamp")?;
        need(m.stop_timestamp, "httpStartStop.stopTimestamp")?;
        need(m.request_id.as_ref(), "httpStartStop.requestId")?;
        check_uuid(m.request_id.as_ref(), "httpStartStop.requestId")?;
        check_uuid(m.application_id.as_ref(), "httpStartStop.applicationId")?;
        known::<events::PeerType>(m.peer_type, "httpStartStop.peerType")?;
        known::<events::Method>(m.method, "httpStartStop.method")?;
        need(m.uri.as_ref(), "httpStartStop.uri")?;
        need(m.remote_address.as_ref(), "httpStartStop.remoteAddress")?;
        need(m.user_agent.as_ref(), "httpStartStop.userAgent")?;
        need(m.status_code, "httpStartStop.statusCode")?;
        need(m.content_length, "httpStartStop.contentLength")?;
    }
    let present = match kind {
        EventType::HttpStartStop => e.http_start_stop.is_some(),
        EventType::LogMessage => e.log_message.is_some(),
        EventType::ValueMetric => e.value_metric.is_some(),
        EventType::CounterEvent => e.counter_event.is_some(),
        EventType::Error => e.error.is_some(),
        EventType::ContainerMetric => e.container_metric.is_some(),
    };
    if !present {
        return Err(Invalid::Missing(match kind {
            EventType::HttpStartStop => "httpStartStop",
            EventType::LogMessage => "logMessage",
            EventType::ValueMetric => "valueMetric",
            EventType::CounterEvent => "counterEvent",
            EventType::Error => "error",
            EventType::ContainerMetric => "containerMetric",
        }));
    }
    Ok(())
}

/// A UUID as go-loggregator writes it: the little-endian bytes of `low` then `high`, in
/// the 8-4-4-4-12 layout.
pub fn uuid_string(u: Option<&events::Uuid>) -> String {
    let (low, high) = u.map_or((0, 0), |u| (u.low.unwrap_or(0), u.high.unwrap_or(0)));
    let l = low.to_le_bytes();
    let h = high.to_le_bytes();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&l[0..4]),
        hex(&l[4..6]),
        hex(&l[6..8]),
        hex(&h[0..2]),
        hex(&h[2..8])
    )
}

fn gauge(name: &str, unit: &str, value: f64) -> (String, v2::GaugeValue) {
    (
        name.to_owned(),
        v2::GaugeValue {
            unit: unit.to_owned(),
            value,
        },
    )
}

/// go-loggregator's `conversion.ToV2(e, true)` for an envelope [`decode`] accepted.
pub fn to_v2(e: &events::Envelope) -> v2::Envelope {
    use v2::envelope::Message;
    let kind = e
        .event_type
        .and_then(|k| EventType::try_from(k).ok())
        .unwrap_or(EventType::LogMessage);
    let mut tags: HashMap<String, String> = e.tags.clone();
    for (k, v) in [
        ("origin", e.origin()),
        ("deployment", e.deployment()),
        ("job", e.job()),
        ("index", e.index()),
        ("ip", e.ip()),
        ("__v1_type", kind.as_str_name()),
    ] {
        tags.insert(k.to_owned(), v.to_owned());
    }
    let mut source_id = match tags.remove("source_id") {
        Some(s) => s,
        None => format!("{}/{}", e.deployment(), e.job()),
    };
    let mut instance_id = String::new();
    let message = match kind {
        EventType::LogMessage => {
            let m = e.log_message.clone().unwrap_or_default();
            if !m.app_id().is_empty() {
                source_id = m.app_id().to_owned();
            }
            instance_id = m.source_instance().to_owned();
            tags.insert("source_type".into(), m.source_type().to_owned());
            let err = m.message_type() == events::log_message::MessageType::Err;
            Message::Log(v2::Log {
                payload: m.message.unwrap_or_default().into(),
                r#type: i32::from(err),
            })
        }
        EventType::ValueMetric => {
            let m = e.value_metric.clone().unwrap_or_default();
            instance_id = tags.get("instance_id").cloned().unwrap_or_default();
            Message::Gauge(v2::Gauge {
                metrics: [gauge(m.name(), m.unit(), m.value())].into(),
            })
        }
        EventType::CounterEvent => {
            let m = e.counter_event.clone().unwrap_or_default();
            instance_id = tags.remove("instance_id").unwrap_or_default();
            Message::Counter(v2::Counter {
                name: m.name().to_owned(),
                delta: m.delta(),
                total: m.total(),
            })
        }
        EventType::ContainerMetric => {
            let m = e.container_metric.clone().unwrap_or_default();
            if !m.application_id().is_empty() {
                source_id = m.application_id().to_owned();
            }
            instance_id = m.instance_index().to_string();
            Message::Gauge(v2::Gauge {
                metrics: [
                    gauge("cpu", "percentage", m.cpu_percentage()),
                    gauge("memory", "bytes", m.memory_bytes() as f64),
                    gauge("disk", "bytes", m.disk_bytes() as f64),
                    gauge("memory_quota", "bytes", m.memory_bytes_quota() as f64),
                    gauge("disk_quota", "bytes", m.disk_bytes_quota() as f64),
                ]
                .into(),
            })
        }
        EventType::HttpStartStop => {
            let m = e.http_start_stop.clone().unwrap_or_default();
            let app = m.application_id.as_ref();
            if app.is_some_and(|u| u.low() != 0 || u.high() != 0) {
                source_id = uuid_string(app);
            }
            instance_id = m.instance_index().to_string();
            for (k, v) in [
                ("request_id", uuid_string(m.request_id.as_ref())),
                ("peer_type", m.peer_type().as_str_name().to_owned()),
                ("method", m.method().as_str_name().to_owned()),
                ("uri", m.uri().to_owned()),
                ("remote_address", m.remote_address().to_owned()),
                ("user_agent", m.user_agent().to_owned()),
                ("status_code", m.status_code().to_string()),
                ("content_length", m.content_length().to_string()),
                ("routing_instance_id", m.instance_id().to_owned()),
                ("forwarded", m.forwarded.join("\n")),
            ] {
                tags.insert(k.to_owned(), v);
            }
            Message::Timer(v2::Timer {
                name: "http".into(),
                start: m.start_timestamp(),
                stop: m.stop_timestamp(),
            })
        }
        EventType::Error => {
            let m = e.error.clone().unwrap_or_default();
            tags.insert("source".into(), m.source().to_owned());
            tags.insert("code".into(), m.code().to_string());
            Message::Log(v2::Log {
                payload: m.message().as_bytes().to_vec().into(),
                r#type: 0,
            })
        }
    };
    v2::Envelope {
        timestamp: e.timestamp(),
        source_id,
        instance_id,
        tags,
        message: Some(message),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
