//! The web console in a real browser: Debian's headless Chromium, driven over WebDriver,
//! against `hydrant up --demo` (the real binary, every component a process). The console
//! is opened with the link `up` prints; the test then reads what a user sees: the demo in
//! the apps list, its live log lines (timed against the log's own timestamp), a CPU chart
//! with data, the scale-out a burn causes, a policy error at its line, the platform's
//! health. Screenshots of each page are kept in the test's artefacts directory.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::up_harness::{self, POLICY};
use crate::browser::{Browser, artefacts_dir};

/// Longest a log line may take from the app's stdout to the page.
const LIVE_LOG_BOUND_MS: f64 = 1000.0;

/// The demo's policy with an unknown operator on line 5.
const BAD_POLICY: &str = "app: demo\ninstance_min_count: 1\ninstance_max_count: 2\nscaling_rules:\n  \
    - {metric_type: cpu, operator: '>>', threshold: 25, breach_duration: 3s, cool_down: 5s, adjustment: '+1'}\n";

/// The page's state as a script result: `true` once `css` matches an element.
fn exists(css: &str) -> String {
    format!("return document.querySelector({}) !== null", json!(css))
}

/// The `data-points` of chart `slug`, as a number (0 while it has none).
fn points(slug: &str) -> String {
    format!(
        "const c = document.querySelector('[data-testid=chart-{slug}]'); \
         return c ? Number(c.dataset.points || 0) : 0"
    )
}

/// The envelope timestamp (ms) of the newest log line of `guid` containing `text`.
async fn written_at(
    http: &reqwest::Client,
    logcache: &str,
    token: &str,
    guid: &str,
    text: &str,
) -> Option<f64> {
    let v: Value = http
        .get(format!(
            "{logcache}/api/v1/read/{guid}?envelope_types=LOG&limit=1000&descending=true"
        ))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["envelopes"]["batch"].as_array()?.iter().find_map(|e| {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(e["log"]["payload"].as_str()?)
            .ok()?;
        let ns: f64 = e["timestamp"].as_str()?.parse().ok()?;
        String::from_utf8_lossy(&payload)
            .contains(text)
            .then_some(ns / 1e6)
    })
}

