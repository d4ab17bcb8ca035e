//! The autoscaler's HTTP API. `{app}` is the policy's app, the app name or its guid;
//! bodies are the types of [`contract`]; errors are CF's `{"code", "message"}`.
//!
//! - `GET /v1/apps`: the apps under a policy.
//! - `GET /v1/apps/{app}/scaling_histories`: Cloud Foundry's fields and query parameters.
//! - `GET /v1/apps/{app}/explain`, `GET /v1/overview`: live state, one app or every app.
//! - `GET /v1/apps/{app}/policy`: the app's policy file (its path and exact text).
//! - `POST /v1/policy/check[?app=NAME]`: the problems `hydrant policy check` finds in a
//!   policy text.
//! - `PUT /v1/apps/{app}/policy`: saves a policy text and answers once it is in force.
//! - `POST /v1/apps/{app}/policy/replay?from=&to=&step=`: a policy text's decisions over
//!   stored metrics (`--replay-from`), as a dry run.
//! - `/metrics` and `/healthz`.
//!
//! Access: `PUT` and `DELETE` need a token that may write; everything else one that reads
//! everything (checking and replaying change nothing). See [`policy`] for the policy routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hydrant_runtime::access::{Guard, Need};
use hydrant_runtime::admin::Observe;
use hydrant_runtime::instrument::Render;
use hydrant_runtime::metrics::Text;
use serde_json::{Value, json};

pub mod contract;
pub mod policy;

use contract::{AppList, AppSummary, ErrorBody, Explanation, HistoryPage, Overview};

use crate::history::Query;
use crate::service::{Autoscaler, unix_now};
use crate::telemetry::{METRICS, names};

/// An API error, in the shape of CF's autoscaler API (`{"code", "message"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

fn bad(message: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        message,
    }
}

type Shared = State<Arc<Autoscaler>>;

/// Parses CF's history query parameters.
pub fn parse_query(raw: Option<&str>) -> Result<Query, ApiError> {
    let mut q = Query::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let int = |name: &str| -> Result<i64, ApiError> {
            v.parse::<i64>()
                .map_err(|_| bad(format!("{name} must be an integer, got {v:?}")))
        };
        match k.as_ref() {
            "start-time" => q.start = int("start-time")?,
            "end-time" => q.end = int("end-time")?,
            "order-direction" | "order" => {
                q.ascending = match v.to_ascii_lowercase().as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => {
                        return Err(bad(format!(
                            "order-direction must be asc or desc, got {v:?}"
                        )));
                    }
                }
            }
            "page" => {
                let n = int("page")?;
                if n < 1 {
                    return Err(bad("page must be greater than 0".into()));
                }
                q.page = n as usize;
            }
            "results-per-page" => {
                let n = int("results-per-page")?;
                if !(1..=1000).contains(&n) {
                    return Err(bad("results-per-page must be between 1 and 1000".into()));
                }
                q.per_page = n as usize;
            }
            _ => {}
        }
    }
    if q.start > q.end {
        return Err(bad("start-time must not be after end-time".into()));
    }
    Ok(q)
}

async fn histories(
    State(s): Shared,
    Path(app): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<HistoryPage>, ApiError> {
    let q = parse_query(raw.as_deref())?;
    let fleet = s.fleet();
    let key = fleet.resolve(&app).unwrap_or(&app).to_owned();
    let page = fleet.history().query(&key, q);
    let link = |p: usize| {
        format!(
            "/v1/apps/{app}/scaling_histories?page={p}&results-per-page={}",
            q.per_page
        )
    };
    Ok(axum::Json(HistoryPage {
        total_results: page.total_results,
        total_pages: page.total_pages,
        page: page.page,
        prev_url: (page.page > 1).then(|| link(page.page - 1)),
        next_url: (page.page < page.total_pages).then(|| link(page.page + 1)),
        resources: page.resources,
    }))
}

async fn explain(
    State(s): Shared,
    Path(app): Path<String>,
) -> Result<axum::Json<Explanation>, ApiError> {
    s.fleet()
        .explain(&app, unix_now())
        .map(axum::Json)
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no policy for app {app}"),
        })
}

