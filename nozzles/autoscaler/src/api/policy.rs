//! Policy editing in the autoscaler's API: read an app's policy file, check a policy text
//! as `hydrant policy check` does, save one (atomically, then reloaded as the file watcher
//! reloads, answering once it is in force) and replay one over stored metrics (a dry run
//! against `--replay-from`, with the caller's own token).
//!
//! - `GET /v1/apps/{app}/policy` → [`PolicyText`]
//! - `POST /v1/policy/check[?app=NAME]` (the policy text as body) → [`PolicyCheck`]
//! - `PUT /v1/apps/{app}/policy` (the text) → [`PolicySaved`]; 422 [`PolicyRefused`]
//! - `POST /v1/apps/{app}/policy/replay?from=-3h&to=now&step=10s` (the text) →
//!   [`ReplayOutcome`]; 422 [`PolicyRefused`]
//!
//! Bodies are raw YAML or JSON of any content type, at most [`MAX_POLICY_BYTES`], UTF-8.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as AppPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::contract::{
    PolicyCheck, PolicyProblem, PolicyRefused, PolicySaved, PolicyText, ProblemSeverity,
    ReplayAlert, ReplayAlertState, ReplayOutcome,
};
use super::{ApiError, Shared};
use crate::alert::Transition;
use crate::engine::Time;
use crate::policy::{self, Policy, Problem, Severity};
use crate::replay;
use crate::service::{Autoscaler, PolicyFiles, unix_now};

/// The largest policy text accepted (413 above).
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// The longest span a replay covers.
pub const MAX_REPLAY_SPAN: Time = 7 * 86_400;

/// The most ticks a replay evaluates (400 above).
pub const MAX_REPLAY_STEPS: i64 = 100_000;

/// The file a checked text is named as when no app names one.
pub const CHECK_FILE: &str = "policy.yml";

/// A replay's defaults: the last three hours up to now.
const DEFAULT_FROM: &str = "-3h";

/// The policy routes (see the module docs).
pub(super) fn routes() -> Router<Arc<Autoscaler>> {
    Router::new()
        .route("/v1/apps/{app}/policy", get(show).put(save))
        .route("/v1/apps/{app}/policy/replay", post(replay_text))
        .route("/v1/policy/check", post(check))
}

/// A refusal: CF's `{code, message}`, or a refused policy with its problems.
#[derive(Debug)]
enum Failure {
    Api(ApiError),
    /// 422 (the text has errors) or 409 (saved, but refused beside the other files, and
    /// rolled back).
    Refused(StatusCode, Vec<Problem>),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Api(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Api(e) => e.into_response(),
            Failure::Refused(status, problems) => {
                let errors: Vec<&Problem> = problems
                    .iter()
                    .filter(|p| p.severity == Severity::Error)
                    .collect();
                let mut message = format!("{} error(s) in the policy", errors.len());
                if let Some(first) = errors.first() {
                    message.push_str(&format!("; the first: {}", located(first)));
                }
                let body = PolicyRefused {
                    code: status.canonical_reason().unwrap_or("Error").to_owned(),
                    message,
                    problems: problems.iter().map(problem).collect(),
                };
                (status, axum::Json(body)).into_response()
            }
        }
    }
}

fn fail(status: StatusCode, message: String) -> ApiError {
    ApiError { status, message }
}

/// `line:column: path: message`, without the file (the caller named it).
fn located(p: &Problem) -> String {
    let path = if p.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", p.path)
    };
    format!("{}:{}: {path}{}", p.line, p.column, p.message)
}

fn problem(p: &Problem) -> PolicyProblem {
    PolicyProblem {
        line: p.line,
        column: p.column,
        path: p.path.clone(),
        severity: match p.severity {
            Severity::Error => ProblemSeverity::Error,
            Severity::Warning => ProblemSeverity::Warning,
        },
        message: p.message.clone(),
    }
}

