//! The expected lines are Loggregator's own (`egress/syslog/rfc5424_test.go`).

use std::collections::HashMap;

use hydrant_proto::v2::{self, Envelope, envelope::Message};

use super::*;

fn opts(host: &str) -> Options {
    Options {
        hostname: host.into(),
        omit_tags: false,
    }
}

fn log(err: bool) -> Envelope {
    Envelope {
        timestamp: 12_345_000,
        source_id: "test-app-id".into(),
        instance_id: "2".into(),
        tags: HashMap::from([("source_type".to_owned(), "MY TASK".to_owned())]),
        message: Some(Message::Log(v2::Log {
            payload: b"just a test".to_vec().into(),
            r#type: i32::from(err),
        })),
        ..Default::default()
    }
}

fn metric(message: Message) -> Envelope {
    Envelope {
        timestamp: 12_345_000,
        source_id: "test-app-id".into(),
        instance_id: "1".into(),
        message: Some(message),
        ..Default::default()
    }
}

fn text(env: &Envelope, o: &Options) -> Vec<String> {
    messages(env, o)
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect()
}

#[test]
fn logs_are_written_as_loggregator_writes_them() {
    assert_eq!(
        text(&log(false), &opts("test-hostname")),
        [
            "<14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [MY-TASK/2] - [tags@47450 source_type=\"MY TASK\"] just a test\n"
        ]
    );
    assert_eq!(
        text(&log(true), &opts("test-hostname")),
        [
            "<11>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [MY-TASK/2] - [tags@47450 source_type=\"MY TASK\"] just a test\n"
        ]
    );
    let mut e = log(true);
    e.tags.insert("log-tag".into(), r#""]\"#.into());
    assert_eq!(
        text(&e, &opts("test-hostname")),
        [r#"<11>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [MY-TASK/2] - [tags@47450 log-tag="\"\]\\" source_type="MY TASK"] just a test"#.to_owned() + "\n"]
    );
    let omit = Options {
        omit_tags: true,
        ..opts("test-hostname")
    };
    assert_eq!(
        text(&log(true), &omit),
        [
            "<11>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [MY-TASK/2] - - just a test\n"
        ]
    );
}

#[test]
fn hostnames_come_from_org_space_and_app_sanitized() {
    let mut e = log(true);
    e.tags.insert("organization_name".into(), "some_org".into());
    e.tags.insert("space_name".into(), "some space".into());
    e.tags.insert("app_name".into(), "some_app--".into());
    assert_eq!(
        text(&e, &opts("test-hostname")),
        [r#"<11>1 1970-01-01T00:00:00.012345+00:00 someorg.some-space.someapp test-app-id [MY-TASK/2] - [tags@47450 app_name="some_app--" organization_name="some_org" source_type="MY TASK" space_name="some space"] just a test"#.to_owned() + "\n"]
    );
    let mut e = log(false);
    e.tags.insert("app_name".into(), "only-an-app".into());
    assert_eq!(
        text(&e, &opts("bound-name"))[0].split(' ').nth(2).unwrap(),
        "bound-name"
    );
    let mut e = log(false);
    for (k, c) in [
        ("organization_name", 'a'),
        ("space_name", 'b'),
        ("app_name", 'c'),
    ] {
        e.tags.insert(k.into(), c.to_string().repeat(100));
    }
    let line = &text(&e, &opts("h"))[0];
    let host = line.split(' ').nth(2).unwrap();
    assert_eq!(
        host,
        format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63))
    );
}

#[test]
fn fields_are_cut_to_their_rfc_lengths() {
    let line = &text(&log(false), &opts(&"A".repeat(300)))[0];
    assert_eq!(line.split(' ').nth(2).unwrap(), "A".repeat(255));
    let mut e = log(false);
    e.source_id = "A".repeat(300);
    assert_eq!(
        text(&e, &opts("host"))[0].split(' ').nth(3).unwrap(),
        "A".repeat(48)
    );
    let mut e = log(false);
    e.instance_id = "A".repeat(300);
    assert_eq!(
        text(&e, &opts("host"))[0].split(' ').nth(4).unwrap(),
        format!("[MY-TASK/{}]", "A".repeat(118))
    );
    let mut e = log(true);
    e.tags
        .insert("source_type".into(), "TASK/こんにちは".into());
    assert!(text(&e, &opts("h"))[0].contains(" [TASK//2] - "));
}

#[test]
fn payloads_lose_nuls_and_end_in_one_newline() {
    let mut e = log(false);
    if let Some(Message::Log(l)) = &mut e.message {
        l.payload = b"a\0b\n".to_vec().into();
    }
    assert!(text(&e, &opts("h"))[0].ends_with("] ab\n"));
}

#[test]
fn metrics_are_structured_data_with_an_empty_message() {
    let gauge = metric(Message::Gauge(v2::Gauge {
        metrics: HashMap::from([
            (
                "memory".to_owned(),
                v2::GaugeValue {
                    unit: "bytes".into(),
                    value: 5423.0,
                },
            ),
            (
                "cpu".to_owned(),
                v2::GaugeValue {
                    unit: "percentage".into(),
                    value: 0.23,
                },
            ),
        ]),
    }));
    assert_eq!(
        text(&gauge, &opts("test-hostname")),
        [
            "<14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [1] - [gauge@47450 name=\"cpu\" value=\"0.23\" unit=\"percentage\"] \n",
            "<14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [1] - [gauge@47450 name=\"memory\" value=\"5423\" unit=\"bytes\"] \n",
        ]
    );
    let mut counter = metric(Message::Counter(v2::Counter {
        name: "some-counter".into(),
        delta: 1,
        total: 99,
    }));
    counter.tags.insert("metric-tag".into(), "scallop".into());
    assert_eq!(
        text(&counter, &opts("test-hostname")),
        [r#"<14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [1] - [counter@47450 name="some-counter" total="99" delta="1"][tags@47450 metric-tag="scallop"] "#.to_owned() + "\n"]
    );
    let timer = metric(Message::Timer(v2::Timer {
        name: "http".into(),
        start: 10,
        stop: 20,
    }));
    assert_eq!(
        text(&timer, &opts("test-hostname")),
        [r#"<14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [1] - [timer@47450 name="http" start="10" stop="20"] "#.to_owned() + "\n"]
    );
    let event = metric(Message::Event(v2::Event {
        title: "event-title".into(),
        body: "event-body".into(),
    }));
    assert_eq!(
        text(&event, &opts("test-hostname")),
        [r#"<14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [1] - [event@47450 title="event-title" body="event-body"] "#.to_owned() + "\n"]
    );
}

#[test]
fn tag_names_syslog_cannot_carry_are_left_out_not_the_line() {
    let mut e = log(false);
    e.tags.insert("bad name".into(), "x".into());
    e.tags.insert("a=b".into(), "x".into());
    assert_eq!(
        text(&e, &opts("h")),
        [
            "<14>1 1970-01-01T00:00:00.012345+00:00 h test-app-id [MY-TASK/2] - [tags@47450 source_type=\"MY TASK\"] just a test\n"
        ]
    );
}

#[test]
fn floats_and_times_are_formatted_as_go_does() {
    for (v, s) in [
        (0.23, "0.23"),
        (1234.0, "1234"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-07"),
        (0.0001, "0.0001"),
        (-2.5, "-2.5"),
        (123_456_789.0, "1.23456789e+08"),
        (1e6, "1e+06"),
        (999_999.0, "999999"),
        (52_428_800.0, "5.24288e+07"),
        (0.0, "0"),
    ] {
        assert_eq!(format_float(v), s, "{v}");
    }
    assert_eq!(timestamp_text(0), "1970-01-01T00:00:00+00:00");
    assert_eq!(timestamp_text(1_500_000), "1970-01-01T00:00:00.0015+00:00");
    assert_eq!(
        timestamp_text(1_700_000_000_123_456_789),
        "2023-11-14T22:13:20.123456+00:00"
    );
}
