//! Scaling policies: Cloud Foundry app-autoscaler's policy document, field for field, in YAML
//! or JSON, plus Hydrant's extensions. Loading reports every problem at once, each with
//! file, line, column and field path, so `hydrant policy check` can print them all.
//!
//! Extensions beyond Cloud Foundry (all optional):
//! - `app:` names the app (name or guid); the file name is the fallback.
//! - `breach_duration: 5m` / `cool_down: 5m` beside the `_secs` fields; thresholds may be
//!   floats; durations down to 1 s (CF's 60 s minimum becomes a warning).
//! - Per rule: `breach: all | mean | {m_of_n: [M, N]}` and
//!   `on_missing: block | ignore | {value: X}`.
//! - `cool_downs: {scale_out: 1m, scale_in: 5m}`: per-direction cooldowns for the app.
//! - `target: {metric, value, tolerance, scale_in_stabilization}`: target tracking with the
//!   HPA formula.
//! - `conflict_resolution: scale_out_wins | first_match` (`first_match` is CF's behaviour).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(test)]
mod fuzz;
mod parse;
pub(crate) use parse::parse_duration;
#[cfg(test)]
mod tests;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The policy is accepted, but something deserves attention.
    Warning,
    /// The policy is refused.
    Error,
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Field path, e.g. `scaling_rules[0].threshold` (empty for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {level}: ",
            self.file.display(),
            self.line,
            self.column
        )?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A metric a rule watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    /// `cpu`: percent of one core (container metric `cpu`).
    Cpu,
    /// `cpuutil`: percent of the entitlement (`cpu_entitlement`).
    CpuUtil,
    /// `memoryused`: MB resident.
    MemoryUsed,
    /// `memoryutil`: percent of the memory quota.
    MemoryUtil,
    /// `disk`: MB used.
    Disk,
    /// `diskutil`: percent of the disk quota.
    DiskUtil,
    /// `throughput`: requests per second (from `http` timers).
    Throughput,
    /// `responsetime`: mean ms (from `http` timers).
    ResponseTime,
    /// Any gauge the app emits.
    Custom(String),
}

impl MetricType {
    /// Parses a `metric_type` (any other name is a custom metric).
    pub fn parse(s: &str) -> MetricType {
        match s {
            "cpu" => MetricType::Cpu,
            "cpuutil" => MetricType::CpuUtil,
            "memoryused" => MetricType::MemoryUsed,
            "memoryutil" => MetricType::MemoryUtil,
            "disk" => MetricType::Disk,
            "diskutil" => MetricType::DiskUtil,
            "throughput" => MetricType::Throughput,
            "responsetime" => MetricType::ResponseTime,
            other => MetricType::Custom(other.to_owned()),
        }
    }

    /// The policy name.
    pub fn name(&self) -> &str {
        match self {
            MetricType::Cpu => "cpu",
            MetricType::CpuUtil => "cpuutil",
            MetricType::MemoryUsed => "memoryused",
            MetricType::MemoryUtil => "memoryutil",
            MetricType::Disk => "disk",
            MetricType::DiskUtil => "diskutil",
            MetricType::Throughput => "throughput",
            MetricType::ResponseTime => "responsetime",
            MetricType::Custom(s) => s,
        }
    }

    /// Cloud Foundry's threshold bounds for this metric (inclusive), if any.
    pub fn threshold_bounds(&self) -> (f64, Option<f64>) {
        match self {
            MetricType::Cpu
            | MetricType::CpuUtil
            | MetricType::MemoryUtil
            | MetricType::DiskUtil => (1.0, Some(100.0)),
            MetricType::Disk => (1.0, Some(2048.0)),
            MetricType::MemoryUsed | MetricType::Throughput | MetricType::ResponseTime => {
                (0.0, None)
            }
            MetricType::Custom(_) => (f64::NEG_INFINITY, None),
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Operator {
    /// Whether `value op threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Operator::Lt => value < threshold,
            Operator::Le => value <= threshold,
            Operator::Gt => value > threshold,
            Operator::Ge => value >= threshold,
        }
    }

    /// The policy spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
        }
    }
}

/// How many instances a rule adds or removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// `+N` / `-N`.
    Step(i64),
    /// `+N%` / `-N%`.
    Percent(i64),
}

impl Adjustment {
    /// Whether it scales out.
    pub fn is_out(self) -> bool {
        match self {
            Adjustment::Step(n) | Adjustment::Percent(n) => n > 0,
        }
    }

    /// The new count from `current`, as Cloud Foundry computes it: percentages round half
    /// up, and a percentage too small to change the count moves it by one.
    pub fn apply(self, current: u32) -> i64 {
        let current = i64::from(current);
        match self {
            Adjustment::Step(n) => current + n,
            Adjustment::Percent(p) => {
                let next = (current as f64 * (1.0 + p as f64 / 100.0) + 0.5).floor() as i64;
                if next == current {
                    current + p.signum()
                } else {
                    next
                }
            }
        }
    }
}