/// The body as text: at most [`MAX_POLICY_BYTES`] (413), UTF-8 (400 naming the offset).
async fn read_text(body: Body) -> Result<String, ApiError> {
    let bytes = match Limited::new(body, MAX_POLICY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a policy is at most {} KiB", MAX_POLICY_BYTES / 1024),
            ));
        }
        Err(e) => {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            ));
        }
    };
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        fail(
            StatusCode::BAD_REQUEST,
            format!(
                "the policy is not UTF-8: invalid byte at offset {}",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// A policy text judged for one app.
#[derive(Debug)]
struct Checked {
    /// The app it is for: its `app:`, else the expected one.
    app: Option<String>,
    /// The policy, when there is no error.
    policy: Option<Policy>,
    /// Every problem, in document order.
    problems: Vec<Problem>,
}

impl Checked {
    fn count(&self, severity: Severity) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == severity)
            .count()
    }

    /// The policy, or 422 with every problem.
    fn accepted(self) -> Result<(Policy, Vec<Problem>), Failure> {
        match self.policy {
            Some(p) if self.count(Severity::Error) == 0 => Ok((p, self.problems)),
            _ => Err(Failure::Refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                self.problems,
            )),
        }
    }
}

/// The top-level `app:` of a document, with its line and column, when it parses.
fn named_app(text: &str) -> Option<(String, usize, usize)> {
    hydrant_runtime::yaml::check(text).ok()?;
    let options = marked_yaml::LoaderOptions::default().toplevel_mapping();
    let root = marked_yaml::parse_yaml_with_options(0, text, options).ok()?;
    let node = root.as_mapping()?.get_node("app")?;
    let value = node.as_scalar()?.as_str().to_owned();
    let (line, column) = node
        .span()
        .start()
        .map_or((0, 0), |m| (m.line(), m.column()));
    Some((value, line, column))
}

/// What `hydrant policy check` says of `text` as `file`; with `expected`, a document for
/// another app is an error too.
fn validate(text: &str, expected: Option<&str>, file: &Path) -> Checked {
    let loaded = policy::parse(text, file);
    let mut problems = loaded.problems;
    let named = named_app(text);
    let wrong = match (expected, &named, &loaded.policy) {
        (Some(want), Some((got, line, column)), _) if got != want => Some((
            *line,
            *column,
            format!("names app {got}, but this is app {want}'s policy"),
        )),
        // No `app:`: the file name names the app.
        (Some(want), None, Some(p)) if p.app != want => Some((
            0,
            0,
            format!(
                "without app:, {} makes this app {}'s policy; set app: {want}",
                file.display(),
                p.app
            ),
        )),
        _ => None,
    };
    if let Some((line, column, message)) = wrong {
        let at = problems
            .iter()
            .position(|p| (p.line, p.column) > (line, column))
            .unwrap_or(problems.len());
        problems.insert(
            at,
            Problem {
                severity: Severity::Error,
                file: file.to_owned(),
                line,
                column,
                path: "app".into(),
                message,
            },
        );
    }
    Checked {
        app: named.map(|n| n.0).or(expected.map(str::to_owned)),
        policy: loaded.policy,
        problems,
    }
}

/// Whether `app` can name a policy file in a directory (`<app>.yml`).
fn is_file_name(app: &str) -> bool {
    !app.is_empty() && app.len() <= 200 && !app.starts_with('.') && !app.contains(['/', '\\', '\0'])
}

/// The policy app `app` refers to, and the file its text is checked as: its policy's file,
/// else `<app>.yml`, so a document without `app:` is that app's.
fn target(s: &Autoscaler, app: &str) -> (String, PathBuf) {
    match s.policy_file(app) {
        Some(found) => found,
        None if is_file_name(app) => (app.to_owned(), PathBuf::from(format!("{app}.yml"))),
        None => (app.to_owned(), PathBuf::from(CHECK_FILE)),
    }
}

