//! The other nodes, as their manifests describe them: each one's catalog (rebuilt from its
//! segments) and parts. Their series ids are tagged with the node's index
//! ([`global`]) so one query can hold series of several nodes; their parts are downloaded
//! whole on first use and checked against the CRC in their name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as Key;
use promql_parser::label::Matcher;
use tokio::io::AsyncWriteExt;

use super::{Error, Manifest, NODES, Remote, key};
use crate::catalog::{Catalog, SeriesId};
use crate::model::SeriesKey;
use crate::store::parts::{self, Part};
use crate::store::series_log;

/// Bits of a series id left for a node's own ids; the node index sits above them.
pub const NODE_SHIFT: u32 = 48;

/// Node index 0 is this node; peers are 1, 2, … in the order they were first seen.
pub fn global(node: usize, id: SeriesId) -> SeriesId {
    ((node as u64) << NODE_SHIFT) | id
}

/// The node index and the node's own id of a tagged id.
pub fn split(id: SeriesId) -> (usize, SeriesId) {
    ((id >> NODE_SHIFT) as usize, id & ((1 << NODE_SHIFT) - 1))
}

/// Where peers' parts are downloaded, under the data dir.
pub const PEERS: &str = "peers";

/// A peer's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPart {
    /// `metrics` or `logs`.
    pub table: String,
    /// Its object.
    pub key: Key,
    /// Where it is (or will be) downloaded, with its hour, sequence and size.
    pub part: Part,
}

/// One peer.
#[derive(Debug)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// The generation of the manifest read last.
    pub generation: u64,
    /// Its catalog, ids as the node gave them.
    pub catalog: Catalog,
    /// Its parts.
    pub parts: Vec<PeerPart>,
}

/// Counters.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Parts downloaded.
    pub downloads: AtomicU64,
    /// Bytes downloaded.
    pub download_bytes: AtomicU64,
    /// Manifests read that changed something.
    pub updates: AtomicU64,
    /// Damaged catalog lines of peers (kept as placeholders).
    pub damaged_lines: AtomicU64,
}

/// Every peer; empty when no object store is configured.
#[derive(Debug, Default)]
pub struct Peers {
    remote: OnceLock<(Remote, PathBuf)>,
    nodes: RwLock<Vec<Node>>,
    downloading: tokio::sync::Mutex<()>,
    /// Counters.
    pub stats: PeerStats,
}

impl Peers {
    /// Connects to the object store; `dir` is the data dir.
    pub fn attach(&self, remote: Remote, dir: &Path) {
        let _ = self.remote.set((remote, dir.join(PEERS)));
    }

    /// The peers.
    pub fn nodes(&self) -> RwLockReadGuard<'_, Vec<Node>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Tagged ids of the peers' series matching any matcher group.
    pub fn select(&self, groups: &[Vec<Matcher>]) -> Vec<SeriesId> {
        let mut out = Vec::new();
        for (i, n) in self.nodes().iter().enumerate() {
            let mut ids = BTreeSet::new();
            for g in groups {
                ids.extend(n.catalog.select(g));
            }
            out.extend(ids.into_iter().map(|id| global(i + 1, id)));
        }
        out
    }

    /// The key of a tagged peer id.
    pub fn key(&self, id: SeriesId) -> Option<Arc<SeriesKey>> {
        let (node, id) = split(id);
        let nodes = self.nodes();
        let n = nodes.get(node.checked_sub(1)?)?;
        ((id as usize) < n.catalog.len()).then(|| n.catalog.key_arc(id))
    }

    /// Label names over the peers' `ids` (every peer series when `None`).
    pub fn label_names(&self, ids: Option<&[SeriesId]>) -> BTreeSet<String> {
        self.per_node(ids, |c, ids| c.label_names(ids))
    }

    /// Values of `name` over the peers' `ids` (every peer series when `None`).
    pub fn label_values(&self, name: &str, ids: Option<&[SeriesId]>) -> BTreeSet<String> {
        self.per_node(ids, |c, ids| c.label_values(name, ids))
    }

    fn per_node(
        &self,
        ids: Option<&[SeriesId]>,
        f: impl Fn(&Catalog, Option<&[SeriesId]>) -> BTreeSet<String>,
    ) -> BTreeSet<String> {
        let nodes = self.nodes();
        let mut out = BTreeSet::new();
        match ids {
            None => nodes.iter().for_each(|n| out.extend(f(&n.catalog, None))),
            Some(ids) => {
                for (node, local) in by_node(ids) {
                    if let Some(n) = node.checked_sub(1).and_then(|i| nodes.get(i)) {
                        let local: Vec<SeriesId> = local
                            .into_iter()
                            .filter(|id| (*id as usize) < n.catalog.len())
                            .collect();
                        out.extend(f(&n.catalog, Some(&local)));
                    }
                }
            }
        }
        out
    }

    /// Parts of `table` of node index `node` in the hours `[lo, hi]`, in (hour, seq) order.
    pub fn parts_between(&self, node: usize, table: &str, lo: i64, hi: i64) -> Vec<PeerPart> {
        let nodes = self.nodes();
        let Some(n) = node.checked_sub(1).and_then(|i| nodes.get(i)) else {
            return Vec::new();
        };
        n.parts
            .iter()
            .filter(|p| p.table == table && p.part.hour >= lo && p.part.hour <= hi)
            .cloned()
            .collect()
    }

