//! Who may use a component's HTTP API, checked in one place for every server.
//!
//! - **Tokens.** A token file is either one line (an admin token: `hydrant up` writes one
//!   into its data directory) or YAML with scoped tokens:
//!   ```yaml
//!   tokens:
//!     - token: "s3cret-admin"
//!       admin: true                # reads and writes everything
//!     - token: "team-a"
//!       sources: ["6d6c3a04-…"]    # reads these source ids (app guids, component names)
//!       apps: ["web"]              # …and these apps: their guids, from the scheduler
//!     - token: "deployer"
//!       read_all: true             # reads everything (Grafana, dashboards)
//!       write: true                # pushes, scales, deletes apps; imports samples
//!   ```
//!   A request carries one as `Authorization: Bearer TOKEN` (any case), or the bare token
//!   as Log Cache and the RLP gateway accept. Tokens are compared in constant time and
//!   never logged or printed.
//! - **Reads and writes are separate.** What a route needs ([`Need`]) is declared by each
//!   API: any valid token (the handler narrows to the token's sources), a token that reads
//!   everything, or a token that may write.
//! - **Browsers cannot be made to call it.** A request whose `Host` is not an IP address,
//!   `localhost` or an allowed name is refused (DNS rebinding), and so is one whose
//!   `Origin` is not the server itself (a web page posting to a loopback port).
//! - `/healthz` needs no token. Without a token file a component serves openly only when
//!   told to (`--insecure-open`); the CLI refuses to start it otherwise.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hydrant_proto::v2::EgressBatchRequest;
use serde::Deserialize;

/// Errors loading a token file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown or mistyped fields.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A problem with the file as a whole or one token entry.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (`tokens[i]: …`).
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    read_all: bool,
    #[serde(default)]
    write: bool,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
}

/// What a token may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Everything.
    All,
    /// Only these sources, and the apps of these names (by their guids, which the
    /// scheduler gives: never by the `app_name` tag an emitter put on its envelopes).
    Scoped {
        /// Source ids.
        sources: HashSet<String>,
        /// App names.
        apps: HashSet<String>,
    },
}

impl Read {
    /// The app names whose guids this grant reads: for the caller to resolve through the
    /// scheduler before calling [`Read::allows`].
    pub fn app_names(&self) -> Vec<&str> {
        match self {
            Read::All => Vec::new(),
            Read::Scoped { apps, .. } => apps.iter().map(String::as_str).collect(),
        }
    }

    /// Whether `source_id` may be read; `app_guids` are the guids the scheduler gives for
    /// [`Read::app_names`] (none where no scheduler is known: app scopes then read nothing).
    pub fn allows(&self, source_id: &str, app_guids: &HashSet<String>) -> bool {
        match self {
            Read::All => true,
            Read::Scoped { sources, .. } => {
                sources.contains(source_id) || app_guids.contains(source_id)
            }
        }
    }

    /// Whether this reads everything.
    pub fn is_all(&self) -> bool {
        matches!(self, Read::All)
    }

    /// Whether this may open a Firehose subscription for `req`: readers of everything
    /// always; others only when every selector names a source they may read and no shard
    /// group is joined (a group splits its data among its members, so joining one takes
    /// data from whoever else is in it).
    pub fn may_subscribe(&self, req: &EgressBatchRequest, app_guids: &HashSet<String>) -> bool {
        self.is_all()
            || (req.shard_id.is_empty()
                && req
                    .selectors
                    .iter()
                    .all(|s| !s.source_id.is_empty() && self.allows(&s.source_id, app_guids)))
    }
}

/// What a request's token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// What it may read.
    pub read: Read,
    /// Whether it may change things (push, scale, delete, import).
    pub write: bool,
}

impl Grant {
    /// Everything: an admin token, or any request to an open server.
    pub fn admin() -> Grant {
        Grant {
            read: Read::All,
            write: true,
        }
    }
}

