//! The conversion against go-loggregator's own test vectors (`conversion/*_test.go`), and
//! decoding bytes encoded by hand from dropsonde's field numbers (not by this crate's
//! generated code), so a wrong field number in the schema cannot hide.

use super::*;
use crate::v2::envelope::Message;

/// A protobuf field key: field number and wire type.
fn key(field: u32, wire: u32) -> Vec<u8> {
    varint(u64::from(field << 3 | wire))
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn bytes_field(field: u32, b: &[u8]) -> Vec<u8> {
    let mut out = key(field, 2);
    out.extend(varint(b.len() as u64));
    out.extend_from_slice(b);
    out
}

fn varint_field(field: u32, v: u64) -> Vec<u8> {
    let mut out = key(field, 0);
    out.extend(varint(v));
    out
}

/// A LogMessage envelope as a dropsonde emitter marshals it.
fn hand_encoded_log() -> Vec<u8> {
    let mut log = bytes_field(1, b"hello from v1"); // message
    log.extend(varint_field(2, 2)); // message_type ERR
    log.extend(varint_field(3, 99)); // timestamp
    log.extend(bytes_field(4, b"app-guid")); // app_id
    log.extend(bytes_field(5, b"APP/PROC/WEB")); // source_type
    log.extend(bytes_field(6, b"3")); // source_instance
    let mut env = bytes_field(1, b"legacy-emitter"); // origin
    env.extend(varint_field(2, 5)); // eventType LogMessage
    env.extend(varint_field(6, 1_700_000_000_000_000_000)); // timestamp
    env.extend(bytes_field(13, b"cf")); // deployment
    env.extend(bytes_field(14, b"diego-cell")); // job
    env.extend(bytes_field(15, b"0")); // index
    env.extend(bytes_field(16, b"10.0.0.1")); // ip
    let mut tag = bytes_field(1, b"custom");
    tag.extend(bytes_field(2, b"value"));
    env.extend(bytes_field(17, &tag)); // tags
    env.extend(bytes_field(8, &log)); // logMessage
    env
}

#[test]
fn a_hand_encoded_log_message_converts_as_loggregator_does() {
    let e = decode(&hand_encoded_log()).unwrap();
    let v2 = to_v2(&e);
    assert_eq!(v2.source_id, "app-guid");
    assert_eq!(v2.instance_id, "3");
    assert_eq!(
        v2.timestamp, 1_700_000_000_000_000_000,
        "the envelope's timestamp, not the LogMessage's"
    );
    let Some(Message::Log(log)) = &v2.message else {
        panic!("{v2:?}")
    };
    assert_eq!(&log.payload[..], b"hello from v1");
    assert_eq!(log.r#type, 1, "ERR");
    let tags: std::collections::BTreeMap<_, _> = v2.tags.iter().collect();
    let want: std::collections::BTreeMap<String, String> = [
        ("origin", "legacy-emitter"),
        ("deployment", "cf"),
        ("job", "diego-cell"),
        ("index", "0"),
        ("ip", "10.0.0.1"),
        ("__v1_type", "LogMessage"),
        ("source_type", "APP/PROC/WEB"),
        ("custom", "value"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(tags, want.iter().collect());
}

fn envelope(kind: EventType) -> events::Envelope {
    events::Envelope {
        origin: Some("origin".into()),
        event_type: Some(kind as i32),
        timestamp: Some(12),
        deployment: Some("deployment".into()),
        job: Some("job".into()),
        index: Some("index".into()),
        ip: Some("ip".into()),
        ..Default::default()
    }
}

#[test]
fn counter_event_test_vector() {
    let mut e = envelope(EventType::CounterEvent);
    e.tags = [
        ("custom_tag", "custom-value"),
        ("source_id", "source-id"),
        ("instance_id", "instance-id"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    e.counter_event = Some(events::CounterEvent {
        name: Some("name".into()),
        delta: Some(1),
        total: Some(2),
    });
    check(&e).unwrap();
    let v2 = to_v2(&e);
    assert_eq!(
        (v2.source_id.as_str(), v2.instance_id.as_str()),
        ("source-id", "instance-id")
    );
    let mut keys: Vec<&str> = v2.tags.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "__v1_type",
            "custom_tag",
            "deployment",
            "index",
            "ip",
            "job",
            "origin"
        ]
    );
    assert_eq!(v2.tags["__v1_type"], "CounterEvent");
    assert_eq!(
        v2.message,
        Some(Message::Counter(v2::Counter {
            name: "name".into(),
            delta: 1,
            total: 2
        }))
    );
}

#[test]
fn container_metric_and_value_metric_become_gauges() {
    let mut e = envelope(EventType::ContainerMetric);
    e.container_metric = Some(events::ContainerMetric {
        application_id: Some("app".into()),
        instance_index: Some(123),
        cpu_percentage: Some(1.5),
        memory_bytes: Some(2),
        disk_bytes: Some(3),
        memory_bytes_quota: Some(4),
        disk_bytes_quota: None,
    });
    let v2 = to_v2(&e);
    assert_eq!(
        (v2.source_id.as_str(), v2.instance_id.as_str()),
        ("app", "123")
    );
    let Some(Message::Gauge(g)) = &v2.message else {
        panic!()
    };
    let got: std::collections::BTreeMap<&str, (f64, &str)> = g
        .metrics
        .iter()
        .map(|(k, v)| (k.as_str(), (v.value, v.unit.as_str())))
        .collect();
    assert_eq!(
        got,
        [
            ("cpu", (1.5, "percentage")),
            ("disk", (3.0, "bytes")),
            ("disk_quota", (0.0, "bytes")),
            ("memory", (2.0, "bytes")),
            ("memory_quota", (4.0, "bytes")),
        ]
        .into()
    );

    // Without a source_id tag: deployment/job; a ValueMetric keeps its instance_id tag.
    let mut e = envelope(EventType::ValueMetric);
    e.tags.insert("instance_id".into(), "7".into());
    e.value_metric = Some(events::ValueMetric {
        name: Some("latency".into()),
        value: Some(0.5),
        unit: Some("ms".into()),
    });
    let v2 = to_v2(&e);
    assert_eq!(v2.source_id, "deployment/job");
    assert_eq!(v2.instance_id, "7");
    assert_eq!(v2.tags["instance_id"], "7");
}

#[test]
fn http_start_stop_is_a_timer_with_uuids_as_go_loggregator_writes_them() {
    let mut e = envelope(EventType::HttpStartStop);
    e.http_start_stop = Some(events::HttpStartStop {
        start_timestamp: Some(99),
        stop_timestamp: Some(100),
        request_id: Some(events::Uuid {
            low: Some(0xbe4484acc4614f95),
            high: Some(0x41fb1731facd1792),
        }),
        peer_type: Some(events::PeerType::Server as i32),
        method: Some(events::Method::BaselineControl as i32),
        uri: Some("/hello".into()),
        remote_address: Some("10.1.1.0".into()),
        user_agent: Some("curl".into()),
        status_code: Some(200),
        content_length: Some(1000),
        application_id: Some(events::Uuid {
            low: Some(0x6d47cd09695d01b3),
            high: Some(0xb75a4d822dadceaa),
        }),
        instance_index: Some(10),
        instance_id: Some("routing-id".into()),
        forwarded: vec!["a".into(), "b".into()],
    });
    check(&e).unwrap();
    let v2 = to_v2(&e);
    assert_eq!(v2.source_id, "b3015d69-09cd-476d-aace-ad2d824d5ab7");
    assert_eq!(v2.instance_id, "10");
    assert_eq!(
        v2.tags["request_id"],
        "954f61c4-ac84-44be-9217-cdfa3117fb41"
    );
    assert_eq!(v2.tags["peer_type"], "Server");
    assert_eq!(v2.tags["method"], "BASELINE_CONTROL");
    assert_eq!(v2.tags["status_code"], "200");
    assert_eq!(v2.tags["content_length"], "1000");
    assert_eq!(v2.tags["routing_instance_id"], "routing-id");
    assert_eq!(v2.tags["forwarded"], "a\nb");
    assert_eq!(
        v2.message,
        Some(Message::Timer(v2::Timer {
            name: "http".into(),
            start: 99,
            stop: 100
        }))
    );
    assert_eq!(uuid_string(None), "00000000-0000-0000-0000-000000000000");
}

#[test]
fn errors_become_logs_with_source_and_code() {
    let mut e = envelope(EventType::Error);
    e.error = Some(events::Error {
        source: Some("src".into()),
        code: Some(-1),
        message: Some("boom".into()),
    });
    let v2 = to_v2(&e);
    assert_eq!(
        (v2.tags["source"].as_str(), v2.tags["code"].as_str()),
        ("src", "-1")
    );
    let Some(Message::Log(l)) = &v2.message else {
        panic!()
    };
    assert_eq!((&l.payload[..], l.r#type), (&b"boom"[..], 0));
}

#[test]
fn what_go_refuses_is_refused_by_name() {
    assert!(matches!(decode(b"\xff\xff\xff"), Err(Invalid::Decode(_))));
    let mut no_origin = hand_encoded_log();
    no_origin.drain(..2 + "legacy-emitter".len());
    assert_eq!(decode(&no_origin), Err(Invalid::Missing("origin")));
    let mut e = envelope(EventType::LogMessage);
    assert_eq!(check(&e), Err(Invalid::Missing("logMessage")));
    e.log_message = Some(events::LogMessage {
        message: Some(b"x".to_vec()),
        message_type: Some(3),
        timestamp: Some(1),
        ..Default::default()
    });
    assert_eq!(
        check(&e),
        Err(Invalid::Enum {
            field: "logMessage.message_type",
            value: 3
        })
    );
    e.event_type = Some(2);
    assert_eq!(
        check(&e),
        Err(Invalid::Enum {
            field: "eventType",
            value: 2
        })
    );
    let mut e = envelope(EventType::CounterEvent);
    e.counter_event = Some(events::CounterEvent {
        name: Some("c".into()),
        delta: None,
        total: None,
    });
    assert_eq!(check(&e), Err(Invalid::Missing("counterEvent.delta")));
}