/// When a window of samples counts as breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// Every sample in the window breaches (Cloud Foundry).
    All,
    /// The mean of the window breaches.
    Mean,
    /// At least `m` of the last `n` samples breach.
    MOfN {
        /// Needed.
        m: u32,
        /// Out of.
        n: u32,
    },
}

/// What a rule does when its metric has no data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnMissing {
    /// No decision while data is missing (Cloud Foundry).
    Block,
    /// Decide on the samples that exist.
    Ignore,
    /// Treat missing samples as this value.
    Value(f64),
}

/// A threshold rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// What to watch.
    pub metric: MetricType,
    /// How to compare.
    pub operator: Operator,
    /// Against what.
    pub threshold: f64,
    /// How long it must breach.
    pub breach_duration: Duration,
    /// The app's cooldown after this rule scaled it.
    pub cool_down: Duration,
    /// What to do.
    pub adjustment: Adjustment,
    /// Window semantics.
    pub breach: Breach,
    /// Missing-data policy.
    pub on_missing: OnMissing,
}

/// One metric of target tracking.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetMetric {
    /// Metric to hold at `value`.
    pub metric: MetricType,
    /// The target.
    pub value: f64,
    /// The metric is an app-wide total (e.g. a queue length), so
    /// `desired = ceil(value / target)` (KEDA's `AverageValue`), instead of a per-instance
    /// mean with `desired = ceil(current × value / target)` (HPA's utilization).
    pub total: bool,
}

/// How fast target tracking may change the count: the most permissive of the policies
/// (HPA's `selectPolicy: Max`), measured from the count `period` ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// At most this many instances per period.
    pub instances: Option<u32>,
    /// At most this percentage of the count per period.
    pub percent: Option<u32>,
    /// The period.
    pub period: Duration,
}

/// Falls back to a fixed count when the metrics fail (KEDA's `fallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// Consecutive evaluations without data tolerated; one more triggers the fallback.
    pub failures: u32,
    /// The count to hold while failing.
    pub instances: u32,
}

/// Target tracking (the HPA formula `desired = ceil(current × value / target)`), with
/// HPA's behaviour (tolerance, scale-in stabilization, rate limits, missing and not-ready
/// instances, several metrics) and KEDA's (activation, scale to zero, fallback).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The metrics; the largest recommendation wins.
    pub metrics: Vec<TargetMetric>,
    /// Dead band as a fraction of the target (HPA's 0.1).
    pub tolerance: f64,
    /// Scale-in uses the highest recommendation of this window (HPA's 300 s).
    pub scale_in_stabilization: Duration,
    /// Scale-out rate (HPA default: 100 % or 4 instances per 15 s).
    pub scale_up: RateLimit,
    /// Scale-in rate (HPA default: 100 % per 15 s).
    pub scale_down: RateLimit,
    /// Instances younger than this are not ready: for a scale-out their metrics count as 0.
    pub initialization: Duration,
    /// Above this value the app is active: it scales from 0 to 1 (KEDA's activation).
    pub activation: Option<f64>,
    /// With `instance_min_count: 0`, scale to 0 after this long inactive (KEDA's 300 s).
    pub scale_to_zero_after: Duration,
    /// What to do when every metric fails.
    pub fallback: Option<Fallback>,
    /// No data counts as 0 instead of a failure (KEDA's `ignoreNullValues`).
    pub missing_as_zero: bool,
}

impl Target {
    /// HPA's default scale-out rate.
    pub const SCALE_UP: RateLimit = RateLimit {
        instances: Some(4),
        percent: Some(100),
        period: Duration::from_secs(15),
    };
    /// HPA's default scale-in rate.
    pub const SCALE_DOWN: RateLimit = RateLimit {
        instances: None,
        percent: Some(100),
        period: Duration::from_secs(15),
    };
}

/// Which of several breached rules acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// A breached scale-out rule beats any scale-in rule (the safe default).
    ScaleOutWins,
    /// The first breached rule in file order (Cloud Foundry).
    FirstMatch,
}

/// Per-direction cooldowns for the app, overriding the rules' `cool_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoolDowns {
    /// After any scaling, how long until the next scale-out.
    pub scale_out: Option<Duration>,
    /// After any scaling, how long until the next scale-in.
    pub scale_in: Option<Duration>,
}

