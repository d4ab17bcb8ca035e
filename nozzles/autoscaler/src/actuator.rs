//! Actuators: what carries out a scale. One trait, four platforms; every call sets the
//! absolute instance count, so retries are idempotent. The per-app lock and the circuit
//! breaker live in the fleet ([`crate::fleet`]); these only speak HTTP.
//!
//! - [`CloudController`]: a Hydrant cell or Cloud Foundry (`POST
//!   /v3/apps/:guid/processes/web/actions/scale`, counts from `GET /v3/apps` and
//!   `GET /v3/processes?types=web`), with a static bearer token or UAA client credentials.
//! - [`Kubernetes`]: `PATCH /apis/apps/v1/namespaces/NS/deployments/NAME/scale` (merge
//!   patch), counts from the deployments list, bearer token and cluster CA.
//! - [`Webhook`]: `POST` of the scale request as JSON; counts come from observed instances.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::fleet::{Kind, ScaleRequest};

mod https;

/// A boxed future (the trait is used as `dyn Actuator`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Timeout of every actuator request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most pages read from a paginated list.
const MAX_PAGES: usize = 1000;

/// Errors talking to a platform.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer.
    #[error("{url}: {source}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// A non-success answer.
    #[error("{url}: {status}: {body}")]
    Status {
        /// Where.
        url: String,
        /// HTTP status.
        status: u16,
        /// The body (truncated).
        body: String,
    },
    /// A request failed before an answer (connection, TLS, timeout).
    #[error("{url}: {message}")]
    Request {
        /// Where.
        url: String,
        /// Why.
        message: String,
    },
    /// A file (token, CA) could not be read or used.
    #[error("{path}: {message}")]
    File {
        /// Which file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// An app as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instances {
    /// Platform id (guid, deployment name).
    pub id: String,
    /// Name.
    pub name: String,
    /// Desired count.
    pub instances: u32,
}

/// Carries out scales.
pub trait Actuator: Send + Sync + Debug {
    /// Every app with its desired count, or `None` when the platform cannot say (the fleet
    /// then counts the instances it sees).
    fn list(&self) -> BoxFuture<'_, Result<Option<Vec<Instances>>, Error>>;
    /// Sets `req.target`'s count to `req.to`; returns a summary of the answer.
    fn scale<'a>(&'a self, req: &'a ScaleRequest) -> BoxFuture<'a, Result<String, Error>>;
}

/// The HTTP client of the actuators. The timeout is set on every request (`send`), so it
/// holds whatever client this is.
fn client() -> reqwest::Client {
    hydrant_runtime::https::plain_builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_else(|_| hydrant_runtime::https::plain_client())
}

/// Sends a request; a non-2xx answer is an error carrying the body.
async fn send(req: reqwest::RequestBuilder, url: &str) -> Result<(u16, Value), Error> {
    let unreachable = |source| Error::Unreachable {
        url: url.to_owned(),
        source,
    };
    let resp = req
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(unreachable)?;
    answer(url, status, &text)
}

/// A response as JSON (`null` when it is not), or an error carrying the start of the body
/// for a non-2xx status.
fn answer(url: &str, status: u16, text: &str) -> Result<(u16, Value), Error> {
    if !(200..300).contains(&status) {
        return Err(Error::Status {
            url: url.to_owned(),
            status,
            body: text.chars().take(500).collect(),
        });
    }
    Ok((status, serde_json::from_str(text).unwrap_or(Value::Null)))
}

fn summary(status: u16, body: &Value, field: &str) -> String {
    let count = body
        .pointer(field)
        .map(Value::to_string)
        .unwrap_or_default();
    if count.is_empty() {
        format!("{status}")
    } else {
        format!("{status} (instances {count})")
    }
}

/// How the Cloud Controller actuator authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No token (a local cell without `--token`).
    None,
    /// A fixed bearer token.
    Bearer(String),
    /// UAA client credentials (`POST {uaa}/oauth/token`, `grant_type=client_credentials`).
    Uaa {
        /// UAA base URL.
        url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
}

