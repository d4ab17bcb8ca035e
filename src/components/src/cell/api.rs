//! The scheduler API: the Cloud Controller v3 subset that pushing, scaling and autoscaling
//! need, as JSON over HTTP. Errors use Cloud Controller's shape
//! (`{"errors":[{"code","title","detail"}]}`); `/metrics` and `/healthz` are served too.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::contract::{
    self, AppLink, AppState, CfError, Errors, GuidRef, InstanceDetail, InstanceStats, Link, Page,
    Pagination, Process, Relationship, Relationships, SelfLink, Stats,
};
use super::model::State as InstanceState;
use super::{App, Cell};
use hydrant_runtime::time::rfc3339;

mod list;
mod services;
mod write;

pub use write::MAX_QUOTA_MB;

use crate::telemetry::names;
use hydrant_runtime::access::{Guard, Need, Refusal};
use hydrant_runtime::admin::Observe;
use hydrant_runtime::instrument::Render;
pub use list::MAX_PER_PAGE;
pub use services::MAX_BATCH_SIZE as MAX_DRAIN_BATCH;

/// Cloud Controller's internal list of syslog drains and the apps bound to them.
pub const DRAIN_URLS_PATH: &str = "/internal/v5/syslog_drain_urls";

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
                    last_crash: i.last_crash.as_ref().map(|c| contract::LastCrash {
                        reason: c.reason.clone(),
                        exit_status: c.exit_status,
                        at: rfc3339(c.at),
                    }),
                    restart_in_seconds: if i.state == InstanceState::Crashed {
                        restart_in
                    } else {
                        None
                    },
                    // The quotas this instance runs with (during a rolling change of
                    // quotas, not yet the spec's).
                    mem_quota: i.quota.0.saturating_mul(1024 * 1024),
                    disk_quota: i.quota.1.saturating_mul(1024 * 1024),
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
fn needs(method: &Method, path: &str) -> Need {
    if path == DRAIN_URLS_PATH {
        // It carries drain credentials (TLS keys).
        return Need::Write;
    }
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
        .route("/v3/apps", post(write::create).get(list::list))
        .route("/v3/apps/{guid}", get(show).delete(write::delete))
        .route(
            "/v3/apps/{guid}/processes/web/actions/scale",
            post(write::scale),
        )
        .route("/v3/processes", get(processes))
        .route("/v3/processes/{guid}/actions/scale", post(write::scale))
        .route("/v3/apps/{guid}/processes/web/stats", get(stats))
        .route("/v3/processes/{guid}/stats", get(stats))
        .route(
            "/v3/service_instances",
            post(services::create_instance).get(services::list_instances),
        )
        .route(
            "/v3/service_instances/{guid}",
            get(services::show_instance).delete(services::delete_instance),
        )
        .route(
            "/v3/service_credential_bindings",
            post(services::create_binding).get(services::list_bindings),
        )
        .route(
            "/v3/service_credential_bindings/{guid}",
            get(services::show_binding).delete(services::delete_binding),
        )
        .route(DRAIN_URLS_PATH, get(services::drain_urls))
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

    /// Healthy, but `degraded` while an instance is crash-looping (3 crashes in a row or
    /// more), naming it and its last crash.
    fn health(&self) -> (bool, Value) {
        let (apps, problems) = {
            let table = self.apps();
            let live = table.values().filter(|a| !a.deleted);
            let mut problems = Vec::new();
            for app in live.clone() {
                for slot in app.slots.values() {
                    let i = &slot.instance;
                    if i.crash_count >= 3 {
                        let reason = i.last_crash.as_ref().map_or("", |c| c.reason.as_str());
                        problems.push(format!(
                            "app {} instance {} is crash-looping ({} crashes in a row; {reason})",
                            app.spec.name, i.index, i.crash_count
                        ));
                    }
                }
            }
            (live.count(), problems)
        };
        let status = if problems.is_empty() {
            "ok"
        } else {
            "degraded"
        };
        (
            true,
            json!({ "component": "cell", "status": status, "problems": problems, "apps": apps, "cgroups": self.cgroups.is_some() }),
        )
    }
}