/// A recurring schedule window.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurring {
    /// Minutes after midnight, start inclusive.
    pub start_minute: u32,
    /// Minutes after midnight, end exclusive.
    pub end_minute: u32,
    /// 1 = Monday … 7 = Sunday (empty when `days_of_month` is used).
    pub days_of_week: Vec<u32>,
    /// 1 … 31 (empty when `days_of_week` is used).
    pub days_of_month: Vec<u32>,
    /// Optional first day.
    pub start_date: Option<chrono::NaiveDate>,
    /// Optional last day.
    pub end_date: Option<chrono::NaiveDate>,
    /// Limits while active.
    pub min: u32,
    /// Limits while active.
    pub max: u32,
    /// Floor applied when the schedule starts.
    pub initial_min: Option<u32>,
}

/// A one-off schedule window.
#[derive(Debug, Clone, PartialEq)]
pub struct Specific {
    /// Start, local to the schedule's time zone.
    pub start: chrono::NaiveDateTime,
    /// End.
    pub end: chrono::NaiveDateTime,
    /// Limits while active.
    pub min: u32,
    /// Limits while active.
    pub max: u32,
    /// Floor applied when the schedule starts.
    pub initial_min: Option<u32>,
}

/// Schedules of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedules {
    /// IANA time zone.
    pub timezone: chrono_tz::Tz,
    /// Repeating windows.
    pub recurring: Vec<Recurring>,
    /// One-off windows.
    pub specific: Vec<Specific>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// App name or guid.
    pub app: String,
    /// Lower bound of instances.
    pub min: u32,
    /// Upper bound of instances.
    pub max: u32,
    /// Threshold rules, in file order.
    pub rules: Vec<Rule>,
    /// Target tracking, if any.
    pub target: Option<Target>,
    /// Schedules, if any.
    pub schedules: Option<Schedules>,
    /// Conflict resolution between breached rules.
    pub conflict: Conflict,
    /// Per-direction cooldowns.
    pub cool_downs: CoolDowns,
    /// Unknown extras kept for round trips (`schema-version`, `credential-type`).
    pub extras: BTreeMap<String, String>,
}

/// The result of loading one file: the policy (when there are no errors) and every problem.
#[derive(Debug)]
pub struct Loaded {
    /// The policy, if it has no errors.
    pub policy: Option<Policy>,
    /// Errors and warnings, in file order.
    pub problems: Vec<Problem>,
}

/// Parses and validates policy text; `file` names it in problems and supplies the app
/// name when the document has no `app:`.
pub fn parse(text: &str, file: &Path) -> Loaded {
    parse::parse(text, file)
}

/// Parses a policy that must have no errors (warnings are fine): for tests.
#[cfg(test)]
pub(crate) fn parse_valid(text: &str, file: &str) -> Policy {
    let loaded = parse(text, Path::new(file));
    assert!(
        loaded
            .problems
            .iter()
            .all(|p| p.severity == Severity::Warning),
        "{:?}",
        loaded.problems
    );
    loaded.policy.expect("a policy without errors")
}

/// Loads a policy file.
pub fn load(file: &Path) -> Loaded {
    match std::fs::read_to_string(file) {
        Ok(text) => parse(&text, file),
        Err(e) => Loaded {
            policy: None,
            problems: vec![Problem {
                severity: Severity::Error,
                file: file.to_owned(),
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        },
    }
}

fn is_policy_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml" | "json")
    )
}

/// The policy files `paths` name: files as given, directories expanded to their `.yml`,
/// `.yaml` and `.json` files in name order.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| Problem {
                severity: Severity::Error,
                file: p.clone(),
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read the directory: {e}"),
            })?;
            let mut inside: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && is_policy_file(f))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Every policy in `paths`, with every problem; two policies for the same app are an error.
#[derive(Debug, Default)]
pub struct LoadedSet {
    /// Files read.
    pub files: Vec<PathBuf>,
    /// Valid policies.
    pub policies: Vec<Policy>,
    /// The file of each policy.
    pub origins: Vec<PathBuf>,
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
}

impl LoadedSet {
    /// Errors (warnings excluded).
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

/// Loads every policy file in `paths` (see [`files`]).
pub fn load_all(paths: &[PathBuf]) -> LoadedSet {
    let mut set = LoadedSet::default();
    let files = match files(paths) {
        Ok(f) => f,
        Err(p) => {
            set.problems.push(p);
            return set;
        }
    };
    let mut owners: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &files {
        let loaded = load(file);
        set.problems.extend(loaded.problems);
        if let Some(p) = loaded.policy {
            if let Some(first) = owners.get(&p.app) {
                set.problems.push(Problem {
                    severity: Severity::Error,
                    file: file.clone(),
                    line: 0,
                    column: 0,
                    path: "app".into(),
                    message: format!("app {} already has a policy in {}", p.app, first.display()),
                });
                continue;
            }
            owners.insert(p.app.clone(), file.clone());
            set.policies.push(p);
            set.origins.push(file.clone());
        }
    }
    set.files = files;
    set
}