async fn shot(browser: &Browser, dir: &Path, name: &str) {
    browser.screenshot(&dir.join(format!("{name}.png"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_demo_live_logs_charts_a_scale_out_and_policy_errors() {
    let _cpu = crate::guard::cpu_heavy().await;
    let t0 = std::time::Instant::now();
    let stage = |what: &str| println!("{:>6.1}s {what}", t0.elapsed().as_secs_f64());
    let up_harness::DemoDir {
        dir,
        ports,
        data,
        policies,
        file,
    } = up_harness::DemoDir::new("console-e2e", None);
    // `lines` stays open: `up` stops everything when its standard output closes.
    let up_harness::Up {
        child: mut up,
        mut lines,
        banner,
    } = up_harness::start(&dir, &file, &[]).await;
    let link = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("open "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no console link in the banner:\n{banner}"))
        .to_owned();
    let console = format!("http://{}", ports.console);
    assert!(link.starts_with(&format!("{console}/#token=")), "{link}");
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let token = token.trim();
    let tls =
        hydrant_runtime::https::ClientTls::ca_file(&data.join("certs").join("ca.pem")).unwrap();
    let http = hydrant_runtime::https::client(&tls).unwrap();
    let apps = hydrant::apps::Client::new(
        &format!("https://{}", ports.cell),
        Some(token.to_owned()),
        http.clone(),
    );
    let shots = artefacts_dir("console");
    let browser = Browser::start().await;
    stage("up is up");

    // Signed in by the link; the token leaves the address bar; the demo is listed.
    browser.goto(&link).await;
    browser
        .wait_for(
            "the apps page lists the demo",
            &exists(r#"[data-testid=apps-table] tr[data-app="demo"]"#),
            Duration::from_secs(30),
        )
        .await;
    assert!(!browser.current_url().await.contains("token="));
    browser
        .wait_for(
            "the demo runs 1 of 1 instances",
            r#"const r = document.querySelector('[data-testid=apps-table] tr[data-app="demo"]');
               return r !== null && r.textContent.includes('STARTED')
                   && [...r.cells].some((c) => c.textContent.trim() === '1/1')"#,
            Duration::from_secs(30),
        )
        .await;
    shot(&browser, &shots, "apps").await;
    stage("apps page");

    // Push an app from the page, scale it out and up, then delete it.
    browser.find("#push-name").await.send_keys("hello").await;
    browser
        .find("#push-command")
        .await
        .send_keys("while true; do echo hello from the console; sleep 1; done")
        .await;
    browser.find("#push-memory").await.send_keys("64").await;
    browser.find("#push-submit").await.click().await;
    browser
        .wait_for(
            "the push is acknowledged",
            "const r = document.querySelector('[data-testid=push-result]'); \
             return r !== null && r.textContent.startsWith('Pushed')",
            Duration::from_secs(30),
        )
        .await;
    let row_shows = |app: &str, counts: &str| {
        format!(
            "const r = document.querySelector('[data-testid=apps-table] tr[data-app=\"{app}\"]');
             return r !== null && [...r.cells].some((c) => c.textContent.trim() === '{counts}')"
        )
    };
    browser
        .wait_for(
            "hello runs 1/1",
            &row_shows("hello", "1/1"),
            Duration::from_secs(30),
        )
        .await;
    browser
        .eval(
            "const f = document.querySelector('[data-testid=scale-hello]');
             f.elements.instances.value = '2'; f.elements.memory_in_mb.value = '96';
             f.querySelector('[data-testid=scale-submit-hello]').click(); return true",
            vec![],
        )
        .await;
    crate::eventually_within(
        "the cell has hello at 2 × 96 MB",
        Duration::from_secs(30),
        || async {
            apps.find("hello")
                .await
                .is_ok_and(|a| a.instances == 2 && a.memory_in_mb == 96)
        },
    )
    .await;
    browser
        .wait_for(
            "hello runs 2/2",
            &row_shows("hello", "2/2"),
            Duration::from_secs(60),
        )
        .await;
    browser
        .find("[data-testid=delete-hello]")
        .await
        .click()
        .await;
    browser
        .find("[data-testid=confirm-delete-hello]")
        .await
        .click()
        .await;
    browser
        .wait_for(
            "hello leaves the list",
            r#"return document.querySelector('[data-testid=apps-table] tr[data-app="hello"]') === null"#,
            Duration::from_secs(30),
        )
        .await;
    assert!(matches!(
        apps.find("hello").await,
        Err(hydrant::apps::Error::NotFound(_))
    ));
    stage("push, scale, delete");

    // The app page: live logs, timed from the app's write to the page.
    browser.goto(&format!("{console}/#/apps/demo")).await;
    browser
        .wait_for(
            "the log view shows the demo's lines",
            "return document.querySelectorAll('[data-testid=logs] .log-line').length > 0",
            Duration::from_secs(30),
        )
        .await;
    browser
        .eval(
            "window.__seen = [];
             const box = document.querySelector('[data-testid=logs]');
             new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes) {
                 if (n.nodeType === 1 && n.classList.contains('log-line'))
                     window.__seen.push({ text: n.textContent, at: Date.now() });
             } }).observe(box, { childList: true, subtree: true });
             return true",
            vec![],
        )
        .await;
    let demo = apps.find("demo").await.expect("the demo app");
    let port = apps
        .stats(&demo.guid)
        .await
        .unwrap()
        .iter()
        .find_map(|s| s.detail.as_ref()?.port)
        .expect("the demo's port");
    let burn = http
        .get(format!("http://127.0.0.1:{port}/burn?seconds=120"))
        .send()
        .await
        .unwrap();
    assert!(burn.status().is_success());
    let marker = "burning one core for 120s";
    let shown = browser
        .wait_for(
            "the burn's log line on the page",
            &format!(
                "const s = (window.__seen || []).find((x) => x.text.includes({})); \
                 return s ? s.at : null",
                json!(marker)
            ),
            Duration::from_secs(10),
        )
        .await
        .as_f64()
        .unwrap();
    let logcache = format!("https://{}", ports.logcache);
    let written = written_at(&http, &logcache, token, &demo.guid, marker)
        .await
        .expect("the burn line in the log cache");
    let delay = shown - written;
    println!("a log line reached the page {delay:.0} ms after the app wrote it");
    assert!(
        delay < LIVE_LOG_BOUND_MS,
        "the line took {delay:.0} ms to reach the page"
    );
    let line_class = browser
        .eval(
            &format!(
                "const l = [...document.querySelectorAll('[data-testid=logs] .log-line')]
                   .find((n) => n.textContent.includes({})); return l ? l.className : null",
                json!(marker)
            ),
            vec![],
        )
        .await;
    assert!(
        line_class.as_str().unwrap_or_default().contains("out"),
        "{line_class}"
    );

    // A CPU chart with data from the storage nozzle, then the scale-out in the instances
    // table and the scaling history.
    browser
        .wait_for(
            "the CPU chart has points",
            &points("cpu-per-instance"),
            Duration::from_secs(60),
        )
        .await;
    browser
        .wait_for(
            "two instances and a 1→2 decision in the history",
            "return document.querySelectorAll('[data-testid=instances-table] tr[data-index]').length >= 2
                 && document.querySelector('[data-testid=history]').textContent.includes('1→2')",
            Duration::from_secs(120),
        )
        .await;
    let explain = browser
        .eval(
            "return document.querySelector('[data-testid=explain]').textContent",
            vec![],
        )
        .await;
    assert!(
        explain.as_str().unwrap_or_default().contains("cpu"),
        "{explain}"
    );
    shot(&browser, &shots, "app").await;
    stage("app page: logs, chart, scale-out");
    let _ = http
        .get(format!("http://127.0.0.1:{port}/burn?seconds=0"))
        .send()
        .await;

    // A policy edit with an error shows it at its line, and Save is refused.
    browser.goto(&format!("{console}/#/policies/demo")).await;
    browser
        .wait_for(
            "the editor holds the demo's policy",
            "const t = document.getElementById('policy-editor'); return t && t.value.includes('app: demo')",
            Duration::from_secs(15),
        )
        .await;
    browser
        .eval(
            "const t = document.getElementById('policy-editor'); t.value = arguments[0];
             t.dispatchEvent(new Event('input', { bubbles: true })); return true",
            vec![json!(BAD_POLICY)],
        )
        .await;
    let problem = browser
        .wait_for(
            "the problem at line 5",
            "const p = [...document.querySelectorAll('[data-testid=policy-problems] li[data-line=\"5\"]')]
                 .find((li) => li.textContent.includes('error'));
             return p ? p.textContent : null",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        problem.as_str().unwrap().starts_with("5:"),
        "line:column first: {problem}"
    );
    assert!(problem.as_str().unwrap().contains("operator"), "{problem}");
    assert_eq!(
        browser
            .eval(&exists(".gutter-error[data-line=\"5\"]"), vec![])
            .await,
        json!(true)
    );
    assert_eq!(
        browser
            .eval(
                "return document.getElementById('policy-save').disabled",
                vec![]
            )
            .await,
        json!(true)
    );
    shot(&browser, &shots, "policy").await;
    stage("policy error");
    // Nothing was saved: the file on disk is the good policy.
    assert_eq!(
        std::fs::read_to_string(policies.join("demo.yml")).unwrap(),
        POLICY
    );
    // A valid edit: the dry run over the last hour finds the scale-out the burn caused,
    // and Save writes the file.
    let edited = POLICY.replace("instance_max_count: 2", "instance_max_count: 3");
    browser
        .eval(
            "const t = document.getElementById('policy-editor'); t.value = arguments[0];
             t.dispatchEvent(new Event('input', { bubbles: true })); return true",
            vec![json!(edited)],
        )
        .await;
    browser
        .wait_for(
            "the edit checks clean and Save is enabled",
            "return !document.getElementById('policy-save').disabled
                 && document.querySelectorAll('.gutter-error').length === 0",
            Duration::from_secs(10),
        )
        .await;
    browser
        .eval(
            "document.getElementById('policy-dryrun-hours').value = '1';
             document.getElementById('policy-dryrun').click(); return true",
            vec![],
        )
        .await;
    let summary = browser
        .wait_for(
            "the dry run's summary",
            "const s = document.querySelector('[data-testid=dryrun-summary]');
             const e = document.querySelector('[data-testid=dryrun] .error');
             return s ? s.textContent : (e ? 'ERROR ' + e.textContent : null)",
            Duration::from_secs(60),
        )
        .await;
    let summary = summary.as_str().unwrap().to_owned();
    println!("dry run: {summary}");
    let scales: u32 = summary
        .split(" scale(s)")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no scale count in {summary:?}"));
    assert!(scales >= 1, "the dry run missed the scale-out: {summary}");
    browser
        .eval(
            "document.getElementById('policy-save').click(); return true",
            vec![],
        )
        .await;
    let saved = browser
        .wait_for(
            "the save's answer",
            "const r = document.querySelector('[data-testid=policy-save-result]');
             return r && /Saved|Not saved/.test(r.textContent) ? r.textContent : null",
            Duration::from_secs(15),
        )
        .await;
    assert!(saved.as_str().unwrap().starts_with("Saved"), "{saved}");
    assert_eq!(
        std::fs::read_to_string(policies.join("demo.yml")).unwrap(),
        edited
    );
    shot(&browser, &shots, "policy-dry-run").await;

    // The platform: every component healthy, and the throughput chart has data.
    browser.goto(&format!("{console}/#/platform")).await;
    browser
        .wait_for(
            "every component reported ok",
            "const rows = [...document.querySelectorAll('[data-testid=components] tr[data-component]')];
             return rows.length >= 7 && rows.every((r) => {
                 const b = r.querySelector('[data-testid^=status-]');
                 return b !== null && b.textContent.trim() === 'ok';
             })",
            Duration::from_secs(30),
        )
        .await;
    browser
        .wait_for(
            "the per-hop throughput chart has points",
            &points("envelopes-per-second-per-hop"),
            Duration::from_secs(60),
        )
        .await;
    shot(&browser, &shots, "platform").await;
    stage("platform");

    // The chart with 4 series of 25,000 points each (a day at 3.5 s steps): every point
    // is taken, and the time a full redraw takes is reported (BENCHMARKS.md).
    let drawn = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             import('/assets/chart.js').then((m) => {
               const host = document.createElement('div');
               host.style.width = '1200px';
               document.body.append(host);
               const n = 25000, end = Date.now(), start = end - n * 3500;
               const series = [0, 1, 2, 3].map((k) => {
                 const xs = new Array(n), ys = new Array(n);
                 for (let i = 0; i < n; i++) {
                   xs[i] = start + i * 3500;
                   ys[i] = 50 + 45 * Math.sin(i / 300 + k) + 5 * Math.random();
                 }
                 return { name: 'series ' + k, xs, ys };
               });
               const chart = new m.TimeSeriesChart(host, { unit: 'percent' });
               const t0 = performance.now();
               for (let r = 0; r < 20; r++) chart.setData(series, { start, end, step: 3.5 });
               const ms = (performance.now() - t0) / 20;
               const points = Number(host.dataset.points);
               chart.destroy();
               host.remove();
               done({ ms, points });
             }, (e) => done({ error: String(e) }));",
            vec![],
        )
        .await;
    assert_eq!(drawn["points"], json!(100_000), "{drawn}");
    println!(
        "a chart of 4 × 25,000 points redraws in {:.1} ms",
        drawn["ms"].as_f64().unwrap_or(f64::NAN)
    );

    // A phone's screen.
    browser.set_window_size(390, 844).await;
    browser.goto(&format!("{console}/#/apps/demo")).await;
    browser
        .wait_for(
            "the app page on a phone",
            &exists("[data-testid=instances-table] tr[data-index]"),
            Duration::from_secs(15),
        )
        .await;
    shot(&browser, &shots, "phone").await;

    let errors = browser.js_errors().await;
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    drop(browser);
    stage("phone");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(_)) = lines.next_line().await {}
        up.wait().await
    })
    .await
    .expect("up stops")
    .unwrap();
    stage("up stopped");
    assert!(status.success(), "{status}");
}
