//! `hydrant up --demo` as a user runs it (the real binary, a config file setting every
//! port): the demo app takes HTTP traffic and a CPU burn, the autoscaler scales it, every
//! dashboard query returns data from the storage nozzle (with a remote-write sink to a real
//! VictoriaMetrics), and Ctrl-C stops the components in order. Bad config files are
//! refused with file:line.

use std::net::SocketAddr;
use std::time::Duration;

use crate::guard::Scratch;
use crate::servers::VictoriaMetrics;
use crate::{eventually_within, hydrant_bin};
use serde_json::Value;
use tokio::process::Command;

use super::dashboards::{APP, GUID, dashboards, queries};

pub(super) use super::up_harness::{Ports, config};

/// The components in the order `up` stops them.
pub(super) const STOP_ORDER: [&str; 7] = [
    "console",
    "cell",
    "agent",
    "doppler",
    "autoscaler",
    "logcache",
    "storage",
];

/// Asserts that `text` (up's output) shows every component stopped, in order.
pub(super) fn assert_stopped_in_order(text: &str) {
    let order: Vec<usize> = STOP_ORDER
        .iter()
        .map(|n| {
            text.find(&format!("stopping {n:<11}stopped in"))
                .unwrap_or_else(|| panic!("{n} did not stop cleanly:\n{text}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "stop order:\n{text}");
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// The demo app's guid and the port of its instance 0.
async fn demo(client: &reqwest::Client, cell: SocketAddr) -> Option<(String, u64)> {
    let apps = get_json(client, &format!("https://{cell}/v3/apps")).await?;
    let guid = apps["resources"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == APP)?["guid"]
        .as_str()?
        .to_owned();
    let stats = get_json(
        client,
        &format!("https://{cell}/v3/apps/{guid}/processes/web/stats"),
    )
    .await?;
    let port = stats["resources"]
        .as_array()?
        .iter()
        .find(|s| s["index"] == 0 && s["state"] == "RUNNING")?["port"]
        .as_u64()?;
    Some((guid, port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_demo_scales_and_every_dashboard_query_has_data_then_stops_in_order() {
    let _cpu = crate::guard::cpu_heavy().await;
    let vm = VictoriaMetrics::start().await;
    let super::up_harness::DemoDir {
        dir,
        ports,
        data,
        file,
        ..
    } = super::up_harness::DemoDir::new("up-e2e", Some(&vm.url));

    let super::up_harness::Up {
        child: mut up,
        mut lines,
        banner,
    } = super::up_harness::start(&dir, &file, &[]).await;
    for name in [
        "doppler",
        "agent",
        "cell",
        "logcache",
        "storage",
        "autoscaler",
        "console",
    ] {
        assert!(
            banner.contains(&format!("starting {name:<11}ready in")),
            "{banner}"
        );
    }
    assert!(
        banner.contains(&format!("https://{}", ports.storage)),
        "{banner}"
    );
    // The console's link signs in with up's token.
    let token = std::fs::read_to_string(data.join("token")).unwrap_or_default();
    assert!(
        banner.contains(&format!(
            "open http://{}/#token={}",
            ports.console,
            token.trim()
        )),
        "{banner}"
    );
    assert!(
        banner.contains("export HYDRANT_SCHEDULER="),
        "non-default ports are exported:\n{banner}"
    );
    assert!(banner.contains("The demo app is pushed"), "{banner}");

    // `up` made a token in its data directory; every API needs it.
    let token = std::fs::read_to_string(data.join("token")).expect("up writes its token");
    let mode = std::fs::metadata(data.join("token")).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "the token file is private"
    );
    // Every HTTP port refuses a caller without it (the log cache answers 404, as Log
    // Cache does); only /healthz is open.
    // Every HTTP port is TLS with the CA `up` made; plain HTTP gets no answer.
    let tls = hydrant_runtime::https::ClientTls::ca_file(&data.join("certs").join("ca.pem"))
        .expect("up writes its CA");
    let plain = hydrant_runtime::https::plain_client()
        .get(format!("http://{}/healthz", ports.cell))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP is answered: {plain:?}");
    let untrusted = hydrant_runtime::https::plain_client()
        .get(format!("https://{}/healthz", ports.cell))
        .send()
        .await;
    assert!(
        untrusted.is_err(),
        "a certificate outside the system's roots is trusted"
    );
    let anonymous = hydrant_runtime::https::client(&tls).unwrap();
    for (what, method, url, status) in [
        (
            "cell API",
            "GET",
            format!("https://{}/v3/apps", ports.cell),
            401,
        ),
        (
            "cell push",
            "POST",
            format!("https://{}/v3/apps", ports.cell),
            401,
        ),
        (
            "doppler /metrics",
            "GET",
            format!("https://{}/metrics", ports.doppler_http),
            401,
        ),
        (
            "the Firehose over SSE",
            "GET",
            format!("https://{}/v2/read?log", ports.doppler_http),
            401,
        ),
        (
            "agent /metrics",
            "GET",
            format!("https://{}/metrics", ports.agent_http),
            401,
        ),
        (
            "log cache read",
            "GET",
            format!("https://{}/api/v1/read/x", ports.logcache),
            404,
        ),
        (
            "log cache /metrics",
            "GET",
            format!("https://{}/metrics", ports.logcache),
            404,
        ),
        (
            "storage SQL",
            "POST",
            format!("https://{}/api/v1/sql", ports.storage),
            401,
        ),
        (
            "storage PromQL",
            "GET",
            format!("https://{}/api/v1/query?query=up", ports.storage),
            401,
        ),
        (
            "autoscaler API",
            "GET",
            format!("https://{}/v1/apps", ports.autoscaler),
            401,
        ),
        (
            "cell /healthz",
            "GET",
            format!("https://{}/healthz", ports.cell),
            200,
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = anonymous.request(method, &url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{what}: {url}");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    let client = hydrant_runtime::https::client_builder(&tls)
        .unwrap()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (guid, port) = loop {
        if let Some(found) = demo(&client, ports.cell).await {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo app does not run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // A syslog drain for the demo, made with the CLI as a user would: a TCP sink here
    // takes what the agent sends.
    let (sink_addr, drained) = super::up_harness::tcp_sink().await;
    let out = std::process::Command::new(crate::hydrant_bin())
        .args(["drain", "create", "demo", &format!("syslog://{sink_addr}")])
        .args([
            "--scheduler",
            &ports.cell.to_string(),
            "--token",
            token.trim(),
        ])
        .arg("--tls-ca")
        .arg(data.join("certs").join("ca.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "drain create: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Traffic spread over a few seconds (rates need two samples), then a burning core.
    for i in 0..30 {
        let body = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect("demo answers")
            .text()
            .await
            .unwrap();
        assert!(body.starts_with("hello from demo/0"), "{body}");
        if i % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let burn = client
        .get(format!("http://127.0.0.1:{port}/burn?seconds=60"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(burn.contains("burning one core for 60s"), "{burn}");

    let history = format!(
        "https://{}/v1/apps/{guid}/scaling_histories",
        ports.autoscaler
    );
    eventually_within(
        "the autoscaler scales the demo out",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            let history = history.clone();
            async move {
                let Some(h) = get_json(&client, &history).await else {
                    return false;
                };
                h["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["status"] == 0 && r["new_instances"] == 2)
            }
        },
    )
    .await;
    // The new instance's lines went to the drain, as RFC 5424 with the app's guid.
    eventually_within(
        "the demo's drain gets its lines",
        Duration::from_secs(30),
        || async {
            let text = String::from_utf8_lossy(&drained.lock().unwrap()).into_owned();
            text.contains(&format!(" demo {guid} [APP/PROC/WEB/1] - [tags@47450 "))
        },
    )
    .await;
    // More traffic after the scale, so request rates cover the whole window.
    for _ in 0..10 {
        let _ = client.get(format!("http://127.0.0.1:{port}/")).send().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Every panel and annotation query returns data over the last 10 minutes.
    let range = format!("https://{}/api/v1/query_range", ports.storage);
    for (file, d) in dashboards() {
        for (place, expr) in queries(&d) {
            let expr = expr.replace(GUID, &guid);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let end = chrono::Utc::now().timestamp();
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("query", &expr)
                    .append_pair("start", &(end - 600).to_string())
                    .append_pair("end", &end.to_string())
                    .append_pair("step", "5")
                    .finish();
                let r = client
                    .post(&range)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form)
                    .send()
                    .await
                    .expect("query_range");
                let body: Value = r.json().await.unwrap_or_default();
                assert_eq!(body["status"], "success", "{file} {place}: {expr}: {body}");
                let has_data = body["data"]["result"].as_array().is_some_and(|series| {
                    series
                        .iter()
                        .any(|s| s["values"].as_array().is_some_and(|v| !v.is_empty()))
                });
                if has_data {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{file} {place}: {expr}: no data in 60 s: {body}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    // The Apps dashboard's variable lists the demo app (Grafana asks with start and end).
    let end = chrono::Utc::now().timestamp();
    let values = get_json(
        &client,
        &format!(
            "https://{}/api/v1/label/app_name/values?match[]=cpu&start={}&end={end}",
            ports.storage,
            end - 600
        ),
    )
    .await
    .expect("label values");
    assert!(
        values["data"].as_array().unwrap().iter().any(|v| v == APP),
        "{values}"
    );
    // Its guid variable lists the demo's guid for that name.
    let values = get_json(
        &client,
        &format!(
            "https://{}/api/v1/label/source_id/values?match[]={}&start={}&end={end}",
            ports.storage,
            form_urlencoded::byte_serialize(format!("cpu{{app_name=\"{APP}\"}}").as_bytes())
                .collect::<String>(),
            end - 600
        ),
    )
    .await
    .expect("label values");
    assert_eq!(values["data"], serde_json::json!([guid]), "{values}");

    // The storage sink delivered the same metrics to VictoriaMetrics.
    let vm_query = format!(
        "{}/api/v1/query?query=hydrant_doppler_ingress_envelopes_total",
        vm.url
    );
    eventually_within(
        "samples reach VictoriaMetrics",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let q = vm_query.clone();
            async move {
                get_json(&client, &q).await.is_some_and(|v| {
                    v["data"]["result"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                })
            }
        },
    )
    .await;

    // Ctrl-C: everything stops in order, within the grace period.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    let drained = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
    })
    .await;
    assert!(drained.is_ok(), "up did not stop:\n{rest}");
    let status = up.wait().await.unwrap();
    assert!(status.success(), "{status}\n{rest}");
    assert_stopped_in_order(&rest);
}

#[tokio::test]
async fn bad_config_files_are_refused_with_file_line_and_field() {
    let dir = Scratch::new("config-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hydrant.yaml");
    std::fs::write(
        &file,
        "storage:\n  retention: forever\nagent:\n  colour: blue\n",
    )
    .unwrap();
    let out = Command::new(hydrant_bin())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let path = file.display().to_string();
    assert!(
        err.contains(&format!(
            "{path}:2:14: storage.retention: invalid value 'forever'"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:4:3: agent.colour: unknown flag --colour")),
        "{err}"
    );

    // A component refuses to start on the same file, naming the same places.
    let out = Command::new(hydrant_bin())
        .arg("--config")
        .arg(&file)
        .arg("storage")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2:14: storage.retention"));

    // A valid file passes.
    std::fs::write(&file, "storage:\n  retention: 2d\n  no-wal: true\n").unwrap();
    let out = Command::new(hydrant_bin())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok (storage)"));
}

/// Values that parse but that a component refuses (`retention: 30m`, `tick: 500ms`,
/// `breaker-failures: 0`) fail `config check` too, all reported at once with file:line,
/// and each component refuses to start with the same messages.
#[tokio::test]
async fn config_check_reports_every_value_a_component_would_refuse() {
    let dir = Scratch::new("config-refused");
    let file = dir.join("hydrant.yaml");
    std::fs::write(
        &file,
        "storage:\n  retention: 30m\n  data-dir: data\nautoscaler:\n  tick: 500ms\n  breaker-failures: 0\n  actuator: webhook\n",
    )
    .unwrap();
    let out = Command::new(hydrant_bin())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let path = file.display().to_string();
    for expected in [
        format!("{path}:2:3: storage.retention: must be at least 1h"),
        format!("{path}:5:3: autoscaler.tick: must be at least 1s"),
        format!("{path}:6:3: autoscaler.breaker-failures: must be at least 1"),
        format!("{path}:7:3: autoscaler.actuator: webhook needs --webhook-url"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }

    // Start-up runs the same checks: every problem of the component at once.
    for (component, expected) in [
        (
            "autoscaler",
            &[
                "--tick must be at least 1s",
                "--breaker-failures must be at least 1",
                "--actuator webhook needs --webhook-url",
            ][..],
        ),
        ("storage", &["--retention must be at least 1h"][..]),
    ] {
        let out = Command::new(hydrant_bin())
            .arg("--config")
            .arg(&file)
            .arg(component)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{component} started");
        let err = String::from_utf8_lossy(&out.stderr);
        for e in expected {
            assert!(err.contains(e), "{component}: missing {e:?} in:\n{err}");
        }
    }
}