/// Loaded tokens.
#[derive(Clone)]
pub struct Tokens {
    grants: Vec<(Vec<u8>, Grant)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print tokens.
        f.debug_struct("Tokens")
            .field("tokens", &self.grants.len())
            .finish()
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

impl Tokens {
    /// Reads and validates a token file.
    pub fn load(path: &Path) -> Result<Tokens, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.into(),
            source,
        })?;
        Tokens::parse(&text, path)
    }

    /// One admin token.
    pub fn admin(token: &str) -> Tokens {
        Tokens {
            grants: vec![(token.as_bytes().to_vec(), Grant::admin())],
        }
    }

    /// Parses a token file: YAML when a line starts with `tokens:`, otherwise its first line
    /// is one admin token. `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Tokens, Error> {
        let invalid = |message: String| Error::Invalid {
            path: path.into(),
            message,
        };
        if !text.lines().any(|l| l.starts_with("tokens:")) {
            let token = text.lines().next().unwrap_or_default().trim();
            if token.is_empty() {
                return Err(invalid(
                    "the first line must hold a token (or the file lists `tokens:`)".into(),
                ));
            }
            return Ok(Tokens::admin(token));
        }
        if let Err(e) = crate::yaml::check(text) {
            return Err(invalid(e.to_string()));
        }
        let file: File = serde_norway::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            Error::Syntax {
                path: path.into(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        let mut seen = HashSet::new();
        let mut grants = Vec::new();
        for (i, e) in file.tokens.into_iter().enumerate() {
            let at = |m: &str| invalid(format!("tokens[{i}]: {m}"));
            if e.token.trim().is_empty() {
                return Err(at("token: must not be empty"));
            }
            if !seen.insert(e.token.clone()) {
                return Err(at("token: duplicates an earlier token"));
            }
            let scoped = !e.sources.is_empty() || !e.apps.is_empty();
            let read = if e.admin || e.read_all {
                if scoped {
                    return Err(at("this token reads everything; remove sources/apps"));
                }
                Read::All
            } else {
                if !scoped {
                    return Err(at(
                        "set admin: true or read_all: true, or list sources and/or apps",
                    ));
                }
                Read::Scoped {
                    sources: e.sources.into_iter().collect(),
                    apps: e.apps.into_iter().collect(),
                }
            };
            let grant = Grant {
                read,
                write: e.admin || e.write,
            };
            grants.push((e.token.into_bytes(), grant));
        }
        Ok(Tokens { grants })
    }

    /// The grant of an `Authorization` header value (`bearer TOKEN` in any case, or the bare
    /// token); `None` when missing or unknown. Every token is compared, so timing does not
    /// reveal which matched.
    pub fn check(&self, authorization: Option<&str>) -> Option<Grant> {
        let token = bearer(authorization?)?;
        let mut found = None;
        for (t, grant) in &self.grants {
            if constant_time_eq(t, token.as_bytes()) {
                found = Some(grant.clone());
            }
        }
        found
    }
}

/// The token of an `Authorization` header value: `bearer TOKEN` in any case, or the bare
/// token; `None` for another scheme or an empty value.
pub fn bearer(authorization: &str) -> Option<&str> {
    let value = authorization.trim();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        Some(_) => return None,
        None => value,
    };
    (!token.is_empty()).then_some(token)
}

/// What a server enforces.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The tokens it accepts; `None` serves everyone as admin (`--insecure-open`).
    pub tokens: Option<Arc<Tokens>>,
    /// Host names it answers to besides IP addresses and `localhost`.
    pub allowed_hosts: Vec<String>,
}

impl Access {
    /// No authentication (tests, or `--insecure-open`).
    pub fn open() -> Access {
        Access::default()
    }

    /// Requests must carry one of `tokens`.
    pub fn tokens(tokens: Tokens) -> Access {
        Access {
            tokens: Some(Arc::new(tokens)),
            allowed_hosts: Vec::new(),
        }
    }

