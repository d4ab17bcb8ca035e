//! Fan-out semantics, table-driven on the pure router.

use hydrant_proto::envelope;
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v2::{self, EgressBatchRequest};

use super::*;

fn spec(shard: &str, selectors: Vec<v2::Selector>) -> Spec {
    Spec::from_request(&request(shard, selectors)).unwrap()
}

fn raw(e: &v2::Envelope) -> RawEnvelope {
    RawEnvelope::from_envelope(e)
}

/// Routes `batch` and returns how many envelopes each subscription (by id) got.
fn counts(reg: &Registry, batch: &[RawEnvelope]) -> HashMap<SubId, usize> {
    let table = reg.table();
    let mut routed = Routed::default();
    table.route(batch, &mut routed);
    (0..table.len())
        .map(|i| (table.sub_at(i), routed.out[i].len()))
        .collect()
}

fn logs(source: &str, n: usize) -> Vec<RawEnvelope> {
    (0..n)
        .map(|i| raw(&envelope::log(source, format!("line {i}"), false)))
        .collect()
}

#[test]
fn empty_selectors_are_refused() {
    assert_eq!(
        Spec::from_request(&EgressBatchRequest::default()),
        Err(Error::NoSelectors)
    );
    let no_message = request(
        "",
        vec![v2::Selector {
            source_id: "x".into(),
            message: None,
        }],
    );
    assert_eq!(Spec::from_request(&no_message), Err(Error::NoSelectors));
}

#[test]
fn legacy_selector_is_used_only_without_selectors() {
    let mut req = request("", vec![]);
    req.legacy_selector = Some(select::log("a"));
    assert_eq!(Spec::from_request(&req).unwrap().filters.len(), 1);
    req.selectors = vec![select::counter("", "c")];
    let spec = Spec::from_request(&req).unwrap();
    assert_eq!(spec.filters.len(), 1);
    assert_eq!(spec.filters[0].kind, Kind::Counter);
}

#[test]
fn empty_shard_id_broadcasts() {
    let mut reg = Registry::default();
    let a = reg.subscribe(spec("", vec![select::log("")]));
    let b = reg.subscribe(spec("", vec![select::log("")]));
    let c = counts(&reg, &logs("s", 10));
    assert_eq!((c[&a], c[&b]), (10, 10));
}

#[test]
fn shared_shard_id_splits_evenly_and_exactly() {
    let mut reg = Registry::default();
    let ids: Vec<SubId> = (0..3)
        .map(|_| reg.subscribe(spec("nozzle", vec![select::log("")])))
        .collect();
    let c = counts(&reg, &logs("s", 300));
    assert_eq!(ids.iter().map(|i| c[i]).sum::<usize>(), 300);
    for i in &ids {
        assert_eq!(c[i], 100, "rotation splits exactly");
    }
}

#[test]
fn different_shard_ids_each_get_everything() {
    let mut reg = Registry::default();
    let a1 = reg.subscribe(spec("a", vec![select::log("")]));
    let a2 = reg.subscribe(spec("a", vec![select::log("")]));
    let b = reg.subscribe(spec("b", vec![select::log("")]));
    let c = counts(&reg, &logs("s", 50));
    assert_eq!(c[&a1] + c[&a2], 50);
    assert_eq!(c[&b], 50);
}

