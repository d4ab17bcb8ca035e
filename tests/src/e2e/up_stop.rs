//! `hydrant up` stops everything in order however it is told to: SIGHUP (the terminal
//! closed) as Ctrl-C does, and a closed stdout (`hydrant up | head` once `head` has
//! exited), after which it says why on stderr. No component outlives it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

use super::up::{Ports, assert_stopped_in_order, config};
use crate::guard::Scratch;
use crate::{eventually_within, hydrant_bin};

/// Writes a config file for `up` under `dir`; storage remote-writes to a closed port.
fn setup(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let file = dir.join("hydrant.yaml");
    let text = config(
        &Ports::free(),
        &dir.join("data").display().to_string(),
        &policies.display().to_string(),
        Some("http://127.0.0.1:9"),
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn up(dir: &Path, file: &Path) -> Child {
    Command::new(hydrant_bin())
        .arg("--config")
        .arg(file)
        .arg("up")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start hydrant up")
}

/// Processes (other than zombies) whose command line names `dir`: the components.
fn left_in(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        });
        if !zombie && cmdline.contains(&needle) {
            out.push(cmdline);
        }
    }
    out
}

async fn no_component_left(dir: &Path) {
    eventually_within("no component left", Duration::from_secs(10), || async {
        left_in(dir).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_everything_in_order() {
    let dir = Scratch::new("up-hup");
    let file = setup(&dir);
    let mut up = up(&dir, &file);
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            out.push_str(&line);
            out.push('\n');
            if line.starts_with("Ctrl-C stops everything") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(ready, Ok(true)), "up did not come up:\n{out}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            out.push_str(&line);
            out.push('\n');
        }
    })
    .await;
    assert!(drained.is_ok(), "up did not stop:\n{out}");
    let status = up.wait().await.unwrap();
    assert!(status.success(), "{status}\n{out}");
    assert_stopped_in_order(&out);
    no_component_left(&dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_stops_everything_in_order() {
    let dir = Scratch::new("up-pipe");
    let file = setup(&dir);
    let mut up = up(&dir, &file);
    // Read up to the first component started, then close the pipe, as `hydrant up | head`
    // does once it has its lines.
    let mut stdout = BufReader::new(up.stdout.take().unwrap());
    let mut head = String::new();
    for _ in 0..10 {
        stdout.read_line(&mut head).await.unwrap();
        if head.contains("ready in") {
            break;
        }
    }
    assert!(head.contains("starting doppler"), "{head}");
    drop(stdout);
    let mut err = String::new();
    let mut stderr = up.stderr.take().unwrap();
    let done =
        tokio::time::timeout(Duration::from_secs(120), stderr.read_to_string(&mut err)).await;
    assert!(done.is_ok(), "up did not stop:\n{err}");
    let status = up.wait().await.unwrap();
    assert!(status.success(), "{status}\n{err}");
    assert!(
        err.contains("standard output is closed; stopping everything"),
        "up says why it stops:\n{err}"
    );
    // Whatever had started is stopped in order (the rest never started).
    let stopped: Vec<usize> = super::up::STOP_ORDER
        .iter()
        .filter_map(|n| err.find(&format!("stopping {n:<11}stopped in")))
        .collect();
    assert!(!stopped.is_empty(), "nothing was stopped:\n{err}");
    assert!(
        stopped.windows(2).all(|w| w[0] < w[1]),
        "stop order:\n{err}"
    );
    assert!(!err.contains("killed"), "{err}");
    no_component_left(&dir).await;
}
