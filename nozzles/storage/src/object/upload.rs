//! Publishing this node: new catalog lines as a segment, new parts (metrics and logs)
//! uploaded whole, then the manifest naming them, then the objects it no longer names are
//! deleted. A failure anywhere leaves the last manifest as it was, and the next sync starts
//! over from what is on disk. An empty data dir is first restored from the node's own
//! manifest ([`restore`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::io::AsyncReadExt;

use super::{Error, FORMAT, MAX_SEGMENTS, Manifest, Published, Remote, Segment, key, manifest};
use crate::catalog::SeriesId;
use crate::logs::store::{LOGS, LogStore};
use crate::store::maintain::Shared;
use crate::store::parts::{METRICS, Part};
use crate::store::series_log;

/// Bytes an upload buffers before it turns into a multipart upload of parts this size.
pub const UPLOAD_CHUNK: usize = 8 * 1024 * 1024;

/// Chunks of one multipart upload in flight at once.
pub const UPLOAD_CONCURRENCY: usize = 2;

/// The catalog file under the data dir.
const SERIES_FILE: &str = "series.jsonl";

/// Counters.
#[derive(Debug, Default)]
pub struct UploadStats {
    /// Objects uploaded (parts and segments).
    pub uploads: AtomicU64,
    /// Bytes uploaded.
    pub upload_bytes: AtomicU64,
    /// Manifests written.
    pub publications: AtomicU64,
    /// Objects deleted after leaving the manifest.
    pub deletes: AtomicU64,
    /// The generation of the last manifest written.
    pub generation: AtomicU64,
    /// Parts on disk not yet published (as of the last sync).
    pub pending: AtomicU64,
}

/// What one publication did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Parts uploaded.
    pub parts: usize,
    /// Series uploaded.
    pub series: u64,
    /// Whether a manifest was written (nothing changed otherwise).
    pub published: bool,
}

/// What was published, and what failed attempts left behind.
#[derive(Debug)]
struct State {
    /// The last manifest written.
    manifest: Manifest,
    /// Objects uploaded by attempts whose manifest was never written.
    strays: BTreeSet<String>,
}

/// Publishes one node.
#[derive(Debug)]
pub struct Uploader {
    remote: Remote,
    dir: PathBuf,
    state: tokio::sync::Mutex<State>,
    /// Bytes per upload request.
    chunk: usize,
    /// Counters.
    pub stats: UploadStats,
}

impl Uploader {
    /// Reads what the node published before. Refuses a node whose published catalog is
    /// longer than the local one: another process writes under its name, or its disk was
    /// replaced by an older one.
    pub async fn start(remote: Remote, dir: &Path, local_series: u64) -> Result<Uploader, Error> {
        let m = manifest(remote.store.as_ref(), &remote.node)
            .await?
            .unwrap_or_else(|| Manifest {
                format: FORMAT,
                node: remote.node.clone(),
                ..Manifest::default()
            });
        if m.series_count() > local_series {
            return Err(Error::Diverged {
                node: remote.node.clone(),
                published: m.series_count(),
                local: local_series,
            });
        }
        let stats = UploadStats::default();
        stats.generation.store(m.generation, Relaxed);
        Ok(Uploader {
            remote,
            dir: dir.to_owned(),
            state: tokio::sync::Mutex::new(State {
                manifest: m,
                strays: BTreeSet::new(),
            }),
            chunk: UPLOAD_CHUNK,
            stats,
        })
    }

    /// Uploads files larger than `bytes` in parts of that size (S3 wants at least 5 MiB
    /// per part but the last).
    pub fn with_chunk(mut self, bytes: usize) -> Uploader {
        self.chunk = bytes.max(1);
        self
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.remote.node
    }

