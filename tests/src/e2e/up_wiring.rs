//! `hydrant up` is wired by its config: with only the listen ports moved in `hydrant.yaml`,
//! every component connects to the moved ports (the agent to the doppler, the nozzles to
//! the doppler, the cell and every self-metrics sender to the agent), never to the
//! defaults, where another `up` may be running. A component that runs but is not healthy
//! shows on `up`'s terminal.

use std::net::SocketAddr;
use std::time::Duration;

use hydrant::telemetry::names;

use crate::eventually_within;
use crate::guard::Scratch;
use crate::servers::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_ports_move_every_connection() {
    let dir = Scratch::new("up-wiring");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let p: Vec<SocketAddr> = (0..9).map(|_| free_port()).collect();
    let (doppler, doppler_http, agent, agent_http) = (p[0], p[1], p[2], p[3]);
    // A policy file the autoscaler refuses: `up`'s terminal says so.
    std::fs::create_dir_all(data.join("policies")).unwrap();
    std::fs::write(
        data.join("policies").join("web.yml"),
        "app: web\ninstance_min_count: 1\ninstance_max_count: 3\nscaling_rules:\n  - {metric_type: cpuutil, operator: '>', threshold: 170, adjustment: '+1'}\n",
    )
    .unwrap();
    let file = dir.join("hydrant.yaml");
    std::fs::write(
        &file,
        format!(
            "up:\n  data-dir: {}\n\
             doppler:\n  grpc: {doppler}\n  http: {doppler_http}\n\
             agent:\n  grpc: {agent}\n  http: {agent_http}\n  udp: 'off'\n\
             cell:\n  api: {}\n\
             logcache:\n  http: {}\n\
             storage:\n  http: {}\n\
             autoscaler:\n  http: {}\n\
             console:\n  http: {}\n",
            data.display(),
            p[4],
            p[5],
            p[6],
            p[7],
            p[8]
        ),
    )
    .unwrap();
    let super::up_harness::Up {
        child: mut up,
        mut lines,
        ..
    } = super::up_harness::start(&dir, &file, &[]).await;

    // Read the moved doppler's and agent's metrics over HTTPS with up's CA and token.
    let tls =
        hydrant_runtime::https::ClientTls::ca_file(&data.join("certs").join("ca.pem")).unwrap();
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let http = hydrant_runtime::https::client(&tls).unwrap();
    let metric = |addr: SocketAddr, name: &'static str, labels: &'static [(&str, &str)]| {
        let (http, token) = (http.clone(), token.trim().to_owned());
        async move {
            let text = http
                .get(format!("https://{addr}/metrics"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let key = if labels.is_empty() {
                name.to_owned()
            } else {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                format!("{name}{{{}}}", l.join(","))
            };
            crate::parse_metrics(&text)
                .get(&key)
                .copied()
                .unwrap_or(0.0)
        }
    };
    eventually_within(
        "every nozzle subscribed to the moved doppler",
        Duration::from_secs(30),
        || async {
            let mut all = true;
            for shard in ["log-cache", "storage", "autoscaler"] {
                let labels: &'static [(&str, &str)] = match shard {
                    "log-cache" => &[("shard_id", "log-cache")],
                    "storage" => &[("shard_id", "storage")],
                    _ => &[("shard_id", "autoscaler")],
                };
                all &= metric(doppler_http, names::DOPPLER_SUBSCRIPTIONS, labels).await >= 1.0;
            }
            all
        },
    )
    .await;
    eventually_within(
        "the agent forwards to the moved doppler",
        Duration::from_secs(30),
        || async { metric(agent_http, names::AGENT_DOPPLER_STREAMS, &[]).await >= 1.0 },
    )
    .await;
    // The cell and every component's self-metrics reach the moved agent.
    eventually_within(
        "senders reach the moved agent",
        Duration::from_secs(30),
        || async { metric(agent_http, names::AGENT_INGRESS_STREAMS, &[]).await >= 5.0 },
    )
    .await;

    // The degraded autoscaler shows on `up`'s terminal, with the problem.
    let degraded = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("autoscaler: degraded") {
                return Some(line);
            }
        }
        None
    })
    .await;
    let line = degraded
        .ok()
        .flatten()
        .expect("up says the autoscaler is degraded");
    assert!(line.contains("web.yml:5:"), "{line}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(_)) = lines.next_line().await {}
        up.wait().await
    })
    .await;
    assert!(
        matches!(stopped, Ok(Ok(s)) if s.success()),
        "up did not stop: {stopped:?}"
    );
}