/// `GET /v1/apps/{app}/policy`.
async fn show(
    State(s): Shared,
    AppPath(app): AppPath<String>,
) -> Result<axum::Json<PolicyText>, ApiError> {
    let Some((key, file)) = s.policy_file(&app) else {
        return Err(fail(
            StatusCode::NOT_FOUND,
            format!("no policy for app {app}"),
        ));
    };
    let text = tokio::fs::read_to_string(&file).await.map_err(|e| {
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    Ok(axum::Json(PolicyText {
        app: key,
        file: file.display().to_string(),
        text,
    }))
}

/// `POST /v1/policy/check[?app=NAME]`.
async fn check(
    State(s): Shared,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<axum::Json<PolicyCheck>, ApiError> {
    let app = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, v)| k == "app" && !v.is_empty())
        .map(|(_, v)| v.into_owned());
    let text = read_text(body).await?;
    let checked = match app {
        Some(app) => {
            let (key, file) = target(&s, &app);
            validate(&text, Some(&key), &file)
        }
        None => validate(&text, None, Path::new(CHECK_FILE)),
    };
    Ok(axum::Json(PolicyCheck {
        errors: checked.count(Severity::Error),
        warnings: checked.count(Severity::Warning),
        problems: checked.problems.iter().map(problem).collect(),
        app: checked.app,
    }))
}

/// `PUT /v1/apps/{app}/policy`.
async fn save(
    State(s): Shared,
    AppPath(app): AppPath<String>,
    body: Body,
) -> Result<axum::Json<PolicySaved>, Failure> {
    let text = read_text(body).await?;
    // File writes, fsyncs and the reload block: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        s.with_policy_files(|files| save_locked(files, &app, &text))
    })
    .await
    .map_err(|e| {
        Failure::Api(fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("saving the policy failed: {e}"),
        ))
    })?
    .map(axum::Json)
}

/// Validates `text` as `app`'s policy, writes it to the file its policy comes from (or
/// `<first policy directory>/<app>.yml`) and reloads; rolls back when the reload refuses
/// it beside the other files.
fn save_locked(files: &mut PolicyFiles<'_>, app: &str, text: &str) -> Result<PolicySaved, Failure> {
    let (key, file) = match files.find(app) {
        Some(found) => found,
        None => new_file(files.paths(), app)?,
    };
    let (_, problems) = validate(text, Some(&key), &file).accepted()?;
    let before = std::fs::read(&file).ok();
    let internal = |e: std::io::Error| {
        Failure::Api(fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", file.display()),
        ))
    };
    write_atomically(&file, text.as_bytes()).map_err(internal)?;
    let reloaded = files.reload();
    let refused: Vec<Problem> = reloaded
        .errors
        .into_iter()
        .filter(|p| p.file == file)
        .collect();
    if refused.is_empty() && files.find(&key).is_some_and(|(_, f)| f == file) {
        return Ok(PolicySaved {
            app: key,
            file: file.display().to_string(),
            problems: problems.iter().map(problem).collect(),
        });
    }
    // Refused beside the other files (its app is another file's): the file goes back to
    // what it was, so the policy in force and the file agree again.
    let restored = match &before {
        Some(old) => write_atomically(&file, old),
        None => std::fs::remove_file(&file),
    };
    if let Err(e) = restored {
        tracing::error!(file = %file.display(), error = %e, "a refused policy could not be rolled back");
    }
    files.reload();
    let problems = if refused.is_empty() {
        vec![Problem {
            severity: Severity::Error,
            file: file.clone(),
            line: 0,
            column: 0,
            path: "app".into(),
            message: format!("another file holds app {key}'s policy in force"),
        }]
    } else {
        refused
    };
    Err(Failure::Refused(StatusCode::CONFLICT, problems))
}

/// Where a new app's policy goes: `<first policy directory>/<app>.yml`.
fn new_file(paths: &[PathBuf], app: &str) -> Result<(String, PathBuf), ApiError> {
    if !is_file_name(app) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("app {app:?} has no policy, and cannot name a policy file"),
        ));
    }
    let Some(dir) = paths.iter().find(|p| p.is_dir()) else {
        let listed: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(fail(
            StatusCode::CONFLICT,
            format!(
                "app {app} has no policy, and none can be created: --policies names no directory, only files ({})",
                listed.join(", ")
            ),
        ));
    };
    Ok((app.to_owned(), dir.join(format!("{app}.yml"))))
}

/// Replaces `file` with `bytes` so a reader sees the old text or the new, never a part:
/// a temporary file beside it (not a policy file: it ends in `.tmp`), synced, renamed over
/// it, and the directory synced. A symlink is written through.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    let dir = target.parent().unwrap_or_else(|| Path::new("."));
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(&target) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A replay's ticks: `from`, `to` ([`replay::parse_time`]) and `step` in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First tick (UNIX seconds).
    pub from: Time,
    /// Last tick.
    pub to: Time,
    /// Seconds between ticks.
    pub step: Time,
}

