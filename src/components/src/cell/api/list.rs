//! `GET /v3/apps` as Cloud Controller answers it: filters, order, pages and their links.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};

use super::super::contract::{self, Page, Pagination};
use super::{ApiError, Shared, app_resource};

/// Most apps one page may hold (Cloud Controller's limit).
pub const MAX_PER_PAGE: usize = 5000;

/// `GET /v3/apps` as Cloud Controller answers it: `names` and `guids` filters
/// (comma-separated), `order_by` (`created_at`, `updated_at`, `name`; `-` for descending;
/// by creation by default), `page` and `per_page` (50 by default, at most 5,000), and
/// pagination links; an unknown or invalid parameter is a 400.
pub(super) async fn list(
    State(cell): Shared,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<axum::Json<Page<contract::App>>, ApiError> {
    let bad = |detail: String| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: 10005,
        title: "CF-BadQueryParameter",
        detail,
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let list = |key: &str| -> Option<Vec<String>> {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.split(',').map(str::to_owned).collect())
    };
    let number = |key: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match pairs.iter().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(bad(format!(
                    "The query parameter is invalid: {key} must be between 1 and {max}"
                ))),
            },
        }
    };
    let unknown: Vec<&str> = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !["names", "guids", "page", "per_page", "order_by"].contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(bad(format!(
            "Unknown query parameter(s): '{}'",
            unknown.join("', '")
        )));
    }
    let (names, guids) = (list("names"), list("guids"));
    let page = number("page", 1, usize::MAX)?;
    let per_page = number("per_page", 50, MAX_PER_PAGE)?;
    let order_by = pairs
        .iter()
        .find(|(k, _)| k == "order_by")
        .map_or("created_at", |(_, v)| v.as_str());
    let (desc, key) = match order_by.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, order_by.strip_prefix('+').unwrap_or(order_by)),
    };
    if !["created_at", "updated_at", "name"].contains(&key) {
        return Err(bad(
            "The query parameter is invalid: Order by can only be: 'created_at', 'updated_at', 'name'"
                .to_owned(),
        ));
    }
    let mut apps: Vec<contract::App> = cell
        .apps()
        .values()
        .filter(|a| !a.deleted)
        .filter(|a| names.as_ref().is_none_or(|n| n.contains(&a.spec.name)))
        .filter(|a| guids.as_ref().is_none_or(|g| g.contains(&a.guid)))
        .map(app_resource)
        .collect();
    // RFC 3339 times in UTC sort as text; ties go by guid, so pages never overlap.
    apps.sort_by(|a, b| {
        let order = match key {
            "name" => a.name.cmp(&b.name),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            _ => a.created_at.cmp(&b.created_at),
        }
        .then_with(|| a.guid.cmp(&b.guid));
        if desc { order.reverse() } else { order }
    });
    let total = apps.len();
    let resources: Vec<contract::App> = apps
        .into_iter()
        .skip(page.saturating_sub(1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let filters: String = {
        let mut f = form_urlencoded::Serializer::new(String::new());
        for key in ["names", "guids", "order_by"] {
            if let Some((_, v)) = pairs.iter().find(|(k, _)| k == key) {
                f.append_pair(key, v);
            }
        }
        f.finish()
    };
    let base = format!("http://{host}/v3/apps");
    Ok(axum::Json(Page {
        pagination: Pagination::page(&base, &filters, page, per_page, total),
        resources,
    }))
}
