//! Launching and supervising one instance: a `/bin/sh -c COMMAND` child in its own process
//! group and working directory, its stdout/stderr pumped line by line into log envelopes,
//! graceful stops (SIGTERM to the group, SIGKILL after the grace period), and exit reports
//! that feed the converger (crash → backoff → restart). A watcher in each instance's group
//! kills it when the cell ends, however it ends (see `WATCHED`).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::logs::{AppTags, LineSplitter, RateLimit, Verdict};
use super::model::{Instance, State};
use super::monitor::Usage;
use super::usage;
use super::{App, Cell, Slot};

/// Read size for instance output pipes.
const PIPE_READ_BYTES: usize = 64 * 1024;

/// How long to wait for output pumps after an instance exits (a process that left the
/// group may hold the pipe open forever).
const PUMP_DRAIN: Duration = Duration::from_secs(2);

/// A live instance process.
#[derive(Debug)]
pub struct Handle {
    /// Process group (= the leader's pid).
    pub pgid: i32,
    /// Working directory.
    pub dir: PathBuf,
    /// `PORT` given to the instance.
    pub port: u16,
    /// Fires to stop the instance gracefully.
    pub stop: CancellationToken,
    /// Set when the cell killed it for exceeding its memory quota.
    pub oom: Arc<AtomicBool>,
    /// Its cgroup, when confined.
    pub cgroup: Option<PathBuf>,
    /// Previous CPU sample (ticks, when) for rate computation.
    pub cpu_prev: Option<(u64, Instant)>,
}

/// The shell script an instance starts as: a watcher joins the instance's process group,
/// then the leader becomes the app's own `/bin/sh -c COMMAND` (same pid, so the group id
/// and exit status are the app's).
///
/// The watcher blocks reading the leader's stdin, a pipe whose only writer is the cell.
/// Whenever the cell ends (a stop, a panic, a dropped runtime, `kill -9`) the pipe closes,
/// `read` returns, and the watcher kills its whole group: an instance never outlives its
/// cell. It ignores the graceful SIGTERM so the guarantee holds during a stop's grace
/// period; the cell kills the group (watcher included) once the leader has exited. The app
/// itself gets `/dev/null` as stdin, as before.
const WATCHED: &str = "exec 3<&0
(trap '' TERM INT HUP; read -r _ <&3; kill -9 0) </dev/null >/dev/null 2>&1 &
exec /bin/sh -c \"$1\" 3<&- </dev/null";

/// `$0` of the watching script (shown by `ps` until the app's shell replaces it).
const INSTANCE_ARGV0: &str = "hydrant-instance";