    /// The grant of a request with these headers; `None` when a token is needed and
    /// missing or unknown.
    pub fn grant(&self, headers: &HeaderMap) -> Option<Grant> {
        match &self.tokens {
            None => Some(Grant::admin()),
            Some(t) => t.check(
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            ),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// What a route needs of the caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (`/healthz`).
    Nothing,
    /// Any valid token; the handler narrows what it returns to the token's sources.
    Read,
    /// A token that reads everything.
    ReadAll,
    /// A token that may write.
    Write,
}

/// Why a request was refused before its handler ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or an unknown one (401).
    Unauthenticated,
    /// The token does not allow this (403).
    Forbidden(String),
    /// The `Host` or `Origin` is not this server (403).
    Foreign(String),
}

impl Refusal {
    /// A plain-text response (APIs with their own error shape render their own).
    pub fn plain(self) -> Response {
        match self {
            Refusal::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a valid bearer token is required (Authorization: Bearer TOKEN)\n",
            )
                .into_response(),
            Refusal::Forbidden(m) | Refusal::Foreign(m) => {
                (StatusCode::FORBIDDEN, format!("{m}\n")).into_response()
            }
        }
    }
}

/// One API's rules: what each route needs, and how a refusal looks in its error format.
#[derive(Debug, Clone)]
pub struct Guard {
    /// What the server accepts.
    pub access: Access,
    /// What a route needs (`/healthz` never needs anything).
    pub needs: fn(&Method, &str) -> Need,
    /// Renders a refusal.
    pub refuse: fn(Refusal) -> Response,
}

impl Guard {
    /// A guard with plain-text refusals.
    pub fn new(access: Access, needs: fn(&Method, &str) -> Need) -> Guard {
        Guard {
            access,
            needs,
            refuse: Refusal::plain,
        }
    }

    /// Renders refusals with `refuse`.
    pub fn refusing(mut self, refuse: fn(Refusal) -> Response) -> Guard {
        self.refuse = refuse;
        self
    }

    /// Wraps `router`: every request is checked before it is routed, and its [`Grant`] is
    /// put in its extensions for the handler.
    pub fn wrap(self, router: Router) -> Router {
        let guard = Arc::new(self);
        router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let guard = Arc::clone(&guard);
                async move { guard.check(req, next).await }
            },
        ))
    }

    async fn check(&self, mut req: Request, next: Next) -> Response {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        if !host.is_empty() && !self.access.host_allowed(&host) {
            return (self.refuse)(Refusal::Foreign(format!(
                "host {host:?} is not this server (allow it with --allowed-host)"
            )));
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let same = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(&host));
            if !same {
                return (self.refuse)(Refusal::Foreign(format!(
                    "cross-origin requests are refused (Origin {origin:?})"
                )));
            }
        }
        let path = req.uri().path();
        let need = if path == "/healthz" {
            Need::Nothing
        } else {
            (self.needs)(req.method(), path)
        };
        if need == Need::Nothing {
            return next.run(req).await;
        }
        let Some(grant) = self.access.grant(req.headers()) else {
            return (self.refuse)(Refusal::Unauthenticated);
        };
        match need {
            Need::ReadAll if !grant.read.is_all() => {
                return (self.refuse)(Refusal::Forbidden(
                    "this token may not read everything".into(),
                ));
            }
            Need::Write if !grant.write => {
                return (self.refuse)(Refusal::Forbidden("this token may not write".into()));
            }
            _ => {}
        }
        req.extensions_mut().insert(grant);
        next.run(req).await
    }
}

/// The rule most servers follow: `/metrics` reads everything, other `GET`s any token, and
/// anything else writes.
pub fn reads_and_writes(method: &Method, path: &str) -> Need {
    match (method, path) {
        (_, "/metrics") => Need::ReadAll,
        (&Method::GET | &Method::HEAD, _) => Need::Read,
        _ => Need::Write,
    }
}

#[cfg(test)]
mod tests;
