//! The adapters of this database's collections, one room: where they live (the
//! generator's registry of versions under `<data>/adapters`, beside the RocksDB files)
//! and the operations the API offers on them (list, activate, rollback, deactivate,
//! delete). Swaps are hot: answers already generating keep the adapter they started
//! with (the registry hands out `Arc`s), the next answer gets the new one.
//!
//! Why the registry opens lazily: it checks adapters against the base model's shape
//! and fingerprint, which means reading the model file. A database whose collections
//! were never promoted should not fetch or read a language model to answer a query,
//! so the registry is opened on the first operation that touches a promoted
//! collection.
//!
//! Why an incarnation file: a collection's adapters live beside RocksDB, not in it,
//! so a delete cannot remove both atomically, and a promotion can finish after its
//! collection was deleted and created again. `<collection>/incarnation` names the
//! collection (its [`incarnation`](engram_store::collection::CollectionConfig::incarnation))
//! the adapters belong to: a finished promotion writes it after checking its collection
//! is still the one it trained for, answers serve only adapters that carry it, the
//! admin operations see only those of the live incarnation, and at start-up and at
//! creation adapters of another incarnation (or of no live collection: a crash between
//! the delete's commit and their removal) are removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engram_generator::{AdapterRegistry, AdapterVersion, GgufChatModel, LoraAdapter};
use serde::Serialize;

use super::staleness::Staleness;
use super::Engine;
use crate::answer::AdapterSource;
use crate::api_types::{ActiveAdapter, AdapterRef, CollectionView};
use crate::error::{Error, Result};

/// A version as listed: the registry's record and how current its knowledge is.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterEntry {
    #[serde(flatten)]
    pub version: AdapterVersion,
    /// Learned documents written or deleted since (None: its promotion recorded no
    /// write sequences).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness: Option<Staleness>,
}

/// The file in a collection's adapter directory naming its incarnation.
const INCARNATION_FILE: &str = "incarnation";

/// Where a database's adapters live, and its registry once opened.
pub struct AdapterStore {
    root: PathBuf,
    registry: Mutex<Option<Arc<AdapterRegistry>>>,
}

impl AdapterStore {
    /// The store rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            registry: Mutex::new(None),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The registry for the default language model, opened on first use.
    pub fn registry(&self) -> Result<Arc<AdapterRegistry>> {
        let mut slot = self.registry.lock().expect("lock");
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let model = GgufChatModel::default_path()?;
        let registry = Arc::new(AdapterRegistry::open_for_model(&self.root, &model)?);
        *slot = Some(registry.clone());
        Ok(registry)
    }

