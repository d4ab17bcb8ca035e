//! Container metrics: every interval, measure each live instance's process group (CPU,
//! resident memory) and working directory (disk), send the two gauge envelopes Diego sends,
//! and kill instances over their memory quota when no cgroup enforces it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Cell;
use super::usage::{disk_usage, sample_groups};
use hydrant_runtime::series::names as app;

/// Last measured usage of an instance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Percent of one core over the last interval.
    pub cpu_percent: f64,
    /// Resident memory of the process group.
    pub memory_bytes: u64,
    /// Disk used by the working directory.
    pub disk_bytes: u64,
    /// When measured.
    pub at: Option<SystemTime>,
}

/// Samples every interval until `stop` fires.
pub async fn run(cell: Arc<Cell>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(cell.config.metrics_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await; // the first tick is immediate: give instances a moment first
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        sample(&cell).await;
    }
}

struct Target {
    guid: String,
    index: u32,
    instance_guid: String,
    pgid: i32,
    dir: PathBuf,
}

/// CPU percent from a tick delta over a time span.
pub fn cpu_percent(ticks: u64, clk_tck: u64, span: Duration) -> f64 {
    let secs = span.as_secs_f64();
    if secs <= 0.0 || clk_tck == 0 {
        0.0
    } else {
        ticks as f64 / clk_tck as f64 / secs * 100.0
    }
}

/// Measures all live instances once and sends their gauges.
pub async fn sample(cell: &Arc<Cell>) {
    let targets: Vec<Target> = {
        let apps = cell.apps();
        apps.values()
            .flat_map(|app| {
                app.slots
                    .values()
                    .filter(|s| s.instance.alive())
                    .filter_map(|s| {
                        let p = s.process.as_ref()?;
                        Some(Target {
                            guid: app.guid.clone(),
                            index: s.instance.index,
                            instance_guid: s.instance.instance_guid.clone(),
                            pgid: p.pgid,
                            dir: p.dir.clone(),
                        })
                    })
            })
            .collect()
    };
    if targets.is_empty() {
        return;
    }
    let host = cell.host;
    let pgids: Vec<i32> = targets.iter().map(|t| t.pgid).collect();
    let dirs: Vec<PathBuf> = targets.iter().map(|t| t.dir.clone()).collect();
    // /proc and directory walks are blocking file I/O.
    let Ok((groups, disks)) = tokio::task::spawn_blocking(move || {
        let groups = sample_groups(&host, &pgids);
        let disks: Vec<u64> = dirs.iter().map(|d| disk_usage(d)).collect();
        (groups, disks)
    })
    .await
    else {
        return;
    };
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut apps = cell.apps();
    for (t, disk) in targets.iter().zip(disks) {
        let Some(app) = apps.get_mut(&t.guid) else {
            continue;
        };
        let (name, memory_mb, disk_mb) =
            (app.spec.name.clone(), app.spec.memory_mb, app.spec.disk_mb);
        let Some(slot) = app.slots.get_mut(&t.index) else {
            continue;
        };
        if slot.instance.instance_guid != t.instance_guid {
            continue;
        }
        let started = slot.instance.started_at.unwrap_or(now);
        let Some(process) = slot.process.as_mut() else {
            continue;
        };
        let g = groups.get(&t.pgid).copied().unwrap_or_default();
        let cpu = match process.cpu_prev {
            Some((ticks, at)) => {
                cpu_percent(g.cpu_ticks.saturating_sub(ticks), host.clk_tck, now - at)
            }
            None => cpu_percent(g.cpu_ticks, host.clk_tck, now - started),
        };
        process.cpu_prev = Some((g.cpu_ticks, now));
        slot.usage = Usage {
            cpu_percent: cpu,
            memory_bytes: g.rss_bytes,
            disk_bytes: disk,
            at: Some(wall),
        };
        let memory_quota = memory_mb.saturating_mul(1024 * 1024);
        let disk_quota = disk_mb.saturating_mul(1024 * 1024);
        let tags = Cell::tags(&t.guid, &name, t.index, &t.instance_guid);
        cell.send(&tags.metrics([
            (app::CPU, cpu, "percentage"),
            (app::MEMORY, g.rss_bytes as f64, "bytes"),
            (app::DISK, disk as f64, "bytes"),
            (app::MEMORY_QUOTA, memory_quota as f64, "bytes"),
            (app::DISK_QUOTA, disk_quota as f64, "bytes"),
        ]));
        // Entitlement: a share of the cell's cores proportional to the memory quota.
        let capacity = cell.config.memory_capacity_bytes.max(1) as f64;
        let entitled_cores = cell.config.cores as f64 * memory_quota as f64 / capacity;
        let entitlement = if entitled_cores > 0.0 {
            cpu / entitled_cores
        } else {
            0.0
        };
        let age = now.saturating_duration_since(started).as_nanos() as f64;
        cell.send(&tags.metrics([
            (app::CPU_ENTITLEMENT, entitlement, "percentage"),
            (app::CONTAINER_AGE, age, "nanoseconds"),
        ]));

        if cell.cgroups.is_none() && g.rss_bytes > memory_quota && !process.oom.swap(true, Relaxed)
        {
            cell.stats.oom_kills.inc();
            cell.send(&tags.cell_log(
                format!(
                    "Instance exceeded its memory quota ({} > {} bytes); killing it",
                    g.rss_bytes, memory_quota
                ),
                true,
            ));
            let _ = killpg(Pid::from_raw(t.pgid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_of_one_core() {
        assert_eq!(cpu_percent(100, 100, Duration::from_secs(1)), 100.0);
        assert_eq!(cpu_percent(50, 100, Duration::from_secs(2)), 25.0);
        assert_eq!(cpu_percent(10, 100, Duration::ZERO), 0.0);
    }
}
