//! Which drains an agent writes: the apps' bindings, polled from the scheduler as
//! Loggregator's syslog agent polls its binding cache (Cloud Controller's
//! `GET /internal/v5/syslog_drain_urls`, page by page), plus aggregate drains that take
//! every app's envelopes. Each (drain URL, app) pair is one [`Drain`] with its own queue;
//! a binding that appears starts one, a binding that goes stops it, the rest run on.
//!
//! [`Drains::offer`] is on the agent's ingest path: without drains it is one atomic load;
//! with drains, a read lock and a map lookup per envelope, and a clone of the envelope's
//! reference-counted bytes into each drain that wants it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hydrant_proto::raw::RawEnvelope;
use tokio_util::sync::CancellationToken;

use super::url::DrainUrl;
use super::writer::{Drain, Notify, Target};
use crate::cell::contract::services::DrainUrls;

/// Default time between two polls of the bindings (Loggregator's spec default is 15 s).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(15);

/// Most pages read in one poll (1,000 drains each).
const MAX_PAGES: u64 = 1000;

/// Where bindings come from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The scheduler's base URL (a cell's API).
    pub url: String,
    /// Its token (it must be one that may write: the list carries drain credentials).
    pub token: Option<String>,
    /// The HTTP client (TLS settings for the scheduler).
    pub http: reqwest::Client,
}

/// The agent's drain settings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where apps' bindings are polled from (none: aggregate drains only).
    pub source: Option<Source>,
    /// Drains that take every app's envelopes.
    pub aggregate: Vec<String>,
    /// Time between two polls.
    pub refresh: Option<Duration>,
    /// HOSTNAME of aggregate drains' messages without org/space tags.
    pub hostname: String,
    /// Envelopes each drain may hold (none: [`super::writer::DRAIN_BUFFER`]).
    pub buffer: Option<usize>,
}

/// What the agent writes to, routed by source id.
#[derive(Debug, Default)]
pub struct Drains {
    any: AtomicBool,
    routes: RwLock<Routes>,
    /// Polls that failed.
    pub refresh_errors: AtomicU64,
    /// Bindings left out for an unusable URL, in the last poll.
    pub invalid: AtomicU64,
}

#[derive(Debug, Default)]
struct Routes {
    by_app: HashMap<String, Vec<Arc<Drain>>>,
    aggregate: Vec<Arc<Drain>>,
    running: HashMap<Target, Arc<Drain>>,
}

/// One drain's figures, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    /// The URL without user info and query.
    pub url: String,
    /// `app` or `aggregate`.
    pub scope: &'static str,
    /// Messages written.
    pub sent: u64,
    /// Envelopes lost.
    pub dropped: u64,
    /// Failed connections and writes.
    pub errors: u64,
}

impl Drains {
    /// Whether any drain runs (one atomic load).
    pub fn active(&self) -> bool {
        self.any.load(Relaxed)
    }

    /// Queues each envelope for the drains of its source and the aggregate drains.
    pub fn offer(&self, batch: &[RawEnvelope]) {
        if !self.active() {
            return;
        }
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        for env in batch {
            for d in &routes.aggregate {
                d.offer(env);
            }
            if let Some(drains) = routes.by_app.get(env.source_id()) {
                for d in drains {
                    d.offer(env);
                }
            }
        }
    }

    /// Makes `targets` the running drains: new ones start, missing ones stop.
    pub fn set(
        &self,
        targets: Vec<Target>,
        buffer: usize,
        notify: &Notify,
        cancel: &CancellationToken,
    ) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let wanted: HashSet<&Target> = targets.iter().collect();
        routes.running.retain(|t, d| {
            let keep = wanted.contains(t);
            if !keep {
                tracing::info!(url = %t.url, app = ?t.app_id, "drain: binding gone, drain stopped");
                d.stop();
            }
            keep
        });
        for t in targets {
            if let std::collections::hash_map::Entry::Vacant(slot) = routes.running.entry(t) {
                let t = slot.key().clone();
                tracing::info!(url = %t.url, app = ?t.app_id, "drain: started");
                slot.insert(Drain::start(t, buffer, Arc::clone(notify), cancel));
            }
        }
        let mut by_app: HashMap<String, Vec<Arc<Drain>>> = HashMap::new();
        let mut aggregate = Vec::new();
        for (t, d) in &routes.running {
            match &t.app_id {
                Some(app) => by_app.entry(app.clone()).or_default().push(Arc::clone(d)),
                None => aggregate.push(Arc::clone(d)),
            }
        }
        routes.by_app = by_app;
        routes.aggregate = aggregate;
        self.any.store(!routes.running.is_empty(), Relaxed);
    }

    /// Every drain's figures, summed by URL and scope.
    pub fn figures(&self) -> Vec<Figures> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let mut sum: BTreeMap<(String, &'static str), Figures> = BTreeMap::new();
        for (t, d) in &routes.running {
            let scope = if t.app_id.is_some() {
                "app"
            } else {
                "aggregate"
            };
            let url = t.url.anonymized();
            let f = sum.entry((url.clone(), scope)).or_insert(Figures {
                url,
                scope,
                sent: 0,
                dropped: 0,
                errors: 0,
            });
            f.sent += d.stats.sent.load(Relaxed);
            f.dropped += d.stats.dropped.load(Relaxed);
            f.errors += d.stats.errors.load(Relaxed);
        }
        sum.into_values().collect()
    }

    /// Drains running.
    pub fn count(&self) -> usize {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.running.len()
    }
}

