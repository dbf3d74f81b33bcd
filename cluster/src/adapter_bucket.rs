//! Adapters served from every node: a finished promotion's adapter files go to the
//! JetStream object store [`OBJECTS`], and each collection's registry (its versions
//! with every file's sha256, and the active version) to the key-value bucket
//! [`REGISTRY`], key = the collection. Every node watches the bucket: a version it
//! lacks is fetched from the object store (the object store checks its own digest,
//! and the file's sha256 is checked against the registry entry before anything is
//! installed), installed in the node's local registry under the same number, and
//! the active version is switched there, which is a hot swap (answers already
//! generating keep the adapter they started with).
//!
//! Who writes: the node that changed its local registry (the worker that finished a
//! promotion, or the node an admin asked to activate, roll back, deactivate or
//! delete) publishes the result, by compare-and-set on the entry's revision. The
//! published versions are the union of the entry's and the publisher's, less the
//! versions deleted ([`SharedAdapters::deleted`]), so a node that has not fetched a
//! version yet cannot drop it by publishing. An entry of an earlier incarnation of
//! the collection (deleted and made again) is replaced, not merged.
//!
//! A deleted collection: the node asked removes its entry and its objects
//! ([`forget`]); every node's follower sees the entry go and drops its own copies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, object_store, Context};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::{nats, Error, Node, Result};

/// The object store of adapter files, named `COLLECTION/INCARNATION/vNNNN/FILE`.
pub const OBJECTS: &str = "engram-adapters";
/// The registry bucket, keyed by collection.
pub const REGISTRY: &str = "engram-adapter-registry";
/// How often entries that could not be applied yet (the collection not yet
/// created here, a fetch that failed) are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Tries of a publish that loses its compare-and-set to another node's.
const PUBLISH_TRIES: u32 = 8;

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterFile {
    pub name: String,
    /// Hex sha256 of its bytes.
    pub sha256: String,
    pub size: u64,
}

/// One version: its number and files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedVersion {
    pub version: u32,
    pub files: Vec<AdapterFile>,
}

/// A collection's registry as shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedAdapters {
    /// The collection's incarnation the adapters were trained for.
    pub incarnation: u64,
    pub active: Option<u32>,
    /// Oldest first.
    pub versions: Vec<SharedVersion>,
    /// Versions deleted (every node removes its copy).
    #[serde(default)]
    pub deleted: Vec<u32>,
}

/// What a node does with the shared registry (the server's adapter store).
pub trait AdapterSink: Send + Sync + 'static {
    /// The versions this node holds of `collection` when it holds the collection as
    /// `incarnation`; None when it does not (yet): the entry is tried again later.
    fn held(&self, collection: &str, incarnation: u64) -> Option<Vec<u32>>;
    /// Installs `version` from the verified files in `dir`.
    fn install(
        &self,
        collection: &str,
        incarnation: u64,
        version: u32,
        dir: &Path,
    ) -> std::result::Result<(), String>;
    /// Makes `active` the active version (None: none) and removes `deleted`.
    fn settle(
        &self,
        collection: &str,
        active: Option<u32>,
        deleted: &[u32],
    ) -> std::result::Result<(), String>;
    /// The collection's shared registry was removed (the collection was deleted):
    /// drops this node's adapters of it unless they belong to the live collection.
    /// False while this node still holds the collection its adapters belong to (it
    /// has not applied the deletion yet): asked again later.
    fn forget(&self, collection: &str) -> std::result::Result<bool, String>;
}

/// A change of a collection's registry, as one publisher saw it.
#[derive(Debug, Clone)]
pub struct Change {
    pub collection: String,
    pub incarnation: u64,
    /// The publisher's versions with their directories.
    pub versions: Vec<(u32, PathBuf)>,
    pub active: Option<u32>,
    /// A version the publisher deleted.
    pub deleted: Option<u32>,
}

