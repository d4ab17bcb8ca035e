//! Syslog drains through the scheduler API, as the cf CLI and its drains plugin make them:
//! a drain is a user-provided service instance with a `syslog_drain_url`, bound to an app.
//! The URL is shown without its user info and query (they may hold credentials).

use serde_json::json;

use super::{Client, Error};
use crate::cell::contract::Page;
use crate::cell::contract::services::{Binding, ServiceInstance};
use crate::drain::url::{DrainUrl, anonymize};

/// A drain bound to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    /// The service instance's name.
    pub name: String,
    /// The app's name.
    pub app: String,
    /// The drain URL without user info and query.
    pub url: String,
    /// The service instance's guid.
    pub instance_guid: String,
}

impl Client {
    /// Creates a drain for app `name_or_guid`: a user-provided service instance named
    /// `drain_name` (default `drain-APP-N`) with `url` and `credentials` (`ca`, `cert`,
    /// `key` in PEM for a TLS drain), bound to the app. A URL the agents cannot use is
    /// refused here, before anything is made.
    pub async fn create_drain(
        &self,
        name_or_guid: &str,
        url: &str,
        drain_name: Option<&str>,
        credentials: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Drain, Error> {
        DrainUrl::parse(url).map_err(|e| Error::Api {
            status: 422,
            title: "invalid drain URL".into(),
            detail: e.to_string(),
        })?;
        let app = self.find(name_or_guid).await?;
        let name = match drain_name {
            Some(n) => n.to_owned(),
            None => format!("drain-{}-{}", app.name, &uuid_suffix()),
        };
        let si: ServiceInstance = self
            .call(
                reqwest::Method::POST,
                "/v3/service_instances",
                Some(
                    json!({"type": "user-provided", "name": name, "syslog_drain_url": url,
                            "credentials": credentials}),
                ),
            )
            .await?;
        let bound: Result<Binding, Error> = self
            .call(
                reqwest::Method::POST,
                "/v3/service_credential_bindings",
                Some(json!({"type": "app", "relationships": {
                    "service_instance": {"data": {"guid": si.guid}},
                    "app": {"data": {"guid": app.guid}}}})),
            )
            .await;
        if let Err(e) = bound {
            // Leave nothing half made.
            let _ = self
                .call::<serde_json::Value>(
                    reqwest::Method::DELETE,
                    &format!("/v3/service_instances/{}", si.guid),
                    None,
                )
                .await;
            return Err(e);
        }
        Ok(Drain {
            name: si.name,
            app: app.name,
            url: anonymize(url),
            instance_guid: si.guid,
        })
    }

    /// Every drain bound to an app (of `name_or_guid` only, when given).
    pub async fn drains(&self, name_or_guid: Option<&str>) -> Result<Vec<Drain>, Error> {
        let apps = self.apps().await?;
        let only = match name_or_guid {
            Some(n) => Some(self.find(n).await?.guid),
            None => None,
        };
        let instances: Page<ServiceInstance> = self
            .call(reqwest::Method::GET, "/v3/service_instances", None)
            .await?;
        let bindings: Page<Binding> = self
            .call(
                reqwest::Method::GET,
                "/v3/service_credential_bindings",
                None,
            )
            .await?;
        let mut out = Vec::new();
        for b in bindings.resources {
            let rel = &b.relationships;
            let (Some(app), Some(si)) = (&rel.app, &rel.service_instance) else {
                continue;
            };
            if only.as_ref().is_some_and(|g| *g != app.data.guid) {
                continue;
            }
            let Some(instance) = instances.resources.iter().find(|i| i.guid == si.data.guid) else {
                continue;
            };
            let Some(url) = &instance.syslog_drain_url else {
                continue;
            };
            let app_name = apps
                .iter()
                .find(|a| a.guid == app.data.guid)
                .map_or_else(|| app.data.guid.clone(), |a| a.name.clone());
            out.push(Drain {
                name: instance.name.clone(),
                app: app_name,
                url: anonymize(url),
                instance_guid: instance.guid.clone(),
            });
        }
        out.sort_by(|a, b| (&a.app, &a.name).cmp(&(&b.app, &b.name)));
        Ok(out)
    }

    /// Deletes the drain named `name`: its bindings, then the service instance.
    pub async fn delete_drain(&self, name: &str) -> Result<(), Error> {
        let path = format!(
            "/v3/service_instances?names={}",
            form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        let found: Page<ServiceInstance> = self.call(reqwest::Method::GET, &path, None).await?;
        let Some(si) = found.resources.into_iter().next() else {
            return Err(Error::Api {
                status: 404,
                title: "CF-ResourceNotFound".into(),
                detail: format!("no drain named {name}"),
            });
        };
        self.call::<serde_json::Value>(
            reqwest::Method::DELETE,
            &format!("/v3/service_instances/{}?purge=true", si.guid),
            None,
        )
        .await?;
        Ok(())
    }
}

/// A short random suffix for drain names.
fn uuid_suffix() -> String {
    uuid::Uuid::new_v4().to_string()[..8].to_owned()
}
