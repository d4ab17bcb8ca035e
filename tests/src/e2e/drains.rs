//! Syslog drains end to end, against real rsyslog servers: an app on a cell is bound to a
//! plain TCP drain and a TLS drain the way the cf CLI binds them (a user-provided service
//! instance with a `syslog_drain_url`, then a credential binding), the agent polls the
//! bindings from the cell, and every line arrives at both, once, in order, as RFC 5424 that
//! rsyslog parses into the fields Loggregator writes. Stopping one rsyslog costs only that
//! drain's envelopes, counted and told in the app's own log; it catches up once back.

use std::collections::BTreeMap;
use std::time::Duration;

use hydrant::agent;
use hydrant::doppler;
use hydrant::drain::bindings;
use serde_json::{Value, json};

use crate::guard::Scratch;
use crate::rsyslog::{Received, Rsyslog};
use crate::{TestAgent, TestCell, TestDoppler, eventually_within, listener};

/// Prints 1,000 lines; after `$GO` exists, 3,000 more at ~2,000/s; after `$AGAIN`, ten.
const APP: &str = r#"i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo "line $i"; done
while [ ! -e "$GO" ]; do sleep 0.1; done
i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo "burst $i"; if [ $((i % 100)) -eq 0 ]; then sleep 0.05; fi; done
echo "burst done"
while [ ! -e "$AGAIN" ]; do sleep 0.1; done
i=0; while [ $i -lt 10 ]; do i=$((i+1)); echo "again $i"; done
exec sleep 600"#;

/// A JSON request to the cell as the cf CLI makes it.
async fn cf(url: &str, body: Value) -> Value {
    let r = hydrant_runtime::https::plain_client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{url}");
    r.json().await.unwrap()
}

/// A doppler, a cell, and an agent polling the cell's drain bindings every second.
struct Platform {
    d: TestDoppler,
    cell: TestCell,
    agent: TestAgent,
}

impl Platform {
    /// Drains hold `buffer` envelopes each (none: the default).
    async fn start(buffer: Option<usize>) -> Platform {
        let d = TestDoppler::start(doppler::Config::default()).await;
        let agent_grpc = listener().await;
        let cell = TestCell::start(TestCell::config(agent_grpc.local_addr().unwrap())).await;
        let mut config = agent::Config {
            dopplers: vec![d.grpc.to_string()],
            ..agent::Config::default()
        };
        config.drains = bindings::Config {
            source: Some(bindings::Source {
                url: cell.url.clone(),
                token: None,
                http: hydrant_runtime::https::plain_client(),
            }),
            aggregate: Vec::new(),
            refresh: Some(Duration::from_secs(1)),
            hostname: "agent-host".into(),
            buffer,
        };
        let agent = TestAgent::start_on(agent_grpc, config).await;
        Platform { d, cell, agent }
    }

    /// Creates the user-provided service instance `instance` (the cf CLI's body) and binds
    /// app `guid` to it, as the cf CLI does; the instance as answered.
    async fn bind(&self, guid: &str, instance: Value) -> Value {
        let si = cf(&format!("{}/v3/service_instances", self.cell.url), instance).await;
        cf(
            &format!("{}/v3/service_credential_bindings", self.cell.url),
            json!({"type": "app", "relationships": {
                "service_instance": {"data": {"guid": si["guid"]}},
                "app": {"data": {"guid": guid}}}}),
        )
        .await;
        si
    }

    async fn stop(self) {
        self.agent.stop().await;
        self.cell.stop().await;
        self.d.stop().await;
    }
}

/// The app's own lines (`[APP/PROC/WEB/0]`) an rsyslog received.
fn app_lines(r: &Rsyslog) -> Vec<Received> {
    r.received()
        .into_iter()
        .filter(|m| m.procid == "[APP/PROC/WEB/0]")
        .collect()
}

