//! App names to app guids, from the scheduler, for tokens scoped to apps by name.
//!
//! Log Cache asks Cloud Controller whether a caller may see a source; the log cache asks
//! the scheduler (`hydrant cell`, or Cloud Controller itself: `GET /v3/apps?names=…`) which
//! guids an app name stands for. Never the `app_name` tag: any emitter can put any name on
//! its envelopes. Answers are kept for [`TTL`]; a scheduler that cannot be reached gives no
//! guids, so an app scope reads nothing until it answers (logged once per [`TTL`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How long a name's guids are kept.
pub const TTL: Duration = Duration::from_secs(10);

/// Time one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the scheduler is and how to call it.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// Base URL (`https://127.0.0.1:9022`).
    pub url: String,
    /// Bearer token for it.
    pub token: Option<String>,
    /// The client (see `hydrant_runtime::https::client`).
    pub http: reqwest::Client,
}

/// Cloud Controller's `GET /v3/apps` page, as far as names and guids go (the Hydrant cell
/// and Cloud Controller answer alike).
#[derive(Debug, Deserialize)]
struct Page {
    resources: Vec<App>,
}

#[derive(Debug, Deserialize)]
struct App {
    guid: String,
    name: String,
}

/// Resolves app names to guids through a scheduler, with a short cache.
#[derive(Debug)]
pub struct Directory {
    scheduler: Option<Scheduler>,
    cache: Mutex<HashMap<String, (Vec<String>, Instant)>>,
    last_warning: Mutex<Option<Instant>>,
}

impl Directory {
    /// A directory over `scheduler`; without one, app names resolve to nothing.
    pub fn new(scheduler: Option<Scheduler>) -> Directory {
        Directory {
            scheduler,
            cache: Mutex::new(HashMap::new()),
            last_warning: Mutex::new(None),
        }
    }

    /// The guids of the apps called any of `names`.
    pub async fn guids(&self, names: &[&str]) -> HashSet<String> {
        let mut out = HashSet::new();
        for name in names {
            out.extend(self.guids_of(name).await);
        }
        out
    }

    async fn guids_of(&self, name: &str) -> Vec<String> {
        let Some(scheduler) = &self.scheduler else {
            return Vec::new();
        };
        if let Some((guids, at)) = self.cache().get(name)
            && at.elapsed() < TTL
        {
            return guids.clone();
        }
        let guids = match lookup(scheduler, name).await {
            Ok(guids) => guids,
            Err(e) => {
                self.warn(&e);
                Vec::new()
            }
        };
        self.cache()
            .insert(name.to_owned(), (guids.clone(), Instant::now()));
        guids
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<String>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn warn(&self, e: &str) {
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= TTL) {
            *last = Some(Instant::now());
            tracing::warn!(error = %e, "log cache: the scheduler did not name apps; app-scoped tokens read nothing meanwhile");
        }
    }
}

async fn lookup(s: &Scheduler, name: &str) -> Result<Vec<String>, String> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("names", name)
        .append_pair("per_page", "5000")
        .finish();
    let url = format!("{}/v3/apps?{query}", s.url.trim_end_matches('/'));
    let mut req = s.http.get(&url).timeout(LOOKUP_TIMEOUT);
    if let Some(t) = &s.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    let page: Page = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
    // `names` filters already; a scheduler that ignored it must not widen the grant.
    Ok(page
        .resources
        .into_iter()
        .filter(|a| a.name == name)
        .map(|a| a.guid)
        .collect())
}
