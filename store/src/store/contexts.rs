//! Corpus-context builds of contextual collections: on one machine a background job
//! (`crate::context_build`); in cluster mode a job on the cluster's work queue.
//!
//! Why cluster mode splits a build: the fit (self-check, token counts, transform) is
//! minutes of a core on a sample and its result is small, so one node runs it
//! ([`Store::run_queued_context`], started by the work queue) and publishes the
//! context to the replicated log on the collection's own subject. Re-embedding the
//! documents under it needs every node's own copy, so every node does it as it
//! applies that message (`replicated.rs`), in log order: every replica then holds
//! vectors of the same context version, and a write embedded under an older one is
//! embedded again as it is applied. The first context, which every node asks for,
//! is queued under a job id made of the collection's incarnation and the target
//! version ([`ContextRequest::job_id`]), so three nodes asking at once queue it once;
//! a recontextualization is not queued while a build of the collection runs. Should
//! two builds of one version run all the same, the first context published is the
//! one every node installs; the second is skipped by every node alike.

use std::sync::Arc;

use engram_embedder::{EncoderKind, Variant};

use super::Store;
use crate::api::CollectionInfo;
use crate::collection::Collection;
use crate::context_build::{ContextBuild, ContextQueue, ContextRequest};
use crate::error::{Error, Result};
use crate::jobs::{JobStatus, Jobs};
use crate::replica::{Subject, INSTALL_WAIT};

/// The variant of a contextual collection; `None` for any other.
fn contextual_variant(coll: &Collection) -> Option<Variant> {
    match coll.config.embedder.as_deref().map(EncoderKind::parse) {
        Some(Ok(EncoderKind::Contextual(v))) => Some(v),
        _ => None,
    }
}

impl Store {
    /// Starts a build of the collection's corpus context (and the re-embedding under
    /// it) unless one is running; returns the collection's info. In cluster mode the
    /// build is queued (see the module's comment).
    pub fn recontextualize(&self, name: &str) -> Result<CollectionInfo> {
        let coll = self.collection(name)?;
        let Some(variant) = contextual_variant(&coll) else {
            return Err(Error::conflict(
                "embedder",
                format!(
                    "collection '{name}' is not contextual; create one with \"embedder\": \"contextual\""
                ),
            ));
        };
        if coll.document_count() < 2 {
            return Err(Error::conflict(
                "documents",
                format!("collection '{name}' needs at least 2 documents to build a context"),
            ));
        }
        self.start_context_job(&coll, variant, false)?;
        self.collection_info(name)
    }

    /// This node's context builds (the job framework's registry); in cluster mode the
    /// builds it ran from the work queue.
    pub fn context_jobs(&self) -> &Jobs<ContextBuild> {
        &self.context_jobs
    }

    /// Cluster mode: the work queue context builds go on. Once only; set when the
    /// node joins the cluster.
    pub fn set_context_queue(&self, queue: Arc<dyn ContextQueue>) {
        if self.context_queue.set(queue).is_err() {
            tracing::warn!("the context queue was set already; kept the first");
        }
    }

    /// Spawns a context build unless one is already running for `coll`; in cluster
    /// mode, queues it (`first_only`: the first context, asked for by a write).
    fn start_context_job(
        &self,
        coll: &Arc<Collection>,
        variant: Variant,
        first_only: bool,
    ) -> Result<()> {
        let _starting = self.context_start.lock().expect("lock");
        if self.replication.replicator().is_some() {
            return self.queue_context_job(coll, first_only);
        }
        let name = &coll.config.name;
        if self
            .context_jobs
            .running()
            .iter()
            .any(|j| &j.job.collection == name)
        {
            return Ok(());
        }
        let base = engram_embedder::shared_minilm()?;
        let mut status = ContextBuild {
            job: JobStatus::start(name, "building"),
            version: None,
            seq: None,
        };
        status.job.total = coll.document_count();
        let (storage, work_coll, keep_coll) = (self.storage.clone(), coll.clone(), coll.clone());
        let dumps = self.dumps.clone();
        self.context_jobs.spawn(
            status,
            move |_| !keep_coll.is_deleted(),
            move |job| {
                crate::context_build::run(&storage, &work_coll, base, variant, job)?;
                // The new context's graph replaces the dump's (which no longer matches).
                dumps.write_in_background(&work_coll);
                Ok::<(), Error>(())
            },
        )?;
        Ok(())
    }

    /// Cluster mode: queues the build of `coll`'s next context version. The first
    /// context, which every node asks for as it applies the write that reaches
    /// `min_documents`, goes under the id [`ContextRequest::job_id`], once (this node
    /// remembers it asked; the queue skips an id it lists). A recontextualization gets
    /// an id of its own, so a failed build can be asked for again; the queue skips it
    /// while a build of the collection runs anywhere.
    fn queue_context_job(&self, coll: &Collection, first_only: bool) -> Result<()> {
        let queue = self.context_queue.get().ok_or_else(|| {
            Error::Unavailable(
                "this node has not joined the cluster's work queue yet; retry in a moment".into(),
            )
        })?;
        let request = ContextRequest {
            version: coll.context_version() + 1,
            incarnation: coll.incarnation(),
        };
        let mut first = ContextBuild {
            job: JobStatus::start(&coll.config.name, "queued"),
            version: None,
            seq: None,
        };
        if first_only {
            first.job.id = request.job_id();
            if self
                .context_queued
                .lock()
                .expect("lock")
                .contains(&first.job.id)
            {
                return Ok(());
            }
        } else {
            first.job.id = format!("{}-{}", request.job_id(), first.job.id);
        }
        let id = first.job.id.clone();
        first.job.total = coll.document_count();
        queue.queue(first, request)?;
        if first_only {
            self.context_queued.lock().expect("lock").insert(id);
        }
        Ok(())
    }