pub fn object_name(collection: &str, incarnation: u64, version: u32, file: &str) -> String {
    format!("{collection}/{incarnation}/v{version:04}/{file}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The regular files of a version directory, sorted, with their bytes.
fn read_version(dir: &Path) -> Result<Vec<(AdapterFile, Vec<u8>)>> {
    let io = |e: std::io::Error| Error::Config(format!("reading {}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(io)?;
        let file = AdapterFile {
            name: entry.file_name().to_string_lossy().into_owned(),
            sha256: sha256_hex(&bytes),
            size: bytes.len() as u64,
        };
        out.push((file, bytes));
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}

/// The entry after `change`, given the entry before (`previous`), and which
/// versions' files must be uploaded. Pure, so it is tested alone.
pub fn merged(
    previous: Option<&SharedAdapters>,
    change: &Change,
    local: &BTreeMap<u32, Vec<AdapterFile>>,
) -> (SharedAdapters, Vec<u32>) {
    let same_life = previous.filter(|p| p.incarnation == change.incarnation);
    let mut deleted: BTreeSet<u32> = same_life
        .map(|p| p.deleted.iter().copied().collect())
        .unwrap_or_default();
    deleted.extend(change.deleted);
    let mut versions: BTreeMap<u32, Vec<AdapterFile>> = same_life
        .map(|p| {
            let pairs = p.versions.iter().map(|v| (v.version, v.files.clone()));
            pairs.collect()
        })
        .unwrap_or_default();
    let mut upload = Vec::new();
    for (v, files) in local {
        if versions.get(v) != Some(files) {
            upload.push(*v);
            versions.insert(*v, files.clone());
        }
    }
    versions.retain(|v, _| !deleted.contains(v));
    let entry = SharedAdapters {
        incarnation: change.incarnation,
        active: change.active,
        versions: versions
            .into_iter()
            .map(|(version, files)| SharedVersion { version, files })
            .collect(),
        deleted: deleted.into_iter().collect(),
    };
    (entry, upload)
}

async fn registry(js: &Context, replicas: usize) -> Result<kv::Store> {
    js.create_key_value(kv::Config {
        bucket: REGISTRY.to_string(),
        history: 1,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(nats)
}

async fn objects(js: &Context, replicas: usize) -> Result<object_store::ObjectStore> {
    crate::object_bucket(js, OBJECTS, "Engram adapters' files", replicas).await
}

/// The files of `change`'s versions, with their bytes, by version (blocking).
pub fn read_change(change: &Change) -> Result<VersionFiles> {
    change
        .versions
        .iter()
        .map(|(v, dir)| Ok((*v, read_version(dir)?)))
        .collect()
}

/// Version -> its files with their bytes.
pub type VersionFiles = BTreeMap<u32, Vec<(AdapterFile, Vec<u8>)>>;

/// Uploads what `change` adds and writes the merged entry (compare-and-set);
/// `bytes` is [`read_change`]'s.
pub async fn publish(
    js: &Context,
    replicas: usize,
    change: &Change,
    bytes: &VersionFiles,
) -> Result<SharedAdapters> {
    let kv = registry(js, replicas).await?;
    let store = objects(js, replicas).await?;
    let local: BTreeMap<u32, Vec<AdapterFile>> = bytes
        .iter()
        .map(|(v, files)| (*v, files.iter().map(|(f, _)| f.clone()).collect()))
        .collect();
    let mut last = String::new();
    for _ in 0..PUBLISH_TRIES {
        let entry = kv.entry(&change.collection).await.map_err(nats)?;
        let previous: Option<SharedAdapters> = entry
            .as_ref()
            .filter(|e| !e.value.is_empty())
            .and_then(|e| serde_json::from_slice(&e.value).ok());
        let (shared, upload) = merged(previous.as_ref(), change, &local);
        for v in upload {
            for (file, data) in &bytes[&v] {
                let name = object_name(&change.collection, change.incarnation, v, &file.name);
                store
                    .put(name.as_str(), &mut data.as_slice())
                    .await
                    .map_err(nats)?;
            }
        }
        let value = serde_json::to_vec(&shared).expect("entries serialise");
        let written = match &entry {
            None => kv
                .create(&change.collection, value.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some(e) => kv
                .update(&change.collection, value.into(), e.revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        match written {
            Ok(()) => return Ok(shared),
            Err(e) => last = e,
        }
    }
    Err(Error::Conflict(format!(
        "the adapter registry of '{}' kept changing under this node: {last}",
        change.collection
    )))
}

/// Fetches one version's files into `dir`, each checked against its sha256.
async fn fetch(
    store: &object_store::ObjectStore,
    collection: &str,
    incarnation: u64,
    version: &SharedVersion,
    dir: &Path,
) -> Result<()> {
    for file in &version.files {
        let name = object_name(collection, incarnation, version.version, &file.name);
        let mut object = store.get(name.as_str()).await.map_err(nats)?;
        let mut data = Vec::with_capacity(file.size as usize);
        // The object store checks its own digest at the end of the read.
        object.read_to_end(&mut data).await.map_err(nats)?;
        let got = sha256_hex(&data);
        if got != file.sha256 || data.len() as u64 != file.size {
            return Err(Error::Nats(format!(
                "{name}: sha256 {got} ({} bytes), the registry says {} ({} bytes)",
                data.len(),
                file.sha256,
                file.size
            )));
        }
        let path = dir.join(&file.name);
        tokio::fs::write(&path, &data)
            .await
            .map_err(|e| Error::Config(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Removes what is shared of `collection` as `incarnation` (deleted): its registry
/// entry, unless it already belongs to a later incarnation (deleted and made again
/// meanwhile), and its objects. Every node's follower then drops its own copies
/// ([`AdapterSink::forget`]). Returns the objects removed.
pub async fn forget(
    js: &Context,
    replicas: usize,
    collection: &str,
    incarnation: u64,
) -> Result<usize> {
    let kv = registry(js, replicas).await?;
    if let Some(entry) = kv.entry(collection).await.map_err(nats)? {
        let shared: Option<SharedAdapters> = serde_json::from_slice(&entry.value).ok();
        if shared.is_some_and(|s| s.incarnation == incarnation) {
            // By revision: a publish of a new incarnation in between is kept.
            if let Err(e) = kv
                .purge_expect_revision(collection, Some(entry.revision))
                .await
            {
                tracing::info!(collection, error = %e, "the adapter registry entry changed meanwhile; kept");
            }
        }
    }
    let store = objects(js, replicas).await?;
    let prefix = format!("{collection}/{incarnation}/");
    let mut list = store.list().await.map_err(nats)?;
    let mut doomed = Vec::new();
    while let Some(info) = list.next().await {
        let info = info.map_err(nats)?;
        if info.name.starts_with(&prefix) && !info.deleted {
            doomed.push(info.name);
        }
    }
    for name in &doomed {
        store.delete(name.as_str()).await.map_err(nats)?;
    }
    Ok(doomed.len())
}

/// Runs blocking `f` (the sink reads and writes files, loads adapters) off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(nats)
}

/// Brings this node's registry of `collection` to `shared`; false when it cannot
/// yet (the node does not hold the collection as that incarnation).
async fn apply(
    store: &object_store::ObjectStore,
    sink: &Arc<dyn AdapterSink>,
    collection: &str,
    shared: &SharedAdapters,
) -> Result<bool> {
    let (name, incarnation) = (collection.to_string(), shared.incarnation);
    let held = {
        let (sink, name) = (sink.clone(), name.clone());
        blocking(move || sink.held(&name, incarnation)).await?
    };
    let Some(held) = held else {
        return Ok(false);
    };
    for version in shared
        .versions
        .iter()
        .filter(|v| !held.contains(&v.version))
    {
        let tmp = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        fetch(store, collection, incarnation, version, tmp.path()).await?;
        let (sink, name, v) = (sink.clone(), name.clone(), version.version);
        let dir = tmp.path().to_path_buf();
        blocking(move || sink.install(&name, incarnation, v, &dir))
            .await?
            .map_err(Error::Config)?;
        tracing::info!(collection, version = v, "fetched a shared adapter version");
    }
    let (sink, active, deleted) = (sink.clone(), shared.active, shared.deleted.clone());
    blocking(move || sink.settle(&name, active, &deleted))
        .await?
        .map_err(Error::Config)?;
    Ok(true)
}

/// Follows the registry bucket for as long as the node runs.
pub async fn follow(js: Context, replicas: usize, sink: Arc<dyn AdapterSink>) {
    loop {
        if let Err(e) = follow_once(&js, replicas, &sink).await {
            tracing::warn!(error = %e, "following the adapter registry stopped; resuming");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(js: &Context, replicas: usize, sink: &Arc<dyn AdapterSink>) -> Result<()> {
    let kv = registry(js, replicas).await?;
    let store = objects(js, replicas).await?;
    // Every key's last entry first, then each change.
    let mut watch = kv.watch_with_history(">").await.map_err(nats)?;
    let mut pending: BTreeMap<String, SharedAdapters> = BTreeMap::new();
    // Collections whose entry was removed (deleted), to forget here.
    let mut gone: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            entry = watch.next() => {
                let Some(entry) = entry else {
                    return Err(Error::Nats("the registry watch ended".into()));
                };
                let entry = entry.map_err(nats)?;
                pending.remove(&entry.key);
                gone.remove(&entry.key);
                if entry.operation != kv::Operation::Put {
                    gone.insert(entry.key.clone());
                } else if let Ok(shared) = serde_json::from_slice::<SharedAdapters>(&entry.value) {
                    pending.insert(entry.key.clone(), shared);
                }
            }
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
        for name in gone.clone() {
            let sink = sink.clone();
            let forgot = {
                let name = name.clone();
                blocking(move || sink.forget(&name)).await?
            };
            match forgot {
                Ok(true) => {
                    gone.remove(&name);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(collection = %name, error = %e, "cannot drop a deleted collection's adapters; retrying")
                }
            }
        }
        let names: Vec<String> = pending.keys().cloned().collect();
        for name in names {
            match apply(&store, sink, &name, &pending[&name]).await {
                Ok(true) => {
                    pending.remove(&name);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(collection = %name, error = %e, "cannot apply the shared adapter registry; retrying")
                }
            }
        }
    }
}

impl Node {
    /// Starts following the shared registry into `sink`.
    pub fn serve_adapters(&self, sink: Arc<dyn AdapterSink>) {
        self.handle()
            .spawn(follow(self.js.clone(), self.config.replicas(), sink));
    }

    /// Removes what is shared of a deleted collection (see [`forget`]); from a
    /// blocking thread.
    pub fn forget_adapters(&self, collection: &str, incarnation: u64) -> Result<usize> {
        self.handle().block_on(forget(
            &self.js,
            self.config.replicas(),
            collection,
            incarnation,
        ))
    }

    /// Publishes `change` (see [`publish`]); from a blocking thread.
    pub fn publish_adapters(&self, change: &Change) -> Result<SharedAdapters> {
        let bytes = read_change(change)?;
        self.handle()
            .block_on(publish(&self.js, self.config.replicas(), change, &bytes))
    }
}

#[cfg(test)]
#[path = "adapter_bucket_tests.rs"]
mod tests;
