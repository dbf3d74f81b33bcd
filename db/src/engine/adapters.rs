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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engram_generator::{AdapterRegistry, AdapterVersion, GgufChatModel, LoraAdapter};

use super::Engine;
use crate::answer::AdapterSource;
use crate::api_types::AdapterRef;
use crate::error::{Error, Result};

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

    /// True once a version of `collection` was ever registered.
    fn promoted(&self, collection: &str) -> bool {
        self.root.join(collection).is_dir()
    }

    /// The collection's versions, oldest first (empty when never promoted).
    pub fn list(&self, collection: &str) -> Result<Vec<AdapterVersion>> {
        if !self.promoted(collection) {
            return Ok(Vec::new());
        }
        Ok(self.registry()?.list(collection)?)
    }

    /// Drops every version of a deleted collection, so that a new collection of the
    /// same name does not inherit its adapter.
    pub fn forget(&self, collection: &str) -> Result<()> {
        if !self.promoted(collection) {
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
        if !self.promoted(collection) {
            return None;
        }
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

    /// The collection's adapter versions, oldest first.
    pub fn adapter_versions(&self, name: &str) -> Result<Vec<AdapterVersion>> {
        self.store().collection(name)?;
        self.adapter_store()?.list(name)
    }

    /// Makes `version` the one `weights` answers use (the gate's verdict is advisory
    /// here: an admin activating by hand has seen it).
    pub fn activate_adapter(&self, name: &str, version: u32) -> Result<Vec<AdapterVersion>> {
        self.store().collection(name)?;
        self.adapter_store()?.registry()?.activate(name, version)?;
        self.adapter_versions(name)
    }

    /// Goes back to the previously active version (or none).
    pub fn rollback_adapter(&self, name: &str) -> Result<Vec<AdapterVersion>> {
        self.store().collection(name)?;
        self.adapter_store()?.registry()?.rollback(name)?;
        self.adapter_versions(name)
    }

    /// Stops using adapters for the collection (answers fall back to rag in auto mode).
    pub fn deactivate_adapter(&self, name: &str) -> Result<Vec<AdapterVersion>> {
        self.store().collection(name)?;
        self.adapter_store()?.registry()?.deactivate(name)?;
        self.adapter_versions(name)
    }

    /// Deletes a version (refused for the active one: deactivate or activate another first).
    pub fn delete_adapter(&self, name: &str, version: u32) -> Result<Vec<AdapterVersion>> {
        self.store().collection(name)?;
        self.adapter_store()?.registry()?.delete(name, version)?;
        self.adapter_versions(name)
    }
}
