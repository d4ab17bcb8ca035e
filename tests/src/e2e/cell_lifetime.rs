//! App instances never outlive their cell: `kill -9` of a real `hydrant cell` process, a
//! cell whose runtime is dropped without a stop (what a panicking test does), and a cell
//! starting on a data dir where an earlier run left instances behind.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use hydrant::cell::contract::InstanceState;
use hydrant::{agent, doppler};

use crate::guard::{Proc, Scratch};
use crate::{TestAgent, TestCell, TestDoppler, eventually, eventually_within, hydrant_bin};

/// Each instance runs a subshell and a `sleep` beside its leader: a whole process tree.
const TREE: &str = "(while :; do sleep 1; done) & sleep 1000";

/// Live (not zombie) processes whose process group is in `groups`: (pid, pgrp).
fn members(groups: &BTreeSet<i32>) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …"
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (f.first(), f.get(2).and_then(|p| p.parse().ok())) else {
            continue;
        };
        if *state != "Z" && groups.contains(&pgrp) {
            out.push((pid, pgrp));
        }
    }
    out
}

/// Pushes `instances` of [`TREE`] and returns their process groups once all run.
async fn push_trees(url: &str, name: &str, instances: u32) -> BTreeSet<i32> {
    let client = hydrant::apps::Client::new(url, None, hydrant_runtime::https::plain_client());
    let app = client
        .push(name, TREE, instances, 64, 64, &BTreeMap::new())
        .await
        .expect("push");
    let guid = app.guid;
    let found = std::sync::Mutex::new(BTreeSet::new());
    eventually("every instance running with its tree", || async {
        let Ok(stats) = client.stats(&guid).await else {
            return false;
        };
        let groups: BTreeSet<i32> = stats
            .iter()
            .filter(|s| matches!(s.state, InstanceState::Running | InstanceState::Starting))
            .filter_map(|s| s.detail.as_ref()?.pid)
            .map(|p| p as i32)
            .collect();
        // Leader, watcher, subshell and sleep in every group.
        let live = members(&groups);
        let ready = groups.len() == instances as usize
            && groups
                .iter()
                .all(|g| live.iter().filter(|(_, pg)| pg == g).count() >= 4);
        *found.lock().unwrap() = groups;
        ready
    })
    .await;
    found.into_inner().unwrap()
}

