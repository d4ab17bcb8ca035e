//! User-provided service instances and their bindings to apps: what the cell keeps for
//! syslog drains, as Cloud Controller keeps them, in `<data-dir>/services.json` (written
//! as durably as the app table, before a change is acknowledged).
//!
//! The cell hands the drains of its apps to the agents the way Cloud Controller hands them
//! to Loggregator's binding cache ([`Services::drain_urls`], served on
//! `GET /internal/v5/syslog_drain_urls`): one entry per drain URL, its TLS material, the
//! apps bound to it and the syslog HOSTNAME of each.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::contract::services::{DrainApp, DrainBinding, DrainCredentials};
use super::desired::{self, Error};

/// The file, under the cell's data directory.
pub const FILE: &str = "services.json";

/// The format this cell writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A user-provided service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Its guid.
    pub guid: String,
    /// Its name.
    pub name: String,
    /// Where bound apps' logs go.
    pub syslog_drain_url: Option<String>,
    /// Free-form credentials (`cert`, `key`, `ca` serve TLS drains).
    pub credentials: BTreeMap<String, serde_json::Value>,
    /// Labels.
    pub tags: Vec<String>,
    /// Created, UNIX ms.
    pub created_at_ms: u64,
    /// Last changed, UNIX ms.
    pub updated_at_ms: u64,
}

impl Instance {
    /// A credential as text (empty when absent or not a string).
    pub fn credential(&self, key: &str) -> String {
        self.credentials
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

/// An app bound to a service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Its guid.
    pub guid: String,
    /// Its name, if given.
    pub name: Option<String>,
    /// The service instance.
    pub instance_guid: String,
    /// The app.
    pub app_guid: String,
    /// Created, UNIX ms.
    pub created_at_ms: u64,
}

/// A drain's TLS material: certificate, key, CA (PEM; empty when none).
type Tls = (String, String, String);

/// Every service instance and binding of the cell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Services {
    /// By guid.
    pub instances: BTreeMap<String, Instance>,
    /// By guid.
    pub bindings: BTreeMap<String, Binding>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Table {
    schema_version: u32,
    instances: Vec<Instance>,
    bindings: Vec<Binding>,
}

impl Services {
    /// The services stored under `dir` (none when there is no file yet).
    pub fn load(dir: &Path) -> Result<Services, Error> {
        let table: Option<Table> =
            desired::read_table(dir, FILE, "service", SCHEMA_VERSION, |t: &Table| {
                t.schema_version
            })?;
        let Some(table) = table else {
            return Ok(Services::default());
        };
        Ok(Services {
            instances: table
                .instances
                .into_iter()
                .map(|i| (i.guid.clone(), i))
                .collect(),
            bindings: table
                .bindings
                .into_iter()
                .map(|b| (b.guid.clone(), b))
                .collect(),
        })
    }

