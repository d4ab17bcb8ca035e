//! Scaling history: one record per evaluation that changed something (or failed, or was
//! ignored for a new reason), with Cloud Foundry's `scaling_histories` fields plus Hydrant's
//! explanation (rule, window summary, constraints, scheduler response). Pure.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::engine::Time;

/// Records kept per app (the oldest go first).
pub const MAX_RECORDS_PER_APP: usize = 1000;

/// How long records are kept (CF's operator prunes after 240 h).
pub const RETENTION_SECS: Time = 240 * 3600;

/// `scaling_type`: what started a scale (Cloud Foundry sends it as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalingType {
    /// A scaling rule or target tracking (0).
    Dynamic,
    /// A schedule starting or ending (1).
    Schedule,
}

/// `status`: how a scale went (Cloud Foundry sends it as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Carried out (0).
    Succeeded,
    /// The platform refused or did not answer (1).
    Failed,
    /// Decided against: cooldown, limits, a scale in flight (2).
    Ignored,
}

impl ScalingType {
    /// CF's number.
    pub fn code(self) -> u8 {
        match self {
            ScalingType::Dynamic => 0,
            ScalingType::Schedule => 1,
        }
    }

    fn from_code(n: u8) -> Option<ScalingType> {
        match n {
            0 => Some(ScalingType::Dynamic),
            1 => Some(ScalingType::Schedule),
            _ => None,
        }
    }

    /// As the cf CLI's history table shows it.
    pub fn label(self) -> &'static str {
        match self {
            ScalingType::Dynamic => "dynamic",
            ScalingType::Schedule => "scheduled",
        }
    }
}

impl Status {
    /// CF's number.
    pub fn code(self) -> u8 {
        match self {
            Status::Succeeded => 0,
            Status::Failed => 1,
            Status::Ignored => 2,
        }
    }

    fn from_code(n: u8) -> Option<Status> {
        match n {
            0 => Some(Status::Succeeded),
            1 => Some(Status::Failed),
            2 => Some(Status::Ignored),
            _ => None,
        }
    }

    /// As the cf CLI's history table shows it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Ignored => "ignored",
        }
    }
}

/// Both travel as CF's numbers.
macro_rules! numeric_serde {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u8(self.code())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let n = u8::deserialize(d)?;
                <$t>::from_code(n).ok_or_else(|| {
                    serde::de::Error::custom(format!(concat!("unknown ", $what, " {}"), n))
                })
            }
        }
    };
}

numeric_serde!(ScalingType, "scaling_type");
numeric_serde!(Status, "status");

/// The window a rule judged, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Metric type.
    pub metric: String,
    /// Breach duration.
    pub breach_duration_secs: u64,
    /// Samples in the window.
    pub samples: usize,
    /// Lowest value.
    pub min: Option<f64>,
    /// Mean value.
    pub mean: Option<f64>,
    /// Highest value.
    pub max: Option<f64>,
    /// Start (UNIX s) of the latest unbroken run of breaching aggregates, if any.
    pub breaching_since: Option<i64>,
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The app's platform id (guid), or the policy's app when unresolved.
    pub app_id: String,
    /// When, UNIX nanoseconds.
    pub timestamp: i64,
    /// What started it.
    pub scaling_type: ScalingType,
    /// How it went.
    pub status: Status,
    /// Count before (−1 when unknown).
    pub old_instances: i64,
    /// Count after (−1 when unknown).
    pub new_instances: i64,
    /// Why, e.g. `+1 instance(s) because cpu > 70% for 300 seconds`.
    pub reason: String,
    /// Constraints, e.g. `limited by max instances 3`.
    pub message: String,
    /// What failed.
    pub error: String,
    /// Hydrant: the policy's app (name or guid).
    pub app: String,
    /// Hydrant: the acting rule's index.
    pub rule: Option<usize>,
    /// Hydrant: the acting rule's window.
    pub window: Option<WindowSummary>,
    /// Hydrant: every constraint that shaped the outcome.
    pub constraints: Vec<String>,
    /// Hydrant: what the scheduler answered.
    pub response: String,
}

