//! What the autoscaler keeps across restarts under `--data-dir`, as CF keeps it in its
//! database: the scaling history (`history.jsonl`, one record per line, each synced
//! before the next decision is taken), each app's cooldowns and its firing alerts
//! (`state.json`, replaced atomically after every scale and every alert that fires or
//! resolves). At start the history is read back within its 240 h
//! retention (damaged lines are skipped and counted, and the file is rewritten without
//! them or what has expired).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::Time;
use crate::fleet::KeptAlert;
use crate::history::{RETENTION_SECS, Record};

/// The history file.
pub(super) const HISTORY: &str = "history.jsonl";
/// The state file.
pub(super) const STATE: &str = "state.json";
/// The state file's format.
const SCHEMA_VERSION: u32 = 1;

/// Cooldowns by policy app: (scale-out blocked until, scale-in blocked until), UNIX s.
pub(super) type Cooldowns = BTreeMap<String, (Option<Time>, Option<Time>)>;

/// Firing alerts by policy app.
pub(super) type Alerts = BTreeMap<String, Vec<KeptAlert>>;

/// What `state.json` holds (alerts were added within schema 1: a file without them reads
/// as none firing).
#[derive(Debug, Serialize, Deserialize)]
struct State {
    schema_version: u32,
    cooldowns: Cooldowns,
    #[serde(default)]
    alerts: Alerts,
}

/// The open store.
#[derive(Debug)]
pub(super) struct Store {
    dir: PathBuf,
    history: std::fs::File,
}

/// What a store held when it was opened.
#[derive(Debug, Default)]
pub(super) struct Restored {
    pub(super) records: Vec<Record>,
    pub(super) cooldowns: Cooldowns,
    pub(super) alerts: Alerts,
    /// History lines that could not be read.
    pub(super) damaged: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically: a synced temporary file renamed over it.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store under `dir` at `now` (UNIX s), and reads back what it
    /// held.
    pub(super) fn open(dir: &Path, now: Time) -> std::io::Result<(Store, Restored)> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut restored = Restored::default();
        let history = dir.join(HISTORY);
        let cutoff = (now - RETENTION_SECS) * 1_000_000_000;
        match std::fs::read_to_string(&history) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    match serde_json::from_str::<Record>(line) {
                        Ok(r) if r.timestamp >= cutoff => restored.records.push(r),
                        Ok(_) => {}
                        Err(_) => restored.damaged += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&history)(e)),
        }
        // Rewritten as read: without damaged or expired lines, and ending in a newline, so
        // a torn last line cannot glue onto the next record.
        let mut kept = Vec::new();
        for r in &restored.records {
            kept.extend(serde_json::to_vec(r).expect("records serialize"));
            kept.push(b'\n');
        }
        replace(&history, &kept)?;
        let state = dir.join(STATE);
        match std::fs::read_to_string(&state) {
            Ok(text) => match serde_json::from_str::<State>(&text) {
                Ok(s) if s.schema_version == SCHEMA_VERSION => {
                    restored.cooldowns = s.cooldowns;
                    restored.alerts = s.alerts;
                }
                _ => {
                    tracing::warn!(file = %state.display(), "autoscaler: cooldown state unreadable; starting without it")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&state)(e)),
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&history)
            .map_err(io(&history))?;
        Ok((
            Store {
                dir: dir.to_owned(),
                history: file,
            },
            restored,
        ))
    }

    /// Appends a record, synced.
    pub(super) fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).expect("records serialize");
        line.push(b'\n');
        self.history.write_all(&line)?;
        self.history.sync_data()
    }

    /// Replaces the cooldowns and firing alerts.
    pub(super) fn save_state(&self, cooldowns: &Cooldowns, alerts: &Alerts) -> std::io::Result<()> {
        let state = State {
            schema_version: SCHEMA_VERSION,
            cooldowns: cooldowns.clone(),
            alerts: alerts.clone(),
        };
        replace(
            &self.dir.join(STATE),
            &serde_json::to_vec_pretty(&state).expect("state serializes"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ScalingType, Status};

    fn record(app: &str, at: Time) -> Record {
        Record {
            app_id: app.into(),
            timestamp: at * 1_000_000_000,
            scaling_type: ScalingType::Dynamic,
            status: Status::Succeeded,
            old_instances: 1,
            new_instances: 2,
            reason: "+1 instance(s) because cpu > 70% for 60 seconds".into(),
            message: String::new(),
            error: String::new(),
            app: app.into(),
            rule: Some(0),
            window: None,
            constraints: Vec::new(),
            response: String::new(),
        }
    }

    #[test]
    fn history_cooldowns_and_alerts_come_back_and_damage_is_skipped() {
        let dir = std::env::temp_dir().join(format!("hydrant-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = 1_800_000_000;
        let (mut store, restored) = Store::open(&dir, now).unwrap();
        assert!(restored.records.is_empty() && restored.cooldowns.is_empty());
        store
            .append(&record("web", now - RETENTION_SECS - 10))
            .unwrap();
        store.append(&record("web", now - 60)).unwrap();
        let firing = KeptAlert {
            rule: 0,
            summary: "cpu > 70 for 60 seconds".into(),
            metric: "cpu".into(),
            adjustment: "+1".into(),
            target: "guid-1".into(),
            state: crate::alert::State::Firing {
                since: now - 100,
                keep_firing_since: None,
            },
        };
        store
            .save_state(
                &BTreeMap::from([("web".to_owned(), (Some(now + 30), None))]),
                &BTreeMap::from([("web".to_owned(), vec![firing.clone()])]),
            )
            .unwrap();
        drop(store);
        // A torn last line, as a crash mid-write leaves it.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(HISTORY))
            .unwrap();
        f.write_all(b"{\"app_id\":\"we").unwrap();
        drop(f);
        let (mut store, restored) = Store::open(&dir, now).unwrap();
        assert_eq!(
            restored.records,
            [record("web", now - 60)],
            "expired and torn lines go"
        );
        assert_eq!(restored.damaged, 1);
        assert_eq!(restored.cooldowns["web"], (Some(now + 30), None));
        assert_eq!(restored.alerts["web"], [firing]);
        store.append(&record("api", now)).unwrap();
        drop(store);
        let (_, restored) = Store::open(&dir, now).unwrap();
        assert_eq!(
            restored.records.len(),
            2,
            "the rewritten file takes new lines cleanly"
        );
        assert_eq!(restored.damaged, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod schema {
    use super::*;

    /// A state file written before alerts were kept still reads (none firing).
    #[test]
    fn a_state_file_without_alerts_reads() {
        let s: State =
            serde_json::from_str(r#"{"schema_version":1,"cooldowns":{"web":[100,null]}}"#).unwrap();
        assert_eq!(s.cooldowns["web"], (Some(100), None));
        assert!(s.alerts.is_empty());
    }
}