/// The targets a page set of bindings makes, and how many bindings were unusable (each
/// named in the agent's log once per poll).
pub fn targets(pages: &[DrainUrls]) -> (Vec<Target>, u64) {
    let mut out = Vec::new();
    let mut invalid = 0;
    for binding in pages.iter().flat_map(|p| &p.results) {
        let url = match DrainUrl::parse(&binding.url) {
            Ok(u) => u,
            Err(e) => {
                invalid += 1;
                tracing::debug!(error = %e, "drain: binding left out");
                continue;
            }
        };
        for c in &binding.credentials {
            for app in &c.apps {
                out.push(Target {
                    url: url.clone(),
                    app_id: Some(app.app_id.clone()),
                    hostname: app.hostname.clone(),
                    ca: c.ca.clone(),
                    cert: c.cert.clone(),
                    key: c.key.clone(),
                });
            }
        }
    }
    (out, invalid)
}

/// Reads every page of the bindings.
async fn fetch(source: &Source) -> Result<Vec<DrainUrls>, String> {
    let mut pages = Vec::new();
    let mut next = 0u64;
    for _ in 0..MAX_PAGES {
        let url = format!(
            "{}/internal/v5/syslog_drain_urls?batch_size={}&next_id={next}",
            source.url.trim_end_matches('/'),
            crate::cell::api::MAX_DRAIN_BATCH,
        );
        let mut req = source.http.get(&url).timeout(super::writer::IO_TIMEOUT);
        if let Some(t) = &source.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("{url} answered {}", r.status()));
        }
        let page: DrainUrls = r.json().await.map_err(|e| e.to_string())?;
        next = page.next_id;
        pages.push(page);
        if next == 0 {
            return Ok(pages);
        }
    }
    Err(format!("more than {MAX_PAGES} pages of bindings"))
}

/// Keeps `drains` equal to the bindings and the aggregate drains until `cancel`.
pub async fn run(drains: Arc<Drains>, config: Config, notify: Notify, cancel: CancellationToken) {
    let aggregate: Vec<Target> = config
        .aggregate
        .iter()
        .filter_map(|u| match DrainUrl::parse(u) {
            Ok(url) => Some(Target {
                url,
                app_id: None,
                hostname: config.hostname.clone(),
                ca: String::new(),
                cert: String::new(),
                key: String::new(),
            }),
            Err(e) => {
                tracing::error!(error = %e, "drain: aggregate drain left out");
                None
            }
        })
        .collect();
    let buffer = config.buffer.unwrap_or(super::writer::DRAIN_BUFFER);
    let Some(source) = config.source else {
        drains.set(aggregate, buffer, &notify, &cancel);
        return;
    };
    let refresh = config.refresh.unwrap_or(DEFAULT_REFRESH);
    // Aggregate drains run from the start, whatever the scheduler says.
    drains.set(aggregate.clone(), buffer, &notify, &cancel);
    loop {
        match fetch(&source).await {
            Ok(pages) => {
                let (mut targets, invalid) = targets(&pages);
                drains.invalid.store(invalid, Relaxed);
                targets.extend(aggregate.iter().cloned());
                drains.set(targets, buffer, &notify, &cancel);
            }
            Err(e) => {
                drains.refresh_errors.fetch_add(1, Relaxed);
                tracing::warn!(scheduler = %source.url, error = %e, "drain: bindings could not be read; the drains stay as they were");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(refresh) => {}
            () = cancel.cancelled() => return,
        }
    }
}