    /// Uploads what is new and writes the manifest (when anything changed); then deletes
    /// what it no longer names, and what earlier failed attempts uploaded but never
    /// published.
    pub async fn publish(&self, shared: &Shared, logs: &Mutex<LogStore>) -> Result<Outcome, Error> {
        let mut state = self.state.lock().await;
        let mut uploaded = Vec::new();
        let before = state.manifest.clone();
        let outcome = match self
            .publish_into(&mut state.manifest, &mut uploaded, shared, logs)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                state.strays.extend(uploaded);
                return Err(e);
            }
        };
        let strays = std::mem::take(&mut state.strays);
        let now = &state.manifest;
        let named = |rel: &String| {
            now.parts.iter().any(|p| &p.key == rel) || now.series.iter().any(|s| &s.key == rel)
        };
        let gone: BTreeSet<String> = before
            .parts
            .iter()
            .map(|p| p.key.clone())
            .chain(before.series.iter().map(|s| s.key.clone()))
            .chain(strays)
            .filter(|rel| !named(rel))
            .collect();
        drop(state);
        for rel in gone {
            let k = key(&self.remote.node, &rel);
            match self.remote.store.delete(&k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.stats.deletes.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    tracing::warn!(key = %k, error = %e, "object store: cannot delete an object the manifest does not name")
                }
            }
        }
        Ok(outcome)
    }

    /// Uploads new parts, then new catalog lines, then the manifest naming them, which
    /// replaces `published` once written. Every object uploaded is added to `uploaded`.
    async fn publish_into(
        &self,
        published: &mut Manifest,
        uploaded: &mut Vec<String>,
        shared: &Shared,
        logs: &Mutex<LogStore>,
    ) -> Result<Outcome, Error> {
        // Parts and catalog length in one look: every id in these parts is below it.
        let (mut local_parts, keys, from) = {
            let store = shared.lock();
            let parts: Vec<(&str, Part)> = store
                .all_parts()
                .into_iter()
                .map(|p| (METRICS, p))
                .collect();
            let n = store.catalog.len() as SeriesId;
            // Merging the segments rewrites them all; otherwise only the new lines go up.
            let from = if published.series.len() >= MAX_SEGMENTS && n > published.series_count() {
                0
            } else {
                published.series_count()
            };
            let keys: Vec<_> = (from..n).map(|id| store.catalog.key_arc(id)).collect();
            (parts, keys, from)
        };
        local_parts.extend(
            logs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .parts()
                .into_iter()
                .map(|p| (LOGS, p)),
        );
        // Each part under its key, relative to the data dir.
        let local_parts: Vec<(&str, Part, String)> = local_parts
            .into_iter()
            .filter_map(|(table, p)| {
                let rel = relative(&self.dir, &p.path)?;
                Some((table, p, rel))
            })
            .collect();
        let pending = local_parts
            .iter()
            .filter(|(_, _, rel)| !published.parts.iter().any(|p| &p.key == rel))
            .count();
        self.stats.pending.store(pending as u64, Relaxed);
        let mut next = published.clone();
        let mut outcome = Outcome::default();
        let mut parts = Vec::with_capacity(local_parts.len());
        for (table, part, rel) in local_parts {
            if let Some(p) = published.parts.iter().find(|p| p.key == rel) {
                parts.push(p.clone());
                continue;
            }
            if !self
                .upload(shared, &part, &key(&self.remote.node, &rel))
                .await?
            {
                continue; // compacted or expired meanwhile
            }
            uploaded.push(rel.clone());
            outcome.parts += 1;
            parts.push(Published {
                table: table.to_owned(),
                hour: part.hour,
                seq: part.seq,
                bytes: part.bytes,
                key: rel,
            });
        }
        next.parts = parts;
        if !keys.is_empty() {
            let count = keys.len() as u64;
            let mut text = String::new();
            for (i, k) in keys.iter().enumerate() {
                text.push_str(&series_log::line(from + i as u64, k));
                text.push('\n');
            }
            let rel = format!("series/{from:012}-{count:012}.jsonl");
            self.put(&key(&self.remote.node, &rel), text.into_bytes())
                .await?;
            uploaded.push(rel.clone());
            let segment = Segment {
                first: from,
                count,
                key: rel,
            };
            if from == 0 {
                next.series = vec![segment];
            } else {
                next.series.push(segment);
            }
            outcome.series = count;
        }
        if next.series == published.series && next.parts == published.parts {
            self.stats.pending.store(0, Relaxed);
            return Ok(outcome);
        }
        next.generation = published.generation + 1;
        next.written_ms = chrono::Utc::now().timestamp_millis();
        let body = serde_json::to_vec_pretty(&next).expect("a manifest serializes");
        self.put(&key(&self.remote.node, "manifest.json"), body)
            .await?;
        self.stats.publications.fetch_add(1, Relaxed);
        self.stats.generation.store(next.generation, Relaxed);
        self.stats.pending.store(0, Relaxed);
        outcome.published = true;
        *published = next;
        Ok(outcome)
    }

    /// Uploads `body` as `k`, counted.
    async fn put(&self, k: &Key, body: Vec<u8>) -> Result<(), Error> {
        let n = self.put_once(k, body).await?;
        self.count(n);
        Ok(())
    }

    /// Uploads `body` as `k` in one request; its size.
    async fn put_once(&self, k: &Key, body: Vec<u8>) -> Result<u64, Error> {
        let n = body.len() as u64;
        self.remote
            .store
            .put(k, PutPayload::from(body))
            .await
            .map_err(Error::object("put", k))?;
        Ok(n)
    }

    /// Counts one object of `n` bytes uploaded.
    fn count(&self, n: u64) {
        self.stats.uploads.fetch_add(1, Relaxed);
        self.stats.upload_bytes.fetch_add(n, Relaxed);
    }

    /// Uploads one part file; `false` when it no longer exists.
    async fn upload(&self, shared: &Shared, part: &Part, k: &Key) -> Result<bool, Error> {
        let opened = {
            // An open file stays readable after compaction deletes its name.
            let _files = shared.files.read().await;
            tokio::fs::File::open(&part.path).await
        };
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(Error::Io {
                    path: part.path.clone(),
                    source,
                });
            }
        };
        let n = self.send(&mut file, k).await?;
        self.count(n);
        Ok(true)
    }

    /// Sends a file as `k`: one request up to the chunk size ([`UPLOAD_CHUNK`]), a
    /// multipart upload of chunks that size beyond (aborted when a chunk fails, so no part
    /// of it stays).
    async fn send(&self, file: &mut tokio::fs::File, k: &Key) -> Result<u64, Error> {
        let transfer = |source| Error::Transfer {
            key: k.to_string(),
            source,
        };
        let size = file.metadata().await.map_err(transfer)?.len();
        if size as usize <= self.chunk {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).await.map_err(transfer)?;
            return self.put_once(k, bytes).await;
        }
        let upload = self
            .remote
            .store
            .put_multipart(k)
            .await
            .map_err(Error::object("put", k))?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, self.chunk);
        let mut buf = vec![0u8; self.chunk];
        let mut n = 0u64;
        loop {
            let read = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(transfer(e));
                }
            };
            if let Err(e) = w.wait_for_capacity(UPLOAD_CONCURRENCY).await {
                let _ = w.abort().await;
                return Err(Error::object("put", k)(e));
            }
            w.write(&buf[..read]);
            n += read as u64;
        }
        w.finish().await.map_err(Error::object("put", k))?;
        Ok(n)
    }
}

