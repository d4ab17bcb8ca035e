//! Policy files as the running autoscaler keeps them. Every valid file is in force. A
//! refused file (an error in it, or an app another file already has) does not stop the
//! others: it is reported (the log, `/healthz` as degraded, an event in the Firehose), and
//! its last good version, if it had one, stays in force until it is fixed.
//!
//! One lock ([`Autoscaler::with_policy_files`]) covers the files and what was loaded from
//! them: the watcher (a change, or SIGHUP) and the API (saving a policy, then reloading)
//! take turns, and the API knows what the reload made of the file it wrote. The lock is
//! taken before the fleet's, never after.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
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
    /// The file of each of `policies`.
    pub(super) origins: Vec<PathBuf>,
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

    /// The file each app's policy in force came from.
    fn origins(&self) -> BTreeMap<String, PathBuf> {
        self.policies
            .iter()
            .zip(&self.origins)
            .map(|(p, f)| (p.app.clone(), f.clone()))
            .collect()
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
            self.last_good.insert(file.clone(), p.clone());
            apps.insert(p.app.clone());
            out.policies.push(p);
            out.origins.push(file);
        }
        // A refused file keeps its last good version, unless its app is now another's.
        for file in &refused {
            if let Some(p) = self.last_good.get(file)
                && set.files.contains(file)
                && apps.insert(p.app.clone())
            {
                out.policies.push(p.clone());
                out.origins.push(file.clone());
                out.kept.push(file.clone());
            }
        }
        // Files that are gone take their last good version with them.
        self.last_good.retain(|f, _| set.files.contains(f));
        out
    }
}

/// Names, sizes and modification times of the policy files.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The policy files as the running autoscaler watches them: what the last load made of
/// them, the fingerprint it was taken at, and the file of each app's policy in force.
#[derive(Debug)]
pub(super) struct Watch {
    files: Files,
    seen: Fingerprint,
    origins: BTreeMap<String, PathBuf>,
}

impl Watch {
    /// The first load of `paths`.
    pub(super) fn load(paths: Vec<PathBuf>) -> (Watch, Loaded) {
        let seen = fingerprint(&paths);
        let mut files = Files::new(paths);
        let loaded = files.load();
        let origins = loaded.origins();
        (
            Watch {
                files,
                seen,
                origins,
            },
            loaded,
        )
    }
}

/// What a reload made of the policy files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Errors of the refused files (each stays at its last good version, if it had one).
    pub errors: Vec<Problem>,
    /// Warnings of every file.
    pub warnings: Vec<Problem>,
}

/// The policy files, held by one caller at a time (see [`Autoscaler::with_policy_files`]).
#[derive(Debug)]
pub struct PolicyFiles<'a> {
    scaler: &'a Autoscaler,
    watch: MutexGuard<'a, Watch>,
}

impl PolicyFiles<'_> {
    /// The configured policy files and directories (`--policies`).
    pub fn paths(&self) -> &[PathBuf] {
        &self.watch.files.paths
    }

    /// The policy app `app` (the policy's app, the app's name or its guid) refers to, and
    /// the file its policy in force came from.
    pub fn find(&self, app: &str) -> Option<(String, PathBuf)> {
        let key = self.scaler.fleet().resolve(app).unwrap_or(app).to_owned();
        let file = self.watch.origins.get(&key)?.clone();
        Some((key, file))
    }

    /// Whether a file changed since the last load.
    fn changed(&self) -> bool {
        fingerprint(self.paths()) != self.watch.seen
    }

    /// Reads every policy file and puts what is valid in force, as the watcher does on a
    /// change: counted, logged and reported in `/healthz` and the Firehose.
    pub fn reload(&mut self) -> Reloaded {
        let scaler = self.scaler;
        let watch = &mut *self.watch;
        watch.seen = fingerprint(&watch.files.paths);
        let loaded = watch.files.load();
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
        watch.origins = loaded.origins();
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
        Reloaded {
            errors: loaded.errors,
            warnings: loaded.warnings,
        }
    }
}

impl Autoscaler {
    /// Runs `f` with the policy files to itself: no reload runs meanwhile, so what `f`
    /// writes and reloads is what it reads back.
    pub fn with_policy_files<T>(&self, f: impl FnOnce(&mut PolicyFiles<'_>) -> T) -> T {
        let watch = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut PolicyFiles {
            scaler: self,
            watch,
        })
    }

    /// The policy app `app` refers to and the file of its policy (see [`PolicyFiles::find`]).
    pub fn policy_file(&self, app: &str) -> Option<(String, PathBuf)> {
        self.with_policy_files(|f| f.find(app))
    }
}

/// An autoscaler with `config`'s policies loaded and no task running (no Firehose, ticks,
/// emitter or history on disk): what the API's tests drive.
#[cfg(test)]
pub(crate) fn idle(config: &super::Config) -> Arc<Autoscaler> {
    let (watch, loaded) = Watch::load(config.policies.clone());
    let problems = loaded.errors.iter().map(ToString::to_string).collect();
    let mut fleet = crate::fleet::Fleet::new(config.settings);
    fleet.set_policies(loaded.policies);
    let (notifier, _delivery) =
        crate::notify::Notifier::new(config.receivers.clone(), CancellationToken::new());
    Arc::new(super::assemble(
        config, fleet, watch, problems, notifier, None, None,
    ))
}

/// Reloads the policies when a file changes (polled every `every`) or at SIGHUP.
pub(super) async fn reload(
    scaler: Arc<Autoscaler>,
    every: Duration,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = interval.tick() => false,
            _ = hup.recv() => true,
            () = cancel.cancelled() => return Ok(()),
        };
        scaler.with_policy_files(|f| {
            if forced || f.changed() {
                f.reload();
            }
        });
    }
}

/// A fingerprint of the policy files (names, sizes, modification times).
fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
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
