//! PromQL diffed against Prometheus 2.42 itself. One generated data set (counters with
//! resets, gauges with gaps, NaN and ±Inf, classic histograms, unicode and escaped label
//! values, 200-series families, jittered timestamps) goes to Prometheus as OpenMetrics
//! backfilled by `promtool tsdb create-blocks-from openmetrics`, and to the storage nozzle
//! through its import API. Every expression of [`QUERIES`] is then asked of both, as an
//! instant query at two times and as a range query with an unaligned start and step, and
//! the answers must agree: the same status and error type, the same series with the same
//! labels (the metric name included), the same timestamps, values within 1e-6 relative
//! (NaN equal to NaN), and for `sort`/`sort_desc` the same order.
//!
//! Windows are left-open in Hydrant (Prometheus 3) and closed in Prometheus 2.42; every
//! sample timestamp here avoids the whole and half seconds that query times, ranges and
//! subquery steps land on, so no sample sits on a window's edge and the two agree.

use std::fmt::Write as _;
use std::time::Duration;

use hydrant::doppler;

use super::promql_queries::QUERIES;
use super::storage::{TestStorage, differ, get};
use crate::guard::Scratch;
use crate::servers::Prometheus;
use crate::{TestDoppler, eventually_within};

/// Samples every this many ms, before jitter.
const INTERVAL_MS: i64 = 15_000;

/// Samples per series: 150 minutes.
const STEPS: i64 = 600;

/// A deterministic xorshift generator, so every run compares the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[0, n)`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[lo, hi)`, rounded to 3 decimals.
    fn float(&mut self, lo: f64, hi: f64) -> f64 {
        let x = lo + (hi - lo) * (self.below(1_000_000) as f64 / 1e6);
        (x * 1000.0).round() / 1000.0
    }
}

/// One generated series: name, labels (in the order written), samples (ms, value).
struct Gen {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    points: Vec<(i64, f64)>,
}