async fn all_gone(groups: &BTreeSet<i32>, what: &str) {
    eventually_within(what, Duration::from_secs(10), || async {
        members(groups).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_cell_leaves_no_instance_behind() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let a = TestAgent::start(agent::Config::default(), &[d.grpc]).await;
    let dir = Scratch::new("cell-kill9");
    let api = crate::servers::free_port();
    let mut cell = Proc::new(
        Command::new(hydrant_bin())
            .args([
                "cell",
                "--insecure-open",
                "--api",
                &api.to_string(),
                "--agent",
                &a.grpc.to_string(),
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start hydrant cell"),
    );
    crate::wait_healthy(api).await;
    let groups = push_trees(&format!("http://{api}"), "orphan-check", 2).await;

    cell.kill();
    all_gone(
        &groups,
        "no process of any instance survives kill -9 of its cell",
    )
    .await;
    a.stop().await;
    d.stop().await;
}

#[test]
fn a_dropped_runtime_takes_its_instances_with_it() {
    // The cell runs on a runtime of its own that is dropped without any stop, as when a
    // test panics with a cell inside it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (groups, data_dir) = rt.block_on(async {
        let d = TestDoppler::start(doppler::Config::default()).await;
        let a = TestAgent::start(agent::Config::default(), &[d.grpc]).await;
        let cell = TestCell::start(TestCell::config(a.grpc)).await;
        let groups = push_trees(&cell.url, "dropped", 2).await;
        let data_dir = cell.data_dir.clone();
        // Leak the handles: only the runtime's end may stop anything.
        std::mem::forget((d, a, cell));
        (groups, data_dir)
    });
    drop(rt);

    let check = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    check.block_on(all_gone(
        &groups,
        "no process of any instance survives its cell's runtime",
    ));
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_kills_what_an_earlier_run_left_in_its_data_dir() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let a = TestAgent::start(agent::Config::default(), &[d.grpc]).await;
    let mut config = TestCell::config(a.grpc);
    // An instance of an earlier run, as one without its watcher would be left: its own
    // process group, in an instance directory, with the instance environment.
    let instance_dir = config.data_dir.join("an-app-guid").join("0");
    std::fs::create_dir_all(&instance_dir).unwrap();
    let mut leftover = Proc::new(
        Command::new("/bin/sh")
            .args(["-c", TREE])
            .current_dir(&instance_dir)
            .env("CF_INSTANCE_GUID", "left-behind")
            .process_group(0)
            .stdout(Stdio::null())
            .spawn()
            .expect("start a leftover instance"),
    );
    let group = BTreeSet::from([leftover.child().id() as i32]);
    eventually("the leftover runs its tree", || async {
        members(&group).len() >= 2
    })
    .await;
    // A process that is merely inside the data dir, without the instance environment, is
    // not an instance and must survive.
    let bystander_dir = config.data_dir.join("inspecting");
    std::fs::create_dir_all(&bystander_dir).unwrap();
    let mut bystander = Proc::new(
        Command::new("sleep")
            .arg("1000")
            .current_dir(&bystander_dir)
            .process_group(0)
            .spawn()
            .expect("start a bystander"),
    );

    config.stop_grace = Duration::from_secs(1);
    let cell = TestCell::start(config).await;
    all_gone(&group, "the leftover instance's group is killed at start").await;
    let status = leftover.child().wait().expect("reap the leftover");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    assert!(
        bystander.child().try_wait().expect("bystander").is_none(),
        "a process without the instance environment is left alone"
    );
    bystander.kill();
    cell.stop().await;
    a.stop().await;
    d.stop().await;
}

/// A cell killed with `kill -9` and started again brings every app back with its guid,
/// command, quotas and instance count, and starts the instances; a deleted app stays
/// deleted. Cloud Controller keeps desired state in a database; the cell keeps it in its
/// data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_survive_kill_9_of_the_cell() {
    let dir = Scratch::new("cell-durable");
    let api = crate::servers::free_port();
    let agent = crate::listener().await.local_addr().unwrap(); // nothing listens
    let start = || {
        Proc::new(
            Command::new(hydrant_bin())
                .args(["cell", "--insecure-open", "--api", &api.to_string()])
                .args(["--agent", &agent.to_string()])
                .arg("--data-dir")
                .arg(dir.path())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("start hydrant cell"),
        )
    };
    let url = format!("http://{api}");
    let client = hydrant::apps::Client::new(&url, None, hydrant_runtime::https::plain_client());
    let running = |name: &'static str| {
        let client = &client;
        async move {
            let Ok(app) = client.find(name).await else {
                return 0;
            };
            client
                .stats(&app.guid)
                .await
                .unwrap_or_default()
                .iter()
                .filter(|s| s.state == InstanceState::Running)
                .count()
        }
    };

    let mut cell = start();
    crate::wait_healthy(api).await;
    let env = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
    let web = client
        .push("web", "sleep 600", 2, 64, 128, &env)
        .await
        .unwrap();
    let worker = client
        .push("worker", "sleep 600", 1, 64, 128, &Default::default())
        .await
        .unwrap();
    client.scale("worker", 2).await.unwrap();
    let gone = client
        .push("gone", "sleep 600", 1, 64, 128, &Default::default())
        .await
        .unwrap();
    client.delete("gone").await.unwrap();
    eventually_within("instances run", Duration::from_secs(20), || async {
        running("web").await == 2 && running("worker").await == 2
    })
    .await;
    eventually_within(
        "a deleted app's directory goes",
        Duration::from_secs(20),
        || async { !dir.path().join(&gone.guid).exists() },
    )
    .await;
    // A directory of an app the cell does not have (deleted while it was down).
    let stray = dir.path().join(uuid_like());
    std::fs::create_dir_all(stray.join("0")).unwrap();

    cell.kill();
    let mut cell = start();
    crate::wait_healthy(api).await;
    let web2 = client.find("web").await.unwrap();
    assert_eq!(web2.guid, web.guid, "the same guid");
    assert_eq!(client.find("worker").await.unwrap().guid, worker.guid);
    assert!(
        client.find("gone").await.is_err(),
        "a deleted app stays deleted ({})",
        gone.guid
    );
    eventually_within("instances run again", Duration::from_secs(20), || async {
        running("web").await == 2 && running("worker").await == 2
    })
    .await;
    let stored = std::fs::read_to_string(dir.path().join("apps.json")).unwrap();
    assert!(
        stored.contains("\"GREETING\"") && stored.contains("\"memory_mb\": 64"),
        "{stored}"
    );
    assert!(
        !stray.exists(),
        "the stray app directory was removed at start"
    );
    // Scaling down removes the stopped instance's directory.
    let worker_dir = dir.path().join(&worker.guid);
    assert!(worker_dir.join("1").exists());
    client.scale("worker", 1).await.unwrap();
    eventually_within(
        "the stopped instance's directory goes",
        Duration::from_secs(20),
        || async { !worker_dir.join("1").exists() },
    )
    .await;
    assert!(worker_dir.join("0").exists());
    cell.kill();
}

/// A name like an app guid.
fn uuid_like() -> String {
    "6d6c3a04-0c55-4b1f-9d39-2f1e8a0c1d99".to_owned()
}
