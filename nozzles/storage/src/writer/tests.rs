//! The fast path must name every series and sample exactly as decoding the envelope does,
//! and leave to the decoder what it cannot read the same way.

use bytes::Bytes;
use hydrant_proto::envelope;
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::v2;
use prost::Message;

use super::*;

fn gauge(source: &str, instance: &str, metrics: &[(&str, f64)]) -> v2::Envelope {
    let mut e = envelope::gauge(source, metrics.iter().map(|&(n, v)| (n, v, "bytes")));
    e.instance_id = instance.into();
    e.timestamp = 1_700_000_000_123_456_789;
    e
}

/// What the fast path made of one envelope: (series, time, value), sorted.
fn fast(env: &RawEnvelope) -> Option<Vec<(SeriesKey, i64, u64)>> {
    let mut group = Group::default();
    if !group.gauge(env, &SeriesCache::default(), &mut Scratch::default()) {
        return None;
    }
    let mut out: Vec<_> = group
        .pending
        .iter()
        .map(|&(i, ts, v)| (group.keys[i].clone(), ts, v.to_bits()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Some(out)
}

/// What decoding makes of it.
fn decoded(env: &RawEnvelope) -> Vec<(SeriesKey, i64, u64)> {
    let mut points = Vec::new();
    model::map(&env.decode(), &mut points);
    let mut out: Vec<_> = points
        .into_iter()
        .map(|p| (p.key, p.ts, p.value.to_bits()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn gauges_are_named_as_decoding_names_them() {
    let mut cases = vec![
        gauge("app", "0", &[("cpu", 12.5)]),
        gauge(
            "app",
            "3",
            &[("cpu", 1.0), ("memory.rss", 2.0), ("9disk", f64::NAN)],
        ),
        gauge("app", "", &[("cpu", -0.0)]),
        gauge("ünïcode", "1", &[("x", f64::INFINITY)]),
    ];
    let mut tagged = gauge("web", "2", &[("cpu", 3.0), ("memory", 4.0)]);
    for (k, v) in [
        ("app-name", "shop"),
        ("source_id", "spoofed"),
        ("instance_id", "9"),
        ("__name__", "evil"),
        ("zone", "Zürich"),
        ("", "empty key"),
    ] {
        tagged.tags.insert(k.into(), v.into());
    }
    cases.push(tagged);
    let mut no_instance = gauge("web", "", &[("cpu", 5.0)]);
    no_instance
        .tags
        .insert("instance_id".into(), "from a tag".into());
    cases.push(no_instance);
    for env in &cases {
        let raw = RawEnvelope::from_envelope(env);
        assert_eq!(fast(&raw), Some(decoded(&raw)), "{env:?}");
    }
}

#[test]
fn the_tags_order_on_the_wire_does_not_matter() {
    let bare = RawEnvelope::from_envelope(&gauge("app", "0", &[("cpu", 1.0)]));
    let ab = bare.with_default_tags([("a", "1"), ("b", "2")]);
    let ba = bare.with_default_tags([("b", "2"), ("a", "1")]);
    let mut group = Group::default();
    let mut scratch = Scratch::default();
    assert!(group.gauge(&ab, &SeriesCache::default(), &mut scratch));
    assert!(group.gauge(&ba, &SeriesCache::default(), &mut scratch));
    assert_eq!(group.keys.len(), 1, "one series");
    assert_eq!(group.pending.len(), 2, "two samples of it");
}

#[test]
fn fields_never_run_into_each_other() {
    // The same bytes split differently between tag key and value, or between source and
    // instance id, are different series.
    let bare = gauge("ab", "c", &[("m", 1.0)]);
    let other = gauge("a", "bc", &[("m", 1.0)]);
    let raw: Vec<RawEnvelope> = [&bare, &other]
        .into_iter()
        .map(RawEnvelope::from_envelope)
        .chain([
            RawEnvelope::from_envelope(&bare).with_default_tags([("kk", "v")]),
            RawEnvelope::from_envelope(&bare).with_default_tags([("k", "kv")]),
        ])
        .collect();
    let mut group = Group::default();
    let mut scratch = Scratch::default();
    for r in &raw {
        assert!(group.gauge(r, &SeriesCache::default(), &mut scratch));
    }
    assert_eq!(group.keys.len(), 4);
}

#[test]
fn what_it_cannot_read_the_same_way_is_decoded() {
    let mut deprecated = gauge("app", "0", &[("cpu", 1.0)]);
    deprecated.deprecated_tags.insert(
        "job".into(),
        v2::Value {
            data: Some(v2::value::Data::Text("x".into())),
        },
    );
    // A repeated tag key and a repeated metric name: protobuf maps keep the last entry.
    let tagged = gauge("app", "0", &[("cpu", 1.0)]);
    let mut bytes = tagged.encode_to_vec();
    for v in ["first", "last"] {
        let mut e = v2::Envelope::default();
        e.tags.insert("zone".into(), v.into());
        bytes.extend(e.encode_to_vec());
    }
    let repeated_tag = RawEnvelope::parse(Bytes::from(bytes)).unwrap();
    let mut bytes = gauge("app", "0", &[("cpu", 1.0)]).encode_to_vec();
    bytes.extend(gauge("app", "0", &[("cpu", 2.0)]).encode_to_vec());
    let repeated_metric = RawEnvelope::parse(Bytes::from(bytes)).unwrap();
    assert_eq!(decoded(&repeated_metric)[0].2, 2.0f64.to_bits());
    for raw in [
        RawEnvelope::from_envelope(&deprecated),
        repeated_tag,
        repeated_metric,
        RawEnvelope::from_envelope(&envelope::log("app", "line", false)),
        RawEnvelope::from_envelope(&envelope::counter("app", "hits", 1)),
        RawEnvelope::from_envelope(&envelope::timer("app", "http", 1, 2)),
        RawEnvelope::from_envelope(&envelope::event("app", "t", "b")),
    ] {
        assert_eq!(fast(&raw), None, "{:?}", raw.decode());
    }
}

#[test]
fn cached_series_resolve_to_their_ids() {
    let raw = RawEnvelope::from_envelope(&gauge("app", "0", &[("cpu", 1.0), ("mem", 2.0)]));
    let mut group = Group::default();
    let mut scratch = Scratch::default();
    assert!(group.gauge(&raw, &SeriesCache::default(), &mut scratch));
    let mut cache = SeriesCache::default();
    for (identity, i) in group.new {
        let id = if group.keys[i].name == "cpu" { 10 } else { 11 };
        cache.learn(identity, id);
    }
    assert_eq!(cache.len(), 2);
    let mut again = Group::default();
    assert!(again.gauge(&raw, &cache, &mut scratch));
    assert!(again.keys.is_empty() && again.pending.is_empty());
    let mut known = again.known.clone();
    known.sort_by_key(|k| k.0);
    let ts = 1_700_000_000_123;
    assert_eq!(known, [(10, ts, 1.0), (11, ts, 2.0)]);
}

#[test]
fn a_flood_of_new_series_cannot_grow_the_cache_past_its_bound() {
    let mut cache = SeriesCache::with_max(100);
    for i in 0..1_000u64 {
        cache.learn(i.to_le_bytes().to_vec().into_boxed_slice(), i);
        assert!(cache.len() <= 100, "{} identities", cache.len());
    }
    // It started over, and what it learnt since still resolves.
    let last = 999u64.to_le_bytes();
    assert_eq!(cache.ids.get(&last[..]), Some(&999));
}