/// A Hydrant cell or Cloud Foundry's Cloud Controller.
#[derive(Debug)]
pub struct CloudController {
    base: String,
    auth: Auth,
    http: reqwest::Client,
    /// Cached UAA token and when it must be renewed.
    token: Mutex<Option<(String, Instant)>>,
}

impl CloudController {
    /// An actuator for the API at `base`, sending with `http` (see
    /// `hydrant_runtime::https::client`; requests carry their own timeout).
    pub fn new(base: &str, auth: Auth, http: reqwest::Client) -> CloudController {
        CloudController {
            base: base.trim_end_matches('/').to_owned(),
            auth,
            http,
            token: Mutex::new(None),
        }
    }

    async fn bearer(&self) -> Result<Option<String>, Error> {
        let (url, id, secret) = match &self.auth {
            Auth::None => return Ok(None),
            Auth::Bearer(t) => return Ok(Some(t.clone())),
            Auth::Uaa {
                url,
                client_id,
                client_secret,
            } => (url, client_id, client_secret),
        };
        let mut cached = self.token.lock().await;
        if let Some((t, renew)) = cached.as_ref()
            && Instant::now() < *renew
        {
            return Ok(Some(t.clone()));
        }
        let url = format!("{}/oauth/token", url.trim_end_matches('/'));
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .finish();
        let req = self
            .http
            .post(&url)
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        let (_, v) = send(req, &url).await?;
        let token = v["access_token"].as_str().unwrap_or_default().to_owned();
        let ttl = v["expires_in"].as_u64().unwrap_or(0);
        // Renew a little before expiry.
        let renew = Instant::now() + Duration::from_secs(ttl.saturating_sub(30));
        *cached = Some((token.clone(), renew));
        Ok(Some(token))
    }

    async fn get_all(&self, path: &str) -> Result<Vec<Value>, Error> {
        let mut out = Vec::new();
        let mut url = format!("{}{path}", self.base);
        for _ in 0..MAX_PAGES {
            let mut req = self.http.get(&url);
            if let Some(t) = self.bearer().await? {
                req = req.bearer_auth(t);
            }
            let (_, v) = send(req, &url).await?;
            out.extend(v["resources"].as_array().cloned().unwrap_or_default());
            match v["pagination"]["next"]["href"].as_str() {
                // Absolute (CF) or relative (a cell) links.
                Some(next) if next.starts_with("http") => url = next.to_owned(),
                Some(next) => url = format!("{}{next}", self.base),
                None => break,
            }
        }
        Ok(out)
    }
}

impl Actuator for CloudController {
    fn list(&self) -> BoxFuture<'_, Result<Option<Vec<Instances>>, Error>> {
        Box::pin(async move {
            let apps = self.get_all("/v3/apps").await?;
            let processes = self.get_all("/v3/processes?types=web").await?;
            let count = |guid: &str| {
                processes
                    .iter()
                    .find(|p| {
                        p["relationships"]["app"]["data"]["guid"] == guid && p["type"] == "web"
                    })
                    .and_then(|p| p["instances"].as_u64())
            };
            Ok(Some(
                apps.iter()
                    .filter_map(|a| {
                        let guid = a["guid"].as_str()?;
                        Some(Instances {
                            id: guid.to_owned(),
                            name: a["name"].as_str().unwrap_or_default().to_owned(),
                            instances: count(guid)? as u32,
                        })
                    })
                    .collect(),
            ))
        })
    }

    fn scale<'a>(&'a self, req: &'a ScaleRequest) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(async move {
            let url = format!(
                "{}/v3/apps/{}/processes/web/actions/scale",
                self.base, req.target
            );
            let mut call = self.http.post(&url).json(&json!({ "instances": req.to }));
            if let Some(t) = self.bearer().await? {
                call = call.bearer_auth(t);
            }
            let (status, body) = send(call, &url).await?;
            Ok(summary(status, &body, "/instances"))
        })
    }
}

