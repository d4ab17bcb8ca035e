//! Envelopes as OTLP, as Loggregator's forwarder writes them (loggregator-agent-release
//! `otelcolclient`): every record or point carries `source_id`, `instance_id` and the
//! envelope's tags as attributes; a log is a record with its payload as text body, INFO
//! for OUT and ERROR for ERR; an event a record whose body is `{title, body}`; a counter a
//! cumulative monotonic sum of its total; each gauge metric a gauge with its unit. Timers
//! (spans in Loggregator's mapping) are not exported. The resource carries `service.name`
//! = the source id, so an OpenTelemetry backend groups by app.

use std::collections::BTreeMap;

use super::common::{AnyValue, KeyValue, KeyValueList, any_value};
use super::{logs, logs_service, metrics, metrics_service, resource};
use crate::v2::{Envelope, envelope::Message};

fn string(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.to_owned())),
    })
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: string(v),
    }
}

/// `instance_id`, `source_id`, then the tags (sorted), as Loggregator lists them.
fn attributes(e: &Envelope) -> Vec<KeyValue> {
    let mut out = vec![
        kv("instance_id", &e.instance_id),
        kv("source_id", &e.source_id),
    ];
    let tags: BTreeMap<&String, &String> = e.tags.iter().collect();
    for (k, v) in tags {
        if !matches!(
            k.as_str(),
            "instance_id" | "source_id" | "__v1_type" | "span_id" | "trace_id"
        ) {
            out.push(kv(k, v));
        }
    }
    out
}

fn resource_of(source_id: &str) -> Option<resource::Resource> {
    Some(resource::Resource {
        attributes: vec![kv("service.name", source_id)],
        dropped_attributes_count: 0,
    })
}

/// What one batch of envelopes exports: its logs, its metrics, and how many envelopes have
/// no OTLP form here (timers).
#[derive(Debug, Default)]
pub struct Export {
    /// `POST /v1/logs` (empty when there are none).
    pub logs: logs_service::ExportLogsServiceRequest,
    /// `POST /v1/metrics`.
    pub metrics: metrics_service::ExportMetricsServiceRequest,
    /// Log records in `logs`.
    pub log_records: usize,
    /// Data points in `metrics`.
    pub points: usize,
    /// Envelopes left out.
    pub skipped: usize,
}

/// Groups a batch by source (one resource each) and maps every envelope.
pub fn export(envelopes: &[Envelope], now: u64) -> Export {
    let mut by_source_logs: BTreeMap<&str, Vec<logs::LogRecord>> = BTreeMap::new();
    let mut by_source_metrics: BTreeMap<&str, Vec<metrics::Metric>> = BTreeMap::new();
    let mut out = Export::default();
    for e in envelopes {
        let ts = u64::try_from(e.timestamp).unwrap_or(0);
        match &e.message {
            Some(Message::Log(l)) => {
                let (number, text) = if l.r#type == 1 {
                    (17, "SEVERITY_NUMBER_ERROR")
                } else {
                    (9, "SEVERITY_NUMBER_INFO")
                };
                by_source_logs
                    .entry(&e.source_id)
                    .or_default()
                    .push(logs::LogRecord {
                        time_unix_nano: ts,
                        observed_time_unix_nano: now,
                        severity_number: number,
                        severity_text: text.into(),
                        body: string(&String::from_utf8_lossy(&l.payload)),
                        attributes: attributes(e),
                        ..Default::default()
                    });
                out.log_records += 1;
            }
            Some(Message::Event(ev)) => {
                by_source_logs
                    .entry(&e.source_id)
                    .or_default()
                    .push(logs::LogRecord {
                        time_unix_nano: ts,
                        observed_time_unix_nano: now,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::KvlistValue(KeyValueList {
                                values: vec![kv("title", &ev.title), kv("body", &ev.body)],
                            })),
                        }),
                        attributes: attributes(e),
                        ..Default::default()
                    });
                out.log_records += 1;
            }
            Some(Message::Counter(c)) => {
                by_source_metrics
                    .entry(&e.source_id)
                    .or_default()
                    .push(metrics::Metric {
                        name: c.name.clone(),
                        data: Some(metrics::metric::Data::Sum(metrics::Sum {
                            data_points: vec![metrics::NumberDataPoint {
                                attributes: attributes(e),
                                time_unix_nano: ts,
                                value: Some(metrics::number_data_point::Value::AsInt(
                                    i64::try_from(c.total).unwrap_or(i64::MAX),
                                )),
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    });
                out.points += 1;
            }
            Some(Message::Gauge(g)) => {
                let mut names: Vec<&String> = g.metrics.keys().collect();
                names.sort();
                for name in names {
                    let v = &g.metrics[name];
                    by_source_metrics
                        .entry(&e.source_id)
                        .or_default()
                        .push(metrics::Metric {
                            name: name.clone(),
                            unit: v.unit.clone(),
                            data: Some(metrics::metric::Data::Gauge(metrics::Gauge {
                                data_points: vec![metrics::NumberDataPoint {
                                    attributes: attributes(e),
                                    time_unix_nano: ts,
                                    value: Some(metrics::number_data_point::Value::AsDouble(
                                        v.value,
                                    )),
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        });
                    out.points += 1;
                }
            }
            _ => out.skipped += 1,
        }
    }
    let scope = || {
        Some(super::common::InstrumentationScope {
            name: "hydrant".into(),
            version: String::new(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        })
    };
    out.logs.resource_logs = by_source_logs
        .into_iter()
        .map(|(source, records)| logs::ResourceLogs {
            resource: resource_of(source),
            scope_logs: vec![logs::ScopeLogs {
                scope: scope(),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    out.metrics.resource_metrics = by_source_metrics
        .into_iter()
        .map(|(source, metrics)| metrics::ResourceMetrics {
            resource: resource_of(source),
            scope_metrics: vec![metrics::ScopeMetrics {
                scope: scope(),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    out
}
