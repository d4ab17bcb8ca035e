//! `hydrant up`'s supervisor. Each component runs as a child process of this same binary
//! (`hydrant doppler …`), so `up` takes exactly the code paths of running components one by
//! one. The supervisor starts them in order and waits for each `/healthz`, watches them,
//! and stops them in a given order, each within a grace period, killing the ones that
//! overrun.
//!
//! Children run in their own process group, so a Ctrl-C at the terminal reaches only the
//! supervisor, which then stops them in order. Each child's stdin is a pipe from the
//! supervisor and children started with [`SUPERVISED_ENV`] stop when it closes, so they
//! do not outlive a supervisor that was killed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hydrant_runtime::shutdown::SUPERVISED_ENV;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStdin, Command};

/// Time between two health probes while a component starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Lines of a component's log shown when it fails.
const LOG_TAIL_LINES: usize = 15;

/// How often a slow stop is reported.
const SLOW_REPORT: Duration = Duration::from_secs(3);

/// A component to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its name: also the log file's (`<log_dir>/<name>.log`).
    pub name: &'static str,
    /// Arguments after the binary: the subcommand and its flags.
    pub args: Vec<OsString>,
    /// URL answering 200 once the component is ready.
    pub health: String,
}

/// Errors supervising components.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process could not be started.
    #[error("{name}: cannot start: {source}")]
    Spawn {
        /// Component.
        name: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The health probes' HTTP client could not be built (a bad CA).
    #[error("health probes: {0}")]
    Client(#[from] hydrant_runtime::https::Error),
    /// The log directory or a log file could not be created.
    #[error("{path}: {source}")]
    Log {
        /// The file or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The component exited while starting.
    #[error("{name} exited while starting ({status}); the end of {log}:\n{tail}")]
    Exited {
        /// Component.
        name: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: String,
        /// The last lines of its log.
        tail: String,
    },
    /// The component did not become healthy in time.
    #[error("{name} was not healthy after {waited:?} ({health}); the end of {log}:\n{tail}")]
    Unhealthy {
        /// Component.
        name: &'static str,
        /// Time waited.
        waited: Duration,
        /// The probe URL.
        health: String,
        /// Its log file.
        log: String,
        /// The last lines of its log.
        tail: String,
    },
}

/// What happens while stopping, for the caller to show.
#[derive(Debug, Clone, PartialEq)]
pub enum StopEvent {
    /// SIGTERM sent.
    Stopping(&'static str),
    /// Still running after this long.
    Slow(&'static str, Duration),
    /// Exited within the grace period.
    Stopped(&'static str, Duration, Option<i32>),
    /// Killed after the grace period.
    Killed(&'static str, Duration),
}

#[derive(Debug)]
struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
    /// Held open while the child should run.
    _stdin: Option<ChildStdin>,
}

/// Why a data directory cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live supervisor holds it.
    #[error("another `hydrant up` (pid {pid}) uses {dir}; stop it, or pass another --data-dir")]
    Held {
        /// The holder.
        pid: i32,
        /// The directory.
        dir: String,
    },
    /// The directory or its lock file cannot be written.
    #[error("{path}: {source}")]
    Io {
        /// What could not be written.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Marks a data directory as used by one `hydrant up`: `<dir>/up.pid`, removed on drop.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Takes the directory, unless a live process holds it already (a stale file left by
    /// a killed supervisor is taken over).
    pub fn take(dir: &Path) -> Result<DirLock, LockError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| LockError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("up.pid");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<i32>()
            && pid != std::process::id() as i32
            // Only "no such process" means the holder is gone (EPERM: alive, not ours).
            && kill(Pid::from_raw(pid), None) != Err(nix::errno::Errno::ESRCH)
        {
            return Err(LockError::Held {
                pid,
                dir: dir.display().to_string(),
            });
        }
        std::fs::write(&path, format!("{}\n", std::process::id())).map_err(io(&path))?;
        Ok(DirLock { path })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs and watches child components.
#[derive(Debug)]
pub struct Supervisor {
    exe: PathBuf,
    log_dir: PathBuf,
    http: reqwest::Client,
    running: Vec<Running>,
}

impl Supervisor {
    /// A supervisor starting `exe` and writing each child's output under `log_dir`.
    pub fn new(
        exe: PathBuf,
        log_dir: &Path,
        tls: &hydrant_runtime::https::ClientTls,
    ) -> Result<Supervisor, Error> {
        std::fs::create_dir_all(log_dir).map_err(|source| Error::Log {
            path: log_dir.display().to_string(),
            source,
        })?;
        Ok(Supervisor {
            exe,
            log_dir: log_dir.to_owned(),
            http: hydrant_runtime::https::client_builder(tls)?
                .timeout(Duration::from_secs(2))
                .build()
                .map_err(hydrant_runtime::https::Error::from)?,
            running: Vec::new(),
        })
    }

    /// The log file of component `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// Starts `spec` and waits until its health URL answers 200, at most `timeout`.
    /// Returns the time it took.
    pub async fn start(&mut self, spec: &Spec, timeout: Duration) -> Result<Duration, Error> {
        let started = Instant::now();
        let log = self.log_path(spec.name);
        let log_err = |source| Error::Log {
            path: log.display().to_string(),
            source,
        };
        // Appended to, so an earlier run's log stays readable; a header marks each start.
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(log_err)?;
        let header = format!(
            "--- hydrant up: starting {} at {} ---\n",
            spec.name,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        std::io::Write::write_all(&mut out, header.as_bytes()).map_err(log_err)?;
        let err = out.try_clone().map_err(log_err)?;
        let mut child = Command::new(&self.exe)
            .args(&spec.args)
            .env(SUPERVISED_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                name: spec.name,
                source,
            })?;
        let stdin = child.stdin.take();
        self.running.push(Running {
            name: spec.name,
            child,
            log: log.clone(),
            _stdin: stdin,
        });
        let index = self.running.len() - 1;
        loop {
            if let Ok(Some(status)) = self.running[index].child.try_wait() {
                let r = self.running.remove(index);
                return Err(Error::Exited {
                    name: spec.name,
                    status,
                    log: log.display().to_string(),
                    tail: tail(&r.log),
                });
            }
            // Healthy, and the answer is our child's: another process that has the port
            // answers with its own pid.
            let pid = self.running[index].child.id();
            let answer = match self.http.get(&spec.health).send().await {
                Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                _ => None,
            };
            let healthy = answer
                .as_ref()
                .is_some_and(|v| v["pid"].as_u64() == pid.map(u64::from));
            if healthy {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(Error::Unhealthy {
                    name: spec.name,
                    waited: started.elapsed(),
                    health: spec.health.clone(),
                    log: log.display().to_string(),
                    tail: tail(&log),
                });
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The HTTP client of the health probes (trusting the components' CA).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// Waits until any child exits; returns its name, status and the end of its log. Pends
    /// forever when nothing runs.
    pub async fn exited(&mut self) -> (&'static str, ExitStatus, String) {
        if self.running.is_empty() {
            return std::future::pending().await;
        }
        let waits = self
            .running
            .iter_mut()
            .map(|r| Box::pin(r.child.wait()))
            .collect::<Vec<_>>();
        let (status, index, _) = futures::future::select_all(waits).await;
        let r = self.running.remove(index);
        let status = status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(1));
        (r.name, status, tail(&r.log))
    }

    /// Stops every child: those named in `order` first, in that order, then the rest in
    /// reverse start order. Each gets SIGTERM and `grace` to exit, then SIGKILL.
    pub async fn stop(
        &mut self,
        order: &[&str],
        grace: Duration,
        mut report: impl FnMut(StopEvent),
    ) {
        let mut sequence: Vec<Running> = Vec::new();
        for name in order {
            if let Some(i) = self.running.iter().position(|r| r.name == *name) {
                sequence.push(self.running.remove(i));
            }
        }
        sequence.extend(self.running.drain(..).rev());
        for mut r in sequence {
            report(StopEvent::Stopping(r.name));
            let started = Instant::now();
            if let Some(pid) = r.child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            loop {
                let left = grace.saturating_sub(started.elapsed());
                if left.is_zero() {
                    // The whole process group: nothing the component started lingers.
                    if let Some(pid) = r.child.id() {
                        let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
                    }
                    let _ = r.child.start_kill();
                    let _ = r.child.wait().await;
                    report(StopEvent::Killed(r.name, started.elapsed()));
                    break;
                }
                match tokio::time::timeout(left.min(SLOW_REPORT), r.child.wait()).await {
                    Ok(status) => {
                        let code = status.ok().and_then(|s| s.code());
                        report(StopEvent::Stopped(r.name, started.elapsed(), code));
                        break;
                    }
                    Err(_) if started.elapsed() < grace => {
                        report(StopEvent::Slow(r.name, started.elapsed()));
                    }
                    Err(_) => {}
                }
            }
        }
    }

    /// Names of the running children, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|r| r.name).collect()
    }
}

/// What a component's `/healthz` answer says: its `status` field (`ok`, `degraded`, …),
/// else `ok` or `unhealthy` by the HTTP status, with the body; `unreachable` with the
/// error when no answer came. `request` is the GET, with whatever timeout the caller wants.
pub async fn health_of(request: reqwest::RequestBuilder) -> (String, serde_json::Value) {
    match request.send().await {
        Ok(r) => {
            let code = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let status = body["status"]
                .as_str()
                .unwrap_or(if code.is_success() { "ok" } else { "unhealthy" })
                .to_owned();
            (status, body)
        }
        Err(e) => (
            "unreachable".to_owned(),
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

/// The last lines of a log file, from the latest start on.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let latest = text.rfind("--- hydrant up: starting ").map_or(0, |i| i);
    let lines: Vec<&str> = text[latest..].lines().skip(1).collect();
    let from = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &'static str, script: &str) -> Spec {
        Spec {
            name,
            args: vec!["-c".into(), script.into()],
            // Nothing listens on port 9 (discard) on loopback in the test environment.
            health: "http://127.0.0.1:9/healthz".into(),
        }
    }

    fn scratch() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!("hydrant-up-{}-{n}", std::process::id()))
    }

    #[tokio::test]
    async fn a_component_that_exits_while_starting_shows_its_log() {
        let dir = scratch();
        let mut s = Supervisor::new("/bin/sh".into(), &dir, &Default::default()).unwrap();
        let e = s
            .start(
                &spec("broken", "echo 'bind: address in use' >&2; exit 3"),
                Duration::from_secs(10),
            )
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("broken exited while starting"), "{text}");
        assert!(text.contains("address in use"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_supervisor_per_data_dir() {
        let dir = scratch();
        let lock = DirLock::take(&dir).unwrap();
        // The same process may take it again (a restart in a test); another live one may not.
        std::fs::write(dir.join("up.pid"), "1\n").unwrap();
        let e = DirLock::take(&dir).unwrap_err();
        assert!(matches!(e, LockError::Held { pid: 1, .. }), "{e}");
        // A pid that is not running is stale.
        std::fs::write(dir.join("up.pid"), format!("{}\n", i32::MAX)).unwrap();
        let again = DirLock::take(&dir).unwrap();
        drop(lock);
        drop(again);
        assert!(!dir.join("up.pid").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A stand-in `/healthz` that answers with the pid in `pid_file` (what the child wrote).
    async fn health_server(pid_file: std::path::PathBuf) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = axum::Router::new().route(
                "/healthz",
                axum::routing::get(move || {
                    let pid_file = pid_file.clone();
                    async move {
                        let pid: u64 = std::fs::read_to_string(&pid_file)
                            .ok()
                            .and_then(|p| p.trim().parse().ok())
                            .unwrap_or(0);
                        axum::Json(serde_json::json!({"status": "ok", "pid": pid}))
                    }
                }),
            );
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_component_that_dies_later_is_reported_with_its_log() {
        let dir = scratch();
        let mut s = Supervisor::new("/bin/sh".into(), &dir, &Default::default()).unwrap();
        // Healthy once the child has written its pid, which the stand-in server reports.
        let pid_file = dir.join("flaky.pid");
        let addr = health_server(pid_file.clone()).await;
        let mut spec = spec(
            "flaky",
            &format!(
                "echo $$ > {}; sleep 0.3; echo 'panicked at storage' >&2; exit 101",
                pid_file.display()
            ),
        );
        spec.health = format!("http://{addr}/healthz");
        s.start(&spec, Duration::from_secs(5)).await.unwrap();
        let (name, status, tail) = tokio::time::timeout(Duration::from_secs(5), s.exited())
            .await
            .unwrap();
        assert_eq!((name, status.code()), ("flaky", Some(101)));
        assert!(tail.contains("panicked at storage"), "{tail}");
        assert!(s.names().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Another process answering on the component's port is not the component: `up` once
    /// reported six components "ready in 0.0s" that were an earlier `up`'s.
    #[tokio::test]
    async fn a_port_answered_by_another_process_is_not_readiness() {
        let dir = scratch();
        let mut s = Supervisor::new("/bin/sh".into(), &dir, &Default::default()).unwrap();
        let other = dir.join("other.pid");
        std::fs::write(&other, "1\n").unwrap();
        let addr = health_server(other).await;
        let mut spec = spec("impostor", "sleep 30");
        spec.health = format!("http://{addr}/healthz");
        let e = s
            .start(&spec, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Unhealthy {
                    name: "impostor",
                    ..
                }
            ),
            "{e}"
        );
        s.stop(&["impostor"], Duration::from_secs(2), |_| {}).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unhealthy_component_times_out_and_stops_in_order_with_a_kill_for_the_stubborn() {
        let dir = scratch();
        let mut s = Supervisor::new("/bin/sh".into(), &dir, &Default::default()).unwrap();
        let e = s
            .start(&spec("quiet", "sleep 30"), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unhealthy { name: "quiet", .. }), "{e}");
        // "quiet" is still running (start failed on health only); add a stubborn one.
        let _ = s
            .start(
                &spec("stubborn", "trap '' TERM; while :; do sleep 0.1; done"),
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(s.names(), vec!["quiet", "stubborn"]);
        let mut events = Vec::new();
        s.stop(&["stubborn"], Duration::from_millis(700), |e| {
            events.push(e)
        })
        .await;
        assert!(
            matches!(events[0], StopEvent::Stopping("stubborn")),
            "{events:?}"
        );
        assert!(
            matches!(events[1], StopEvent::Killed("stubborn", _)),
            "{events:?}"
        );
        assert!(
            matches!(events[2], StopEvent::Stopping("quiet")),
            "{events:?}"
        );
        assert!(
            matches!(events[3], StopEvent::Stopped("quiet", _, _)),
            "{events:?}"
        );
        assert!(s.names().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