    /// Every peer's parts of `table`, with the node index.
    pub fn all_parts(&self, table: &str) -> Vec<(usize, PeerPart)> {
        let nodes = self.nodes();
        let mut out = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            out.extend(
                n.parts
                    .iter()
                    .filter(|p| p.table == table)
                    .map(|p| (i + 1, p.clone())),
            );
        }
        out
    }

    /// `p` on local disk, downloaded now when it is not yet.
    pub async fn local(&self, p: &PeerPart) -> Result<Part, Error> {
        let have = |path: &Path| std::fs::metadata(path).is_ok_and(|m| m.len() == p.part.bytes);
        if have(&p.part.path) {
            return Ok(p.part.clone());
        }
        let _one = self.downloading.lock().await;
        if have(&p.part.path) {
            return Ok(p.part.clone());
        }
        let Some((remote, _)) = self.remote.get() else {
            return Err(Error::Config("no object store".into()));
        };
        download(remote, &p.key, &p.part.path).await?;
        self.stats.downloads.fetch_add(1, Relaxed);
        self.stats.download_bytes.fetch_add(p.part.bytes, Relaxed);
        Ok(p.part.clone())
    }

    /// Reads every other node's manifest and takes in what changed. Returns the local
    /// copies of parts the peers no longer have (for the caller to delete once no query
    /// reads them).
    pub async fn refresh(&self) -> Result<Vec<PathBuf>, Error> {
        let Some((remote, dir)) = self.remote.get() else {
            return Ok(Vec::new());
        };
        let root = Key::from(NODES);
        let listed = remote
            .store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(Error::object("list", &root))?;
        let mut stale = Vec::new();
        for prefix in listed.common_prefixes {
            let Some(name) = prefix.filename().map(str::to_owned) else {
                continue;
            };
            if name == remote.node || super::valid_node(&name).is_err() {
                continue;
            }
            let Some(m) = super::manifest(remote.store.as_ref(), &name).await? else {
                continue;
            };
            stale.extend(self.update(remote, dir, m).await?);
        }
        Ok(stale)
    }

    /// Takes in one peer's manifest when it is newer than what is known.
    async fn update(
        &self,
        remote: &Remote,
        dir: &Path,
        m: Manifest,
    ) -> Result<Vec<PathBuf>, Error> {
        let (known, loaded) = {
            let nodes = self.nodes();
            match nodes.iter().find(|n| n.name == m.node) {
                Some(n) => (n.generation, n.catalog.len() as u64),
                None => (0, 0),
            }
        };
        if m.generation <= known && known > 0 {
            return Ok(Vec::new());
        }
        // New catalog lines first (outside the lock), then everything at once.
        let mut lines = Vec::new();
        for s in m.series.iter().filter(|s| s.first + s.count > loaded) {
            let bytes = super::get(remote.store.as_ref(), &key(&m.node, &s.key)).await?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            lines.push((s.first, s.count, text));
        }
        let parts: Vec<PeerPart> = m
            .parts
            .iter()
            .map(|p| PeerPart {
                table: p.table.clone(),
                key: key(&m.node, &p.key),
                part: Part {
                    path: dir.join(&m.node).join(&p.key),
                    hour: p.hour,
                    seq: p.seq,
                    bytes: p.bytes,
                },
            })
            .collect();
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let node = match nodes.iter().position(|n| n.name == m.node) {
            Some(i) => &mut nodes[i],
            None => {
                nodes.push(Node {
                    name: m.node.clone(),
                    generation: 0,
                    catalog: Catalog::new(usize::MAX),
                    parts: Vec::new(),
                });
                nodes.last_mut().expect("just pushed")
            }
        };
        for (first, count, text) in lines {
            let mut by_id: BTreeMap<SeriesId, SeriesKey> = BTreeMap::new();
            for line in text.lines().filter(|l| !l.is_empty()) {
                if let Some((id, k)) = series_log::parse_line(line) {
                    by_id.insert(id, k);
                }
            }
            for id in (node.catalog.len() as u64).max(first)..first + count {
                let k = by_id.remove(&id).unwrap_or_else(|| {
                    self.stats.damaged_lines.fetch_add(1, Relaxed);
                    series_log::lost(id)
                });
                // A peer's catalog can name one series twice (a lost line's placeholder);
                // the ids must stay aligned, so a repeat keeps a placeholder.
                if node.catalog.id(&k).is_some() {
                    node.catalog.insert(series_log::lost(id));
                } else {
                    node.catalog.insert(k);
                }
            }
        }
        let stale = node
            .parts
            .iter()
            .filter(|old| !parts.contains(old))
            .map(|old| old.part.path.clone())
            .collect();
        node.parts = parts;
        node.generation = m.generation;
        self.stats.updates.fetch_add(1, Relaxed);
        Ok(stale)
    }
}

/// Groups tagged ids by node index, keeping each node's own ids.
pub fn by_node(ids: &[SeriesId]) -> BTreeMap<usize, Vec<SeriesId>> {
    let mut out: BTreeMap<usize, Vec<SeriesId>> = BTreeMap::new();
    for id in ids {
        let (node, local) = split(*id);
        out.entry(node).or_default().push(local);
    }
    out
}

/// Downloads `k` to `path`: a temporary file, checked against the CRC in its name, renamed.
pub async fn download(remote: &Remote, k: &Key, path: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let tmp = path.with_extension("download");
    let got = remote.store.get(k).await.map_err(Error::object("get", k))?;
    let mut stream = got.into_stream();
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Error::object("get", k))?;
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    drop(file);
    let check = tmp.clone();
    let want = parts::name_crc(path);
    let damage = tokio::task::spawn_blocking(move || parts::damage(&check, want))
        .await
        .unwrap_or_else(|e| Some(e.to_string()));
    if let Some(why) = damage {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(Error::Damaged {
            key: k.to_string(),
            message: format!("the downloaded part {why}"),
        });
    }
    tokio::fs::rename(&tmp, path).await.map_err(io)
}
