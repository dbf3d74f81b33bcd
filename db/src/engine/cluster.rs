//! The engine in cluster mode: heavy jobs go on the cluster's work queue
//! (`queued.rs`: one node runs each, another takes it over if that node dies), and
//! adapters are shared through the registry bucket and object store, so an activated
//! adapter serves from every node (`engram_cluster::adapter_bucket`). A deleted
//! collection's shared state (job records, registry entry, adapter objects) is
//! removed by the node asked; every other node drops its copies when it sees the
//! registry entry go. On one machine (no node joined) every function here does
//! nothing, and jobs run as before.
//!
//! A contextual collection's context builds are queued too: the node that runs one
//! fits the context and publishes it to the replicated log, and every node installs
//! it as it applies the log (`engram_store::store::contexts`).
//!
//! Resuming a redelivered promotion: its id is the one queued, so its files are
//! `promotions/<collection>/<id>` on whichever node runs it. The same node (restarted)
//! resumes from its synthetic-data journal and last checkpoint; another node does not
//! have them and starts over.

use std::path::Path;
use std::sync::Arc;

use engram_cluster::adapter_bucket::{AdapterSink, Change};
use engram_cluster::work_queue::QueuedJob;
use engram_cluster::Node;
use engram_store::api::CollectionInfo;
use engram_store::jobs::{JobKind, Jobs};
use engram_store::{ContextBuild, ContextQueue, ContextRequest};

use super::promote::{PromoteRequest, PromotionStatus};
use super::queued::{cluster_error, Queued, Worker};
use super::Engine;
use crate::error::{Error, Result};

impl Engine {
    /// Joins the cluster: queued jobs run here too, and the shared adapters are
    /// followed into this node's registry.
    pub fn join_cluster(self: &Arc<Self>, node: Arc<Node>) {
        if self.cluster.set(node.clone()).is_err() {
            return;
        }
        self.store()
            .set_context_queue(Arc::new(QueueContexts(node.clone())));
        node.serve_jobs(Arc::new(Worker(self.clone())));
        node.serve_adapters(Arc::new(Follower(self.clone())));
    }

    pub(super) fn cluster_node(&self) -> Option<&Arc<Node>> {
        self.cluster.get()
    }

    /// Starts (on one machine) or queues (in cluster mode) a build of `name`'s
    /// corpus context; the collection's info with the build as the cluster lists it.
    pub fn recontextualize(&self, name: &str) -> Result<CollectionInfo> {
        let mut info = self.store().recontextualize(name)?;
        self.queued_context_build(&mut info)?;
        Ok(info)
    }

    /// Cluster mode: puts the latest context build the work queue lists (any node's)
    /// in `info`, over this node's own records.
    pub(super) fn queued_context_build(&self, info: &mut CollectionInfo) -> Result<()> {
        let Some(context) = info.corpus_context.as_mut() else {
            return Ok(());
        };
        if self.cluster_node().is_none() {
            return Ok(());
        }
        let name = &info.config.name;
        let mut builds = self.store().context_jobs().list(name)?;
        self.merge_queued(name, &mut builds)?;
        builds.sort_by_key(|b| (b.job.created_unix, b.job.created_ms));
        if let Some(latest) = builds.pop() {
            context.job = Some(latest);
        }
        Ok(())
    }

    /// Cluster mode: publishes `name`'s registry as this node has it (after a
    /// promotion or an admin's change; `deleted`: the version just deleted).
    pub(super) fn share_adapters(&self, name: &str, deleted: Option<u32>) -> Result<()> {
        let Some(node) = self.cluster_node() else {
            return Ok(());
        };
        let Some(registry) = self.registry_of(name)? else {
            return Ok(());
        };
        let versions = registry.list(name)?;
        let change = Change {
            collection: name.to_string(),
            incarnation: self.store().incarnation(name)?,
            active: versions.iter().find(|v| v.active).map(|v| v.version),
            versions: versions.into_iter().map(|v| (v.version, v.path)).collect(),
            deleted,
        };
        node.publish_adapters(&change).map_err(cluster_error)?;
        Ok(())
    }

    /// Cluster mode, after `name` (as `incarnation`) was deleted: removes its job
    /// records (a queued job of it is then dropped, a running one stops) and its
    /// shared adapters (registry entry and objects). The deletion stands whatever
    /// happens here: a failure is logged, and what was not removed stays behind.
    pub(super) fn forget_shared(&self, name: &str, incarnation: u64) {
        let Some(node) = self.cluster_node() else {
            return;
        };
        match node.forget_jobs(name) {
            Ok(n) => tracing::info!(
                collection = name,
                records = n,
                "removed the deleted collection's job records"
            ),
            Err(e) => {
                tracing::error!(collection = name, error = %e, "cannot remove the deleted collection's job records")
            }
        }
        match node.forget_adapters(name, incarnation) {
            Ok(n) => tracing::info!(
                collection = name,
                objects = n,
                "removed the deleted collection's shared adapters"
            ),
            Err(e) => {
                tracing::error!(collection = name, error = %e, "cannot remove the deleted collection's shared adapters")
            }
        }
    }
}

impl Queued for PromotionStatus {
    fn local(engine: &Engine) -> &Jobs<Self> {
        &engine.promotions.jobs
    }

    /// One promotion of a collection at a time in the whole cluster.
    fn refuse(collection: &str, listed: &[Self]) -> Result<()> {
        if listed.iter().any(|s| s.job.state.is_running()) {
            return Err(Error::PromotionRunning(collection.to_string()));
        }
        Ok(())
    }

