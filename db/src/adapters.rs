//! The adapters of this database's collections: the trainer's registry (versions,
//! activate, rollback, delete) kept beside the RocksDB files under `<data>/adapters`.
//!
//! Why lazily: the registry checks adapters against the base model's shape and
//! fingerprint, which means reading the model file. A database whose collections were
//! never promoted should not fetch or read a language model to answer a query, so the
//! registry is opened on the first operation that touches a promoted collection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engram_generator::{GgufChatModel, LoraAdapter};
use engram_trainer::{AdapterRegistry, AdapterVersion};

use crate::answer::AdapterSource;
use crate::api_types::AdapterRef;
use crate::error::Result;

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
