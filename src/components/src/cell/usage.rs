//! Measuring instances: CPU time and resident memory of each instance's whole process group
//! (one pass over `/proc` for all instances), disk used by an instance directory, and
//! cgroup v2 limits when the host lets us create cgroups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// CPU and memory of one process group at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupSample {
    /// utime + stime of live members, plus cutime + cstime (reaped children), in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size summed over members, in bytes.
    pub rss_bytes: u64,
    /// Live processes in the group.
    pub processes: u32,
}

/// Host constants for reading `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// Clock ticks per second.
    pub clk_tck: u64,
    /// Bytes per page.
    pub page_size: u64,
}

impl Host {
    /// Reads the constants from the system (falls back to Linux defaults).
    pub fn detect() -> Host {
        use nix::unistd::{SysconfVar, sysconf};
        let get = |v, d| {
            sysconf(v)
                .ok()
                .flatten()
                .filter(|x| *x > 0)
                .map_or(d, |x| x as u64)
        };
        Host {
            clk_tck: get(SysconfVar::CLK_TCK, 100),
            page_size: get(SysconfVar::PAGE_SIZE, 4096),
        }
    }
}

/// Parses `/proc/<pid>/stat`: returns (pgrp, cpu ticks, rss pages).
pub fn parse_stat(stat: &str) -> Option<(i32, u64, u64)> {
    // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    let pgrp = f.get(2)?.parse().ok()?;
    let ticks = num(11)? + num(12)? + num(13)? + num(14)?;
    Some((pgrp, ticks, num(21)?))
}

/// Samples every process group in `pgids` with one pass over `/proc`.
pub fn sample_groups(host: &Host, pgids: &[i32]) -> HashMap<i32, GroupSample> {
    let mut out: HashMap<i32, GroupSample> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Processes come and go while we read; a vanished one is simply skipped.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((pgrp, ticks, rss_pages)) = parse_stat(&stat) else {
            continue;
        };
        if pgids.contains(&pgrp) {
            let s = out.entry(pgrp).or_default();
            s.cpu_ticks += ticks;
            s.rss_bytes += rss_pages * host.page_size;
            s.processes += 1;
        }
    }
    out
}

/// Process groups that instances of an earlier run of a cell on `data_dir` left behind:
/// the groups of processes whose working directory lies under `data_dir` (instances run in
/// `<data_dir>/<app>/<index>`) and whose environment carries `CF_INSTANCE_GUID`, which the
/// cell gives every instance. Both must hold, so an operator's shell that is merely inside
/// the data directory is never taken for an instance. `own_pgrp` (the cell's group) and
/// groups 0 and 1 are never returned. One pass over `/proc`; sorted, without duplicates.
pub fn leftover_groups(data_dir: &Path, own_pgrp: i32) -> Vec<i32> {
    let Ok(root) = data_dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let proc_dir = entry.path();
        // A process that exits while we look is skipped.
        let Ok(cwd) = std::fs::read_link(proc_dir.join("cwd")) else {
            continue;
        };
        // The kernel marks a removed working directory with a suffix.
        let cwd = cwd.to_string_lossy();
        let cwd = Path::new(cwd.strip_suffix(" (deleted)").unwrap_or(&cwd));
        if !cwd.starts_with(&root) {
            continue;
        }
        let Ok(environ) = std::fs::read(proc_dir.join("environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|var| var.starts_with(b"CF_INSTANCE_GUID="))
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
            continue;
        };
        if let Some((pgrp, _, _)) = parse_stat(&stat)
            && pgrp > 1
            && pgrp != own_pgrp
        {
            out.push(pgrp);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Bytes allocated on disk under `path` (blocks × 512, like `du`); unreadable entries count 0.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    // Bounded by the number of entries in the instance directory.
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    total
}

/// Why instances cannot be confined in cgroups here.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No unified (v2) hierarchy at the root.
    #[error("{root} has no cgroup v2 hierarchy ({source})")]
    NoHierarchy {
        /// The root looked at.
        root: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A controller the cell needs is not enabled.
    #[error("cgroup v2 controller {0} is not available")]
    NoController(&'static str),
    /// The cell's subtree cannot be set up.
    #[error("cannot set up {path}: {source}")]
    Setup {
        /// What could not be written.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// cgroup v2 resource control, when the host runs the unified hierarchy with the memory and
/// cpu controllers available and lets us create a subtree.
#[derive(Debug, Clone)]
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    /// Tries to set up `<root>/hydrant-cell-<pid>`; `Err` says why not (for the log).
    pub fn detect(root: &Path) -> Result<Cgroups, CgroupError> {
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).map_err(|source| {
                CgroupError::NoHierarchy {
                    root: root.display().to_string(),
                    source,
                }
            })?;
        for c in ["memory", "cpu"] {
            if !controllers.split_whitespace().any(|x| x == c) {
                return Err(CgroupError::NoController(c));
            }
        }
        let base = root.join(format!("hydrant-cell-{}", std::process::id()));
        let setup = |path: &Path| {
            let path = path.display().to_string();
            move |source| CgroupError::Setup { path, source }
        };
        std::fs::create_dir_all(&base).map_err(setup(&base))?;
        let control = base.join("cgroup.subtree_control");
        std::fs::write(&control, "+memory +cpu").map_err(setup(&control))?;
        Ok(Cgroups { base })
    }

    /// Puts `pid` into a fresh cgroup for one instance with the given memory limit and cpu
    /// weight; returns its path.
    pub fn confine(
        &self,
        name: &str,
        pid: u32,
        memory_bytes: u64,
        cpu_weight: u64,
    ) -> std::io::Result<PathBuf> {
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("memory.max"), memory_bytes.to_string())?;
        std::fs::write(
            dir.join("cpu.weight"),
            cpu_weight.clamp(1, 10_000).to_string(),
        )?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(dir)
    }

    /// Removes an instance's cgroup once its processes are gone.
    pub fn release(&self, dir: &Path) {
        let _ = std::fs::remove_dir(dir);
    }

    /// Removes the cell's subtree (at shutdown).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (sh -c (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 7 3 2 1 20 0 1 0 555 1000000 321 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((4242, 13, 321)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn samples_our_own_process_group() {
        let host = Host::detect();
        let me = nix::unistd::getpgrp().as_raw();
        let s = sample_groups(&host, &[me]);
        let ours = s.get(&me).expect("our own group is visible");
        assert!(ours.processes >= 1 && ours.rss_bytes > 0);
    }

    #[test]
    fn disk_usage_counts_files_below() {
        let dir = std::env::temp_dir().join(format!("hydrant-du-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/data"), vec![1u8; 100_000]).unwrap();
        let used = disk_usage(&dir);
        assert!(used >= 100_000, "{used}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn detect_explains_a_missing_hierarchy() {
        let err = Cgroups::detect(Path::new("/nonexistent-cgroup-root")).unwrap_err();
        assert!(matches!(err, CgroupError::NoHierarchy { .. }), "{err}");
        assert!(err.to_string().contains("no cgroup v2 hierarchy"), "{err}");
    }
}
