//! A storage node sharing an object store with others ([`crate::object`]): connecting
//! (and restoring an empty data dir), the sync loop that seals what is buffered, publishes
//! it and reads the peers, and its metrics and health.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hydrant_runtime::metrics::Text;
use tokio_util::sync::CancellationToken;

use crate::object::{self, Remote, upload::Uploader};
use crate::service::{Stage, Storage};
use crate::telemetry::names;

/// A node's object-store side.
#[derive(Debug)]
pub struct Cluster {
    /// Publishes this node.
    pub uploader: Uploader,
    /// The last failure of a sync, until one succeeds.
    failing: Mutex<Option<String>>,
}

/// Opens the object store and restores an empty data dir from it. Any failure stops the
/// node from starting: an empty node that cannot read what it published would write a
/// second, different catalog under its name.
pub async fn connect(config: &object::Config, dir: &Path) -> Result<Remote, object::Error> {
    let remote = object::open(config)?;
    let restored = object::upload::restore(&remote, dir).await?;
    if restored > 0 {
        tracing::info!(parts = restored, node = %remote.node, "storage: data dir restored from the object store");
    }
    Ok(remote)
}

/// Starts publishing `storage` and reading its peers.
pub async fn attach(storage: &Storage, remote: Remote) -> Result<(), object::Error> {
    let dir = storage.shared.lock().config().dir.clone();
    let series = storage.shared.lock().catalog.len() as u64;
    storage.shared.peers.attach(remote.clone(), &dir);
    let uploader = Uploader::start(remote, &dir, series).await?;
    let _ = storage.cluster.set(Cluster {
        uploader,
        failing: Mutex::new(None),
    });
    Ok(())
}

/// Syncs every `every` until `cancel`.
pub async fn run(storage: Arc<Storage>, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        // A panic in one sync (a client library's) is counted; the next sync runs.
        let once = std::panic::AssertUnwindSafe(sync(&storage));
        if let Err(panic) = futures::FutureExt::catch_unwind(once).await {
            storage.stats.errors.inc(Stage::Publish);
            let what = hydrant_runtime::admin::panic_message(panic.as_ref());
            tracing::error!(panic = %what, "storage: an object store sync panicked; the next sync retries");
        }
    }
}

/// One sync: seal what is buffered (so peers see it), then [`exchange`].
async fn sync(storage: &Storage) {
    if storage.cluster.get().is_none() {
        return;
    }
    if let Err(e) = storage.shared.seal_due(i64::MAX).await {
        storage.stats.errors.inc(Stage::Maintenance);
        tracing::warn!(error = %e, "storage: sealing before publishing failed");
    }
    storage
        .maintain_logs(chrono::Utc::now().timestamp_millis())
        .await;
    exchange(storage).await;
}

/// Publishes what is sealed and reads the peers. Failures are counted and logged; the
/// next sync starts over.
pub async fn exchange(storage: &Storage) {
    let Some(c) = storage.cluster.get() else {
        return;
    };
    let mut failure = None;
    if let Err(e) = c.uploader.publish(&storage.shared, &storage.logs).await {
        storage.stats.errors.inc(Stage::Publish);
        tracing::warn!(error = %e, "storage: publishing to the object store failed; the next sync retries");
        failure = Some(format!("publishing: {e}"));
    }
    match storage.shared.peers.refresh().await {
        Ok(stale) => storage.shared.forget_peer_parts(&stale).await,
        Err(e) => {
            storage.stats.errors.inc(Stage::Refresh);
            tracing::warn!(error = %e, "storage: reading the peers from the object store failed");
            failure.get_or_insert(format!("reading peers: {e}"));
        }
    }
    *c.failing.lock().unwrap_or_else(|p| p.into_inner()) = failure;
}

impl Cluster {
    /// The last sync's failure, if it failed.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The object-store metrics of `storage` (none without an object store).
pub fn render(storage: &Storage, t: &mut Text) {
    let Some(c) = storage.cluster.get() else {
        return;
    };
    let u = &c.uploader.stats;
    let p = &storage.shared.peers.stats;
    for (name, value) in [
        (names::OBJECT_UPLOADS, &u.uploads),
        (names::OBJECT_UPLOAD_BYTES, &u.upload_bytes),
        (names::OBJECT_GENERATION, &u.generation),
        (names::OBJECT_PENDING, &u.pending),
        (names::OBJECT_DOWNLOADS, &p.downloads),
        (names::OBJECT_DOWNLOAD_BYTES, &p.download_bytes),
    ] {
        t.sample(name, &[], value.load(Relaxed) as f64);
    }
    let peers = storage.shared.peers.nodes();
    t.sample(names::OBJECT_PEERS, &[], peers.len() as f64);
    for n in peers.iter() {
        t.sample(
            names::OBJECT_PEER_SERIES,
            &[("node", &n.name)],
            n.catalog.len() as f64,
        );
    }
}