/// A step in the policy files' duration syntax (`10`, `10s`, `5m`, `1h30m`), in whole
/// seconds, at least one.
fn parse_step(s: &str) -> Option<Time> {
    let d = policy::parse_duration(s)?;
    let secs = Time::try_from(d.as_secs()).ok()?;
    (d.subsec_nanos() == 0 && secs >= 1).then_some(secs)
}

/// Parses a replay's `from`, `to` and `step` (defaults: `-3h`, `now`, `tick`), bounded to
/// [`MAX_REPLAY_SPAN`] and [`MAX_REPLAY_STEPS`].
pub fn parse_window(raw: Option<&str>, now: Time, tick: Time) -> Result<Window, ApiError> {
    let bad = |m: String| fail(StatusCode::BAD_REQUEST, m);
    let (mut from, mut to, mut step) = (None, None, None);
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "from" => from = Some(v.into_owned()),
            "to" => to = Some(v.into_owned()),
            "step" => step = Some(v.into_owned()),
            _ => {}
        }
    }
    let time = |name: &str, v: Option<String>, default: &str| {
        replay::parse_time(v.as_deref().unwrap_or(default), now)
            .map_err(|e| bad(format!("{name}: {e}")))
    };
    let from = time("from", from, DEFAULT_FROM)?;
    let to = time("to", to, "now")?;
    let step = match step {
        None => tick.max(1),
        Some(s) => parse_step(&s).ok_or_else(|| {
            bad(format!(
                "step must be whole seconds such as 10s, 1m or 1h, got {s:?}"
            ))
        })?,
    };
    if from > to {
        return Err(bad("from must not be after to".into()));
    }
    if to - from > MAX_REPLAY_SPAN {
        return Err(bad(format!(
            "a replay spans at most {} days",
            MAX_REPLAY_SPAN / 86_400
        )));
    }
    let steps = (to - from) / step + 1;
    if steps > MAX_REPLAY_STEPS {
        return Err(bad(format!(
            "{steps} steps of {step}s: at most {MAX_REPLAY_STEPS}; use a longer step or a shorter span"
        )));
    }
    Ok(Window { from, to, step })
}

/// The caller's bearer token, read as the guard reads it.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    hydrant_runtime::access::bearer(value).map(str::to_owned)
}

/// `POST /v1/apps/{app}/policy/replay`.
async fn replay_text(
    State(s): Shared,
    AppPath(app): AppPath<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<ReplayOutcome>, Failure> {
    let Some(storage) = s.replay_from().cloned() else {
        return Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "replay needs stored metrics: start the autoscaler with --replay-from URL (the storage nozzle's query API)".into(),
        )
        .into());
    };
    let w = parse_window(raw.as_deref(), unix_now(), s.tick().as_secs() as Time)?;
    let text = read_text(body).await?;
    let (key, file) = target(&s, &app);
    let (mut policy, _) = validate(&text, Some(&key), &file).accepted()?;
    policy.app = key;
    let settings = *s.fleet().settings();
    let r = replay::Replay {
        policy,
        storage: storage.url.clone(),
        token: bearer(&headers),
        http: storage.http,
        from: w.from,
        to: w.to,
        step: w.step,
        instances: None,
        settings,
    };
    let outcome = replay::run(&r).await.map_err(|e| match e {
        replay::Error::NoData(_) => fail(StatusCode::NOT_FOUND, e.to_string()),
        replay::Error::Query { .. } => fail(
            StatusCode::BAD_GATEWAY,
            format!("storage at {}: {e}", storage.url),
        ),
    })?;
    let alerts = outcome
        .alerts
        .into_iter()
        .filter_map(|a| {
            let state = match a.transition {
                Transition::Firing => ReplayAlertState::Firing,
                Transition::Resolved => ReplayAlertState::Resolved,
                Transition::Pending | Transition::Reset => return None,
            };
            Some(ReplayAlert {
                rule: a.rule,
                summary: a.summary,
                state,
                at: a.at,
                since: a.since,
                value: a.value,
            })
        })
        .collect();
    Ok(axum::Json(ReplayOutcome {
        from: w.from,
        to: w.to,
        records: outcome.records,
        alerts,
    }))
}

#[cfg(test)]
mod tests;