/// Kills what an earlier run of a cell on `data_dir` left running (see
/// [`usage::leftover_groups`]): normally nothing, since every instance's watcher kills its
/// group when its cell ends, but a watcher can itself have been killed.
pub(crate) fn reap_leftovers(data_dir: &Path) {
    let own = nix::unistd::getpgrp().as_raw();
    let groups = usage::leftover_groups(data_dir, own);
    for pgid in &groups {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
    }
    if !groups.is_empty() {
        tracing::warn!(
            groups = ?groups,
            data_dir = %data_dir.display(),
            "cell: killed instances an earlier run left behind"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// Starts instance `index` of `app` (a fresh working directory, a fresh process).
pub(crate) fn start(cell: &Arc<Cell>, app: &mut App, index: u32, now: Instant) {
    let instance_guid = uuid::Uuid::new_v4().to_string();
    let tags = Cell::tags(&app.guid, &app.spec.name, index, &instance_guid);
    let cell_id = &cell.config.cell_id;
    cell.send(&tags.cell_log(
        format!("Cell {cell_id} creating container for instance {instance_guid}"),
        false,
    ));
    let (crash_count, last_crash) = app.slots.get(&index).map_or((0, None), |s| {
        (s.instance.crash_count, s.instance.last_crash.clone())
    });
    let mut instance = Instance {
        index,
        instance_guid: instance_guid.clone(),
        state: State::Starting,
        pid: None,
        started_at: Some(now),
        crash_count,
        restart_at: None,
        stopping: false,
        last_crash,
        quota: (app.spec.memory_mb, app.spec.disk_mb),
    };
    let dir = cell.config.data_dir.join(&app.guid).join(index.to_string());
    match spawn(cell, app, index, &instance_guid, &dir) {
        Ok((child, handle)) => {
            instance.pid = child.id();
            cell.stats.starts.inc();
            cell.send(&tags.cell_log(
                format!(
                    "Cell {cell_id} successfully created container for instance {instance_guid}"
                ),
                false,
            ));
            cell.send(&tags.cell_log("Starting health monitoring of container", false));
            let supervisor = supervise(
                Arc::clone(cell),
                child,
                tags,
                handle.stop.clone(),
                Arc::clone(&handle.oom),
            );
            cell.tasks.spawn(supervisor);
            app.slots.insert(
                index,
                Slot {
                    instance,
                    process: Some(handle),
                    usage: Usage::default(),
                },
            );
        }
        Err(e) => {
            cell.send(&tags.cell_log(format!("Failed to start instance: {e}"), true));
            instance.state = State::Crashed;
            instance.started_at = None;
            let slot = Slot {
                instance,
                process: None,
                usage: Usage::default(),
            };
            app.slots.insert(index, slot);
            crashed(
                cell,
                app,
                index,
                &format!("failed to start: {e}"),
                None,
                now,
            );
        }
    }
}

fn spawn(
    cell: &Cell,
    app: &App,
    index: u32,
    instance_guid: &str,
    dir: &PathBuf,
) -> std::io::Result<(tokio::process::Child, Handle)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("tmp"))?;
    let port = free_port();
    let vcap = serde_json::json!({
        "application_id": app.guid,
        "application_name": app.spec.name,
        "name": app.spec.name,
        "instance_index": index,
        "instance_id": instance_guid,
        "process_type": "web",
        "limits": { "mem": app.spec.memory_mb, "disk": app.spec.disk_mb },
    });
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(WATCHED)
        .arg(INSTANCE_ARGV0)
        .arg(&app.spec.command)
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", dir)
        .env("TMPDIR", dir.join("tmp"))
        .env("LANG", "C.UTF-8")
        .env("PORT", port.to_string())
        .env("INSTANCE_INDEX", index.to_string())
        .env("CF_INSTANCE_INDEX", index.to_string())
        .env("CF_INSTANCE_GUID", instance_guid)
        .env("CF_INSTANCE_PORT", port.to_string())
        .env("CF_INSTANCE_ADDR", format!("127.0.0.1:{port}"))
        .env("MEMORY_LIMIT", format!("{}m", app.spec.memory_mb))
        .env("VCAP_APPLICATION", vcap.to_string())
        .envs(&app.spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("child exited before it was registered"))?;
    let memory = app.spec.memory_mb.saturating_mul(1024 * 1024);
    let disk = app.spec.disk_mb.saturating_mul(1024 * 1024);
    let cgroup = match &cell.cgroups {
        Some(cg) => {
            // cpu.weight proportional to memory, as Diego derives CPU shares from memory.
            let weight = (app.spec.memory_mb / 10).max(1);
            match cg.confine(
                &format!("{}-{index}-{instance_guid}", app.guid),
                pid,
                memory,
                weight,
            ) {
                Ok(path) => Some(path),
                Err(e) => {
                    tracing::warn!(error = %e, "cell: cannot confine instance in a cgroup");
                    None
                }
            }
        }
        None => None,
    };
    // Files larger than the disk quota cannot be written (the whole tree inherits it).
    if let Err(e) = rlimit::prlimit(
        pid as i32,
        rlimit::Resource::FSIZE,
        Some((disk, disk)),
        None,
    ) {
        tracing::debug!(error = %e, "cell: cannot set RLIMIT_FSIZE");
    }
    let handle = Handle {
        pgid: pid as i32,
        dir: dir.clone(),
        port,
        stop: CancellationToken::new(),
        oom: Arc::new(AtomicBool::new(false)),
        cgroup,
        cpu_prev: None,
    };
    Ok((child, handle))
}

/// Asks instance `index` of `app` to stop (no-op if it is not running or already stopping).
pub(crate) fn stop(cell: &Cell, app: &mut App, index: u32) {
    let Some(slot) = app.slots.get_mut(&index) else {
        return;
    };
    let i = &mut slot.instance;
    let Some(process) = &slot.process else { return };
    if !i.alive() || i.stopping {
        return;
    }
    i.stopping = true;
    let tags = Cell::tags(&app.guid, &app.spec.name, index, &i.instance_guid);
    cell.send(&tags.cell_log(
        format!(
            "Cell {} stopping instance {}",
            cell.config.cell_id, i.instance_guid
        ),
        false,
    ));
    process.stop.cancel();
}

async fn supervise(
    cell: Arc<Cell>,
    mut child: tokio::process::Child,
    tags: AppTags,
    stop: CancellationToken,
    oom: Arc<AtomicBool>,
) {
    let limiter = Arc::new(Mutex::new(
        cell.config
            .log_rate_limit
            .map(|r| RateLimit::new(r, Instant::now())),
    ));
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(
            Arc::clone(&cell),
            out,
            false,
            tags.clone(),
            Arc::clone(&limiter),
        )));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(
            Arc::clone(&cell),
            err,
            true,
            tags.clone(),
            Arc::clone(&limiter),
        )));
    }
    // The write end of the watcher's pipe: held until the instance is gone (see WATCHED).
    let _watched = child.stdin.take();
    let pgid = Pid::from_raw(child.id().map_or(0, |p| p as i32));
    let grace = cell.config.stop_grace;
    let (status, requested) = tokio::select! {
        s = child.wait() => (s, false),
        () = stop.cancelled() => {
            let _ = killpg(pgid, Signal::SIGTERM);
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(s) => (s, true),
                Err(_) => {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    (child.wait().await, true)
                }
            }
        }
    };
    // The container is gone: nothing of the group outlives its leader.
    if pgid.as_raw() > 0 {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    for p in &mut pumps {
        if tokio::time::timeout(PUMP_DRAIN, &mut *p).await.is_err() {
            p.abort();
        }
    }
    exited(&cell, &tags, status.ok(), requested, oom.load(Relaxed));
}