/// Query parameters of `GET /v1/apps/{app}/scaling_histories`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// Inclusive, nanoseconds.
    pub start: i64,
    /// Inclusive, nanoseconds.
    pub end: i64,
    /// Oldest first?
    pub ascending: bool,
    /// 1-based.
    pub page: usize,
    /// Page size.
    pub per_page: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            start: 0,
            end: i64::MAX,
            ascending: false,
            page: 1,
            per_page: 50,
        }
    }
}

/// One page of history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Matching records.
    pub total_results: usize,
    /// Pages at this size.
    pub total_pages: usize,
    /// This page.
    pub page: usize,
    /// The records.
    pub resources: Vec<Record>,
}

/// Every app's records.
#[derive(Debug, Clone, Default)]
pub struct History {
    apps: BTreeMap<String, VecDeque<Record>>,
}

impl History {
    /// Appends a record under the policy's app.
    pub fn push(&mut self, record: Record) {
        let q = self.apps.entry(record.app.clone()).or_default();
        let cutoff = record.timestamp - RETENTION_SECS * 1_000_000_000;
        while q
            .front()
            .is_some_and(|r| r.timestamp < cutoff || q.len() >= MAX_RECORDS_PER_APP)
        {
            q.pop_front();
        }
        q.push_back(record);
    }

    /// The records of `app` (policy app or `app_id`), paged.
    pub fn query(&self, app: &str, q: Query) -> Page {
        let rows = self
            .apps
            .get(app)
            .or_else(|| {
                self.apps
                    .values()
                    .find(|rows| rows.back().is_some_and(|r| r.app_id == app))
            })
            .into_iter()
            .flatten()
            .filter(|r| r.timestamp >= q.start && r.timestamp <= q.end);
        let mut rows: Vec<&Record> = rows.collect();
        if !q.ascending {
            rows.reverse();
        }
        let per_page = q.per_page.max(1);
        let total_results = rows.len();
        let page = q.page.max(1);
        let resources = rows
            .into_iter()
            // A page far past the end (page up to usize::MAX) is simply empty.
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .cloned()
            .collect();
        Page {
            total_results,
            total_pages: total_results.div_ceil(per_page),
            page,
            resources,
        }
    }

    /// The newest record of `app`.
    pub fn last(&self, app: &str) -> Option<&Record> {
        self.apps.get(app).and_then(VecDeque::back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(app: &str, t: i64) -> Record {
        Record {
            app_id: format!("guid-{app}"),
            timestamp: t,
            scaling_type: ScalingType::Dynamic,
            status: Status::Succeeded,
            old_instances: 1,
            new_instances: 2,
            reason: String::new(),
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
    fn a_page_far_past_the_end_is_empty() {
        let mut h = History::default();
        h.push(record("web", 1));
        let page = h.query(
            "web",
            Query {
                page: usize::MAX,
                per_page: usize::MAX,
                ..Query::default()
            },
        );
        assert!(page.resources.is_empty());
        assert_eq!(page.total_results, 1);
    }

    #[test]
    fn pages_newest_first_by_default_and_filters_by_time() {
        let mut h = History::default();
        for t in 1..=5 {
            h.push(record("a", t));
        }
        h.push(record("b", 3));
        let page = h.query(
            "a",
            Query {
                per_page: 2,
                ..Query::default()
            },
        );
        assert_eq!((page.total_results, page.total_pages), (5, 3));
        let times: Vec<i64> = page.resources.iter().map(|r| r.timestamp).collect();
        assert_eq!(times, [5, 4]);
        let page = h.query(
            "guid-a",
            Query {
                start: 2,
                end: 4,
                ascending: true,
                ..Query::default()
            },
        );
        let times: Vec<i64> = page.resources.iter().map(|r| r.timestamp).collect();
        assert_eq!(times, [2, 3, 4], "by guid, ascending, within [start, end]");
        assert_eq!(h.query("nobody", Query::default()).total_results, 0);
    }

    #[test]
    fn bounded_by_count_and_age() {
        let mut h = History::default();
        for t in 0..(MAX_RECORDS_PER_APP as i64 + 10) {
            h.push(record("a", t));
        }
        assert_eq!(
            h.query("a", Query::default()).total_results,
            MAX_RECORDS_PER_APP
        );
        h.push(record("a", (RETENTION_SECS + 5_000) * 1_000_000_000));
        assert_eq!(
            h.query("a", Query::default()).total_results,
            1,
            "older than 240 h is pruned"
        );
    }
}
