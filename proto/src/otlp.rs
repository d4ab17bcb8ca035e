//! OpenTelemetry's protocol (OTLP) for logs and metrics: the generated types and export
//! services, how envelopes become OTLP ([`export`]), and how OTLP becomes Loggregator
//! envelopes (below). The mapping is the inverse of
//! Loggregator's own (loggregator-agent-release `otelcolclient`, envelopes to OTLP):
//!
//! - **Source and instance.** The `source_id` attribute (of the record or data point, else
//!   of the resource) is the source id, else the resource's `service.name`; `instance_id`,
//!   else `service.instance.id`, is the instance id.
//! - **Tags.** Resource attributes, then scope attributes, then the record's or data
//!   point's own (the later win), as text (arrays and maps as JSON); the scope's name and
//!   version as `otel_scope_name`, `otel_scope_version`.
//! - **Logs.** A record is a log whose payload is the body (text as is, bytes raw, other
//!   values as JSON), ERR from severity ERROR (17) up, else OUT; its time, else its
//!   observed time, else now. `severity_text`, `event_name`, `trace_id` and `span_id`
//!   (hex) become tags when set.
//! - **Metrics.** A gauge point is a gauge (with the metric's unit); a monotonic sum is a
//!   counter (cumulative: its total; delta: its delta, which the agent adds up); any other
//!   sum is a gauge. A cumulative histogram is gauges as Prometheus names them:
//!   `NAME_bucket{le}` (cumulative counts, `+Inf` last), `NAME_count`, `NAME_sum`; a delta
//!   histogram is the same as counters of deltas. A summary is `NAME{quantile}`,
//!   `NAME_count`, `NAME_sum`; an exponential histogram only `NAME_count` and `NAME_sum`.
//!   A point flagged "no recorded value" is skipped.

use std::collections::HashMap;

use base64::Engine as _;

use crate::v2::{self, Envelope, envelope::Message};

/// Generated OTLP types and services (package `opentelemetry.proto.*`).
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::clone_on_ref_ptr
)]
pub mod generated {
    pub mod opentelemetry {
        pub mod proto {
            pub mod common {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/otlp/opentelemetry.proto.common.v1.rs"
                    ));
                }
            }
            pub mod resource {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/otlp/opentelemetry.proto.resource.v1.rs"
                    ));
                }
            }
            pub mod logs {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/otlp/opentelemetry.proto.logs.v1.rs"
                    ));
                }
            }
            pub mod metrics {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/otlp/opentelemetry.proto.metrics.v1.rs"
                    ));
                }
            }
            pub mod collector {
                pub mod logs {
                    pub mod v1 {
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/otlp/opentelemetry.proto.collector.logs.v1.rs"
                        ));
                    }
                }
                pub mod metrics {
                    pub mod v1 {
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/otlp/opentelemetry.proto.collector.metrics.v1.rs"
                        ));
                    }
                }
            }
        }
    }
}

pub use generated::opentelemetry::proto::collector::logs::v1 as logs_service;
pub use generated::opentelemetry::proto::collector::metrics::v1 as metrics_service;
pub use generated::opentelemetry::proto::common::v1 as common;
pub use generated::opentelemetry::proto::logs::v1 as logs;
pub use generated::opentelemetry::proto::metrics::v1 as metrics;
pub use generated::opentelemetry::proto::resource::v1 as resource;

use common::{AnyValue, KeyValue, any_value};
use metrics::{metric::Data, number_data_point};

/// OTLP's severity number from which a log is ERR.
const SEVERITY_ERROR: i32 = 17;

/// `DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`.
const NO_RECORDED_VALUE: u32 = 1;

/// `AGGREGATION_TEMPORALITY_DELTA`.
const DELTA: i32 = 1;

/// An attribute value as text: strings as they are, numbers and booleans as written, bytes
/// in base64, arrays and maps as JSON.
pub fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BytesValue(b)) => {
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        None => String::new(),
        Some(_) => json(v).to_string().trim_matches('"').to_owned(),
    }
}