    /// Replaces the stored table with this one, durably.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let table = Table {
            schema_version: SCHEMA_VERSION,
            instances: self.instances.values().cloned().collect(),
            bindings: self.bindings.values().cloned().collect(),
        };
        let text = serde_json::to_vec_pretty(&table).expect("the table serializes");
        desired::write_durably(dir, FILE, &text)
    }

    /// The bindings of `app_guid`.
    pub fn bindings_of<'a>(&'a self, app_guid: &'a str) -> impl Iterator<Item = &'a Binding> {
        self.bindings
            .values()
            .filter(move |b| b.app_guid == app_guid)
    }

    /// Every drain with its apps, as Cloud Controller's internal endpoint lists them:
    /// sorted by URL, apps grouped by their instance's TLS material. `name_of` gives an
    /// app's name (its syslog HOSTNAME); unknown apps are left out.
    pub fn drain_urls(&self, name_of: impl Fn(&str) -> Option<String>) -> Vec<DrainBinding> {
        let mut by_url: BTreeMap<&str, BTreeMap<Tls, Vec<DrainApp>>> = BTreeMap::new();
        for b in self.bindings.values() {
            let Some(instance) = self.instances.get(&b.instance_guid) else {
                continue;
            };
            let Some(url) = instance
                .syslog_drain_url
                .as_deref()
                .filter(|u| !u.is_empty())
            else {
                continue;
            };
            let Some(name) = name_of(&b.app_guid) else {
                continue;
            };
            let key = (
                instance.credential("cert"),
                instance.credential("key"),
                instance.credential("ca"),
            );
            by_url
                .entry(url)
                .or_default()
                .entry(key)
                .or_default()
                .push(DrainApp {
                    hostname: hostname(&name),
                    app_id: b.app_guid.clone(),
                });
        }
        by_url
            .into_iter()
            .map(|(url, creds)| DrainBinding {
                url: url.to_owned(),
                credentials: creds
                    .into_iter()
                    .map(|((cert, key, ca), mut apps)| {
                        apps.sort_by(|a, b| a.app_id.cmp(&b.app_id));
                        apps.dedup();
                        DrainCredentials {
                            cert,
                            key,
                            ca,
                            apps,
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

/// An app's syslog HOSTNAME: a cell has no orgs or spaces, so it is the app's name, made
/// of `[-a-zA-Z0-9]` (spaces become dashes) and at most 63 characters, as each part of
/// Cloud Foundry's `org.space.app`.
pub fn hostname(app_name: &str) -> String {
    let dashed: String = app_name.split_whitespace().collect::<Vec<_>>().join("-");
    let kept: String = dashed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    kept.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(guid: &str, url: &str, ca: &str) -> Instance {
        Instance {
            guid: guid.into(),
            name: format!("drain-{guid}"),
            syslog_drain_url: Some(url.into()),
            credentials: if ca.is_empty() {
                BTreeMap::new()
            } else {
                [("ca".to_owned(), serde_json::json!(ca))].into()
            },
            tags: Vec::new(),
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    fn binding(guid: &str, instance: &str, app: &str) -> Binding {
        Binding {
            guid: guid.into(),
            name: None,
            instance_guid: instance.into(),
            app_guid: app.into(),
            created_at_ms: 1,
        }
    }

    #[test]
    fn drains_list_their_apps_by_credentials_and_round_trip_on_disk() {
        let mut s = Services::default();
        for i in [
            instance("i1", "syslog://a:1", ""),
            instance("i2", "syslog://a:1", "CA"),
            instance("i3", "syslog://b:1", ""),
        ] {
            s.instances.insert(i.guid.clone(), i);
        }
        for b in [
            binding("b1", "i1", "app-1"),
            binding("b2", "i2", "app-2"),
            binding("b3", "i3", "app-1"),
            binding("b4", "i3", "gone"),
        ] {
            s.bindings.insert(b.guid.clone(), b);
        }
        let names = |g: &str| (g != "gone").then(|| format!("my app {g}"));
        let drains = s.drain_urls(names);
        assert_eq!(drains.len(), 2);
        assert_eq!(drains[0].url, "syslog://a:1");
        assert_eq!(drains[0].credentials.len(), 2, "two TLS materials");
        assert_eq!(drains[0].credentials[1].ca, "CA");
        assert_eq!(drains[0].credentials[1].apps[0].app_id, "app-2");
        assert_eq!(
            drains[1].credentials[0].apps.len(),
            1,
            "unknown apps left out"
        );
        assert_eq!(drains[1].credentials[0].apps[0].hostname, "my-app-app-1");

        let dir = std::env::temp_dir().join(format!("hydrant-services-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(Services::load(&dir).unwrap(), Services::default());
        s.save(&dir).unwrap();
        assert_eq!(Services::load(&dir).unwrap(), s);
        std::fs::write(dir.join(FILE), "{").unwrap();
        let e = Services::load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("services.json") && e.contains("not a service table"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hostnames_are_what_syslog_accepts() {
        assert_eq!(hostname("my app_2--"), "my-app2");
        assert_eq!(hostname(&"x".repeat(80)).len(), 63);
    }
}
