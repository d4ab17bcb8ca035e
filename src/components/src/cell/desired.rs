//! The cell's desired state on disk, as Cloud Controller keeps it in its database: every
//! app (guid, name, command, instances, quotas, environment) in `<data-dir>/apps.json`.
//!
//! A change is written before it is acknowledged: the whole table goes to a temporary
//! file, which is synced, renamed over the old one, and the directory synced, so a crash
//! or `kill -9` at any point leaves either the old table or the new one, never a torn one.
//! The file carries a schema version; a file the cell cannot read stops it with the file
//! and the reason named, rather than starting with no apps.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::model::AppSpec;

/// The file, under the cell's data directory.
pub const FILE: &str = "apps.json";

/// The format this cell writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors reading or writing the desired state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a desired-state table this cell understands.
    #[error("{path}: {message} (move it aside to start with no apps)")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        std::io::Error::other(e.to_string())
    }
}

/// One app as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Its guid.
    pub guid: String,
    /// Its name.
    pub name: String,
    /// Its command.
    pub command: String,
    /// Desired instances.
    pub instances: u32,
    /// Memory quota, MB.
    pub memory_mb: u64,
    /// Disk quota, MB.
    pub disk_mb: u64,
    /// Environment.
    pub env: std::collections::BTreeMap<String, String>,
    /// Created, UNIX ms.
    pub created_at_ms: u64,
    /// Last changed, UNIX ms.
    pub updated_at_ms: u64,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Stored {
    /// An app's record.
    pub fn of(guid: &str, spec: &AppSpec, created: SystemTime, updated: SystemTime) -> Stored {
        Stored {
            guid: guid.to_owned(),
            name: spec.name.clone(),
            command: spec.command.clone(),
            instances: spec.instances,
            memory_mb: spec.memory_mb,
            disk_mb: spec.disk_mb,
            env: spec.env.clone(),
            created_at_ms: ms(created),
            updated_at_ms: ms(updated),
        }
    }

    /// The spec it records.
    pub fn spec(&self) -> AppSpec {
        AppSpec {
            name: self.name.clone(),
            command: self.command.clone(),
            instances: self.instances,
            memory_mb: self.memory_mb,
            disk_mb: self.disk_mb,
            env: self.env.clone(),
        }
    }

    /// (created, updated) as times.
    pub fn times(&self) -> (SystemTime, SystemTime) {
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        (at(self.created_at_ms), at(self.updated_at_ms))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Table {
    schema_version: u32,
    apps: Vec<Stored>,
}

/// The apps stored under `dir` (none when there is no file yet).
pub fn load(dir: &Path) -> Result<Vec<Stored>, Error> {
    let table: Option<Table> =
        read_table(dir, FILE, "desired-state", SCHEMA_VERSION, |t: &Table| {
            t.schema_version
        })?;
    Ok(table.map(|t| t.apps).unwrap_or_default())
}

/// Reads `dir/file`, a JSON table (`what` names it in errors) whose schema version
/// (`version_of`) must be `version`; `None` when there is no file yet.
pub(crate) fn read_table<T: serde::de::DeserializeOwned>(
    dir: &Path,
    file: &str,
    what: &str,
    version: u32,
    version_of: impl Fn(&T) -> u32,
) -> Result<Option<T>, Error> {
    let path = dir.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let table: T = serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.clone(),
        message: format!("not a {what} table: {e}"),
    })?;
    if version_of(&table) != version {
        return Err(Error::Format {
            path,
            message: format!(
                "schema version {} (this cell reads {version})",
                version_of(&table)
            ),
        });
    }
    Ok(Some(table))
}

/// Replaces the stored table with `apps`, durably (see the module docs).
pub fn save(dir: &Path, apps: &[Stored]) -> Result<(), Error> {
    let table = Table {
        schema_version: SCHEMA_VERSION,
        apps: apps.to_vec(),
    };
    let text = serde_json::to_vec_pretty(&table).expect("the table serializes");
    write_durably(dir, FILE, &text)
}

/// Replaces `dir/file` with `bytes` so that a crash at any point leaves the old content or
/// the new, never a torn file: a synced temporary file renamed over it, then the directory
/// synced.
pub(crate) fn write_durably(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), Error> {
    let path = dir.join(file);
    let tmp = dir.join(format!("{file}.tmp"));
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| Error::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hydrant-desired-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn spec(name: &str) -> AppSpec {
        AppSpec {
            name: name.into(),
            command: "sleep 1".into(),
            instances: 2,
            memory_mb: 64,
            disk_mb: 128,
            env: [("K".to_owned(), "V".to_owned())].into(),
        }
    }

    #[test]
    fn tables_round_trip_and_bad_files_are_named() {
        let d = scratch("trip");
        assert_eq!(load(&d).unwrap(), [], "no file: no apps");
        let now = SystemTime::now();
        let apps = vec![Stored::of("g1", &spec("web"), now, now)];
        save(&d, &apps).unwrap();
        assert_eq!(load(&d).unwrap(), apps);
        assert_eq!(load(&d).unwrap()[0].spec(), spec("web"));
        assert!(!d.join(format!("{FILE}.tmp")).exists());

        std::fs::write(d.join(FILE), "{\"schema_version\":1,\"apps\":[{").unwrap();
        let e = load(&d).unwrap_err().to_string();
        assert!(
            e.contains("apps.json") && e.contains("not a desired-state table"),
            "{e}"
        );
        std::fs::write(d.join(FILE), "{\"schema_version\":9,\"apps\":[]}").unwrap();
        let e = load(&d).unwrap_err().to_string();
        assert!(e.contains("schema version 9"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
