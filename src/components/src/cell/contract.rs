//! The scheduler API's bodies (the Cloud Controller v3 subset a cell serves), shared by the
//! server ([`super::api`]) and its client (`hydrant::apps::Client` in the binary): field names are Cloud
//! Controller's, states are enums.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod services;

/// `{"href": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Where.
    pub href: String,
}

/// Cloud Controller's pagination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Resources in all pages.
    pub total_results: usize,
    /// Pages.
    pub total_pages: usize,
    /// The first page.
    pub first: Link,
    /// The last page.
    pub last: Link,
    /// The next page.
    pub next: Option<Link>,
    /// The previous page.
    pub previous: Option<Link>,
}

impl Pagination {
    /// Page `page` (1-based) of `per_page` out of `total`, each link `base` plus `filters`
    /// (already encoded, `&`-joined; may be empty) and its page.
    pub fn page(
        base: &str,
        filters: &str,
        page: usize,
        per_page: usize,
        total: usize,
    ) -> Pagination {
        let pages = total.div_ceil(per_page).max(1);
        let link = |n: usize| Link {
            href: if filters.is_empty() {
                format!("{base}?page={n}&per_page={per_page}")
            } else {
                format!("{base}?{filters}&page={n}&per_page={per_page}")
            },
        };
        Pagination {
            total_results: total,
            total_pages: pages,
            first: link(1),
            last: link(pages),
            next: (page < pages).then(|| link(page + 1)),
            previous: (page > 1).then(|| link((page - 1).min(pages))),
        }
    }

    /// One page holding `total` resources at `path`.
    pub fn single(path: &str, total: usize) -> Pagination {
        let link = || Link {
            href: path.to_owned(),
        };
        Pagination {
            total_results: total,
            total_pages: 1,
            first: link(),
            last: link(),
            next: None,
            previous: None,
        }
    }
}

/// A list answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Where the pages are.
    pub pagination: Pagination,
    /// The resources.
    pub resources: Vec<T>,
}

/// An app's desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AppState {
    /// At least one instance wanted.
    Started,
    /// Scaled to zero.
    Stopped,
}

/// `GET /v3/apps/{guid}`, an element of `GET /v3/apps`, the answer to a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its id.
    pub guid: String,
    /// Its name.
    pub name: String,
    /// Started or stopped.
    pub state: AppState,
    /// Desired instances.
    pub instances: u32,
    /// Instances running now.
    pub running_instances: usize,
    /// What each instance runs (`/bin/sh -c`).
    pub command: String,
    /// Memory quota per instance.
    pub memory_in_mb: u64,
    /// Disk quota per instance.
    pub disk_in_mb: u64,
    /// Environment given to each instance.
    pub env: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Its own URL.
    pub links: SelfLink,
}

/// `{"self": {"href": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfLink {
    /// The resource's URL.
    #[serde(rename = "self")]
    pub this: Link,
}

/// An app's web process: an element of `GET /v3/processes`, the answer to a scale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// The app's guid (a cell runs one process per app).
    pub guid: String,
    /// Always `web`.
    #[serde(rename = "type")]
    pub process_type: String,
    /// Desired instances.
    pub instances: u32,
    /// What each instance runs.
    pub command: String,
    /// Memory quota per instance.
    pub memory_in_mb: u64,
    /// Disk quota per instance.
    pub disk_in_mb: u64,
    /// Its app.
    pub relationships: Relationships,
    /// Its app's URL.
    pub links: AppLink,
}

/// `{"app": {"data": {"guid": …}}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationships {
    /// The app.
    pub app: Relationship,
}

/// `{"data": {"guid": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// Who.
    pub data: GuidRef,
}

/// `{"guid": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuidRef {
    /// The guid.
    pub guid: String,
}

/// `{"app": {"href": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLink {
    /// The app's URL.
    pub app: Link,
}

/// An instance's state, as Cloud Controller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InstanceState {
    /// Started, not yet healthy.
    Starting,
    /// Healthy.
    Running,
    /// Exited unrequested; restarts after a backoff.
    Crashed,
    /// Not running.
    Down,
}

