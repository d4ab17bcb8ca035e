//! The scheduler API's service endpoints, as Cloud Controller v3 answers them for
//! user-provided service instances (the way Cloud Foundry users bind syslog drains):
//! `/v3/service_instances`, `/v3/service_credential_bindings`, and Cloud Controller's
//! internal drain list `GET /internal/v5/syslog_drain_urls`, which the agents (or a
//! Loggregator syslog binding cache) poll. Every change is stored before it is
//! acknowledged; a binding to a drain URL that cannot be used is made (as Cloud Controller
//! does) and the reason is written to the app's own log.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::super::contract::services::{
    Binding, BindingRelationships, CreateBinding, CreateServiceInstance, DrainUrls, LastOperation,
    ServiceInstance,
};
use super::super::contract::{GuidRef, Link, Page, Pagination, Relationship, SelfLink};
use super::super::services::{self, Services};
use super::write::parse_body;
use super::{ApiError, Shared};
use crate::cell::Cell;
use crate::drain::url::DrainUrl;
use hydrant_runtime::time::rfc3339;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn at(ms: u64) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

fn completed(created: u64, updated: u64) -> LastOperation {
    LastOperation {
        kind: "create".into(),
        state: "succeeded".into(),
        description: String::new(),
        created_at: at(created),
        updated_at: at(updated),
    }
}

fn instance_resource(i: &services::Instance) -> ServiceInstance {
    ServiceInstance {
        guid: i.guid.clone(),
        name: i.name.clone(),
        kind: "user-provided".into(),
        tags: i.tags.clone(),
        syslog_drain_url: i.syslog_drain_url.clone(),
        route_service_url: None,
        last_operation: completed(i.created_at_ms, i.updated_at_ms),
        created_at: at(i.created_at_ms),
        updated_at: at(i.updated_at_ms),
        links: SelfLink {
            this: Link {
                href: format!("/v3/service_instances/{}", i.guid),
            },
        },
    }
}

fn relationship(guid: &str) -> Relationship {
    Relationship {
        data: GuidRef { guid: guid.into() },
    }
}

fn binding_resource(b: &services::Binding) -> Binding {
    Binding {
        guid: b.guid.clone(),
        name: b.name.clone(),
        kind: "app".into(),
        last_operation: completed(b.created_at_ms, b.created_at_ms),
        relationships: BindingRelationships {
            app: Some(relationship(&b.app_guid)),
            service_instance: Some(relationship(&b.instance_guid)),
        },
        created_at: at(b.created_at_ms),
        updated_at: at(b.created_at_ms),
        links: SelfLink {
            this: Link {
                href: format!("/v3/service_credential_bindings/{}", b.guid),
            },
        },
    }
}

/// Stores `next` as the cell's services and makes it current, or changes nothing.
fn store(cell: &Cell, current: &mut Services, next: Services) -> Result<(), ApiError> {
    next.save(&cell.config.data_dir)
        .map_err(|e| ApiError::unstored(&e))?;
    *current = next;
    Ok(())
}

/// The query's `key` as a comma-separated list.
fn filter(raw: Option<&str>, key: &str) -> Option<Vec<String>> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.split(',').map(str::to_owned).collect())
}

fn page<T>(base: &str, resources: Vec<T>) -> Page<T> {
    let per_page = resources.len().max(1);
    Page {
        pagination: Pagination::page(base, "", 1, per_page, resources.len()),
        resources,
    }
}

/// `POST /v3/service_instances`.
pub(super) async fn create_instance(
    State(cell): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateServiceInstance = parse_body(&headers, &body)?;
    let mut problems = Vec::new();
    match req.kind.as_deref() {
        Some("user-provided") => {}
        Some("managed") => problems.push(
            "Type 'managed' is not supported: a cell offers no service brokers, only user-provided service instances".to_owned(),
        ),
        _ => problems.push("Type must be one of 'managed', 'user-provided'".to_owned()),
    }
    let name = req.name.unwrap_or_default();
    if name.trim().is_empty() {
        problems.push("Name can't be blank".to_owned());
    }
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(problems.join(", ")));
    }
    let now = now_ms();
    let instance = services::Instance {
        guid: uuid::Uuid::new_v4().to_string(),
        name,
        syslog_drain_url: req.syslog_drain_url.filter(|u| !u.trim().is_empty()),
        credentials: req.credentials,
        tags: req.tags,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let mut current = cell.services();
    if current.instances.values().any(|i| i.name == instance.name) {
        return Err(ApiError::unprocessable(format!(
            "The service instance name is taken: {}.",
            instance.name
        )));
    }
    let mut next = current.clone();
    next.instances
        .insert(instance.guid.clone(), instance.clone());
    store(&cell, &mut current, next)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(instance_resource(&instance)),
    )
        .into_response())
}

