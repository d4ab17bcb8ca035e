//! Two log cache nodes on one doppler share the sources as Log Cache does (`NODE_ADDRS`,
//! `NODE_INDEX`): each keeps the sources it owns (the doppler's source-id affinity hands
//! them there), and either answers for all of them, in full: reads are proxied to the
//! owner, meta is merged, `hydrant logs` works against either. With one node gone, its
//! sources answer with an error naming it, and what was sent its way is counted as lost.

use std::collections::BTreeSet;
use std::time::Duration;

use hydrant::doppler;
use hydrant_logcache::cluster::{Cluster, owner};
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use serde_json::Value;

use crate::{TestDoppler, TestLogCache, eventually_within, hydrant_bin, listener};

const SOURCES: usize = 12;
const LINES: usize = 150;

fn source(i: usize) -> String {
    format!("cluster-app-{i}")
}

/// A GET: its status and its JSON (null when not JSON).
pub(super) async fn get(url: String) -> (u16, Value) {
    let r = hydrant_runtime::https::plain_client()
        .get(url)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The payloads of a source's log lines read from `node`, oldest first.
async fn lines(node: &str, id: &str) -> Vec<String> {
    use base64::Engine as _;
    let (status, v) = get(format!(
        "{node}/api/v1/read/{id}?envelope_types=LOG&limit=1000"
    ))
    .await;
    assert_eq!(status, 200, "{v}");
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
}

/// The sources a node keeps itself.
async fn own(node: &str) -> BTreeSet<String> {
    let (_, v) = get(format!("{node}/api/v1/meta?local=true")).await;
    v["meta"].as_object().unwrap().keys().cloned().collect()
}

/// A doppler and two log cache nodes on it, both subscribed: the doppler, the nodes' base
/// URLs in index order, and the nodes.
pub(super) async fn two_nodes() -> (TestDoppler, Vec<String>, TestLogCache, TestLogCache) {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let (la, lb) = (listener().await, listener().await);
    let nodes = vec![
        format!("http://{}", la.local_addr().unwrap()),
        format!("http://{}", lb.local_addr().unwrap()),
    ];
    let config = |index| {
        let mut c = hydrant_logcache::Config::new(vec![d.grpc.to_string()]);
        c.cluster = Some(Cluster {
            nodes: nodes.clone(),
            index,
            token: None,
            http: hydrant_runtime::https::plain_client(),
        });
        c
    };
    let a = TestLogCache::start_on(la, config(0), &[&d]).await;
    let b = TestLogCache::start_on(lb, config(1), &[&d]).await;
    eventually_within("both nodes subscribed", Duration::from_secs(10), || async {
        d.metric(
            hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
            &[("shard_id", "log-cache")],
        )
        .await
            == 2.0
    })
    .await;
    (d, nodes, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_sources_and_each_answers_for_all() {
    let (d, nodes, a, b) = two_nodes().await;

    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    for n in 0..LINES {
        for i in 0..SOURCES {
            let mut e = envelope::log(source(i), format!("line {n}"), false);
            e.instance_id = "0".into();
            client.send_envelope(&e);
        }
    }
    let expected: Vec<String> = (0..LINES).map(|n| format!("line {n}")).collect();
    eventually_within("every line stored", Duration::from_secs(20), || async {
        let mut all = true;
        for i in 0..SOURCES {
            all &= lines(&a.url, &source(i)).await.len() == LINES;
        }
        all
    })
    .await;
    // Every source in full, in order, from either node.
    for i in 0..SOURCES {
        assert_eq!(
            lines(&a.url, &source(i)).await,
            expected,
            "{} via a",
            source(i)
        );
        assert_eq!(
            lines(&b.url, &source(i)).await,
            expected,
            "{} via b",
            source(i)
        );
    }
    // Each node keeps exactly the sources it owns: the doppler sent them there directly.
    let (own_a, own_b) = (own(&a.url).await, own(&b.url).await);
    let owned = |index| -> BTreeSet<String> {
        (0..SOURCES)
            .map(source)
            .filter(|s| owner(s, 2) == index)
            .collect()
    };
    assert_eq!(own_a, owned(0));
    assert_eq!(own_b, owned(1));
    assert!(
        !own_a.is_empty() && !own_b.is_empty(),
        "both nodes own some"
    );
    assert_eq!(
        crate::metric(a.http, "hydrant_logcache_forwarded_envelopes_total", &[]).await
            + crate::metric(b.http, "hydrant_logcache_forwarded_envelopes_total", &[]).await,
        0.0,
        "the doppler's affinity is the ownership: nothing needed forwarding"
    );
    // Meta from either node lists every source with its full count.
    let count = LINES.to_string();
    for node in [&a.url, &b.url] {
        let (_, v) = get(format!("{node}/api/v1/meta")).await;
        let meta = v["meta"].as_object().unwrap();
        assert_eq!(meta.len(), SOURCES, "{v}");
        assert!(meta.values().all(|m| m["count"] == count.as_str()), "{v}");
    }
    // `hydrant logs` against node a, for a source node b keeps.
    let theirs = own_b.iter().next().unwrap().clone();
    let out = std::process::Command::new(hydrant_bin())
        .args(["logs", &theirs, "--recent", "--log-cache", &a.url])
        .args(["--scheduler", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains(" OUT line ")).count(),
        LINES,
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Node b goes away: its sources answer with an error naming it, and what the doppler
    // now sends node a for them is counted as lost.
    b.stop().await;
    eventually_within("one subscriber left", Duration::from_secs(10), || async {
        d.metric(
            hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
            &[("shard_id", "log-cache")],
        )
        .await
            == 1.0
    })
    .await;
    for i in 0..SOURCES {
        let mut e = envelope::log(source(i), "after".to_owned(), false);
        e.instance_id = "0".into();
        client.send_envelope(&e);
    }
    eventually_within(
        "b's share counted as lost",
        Duration::from_secs(10),
        || async {
            crate::metric(
                a.http,
                "hydrant_logcache_forward_dropped_envelopes_total",
                &[],
            )
            .await
                == own_b.len() as f64
        },
    )
    .await;
    let (status, v) = get(format!("{}/api/v1/read/{theirs}", a.url)).await;
    assert_eq!(status, 502, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("log cache node 1 ({})", nodes[1]))
            && message.contains("unreachable"),
        "{v}"
    );
    let (status, v) = get(format!("{}/api/v1/meta", a.url)).await;
    assert_eq!(status, 502, "{v}");
    // Its own sources still read, with the new line.
    let mine = own_a.iter().next().unwrap();
    assert_eq!(lines(&a.url, mine).await.len(), LINES + 1);
    client.close(Duration::from_secs(5)).await;
    a.stop().await;
    d.stop().await;
}

/// A node the doppler does not reach (here: given a dead doppler) still gets its sources:
/// the node that receives them forwards each to its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_reaching_the_wrong_node_are_forwarded_to_their_owner() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let (la, lb) = (listener().await, listener().await);
    let nodes = vec![
        format!("http://{}", la.local_addr().unwrap()),
        format!("http://{}", lb.local_addr().unwrap()),
    ];
    let config = |index, doppler: String| {
        let mut c = hydrant_logcache::Config::new(vec![doppler]);
        c.cluster = Some(Cluster {
            nodes: nodes.clone(),
            index,
            token: None,
            http: hydrant_runtime::https::plain_client(),
        });
        c
    };
    let dead = listener().await.local_addr().unwrap().to_string();
    let a = TestLogCache::start_on(la, config(0, d.grpc.to_string()), &[&d]).await;
    let b = TestLogCache::start_on(lb, config(1, dead), &[]).await;
    // What is not an EnvelopeBatch is refused on the peers' route, by name.
    let r = hydrant_runtime::https::plain_client()
        .post(format!(
            "{}{}",
            b.url,
            hydrant_logcache::cluster::INGEST_PATH
        ))
        .body(vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        r.text().await.unwrap().contains("not an EnvelopeBatch"),
        "a truncated batch is named"
    );
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    for n in 0..LINES {
        for i in 0..SOURCES {
            let mut e = envelope::log(source(i), format!("line {n}"), false);
            e.instance_id = "0".into();
            client.send_envelope(&e);
        }
    }
    let theirs: Vec<String> = (0..SOURCES)
        .map(source)
        .filter(|s| owner(s, 2) == 1)
        .collect();
    eventually_within("b's sources forwarded", Duration::from_secs(20), || async {
        crate::metric(a.http, "hydrant_logcache_forwarded_envelopes_total", &[]).await
            == (theirs.len() * LINES) as f64
    })
    .await;
    assert_eq!(
        own(&b.url).await,
        theirs.iter().cloned().collect::<BTreeSet<_>>()
    );
    let expected: Vec<String> = (0..LINES).map(|n| format!("line {n}")).collect();
    for id in &theirs {
        assert_eq!(lines(&a.url, id).await, expected, "{id} via a, kept by b");
    }
    client.close(Duration::from_secs(5)).await;
    a.stop().await;
    b.stop().await;
    d.stop().await;
}