fn json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(d.to_string()), J::Number)
        }
        Some(any_value::Value::BytesValue(b)) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(any_value::Value::ArrayValue(a)) => J::Array(a.values.iter().map(json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|k| (k.key.clone(), k.value.as_ref().map_or(J::Null, json)))
                .collect(),
        ),
        None => J::Null,
    }
}

/// Where an envelope comes from and its tags, from the resource and scope.
#[derive(Debug, Clone, Default)]
struct Origin {
    tags: HashMap<String, String>,
}

impl Origin {
    fn new(
        resource: Option<&resource::Resource>,
        scope: Option<&common::InstrumentationScope>,
    ) -> Origin {
        let mut tags = HashMap::new();
        let mut add = |attrs: &[KeyValue]| {
            for kv in attrs {
                if let Some(v) = &kv.value {
                    tags.insert(kv.key.clone(), text(v));
                }
            }
        };
        if let Some(r) = resource {
            add(&r.attributes);
        }
        if let Some(s) = scope {
            add(&s.attributes);
            if !s.name.is_empty() {
                tags.insert("otel_scope_name".into(), s.name.clone());
            }
            if !s.version.is_empty() {
                tags.insert("otel_scope_version".into(), s.version.clone());
            }
        }
        Origin { tags }
    }

    /// An envelope with this origin and `attrs` on top, its source and instance set.
    fn envelope(&self, attrs: &[KeyValue], timestamp: i64, message: Message) -> Envelope {
        let mut tags = self.tags.clone();
        for kv in attrs {
            if let Some(v) = &kv.value {
                tags.insert(kv.key.clone(), text(v));
            }
        }
        let source_id = tags
            .remove("source_id")
            .or_else(|| tags.get("service.name").cloned())
            .unwrap_or_default();
        let instance_id = tags
            .remove("instance_id")
            .or_else(|| tags.get("service.instance.id").cloned())
            .unwrap_or_default();
        Envelope {
            timestamp,
            source_id,
            instance_id,
            tags,
            message: Some(message),
            ..Default::default()
        }
    }
}

fn time(t: u64, fallback: u64, now: i64) -> i64 {
    let t = if t != 0 { t } else { fallback };
    if t == 0 {
        now
    } else {
        i64::try_from(t).unwrap_or(i64::MAX)
    }
}

/// The envelopes an OTLP logs export carries (one per record).
pub fn log_envelopes(req: &logs_service::ExportLogsServiceRequest, now: i64) -> Vec<Envelope> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            let origin = Origin::new(rl.resource.as_ref(), sl.scope.as_ref());
            for r in &sl.log_records {
                let payload = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone().into_bytes(),
                    Some(any_value::Value::BytesValue(b)) => b.clone(),
                    Some(_) => r.body.as_ref().map(text).unwrap_or_default().into_bytes(),
                    None => Vec::new(),
                };
                let kind = if r.severity_number >= SEVERITY_ERROR {
                    v2::log::Type::Err
                } else {
                    v2::log::Type::Out
                };
                let message = Message::Log(v2::Log {
                    payload: payload.into(),
                    r#type: kind as i32,
                });
                let ts = time(r.time_unix_nano, r.observed_time_unix_nano, now);
                let mut env = origin.envelope(&r.attributes, ts, message);
                let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                for (k, v) in [
                    ("severity_text", r.severity_text.clone()),
                    ("event_name", r.event_name.clone()),
                    ("trace_id", hex(&r.trace_id)),
                    ("span_id", hex(&r.span_id)),
                ] {
                    if !v.is_empty() {
                        env.tags.entry(k.into()).or_insert(v);
                    }
                }
                out.push(env);
            }
        }
    }
    out
}

fn gauge(name: &str, value: f64, unit: &str) -> Message {
    Message::Gauge(v2::Gauge {
        metrics: HashMap::from([(
            name.to_owned(),
            v2::GaugeValue {
                unit: unit.to_owned(),
                value,
            },
        )]),
    })
}

fn counter(name: &str, value: f64, delta: bool) -> Message {
    let n = if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    };
    Message::Counter(v2::Counter {
        name: name.to_owned(),
        delta: if delta { n } else { 0 },
        total: if delta { 0 } else { n },
    })
}

