//! Parquet on an object store: several storage nodes (sharded by source id) each upload
//! their parts and catalog to one bucket, and every node answers queries over all of them.
//!
//! Layout under the store's URL (S3, GCS, Azure, or a local directory), per node:
//! - `nodes/<node>/manifest.json`: what the node has published ([`Manifest`]): its catalog
//!   segments and its parts, with a generation that only grows;
//! - `nodes/<node>/series/<first>-<count>.jsonl`: catalog lines (the format of
//!   `series.jsonl`, each with its CRC) for ids `first..first+count`;
//! - `nodes/<node>/metrics/…/part-*.parquet` and `nodes/<node>/logs/…`: the parts, under the
//!   same relative paths as on the node's disk.
//!
//! Invariants:
//! - The local disk stays the write path (WAL, buffer, parts); the object store gets a copy.
//!   A failed or cut upload loses nothing: the part stays on disk and the next sync tries
//!   again ([`upload`]).
//! - A manifest only names objects that were uploaded whole before it was written, and
//!   segments cover `0..series` without a gap, so a reader never sees a part whose series
//!   it cannot name. Objects a manifest no longer names are deleted after it is written.
//! - Series ids are per node. Readers tag a peer's ids with its node index
//!   ([`peers::global`]); queries merge series with equal labels from several nodes.
//! - Peers' parts are downloaded whole on first use into `<data>/peers/<node>/` and then
//!   read like local parts (decoded-part cache, DataFusion).

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as Key;
use serde::{Deserialize, Serialize};

pub mod peers;
pub mod upload;

/// How often a node publishes its parts (sealing its open hours first) and reads its
/// peers' manifests.
pub const DEFAULT_SYNC: Duration = Duration::from_secs(30);

/// Attempts object_store makes for one request before the error reaches the sync.
pub const REQUEST_RETRIES: usize = 3;

/// Longest time one request may take, retries included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Catalog segments a manifest may list before they are merged into one.
pub const MAX_SEGMENTS: usize = 32;

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Errors of the object tier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL, an option or the node name is unusable.
    #[error("object store: {0}")]
    Config(String),
    /// A request to the object store failed.
    #[error("object store {op} {key}: {source}")]
    Object {
        /// What was being done (put, get, list, delete).
        op: &'static str,
        /// Which object.
        key: String,
        /// Why.
        source: object_store::Error,
    },
    /// A part could not be uploaded (the connection was lost, the server refused it).
    #[error("object store upload {key}: {source}")]
    Transfer {
        /// Which object.
        key: String,
        /// Why.
        source: std::io::Error,
    },
    /// A manifest or catalog segment could not be read.
    #[error("object store {key}: {message}")]
    Damaged {
        /// Which object.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("object store, local file {path}: {source}")]
    Io {
        /// Which file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The object store holds more of this node than its disk does.
    #[error(
        "object store: node {node:?} has published {published} series but the local catalog holds {local}; \
         another process uses this --node-id, or the data dir was replaced (an empty data dir is restored \
         from the object store)"
    )]
    Diverged {
        /// The node.
        node: String,
        /// Series in its manifest.
        published: u64,
        /// Series on disk.
        local: u64,
    },
}

impl Error {
    fn object<'a>(
        op: &'static str,
        key: &'a Key,
    ) -> impl FnOnce(object_store::Error) -> Error + 'a {
        move |source| Error::Object {
            op,
            key: key.to_string(),
            source,
        }
    }

    /// Whether the object was missing (a 404).
    pub fn not_found(&self) -> bool {
        matches!(
            self,
            Error::Object {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}

/// The object-store settings of a storage node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where: `s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir`.
    pub url: String,
    /// Builder options (`aws_endpoint=http://…`, `aws_allow_http=true`, …), on top of the
    /// provider's environment variables (`AWS_ACCESS_KEY_ID`, …).
    pub options: Vec<(String, String)>,
    /// This node's name in the bucket.
    pub node: String,
    /// How often to publish and to read the peers.
    pub sync: Duration,
}

impl Config {
    /// Problems with the settings, each naming its flag.
    pub fn validate(&self) -> Vec<hydrant_runtime::config::Invalid> {
        let mut out = Vec::new();
        if let Err(e) = valid_node(&self.node) {
            out.push(hydrant_runtime::config::Invalid::new("node-id", e));
        }
        if let Err(e) = open(self) {
            out.push(hydrant_runtime::config::Invalid::new(
                "object-store",
                e.to_string(),
            ));
        }
        if self.sync.is_zero() {
            out.push(hydrant_runtime::config::Invalid::new(
                "object-sync",
                "must be more than 0".to_owned(),
            ));
        }
        out
    }
}

/// Checks a node name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
pub fn valid_node(node: &str) -> Result<(), String> {
    let ok = !node.is_empty()
        && node.len() <= 64
        && node != "."
        && node != ".."
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{node:?} is not a node name (1 to 64 of A-Z a-z 0-9 . _ -)"
        ))
    }
}

/// An opened object store, rooted at the URL's path.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The store, already under the URL's prefix.
    pub store: Arc<dyn ObjectStore>,
    /// This node.
    pub node: String,
}

fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: REQUEST_RETRIES,
        retry_timeout: REQUEST_TIMEOUT,
        ..object_store::RetryConfig::default()
    }
}

