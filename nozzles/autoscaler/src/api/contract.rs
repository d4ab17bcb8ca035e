//! The autoscaler API's response bodies, shared by its server ([`crate::api`]) and its
//! clients (the `hydrant autoscaler history|explain` CLI), so both read the same types
//! and numbers travel as enums ([`crate::history::Status`], [`AlertState`]). The policy
//! bodies ([`PolicyText`], [`PolicyCheck`], [`PolicySaved`], [`PolicyRefused`],
//! [`ReplayOutcome`]) are what the web console reads.

use serde::{Deserialize, Serialize};

use crate::engine::Time;
use crate::history::Record;

/// `GET /v1/apps/{app}/scaling_histories`: Cloud Foundry's paged history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Matching records.
    pub total_results: usize,
    /// Pages at this size.
    pub total_pages: usize,
    /// This page (1-based).
    pub page: usize,
    /// The previous page, if any.
    pub prev_url: Option<String>,
    /// The next page, if any.
    pub next_url: Option<String>,
    /// The records.
    pub resources: Vec<Record>,
}

/// `GET /v1/apps`: the apps under a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppList {
    /// How many.
    pub total_results: usize,
    /// One per app.
    pub resources: Vec<AppSummary>,
}

/// One app under a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSummary {
    /// The policy's app (name or guid).
    pub app: String,
    /// Its guid, once resolved.
    pub guid: Option<String>,
    /// Its instance count, once known.
    pub instances: Option<u32>,
    /// The policy's lower bound.
    pub instance_min_count: u32,
    /// The policy's upper bound.
    pub instance_max_count: u32,
    /// Scaling rules.
    pub rules: usize,
    /// Whether it tracks a target.
    pub target_tracking: bool,
    /// Whether it has schedules.
    pub schedules: bool,
}

/// `GET /v1/overview`: every managed app's live state (what `kubectl get hpa` shows for
/// each: metric values against their thresholds, limits, instances, the last decision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Apps.
    pub total_results: usize,
    /// Each app's explanation, by app.
    pub resources: Vec<Explanation>,
}

/// `GET /v1/apps/{app}/explain`: the live state of an app's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The policy's app.
    pub app: String,
    /// Its guid, once resolved.
    pub guid: Option<String>,
    /// Its instance count, once known.
    pub instances: Option<u32>,
    /// The limits in force (a schedule's, while one is active).
    pub limits: Limits,
    /// The schedule in force.
    pub schedule: Option<ActiveSchedule>,
    /// Cooldowns left.
    pub cooldown: Cooldown,
    /// The circuit breaker.
    pub breaker: Breaker,
    /// Every scaling rule.
    pub rules: Vec<RuleState>,
    /// Target tracking, when the policy has it.
    pub target: Option<TargetState>,
    /// What the next evaluation would do.
    pub next: String,
    /// The latest record.
    pub last_decision: Option<Record>,
}

/// Instance limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Lower bound.
    pub min: u32,
    /// Upper bound.
    pub max: u32,
}

/// A schedule in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSchedule {
    /// Its index in the policy.
    pub id: usize,
    /// Start, UNIX seconds.
    pub start: Time,
    /// End, UNIX seconds.
    pub end: Time,
    /// Its lower bound.
    pub min: u32,
    /// Its upper bound.
    pub max: u32,
}

/// Cooldowns left, in seconds (none: not cooling down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    /// Before the next scale-out.
    pub scale_out_remaining_secs: Option<Time>,
    /// Before the next scale-in.
    pub scale_in_remaining_secs: Option<Time>,
}

/// The circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// Consecutive failed scale calls.
    pub failures: u32,
    /// Seconds it stays open (none: closed).
    pub open_remaining_secs: Option<Time>,
}

