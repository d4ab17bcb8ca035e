//! The scheduler API's writes: create, delete and scale an app. Bodies are JSON only as
//! `application/json`, every problem is named in one Cloud Controller error, and the
//! desired state is stored before a change is acknowledged.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{ApiError, Shared, app_resource, process_resource};
use crate::cell::contract::{CreateApp, Scale};
use crate::cell::desired::Stored;
use crate::cell::model::AppSpec;
use crate::cell::{App, Cell, MAX_INSTANCES};

pub(super) fn parse_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
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

pub(super) async fn create(
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
        let stored = Stored::of(&guid, &app.spec, now, now);
        store_with(&cell, &apps, &guid, Some(stored))?;
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

/// Stores the desired state with app `guid` as `with` (added or replaced; removed when
/// `None`) before the change it describes is made, so a change is never acknowledged
/// unstored. The caller holds `apps` from before this until the change is made.
fn store_with(
    cell: &Cell,
    apps: &BTreeMap<String, App>,
    guid: &str,
    with: Option<Stored>,
) -> Result<(), ApiError> {
    let mut desired: Vec<Stored> = Cell::desired(apps)
        .into_iter()
        .filter(|a| a.guid != guid)
        .collect();
    desired.extend(with);
    cell.persist(&desired).map_err(|e| ApiError::unstored(&e))
}

pub(super) async fn delete(
    State(cell): Shared,
    Path(guid): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Stored and made under one hold of the table, so no other change lands in between.
    let mut apps = cell.apps();
    if apps.get(&guid).is_none_or(|a| a.deleted) {
        return Err(ApiError::not_found("App"));
    }
    store_with(&cell, &apps, &guid, None)?;
    // Its bindings go with it (Cloud Controller deletes them with the app).
    {
        let mut services = cell.services();
        if services.bindings_of(&guid).next().is_some() {
            let mut next = services.clone();
            next.bindings.retain(|_, b| b.app_guid != guid);
            next.save(&cell.config.data_dir)
                .map_err(|e| ApiError::unstored(&e))?;
            *services = next;
        }
    }
    let app = apps.get_mut(&guid).expect("checked above");
    app.deleted = true;
    app.updated_at = SystemTime::now();
    let tags = Cell::tags(&app.guid, &app.spec.name, 0, "");
    cell.send(&tags.api_log(format!("Deleted app with guid {}", app.guid)));
    cell.send(&tags.event(
        "audit.app.delete-request",
        json!({"name": app.spec.name}).to_string(),
    ));
    drop(apps);
    cell.converge_soon();
    Ok(StatusCode::ACCEPTED)
}

pub(super) async fn scale(
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
    let stored = Stored::of(&guid, &spec, app.created_at, now);
    store_with(&cell, &apps, &guid, Some(stored))?;
    let body = {
        let app = apps.get_mut(&guid).expect("checked above");
        let from = app.spec.instances;
        let quotas_changed =
            (app.spec.memory_mb, app.spec.disk_mb) != (spec.memory_mb, spec.disk_mb);
        app.spec = spec;
        app.updated_at = now;
        let to = app.spec.instances;
        let tags = Cell::tags(&app.guid, &app.spec.name, 0, "");
        cell.send(&tags.api_log(format!(
            "Updated app with guid {} ({{\"instances\"=>{to}}}): scaled from {from} to {to} instances",
            app.guid
        )));
        if quotas_changed {
            cell.send(&tags.api_log(format!(
                "Updated app with guid {} ({{\"memory_in_mb\"=>{}, \"disk_in_mb\"=>{}}}): instances restart one at a time",
                app.guid, app.spec.memory_mb, app.spec.disk_mb
            )));
        }
        cell.send(&tags.event(
            "audit.app.process.scale",
            json!({"type": "web", "from": from, "instances": to, "memory_in_mb": app.spec.memory_mb, "disk_in_mb": app.spec.disk_mb}).to_string(),
        ));
        process_resource(app)
    };
    drop(apps);
    cell.converge_soon();
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}
