//! The scheduler API: the Cloud Controller v3 subset that pushing, scaling and autoscaling
//! need, as JSON over HTTP. Errors use Cloud Controller's shape
//! (`{"errors":[{"code","title","detail"}]}`); `/metrics` and `/healthz` are served too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::contract::{
    self, AppLink, AppState, CfError, CreateApp, Errors, GuidRef, InstanceDetail, InstanceStats,
    Link, Page, Pagination, Process, Relationship, Relationships, Scale, SelfLink, Stats,
};
use super::model::{AppSpec, State as InstanceState};
use super::{App, Cell, MAX_INSTANCES};

mod list;

use crate::telemetry::names;
use hydrant_runtime::access::{Guard, Need, Refusal};
use hydrant_runtime::admin::Observe;
use hydrant_runtime::instrument::Render;
pub use list::MAX_PER_PAGE;

/// A Cloud Controller error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Cloud Controller error code.
    pub code: u32,
    /// Cloud Controller error title.
    pub title: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

impl ApiError {
    fn not_found(what: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 10010,
            title: "CF-ResourceNotFound",
            detail: format!("{what} not found"),
        }
    }
    fn unprocessable(detail: String) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 10008,
            title: "CF-UnprocessableEntity",
            detail,
        }
    }
    fn parse(detail: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: 1001,
            title: "CF-MessageParseError",
            detail,
        }
    }
    /// The change could not be stored, so it was not made.
    fn unstored(e: &crate::cell::desired::Error) -> ApiError {
        tracing::error!(error = %e, "cell: the desired state could not be stored");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: 10001,
            title: "CF-ServiceUnavailable",
            detail: format!("the change could not be stored, so it was not made: {e}"),
        }
    }
    fn unauthenticated() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: 10002,
            title: "CF-NotAuthenticated",
            detail: "Authentication error".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Errors {
            errors: vec![CfError {
                code: self.code,
                title: self.title.to_owned(),
                detail: self.detail,
            }],
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// Parses a JSON body: syntax errors are 400 (`CF-MessageParseError`), wrong or unknown
/// fields 422 (`CF-UnprocessableEntity`), each naming the problem.
/// A JSON body, only as `application/json`: a browser can send a form or `text/plain` to
/// any port without asking, but not JSON.
fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: 1001,
            title: "CF-MessageParseError",
            detail:
                "Request invalid: the body must be JSON, sent as Content-Type: application/json"
                    .into(),
        });
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::unprocessable(e.to_string()),
        _ => ApiError::parse(format!("Request invalid due to parse error: {e}")),
    })
}

fn check_instances(n: i64, problems: &mut Vec<String>) {
    if n < 0 {
        problems.push("Instances must be greater than or equal to 0".into());
    } else if n > i64::from(MAX_INSTANCES) {
        problems.push(format!(
            "Instances must be less than or equal to {MAX_INSTANCES}"
        ));
    }
}

/// The largest memory or disk quota an instance may have, in MB (1 TiB): larger values
/// once wrapped around when turned into bytes (2^54 MB of disk became 0).
pub const MAX_QUOTA_MB: i64 = 1024 * 1024;

fn check_quota(field: &str, n: Option<i64>, problems: &mut Vec<String>) {
    match n {
        Some(n) if n <= 0 => problems.push(format!("{field} must be greater than 0")),
        Some(n) if n > MAX_QUOTA_MB => problems.push(format!(
            "{field} must be less than or equal to {MAX_QUOTA_MB}"
        )),
        _ => {}
    }
}

