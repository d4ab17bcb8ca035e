//! `RawEnvelope::parse` must accept exactly what prost accepts and extract the same facts.

use bytes::Bytes;
use prost::Message;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::envelope;
use crate::v2::{self, Envelope};

fn samples() -> Vec<Envelope> {
    let mut log = envelope::log("app-1", "hello", true);
    log.instance_id = "3".into();
    log.tags.insert("source_type".into(), "APP/PROC/WEB".into());
    log.deprecated_tags.insert(
        "job".into(),
        v2::Value {
            data: Some(v2::value::Data::Integer(7)),
        },
    );
    let mut plain_log = envelope::log("app-1", "hello", false);
    plain_log
        .tags
        .insert("source_type".into(), "APP/PROC/WEB".into());
    let mut tagged_gauge = envelope::gauge("app-3", [("cpu", 1.5, "percentage")]);
    tagged_gauge.instance_id = "2".into();
    tagged_gauge.tags.insert("origin".into(), "rep".into());
    tagged_gauge.tags.insert("ip".into(), "10.0.1.23".into());
    let mut counter = envelope::counter("doppler", "ingress", 5);
    counter.tags.insert("x".into(), "y".into());
    vec![
        log,
        counter,
        envelope::gauge(
            "app-2",
            [("cpu", 12.5, "percentage"), ("memory", 1e6, "bytes")],
        ),
        envelope::timer("gorouter", "http", 10, 20),
        envelope::event("cell", "crashed", "exit 1"),
        Envelope::default(),
        plain_log,
        tagged_gauge,
    ]
}

#[test]
fn extracts_routing_facts() {
    let envs = samples();
    let raw: Vec<RawEnvelope> = envs.iter().map(RawEnvelope::from_envelope).collect();
    assert_eq!(raw[0].kind(), Kind::Log);
    assert_eq!(raw[0].tag("source_type"), Some("APP/PROC/WEB"));
    assert_eq!(
        raw[0].tag("job"),
        None,
        "deprecated tags are not preferred tags"
    );
    assert_eq!(raw[1].tag("x"), Some("y"));
    assert_eq!(raw[0].source_id(), "app-1");
    assert!(raw[0].has_deprecated_tags());
    assert_eq!((raw[1].kind(), raw[1].name()), (Kind::Counter, "ingress"));
    assert_eq!(raw[2].kind(), Kind::Gauge);
    let mut names: Vec<&str> = raw[2].gauge_names().collect();
    names.sort();
    assert_eq!(names, ["cpu", "memory"]);
    let mut metrics: Vec<(&[u8], f64)> = raw[2].gauge_metrics().collect();
    metrics.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(metrics, [(&b"cpu"[..], 12.5), (&b"memory"[..], 1e6)]);
    assert_eq!(raw[0].instance_id(), "3");
    assert_eq!(raw[1].instance_id(), "");
    assert_eq!((raw[3].kind(), raw[3].name()), (Kind::Timer, "http"));
    assert_eq!(raw[4].kind(), Kind::Event);
    assert_eq!((raw[5].kind(), raw[5].source_id()), (Kind::None, ""));
    for (r, e) in raw.iter().zip(&envs) {
        assert_eq!(&r.decode(), e);
        assert_eq!(r.timestamp(), e.timestamp);
    }
}