/// `path` relative to `dir`, `/`-separated.
fn relative(dir: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(dir).ok()?;
    let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
    Some(parts.join("/"))
}

/// Restores an empty data dir from the node's own manifest: its parts, then its catalog
/// (written last, so an interrupted restore starts over). Returns the parts restored.
pub async fn restore(remote: &Remote, dir: &Path) -> Result<usize, Error> {
    let catalog = dir.join(SERIES_FILE);
    if std::fs::metadata(&catalog).is_ok_and(|m| m.len() > 0) {
        return Ok(0);
    }
    let Some(m) = manifest(remote.store.as_ref(), &remote.node).await? else {
        return Ok(0);
    };
    for p in &m.parts {
        let to = dir.join(&p.key);
        super::peers::download(remote, &key(&remote.node, &p.key), &to).await?;
    }
    let mut text = Vec::new();
    for s in &m.series {
        let k = key(&remote.node, &s.key);
        text.extend_from_slice(&super::get(remote.store.as_ref(), &k).await?);
    }
    let io = |source| Error::Io {
        path: catalog.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = catalog.with_extension("jsonl.restore");
    std::fs::write(&tmp, &text).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &catalog).map_err(io)?;
    tracing::info!(node = %remote.node, parts = m.parts.len(), series = m.series_count(), "storage restored from the object store");
    Ok(m.parts.len())
}