/// Opens the store `config.url` names (no request is made).
pub fn open(config: &Config) -> Result<Remote, Error> {
    use object_store::ObjectStoreScheme as Scheme;
    let url = url::Url::parse(&config.url)
        .map_err(|e| Error::Config(format!("{:?} is not a URL: {e}", config.url)))?;
    let (scheme, prefix) = Scheme::parse(&url).map_err(|e| {
        Error::Config(format!(
            "{e}: not supported (use s3://, gs://, az:// or file://)"
        ))
    })?;
    let bad = |e: object_store::Error| Error::Config(format!("{}: {e}", config.url));
    // A cloud store from its provider's environment, the URL, and the options on top.
    macro_rules! cloud {
        ($builder:ty) => {{
            let mut b = <$builder>::from_env()
                .with_url(config.url.clone())
                .with_retry(retry());
            for (k, v) in &config.options {
                b = b.with_config(k.to_ascii_lowercase().parse().map_err(bad)?, v);
            }
            Arc::new(b.build().map_err(bad)?)
        }};
    }
    let store: Arc<dyn ObjectStore> = match scheme {
        Scheme::Local => {
            let dir = url
                .to_file_path()
                .map_err(|()| Error::Config(format!("{:?} is not a local path", config.url)))?;
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(bad)?;
            return Ok(Remote {
                store: Arc::new(fs),
                node: config.node.clone(),
            });
        }
        Scheme::AmazonS3 => cloud!(object_store::aws::AmazonS3Builder),
        Scheme::GoogleCloudStorage => cloud!(object_store::gcp::GoogleCloudStorageBuilder),
        Scheme::MicrosoftAzure => cloud!(object_store::azure::MicrosoftAzureBuilder),
        other => {
            return Err(Error::Config(format!(
                "{:?}: {other:?} is not supported (use s3://, gs://, az:// or file://)",
                config.url
            )));
        }
    };
    let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
        store
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    };
    Ok(Remote {
        store,
        node: config.node.clone(),
    })
}

/// The directory of every node.
pub const NODES: &str = "nodes";

/// The key of `rel` (a `/`-separated path) under `node`.
pub fn key(node: &str, rel: &str) -> Key {
    Key::from(format!("{NODES}/{node}/{rel}"))
}

/// One catalog segment: ids `first..first + count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// First id.
    pub first: u64,
    /// Ids it holds.
    pub count: u64,
    /// Its key, relative to the node.
    pub key: String,
}

/// One published part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// `metrics` or `logs`.
    pub table: String,
    /// Its hour.
    pub hour: i64,
    /// Its sequence within the hour.
    pub seq: u64,
    /// Its size.
    pub bytes: u64,
    /// Its key, relative to the node (also its path under the data dir).
    pub key: String,
}

/// What a node has published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The node.
    pub node: String,
    /// Grows by one per publication.
    pub generation: u64,
    /// When it was written (ms).
    pub written_ms: i64,
    /// Catalog segments, in id order, without gaps.
    pub series: Vec<Segment>,
    /// Parts.
    pub parts: Vec<Published>,
}

impl Manifest {
    /// Series the segments cover.
    pub fn series_count(&self) -> u64 {
        self.series.last().map_or(0, |s| s.first + s.count)
    }

    /// Checks what a reader relies on: the format, the node it names, segments without
    /// gaps, and keys that stay inside the node's directory (a reader writes its downloads
    /// under the same relative paths).
    pub fn check(&self, key: &Key, node: &str) -> Result<(), Error> {
        let damaged = |message: String| Error::Damaged {
            key: key.to_string(),
            message,
        };
        if self.format != FORMAT {
            return Err(damaged(format!(
                "manifest format {} (this build reads {FORMAT})",
                self.format
            )));
        }
        if self.node != node {
            return Err(damaged(format!(
                "the manifest names node {:?}, not {node:?}",
                self.node
            )));
        }
        let mut next = 0u64;
        for s in &self.series {
            if s.first != next {
                return Err(damaged(format!(
                    "catalog segment {} starts at id {} where {next} was expected",
                    s.key, s.first
                )));
            }
            next = s
                .first
                .checked_add(s.count)
                .ok_or_else(|| damaged(format!("catalog segment {} is too long", s.key)))?;
            if !contained(&s.key, "series") {
                return Err(damaged(format!("catalog segment key {:?}", s.key)));
            }
        }
        for p in &self.parts {
            let table_ok =
                p.table == crate::store::parts::METRICS || p.table == crate::logs::store::LOGS;
            if !table_ok || !contained(&p.key, &p.table) {
                return Err(damaged(format!(
                    "part key {:?} of table {:?}",
                    p.key, p.table
                )));
            }
        }
        Ok(())
    }
}

/// Whether `rel` is a plain relative path under `dir`: `/`-separated components, none
/// empty, `.` or `..`, no backslash or NUL.
fn contained(rel: &str, dir: &str) -> bool {
    let Some(rest) = rel.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    rest.split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', '\0']))
}

/// The whole object `k`.
pub async fn get(store: &dyn ObjectStore, k: &Key) -> Result<bytes::Bytes, Error> {
    use object_store::ObjectStoreExt;
    let got = store.get(k).await.map_err(Error::object("get", k))?;
    got.bytes().await.map_err(Error::object("get", k))
}

/// Reads `node`'s manifest; `None` when it has published nothing.
pub async fn manifest(store: &dyn ObjectStore, node: &str) -> Result<Option<Manifest>, Error> {
    let k = key(node, "manifest.json");
    let bytes = match get(store, &k).await {
        Ok(bytes) => bytes,
        Err(e) if e.not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Damaged {
        key: k.to_string(),
        message: e.to_string(),
    })?;
    m.check(&k, node)?;
    Ok(Some(m))
}

#[cfg(test)]
mod tests;