/// The sample time of step `i` of a series: jittered by up to ±2 s, never on a whole or
/// half second (where windows end), and exact through OpenMetrics' float seconds (which
/// Prometheus truncates to ms).
fn sample_time(base: i64, i: i64, rng: &mut Rng) -> i64 {
    let mut t = base + i * INTERVAL_MS + rng.below(4_000) as i64 - 2_000;
    loop {
        let ms = t.rem_euclid(1000);
        let text: f64 = format!("{}.{:03}", t.div_euclid(1000), ms).parse().unwrap();
        if ms != 0 && ms != 500 && (text * 1000.0) as i64 == t {
            return t;
        }
        t += 1;
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The data set, starting at `base` (ms, a whole second).
fn generate(base: i64) -> Vec<Gen> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let mut series = |name,
                      labels: Vec<(&'static str, String)>,
                      rng: &mut Rng,
                      f: &mut dyn FnMut(i64, &mut Rng) -> Option<f64>| {
        let mut points = Vec::new();
        for i in 0..STEPS {
            let t = sample_time(base, i, rng);
            if let Some(v) = f(i, rng) {
                points.push((t, v));
            }
        }
        out.push(Gen {
            name,
            labels,
            points,
        });
    };
    // Counters, two with resets.
    for job in ["api", "web"] {
        for inst in 0..3 {
            for code in ["200", "500"] {
                let mut total = 0.0;
                let resets = job == "api" && inst == 1;
                let labels = vec![
                    ("job", job.to_owned()),
                    ("instance", format!("i{inst}")),
                    ("code", code.to_owned()),
                ];
                series("http_requests_total", labels, &mut rng, &mut |i, r| {
                    if resets && (i == 200 || i == 450) {
                        total = 0.0;
                    }
                    total += r.below(if code == "200" { 10 } else { 2 }) as f64;
                    Some(total)
                });
            }
        }
    }
    for inst in 0..3 {
        for cpu in 0..2 {
            for mode in ["idle", "user", "system"] {
                let mut total = 1000.0 * f64::from(inst + 1);
                let labels = vec![
                    ("instance", format!("i{inst}")),
                    ("cpu", cpu.to_string()),
                    ("mode", mode.to_owned()),
                ];
                series("node_cpu_seconds_total", labels, &mut rng, &mut |_, r| {
                    total += r.float(0.0, 15.0);
                    Some((total * 1000.0).round() / 1000.0)
                });
            }
        }
    }
    // Gauges with a 15-minute gap and a late start.
    for inst in 0..3 {
        for app in ["a", "b"] {
            let mut v = 1e8;
            let labels = vec![("instance", format!("i{inst}")), ("app", app.to_owned())];
            series("memory_bytes", labels, &mut rng, &mut |i, r| {
                v += r.float(-1e6, 1e6);
                let gap = inst == 0 && app == "a" && (100..160).contains(&i);
                let late = inst == 2 && app == "b" && i < 300;
                (!gap && !late).then_some(v.round())
            });
        }
    }
    // NaN and ±Inf.
    for sensor in 1..=4 {
        let labels = vec![("sensor", format!("s{sensor}"))];
        series("temperature", labels, &mut rng, &mut |i, r| {
            Some(match sensor {
                2 if i % 37 == 0 => f64::NAN,
                3 if i == 250 => f64::INFINITY,
                3 if i == 251 => f64::NEG_INFINITY,
                4 if (100..110).contains(&i) => f64::NAN,
                _ => r.float(15.0, 30.0),
            })
        });
    }
    // A classic histogram per job.
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
    for job in ["api", "web"] {
        let mut counts = [0.0; 6];
        let (mut sum, mut count) = (0.0, 0.0);
        let mut steps = Vec::new();
        for _ in 0..STEPS {
            for _ in 0..rng.below(20) {
                let x = rng.float(0.0, 1.5);
                for (k, b) in bounds.iter().enumerate() {
                    if *b == "+Inf" || x <= b.parse::<f64>().unwrap() {
                        counts[k] += 1.0;
                    }
                }
                sum += x;
                count += 1.0;
            }
            steps.push((counts, (sum * 1000.0).round() / 1000.0, count));
        }
        for (k, le) in bounds.iter().enumerate() {
            let labels = vec![("job", job.to_owned()), ("le", (*le).to_owned())];
            series("latency_seconds_bucket", labels, &mut rng, &mut |i, _| {
                Some(steps[i as usize].0[k])
            });
        }
        let labels = vec![("job", job.to_owned())];
        series(
            "latency_seconds_sum",
            labels.clone(),
            &mut rng,
            &mut |i, _| Some(steps[i as usize].1),
        );
        series("latency_seconds_count", labels, &mut rng, &mut |i, _| {
            Some(steps[i as usize].2)
        });
    }
    // A wide family.
    for shard in 0..200 {
        let labels = vec![
            ("shard", format!("{shard:03}")),
            ("zone", format!("z{}", shard % 4)),
        ];
        series("load", labels, &mut rng, &mut |_, r| {
            Some(r.float(0.0, 100.0))
        });
    }
    for (job, inst, v) in [("api", "i0", 1.0), ("api", "i1", 0.0), ("web", "i0", 1.0)] {
        let labels = vec![("job", job.to_owned()), ("instance", inst.to_owned())];
        series("up", labels, &mut rng, &mut |_, _| Some(v));
    }
    let labels = vec![
        ("city", "Zürich".to_owned()),
        ("note", "日本語".to_owned()),
        ("path", "/a b\"c\\d".to_owned()),
    ];
    series("weird", labels, &mut rng, &mut |i, _| Some(i as f64));
    out
}

/// The data as OpenMetrics (seconds) for promtool, and as Prometheus text (ms) for
/// Hydrant's import API.
fn render(data: &[Gen]) -> (String, String) {
    let (mut om, mut text) = (String::new(), String::new());
    for g in data {
        let labels: Vec<String> = g
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let head = format!("{}{{{}}}", g.name, labels.join(","));
        for (t, v) in &g.points {
            let v = hydrant_storage::promql::format_value(*v);
            let _ = writeln!(om, "{head} {v} {}.{:03}", t / 1000, t % 1000);
            let _ = writeln!(text, "{head} {v} {t}");
        }
    }
    om.push_str("# EOF\n");
    (om, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_answers_match_prometheus_2_42() {
    // 160 minutes of data ending ten minutes ago, from a whole minute.
    let now = chrono::Utc::now().timestamp();
    let base = (now - 170 * 60) / 60 * 60 * 1000;
    let data = generate(base);
    let (om, text) = render(&data);
    let samples: usize = data.iter().map(|g| g.points.len()).sum();
    let prom = Prometheus::start_with(&om).await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("promql-diff");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let imported = hydrant_runtime::https::plain_client()
        .post(format!("{}/api/v1/import/prometheus", storage.url))
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 204, "{}", imported.text().await.unwrap());
    // Both hold every sample (counted per family: the name must stay to keep them apart).
    let mut names: Vec<&str> = data.iter().map(|g| g.name).collect();
    names.sort_unstable();
    names.dedup();
    let count = names
        .iter()
        .map(|n| format!("sum(count_over_time({n}[1d]))"))
        .collect::<Vec<_>>()
        .join(" + ");
    let after = ((base + STEPS * INTERVAL_MS) / 1000 + 60).to_string();
    for (who, url) in [("prometheus", &prom.url), ("hydrant", &storage.url)] {
        eventually_within(
            "every sample queryable",
            Duration::from_secs(60),
            || async {
                let params = [("query", count.clone()), ("time", after.clone())];
                let v = get(&format!("{url}/api/v1/query"), &params).await;
                let held =
                    v["data"]["result"][0]["value"][1].as_str() == Some(&samples.to_string());
                if !held {
                    eprintln!("{who} holds {v} of {samples} samples");
                }
                held
            },
        )
        .await;
    }

    // Query times on half seconds; samples never are.
    let at = |s: i64| format!("{}.5", base / 1000 + s);
    let instants = [at(100 * 60), at(140 * 60)];
    let (start, end, step) = (at(40 * 60), at(145 * 60), "67");
    let mut failures = Vec::new();
    let mut with_data = 0;
    for q in QUERIES {
        let mut asks: Vec<(&str, Vec<(&str, String)>)> = instants
            .iter()
            .map(|t| {
                (
                    "query",
                    vec![("query", (*q).to_owned()), ("time", t.clone())],
                )
            })
            .collect();
        if !q.starts_with("sort") {
            asks.push((
                "query_range",
                vec![
                    ("query", (*q).to_owned()),
                    ("start", start.clone()),
                    ("end", end.clone()),
                    ("step", step.to_owned()),
                ],
            ));
        }
        let mut any = false;
        for (api, params) in asks {
            let ours = get(&format!("{}/api/v1/{api}", storage.url), &params).await;
            let theirs = get(&format!("{}/api/v1/{api}", prom.url), &params).await;
            match differ(q, &ours, &theirs, true) {
                Ok(data) => any |= data,
                Err(why) => {
                    failures.push(format!("{api} {q} at {:?}: {why}", params[1]));
                    break;
                }
            }
        }
        with_data += usize::from(any);
    }
    eprintln!(
        "{} expressions over {samples} samples; {with_data} answered with data",
        QUERIES.len()
    );
    assert!(QUERIES.len() >= 150);
    assert!(
        failures.is_empty(),
        "{} of {} expressions differ from Prometheus 2.42:\n{}",
        failures.len(),
        QUERIES.len(),
        failures.join("\n")
    );
    assert!(
        with_data * 10 >= QUERIES.len() * 9,
        "only {with_data} expressions returned data: the comparison proves too little"
    );
    storage.stop().await;
    d.stop().await;
}
