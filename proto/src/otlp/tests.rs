//! The OTLP → envelope mapping on hand-made exports.

use super::*;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource() -> Option<resource::Resource> {
    Some(resource::Resource {
        attributes: vec![
            kv("service.name", s("checkout")),
            kv("service.instance.id", s("pod-7")),
            kv("deployment.environment", s("prod")),
        ],
        dropped_attributes_count: 0,
    })
}

fn scope() -> Option<common::InstrumentationScope> {
    Some(common::InstrumentationScope {
        name: "shop.orders".into(),
        version: "1.2".into(),
        attributes: vec![],
        dropped_attributes_count: 0,
    })
}

#[test]
fn log_records_become_logs_with_the_service_as_source() {
    let req = logs_service::ExportLogsServiceRequest {
        resource_logs: vec![logs::ResourceLogs {
            resource: resource(),
            scope_logs: vec![logs::ScopeLogs {
                scope: scope(),
                log_records: vec![
                    logs::LogRecord {
                        time_unix_nano: 1_000,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(s("order placed")),
                        }),
                        attributes: vec![kv("order", any_value::Value::IntValue(42))],
                        trace_id: vec![0xab; 16],
                        ..Default::default()
                    },
                    logs::LogRecord {
                        observed_time_unix_nano: 2_000,
                        severity_number: 17,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::KvlistValue(common::KeyValueList {
                                values: vec![kv("error", s("timeout"))],
                            })),
                        }),
                        attributes: vec![kv("source_id", s("explicit")), kv("instance_id", s("3"))],
                        ..Default::default()
                    },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let envs = log_envelopes(&req, 99);
    assert_eq!(envs.len(), 2);
    let (a, b) = (&envs[0], &envs[1]);
    assert_eq!(
        (a.source_id.as_str(), a.instance_id.as_str(), a.timestamp),
        ("checkout", "pod-7", 1_000)
    );
    let Some(Message::Log(log)) = &a.message else {
        panic!("a log")
    };
    assert_eq!((&log.payload[..], log.r#type), (&b"order placed"[..], 0));
    assert_eq!(a.tags["order"], "42");
    assert_eq!(a.tags["deployment.environment"], "prod");
    assert_eq!(a.tags["otel_scope_name"], "shop.orders");
    assert_eq!(a.tags["severity_text"], "INFO");
    assert_eq!(a.tags["trace_id"], "ab".repeat(16));
    assert_eq!(
        (b.source_id.as_str(), b.instance_id.as_str(), b.timestamp),
        ("explicit", "3", 2_000)
    );
    assert!(!b.tags.contains_key("source_id") && !b.tags.contains_key("instance_id"));
    let Some(Message::Log(log)) = &b.message else {
        panic!("a log")
    };
    assert_eq!(
        (&log.payload[..], log.r#type),
        (&br#"{"error":"timeout"}"#[..], 1)
    );
}

fn metrics_req(m: Vec<metrics::Metric>) -> metrics_service::ExportMetricsServiceRequest {
    metrics_service::ExportMetricsServiceRequest {
        resource_metrics: vec![metrics::ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![metrics::ScopeMetrics {
                scope: scope(),
                metrics: m,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn point(v: f64, attrs: Vec<KeyValue>) -> metrics::NumberDataPoint {
    metrics::NumberDataPoint {
        attributes: attrs,
        time_unix_nano: 5_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

#[test]
fn gauges_sums_and_histograms_become_gauges_and_counters() {
    let req = metrics_req(vec![
        metrics::Metric {
            name: "queue_depth".into(),
            unit: "{items}".into(),
            data: Some(Data::Gauge(metrics::Gauge {
                data_points: vec![point(7.0, vec![])],
            })),
            ..Default::default()
        },
        metrics::Metric {
            name: "requests".into(),
            data: Some(Data::Sum(metrics::Sum {
                data_points: vec![point(12.0, vec![kv("route", s("/buy"))])],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        metrics::Metric {
            name: "sent".into(),
            data: Some(Data::Sum(metrics::Sum {
                data_points: vec![point(3.0, vec![])],
                aggregation_temporality: 1,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        metrics::Metric {
            name: "in_flight".into(),
            data: Some(Data::Sum(metrics::Sum {
                data_points: vec![
                    point(-2.0, vec![]),
                    metrics::NumberDataPoint {
                        flags: 1,
                        ..point(5.0, vec![])
                    },
                ],
                aggregation_temporality: 2,
                is_monotonic: false,
            })),
            ..Default::default()
        },
        metrics::Metric {
            name: "latency".into(),
            data: Some(Data::Histogram(metrics::Histogram {
                data_points: vec![metrics::HistogramDataPoint {
                    time_unix_nano: 6_000,
                    count: 6,
                    sum: Some(1.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![0.1, 0.5],
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
    ]);
    let envs = metric_envelopes(&req, 0);
    let gauge_of = |e: &Envelope| match &e.message {
        Some(Message::Gauge(g)) => g
            .metrics
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.value, v.unit.clone())),
        _ => None,
    };
    assert_eq!(
        gauge_of(&envs[0]),
        Some(("queue_depth".into(), 7.0, "{items}".into()))
    );
    assert_eq!(envs[0].source_id, "checkout");
    let Some(Message::Counter(c)) = &envs[1].message else {
        panic!("a counter")
    };
    assert_eq!((c.name.as_str(), c.total, c.delta), ("requests", 12, 0));
    assert_eq!(envs[1].tags["route"], "/buy");
    let Some(Message::Counter(c)) = &envs[2].message else {
        panic!("a counter")
    };
    assert_eq!((c.name.as_str(), c.total, c.delta), ("sent", 0, 3));
    assert_eq!(
        gauge_of(&envs[3]),
        Some(("in_flight".into(), -2.0, String::new()))
    );
    // The flagged point is skipped: the histogram follows.
    let buckets: Vec<(String, f64, String)> = envs[4..7]
        .iter()
        .map(|e| {
            let (n, v, _) = gauge_of(e).unwrap();
            (n, v, e.tags["le"].clone())
        })
        .collect();
    assert_eq!(
        buckets,
        [
            ("latency_bucket".to_owned(), 1.0, "0.1".to_owned()),
            ("latency_bucket".to_owned(), 3.0, "0.5".to_owned()),
            ("latency_bucket".to_owned(), 6.0, "+Inf".to_owned()),
        ]
    );
    assert_eq!(
        gauge_of(&envs[7]),
        Some(("latency_count".into(), 6.0, String::new()))
    );
    assert_eq!(
        gauge_of(&envs[8]),
        Some(("latency_sum".into(), 1.5, String::new()))
    );
    assert_eq!(envs.len(), 9);
}

#[test]
fn envelopes_round_trip_through_otlp() {
    let mut log = crate::envelope::log("app-1", "hello", true);
    log.timestamp = 10;
    log.instance_id = "2".into();
    log.tags.insert("source_type".into(), "APP/PROC/WEB".into());
    let mut g = crate::envelope::gauge(
        "app-1",
        [("cpu", 12.5, "percentage"), ("memory", 1e6, "bytes")],
    );
    g.timestamp = 11;
    let mut c = crate::envelope::counter("app-2", "requests", 0);
    if let Some(Message::Counter(counter)) = &mut c.message {
        counter.total = 40;
    }
    c.timestamp = 12;
    let timer = crate::envelope::timer("app-1", "http", 1, 2);
    let out = export::export(&[log.clone(), g, c, timer], 99);
    assert_eq!((out.log_records, out.points, out.skipped), (1, 3, 1));
    assert_eq!(
        out.metrics.resource_metrics.len(),
        2,
        "one resource per source"
    );
    let back = log_envelopes(&out.logs, 0);
    assert_eq!(back.len(), 1);
    let b = &back[0];
    assert_eq!(
        (b.source_id.as_str(), b.instance_id.as_str(), b.timestamp),
        ("app-1", "2", 10)
    );
    assert_eq!(b.tags["source_type"], "APP/PROC/WEB");
    let Some(Message::Log(l)) = &b.message else {
        panic!("a log")
    };
    assert_eq!((&l.payload[..], l.r#type), (&b"hello"[..], 1));
    let back = metric_envelopes(&out.metrics, 0);
    let mut seen: Vec<String> = back
        .iter()
        .map(|e| match &e.message {
            Some(Message::Gauge(g)) => {
                let (k, v) = g.metrics.iter().next().unwrap();
                format!("{} {k}={} {}", e.source_id, v.value, v.unit)
            }
            Some(Message::Counter(c)) => format!("{} {}={}", e.source_id, c.name, c.total),
            _ => String::new(),
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "app-1 cpu=12.5 percentage",
            "app-1 memory=1000000 bytes",
            "app-2 requests=40"
        ]
    );
}