/// `GET /v3/service_instances` (`names`, `guids` filters).
pub(super) async fn list_instances(
    State(cell): Shared,
    RawQuery(raw): RawQuery,
) -> axum::Json<Page<ServiceInstance>> {
    let (names, guids) = (
        filter(raw.as_deref(), "names"),
        filter(raw.as_deref(), "guids"),
    );
    let services = cell.services();
    let mut found: Vec<&services::Instance> = services
        .instances
        .values()
        .filter(|i| names.as_ref().is_none_or(|n| n.contains(&i.name)))
        .filter(|i| guids.as_ref().is_none_or(|g| g.contains(&i.guid)))
        .collect();
    found.sort_by_key(|i| (i.created_at_ms, i.guid.clone()));
    let resources = found.into_iter().map(instance_resource).collect();
    axum::Json(page("/v3/service_instances", resources))
}

/// `GET /v3/service_instances/{guid}`.
pub(super) async fn show_instance(
    State(cell): Shared,
    Path(guid): Path<String>,
) -> Result<axum::Json<ServiceInstance>, ApiError> {
    let services = cell.services();
    let i = services
        .instances
        .get(&guid)
        .ok_or_else(|| ApiError::not_found("Service instance"))?;
    Ok(axum::Json(instance_resource(i)))
}

