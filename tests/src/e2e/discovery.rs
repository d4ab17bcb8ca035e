//! Dopplers found by DNS, as behind a Kubernetes headless Service: an agent and a log cache
//! given one name (served by a real dnsmasq) use every address it resolves to. A doppler
//! added behind the name is used without a restart; one taken away leaves the others
//! carrying everything.

use std::net::SocketAddr;
use std::time::Duration;

use hydrant::telemetry::names;
use hydrant::{agent, doppler};
use hydrant_proto::discovery::{Discovery, Resolver};
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::guard::{Proc, Scratch};
use crate::servers::free_port;
use crate::{TestAgent, TestDoppler, TestLogCache, eventually_within};

const NAME: &str = "dopplers.hydrant.test";

/// A dnsmasq answering from `hosts` only, on 127.0.0.1:`port` (UDP and TCP); reloads
/// `hosts` on SIGHUP. Its log goes to `log`.
fn dnsmasq(hosts: &std::path::Path, port: u16, log: &std::path::Path) -> Proc {
    let mut command = std::process::Command::new("dnsmasq");
    // Started as root, dnsmasq becomes `nobody`, who cannot read a hosts file under a
    // private TMPDIR (CI's): it stays root here (it only listens on 127.0.0.1).
    let root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if root {
        command.arg("--user=root");
    }
    let child = command
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
        ])
        .args([
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--pid-file=",
        ])
        .arg(format!("--addn-hosts={}", hosts.display()))
        .arg(format!("--port={port}"))
        .arg("--local-ttl=0")
        .arg("--log-facility=-")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("dnsmasq (Debian dnsmasq-base; .ci/run installs it)");
    Proc::new(child)
}

async fn subscribed(d: &TestDoppler) -> bool {
    d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "log-cache")])
        .await
        == 1.0
}

async fn logs(cache: &TestLogCache, source: &str) -> usize {
    let v: Value = hydrant_runtime::https::plain_client()
        .get(format!("{}/api/v1/meta", cache.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["meta"][source]["count"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dopplers_behind_one_name_are_found_added_and_dropped() {
    let dir = Scratch::new("discovery");
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, format!("127.0.0.2 {NAME}\n")).unwrap();
    // Up once it accepts on its TCP port (it serves DNS over TCP too). A port that turns
    // out to be taken for UDP makes it exit: another port is tried.
    let log = dir.join("dnsmasq.log");
    let mut started = None;
    for _ in 0..3 {
        let dns = free_port();
        let mut server = dnsmasq(&hosts, dns.port(), &log);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(dns).await.is_ok() {
                started = Some((dns, server));
                break;
            }
            if server.exited() || tokio::time::Instant::now() > deadline {
                server.kill();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if started.is_some() {
            break;
        }
    }
    let Some((dns, mut server)) = started else {
        panic!(
            "dnsmasq did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let discovery = Discovery {
        dns_server: Some(dns),
        refresh: Duration::from_millis(300),
    };
    let resolver = Resolver::new(&discovery).unwrap();
    eventually_within("dnsmasq answers", Duration::from_secs(30), || async {
        resolver.resolve(NAME, 1).await.is_ok()
    })
    .await;

    // Two dopplers on one port, at two addresses; the name has only the first for now.
    let a_listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = a_listener.local_addr().unwrap().port();
    let b_listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 3], port)))
        .await
        .unwrap();
    let a = TestDoppler::start_on(doppler::Config::default(), a_listener).await;
    let b = TestDoppler::start_on(doppler::Config::default(), b_listener).await;
    let by_name = format!("{NAME}:{port}");
    let agent = TestAgent::start_with(agent::Config {
        dopplers: vec![by_name.clone()],
        discovery,
        ..agent::Config::default()
    })
    .await;
    let mut cache_config = hydrant_logcache::Config::new(vec![by_name.clone()]);
    cache_config.discovery = discovery;
    let cache = TestLogCache::start(cache_config, &[]).await;
    eventually_within(
        "the first doppler in use",
        Duration::from_secs(10),
        || async {
            agent.metric(names::AGENT_DOPPLER_STREAMS, &[]).await == 1.0 && subscribed(&a).await
        },
    )
    .await;
    assert!(!subscribed(&b).await, "b is not behind the name yet");

    // A second address behind the name: used at the next lookup, nothing restarted.
    std::fs::write(&hosts, format!("127.0.0.2 {NAME}\n127.0.0.3 {NAME}\n")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    eventually_within("both dopplers in use", Duration::from_secs(10), || async {
        agent.metric(names::AGENT_DOPPLER_STREAMS, &[]).await == 2.0
            && subscribed(&a).await
            && subscribed(&b).await
    })
    .await;
    let emitter = IngressClient::start(Config::new(vec![agent.grpc.to_string()])).unwrap();
    let send = |n: usize, source: &str| {
        for i in 0..n {
            emitter.send_envelope(&envelope::log(source, format!("line {i}"), false));
        }
    };
    send(2000, "spread");
    eventually_within(
        "every line through both",
        Duration::from_secs(10),
        || async { logs(&cache, "spread").await == 2000 },
    )
    .await;
    // The agent holds a stream to each (which one a batch takes is up to the faster).
    for d in [&a, &b] {
        assert_eq!(
            d.metric(names::DOPPLER_INGRESS_STREAMS, &[]).await,
            1.0,
            "a stream from the agent to each doppler"
        );
    }

    // The first doppler leaves (and the name): the second carries everything.
    std::fs::write(&hosts, format!("127.0.0.3 {NAME}\n")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    a.stop().await;
    eventually_within("only b in use", Duration::from_secs(10), || async {
        agent.metric(names::AGENT_DOPPLER_STREAMS, &[]).await == 1.0
    })
    .await;
    send(1000, "after");
    eventually_within("every line through b", Duration::from_secs(10), || async {
        logs(&cache, "after").await == 1000
    })
    .await;
    emitter.close(Duration::from_secs(5)).await;
    cache.stop().await;
    agent.stop().await;
    b.stop().await;
    server.kill();
}
