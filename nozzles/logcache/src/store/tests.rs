//! Store semantics: ordering, read parameters, eviction and memory accounting.

use hydrant_proto::envelope;
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::v2::envelope::Message;

use super::*;

fn log_at(source: &str, ts: i64, text: &str) -> RawEnvelope {
    let mut e = envelope::log(source, text.to_owned(), false);
    e.timestamp = ts;
    e.instance_id = "0".into();
    e.tags.insert("source_type".into(), "APP/PROC/WEB".into());
    e.tags
        .insert("app_name".into(), format!("name-of-{source}"));
    RawEnvelope::from_envelope(&e)
}

fn q(start: i64, end: i64, limit: usize, descending: bool) -> Query {
    Query {
        start,
        end,
        kinds: Kinds::ALL,
        limit,
        descending,
        name_filter: None,
    }
}

fn texts(found: Vec<Found>) -> Vec<String> {
    found
        .into_iter()
        .map(|f| match f.into_envelope().message {
            Some(Message::Log(l)) => String::from_utf8(l.payload.to_vec()).unwrap(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn big() -> Limits {
    Limits {
        max_per_source: 100_000,
        memory_bytes: usize::MAX / 2,
    }
}

#[test]
fn keeps_timestamp_order_and_reads_ranges_both_ways() {
    let mut s = Store::new(big());
    let batch: Vec<_> = [(10, "a"), (30, "c"), (20, "b"), (40, "d"), (5, "z")]
        .iter()
        .map(|(t, x)| log_at("s", *t, x))
        .collect();
    s.insert_all(&batch);
    assert_eq!(
        texts(s.read("s", &q(0, i64::MAX, 100, false))),
        ["z", "a", "b", "c", "d"]
    );
    assert_eq!(
        texts(s.read("s", &q(10, 40, 100, false))),
        ["a", "b", "c"],
        "[start, end)"
    );
    assert_eq!(
        texts(s.read("s", &q(0, i64::MAX, 2, true))),
        ["d", "c"],
        "newest first, limited"
    );
    assert!(s.read("other", &q(0, i64::MAX, 10, false)).is_empty());
    let full = s
        .read("s", &q(0, i64::MAX, 1, false))
        .remove(0)
        .into_envelope();
    assert_eq!(
        (
            full.source_id.as_str(),
            full.instance_id.as_str(),
            full.timestamp
        ),
        ("s", "0", 5)
    );
    assert_eq!(full.tags["source_type"], "APP/PROC/WEB");
    assert_eq!(s.app_name("s"), Some("name-of-s"));
    assert_eq!(s.sources_named("name-of-s"), ["s"]);
}

#[test]
fn filters_kinds_and_names() {
    let mut s = Store::new(big());
    let mut batch = vec![log_at("s", 1, "line")];
    for (i, e) in [
        envelope::counter("s", "requests", 1),
        envelope::counter("s", "errors", 1),
        envelope::gauge("s", [("cpu", 1.0, "%"), ("memory", 2.0, "B")]),
        envelope::timer("s", "http", 1, 2),
        envelope::event("s", "t", "b"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = e;
        e.timestamp = 2 + i as i64;
        batch.push(RawEnvelope::from_envelope(&e));
    }
    s.insert_all(&batch);
    let mut query = q(0, i64::MAX, 100, false);
    query.kinds = Kinds::none().with(Kind::Counter).with(Kind::Timer);
    assert_eq!(s.read("s", &query).len(), 3);
    query.kinds = Kinds::ALL;
    query.name_filter = Some(regex::Regex::new("^(requests|cpu)$").unwrap());
    let got: Vec<Envelope> = s
        .read("s", &query)
        .into_iter()
        .map(Found::into_envelope)
        .collect();
    assert_eq!(
        got.len(),
        2,
        "logs and events are excluded by a name filter: {got:?}"
    );
    match &got[1].message {
        Some(Message::Gauge(g)) => assert_eq!(
            g.metrics.keys().collect::<Vec<_>>(),
            ["cpu"],
            "gauge reduced"
        ),
        other => panic!("{other:?}"),
    }
    query.limit = 1;
    assert_eq!(s.read("s", &query).len(), 1);
}

#[test]
fn per_source_cap_evicts_that_sources_oldest() {
    let mut s = Store::new(Limits {
        max_per_source: 3,
        memory_bytes: usize::MAX / 2,
    });
    let batch: Vec<_> = (0..5).map(|i| log_at("s", i, &i.to_string())).collect();
    s.insert_all(&batch);
    s.insert_all(&[log_at("quiet", 0, "q")]);
    assert_eq!(
        texts(s.read("s", &q(0, i64::MAX, 100, false))),
        ["2", "3", "4"]
    );
    let meta = s.meta(|_, _| true);
    assert_eq!(
        meta[1],
        (
            "s".to_owned(),
            Meta {
                count: 3,
                expired: 2,
                oldest_timestamp: 2,
                newest_timestamp: 4
            }
        )
    );
    assert_eq!(meta[0].1.count, 1);
    assert_eq!(s.stats.evicted_per_source, 2);
}

#[test]
fn memory_budget_makes_the_noisy_source_pay() {
    let limits = Limits {
        max_per_source: 1_000_000,
        memory_bytes: 2_000_000,
    };
    let mut s = Store::new(limits);
    // Three quiet sources with a little old history.
    for q in ["q1", "q2", "q3"] {
        let batch: Vec<_> = (0..100).map(|i| log_at(q, i, "quiet line")).collect();
        s.insert_all(&batch);
    }
    // A noisy source floods with newer data, far past the budget.
    for chunk in 0..100 {
        let batch: Vec<_> = (0..1000)
            .map(|i| log_at("noisy", 1_000 + chunk * 1000 + i, &"x".repeat(100)))
            .collect();
        s.insert_all(&batch);
        assert!(
            s.bytes() <= limits.memory_bytes,
            "budget holds: {}",
            s.bytes()
        );
    }
    for q in ["q1", "q2", "q3"] {
        assert_eq!(s.read(q, &q_all()).len(), 100, "{q} kept its history");
    }
    assert!(s.stats.evicted_memory > 50_000);
    let noisy = s.read("noisy", &q_all());
    assert_eq!(
        noisy.last().unwrap().clone().into_envelope().timestamp,
        1_000 + 99_999,
        "the newest survive"
    );
}

fn q_all() -> Query {
    q(0, i64::MAX, usize::MAX, false)
}

#[test]
fn memory_per_envelope_is_payload_plus_a_small_constant() {
    let mut s = Store::new(big());
    let n = 10_000;
    let batch: Vec<_> = (0..n).map(|i| log_at("s", i, &"p".repeat(200))).collect();
    s.insert_all(&batch);
    let per = s.bytes() as f64 / n as f64;
    assert!(
        per <= 200.0 * 1.5 + 64.0,
        "{per} bytes per 200-byte payload"
    );
    assert!(
        per >= 200.0,
        "accounting covers at least the payload: {per}"
    );
}

#[test]
fn envelopes_with_fields_in_any_order_read_back_whole() {
    use prost::Message as _;
    let mut full = envelope::log("s", "payload", true);
    full.timestamp = 77;
    full.instance_id = "3".into();
    full.tags.insert("k".into(), "v".into());
    // Message first, then timestamp, then the header fields: nothing is contiguous.
    let message_only = Envelope {
        message: full.message.clone(),
        ..Default::default()
    };
    let ts_only = Envelope {
        timestamp: 77,
        ..Default::default()
    };
    let header_only = Envelope {
        message: None,
        timestamp: 0,
        ..full.clone()
    };
    let source_only = Envelope {
        source_id: "s".into(),
        ..Default::default()
    };
    let mut bytes = message_only.encode_to_vec();
    bytes.extend(source_only.encode_to_vec());
    bytes.extend(ts_only.encode_to_vec());
    bytes.extend(header_only.encode_to_vec());
    let raw = RawEnvelope::parse(bytes.into()).unwrap();
    let mut s = Store::new(big());
    s.insert_all([&raw]);
    let got = s
        .read("s", &q(0, i64::MAX, 10, false))
        .remove(0)
        .into_envelope();
    assert_eq!(got, full);
}