/// `DELETE /v3/service_instances/{guid}`: refused while bound, unless `?purge=true`
/// (which unbinds first, as Cloud Controller's purge).
pub(super) async fn delete_instance(
    State(cell): Shared,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let purge = filter(raw.as_deref(), "purge").is_some_and(|v| v == ["true"]);
    let mut current = cell.services();
    if !current.instances.contains_key(&guid) {
        return Err(ApiError::not_found("Service instance"));
    }
    let bound = current
        .bindings
        .values()
        .filter(|b| b.instance_guid == guid)
        .count();
    if bound > 0 && !purge {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 10006,
            title: "CF-AssociationNotEmpty",
            detail: format!(
                "Cannot delete service instance: it has {bound} binding(s); unbind first, or delete with ?purge=true"
            ),
        });
    }
    let mut next = current.clone();
    next.instances.remove(&guid);
    next.bindings.retain(|_, b| b.instance_guid != guid);
    store(&cell, &mut current, next)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v3/service_credential_bindings` (`type` `app`).
pub(super) async fn create_binding(
    State(cell): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateBinding = parse_body(&headers, &body)?;
    if req.kind.as_deref() != Some("app") {
        return Err(ApiError::unprocessable(
            "Type must be 'app' (a cell has no service keys)".into(),
        ));
    }
    let rel = req.relationships.unwrap_or_default();
    let (Some(app), Some(instance)) = (rel.app, rel.service_instance) else {
        return Err(ApiError::unprocessable(
            "Relationships must name an app and a service_instance".into(),
        ));
    };
    let (app_guid, instance_guid) = (app.data.guid, instance.data.guid);
    let app_name = {
        let apps = cell.apps();
        apps.get(&app_guid)
            .filter(|a| !a.deleted)
            .map(|a| a.spec.name.clone())
    };
    let Some(app_name) = app_name else {
        return Err(ApiError::unprocessable(format!(
            "The app could not be found: {app_guid}"
        )));
    };
    let binding = services::Binding {
        guid: uuid::Uuid::new_v4().to_string(),
        name: req.name,
        instance_guid: instance_guid.clone(),
        app_guid: app_guid.clone(),
        created_at_ms: now_ms(),
    };
    let drain = {
        let mut current = cell.services();
        let Some(instance) = current.instances.get(&instance_guid) else {
            return Err(ApiError::unprocessable(format!(
                "The service instance could not be found: {instance_guid}"
            )));
        };
        let drain = instance.syslog_drain_url.clone();
        if current
            .bindings_of(&app_guid)
            .any(|b| b.instance_guid == instance_guid)
        {
            return Err(ApiError::unprocessable(
                "The app is already bound to the service instance.".into(),
            ));
        }
        let mut next = current.clone();
        next.bindings.insert(binding.guid.clone(), binding.clone());
        store(&cell, &mut current, next)?;
        drain
    };
    let tags = Cell::tags(&app_guid, &app_name, 0, "");
    cell.send(&tags.api_log(format!("Bound app to service instance {instance_guid}")));
    if let Some(url) = drain
        && let Err(invalid) = DrainUrl::parse(&url)
    {
        // Bound as asked; the agents leave this drain out, and the app is told why.
        cell.send(&crate::drain::app_notice(&app_guid, invalid.notice));
    }
    Ok((StatusCode::CREATED, axum::Json(binding_resource(&binding))).into_response())
}

/// `GET /v3/service_credential_bindings` (`app_guids`, `service_instance_guids`).
pub(super) async fn list_bindings(
    State(cell): Shared,
    RawQuery(raw): RawQuery,
) -> axum::Json<Page<Binding>> {
    let apps = filter(raw.as_deref(), "app_guids");
    let instances = filter(raw.as_deref(), "service_instance_guids");
    let services = cell.services();
    let mut found: Vec<&services::Binding> = services
        .bindings
        .values()
        .filter(|b| apps.as_ref().is_none_or(|a| a.contains(&b.app_guid)))
        .filter(|b| {
            instances
                .as_ref()
                .is_none_or(|i| i.contains(&b.instance_guid))
        })
        .collect();
    found.sort_by_key(|b| (b.created_at_ms, b.guid.clone()));
    let resources = found.into_iter().map(binding_resource).collect();
    axum::Json(page("/v3/service_credential_bindings", resources))
}

/// `GET /v3/service_credential_bindings/{guid}`.
pub(super) async fn show_binding(
    State(cell): Shared,
    Path(guid): Path<String>,
) -> Result<axum::Json<Binding>, ApiError> {
    let services = cell.services();
    let b = services
        .bindings
        .get(&guid)
        .ok_or_else(|| ApiError::not_found("Service credential binding"))?;
    Ok(axum::Json(binding_resource(b)))
}

/// `DELETE /v3/service_credential_bindings/{guid}`.
pub(super) async fn delete_binding(
    State(cell): Shared,
    Path(guid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut current = cell.services();
    if !current.bindings.contains_key(&guid) {
        return Err(ApiError::not_found("Service credential binding"));
    }
    let mut next = current.clone();
    next.bindings.remove(&guid);
    store(&cell, &mut current, next)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Most drains one page of the internal list may hold.
pub const MAX_BATCH_SIZE: usize = 1000;

/// `GET /internal/v5/syslog_drain_urls?batch_size=N&next_id=M`, as Cloud Controller
/// serves it to Loggregator's binding cache: drains from position `next_id` on, at most
/// `batch_size` (1,000 by default and at most), `next_id` 0 after the last. It carries
/// drain credentials, so it needs a token that may write.
pub(super) async fn drain_urls(
    State(cell): Shared,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<DrainUrls>, ApiError> {
    let number = |key: &str, default: usize| -> Result<usize, ApiError> {
        match filter(raw.as_deref(), key).as_deref() {
            None => Ok(default),
            Some([v]) => v.parse().map_err(|_| {
                ApiError::parse(format!("{key} must be a non-negative integer, not {v:?}"))
            }),
            Some(_) => Err(ApiError::parse(format!("{key} must be given once"))),
        }
    };
    let batch = number("batch_size", MAX_BATCH_SIZE)?.clamp(1, MAX_BATCH_SIZE);
    let start = number("next_id", 0)?;
    let names: std::collections::HashMap<String, String> = cell
        .apps()
        .values()
        .filter(|a| !a.deleted)
        .map(|a| (a.guid.clone(), a.spec.name.clone()))
        .collect();
    let all = cell.services().drain_urls(|g| names.get(g).cloned());
    let results: Vec<_> = all.iter().skip(start).take(batch).cloned().collect();
    let end = start + results.len();
    Ok(axum::Json(DrainUrls {
        results,
        next_id: if end < all.len() { end as u64 } else { 0 },
    }))
}
