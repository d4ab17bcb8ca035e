//! Bodies of the scheduler API's service endpoints, the Cloud Controller v3 subset a cell
//! serves for syslog drains: user-provided service instances, their bindings to apps, and
//! Cloud Controller's internal drain list (`GET /internal/v5/syslog_drain_urls`, what
//! Loggregator's syslog binding cache polls).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Relationship, SelfLink};

/// `POST /v3/service_instances` (`type` must be `user-provided`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateServiceInstance {
    /// `user-provided`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Unique among the cell's service instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where bound apps' logs go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog_drain_url: Option<String>,
    /// Free-form; `cert`, `key` and `ca` (PEM) are used for TLS drains.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, serde_json::Value>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Cloud Controller's space relationship: accepted, a cell has no spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relationships: Option<serde_json::Value>,
}

/// The state of the last operation on a resource (always a completed create here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastOperation {
    /// `create`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `succeeded`.
    pub state: String,
    /// Empty.
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A user-provided service instance (`GET /v3/service_instances/{guid}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// Its id.
    pub guid: String,
    /// Its name.
    pub name: String,
    /// `user-provided`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Labels.
    pub tags: Vec<String>,
    /// Where bound apps' logs go (shown as given: Cloud Controller shows it too).
    pub syslog_drain_url: Option<String>,
    /// Always null on a cell.
    pub route_service_url: Option<String>,
    /// A completed create.
    pub last_operation: LastOperation,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Its URL.
    pub links: SelfLink,
}

/// `POST /v3/service_credential_bindings` (`type` `app`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBinding {
    /// `app`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Optional name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The app and the service instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relationships: Option<BindingRelationships>,
}

/// `{"app": {"data": {"guid"}}, "service_instance": {"data": {"guid"}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRelationships {
    /// The app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<Relationship>,
    /// The service instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_instance: Option<Relationship>,
}

/// An app's binding to a service instance (`GET /v3/service_credential_bindings/{guid}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Its id.
    pub guid: String,
    /// Its name, if given.
    pub name: Option<String>,
    /// `app`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A completed create.
    pub last_operation: LastOperation,
    /// The app and the service instance.
    pub relationships: BindingRelationships,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Its URL.
    pub links: SelfLink,
}

/// `GET /internal/v5/syslog_drain_urls?batch_size=N&next_id=M`: one page of drains, each
/// with the apps bound to it; `next_id` 0 after the last page (Loggregator's poller stops
/// there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainUrls {
    /// Drains.
    pub results: Vec<DrainBinding>,
    /// Where the next page starts; 0 when there is none.
    pub next_id: u64,
}

/// One drain URL and who is bound to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainBinding {
    /// The drain URL, as given.
    pub url: String,
    /// One entry per distinct TLS material, with the apps using it.
    pub credentials: Vec<DrainCredentials>,
}

/// TLS material of a drain (PEM; empty when none) and the apps bound with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainCredentials {
    /// Client certificate.
    #[serde(default)]
    pub cert: String,
    /// Its key.
    #[serde(default)]
    pub key: String,
    /// CA to trust for the drain's server.
    #[serde(default)]
    pub ca: String,
    /// The apps.
    pub apps: Vec<DrainApp>,
}

/// An app bound to a drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainApp {
    /// The syslog HOSTNAME of its messages.
    pub hostname: String,
    /// Its guid.
    pub app_id: String,
}