fn number(p: &metrics::NumberDataPoint) -> Option<f64> {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
        None => None,
    }
}

fn le(bound: f64) -> KeyValue {
    let text = if bound.is_infinite() {
        "+Inf".to_owned()
    } else {
        format!("{bound}")
    };
    KeyValue {
        key: "le".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(text)),
        }),
    }
}

/// The envelopes an OTLP metrics export carries (see the module docs for the mapping).
pub fn metric_envelopes(
    req: &metrics_service::ExportMetricsServiceRequest,
    now: i64,
) -> Vec<Envelope> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            let origin = Origin::new(rm.resource.as_ref(), sm.scope.as_ref());
            for m in &sm.metrics {
                metric(&origin, m, now, &mut out);
            }
        }
    }
    out
}

fn metric(origin: &Origin, m: &metrics::Metric, now: i64, out: &mut Vec<Envelope>) {
    let name = m.name.as_str();
    let at = |t: u64| time(t, 0, now);
    match &m.data {
        Some(Data::Gauge(g)) => {
            for p in g
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                if let Some(v) = number(p) {
                    out.push(origin.envelope(
                        &p.attributes,
                        at(p.time_unix_nano),
                        gauge(name, v, &m.unit),
                    ));
                }
            }
        }
        Some(Data::Sum(s)) => {
            for p in s
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                let Some(v) = number(p) else { continue };
                let message = if s.is_monotonic {
                    counter(name, v, s.aggregation_temporality == DELTA)
                } else {
                    gauge(name, v, &m.unit)
                };
                out.push(origin.envelope(&p.attributes, at(p.time_unix_nano), message));
            }
        }
        Some(Data::Histogram(h)) => {
            let delta = h.aggregation_temporality == DELTA;
            let series = |n: &str, v: f64| {
                if delta {
                    counter(n, v, true)
                } else {
                    gauge(n, v, "")
                }
            };
            for p in h
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                let ts = at(p.time_unix_nano);
                let mut cumulative = 0u64;
                for (i, c) in p.bucket_counts.iter().enumerate() {
                    cumulative = cumulative.saturating_add(*c);
                    let bound = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    let mut attrs = p.attributes.clone();
                    attrs.push(le(bound));
                    out.push(origin.envelope(
                        &attrs,
                        ts,
                        series(&format!("{name}_bucket"), cumulative as f64),
                    ));
                }
                out.push(origin.envelope(
                    &p.attributes,
                    ts,
                    series(&format!("{name}_count"), p.count as f64),
                ));
                if let Some(sum) = p.sum {
                    out.push(origin.envelope(
                        &p.attributes,
                        ts,
                        series(&format!("{name}_sum"), sum),
                    ));
                }
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            for p in h
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                let ts = at(p.time_unix_nano);
                out.push(origin.envelope(
                    &p.attributes,
                    ts,
                    gauge(&format!("{name}_count"), p.count as f64, ""),
                ));
                if let Some(sum) = p.sum {
                    out.push(origin.envelope(
                        &p.attributes,
                        ts,
                        gauge(&format!("{name}_sum"), sum, ""),
                    ));
                }
            }
        }
        Some(Data::Summary(s)) => {
            for p in s
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                let ts = at(p.time_unix_nano);
                for q in &p.quantile_values {
                    let mut attrs = p.attributes.clone();
                    attrs.push(KeyValue {
                        key: "quantile".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("{}", q.quantile))),
                        }),
                    });
                    out.push(origin.envelope(&attrs, ts, gauge(name, q.value, &m.unit)));
                }
                out.push(origin.envelope(
                    &p.attributes,
                    ts,
                    gauge(&format!("{name}_count"), p.count as f64, ""),
                ));
                out.push(origin.envelope(
                    &p.attributes,
                    ts,
                    gauge(&format!("{name}_sum"), p.sum, ""),
                ));
            }
        }
        None => {}
    }
}

pub mod export;

#[cfg(test)]
mod tests;