async fn pump(
    cell: Arc<Cell>,
    mut reader: impl AsyncRead + Unpin,
    err: bool,
    tags: AppTags,
    limiter: Arc<Mutex<Option<RateLimit>>>,
) {
    let mut buf = vec![0u8; PIPE_READ_BYTES];
    let mut lines = LineSplitter::default();
    let encoder = tags.app_log_encoder();
    let send_line = |line: &[u8]| {
        cell.emit
            .send(encoder.encode(line, err, hydrant_proto::envelope::now_nanos()));
    };
    let emit = |line: bytes::Bytes| {
        cell.stats.log_lines.inc();
        // Sync mutex shared by the instance's two pumps; never held across an await.
        let verdict = match limiter.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(l) => l.check(line.len(), Instant::now()),
            None => Verdict::Pass,
        };
        match verdict {
            Verdict::Pass => send_line(&line),
            Verdict::Drop => {
                cell.stats.log_lines_rate_limited.inc();
            }
            Verdict::NoticeThenPass(notice) => {
                cell.send(&tags.app_log(notice.into(), true));
                send_line(&line);
            }
            Verdict::NoticeAndDrop(notice) => {
                cell.stats.log_lines_rate_limited.inc();
                cell.send(&tags.app_log(notice.into(), true));
            }
        }
    };
    // Ends at EOF, when every process holding the pipe has exited.
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => lines.push(&buf[..n]).into_iter().for_each(&emit),
        }
    }
    if let Some(last) = lines.finish() {
        emit(last);
    }
    let pending = limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .and_then(RateLimit::flush);
    if let Some(notice) = pending {
        cell.send(&tags.app_log(notice.into(), true));
    }
}