    /// Cluster mode: runs a queued build on this node, in the background, under the
    /// queued id: the fit on this node's copy of the documents, then the context
    /// published to the log. The job ends once this node has installed it (every
    /// other node installs it as it applies the log); its status carries the
    /// message's sequence. A build whose version this node has already installed
    /// (a redelivery, or another node's run of it) ends at once.
    pub fn run_queued_context(
        self: &Arc<Self>,
        name: &str,
        id: &str,
        request: ContextRequest,
    ) -> Result<ContextBuild> {
        let coll = self
            .collection(name)
            .ok()
            .filter(|c| c.incarnation() == request.incarnation)
            .ok_or_else(|| Error::CollectionNotFound(name.to_string()))?;
        let variant = contextual_variant(&coll).ok_or_else(|| {
            Error::conflict("embedder", format!("collection '{name}' is not contextual"))
        })?;
        let base = engram_embedder::shared_minilm()?;
        let mut status = ContextBuild {
            job: JobStatus::start(name, "building"),
            version: None,
            seq: None,
        };
        status.job.id = id.to_string();
        status.job.total = coll.document_count();
        let (store, work_coll, keep_coll) = (self.clone(), coll.clone(), coll);
        let version = request.version;
        self.context_jobs.spawn(
            status,
            move |_| !keep_coll.is_deleted(),
            move |job| {
                if work_coll.context_version() < version {
                    let context = crate::context_build::fit_only(
                        &store.storage,
                        &work_coll,
                        base,
                        variant,
                        version,
                        job,
                    )?;
                    job.progress("installing", 0, 0);
                    let seq = store.publish_context(&work_coll, &context)?;
                    job.update(|s| s.seq = seq);
                }
                job.update(|s| s.version = Some(work_coll.context_version()));
                Ok::<(), Error>(())
            },
        )
    }

    /// Publishes `context` on `coll`'s own subject unless this node holds that
    /// version (or a newer one) already; returns the message's sequence once this
    /// node has installed it (at most [`INSTALL_WAIT`]).
    fn publish_context(
        &self,
        coll: &Arc<Collection>,
        context: &engram_embedder::CorpusContext,
    ) -> Result<Option<u64>> {
        let name = coll.config.name.as_str();
        let bytes = context.to_bytes()?;
        let subject = Subject {
            collection: name,
            shard: None,
        };
        self.replicate_waiting(
            subject,
            Some(coll),
            coll.incarnation(),
            INSTALL_WAIT,
            || {
                if coll.context_version() >= context.version {
                    return Ok(None);
                }
                let mut batch = self.storage.batch();
                self.storage.put_context(&mut batch, name, &bytes);
                Ok(Some(batch))
            },
        )
    }

    /// After a write: a contextual collection without a context builds its first one
    /// once it holds `context.min_documents` documents (once: a failed or interrupted
    /// first build is repeated by recontextualizing, not by every write; in cluster
    /// mode every node asks, under the same job id).
    pub(super) fn maybe_start_first_context(&self, coll: &Arc<Collection>) -> Result<()> {
        let Some(variant) = contextual_variant(coll) else {
            return Ok(());
        };
        let ready = coll.document_count() >= coll.config.context.min_documents.max(2);
        let clustered = self.replication.replicator().is_some();
        if ready
            && coll.context().is_none()
            && (clustered || self.context_jobs.list(&coll.config.name)?.is_empty())
        {
            self.start_context_job(coll, variant, true)?;
        }
        Ok(())
    }

    /// The collection's latest context build on this node; an unreadable stored
    /// context reads as a failed one. (In cluster mode the server puts the work
    /// queue's records over it: `db/src/engine/cluster.rs`.)
    pub(super) fn latest_context_build(&self, coll: &Collection) -> Option<ContextBuild> {
        let latest = match self.context_jobs.list(&coll.config.name) {
            Ok(builds) => builds.into_iter().last(),
            Err(e) => {
                tracing::error!(collection = %coll.config.name, error = %e, "cannot read context builds");
                None
            }
        };
        let problem = coll.context_problem.lock().expect("lock").clone();
        match (latest, problem) {
            (Some(b), _) => Some(b),
            (None, Some(problem)) => {
                let mut job = JobStatus::start(&coll.config.name, "loading");
                job.state = crate::jobs::JobState::Failed;
                job.error = Some(problem);
                Some(ContextBuild {
                    job,
                    version: None,
                    seq: None,
                })
            }
            (None, None) => None,
        }
    }
}
