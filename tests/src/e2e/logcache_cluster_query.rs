//! A log cache cluster answers Log Cache's PromQL and reads by app name for the whole
//! cluster, from any node: a query's sources are read from their owners, an app name's
//! sources from every node. A node that is gone makes such an answer an error naming it,
//! never a partial result.

use std::time::Duration;

use hydrant_logcache::cluster::owner;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use serde_json::Value;

use super::logcache_cluster::get;
use crate::eventually_within;

/// An instant PromQL query at `t` (s) on `node`.
async fn query(node: &str, q: &str, t: i64) -> (u16, Value) {
    let url = format!(
        "{node}/api/v1/query?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .append_pair("time", &format!("{t}.000"))
            .finish()
    );
    get(url).await
}

/// The one value of a vector answer.
fn scalar(v: &Value) -> f64 {
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// The first source id `prefix-N` that `node` owns in a cluster of two.
fn owned_by(prefix: &str, node: usize) -> String {
    (0..100)
        .map(|i| format!("{prefix}-{i}"))
        .find(|s| owner(s, 2) == node)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_and_reads_by_name_answer_for_the_whole_cluster() {
    let (d, nodes, a, b) = super::logcache_cluster::two_nodes().await;

    // Gauges of two sources, one kept by each node; log lines of one app under two guids
    // (a re-push), kept by different nodes, and a name whose owner is a third party.
    let (on_a, on_b) = (owned_by("gauge", 0), owned_by("gauge", 1));
    let (guid_a, guid_b) = (owned_by("guid", 0), owned_by("guid", 1));
    let app = "shop";
    let now = hydrant_proto::envelope::now_nanos() / 1_000_000_000;
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    for (k, (source, cpu)) in [(&on_a, 30.0), (&on_b, 12.0)].into_iter().enumerate() {
        let mut g = envelope::gauge(source.as_str(), [("cpu", cpu, "percentage")]);
        g.timestamp = (now - 10 + k as i64) * 1_000_000_000;
        g.instance_id = "0".into();
        client.send_envelope(&g);
    }
    for n in 0..10i64 {
        let guid = if n % 2 == 0 { &guid_a } else { &guid_b };
        let mut e = envelope::log(guid.as_str(), format!("line {n}"), false);
        e.timestamp = (now - 20 + n) * 1_000_000_000;
        e.instance_id = "0".into();
        e.tags.insert("app_name".into(), app.into());
        client.send_envelope(&e);
    }
    let both = format!(r#"sum(cpu{{source_id=~"{on_a}|{on_b}"}})"#);
    eventually_within("both gauges kept", Duration::from_secs(10), || async {
        let (s, v) = query(&a.url, &both, now).await;
        s == 200 && v["data"]["result"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await;

    // Each node answers for the other's source and for both together.
    for node in [&a.url, &b.url] {
        let (_, v) = query(node, &both, now).await;
        assert_eq!(scalar(&v), 42.0, "{node}: {v}");
        let (_, v) = query(node, &format!(r#"cpu{{source_id="{on_b}"}}"#), now).await;
        assert_eq!(scalar(&v), 12.0, "{node}: {v}");
        assert_eq!(v["data"]["result"][0]["metric"]["source_id"], on_b.as_str());
        let (_, v) = query(node, &format!(r#"cpu{{source_id="{on_a}"}} * 2"#), now).await;
        assert_eq!(scalar(&v), 60.0, "{node}: {v}");
    }

    // A read by app name gathers the app's lines from both nodes, as one node would.
    let payloads = |v: &Value| -> Vec<String> {
        use base64::Engine as _;
        v["envelopes"]["batch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(e["log"]["payload"].as_str().unwrap())
                    .unwrap();
                String::from_utf8(b).unwrap()
            })
            .collect()
    };
    let all: Vec<String> = (0..10).map(|n| format!("line {n}")).collect();
    eventually_within("the app's lines kept", Duration::from_secs(10), || async {
        let (_, v) = get(format!("{}/api/v1/read/{app}?limit=1000", a.url)).await;
        v["envelopes"]["batch"]
            .as_array()
            .is_some_and(|b| b.len() == 10)
    })
    .await;
    for node in [&a.url, &b.url] {
        let (s, v) = get(format!("{node}/api/v1/read/{app}?limit=1000")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(payloads(&v), all, "{node}");
        let (_, v) = get(format!("{node}/api/v1/read/{app}?limit=3&descending=true")).await;
        assert_eq!(payloads(&v), ["line 9", "line 8", "line 7"], "{node}");
        // A guid still reads from its owner alone.
        let (_, v) = get(format!("{node}/api/v1/read/{guid_b}?limit=1000")).await;
        assert_eq!(
            payloads(&v),
            ["line 1", "line 3", "line 5", "line 7", "line 9"]
        );
    }

    // Node b goes away: what needs it is an error naming it, not a partial answer.
    b.stop().await;
    let (s, v) = query(&a.url, &both, now).await;
    assert_eq!(s, 422, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("log cache node 1 ({})", nodes[1]))
            && error.contains(&on_b)
            && error.contains("unreachable"),
        "{v}"
    );
    let (s, v) = query(&a.url, &format!(r#"cpu{{source_id="{on_a}"}}"#), now).await;
    assert_eq!((s, scalar(&v)), (200, 30.0), "a's own source: {v}");
    let (s, v) = get(format!("{}/api/v1/read/{app}", a.url)).await;
    assert_eq!(s, 502, "{v}");
    client.close(Duration::from_secs(5)).await;
    a.stop().await;
    d.stop().await;
}
