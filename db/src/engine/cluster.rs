//! The engine in cluster mode: promotions go on the cluster's work queue (one node
//! runs each, another takes it over if that node dies) and their status is read from
//! the queue's status bucket on any node; adapters are shared through the registry
//! bucket and object store, so an activated adapter serves from every node
//! (`engram_cluster::work_queue`, `engram_cluster::adapter_bucket`). On one machine
//! (no node joined) every function here does nothing, and promotions run as before.
//!
//! Resuming a redelivered promotion: its id is the one queued, so its files are
//! `promotions/<collection>/<id>` on whichever node runs it. The same node (restarted)
//! resumes from its synthetic-data journal and last checkpoint; another node does not
//! have them and starts over.

use std::path::Path;
use std::sync::Arc;

use engram_cluster::adapter_bucket::{AdapterSink, Change};
use engram_cluster::work_queue::{JobRunner, QueuedJob};
use engram_cluster::Node;
use engram_store::jobs::JobStatus;

use super::promote::{PromoteRequest, PromotionPlan, PromotionStatus};
use super::Engine;
use crate::error::{Error, Result};

/// The job kind of promotions on the queue.
const PROMOTION: &str = "promotion";

/// A cluster failure as the engine's error: the store's own, or unavailable (503).
fn cluster_error(e: engram_cluster::Error) -> Error {
    match e {
        engram_cluster::Error::Store(e) => e.into(),
        other => engram_store::Error::Unavailable(other.to_string()).into(),
    }
}

impl Engine {
    /// Joins the cluster: queued jobs run here too, and the shared adapters are
    /// followed into this node's registry.
    pub fn join_cluster(self: &Arc<Self>, node: Arc<Node>) {
        if self.cluster.set(node.clone()).is_err() {
            return;
        }
        node.serve_jobs(Arc::new(Worker(self.clone())));
        node.serve_adapters(Arc::new(Follower(self.clone())));
    }

    pub(super) fn cluster_node(&self) -> Option<&Arc<Node>> {
        self.cluster.get()
    }

    /// Queues a planned promotion (202 with stage "queued"); refused while another
    /// promotion of the collection is queued or running anywhere in the cluster.
    pub(super) fn queue_promotion(
        &self,
        node: &Node,
        plan: &PromotionPlan,
        req: &PromoteRequest,
    ) -> Result<PromotionStatus> {
        let name = &plan.options.collection;
        let mut listed = Vec::new();
        self.merge_queued(name, &mut listed)?;
        if listed.iter().any(|s| s.job.state.is_running()) {
            return Err(Error::PromotionRunning(name.clone()));
        }
        let mut job = JobStatus::start(name, "queued");
        job.id = plan.id.clone();
        let status = PromotionStatus::new(job, plan.documents.len());
        let queued = QueuedJob {
            kind: PROMOTION.into(),
            collection: name.clone(),
            id: plan.id.clone(),
            request: serde_json::to_value(req).expect("requests serialise"),
        };
        let first = serde_json::to_value(&status).expect("statuses serialise");
        node.queue_job(&queued, first).map_err(cluster_error)?;
        Ok(status)
    }

    /// Puts the queued promotions' statuses (from the status bucket, any node's)
    /// over this node's own records of them in `out`.
    pub(super) fn merge_queued(&self, name: &str, out: &mut Vec<PromotionStatus>) -> Result<()> {
        let Some(node) = self.cluster_node() else {
            return Ok(());
        };
        for value in node.jobs(PROMOTION, name).map_err(cluster_error)? {
            let status: PromotionStatus = serde_json::from_value(value)
                .map_err(|e| Error::corrupt(format!("a queued promotion's status: {e}")))?;
            match out.iter_mut().find(|s| s.job.id == status.job.id) {
                Some(slot) => *slot = status,
                None => out.push(status),
            }
        }
        Ok(())
    }

    /// Cluster mode: asks the node running the promotion to stop it.
    pub(super) fn cancel_queued(&self, name: &str, id: &str) -> Result<()> {
        match self.cluster_node() {
            Some(node) => node.cancel_job(PROMOTION, name, id).map_err(cluster_error),
            None => Ok(()),
        }
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

    /// Runs a promotion delivered by the queue under its queued id.
    fn run_queued(self: &Arc<Self>, job: &QueuedJob) -> Result<()> {
        let req: PromoteRequest = serde_json::from_value(job.request.clone())
            .map_err(|e| Error::invalid("request", format!("a queued promotion's request: {e}")))?;
        let mut plan = self.plan_promotion(&job.collection, &req)?;
        // The plan is made again from this node's copy of the collection; its files
        // live under the queued id, so a redelivery to this node finds them.
        plan.options.work_dir = self.promotions_dir(&job.collection).join(&job.id);
        plan.id = job.id.clone();
        if let Some(other) = self.promotions.jobs.running().first() {
            return Err(Error::PromotionRunning(other.job.collection.clone()));
        }
        self.spawn_promotion(plan)?;
        Ok(())
    }
}

/// Runs queued jobs on this node.
struct Worker(Arc<Engine>);

impl JobRunner for Worker {
    fn start(&self, job: &QueuedJob) -> std::result::Result<(), String> {
        match job.kind.as_str() {
            PROMOTION => self.0.run_queued(job).map_err(|e| e.to_string()),
            other => Err(format!("this node cannot run jobs of kind '{other}'")),
        }
    }

    fn status(&self, job: &QueuedJob) -> Option<serde_json::Value> {
        let status = self
            .0
            .promotions
            .jobs
            .get(&job.collection, &job.id)
            .ok()??;
        serde_json::to_value(status).ok()
    }

    fn cancel(&self, job: &QueuedJob) {
        let _ = self.0.promotions.jobs.cancel(&job.collection, &job.id);
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
        if store.owner(collection).is_none() {
            return Some(Vec::new());
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
}
