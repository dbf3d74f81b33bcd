//! The adapter registry as the API sees it: a collection's versions, activate,
//! rollback, delete. Swaps are hot: answers already generating keep the adapter they
//! started with (the registry hands out `Arc`s), the next answer gets the new one.

use engram_trainer::AdapterVersion;

use super::Engine;
use crate::error::{Error, Result};

impl Engine {
    pub(super) fn adapter_store(&self) -> Result<&crate::adapters::AdapterStore> {
        self.adapters().map(|a| a.as_ref()).ok_or_else(|| {
            Error::invalid(
                "adapters",
                "this database was opened without an adapter store",
            )
        })
    }

    /// The collection's adapter versions, oldest first.
    pub fn adapter_versions(&self, name: &str) -> Result<Vec<AdapterVersion>> {
        self.collection(name)?;
        self.adapter_store()?.list(name)
    }

    /// Makes `version` the one `weights` answers use (the gate's verdict is advisory
    /// here: an admin activating by hand has seen it).
    pub fn activate_adapter(&self, name: &str, version: u32) -> Result<Vec<AdapterVersion>> {
        self.collection(name)?;
        self.adapter_store()?.registry()?.activate(name, version)?;
        self.adapter_versions(name)
    }

    /// Goes back to the previously active version (or none).
    pub fn rollback_adapter(&self, name: &str) -> Result<Vec<AdapterVersion>> {
        self.collection(name)?;
        self.adapter_store()?.registry()?.rollback(name)?;
        self.adapter_versions(name)
    }

    /// Stops using adapters for the collection (answers fall back to rag in auto mode).
    pub fn deactivate_adapter(&self, name: &str) -> Result<Vec<AdapterVersion>> {
        self.collection(name)?;
        self.adapter_store()?.registry()?.deactivate(name)?;
        self.adapter_versions(name)
    }

    /// Deletes a version (refused for the active one: deactivate or activate another first).
    pub fn delete_adapter(&self, name: &str, version: u32) -> Result<Vec<AdapterVersion>> {
        self.collection(name)?;
        self.adapter_store()?.registry()?.delete(name, version)?;
        self.adapter_versions(name)
    }
}