/// `GET /v3/apps/{guid}/processes/web/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// One per instance index.
    pub resources: Vec<InstanceStats>,
}

/// One instance's stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStats {
    /// Always `web`.
    #[serde(rename = "type")]
    pub process_type: String,
    /// Its index.
    pub index: u32,
    /// Its state.
    pub state: InstanceState,
    /// Seconds since it started.
    pub uptime: u64,
    /// The rest, for an index that has (or had) a process.
    #[serde(flatten)]
    pub detail: Option<InstanceDetail>,
}

/// What a cell knows of an instance beyond its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceDetail {
    /// This incarnation's id.
    pub instance_guid: String,
    /// Where it listens.
    pub host: String,
    /// Its `PORT`, while it runs.
    pub port: Option<u16>,
    /// Its process group leader, while it runs.
    pub pid: Option<u32>,
    /// Crashes in a row.
    pub crash_count: u32,
    /// When crashed: seconds to its restart.
    pub restart_in_seconds: Option<f64>,
    /// Its last crash, if it has crashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_crash: Option<LastCrash>,
    /// Memory quota, bytes.
    pub mem_quota: u64,
    /// Disk quota, bytes.
    pub disk_quota: u64,
    /// Its last measurement.
    pub usage: Usage,
}

/// Why and when an instance last crashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastCrash {
    /// As Cloud Foundry words it: `APP/PROC/WEB: Exited with status 1`.
    pub reason: String,
    /// Exit status (128 + signal number when killed by a signal).
    pub exit_status: Option<i32>,
    /// When (RFC 3339).
    pub at: String,
}

/// An instance's last measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// When (RFC 3339), once measured.
    pub time: Option<String>,
    /// CPU as a fraction of one core.
    pub cpu: f64,
    /// Resident memory, bytes.
    pub mem: u64,
    /// Disk used, bytes.
    pub disk: u64,
}

/// `POST /v3/apps`. Every field is optional on the wire so a missing one is answered with
/// Cloud Controller's message naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// The app's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What each instance runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Instances (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<i64>,
    /// Memory quota per instance, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_in_mb: Option<i64>,
    /// Disk quota per instance, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_in_mb: Option<i64>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `POST /v3/apps/{guid}/processes/web/actions/scale`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<i64>,
    /// Memory quota per instance, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_in_mb: Option<i64>,
    /// Disk quota per instance, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_in_mb: Option<i64>,
}

/// An error answer: `{"errors": [{code, title, detail}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// Usually one.
    pub errors: Vec<CfError>,
}

/// One Cloud Controller error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CfError {
    /// Cloud Controller's error code (e.g. 10008).
    pub code: u32,
    /// E.g. `CF-UnprocessableEntity`.
    pub title: String,
    /// What was wrong.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip_with_and_without_a_process() {
        let down = InstanceStats {
            process_type: "web".into(),
            index: 3,
            state: InstanceState::Down,
            uptime: 0,
            detail: None,
        };
        let json = serde_json::to_string(&down).unwrap();
        assert_eq!(
            json,
            r#"{"type":"web","index":3,"state":"DOWN","uptime":0}"#
        );
        assert_eq!(serde_json::from_str::<InstanceStats>(&json).unwrap(), down);
        let running = InstanceStats {
            state: InstanceState::Running,
            detail: Some(InstanceDetail {
                instance_guid: "g".into(),
                host: "127.0.0.1".into(),
                port: Some(8080),
                pid: None,
                crash_count: 0,
                restart_in_seconds: None,
                last_crash: None,
                mem_quota: 1,
                disk_quota: 2,
                usage: Usage {
                    time: None,
                    cpu: 0.5,
                    mem: 3,
                    disk: 4,
                },
            }),
            ..down
        };
        let value = serde_json::to_value(&running).unwrap();
        assert_eq!(value["port"], 8080);
        assert!(value["pid"].is_null(), "{value}");
        assert_eq!(value["usage"]["cpu"], 0.5);
        assert_eq!(
            serde_json::from_value::<InstanceStats>(value).unwrap(),
            running
        );
    }
}