/// One rule's live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Its index in the policy.
    pub rule: usize,
    /// The rule as text (`cpu > 70 for 300 seconds`).
    pub text: String,
    /// Its adjustment (`+1`, `-50%`).
    pub adjustment: String,
    /// Its metric.
    pub metric: String,
    /// The comparison, e.g. `>`.
    #[serde(default)]
    pub operator: String,
    /// The threshold.
    #[serde(default)]
    pub threshold: f64,
    /// The latest aggregate.
    pub value: Option<f64>,
    /// How long the latest run of breaching aggregates has lasted.
    pub breaching_for_secs: Option<Time>,
    /// The rule's breach duration.
    pub breach_duration_secs: u64,
    /// The window judged.
    pub window: WindowState,
    /// The engine's verdict, in words.
    pub verdict: String,
    /// Whether it breaches now.
    pub breaching: bool,
    /// Its alert.
    pub alert: Alert,
}

/// The window a rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Aggregates in it.
    pub samples: usize,
    /// Lowest.
    pub min: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Highest.
    pub max: Option<f64>,
}

/// A rule's alert, as Prometheus' `for:` states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Its state.
    pub state: AlertState,
    /// Since when (UNIX seconds), unless inactive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Not breaching.
    Inactive,
    /// Breaching, not yet for long enough.
    Pending,
    /// Firing.
    Firing,
}

/// Target tracking's live state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// The metric's value.
    pub value: Option<f64>,
    /// Value over target.
    pub ratio: Option<f64>,
    /// The count it recommends.
    pub recommended: u32,
    /// After the scale-in stabilization window.
    pub stabilized: u32,
}

/// An error answer, as CF's autoscaler API gives it: `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The status's reason phrase (`Bad Request`, `Not Found`).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// `GET /v1/apps/{app}/policy`: an app's policy as its file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyText {
    /// The policy's app.
    pub app: String,
    /// The file it came from.
    pub file: String,
    /// The file's exact text.
    pub text: String,
}

/// A problem's severity, as `hydrant policy check --json` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemSeverity {
    /// The policy is refused.
    Error,
    /// Accepted, but worth a look.
    Warning,
}

/// One problem of a policy text (the file is the one the request names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProblem {
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Field path, e.g. `scaling_rules[0].threshold` (empty for the whole document).
    pub path: String,
    /// Error or warning.
    pub severity: ProblemSeverity,
    /// What is wrong.
    pub message: String,
}

/// `POST /v1/policy/check`: what `hydrant policy check` says of a policy text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCheck {
    /// The app it is for: its `app:`, else the `?app=` of the request (none: neither).
    pub app: Option<String>,
    /// Errors: any refuses the policy.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Every problem, in document order.
    pub problems: Vec<PolicyProblem>,
}

/// A refused policy (422, or 409 when the saved file was refused beside the others): CF's
/// error body with every problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRefused {
    /// The status's reason phrase (`Unprocessable Entity`).
    pub code: String,
    /// `N error(s) in the policy`, and the first.
    pub message: String,
    /// Every problem, errors and warnings.
    pub problems: Vec<PolicyProblem>,
}

/// `PUT /v1/apps/{app}/policy`: the policy is saved and in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySaved {
    /// The policy's app.
    pub app: String,
    /// The file written.
    pub file: String,
    /// Its warnings.
    pub problems: Vec<PolicyProblem>,
}

/// `POST /v1/apps/{app}/policy/replay`: what a policy would have done over stored metrics
/// (a dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayOutcome {
    /// First tick replayed (UNIX seconds).
    pub from: Time,
    /// Last tick.
    pub to: Time,
    /// The history records it would have written, oldest first.
    pub records: Vec<Record>,
    /// The alerts it would have notified, oldest first.
    pub alerts: Vec<ReplayAlert>,
}

/// An alert a replay would have notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayAlert {
    /// The rule's index in the policy.
    pub rule: usize,
    /// The rule as text.
    pub summary: String,
    /// Firing or resolved.
    pub state: ReplayAlertState,
    /// When (UNIX seconds).
    pub at: Time,
    /// Since when it was pending or firing.
    pub since: Time,
    /// The latest aggregate.
    pub value: Option<f64>,
}

/// A notified alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayAlertState {
    /// It started firing.
    Firing,
    /// It stopped.
    Resolved,
}
