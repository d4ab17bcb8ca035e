//! Policy files as the running autoscaler keeps them. Every valid file is in force. A
//! refused file (an error in it, or an app another file already has) does not stop the
//! others: it is reported (the log, `/healthz` as degraded, an event in the Firehose), and
//! its last good version, if it had one, stays in force until it is fixed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{Autoscaler, Error, ReloadResult};
use crate::policy::{self, Policy, Problem, Severity};

/// The policy files and what the last load made of them.
#[derive(Debug, Default)]
pub(super) struct Files {
    paths: Vec<PathBuf>,
    /// Each file's last valid policy.
    last_good: BTreeMap<PathBuf, Policy>,
}

/// One load: the policies in force and what was refused.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// Valid files' policies, and refused files' last good versions.
    pub(super) policies: Vec<Policy>,
    /// Errors of refused files.
    pub(super) errors: Vec<Problem>,
    /// Warnings of every file.
    pub(super) warnings: Vec<Problem>,
    /// Refused files kept at their last good version.
    pub(super) kept: Vec<PathBuf>,
}

impl Loaded {
    /// The errors, one per line, for logs and events.
    pub(super) fn listing(&self) -> String {
        self.errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Files {
    /// The files (or directories) `paths` name.
    pub(super) fn new(paths: Vec<PathBuf>) -> Files {
        Files {
            paths,
            last_good: BTreeMap::new(),
        }
    }

    /// Reads every file.
    pub(super) fn load(&mut self) -> Loaded {
        let set = policy::load_all(&self.paths);
        let mut out = Loaded::default();
        for p in set.problems {
            match p.severity {
                Severity::Error => out.errors.push(p),
                Severity::Warning => out.warnings.push(p),
            }
        }
        let refused: BTreeSet<PathBuf> = out.errors.iter().map(|p| p.file.clone()).collect();
        let mut apps: BTreeSet<String> = BTreeSet::new();
        for (p, file) in set.policies.into_iter().zip(set.origins) {
            if refused.contains(&file) {
                continue;
            }
            self.last_good.insert(file, p.clone());
            apps.insert(p.app.clone());
            out.policies.push(p);
        }
        // A refused file keeps its last good version, unless its app is now another's.
        for file in &refused {
            if let Some(p) = self.last_good.get(file)
                && set.files.contains(file)
                && apps.insert(p.app.clone())
            {
                out.policies.push(p.clone());
                out.kept.push(file.clone());
            }
        }
        // Files that are gone take their last good version with them.
        self.last_good.retain(|f, _| set.files.contains(f));
        out
    }
}

pub(super) async fn reload(
    scaler: Arc<Autoscaler>,
    mut files: Files,
    paths: Vec<PathBuf>,
    every: Duration,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut seen = fingerprint(&paths);
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = interval.tick() => false,
            _ = hup.recv() => true,
            () = cancel.cancelled() => return Ok(()),
        };
        let now = fingerprint(&paths);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let loaded = files.load();
        for p in &loaded.warnings {
            tracing::warn!("{p}");
        }
        if loaded.errors.is_empty() {
            scaler.stats.reloads.inc(ReloadResult::Ok);
        } else {
            scaler.stats.reloads.inc(ReloadResult::Failed);
            tracing::error!(
                kept = ?loaded.kept,
                "policy files refused; every other one is in force, a refused one at its last good version:\n{}",
                loaded.listing()
            );
        }
        let problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        let c = scaler.fleet().set_policies(loaded.policies);
        let changed = {
            let mut current = scaler
                .policy_problems
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let changed = *current != problems;
            *current = problems;
            changed
        };
        if changed {
            scaler.emit_policy_problems();
        }
        tracing::info!(
            added = c.added,
            changed = c.changed,
            removed = c.removed,
            kept = c.kept,
            "policies reloaded"
        );
    }
}

/// A fingerprint of the policy files (names, sizes, modification times).
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    policy::files(paths)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (f, len, modified)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "app: APP\ninstance_min_count: 1\ninstance_max_count: MAX\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 70, adjustment: '+1'}\n";

    fn good(app: &str, max: u32) -> String {
        GOOD.replace("APP", app).replace("MAX", &max.to_string())
    }

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("hydrant-policies-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_bad_file_beside_good_ones_keeps_its_last_good_version() {
        let dir = scratch("files");
        std::fs::write(dir.join("web.yml"), good("web", 3)).unwrap();
        std::fs::write(dir.join("api.yml"), "app: api\ninstance_min_count: 1\n").unwrap();
        let mut files = Files::new(vec![dir.clone()]);
        let l = files.load();
        let apps: Vec<&str> = l.policies.iter().map(|p| p.app.as_str()).collect();
        assert_eq!(apps, ["web"], "the good file is in force");
        assert!(!l.errors.is_empty() && l.errors.iter().all(|p| p.file.ends_with("api.yml")));
        assert!(l.kept.is_empty(), "api never had a good version");

        // web breaks: its last good version stays; api is fixed.
        std::fs::write(dir.join("web.yml"), "app: web\nscaling_rules: 3\n").unwrap();
        std::fs::write(dir.join("api.yml"), good("api", 4)).unwrap();
        let l = files.load();
        let mut apps: Vec<(&str, u32)> =
            l.policies.iter().map(|p| (p.app.as_str(), p.max)).collect();
        apps.sort_unstable();
        assert_eq!(apps, [("api", 4), ("web", 3)]);
        assert_eq!(l.kept, [dir.join("web.yml")]);
        assert!(l.listing().contains("web.yml"), "{}", l.listing());

        // A removed file takes its policy with it.
        std::fs::remove_file(dir.join("web.yml")).unwrap();
        let l = files.load();
        assert_eq!(l.policies.len(), 1);
        assert!(l.errors.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
