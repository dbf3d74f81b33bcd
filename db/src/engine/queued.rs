//! Cluster mode's heavy jobs on the work queue, one piece for every kind
//! (promotions, audits, corpus-context builds): the node asked validates the request and queues it with a
//! first status; whichever node takes the job runs it with the same code as on one
//! machine, under the queued id; any node lists it from the queue's status bucket
//! (`engram_cluster::work_queue`). A kind joins by implementing [`Queued`] and being
//! named in [`kind`].
//!
//! Why one node per job: these jobs take minutes of a core (and a model's memory),
//! their result is shared anyway (an adapter through the object store, an audit's
//! report through the replicated log), so running them once is the whole point.

use std::marker::PhantomData;
use std::sync::Arc;

use engram_cluster::work_queue::{JobRunner, QueuedJob};
use engram_cluster::Node;
use engram_store::jobs::{JobKind, Jobs};
use engram_store::ContextBuild;
use serde_json::Value;

use super::audit::AuditStatus;
use super::promote::PromotionStatus;
use super::Engine;
use crate::error::{Error, Result};

/// A job kind that cluster mode runs from the work queue.
pub(super) trait Queued: JobKind + Sync {
    /// This node's jobs of the kind (the job framework's registry).
    fn local(engine: &Engine) -> &Jobs<Self>;
    /// Refuses a new job of `collection` given the kind's jobs listed from the
    /// queue (e.g. a second promotion of a collection while one runs anywhere).
    fn refuse(_collection: &str, _listed: &[Self]) -> Result<()> {
        Ok(())
    }
    /// Starts a delivered job on this node, under its queued id, from the request
    /// the node that queued it validated.
    fn run(engine: &Arc<Engine>, job: &QueuedJob) -> Result<()>;
}

/// A cluster failure as the engine's error: the store's own, or unavailable (503).
pub(super) fn cluster_error(e: engram_cluster::Error) -> Error {
    match e {
        engram_cluster::Error::Store(e) => e.into(),
        other => engram_store::Error::Unavailable(other.to_string()).into(),
    }
}

impl Engine {
    /// Queues a job whose first status is `first` (its id is the job's; 202 with
    /// stage "queued") and whose validated request is `request`.
    pub(super) fn queue_job<K: Queued>(&self, node: &Node, first: K, request: Value) -> Result<K> {
        let name = first.job().collection.clone();
        let mut listed = Vec::new();
        self.merge_queued(&name, &mut listed)?;
        K::refuse(&name, &listed)?;
        let queued = QueuedJob {
            kind: K::KIND.into(),
            collection: name,
            id: first.job().id.clone(),
            request,
        };
        let status = serde_json::to_value(&first).expect("statuses serialise");
        node.queue_job(&queued, status).map_err(cluster_error)?;
        Ok(first)
    }

    /// Puts the queued jobs' statuses of kind `K` (from the status bucket, any
    /// node's) over this node's own records of them in `out`.
    pub(super) fn merge_queued<K: Queued>(&self, name: &str, out: &mut Vec<K>) -> Result<()> {
        let Some(node) = self.cluster_node() else {
            return Ok(());
        };
        for value in node.jobs(K::KIND, name).map_err(cluster_error)? {
            let status: K = serde_json::from_value(value)
                .map_err(|e| Error::corrupt(format!("a queued {}'s status: {e}", K::KIND)))?;
            match out.iter_mut().find(|s| s.job().id == status.job().id) {
                Some(slot) => *slot = status,
                None => out.push(status),
            }
        }
        Ok(())
    }

    /// Cluster mode: asks the node running the job to stop it.
    pub(super) fn cancel_queued<K: Queued>(&self, name: &str, id: &str) -> Result<()> {
        match self.cluster_node() {
            Some(node) => node.cancel_job(K::KIND, name, id).map_err(cluster_error),
            None => Ok(()),
        }
    }
}

/// What a worker does with a delivered job, whatever its kind.
trait Runs: Sync {
    fn start(&self, engine: &Arc<Engine>, job: &QueuedJob) -> Result<()>;
    fn status(&self, engine: &Engine, job: &QueuedJob) -> Option<Value>;
    fn cancel(&self, engine: &Engine, job: &QueuedJob);
}

struct Kind<K>(PhantomData<fn() -> K>);

impl<K: Queued> Runs for Kind<K> {
    fn start(&self, engine: &Arc<Engine>, job: &QueuedJob) -> Result<()> {
        K::run(engine, job)
    }

    fn status(&self, engine: &Engine, job: &QueuedJob) -> Option<Value> {
        let status = K::local(engine).get(&job.collection, &job.id).ok()??;
        serde_json::to_value(status).ok()
    }

    fn cancel(&self, engine: &Engine, job: &QueuedJob) {
        let _ = K::local(engine).cancel(&job.collection, &job.id);
    }
}

/// The kinds queued jobs may have.
fn kind(name: &str) -> Option<&'static dyn Runs> {
    if name == PromotionStatus::KIND {
        Some(&Kind::<PromotionStatus>(PhantomData))
    } else if name == AuditStatus::KIND {
        Some(&Kind::<AuditStatus>(PhantomData))
    } else if name == ContextBuild::KIND {
        Some(&Kind::<ContextBuild>(PhantomData))
    } else {
        None
    }
}

/// Runs queued jobs on this node.
pub(super) struct Worker(pub(super) Arc<Engine>);

impl JobRunner for Worker {
    fn start(&self, job: &QueuedJob) -> std::result::Result<(), String> {
        let runs = kind(&job.kind)
            .ok_or_else(|| format!("this node cannot run jobs of kind '{}'", job.kind))?;
        runs.start(&self.0, job).map_err(|e| e.to_string())
    }

    fn status(&self, job: &QueuedJob) -> Option<Value> {
        kind(&job.kind)?.status(&self.0, job)
    }

    fn cancel(&self, job: &QueuedJob) {
        if let Some(runs) = kind(&job.kind) {
            runs.cancel(&self.0, job);
        }
    }
}