#[test]
fn selectors_filter_by_source_and_type() {
    let mut reg = Registry::default();
    let only_a_logs = reg.subscribe(spec("", vec![select::log("a")]));
    let all_counters = reg.subscribe(spec("", vec![select::counter("", "")]));
    let named_counter = reg.subscribe(spec("", vec![select::counter("", "requests")]));
    let cpu_gauges = reg.subscribe(spec("", vec![select::gauge("", &["cpu"])]));
    let cpu_and_mem = reg.subscribe(spec("", vec![select::gauge("", &["memory", "cpu"])]));
    let timers_events = reg.subscribe(spec("", vec![select::timer(""), select::event("b")]));
    let batch = vec![
        raw(&envelope::log("a", "x", false)),
        raw(&envelope::log("b", "x", false)),
        raw(&envelope::counter("a", "requests", 1)),
        raw(&envelope::counter("a", "errors", 1)),
        raw(&envelope::gauge("a", [("cpu", 1.0, "%")])),
        raw(&envelope::gauge(
            "a",
            [("cpu", 1.0, "%"), ("memory", 2.0, "B")],
        )),
        raw(&envelope::timer("a", "http", 1, 2)),
        raw(&envelope::event("a", "t", "b")),
        raw(&envelope::event("b", "t", "b")),
    ];
    let c = counts(&reg, &batch);
    assert_eq!(c[&only_a_logs], 1);
    assert_eq!(c[&all_counters], 2);
    assert_eq!(c[&named_counter], 1);
    assert_eq!(c[&cpu_gauges], 2);
    assert_eq!(c[&cpu_and_mem], 1);
    assert_eq!(c[&timers_events], 2);
}

#[test]
fn overlapping_selectors_deliver_once() {
    let mut reg = Registry::default();
    let s = reg.subscribe(spec(
        "",
        vec![select::log(""), select::log("a"), select::log("")],
    ));
    let c = counts(&reg, &logs("a", 5));
    assert_eq!(c[&s], 5);
}

#[test]
fn deterministic_name_pins_each_counter_name_to_one_member() {
    let mut reg = Registry::default();
    let mut req = request("agg", vec![select::counter("", "")]);
    req.deterministic_name = "agg-0".into();
    let a = reg.subscribe(Spec::from_request(&req).unwrap());
    req.deterministic_name = "agg-1".into();
    let b = reg.subscribe(Spec::from_request(&req).unwrap());
    let names = ["requests", "errors", "bytes", "latency", "hits", "misses"];
    let table = reg.table();
    let mut owner: HashMap<String, SubId> = HashMap::new();
    for round in 0..5 {
        let batch: Vec<RawEnvelope> = names
            .iter()
            .map(|n| raw(&envelope::counter("s", *n, round + 1)))
            .collect();
        let mut routed = Routed::default();
        table.route(&batch, &mut routed);
        for i in 0..table.len() {
            for env in &routed.out[i] {
                let prev = owner.insert(env.name().to_owned(), table.sub_at(i));
                assert!(
                    prev.is_none() || prev == Some(table.sub_at(i)),
                    "{} moved",
                    env.name()
                );
            }
        }
    }
    assert_eq!(owner.len(), names.len());
    let on_a = owner.values().filter(|o| **o == a).count();
    let on_b = owner.values().filter(|o| **o == b).count();
    assert!(
        on_a > 0 && on_b > 0,
        "six names should not all hash to one member"
    );
    // Go's crc64.Checksum(ECMA) of "requests" decides the member, as Loggregator does.
    assert_eq!(crc64("123456789"), 0x995D_C9BB_DF19_39FA);
}

#[test]
fn preferred_tags_are_converted_only_for_subscribers_that_ask() {
    let mut e = envelope::log("a", "x", false);
    e.deprecated_tags.insert(
        "job".into(),
        v2::Value {
            data: Some(v2::value::Data::Text("doppler".into())),
        },
    );
    let mut reg = Registry::default();
    let mut req = request("", vec![select::log("")]);
    let plain = reg.subscribe(Spec::from_request(&req).unwrap());
    req.use_preferred_tags = true;
    let preferred = reg.subscribe(Spec::from_request(&req).unwrap());
    let table = reg.table();
    let mut routed = Routed::default();
    table.route(&[raw(&e)], &mut routed);
    for i in 0..table.len() {
        let got = routed.out[i][0].decode();
        if table.sub_at(i) == plain {
            assert_eq!(got, e);
        } else {
            assert_eq!(table.sub_at(i), preferred);
            assert!(got.deprecated_tags.is_empty());
            assert_eq!(got.tags["job"], "doppler");
        }
    }
}

