//! The service layer: the store plus what an application adds around it (the
//! language model of answers, the adapters, the audit and promotion jobs). The
//! REST handlers and the CLI call this; it has no transport in it either.
//! Blocking by design; the server runs it on tokio's blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use engram_store::Store;

use crate::error::Result;
use crate::limits::Limits;

pub mod adapters;
mod audit;
mod backup;
mod cluster;
mod promote;
mod promote_continue;
mod promote_request;
mod queued;
pub mod staleness;
mod traffic;

pub use audit::AuditStatus;
pub use backup::{restore, Restored};
pub use promote::{PairInput, PromoteRequest, PromotionPlan, PromotionStatus, QuestionInput};

/// The application's state: the store, the model slot, adapters and jobs.
pub struct Engine {
    store: Arc<Store>,
    /// The language model of answers, loaded on first use.
    model: crate::answer::ModelSlot,
    /// Where the database lives (RocksDB files, `adapters/`, `promotions/`).
    dir: std::path::PathBuf,
    /// Adapters per collection (`<dir>/adapters`; the registry opens on first use).
    adapters: Option<Arc<adapters::AdapterStore>>,
    audits: audit::AuditJobs,
    promotions: promote::PromotionJobs,
    /// Cluster mode: the node promotions are queued through and adapters shared by
    /// (`cluster.rs`); unset on one machine.
    cluster: std::sync::OnceLock<Arc<engram_cluster::Node>>,
}

impl Engine {
    /// Opens (or creates) the database in `dir` with the real encoders.
    pub fn open(dir: &Path, limits: Limits) -> Result<Self> {
        Ok(Self::new(Store::open(dir, limits)?, dir))
    }

    /// The application around an open store whose files are in `dir` (adapters and
    /// promotions live beside them).
    pub fn new(store: Store, dir: &Path) -> Self {
        let audits = audit::AuditJobs::new(store.storage().clone());
        let promotions = promote::PromotionJobs::new(store.storage().clone());
        let engine = Engine {
            store: Arc::new(store),
            model: crate::answer::ModelSlot::smollm2(),
            dir: dir.to_path_buf(),
            adapters: Some(Arc::new(adapters::AdapterStore::new(dir.join("adapters")))),
            audits,
            promotions,
            cluster: std::sync::OnceLock::new(),
        };
        engine.sweep_adapters();
        engine
    }

    /// Removes adapters no live collection owns (see `adapters`): left by a crash
    /// between a delete's commit and their removal, or by a promotion that did not
    /// finish. Logged, never fatal: answers only serve adapters of live collections.
    fn sweep_adapters(&self) {
        let Some(store) = &self.adapters else { return };
        let live: HashMap<String, u64> = self
            .store
            .list_collections()
            .into_iter()
            .map(|c| (c.config.name, c.config.incarnation))
            .collect();
        let adopt: HashSet<String> = self.store.migrated().iter().cloned().collect();
        if let Err(e) = store.sweep(&live, &adopt) {
            tracing::error!(error = %e, "cannot sweep the adapters of deleted collections");
        }
    }

    /// Creates a collection (see `Store::create_collection`). A new one starts
    /// without adapters, whatever an earlier collection of its name left behind.
    pub fn create_collection(
        &self,
        name: &str,
        req: engram_store::api::CreateCollection,
    ) -> Result<engram_store::api::CollectionInfo> {
        let existed = self.store.collection(name).is_ok();
        let info = self.store.create_collection(name, req)?;
        if let (false, Some(store)) = (existed, &self.adapters) {
            store.keep_only(name, info.config.incarnation, false)?;
        }
        Ok(info)
    }

    /// The store: collections, documents, queries, embeddings.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn limits(&self) -> &Limits {
        self.store.limits()
    }

    /// Replaces the language model (tests use tiny ones; the default is SmolLM2).
    pub fn with_language_model(mut self, slot: crate::answer::ModelSlot) -> Self {
        self.model = slot;
        self
    }

    /// Where `weights` and `auto` answers find adapters (default `<dir>/adapters`).
    pub fn with_adapters(mut self, adapters: Arc<adapters::AdapterStore>) -> Self {
        self.adapters = Some(adapters);
        self.sweep_adapters();
        self
    }

    pub(crate) fn model_slot(&self) -> &crate::answer::ModelSlot {
        &self.model
    }

    pub(crate) fn adapters(&self) -> Option<&Arc<adapters::AdapterStore>> {
        self.adapters.as_ref()
    }

    /// Deletes a collection with everything derived from it: its records, its
    /// adapters and its promotions' files, so a new one of the same name starts bare.
    /// In cluster mode also what the cluster shares of it (`cluster.rs`).
    pub fn delete_collection(&self, name: &str) -> Result<()> {
        let incarnation = self.store.incarnation(name)?;
        self.store.delete_collection(name)?;
        self.forget_shared(name, incarnation);
        if let Some(store) = &self.adapters {
            store.forget(name)?;
        }
        self.remove_promotion_files(name)
    }

    /// Removes a deleted collection's promotion files (checkpoints, journals).
    pub(super) fn remove_promotion_files(&self, name: &str) -> Result<()> {
        match std::fs::remove_dir_all(self.promotions_dir(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// A consistent backup of the whole database into `dir` (which must not exist):
    /// the store's checkpoint and the adapters and promotions beside it, since a
    /// restore moves the whole directory back (`restore`).
    pub fn backup(&self, dir: &Path) -> Result<()> {
        self.store.backup(dir)?;
        let [adapters, promotions] = backup::APP_DIRS;
        if let Some(store) = &self.adapters {
            if store.root().is_dir() {
                backup::copy_tree(store.root(), &dir.join(adapters))?;
            }
        }
        let runs = self.dir.join(promotions);
        if runs.is_dir() {
            backup::copy_tree(&runs, &dir.join(promotions))?;
        }
        Ok(())
    }
}

/// An engine whose encoders all fail to load, for the tests of everything but
/// embedding (no model is fetched or read).
#[cfg(test)]
pub(crate) fn engine_without_models(dir: &Path) -> Engine {
    let no_models: Box<engram_store::EncoderLoader> =
        Box::new(|name| Err(engram_embedder::Error::UnsupportedModel(name.to_string())));
    let store = Store::open_with_loader(dir, Limits::default(), no_models).unwrap();
    Engine::new(store, dir)
}

#[cfg(test)]
mod tests {
    use crate::engine::engine_without_models as engine;

    #[test]
    fn backups_carry_the_adapters() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&dir.path().join("data"));
        let v1 = dir.path().join("data/adapters/docs/v0001");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("adapter_config.json"), "{}").unwrap();
        let backup = dir.path().join("backup");
        e.backup(&backup).unwrap();
        let copied = backup.join("adapters/docs/v0001/adapter_config.json");
        assert_eq!(std::fs::read_to_string(copied).unwrap(), "{}");
        assert!(
            e.backup(&backup).is_err(),
            "an existing directory is refused"
        );
    }
}