    /// The incarnation `collection`'s adapters belong to (None: no adapters, or
    /// ones no finished promotion of a live collection claimed).
    pub(super) fn owner(&self, collection: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.root.join(collection).join(INCARNATION_FILE));
        text.ok()?.trim().parse().ok()
    }

    /// True when `collection` has adapters of incarnation `incarnation`.
    pub fn promoted(&self, collection: &str, incarnation: u64) -> bool {
        self.owner(collection) == Some(incarnation)
    }

    /// Ties `collection`'s adapter directory to `incarnation` (called with the
    /// collection's writes held, after checking it is that incarnation).
    pub fn bind(&self, collection: &str, incarnation: u64) -> Result<()> {
        let dir = self.root.join(collection);
        std::fs::create_dir_all(&dir)?;
        // Written aside and renamed over, so a crash leaves the old file or the new.
        let tmp = dir.join(format!(".{INCARNATION_FILE}.tmp"));
        std::fs::write(&tmp, incarnation.to_string())?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(INCARNATION_FILE))?;
        Ok(())
    }

    /// Removes adapters that do not belong to the live collection of their name:
    /// `live` maps every collection to its incarnation. Directories without an
    /// incarnation file are adopted by the collections in `adopt` (those stored
    /// before incarnations existed, whose adapters were made before too), removed
    /// otherwise (a promotion registered them and did not finish).
    pub fn sweep(&self, live: &HashMap<String, u64>, adopt: &HashSet<String>) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(&incarnation) = live.get(&name) {
                self.keep_only(&name, incarnation, adopt.contains(&name))?;
            } else if !name.starts_with('.') {
                tracing::warn!(collection = %name, "removing the adapters of a deleted collection");
                self.forget(&name)?;
            }
        }
        Ok(())
    }

    /// Removes `collection`'s adapters unless they belong to `incarnation` (or carry
    /// no incarnation and `adopt` is set: then they are tied to it).
    pub fn keep_only(&self, collection: &str, incarnation: u64, adopt: bool) -> Result<()> {
        if !self.root.join(collection).is_dir() {
            return Ok(());
        }
        match self.owner(collection) {
            Some(owner) if owner == incarnation => Ok(()),
            None if adopt => self.bind(collection, incarnation),
            _ => {
                tracing::warn!(
                    collection,
                    "removing adapters of an earlier collection of this name"
                );
                self.forget(collection)
            }
        }
    }

    /// The versions of `collection` as incarnation `incarnation`, oldest first
    /// (empty when it has none).
    pub fn list(&self, collection: &str, incarnation: u64) -> Result<Vec<AdapterVersion>> {
        if !self.promoted(collection, incarnation) {
            return Ok(Vec::new());
        }
        Ok(self.registry()?.list(collection)?)
    }

    /// Drops every version of a deleted collection, so that a new collection of the
    /// same name does not inherit its adapter.
    pub fn forget(&self, collection: &str) -> Result<()> {
        if !self.root.join(collection).is_dir() {
            return Ok(());
        }
        if let Some(r) = self.registry.lock().expect("lock").as_ref() {
            r.deactivate(collection)?;
        }
        std::fs::remove_dir_all(self.root.join(collection))?;
        Ok(())
    }
}

impl AdapterSource for AdapterStore {
    fn active(&self, collection: &str) -> Option<(AdapterRef, Arc<LoraAdapter>)> {
        // Only adapters a finished promotion claimed (see the module comment).
        self.owner(collection)?;
        let lookup = || -> Result<Option<(AdapterRef, Arc<LoraAdapter>)>> {
            let active = self.registry()?.active_with_version(collection)?;
            Ok(active.map(|(version, adapter)| {
                let name = collection.to_string();
                (AdapterRef { name, version }, adapter)
            }))
        };
        lookup().unwrap_or_else(|e| {
            tracing::error!(collection, error = %e, "cannot load the active adapter; answering without it");
            None
        })
    }

    fn learned(&self, collection: &str, version: u32) -> BTreeMap<String, u64> {
        let manifest = self
            .registry()
            .and_then(|r| Ok(r.manifest(collection, version)?));
        manifest.map(|m| m.document_seqs).unwrap_or_else(|e| {
            tracing::error!(collection, version, error = %e, "cannot read the adapter's manifest; its staleness is unknown");
            BTreeMap::new()
        })
    }
}

impl Engine {
    pub(super) fn adapter_store(&self) -> Result<&AdapterStore> {
        self.adapters().map(|a| a.as_ref()).ok_or_else(|| {
            Error::invalid(
                "adapters",
                "this database was opened without an adapter store",
            )
        })
    }

    /// The collection's adapter versions, oldest first, each with its staleness.
    pub fn adapter_versions(&self, name: &str) -> Result<Vec<AdapterEntry>> {
        let incarnation = self.store().incarnation(name)?;
        let versions = self.adapter_store()?.list(name, incarnation)?;
        versions
            .into_iter()
            .map(|version| {
                let staleness = match &version.manifest {
                    Some(m) => self.staleness(name, &m.document_seqs)?,
                    None => None,
                };
                Ok(AdapterEntry { version, staleness })
            })
            .collect()
    }