/// A Kubernetes deployment's scale subresource.
#[derive(Debug)]
pub struct Kubernetes {
    api: String,
    namespace: String,
    /// Read again for every request: the kubelet rotates a projected service account
    /// token (about hourly), as client-go rereads it.
    token_file: Option<PathBuf>,
    http: https::Client,
}

/// A bearer token file's content, trimmed.
fn read_token(path: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| Error::File {
            path: path.to_owned(),
            message: format!("cannot read the token: {e}"),
        })
}

/// The in-cluster service account token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

impl Kubernetes {
    /// An actuator for deployments in `namespace` at `api`, with an optional bearer token
    /// file and an optional CA bundle (PEM) to trust instead of the system roots.
    pub fn new(
        api: &str,
        namespace: &str,
        token_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
    ) -> Result<Kubernetes, Error> {
        if let Some(path) = &token_file {
            read_token(path)?;
        }
        let http = https::Client::new(ca_file.as_deref())?;
        Ok(Kubernetes {
            api: api.trim_end_matches('/').to_owned(),
            namespace: namespace.to_owned(),
            token_file,
            http,
        })
    }

    async fn call(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Result<(u16, Value), Error> {
        let mut headers = vec![("accept", "application/json".to_owned())];
        if let Some(path) = &self.token_file {
            headers.push(("authorization", format!("Bearer {}", read_token(path)?)));
        }
        if let Some(c) = content_type {
            headers.push(("content-type", c.to_owned()));
        }
        let (status, text) = self.http.send(method, url, &headers, body).await?;
        answer(url, status, &text)
    }
}

impl Actuator for Kubernetes {
    fn list(&self) -> BoxFuture<'_, Result<Option<Vec<Instances>>, Error>> {
        Box::pin(async move {
            let url = format!(
                "{}/apis/apps/v1/namespaces/{}/deployments",
                self.api, self.namespace
            );
            let (_, v) = self.call(http::Method::GET, &url, None, None).await?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            Ok(Some(
                items
                    .iter()
                    .filter_map(|d| {
                        let name = d["metadata"]["name"].as_str()?.to_owned();
                        Some(Instances {
                            id: name.clone(),
                            name,
                            instances: d["spec"]["replicas"].as_u64().unwrap_or(1) as u32,
                        })
                    })
                    .collect(),
            ))
        })
    }

    fn scale<'a>(&'a self, req: &'a ScaleRequest) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(async move {
            let url = format!(
                "{}/apis/apps/v1/namespaces/{}/deployments/{}/scale",
                self.api, self.namespace, req.target
            );
            let patch = json!({ "spec": { "replicas": req.to } }).to_string();
            let (status, body) = self
                .call(
                    http::Method::PATCH,
                    &url,
                    Some("application/merge-patch+json"),
                    Some(patch),
                )
                .await?;
            Ok(summary(status, &body, "/spec/replicas"))
        })
    }
}

/// A generic webhook: `POST` of the scale as JSON.
#[derive(Debug)]
pub struct Webhook {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Webhook {
    /// A webhook actuator at `url`, with an optional bearer token.
    pub fn new(url: &str, token: Option<String>) -> Webhook {
        Webhook {
            url: url.to_owned(),
            token,
            http: client(),
        }
    }
}

impl Actuator for Webhook {
    fn list(&self) -> BoxFuture<'_, Result<Option<Vec<Instances>>, Error>> {
        Box::pin(async { Ok(None) })
    }

    fn scale<'a>(&'a self, req: &'a ScaleRequest) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(async move {
            let (scaling_type, rule) = match req.kind {
                Kind::Dynamic(rule) => ("dynamic", rule),
                Kind::Schedule => ("schedule", None),
            };
            let body = json!({
                "app": req.app, "app_id": req.target,
                "old_instances": req.from, "instances": req.to,
                "scaling_type": scaling_type, "rule": rule,
                "reason": req.reason, "message": req.message,
            });
            let mut call = self.http.post(&self.url).json(&body);
            if let Some(t) = &self.token {
                call = call.bearer_auth(t);
            }
            let (status, _) = send(call, &self.url).await?;
            Ok(status.to_string())
        })
    }
}
