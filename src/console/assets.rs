//! The page: HTML, CSS, JavaScript modules and the Grafana dashboards the charts are drawn
//! from, embedded in the binary (no Node toolchain, nothing to install). `/` and any path
//! that is not an API or an asset answer the page, whose script routes by its hash.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `(path, media type, include_str!("assets/<path>"))`.
macro_rules! asset {
    ($path:literal, $kind:ident) => {
        ($path, $kind, include_str!(concat!("assets/", $path)))
    };
}

/// Every asset: its path under `/assets/`, its media type and its text.
pub(super) const ASSETS: &[(&str, &str, &str)] = &[
    asset!("style.css", CSS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("chart.js", JS),
    asset!("dashboards.js", JS),
    asset!("logs.js", JS),
    asset!("widgets.js", JS),
    asset!("yaml-editor.js", JS),
    asset!("pages/apps.js", JS),
    asset!("pages/app.js", JS),
    asset!("pages/policies.js", JS),
    asset!("pages/platform.js", JS),
    (
        "dashboards/apps.json",
        JSON,
        include_str!("../../dashboards/apps.json"),
    ),
    (
        "dashboards/platform.json",
        JSON,
        include_str!("../../dashboards/platform.json"),
    ),
];

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const JSON: &str = "application/json";

/// The page itself.
const INDEX: &str = include_str!("assets/index.html");

/// Assets change with the binary: a browser asks again each time (cheap on loopback), so
/// an upgraded console never runs an old script.
const CACHE: &str = "no-cache";

/// `GET /assets/{path}`.
pub(super) async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, kind, text)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, CACHE),
            ],
            *text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no asset {path:?}\n")).into_response(),
    }
}

/// The page, for `/` and every route of the page (`/apps/demo` reloaded in the browser).
pub(super) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        INDEX,
    )
        .into_response()
}