#[test]
fn batch_round_trips_through_prost() {
    let envs = samples();
    let raw = RawBatch::from(
        envs.iter()
            .map(RawEnvelope::from_envelope)
            .collect::<Vec<_>>(),
    );
    let bytes = raw.encode_to_vec();
    assert_eq!(bytes.len(), raw.encoded_len());
    let decoded = v2::EnvelopeBatch::decode(&bytes[..]).unwrap();
    assert_eq!(decoded.batch, envs);
    let again = RawBatch::decode(Bytes::from(
        v2::EnvelopeBatch { batch: envs }.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(again, raw);
}

#[test]
fn invalid_utf8_source_id_is_named() {
    // field 2 (source_id), length 2, bytes 0xff 0xfe
    let err = RawEnvelope::parse(Bytes::from_static(&[0x12, 2, 0xff, 0xfe])).unwrap_err();
    assert_eq!(err, InvalidEnvelope::InvalidUtf8 { field: "source_id" });
    assert!(Envelope::decode(&[0x12u8, 2, 0xff, 0xfe][..]).is_err());
}

#[test]
fn later_oneof_member_wins_as_in_prost() {
    let mut bytes = envelope::counter("s", "c", 1).encode_to_vec();
    bytes.extend(envelope::event("s", "t", "b").encode_to_vec());
    let raw = RawEnvelope::parse(Bytes::from(bytes.clone())).unwrap();
    let full = Envelope::decode(&bytes[..]).unwrap();
    assert_eq!(raw.kind(), Kind::Event);
    assert_eq!(raw.name(), "");
    assert_eq!(envelope::kind_name(&full), "event");
}

#[test]
fn a_gauge_given_twice_is_merged_as_in_prost() {
    let cpu = envelope::gauge("s", [("cpu", 1.0, "%")]).encode_to_vec();
    let mem = envelope::gauge("s", [("mem", 2.0, "B")]).encode_to_vec();
    let counter = envelope::counter("s", "c", 1).encode_to_vec();
    for (parts, want) in [
        (vec![&cpu, &mem], vec!["cpu", "mem"]),
        (vec![&cpu, &counter, &mem], vec!["mem"]),
        (vec![&counter, &cpu, &mem, &cpu], vec!["cpu", "mem", "cpu"]),
    ] {
        let bytes: Vec<u8> = parts.into_iter().flatten().copied().collect();
        let raw = RawEnvelope::parse(Bytes::from(bytes.clone())).unwrap();
        let full = Envelope::decode(&bytes[..]).unwrap();
        assert_eq!(raw.gauge_names().collect::<Vec<_>>(), want);
        let Some(v2::envelope::Message::Gauge(g)) = full.message else {
            panic!("a gauge")
        };
        let mut keys: Vec<&str> = g.metrics.keys().map(String::as_str).collect();
        keys.sort();
        let mut names = want.clone();
        names.sort();
        names.dedup();
        assert_eq!(keys, names);
    }
}

/// Random corruptions of valid envelopes. Whatever `parse` accepts, prost accepts too, with
/// the same facts; whatever prost accepts in canonical form, `parse` accepts. (`parse` may be
/// stricter than prost on non-canonical input: prost ignores the wire type of map fields.)
/// Bounded: 20,000 cases, fixed seed.
#[test]
fn agrees_with_prost_on_corrupted_input() {
    let mut rng = StdRng::seed_from_u64(0x4879_6472);
    let seeds: Vec<Vec<u8>> = samples().iter().map(|e| e.encode_to_vec()).collect();
    let (mut accepted, mut quick) = (0, 0);
    for _ in 0..20_000 {
        let mut bytes = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..4) {
            if bytes.is_empty() {
                break;
            }
            let i = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[i] = rng.random(),
                1 => bytes.truncate(i),
                _ => bytes.insert(i, rng.random()),
            }
        }
        let prost = Envelope::decode(&bytes[..]);
        let raw = RawEnvelope::parse(Bytes::from(bytes.clone()));
        // The quick pass accepts only what the precise one does, with the same facts.
        let precise = RawEnvelope::parse_precise(Bytes::from(bytes.clone()));
        assert_eq!(raw, precise, "{bytes:?}");
        if let Some(env) = scan::quick(&bytes) {
            quick += 1;
            assert_eq!(
                Ok(RawEnvelope {
                    bytes: Bytes::from(bytes.clone()),
                    ..env
                }),
                precise
            );
        }
        match (&prost, &raw) {
            (Ok(p), Ok(r)) => {
                accepted += 1;
                assert_eq!(r.source_id(), p.source_id, "{bytes:?}");
                assert_eq!(r.timestamp(), p.timestamp);
                assert_eq!(envelope::kind_name(p), kind_label(r.kind()), "{bytes:?}");
                assert_eq!(
                    r.has_deprecated_tags(),
                    !p.deprecated_tags.is_empty(),
                    "{bytes:?}"
                );
                if let Some(v2::envelope::Message::Counter(c)) = &p.message {
                    assert_eq!(r.name(), c.name);
                }
                assert_eq!(r.instance_id(), p.instance_id, "{bytes:?}");
                // Read in wire order with the last of a repeated key winning, the raw
                // tags and gauge metrics are what prost decodes.
                let tags: std::collections::HashMap<String, String> =
                    r.tag_bytes().map(|(k, v)| (utf8(k), utf8(v))).collect();
                assert_eq!(tags, p.tags, "{bytes:?}");
                if let Some(v2::envelope::Message::Gauge(g)) = &p.message {
                    let mut a: Vec<&str> = r.gauge_names().collect();
                    a.sort();
                    a.dedup();
                    let mut b: Vec<&str> = g.metrics.keys().map(String::as_str).collect();
                    b.sort();
                    assert_eq!(a, b, "{bytes:?}");
                    let metrics: std::collections::HashMap<String, u64> = r
                        .gauge_metrics()
                        .map(|(k, v)| (utf8(k), v.to_bits()))
                        .collect();
                    let want = g
                        .metrics
                        .iter()
                        .map(|(k, v)| (k.clone(), v.value.to_bits()))
                        .collect();
                    assert_eq!(metrics, want, "{bytes:?}");
                }
            }
            (Err(_), Err(_)) => {}
            (Ok(p), Err(_)) if p.encode_to_vec() != bytes => {}
            _ => panic!("disagree on {bytes:?}: prost {prost:?} raw {raw:?}"),
        }
    }
    assert!(
        accepted > 1000,
        "the corpus should keep many valid envelopes, got {accepted}"
    );
    assert!(
        quick > 1000,
        "the quick pass should read many, read {quick}"
    );
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("parse checked UTF-8")
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::None => "none",
        Kind::Log => "log",
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Timer => "timer",
        Kind::Event => "event",
    }
}

#[test]
fn default_tags_are_appended_without_overriding() {
    let mut e = envelope::log("app", "x", false);
    e.tags.insert("deployment".into(), "mine".into());
    let raw = RawEnvelope::from_envelope(&e);
    let tagged = raw.with_default_tags([("deployment", "cf"), ("job", "cell"), ("ip", "10.0.0.1")]);
    let full = tagged.decode();
    assert_eq!(full.tags["deployment"], "mine");
    assert_eq!(full.tags["job"], "cell");
    assert_eq!(full.tags["ip"], "10.0.0.1");
    assert_eq!((tagged.kind(), tagged.source_id()), (Kind::Log, "app"));
    assert_eq!(
        RawEnvelope::parse(tagged.bytes().clone()).unwrap(),
        tagged,
        "still valid and identical facts"
    );
    let same = raw.with_default_tags([("deployment", "cf")]);
    assert_eq!(same.bytes(), raw.bytes(), "nothing to add, nothing copied");
}