    fn run(engine: &Arc<Engine>, job: &QueuedJob) -> Result<()> {
        let req: PromoteRequest = serde_json::from_value(job.request.clone())
            .map_err(|e| Error::invalid("request", format!("a queued promotion's request: {e}")))?;
        let mut plan = engine.plan_promotion(&job.collection, &req)?;
        // The plan is made again from this node's copy of the collection; its files
        // live under the queued id, so a redelivery to this node finds them.
        plan.options.work_dir = engine.promotions_dir(&job.collection).join(&job.id);
        plan.id = job.id.clone();
        if let Some(other) = Self::local(engine).running().first() {
            return Err(Error::PromotionRunning(other.job.collection.clone()));
        }
        engine.spawn_promotion(plan)?;
        Ok(())
    }
}

/// Context builds on the work queue: the node that takes one fits the context and
/// publishes it (`Store::run_queued_context`).
impl Queued for ContextBuild {
    fn local(engine: &Engine) -> &Jobs<Self> {
        engine.store().context_jobs()
    }

    fn run(engine: &Arc<Engine>, job: &QueuedJob) -> Result<()> {
        let request: ContextRequest = serde_json::from_value(job.request.clone()).map_err(|e| {
            Error::invalid("request", format!("a queued context build's request: {e}"))
        })?;
        engine
            .store
            .run_queued_context(&job.collection, &job.id, request)?;
        Ok(())
    }
}

/// The store's way to queue a context build (see [`ContextQueue`]).
struct QueueContexts(Arc<Node>);

impl ContextQueue for QueueContexts {
    fn queue(&self, first: ContextBuild, request: ContextRequest) -> engram_store::Result<()> {
        let unavailable = |e: engram_cluster::Error| match e {
            engram_cluster::Error::Store(e) => e,
            other => engram_store::Error::Unavailable(other.to_string()),
        };
        let name = first.job.collection.clone();
        // The first context is asked for by every node that applied the same write:
        // the first one queues it. One build of a collection at a time.
        let listed = self
            .0
            .jobs(ContextBuild::KIND, &name)
            .map_err(unavailable)?;
        if listed
            .iter()
            .any(|s| s["id"] == first.job.id.as_str() || s["state"] == "running")
        {
            return Ok(());
        }
        let queued = QueuedJob {
            kind: ContextBuild::KIND.into(),
            collection: name,
            id: first.job.id.clone(),
            request: serde_json::to_value(request).expect("requests serialise"),
        };
        let status = serde_json::to_value(&first).expect("statuses serialise");
        self.0.queue_job(&queued, status).map_err(unavailable)
    }
}

/// Brings this node's adapter registry to the shared one.
struct Follower(Arc<Engine>);

impl AdapterSink for Follower {
    fn held(&self, collection: &str, incarnation: u64) -> Option<Vec<u32>> {
        let engine = &self.0;
        if engine.store().incarnation(collection).ok()? != incarnation {
            return None;
        }
        let store = engine.adapter_store().ok()?;
        match store.owner(collection) {
            None => return Some(Vec::new()),
            // Left from an earlier collection of this name (deleted while this
            // node was away): dropped, so the live one's versions can come in.
            Some(owner) if owner != incarnation => {
                store.keep_only(collection, incarnation, false).ok()?;
                return Some(Vec::new());
            }
            Some(_) => {}
        }
        let versions = engine
            .registry_of(collection)
            .ok()??
            .list(collection)
            .ok()?;
        Some(versions.iter().map(|v| v.version).collect())
    }

    fn install(
        &self,
        collection: &str,
        incarnation: u64,
        version: u32,
        dir: &Path,
    ) -> std::result::Result<(), String> {
        let engine = &self.0;
        let install = || -> Result<()> {
            let registry = engine.adapter_store()?.registry()?;
            registry.register_version(collection, dir, version)?;
            engine.claim_adapters(collection, incarnation)
        };
        install().map_err(|e| e.to_string())
    }

    fn settle(
        &self,
        collection: &str,
        active: Option<u32>,
        deleted: &[u32],
    ) -> std::result::Result<(), String> {
        let settle = || -> Result<()> {
            let Some(registry) = self.0.registry_of(collection)? else {
                return Ok(());
            };
            let now = registry.active_version(collection)?;
            match active {
                // A hot swap: the new version is loaded, then swapped in.
                Some(v) if now != Some(v) => registry.activate(collection, v)?,
                None if now.is_some() => registry.deactivate(collection)?,
                _ => {}
            }
            let held: Vec<u32> = registry
                .list(collection)?
                .iter()
                .map(|v| v.version)
                .collect();
            for v in deleted.iter().filter(|v| held.contains(v)) {
                registry.delete(collection, *v)?;
            }
            Ok(())
        };
        settle().map_err(|e| e.to_string())
    }

    fn forget(&self, collection: &str) -> std::result::Result<bool, String> {
        let engine = &self.0;
        let store = engine.adapter_store().map_err(|e| e.to_string())?;
        let forget = || -> Result<bool> {
            match (
                engine.store().incarnation(collection),
                store.owner(collection),
            ) {
                // Not applied the deletion yet: the adapters are still the live ones.
                (Ok(live), Some(owner)) if live == owner => Ok(false),
                (Ok(live), _) => {
                    store.keep_only(collection, live, false)?;
                    Ok(true)
                }
                // Gone here too: its adapters and its promotions' files go.
                (Err(_), _) => {
                    store.forget(collection)?;
                    engine.remove_promotion_files(collection)?;
                    Ok(true)
                }
            }
        };
        forget().map_err(|e| e.to_string())
    }
}