    /// The collection's info (`GET /collections/{name}`) with its active adapter
    /// and that adapter's staleness. A collection never promoted reads no adapter
    /// files and loads no model.
    pub fn collection_view(&self, name: &str) -> Result<CollectionView> {
        let mut info = self.store().collection_info_all_shards(name)?;
        self.queued_context_build(&mut info)?;
        let promoted = self
            .adapters()
            .is_some_and(|a| a.promoted(name, info.config.incarnation));
        let adapter = if promoted {
            self.adapter_versions(name)?
                .into_iter()
                .find(|v| v.version.active)
                .map(|v| ActiveAdapter {
                    version: v.version.version,
                    staleness: v.staleness,
                })
        } else {
            None
        };
        Ok(CollectionView { info, adapter })
    }

    /// The registry for an operation on `name`'s adapters, or None when the live
    /// collection has none (never promoted, or only an earlier one of its name was).
    pub(super) fn registry_of(&self, name: &str) -> Result<Option<Arc<AdapterRegistry>>> {
        let incarnation = self.store().incarnation(name)?;
        let store = self.adapter_store()?;
        if !store.promoted(name, incarnation) {
            return Ok(None);
        }
        Ok(Some(store.registry()?))
    }

    /// The error for a version of a collection that has no adapters at all.
    fn no_adapters(name: &str, what: String) -> Error {
        Error::Adapter(engram_generator::RegistryError::NotFound {
            collection: name.to_string(),
            what,
        })
    }

    /// Makes `version` the one `weights` answers use (the gate's verdict is advisory
    /// here: an admin activating by hand has seen it).
    pub fn activate_adapter(&self, name: &str, version: u32) -> Result<Vec<AdapterEntry>> {
        let registry = self
            .registry_of(name)?
            .ok_or_else(|| Self::no_adapters(name, format!("version {version}")))?;
        registry.activate(name, version)?;
        self.share_adapters(name, None)?;
        self.adapter_versions(name)
    }

    /// Goes back to the previously active version (or none).
    pub fn rollback_adapter(&self, name: &str) -> Result<Vec<AdapterEntry>> {
        let registry = self.registry_of(name)?.ok_or_else(|| {
            Self::no_adapters(name, "earlier active version to roll back to".into())
        })?;
        registry.rollback(name)?;
        self.share_adapters(name, None)?;
        self.adapter_versions(name)
    }

    /// Stops using adapters for the collection (answers fall back to rag in auto
    /// mode); with no adapters there is nothing to stop, and the answer is the
    /// empty list.
    pub fn deactivate_adapter(&self, name: &str) -> Result<Vec<AdapterEntry>> {
        if let Some(registry) = self.registry_of(name)? {
            registry.deactivate(name)?;
            self.share_adapters(name, None)?;
        }
        self.adapter_versions(name)
    }

    /// Deletes a version (refused for the active one: deactivate or activate another first).
    pub fn delete_adapter(&self, name: &str, version: u32) -> Result<Vec<AdapterEntry>> {
        let registry = self
            .registry_of(name)?
            .ok_or_else(|| Self::no_adapters(name, format!("version {version}")))?;
        registry.delete(name, version)?;
        self.share_adapters(name, Some(version))?;
        self.adapter_versions(name)
    }

    /// Ties the adapters a promotion of `name` (as incarnation `incarnation`) made to
    /// it, if the collection is still that incarnation; otherwise (deleted, or
    /// deleted and created again while it trained) removes them and says so.
    pub(super) fn claim_adapters(&self, name: &str, incarnation: u64) -> Result<()> {
        let store = self.adapter_store()?;
        if let Ok(coll) = self.store().collection(name) {
            // Held writes keep a delete from slipping between the check and the bind.
            let _writes = coll.lock_writes();
            if !coll.is_deleted() && coll.incarnation() == incarnation {
                // Nothing registered (the promotion failed early): nothing to tie.
                if !store.root().join(name).is_dir() {
                    return Ok(());
                }
                return store.bind(name, incarnation);
            }
        }
        // Adapters of the live incarnation (if any) carry its file; only what this
        // promotion registered lacks one.
        if store.owner(name).is_none() {
            store.forget(name)?;
        }
        Err(engram_store::Error::CollectionNotFound(name.to_string()).into())
    }
}

#[cfg(test)]
#[path = "adapters_tests.rs"]
mod tests;
