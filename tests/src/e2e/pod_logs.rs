//! Kubernetes pods' logs through an agent (`--cri-logs`): files in the kubelet's layout and
//! CRI format, written by the test as the kubelet writes them (lines split into parts,
//! stderr, a rotation by rename), reach the log cache as one log envelope per line, in
//! order, under `namespace/workload`, with the pod's tags.

use std::io::Write as _;
use std::time::Duration;

use hydrant::{agent, doppler};
use serde_json::Value;

use crate::guard::Scratch;
use crate::{TestAgent, TestDoppler, TestLogCache, eventually_within};

const SOURCE: &str = "shop/web";

fn cri(time: &str, stream: &str, tag: &str, text: &str) -> String {
    format!("2026-12-06T10:00:{time}.000000001Z {stream} {tag} {text}\n")
}

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The source's cached lines: (payload, stream, pod tag), oldest first.
async fn read(cache: &TestLogCache) -> Vec<(String, String, String)> {
    use base64::Engine as _;
    let v: Value = hydrant_runtime::https::plain_client()
        .get(format!(
            "{}/api/v1/read/{}?envelope_types=LOG&limit=1000",
            cache.url,
            form_urlencoded::byte_serialize(SOURCE.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["envelopes"]["batch"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(e["log"]["payload"].as_str().unwrap_or_default())
                .unwrap();
            (
                String::from_utf8(b).unwrap(),
                e["log"]["type"].as_str().unwrap_or("OUT").to_owned(),
                e["tags"]["pod"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_in_the_kubelets_layout_reach_the_log_cache() {
    let root = Scratch::new("pod-logs");
    let dir = root
        .join("shop_web-7d4b9c8f6-x2k4p_6a1e0000-uid")
        .join("app");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("0.log");
    // Written before the agent starts: not sent (a restarted agent does not resend).
    append(&log, &cri("00", "stdout", "F", "old history"));

    let d = TestDoppler::start(doppler::Config::default()).await;
    let cache = TestLogCache::start(
        hydrant_logcache::Config::new(vec![d.grpc.to_string()]),
        &[&d],
    )
    .await;
    let a = TestAgent::start(
        agent::Config {
            cri_logs: Some(root.to_path_buf()),
            ..agent::Config::default()
        },
        &[d.grpc],
    )
    .await;
    // The agent's first look at the directory comes at once; give it time on a busy machine.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    append(&log, &cri("01", "stdout", "F", "first"));
    // A long line in three parts, the last without its newline yet.
    append(&log, &cri("02", "stdout", "P", "part one, "));
    append(&log, &cri("02", "stdout", "P", "part two, "));
    tokio::time::sleep(Duration::from_millis(600)).await;
    append(&log, &cri("02", "stdout", "F", "the end"));
    append(&log, &cri("03", "stderr", "F", "an error"));
    // Rotation: one more line, then the kubelet renames the file and starts a new one.
    append(&log, &cri("04", "stdout", "F", "last before rotation"));
    std::fs::rename(&log, dir.join("0.log.20261206-100004")).unwrap();
    append(&log, &cri("05", "stdout", "F", "first after rotation"));

    let expected = [
        ("first", "OUT"),
        ("part one, part two, the end", "OUT"),
        ("an error", "ERR"),
        ("last before rotation", "OUT"),
        ("first after rotation", "OUT"),
    ];
    eventually_within(
        "every line in the log cache",
        Duration::from_secs(20),
        || async { read(&cache).await.len() >= expected.len() },
    )
    .await;
    let got = read(&cache).await;
    let lines: Vec<(&str, &str)> = got
        .iter()
        .map(|(t, s, _)| (t.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        lines, expected,
        "one envelope per line, in order, nothing resent"
    );
    assert!(got.iter().all(|(_, _, pod)| pod == "web-7d4b9c8f6-x2k4p"));
    a.stop().await;
    cache.stop().await;
    d.stop().await;
}