/// Environment variables a process can be given: names that `execve` and a shell accept,
/// no NUL anywhere (it once made an app crash-loop forever), nothing Cloud Foundry reserves.
fn check_env(env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    for (name, value) in env {
        if name.is_empty() || name.contains(['=', '\0']) {
            problems.push(format!(
                "Environment variable name {name:?} must be non-empty and contain neither '=' nor NUL"
            ));
        } else if name.starts_with("VCAP_") {
            problems.push(format!(
                "Environment variable {name} cannot start with VCAP_"
            ));
        } else if name == "PORT" {
            problems.push("Environment variable PORT cannot be set".to_owned());
        }
        if value.contains('\0') {
            problems.push(format!(
                "Environment variable {name:?} has a NUL in its value"
            ));
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn app_resource(app: &App) -> contract::App {
    let running = app
        .slots
        .values()
        .filter(|s| s.instance.state == InstanceState::Running)
        .count();
    contract::App {
        guid: app.guid.clone(),
        name: app.spec.name.clone(),
        state: if app.spec.instances > 0 {
            AppState::Started
        } else {
            AppState::Stopped
        },
        instances: app.spec.instances,
        running_instances: running,
        command: app.spec.command.clone(),
        memory_in_mb: app.spec.memory_mb,
        disk_in_mb: app.spec.disk_mb,
        env: app.spec.env.clone(),
        created_at: rfc3339(app.created_at),
        updated_at: rfc3339(app.updated_at),
        links: SelfLink {
            this: Link {
                href: format!("/v3/apps/{}", app.guid),
            },
        },
    }
}

fn process_resource(app: &App) -> Process {
    Process {
        guid: app.guid.clone(),
        process_type: "web".into(),
        instances: app.spec.instances,
        command: app.spec.command.clone(),
        memory_in_mb: app.spec.memory_mb,
        disk_in_mb: app.spec.disk_mb,
        relationships: Relationships {
            app: Relationship {
                data: GuidRef {
                    guid: app.guid.clone(),
                },
            },
        },
        links: AppLink {
            app: Link {
                href: format!("/v3/apps/{}", app.guid),
            },
        },
    }
}

/// `GET /v3/processes`: every app's web process (the only type a cell runs), so a client
/// can read every desired instance count in one call, as on Cloud Foundry.
async fn processes(State(cell): Shared) -> axum::Json<Page<Process>> {
    let apps = cell.apps();
    let resources: Vec<Process> = apps
        .values()
        .filter(|a| !a.deleted)
        .map(process_resource)
        .collect();
    axum::Json(Page {
        pagination: Pagination::single("/v3/processes", resources.len()),
        resources,
    })
}

type Shared = State<Arc<Cell>>;

async fn create(
    State(cell): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateApp = parse_body(&headers, &body)?;
    let mut problems = Vec::new();
    let name = req.name.unwrap_or_default();
    if name.trim().is_empty() {
        problems.push("Name can't be blank".to_owned());
    }
    let command = req.command.unwrap_or_default();
    if command.trim().is_empty() {
        problems.push("Command can't be blank".to_owned());
    }
    check_instances(req.instances.unwrap_or(1), &mut problems);
    check_quota("Memory in mb", req.memory_in_mb, &mut problems);
    check_quota("Disk in mb", req.disk_in_mb, &mut problems);
    check_env(&req.env, &mut problems);
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(problems.join(", ")));
    }
    let now = SystemTime::now();
    let spec = AppSpec {
        name,
        command,
        instances: req.instances.unwrap_or(1) as u32,
        memory_mb: req.memory_in_mb.unwrap_or(256) as u64,
        disk_mb: req.disk_in_mb.unwrap_or(1024) as u64,
        env: req.env,
    };
    let guid = uuid::Uuid::new_v4().to_string();
    let body = {
        let mut apps = cell.apps();
        if apps
            .values()
            .any(|a| a.spec.name == spec.name && !a.deleted)
        {
            return Err(ApiError::unprocessable(format!(
                "App with the name '{}' already exists.",
                spec.name
            )));
        }
        let app = App {
            guid: guid.clone(),
            spec,
            created_at: now,
            updated_at: now,
            slots: BTreeMap::new(),
            deleted: false,
        };
        let mut desired = Cell::desired(&apps);
        desired.push(crate::cell::desired::Stored::of(&guid, &app.spec, now, now));
        cell.persist(&desired).map_err(|e| ApiError::unstored(&e))?;
        let tags = Cell::tags(&guid, &app.spec.name, 0, "");
        cell.send(&tags.api_log(format!("Created app with guid {guid}")));
        cell.send(&tags.event(
            "audit.app.create",
            json!({"name": app.spec.name, "instances": app.spec.instances}).to_string(),
        ));
        let body = app_resource(&app);
        apps.insert(guid, app);
        body
    };
    cell.converge_soon();
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

fn with_app<T>(cell: &Cell, guid: &str, f: impl FnOnce(&mut App) -> T) -> Result<T, ApiError> {
    let mut apps = cell.apps();
    match apps.get_mut(guid) {
        Some(app) if !app.deleted => Ok(f(app)),
        _ => Err(ApiError::not_found("App")),
    }
}

async fn show(
    State(cell): Shared,
    Path(guid): Path<String>,
) -> Result<axum::Json<contract::App>, ApiError> {
    with_app(&cell, &guid, |app| axum::Json(app_resource(app)))
}

async fn delete(State(cell): Shared, Path(guid): Path<String>) -> Result<StatusCode, ApiError> {
    {
        let apps = cell.apps();
        if apps.get(&guid).is_some_and(|a| !a.deleted) {
            let desired: Vec<_> = Cell::desired(&apps)
                .into_iter()
                .filter(|a| a.guid != guid)
                .collect();
            cell.persist(&desired).map_err(|e| ApiError::unstored(&e))?;
        }
    }
    with_app(&cell, &guid, |app| {
        app.deleted = true;
        app.updated_at = SystemTime::now();
        let tags = Cell::tags(&app.guid, &app.spec.name, 0, "");
        cell.send(&tags.api_log(format!("Deleted app with guid {}", app.guid)));
        cell.send(&tags.event(
            "audit.app.delete-request",
            json!({"name": app.spec.name}).to_string(),
        ));
    })?;
    cell.converge_soon();
    Ok(StatusCode::ACCEPTED)
}

async fn scale(
    State(cell): Shared,
    Path(guid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: Scale = parse_body(&headers, &body)?;
    let mut problems = Vec::new();
    if let Some(n) = req.instances {
        check_instances(n, &mut problems);
    }
    check_quota("Memory in mb", req.memory_in_mb, &mut problems);
    check_quota("Disk in mb", req.disk_in_mb, &mut problems);
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(problems.join(", ")));
    }
    // The new spec is stored before it is applied (the table stays locked in between).
    let mut apps = cell.apps();
    let Some(app) = apps.get(&guid).filter(|a| !a.deleted) else {
        return Err(ApiError::not_found("App"));
    };
    let mut spec = app.spec.clone();
    if let Some(n) = req.instances {
        spec.instances = n as u32;
    }
    if let Some(m) = req.memory_in_mb {
        spec.memory_mb = m as u64;
    }
    if let Some(d) = req.disk_in_mb {
        spec.disk_mb = d as u64;
    }
    let now = SystemTime::now();
    let desired: Vec<_> = Cell::desired(&apps)
        .into_iter()
        .map(|a| {
            if a.guid == guid {
                crate::cell::desired::Stored::of(&guid, &spec, app.created_at, now)
            } else {
                a
            }
        })
        .collect();
    cell.persist(&desired).map_err(|e| ApiError::unstored(&e))?;
    let body = {
        let app = apps.get_mut(&guid).expect("checked above");
        let from = app.spec.instances;
        app.spec = spec;
        app.updated_at = now;
        let to = app.spec.instances;
        let tags = Cell::tags(&app.guid, &app.spec.name, 0, "");
        cell.send(&tags.api_log(format!(
            "Updated app with guid {} ({{\"instances\"=>{to}}}): scaled from {from} to {to} instances",
            app.guid
        )));
        cell.send(&tags.event(
            "audit.app.process.scale",
            json!({"type": "web", "from": from, "instances": to}).to_string(),
        ));
        process_resource(app)
    };
    drop(apps);
    cell.converge_soon();
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

async fn stats(
    State(cell): Shared,
    Path(guid): Path<String>,
) -> Result<axum::Json<Stats>, ApiError> {
    with_app(&cell, &guid, |app| {
        let now = tokio::time::Instant::now();
        let mut resources = Vec::new();
        let max_index = app
            .slots
            .keys()
            .next_back()
            .map_or(0, |i| i + 1)
            .max(app.spec.instances);
        for index in 0..max_index {
            let Some(slot) = app.slots.get(&index) else {
                resources.push(InstanceStats {
                    process_type: "web".into(),
                    index,
                    state: contract::InstanceState::Down,
                    uptime: 0,
                    detail: None,
                });
                continue;
            };
            let i = &slot.instance;
            let uptime = i
                .started_at
                .map_or(0, |s| now.saturating_duration_since(s).as_secs());
            let restart_in = i
                .restart_at
                .map(|t| t.saturating_duration_since(now).as_secs_f64());
            resources.push(InstanceStats {
                process_type: "web".into(),
                index,
                state: i.state.into(),
                uptime,
                detail: Some(InstanceDetail {
                    instance_guid: i.instance_guid.clone(),
                    host: "127.0.0.1".into(),
                    port: slot.process.as_ref().map(|p| p.port),
                    pid: i.pid,
                    crash_count: i.crash_count,
                    restart_in_seconds: if i.state == InstanceState::Crashed {
                        restart_in
                    } else {
                        None
                    },
                    mem_quota: app.spec.memory_mb.saturating_mul(1024 * 1024),
                    disk_quota: app.spec.disk_mb.saturating_mul(1024 * 1024),
                    usage: contract::Usage {
                        time: slot.usage.at.map(rfc3339),
                        cpu: slot.usage.cpu_percent / 100.0,
                        mem: slot.usage.memory_bytes,
                        disk: slot.usage.disk_bytes,
                    },
                }),
            });
        }
        axum::Json(Stats { resources })
    })
}

/// What each route needs: reading apps needs a token that reads everything (the list is
/// every app's), and anything else (push, scale, delete) a token that may write.
fn needs(method: &Method, _path: &str) -> Need {
    match *method {
        Method::GET | Method::HEAD => Need::ReadAll,
        _ => Need::Write,
    }
}

/// Refusals in Cloud Controller's error format.
fn refuse(r: Refusal) -> Response {
    match r {
        Refusal::Unauthenticated => ApiError::unauthenticated().into_response(),
        Refusal::Forbidden(detail) | Refusal::Foreign(detail) => ApiError {
            status: StatusCode::FORBIDDEN,
            code: 10003,
            title: "CF-NotAuthorized",
            detail,
        }
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("Endpoint")
}

/// The API routes.
pub fn router(cell: Arc<Cell>) -> Router {
    let v3 = Router::new()
        .route("/v3/apps", post(create).get(list::list))
        .route("/v3/apps/{guid}", get(show).delete(delete))
        .route("/v3/apps/{guid}/processes/web/actions/scale", post(scale))
        .route("/v3/processes", get(processes))
        .route("/v3/processes/{guid}/actions/scale", post(scale))
        .route("/v3/apps/{guid}/processes/web/stats", get(stats))
        .route("/v3/processes/{guid}/stats", get(stats))
        .fallback(not_found)
        .with_state(Arc::clone(&cell));
    let access = cell.config.access.clone();
    let observe: Arc<dyn Observe> = cell;
    let routes = v3.merge(hydrant_runtime::admin::router(observe));
    Guard::new(access, needs).refusing(refuse).wrap(routes)
}

/// Serves the API until `shutdown` fires (HTTPS when the cell has certificates).
pub async fn run(
    cell: Arc<Cell>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tls = hydrant_runtime::https::server_tls(cell.config.agent_tls.as_ref())?;
    hydrant_runtime::admin::serve(listener, router(cell), tls, shutdown).await
}

impl Observe for Cell {
    fn metrics(&self) -> String {
        let mut t = crate::telemetry::text();
        t.sample(names::UP, &[("component", "cell")], 1.0);
        let apps = self.apps();
        t.sample(
            names::CELL_APPS,
            &[],
            apps.values().filter(|a| !a.deleted).count() as f64,
        );
        for state in [
            InstanceState::Starting,
            InstanceState::Running,
            InstanceState::Crashed,
            InstanceState::Down,
        ] {
            let n = apps
                .values()
                .flat_map(|a| a.slots.values())
                .filter(|s| s.instance.state == state)
                .count();
            t.sample(
                names::CELL_INSTANCES,
                &[("state", state.as_str())],
                n as f64,
            );
        }
        drop(apps);
        self.stats.render(&mut t);
        let e = self.emit.stats();
        t.sample(names::CELL_EMIT_DROPPED, &[], e.dropped() as f64);
        t.finish()
    }

    fn health(&self) -> (bool, Value) {
        let apps = self.apps().values().filter(|a| !a.deleted).count();
        (
            true,
            json!({ "component": "cell", "status": "ok", "apps": apps, "cgroups": self.cgroups.is_some() }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(1_795_319_286)),
            "2026-11-22T03:48:06Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