async fn overview(State(s): Shared) -> axum::Json<Overview> {
    let now = unix_now();
    let fleet = s.fleet();
    let resources: Vec<Explanation> = fleet
        .apps()
        .keys()
        .filter_map(|key| fleet.explain(key, now))
        .collect();
    axum::Json(Overview {
        total_results: resources.len(),
        resources,
    })
}

async fn apps(State(s): Shared) -> axum::Json<AppList> {
    let fleet = s.fleet();
    let resources: Vec<AppSummary> = fleet
        .apps()
        .iter()
        .map(|(key, m)| AppSummary {
            app: key.clone(),
            guid: m.guid.clone(),
            instances: m.current,
            instance_min_count: m.policy.min,
            instance_max_count: m.policy.max,
            rules: m.policy.rules.len(),
            target_tracking: m.policy.target.is_some(),
            schedules: m.policy.schedules.is_some(),
        })
        .collect();
    axum::Json(AppList {
        total_results: resources.len(),
        resources,
    })
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint".into(),
    }
}

/// The API routes.
pub fn router(scaler: Arc<Autoscaler>) -> Router {
    let observe: Arc<dyn Observe> = Arc::clone(&scaler) as Arc<dyn Observe>;
    let access = scaler.access.clone();
    let routes = Router::new()
        .route("/v1/apps", get(apps))
        .route("/v1/apps/{app}/scaling_histories", get(histories))
        .route("/v1/apps/{app}/explain", get(explain))
        .route("/v1/overview", get(overview))
        .merge(policy::routes())
        .with_state(scaler)
        .merge(hydrant_runtime::admin::router(observe))
        .fallback(not_found);
    Guard::new(access, needs).wrap(routes)
}

/// What a route needs: every route reads every app's state and history; `PUT` and
/// `DELETE` change policies.
pub fn needs(method: &Method, _path: &str) -> Need {
    match *method {
        Method::PUT | Method::DELETE => Need::Write,
        _ => Need::ReadAll,
    }
}

impl Observe for Autoscaler {
    fn metrics(&self) -> String {
        let mut t = Text::new(METRICS);
        let s = &self.stats;
        let (apps, observed, cooling) = {
            let fleet = self.fleet();
            let now = crate::service::unix_now();
            (fleet.apps().len(), fleet.observed, fleet.cooling_down(now))
        };
        t.sample(names::APPS, &[], apps as f64);
        t.sample(names::COOLING_DOWN, &[], cooling as f64);
        t.sample(names::OBSERVED, &[], observed as f64);
        s.render(&mut t);
        self.notify_stats().render(&mut t);
        t.finish()
    }

    /// Healthy, but `degraded` with the errors while a policy file is refused: the process
    /// serves every other policy.
    fn health(&self) -> (bool, Value) {
        let apps = self.fleet().apps().len();
        let problems = self.policy_problems();
        (
            true,
            json!({
                "component": "autoscaler",
                "status": if problems.is_empty() { "ok" } else { "degraded" },
                "apps": apps,
                "policy_problems": problems,
                "uptime_secs": self.uptime().as_secs(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_query_parameters() {
        let q = parse_query(Some(
            "start-time=5&end-time=9&order-direction=ASC&page=2&results-per-page=10",
        ))
        .unwrap();
        assert_eq!(
            q,
            Query {
                start: 5,
                end: 9,
                ascending: true,
                page: 2,
                per_page: 10
            }
        );
        assert_eq!(parse_query(None).unwrap(), Query::default());
        for bad in [
            "page=0",
            "page=x",
            "results-per-page=0",
            "order-direction=up",
            "start-time=9&end-time=5",
        ] {
            let e = parse_query(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