fn describe(status: Option<ExitStatus>, oom: bool) -> (String, Option<i32>) {
    let mut text = match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("Exited with status {code}"),
            (None, Some(sig)) => format!("Exited with status {} (signal {sig})", 128 + sig),
            _ => "Exited".to_owned(),
        },
        None => "Exit status unknown".to_owned(),
    };
    if oom {
        text.push_str(" (out of memory)");
    }
    let code = status.and_then(|s| s.code().or_else(|| s.signal().map(|sig| 128 + sig)));
    (text, code)
}

/// Records an instance's exit: a requested stop leaves it DOWN, anything else is a crash.
fn exited(
    cell: &Arc<Cell>,
    tags: &AppTags,
    status: Option<ExitStatus>,
    requested: bool,
    oom: bool,
) {
    let now = Instant::now();
    let (description, code) = describe(status, oom);
    let mut apps = cell.apps();
    let Some(app) = apps.get_mut(&tags.app_id) else {
        return;
    };
    let index = tags.index;
    let Some(slot) = app.slots.get_mut(&index) else {
        return;
    };
    if slot.instance.instance_guid != tags.instance_guid {
        return; // an older process of a slot that has moved on
    }
    if let (Some(cg), Some(dir)) = (
        &cell.cgroups,
        slot.process.as_ref().and_then(|p| p.cgroup.as_ref()),
    ) {
        cg.release(dir);
    }
    slot.process = None;
    slot.instance.pid = None;
    let status_line = format!(
        "Exit status {}",
        code.map_or("unknown".to_owned(), |c| c.to_string())
    );
    cell.send(&tags.cell_log(status_line, false));
    if requested {
        let i = &mut slot.instance;
        i.state = State::Down;
        i.stopping = false;
        i.started_at = None;
        let id = &cell.config.cell_id;
        cell.send(&tags.cell_log(
            format!(
                "Cell {id} destroying container for instance {}",
                i.instance_guid
            ),
            false,
        ));
        cell.send(&tags.cell_log(
            format!(
                "Cell {id} successfully destroyed container for instance {}",
                i.instance_guid
            ),
            false,
        ));
    } else {
        crashed(cell, app, index, &description, code, now);
    }
    drop(apps);
    cell.converge_soon();
}

/// Marks a slot crashed, schedules its restart, and reports it as Cloud Foundry does.
fn crashed(
    cell: &Cell,
    app: &mut App,
    index: u32,
    description: &str,
    code: Option<i32>,
    now: Instant,
) {
    let backoff = cell.config.backoff;
    let Some(slot) = app.slots.get_mut(&index) else {
        return;
    };
    let i = &mut slot.instance;
    let uptime = i
        .started_at
        .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
    i.crash_count = if uptime >= backoff.healthy_after {
        1
    } else {
        i.crash_count + 1
    };
    let delay = backoff.delay(i.crash_count);
    i.state = State::Crashed;
    i.stopping = false;
    i.started_at = None;
    i.restart_at = Some(now + delay);
    cell.stats.crashes.inc();
    let tags = Cell::tags(&app.guid, &app.spec.name, index, &i.instance_guid);
    let exit_description = format!("APP/PROC/WEB: {description}");
    i.last_crash = Some(super::model::Crash {
        reason: exit_description.clone(),
        exit_status: code,
        at: std::time::SystemTime::now(),
    });
    let crash_ts = hydrant_proto::envelope::now_nanos();
    cell.send(&tags.api_log("Process has crashed with type: \"web\""));
    let payload = serde_json::json!({
        "instance": i.instance_guid,
        "index": index,
        "cell_id": cell.config.cell_id,
        "reason": "CRASHED",
        "exit_description": exit_description,
        "exit_status": code,
        "crash_count": i.crash_count,
        "crash_timestamp": crash_ts,
        "restart_in_ms": delay.as_millis() as u64,
    });
    cell.send(&tags.api_log(format!(
        "App instance exited with guid {} payload: {payload}",
        app.guid
    )));
    if i.crash_count >= 3 {
        cell.send(&tags.cell_log(
            format!(
                "Instance {index} is crash-looping ({} crashes in a row); next restart in {:.1}s",
                i.crash_count,
                delay.as_secs_f64()
            ),
            true,
        ));
    }
    cell.send(&tags.event("app.crash", payload.to_string()));
}