#[test]
fn unsubscribe_removes_from_groups() {
    let mut reg = Registry::default();
    let a = reg.subscribe(spec("x", vec![select::log("")]));
    let b = reg.subscribe(spec("x", vec![select::log("")]));
    assert!(reg.unsubscribe(a));
    assert!(!reg.unsubscribe(a));
    let c = counts(&reg, &logs("s", 7));
    assert_eq!(c.len(), 1);
    assert_eq!(c[&b], 7);
}

#[test]
fn source_affinity_keeps_each_source_on_one_member() {
    let mut reg = Registry::default();
    let mut req = request("autoscaler", select::all(""));
    req.deterministic_name = format!("{SOURCE_AFFINITY}:a");
    let a = reg.subscribe(Spec::from_request(&req).unwrap());
    req.deterministic_name = format!("{SOURCE_AFFINITY}:b");
    let b = reg.subscribe(Spec::from_request(&req).unwrap());
    let table = reg.table();
    let mut owner: HashMap<String, SubId> = HashMap::new();
    let sources: Vec<String> = (0..20).map(|i| format!("app-{i}")).collect();
    for round in 0..3 {
        let batch: Vec<RawEnvelope> = sources
            .iter()
            .flat_map(|s| {
                [
                    raw(&envelope::gauge(s.as_str(), [("cpu", 1.0, "%")])),
                    raw(&envelope::timer(s.as_str(), "http", 1, 2)),
                    raw(&envelope::counter(s.as_str(), format!("c{round}"), 1)),
                    raw(&envelope::log(s.as_str(), "x", false)),
                ]
            })
            .collect();
        let mut routed = Routed::default();
        table.route(&batch, &mut routed);
        for i in 0..table.len() {
            for env in &routed.out[i] {
                let prev = owner.insert(env.source_id().to_owned(), table.sub_at(i));
                assert!(
                    prev.is_none() || prev == Some(table.sub_at(i)),
                    "{} split across members",
                    env.source_id()
                );
            }
        }
    }
    assert_eq!(owner.len(), 20);
    let on_a = owner.values().filter(|o| **o == a).count();
    assert!(
        on_a > 0 && owner.values().any(|o| *o == b),
        "20 sources spread over both members"
    );
    assert!(
        !is_source_affine("hydrant:source-idx"),
        "only the exact name or a ':' suffix"
    );
}

#[test]
fn a_subscription_has_at_most_max_selectors() {
    let many: Vec<v2::Selector> = (0..=MAX_SELECTORS)
        .map(|i| select::log(&format!("s{i}")))
        .collect();
    assert_eq!(
        Spec::from_request(&request("", many.clone())),
        Err(Error::TooManySelectors {
            got: MAX_SELECTORS + 1,
            max: MAX_SELECTORS
        })
    );
    assert!(Spec::from_request(&request("", many[1..].to_vec())).is_ok());
}

/// Routing looks at the groups of an envelope's kind and source, not at every group: a
/// subscriber with a thousand selectors once cut everyone's ingest tenfold.
#[test]
fn routing_looks_only_at_groups_that_may_match() {
    let mut reg = Registry::default();
    for sub in 0..20 {
        let selectors = (0..MAX_SELECTORS)
            .map(|i| select::log(&format!("s{sub}-{i}")))
            .collect();
        reg.subscribe(spec("", selectors));
    }
    let wide = reg.subscribe(spec("", vec![select::log("")]));
    let table = reg.table();
    let env = raw(&envelope::log("s3-7", "x", false));
    assert_eq!(
        table.candidates(&env).count(),
        2,
        "its source's group and the wildcard"
    );
    let gauge = raw(&envelope::gauge("s3-7", [("cpu", 1.0, "")]));
    assert_eq!(table.candidates(&gauge).count(), 0);
    let got = counts(&reg, &[env]);
    assert_eq!(got.values().sum::<usize>(), 2);
    assert_eq!(got[&wide], 1);
}