fn texts(lines: &[Received], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|m| m.msg.starts_with(prefix))
        .map(|m| m.msg.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_lines_reach_rsyslog_over_tcp_and_tls_and_a_dead_drain_costs_only_its_own() {
    let dir = Scratch::new("drains");
    let p = Platform::start(Some(1000)).await;
    let (cell, agent) = (&p.cell, &p.agent);
    let mut plain = Rsyslog::start(&dir.join("plain")).await;
    let tls = Rsyslog::start_tls(&dir.join("tls")).await;

    let (go, again) = (dir.join("go"), dir.join("again"));
    let env = BTreeMap::from([
        ("GO".to_owned(), go.to_str().unwrap().to_owned()),
        ("AGAIN".to_owned(), again.to_str().unwrap().to_owned()),
    ]);
    let guid = cell
        .client()
        .push("drained app", APP, 0, 64, 64, &env)
        .await
        .unwrap()
        .guid;
    let plain_url = format!("syslog://127.0.0.1:{}", plain.addr.port());
    let tls_url = format!("syslog-tls://127.0.0.1:{}", tls.addr.port());
    let space = json!({"space": {"data": {"guid": "a-space"}}});
    for (name, url, credentials) in [
        ("plain-drain", &plain_url, json!({})),
        ("tls-drain", &tls_url, json!({"ca": tls.ca()})),
    ] {
        let si = p
            .bind(
                &guid,
                json!({"type": "user-provided", "name": name, "syslog_drain_url": url,
                       "credentials": credentials, "relationships": space}),
            )
            .await;
        assert_eq!(si["type"], "user-provided");
        assert!(
            si.get("credentials").is_none(),
            "credentials are never shown"
        );
    }
    eventually_within(
        "the agent runs both drains",
        Duration::from_secs(10),
        || async { agent.metric("hydrant_agent_drains", &[]).await == 2.0 },
    )
    .await;
    // A binding to a URL no agent can use is made (as Cloud Controller does), and the app's
    // own log says why, which its working drain carries.
    p.bind(
        &guid,
        json!({"type": "user-provided", "name": "bad-drain",
               "syslog_drain_url": "ftp://user:pw@logs.example.com/x?token=t"}),
    )
    .await;
    eventually_within(
        "the app is told its drain URL is unusable",
        Duration::from_secs(10),
        || async {
            tls.received().iter().any(|m| {
                m.procid == "[LGR/0]"
                    && m.msg == "Invalid Scheme ftp for syslog drain url ftp://logs.example.com/x"
            })
        },
    )
    .await;
    assert_eq!(
        agent.metric("hydrant_agent_drains", &[]).await,
        2.0,
        "no drain runs for it"
    );
    cell.client().scale(&guid, 1).await.unwrap();

    // Every line at both, once, in order, with Loggregator's fields.
    let expected: Vec<String> = (1..=1000).map(|i| format!("line {i}")).collect();
    for r in [&plain, &tls] {
        eventually_within("1,000 lines drained", Duration::from_secs(30), || async {
            texts(&app_lines(r), "line ").len() >= 1000
        })
        .await;
        let lines = app_lines(r);
        assert_eq!(texts(&lines, "line "), expected);
        let first = &lines[0];
        assert_eq!(first.hostname, "drained-app");
        assert_eq!(first.app_name, guid);
        assert!(
            first.structured.starts_with("[tags@47450 ")
                && first.structured.contains(r#"app_name="drained app""#)
                && first.structured.contains(r#"source_type="APP/PROC/WEB""#),
            "{first:?}"
        );
    }

    // The plain rsyslog goes away: its drain drops (counted, told in the app's log), the
    // TLS drain loses nothing.
    plain.stop();
    std::fs::write(&go, "").unwrap();
    eventually_within(
        "the burst reaches the TLS drain",
        Duration::from_secs(60),
        || async { texts(&app_lines(&tls), "burst").len() == 3001 },
    )
    .await;
    let burst: Vec<String> = (1..=3000)
        .map(|i| format!("burst {i}"))
        .chain(["burst done".to_owned()])
        .collect();
    assert_eq!(texts(&app_lines(&tls), "burst"), burst);
    let labels = |url: &str| [("drain_url", url.to_owned()), ("drain_scope", "app".into())];
    let dropped = |url: String| {
        let agent = &agent;
        async move {
            let l = labels(&url);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            agent
                .metric("hydrant_agent_drain_dropped_envelopes_total", &l)
                .await
        }
    };
    eventually_within(
        "the dead drain's losses counted",
        Duration::from_secs(30),
        || async { dropped(plain_url.clone()).await >= 1000.0 },
    )
    .await;
    assert_eq!(
        dropped(tls_url.clone()).await,
        0.0,
        "the TLS drain lost nothing"
    );
    let notice = format!("in user provided syslog drain with url {plain_url}");
    eventually_within("the app is told", Duration::from_secs(20), || async {
        tls.received().iter().any(|m| {
            m.procid == "[LGR/0]"
                && m.msg
                    .contains(&format!("messages lost for application {guid}"))
                && m.msg.ends_with(&notice)
        })
    })
    .await;
    assert!(
        tls.received()
            .iter()
            .any(|m| m.procid == "[LGR/0]" && m.msg == format!("Failed to connect to {plain_url}")),
        "a failed connection is told too"
    );

    // Back: the drain reconnects and carries new lines.
    plain.resume().await;
    std::fs::write(&again, "").unwrap();
    eventually_within(
        "the plain drain catches up",
        Duration::from_secs(60),
        || async { texts(&app_lines(&plain), "again ").len() == 10 },
    )
    .await;
    p.stop().await;
}

/// `hydrant drain create|delete` and `hydrant drains` against a cell, with HTTPS drains:
/// `https-batch` POSTs several messages at once, `https` one each; a drain's credentials
/// and query never show; a URL no agent could use is refused before anything is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drains_over_https_and_urls_refused_up_front() {
    let dir = Scratch::new("drains-https");
    hydrant::certs::generate_all(&dir, &["kube".to_owned()]).unwrap();
    let (recorder, addr) =
        super::actuators::tls_recorder(&dir, |_| (axum::http::StatusCode::OK, json!({}))).await;
    let p = Platform::start(None).await;
    let (cell, agent) = (&p.cell, &p.agent);
    let go = dir.join("go");
    let env = BTreeMap::from([("GO".to_owned(), go.to_str().unwrap().to_owned())]);
    let script = r#"while [ ! -e "$GO" ]; do sleep 0.1; done
for i in 1 2 3 4 5; do echo "hello $i"; done; exec sleep 600"#;
    cell.client()
        .push("web", script, 1, 64, 64, &env)
        .await
        .unwrap();
    let hydrant = |args: &[&str]| {
        std::process::Command::new(crate::hydrant_bin())
            .args(args)
            .args(["--scheduler", &cell.url])
            .current_dir(&dir)
            .env_remove("HYDRANT_TOKEN")
            .output()
            .unwrap()
    };
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let port = addr.port();
    let batch_url = format!("https-batch://127.0.0.1:{port}/batch?token=secret");
    let out = hydrant(&["drain", "create", "web", &batch_url, "--ca", ca]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("created drain drain-web-")
            && text.contains(&format!(": https-batch://127.0.0.1:{port}/batch"))
            && !text.contains("secret"),
        "{text}"
    );
    let single_url = format!("https://127.0.0.1:{port}/single");
    let out = hydrant(&[
        "drain",
        "create",
        "web",
        &single_url,
        "--name",
        "single",
        "--ca",
        ca,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hydrant(&["drain", "create", "web", "ftp://user:pw@x/y"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unsupported protocol \"ftp\"") && !err.contains("pw"),
        "{err}"
    );
    let out = hydrant(&["drains"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("single") && table.contains(&single_url) && !table.contains("secret"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 3, "a header and two drains: {table}");
    // A metrics drain (Loggregator's drain-type=metrics): the cell's container metrics,
    // no log lines.
    let metrics_url = format!("https://127.0.0.1:{port}/metrics?drain-type=metrics");
    let out = hydrant(&["drain", "create", "web", &metrics_url, "--ca", ca]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    eventually_within(
        "the agent runs the three drains",
        Duration::from_secs(10),
        || async { agent.metric("hydrant_agent_drains", &[]).await == 3.0 },
    )
    .await;
    std::fs::write(&go, "").unwrap();
    let hellos = |path: &str| {
        let mut lines = Vec::new();
        let mut posts = 0;
        for s in recorder.seen() {
            if s.uri.starts_with(path) {
                posts += 1;
                assert_eq!(s.header("content-type"), "text/plain");
                let body = String::from_utf8(s.body.clone()).unwrap();
                lines.extend(
                    body.lines()
                        .filter(|l| l.contains("[APP/PROC/WEB/0]"))
                        .map(|l| l.rsplit("] ").next().unwrap().to_owned()),
                );
            }
        }
        (posts, lines)
    };
    let expected: Vec<String> = (1..=5).map(|i| format!("hello {i}")).collect();
    eventually_within(
        "both HTTPS drains got the lines",
        Duration::from_secs(20),
        || async { hellos("/single").1.len() == 5 && hellos("/batch?token=secret").1.len() == 5 },
    )
    .await;
    let (single_posts, single) = hellos("/single");
    assert_eq!(single, expected);
    assert!(single_posts >= 5, "one POST per message");
    let (batch_posts, batch) = hellos("/batch?token=secret");
    assert_eq!(batch, expected);
    assert_eq!(batch_posts, 1, "five lines within a second share one POST");
    eventually_within(
        "container metrics drained",
        Duration::from_secs(20),
        || async {
            recorder.seen().iter().any(|s| {
                s.uri.starts_with("/metrics")
                    && String::from_utf8_lossy(&s.body).contains(r#"[gauge@47450 name="cpu" "#)
            })
        },
    )
    .await;
    assert!(
        recorder
            .seen()
            .iter()
            .filter(|s| s.uri.starts_with("/metrics"))
            .all(|s| !String::from_utf8_lossy(&s.body).contains("hello")),
        "a metrics drain gets no logs"
    );

    let out = hydrant(&["drain", "delete", "single"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually_within(
        "the deleted drain stops",
        Duration::from_secs(10),
        || async { agent.metric("hydrant_agent_drains", &[]).await == 2.0 },
    )
    .await;
    p.stop().await;
}

/// A `syslog-tls` drain whose rsyslog demands a client certificate: the binding's
/// credentials (`ca`, `cert`, `key`) get the lines through; the same URL bound without a
/// certificate is refused by rsyslog and only counts errors, never a line twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_drain_presents_the_bindings_certificate() {
    let dir = Scratch::new("drains-mtls");
    let p = Platform::start(None).await;
    let (cell, agent) = (&p.cell, &p.agent);
    let rsyslog = Rsyslog::start_mutual_tls(&dir.join("mtls")).await;
    let pem = |f: &str| std::fs::read_to_string(rsyslog.dir.join("certs").join(f)).unwrap();
    let go = dir.join("go");
    let env = BTreeMap::from([("GO".to_owned(), go.to_str().unwrap().to_owned())]);
    let script = r#"while [ ! -e "$GO" ]; do sleep 0.1; done
i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo "mtls $i"; done; exec sleep 600"#;
    let guid = cell
        .client()
        .push("secure", script, 1, 64, 64, &env)
        .await
        .unwrap()
        .guid;
    let url = format!("syslog-tls://127.0.0.1:{}", rsyslog.addr.port());
    for (name, credentials) in [
        (
            "with-cert",
            json!({"ca": rsyslog.ca(), "cert": pem("client.pem"), "key": pem("client-key.pem")}),
        ),
        ("without-cert", json!({"ca": rsyslog.ca()})),
    ] {
        p.bind(
            &guid,
            json!({"type": "user-provided", "name": name, "syslog_drain_url": url,
                   "credentials": credentials}),
        )
        .await;
    }
    eventually_within("both drains run", Duration::from_secs(10), || async {
        agent.metric("hydrant_agent_drains", &[]).await == 2.0
    })
    .await;
    std::fs::write(&go, "").unwrap();
    let expected: Vec<String> = (1..=20).map(|i| format!("mtls {i}")).collect();
    eventually_within(
        "the certified drain's lines",
        Duration::from_secs(20),
        || async { texts(&app_lines(&rsyslog), "mtls ").len() >= 20 },
    )
    .await;
    let labels = [("drain_url", url.as_str()), ("drain_scope", "app")];
    eventually_within(
        "the refused drain counts errors",
        Duration::from_secs(20),
        || async {
            agent
                .metric("hydrant_agent_drain_errors_total", &labels)
                .await
                > 0.0
        },
    )
    .await;
    assert_eq!(
        texts(&app_lines(&rsyslog), "mtls "),
        expected,
        "once each: nothing came through without a certificate"
    );
    p.stop().await;
}
