//! Building a contextual collection's corpus context and re-embedding the collection
//! under it, in the background.
//!
//! Why a background job with a swap: re-embedding a collection takes minutes, and a
//! database cannot stop answering for that long. The job samples documents, fits a
//! [`CorpusContext`], re-embeds every document with it while writes and queries go on
//! with the old context, builds the new graph from them aside, then, under the
//! collection's write lock, re-embeds what changed meanwhile (and brings the new graph
//! up to date with it), commits every new vector (tagged with the context version) and
//! the context in one RocksDB batch, and swaps the context and the new graph in. The
//! write lock is held for the changes made during the build, not for the build. A
//! crash before that commit leaves the old context and vectors intact; after it, the
//! new ones; never a mix.
//!
//! Cluster mode splits the same steps in two (see `crate::store::contexts`): one node,
//! the one the work queue gives the job, runs the self-check and the fit
//! ([`fit_only`]) and publishes the context to the replicated log; every node, as it
//! applies that message, re-embeds its documents under it and commits and swaps
//! ([`install`]), with the code a build on one machine ends with.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use engram_embedder::{
    contextual, self_check, Chunk, ContextOptions, ContextualEncoder, CorpusContext, MiniLm,
    SelfCheckOptions, TextEncoder, Variant,
};
use serde::{Deserialize, Serialize};

use crate::collection::{Collection, DocumentRecord};
use crate::error::{Error, Result};
use crate::index::VectorIndex;
use crate::jobs::{JobHandle, JobStatus};
use crate::storage::{Batch, Storage, VectorRecord};

/// Documents embedded per step (the progress granularity).
const STEP: usize = 16;

/// A context build as the job framework lists it: stages "checking" (the self-check:
/// does a context beat stage one on this collection?), "building" (sampling and
/// fitting), "embedding" (re-embedding every document) and "indexing" (building the
/// new graph aside); in cluster mode also "queued" (until a node takes it) and
/// "installing" (the context published, until this node has installed it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContextBuild {
    #[serde(flatten)]
    pub job: JobStatus,
    /// The context version it swapped in, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Cluster mode: the replicated log's sequence of the published context; a
    /// query with this `min_seq` reads every node's vectors under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

crate::job_kind!(ContextBuild, "context");

/// Cluster mode's request of a queued build (see [`ContextQueue`]): the context
/// version to build and the collection's incarnation it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextRequest {
    pub version: u64,
    pub incarnation: u64,
}

impl ContextRequest {
    /// The build's job id, the same on every node that asks for it (the first
    /// context's), so that the work queue runs it once however many nodes ask at
    /// once; the incarnation keeps a collection made again under the same name apart.
    pub fn job_id(&self) -> String {
        format!("{:x}-v{}", self.incarnation, self.version)
    }
}

/// Cluster mode's way to run a context build once in the whole cluster (the
/// server's work queue, `db/src/engine/queued.rs`). The store asks for a build;
/// one node fits the context ([`crate::Store::run_queued_context`]) and publishes it
/// to the replicated log; every node installs it as it applies the log.
pub trait ContextQueue: Send + Sync {
    /// Queues `request` with its first status `first` (stage "queued") unless a
    /// job of the same id is listed already (queued, running or finished) or a
    /// build of the collection is running.
    fn queue(&self, first: ContextBuild, request: ContextRequest) -> Result<()>;
}

/// Runs a context build for `coll` to the end, reporting progress to `job`.
pub fn run(
    storage: &Storage,
    coll: &Collection,
    base: Arc<MiniLm>,
    variant: Variant,
    job: &JobHandle<ContextBuild>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let version = build_and_swap(storage, coll, base, variant, job)?;
    job.update(|s| s.version = Some(version));
    tracing::info!(collection = %coll.config.name, version, seconds = started.elapsed().as_secs_f64(), "corpus context swapped in");
    Ok(())
}

/// Cluster mode's half of a build that runs on one node (the one the work queue gave
/// it): the self-check and the fit on this node's copy of the documents, as context
/// `version`. The caller publishes it to the log; every node then installs it
/// ([`install`]).
pub(crate) fn fit_only(
    storage: &Storage,
    coll: &Collection,
    base: Arc<MiniLm>,
    variant: Variant,
    version: u64,
    job: &JobHandle<ContextBuild>,
) -> Result<CorpusContext> {
    job.progress("building", 0, 0);
    let docs = sorted_documents(storage, &coll.config.name)?;
    Ok(fit(coll, &base, variant, &docs, version, Some(job))?.0)
}

/// Cluster mode: installs `context` as the log delivers it, on every node. The
/// applier calls it under the collection's write lock, so no document changes while
/// every document is re-embedded under the context; the vectors, the context and
/// `batch` (the applied sequence) are committed in one RocksDB batch and the new
/// graph swapped in, as a build on one machine ends.
pub(crate) fn install(
    storage: &Storage,
    coll: &Collection,
    context: CorpusContext,
    batch: Batch,
) -> Result<()> {
    let started = std::time::Instant::now();
    let base = engram_embedder::shared_minilm()?;
    let docs = text_documents(storage, &coll.config.name)?;
    let context = Arc::new(context);
    let built = embed_all(coll, &base, &context, &docs, Pooled::new(), None)?;
    let version = context.version;
    commit_swap(storage, coll, base, context, built, batch)?;
    tracing::info!(collection = %coll.config.name, version, documents = docs.len(), seconds = started.elapsed().as_secs_f64(), "corpus context from the log installed");
    Ok(())
}

/// Reports progress when a job is watching (the applier's installs have none).
fn progress(job: Option<&JobHandle<ContextBuild>>, stage: &str, done: usize, total: usize) {
    if let Some(job) = job {
        job.progress(stage, done, total);
    }
}

/// Stops the build when a cancel was asked for or the collection was deleted.
fn check_stop(coll: &Collection, job: Option<&JobHandle<ContextBuild>>) -> Result<()> {
    if job.is_some_and(|j| j.is_cancelled()) {
        return Err(Error::Cancelled(format!(
            "the context build of '{}' was cancelled",
            coll.config.name
        )));
    }
    if coll.is_deleted() {
        return Err(Error::CollectionNotFound(coll.config.name.clone()));
    }
    Ok(())
}

/// A text document as stored: id, text and chunk ids.
type TextDoc = (String, String, Vec<u64>);

/// Documents' chunks by document id, with the chunk ids they were embedded for:
/// stage one's pooled vectors, then (once transformed) the context's.
type Pooled = HashMap<String, (Vec<u64>, Vec<Chunk>)>;

/// Every text document as stored.
fn text_documents(storage: &Storage, coll: &str) -> Result<Vec<TextDoc>> {
    let mut docs = Vec::new();
    storage.scan_documents::<DocumentRecord>(coll, |id, rec| {
        if let Some(text) = rec.text {
            docs.push((id.to_string(), text, rec.chunks));
        }
        Ok(())
    })?;
    Ok(docs)
}

/// Every text document, sorted by id (so the same documents always fit the same
/// context); at least 2 of them.
fn sorted_documents(storage: &Storage, coll: &str) -> Result<Vec<TextDoc>> {
    let mut docs = text_documents(storage, coll)?;
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    if docs.len() < 2 {
        return Err(Error::conflict(
            "documents",
            "a corpus context needs at least 2 text documents; insert more first",
        ));
    }
    Ok(docs)
}

/// The variants a collection's self-check weighs against stage one: the check's
/// default candidates for the default (learned) variant, else only the variant the
/// collection named.
fn candidates(variant: Variant) -> Vec<Variant> {
    if variant == engram_embedder::DEFAULT_CONTEXTUAL {
        self_check::DEFAULT_CANDIDATES.to_vec()
    } else {
        vec![variant]
    }
}

/// Up to `n` items spread evenly over `items` (sorted by id, so reproducible).
fn even_sample<T>(items: &[T], n: usize) -> Vec<&T> {
    if items.len() <= n {
        return items.iter().collect();
    }
    (0..n).map(|i| &items[i * items.len() / n]).collect()
}

fn build_and_swap(
    storage: &Storage,
    coll: &Collection,
    base: Arc<MiniLm>,
    variant: Variant,
    job: &JobHandle<ContextBuild>,
) -> Result<u64> {
    job.progress("building", 0, 0);
    let docs = sorted_documents(storage, &coll.config.name)?;
    let version = coll.context_version() + 1;
    let (context, pooled) = fit(coll, &base, variant, &docs, version, Some(job))?;
    let context = Arc::new(context);
    let built = embed_all(coll, &base, &context, &docs, pooled, Some(job))?;
    drop(docs);
    check_stop(coll, Some(job))?;

    let _writer = coll.write_lock.lock().expect("lock");
    check_stop(coll, Some(job))?;
    commit_swap(storage, coll, base, context, built, storage.batch())?;
    Ok(version)
}

/// The self-check (which variant goes live, or that stage one stays: a context of
/// variant StageOne, MiniLM's own vectors under a new version), the token counts, and
/// the transform fitted on the sampled documents' stage-one pooled vectors. Returns
/// the context as `version`, and the sampled documents' pooled chunks, which the
/// re-embedding reuses rather than pooling them twice.
fn fit(
    coll: &Collection,
    base: &Arc<MiniLm>,
    variant: Variant,
    docs: &[TextDoc],
    version: u64,
    job: Option<&JobHandle<ContextBuild>>,
) -> Result<(CorpusContext, Pooled)> {
    let cfg = &coll.config;
    let sample = even_sample(docs, cfg.context.sample.max(2));
    let sample_texts: Vec<&str> = sample.iter().map(|d| d.1.as_str()).collect();
    progress(job, "checking", 0, 0);
    let check = self_check::run(
        base,
        &sample_texts,
        cfg.chunking,
        &candidates(variant),
        &SelfCheckOptions::default(),
    )?;
    check_stop(coll, job)?;
    tracing::info!(collection = %cfg.name, decision = %check.decision, "context self-check");
    let live = check.chosen.unwrap_or(Variant::StageOne);
    let mut context =
        CorpusContext::count_tokens(base, &sample_texts, live, ContextOptions::default())?;
    context.self_check = Some(check);
    // Pooling needs only the token counts, so these pooled vectors are the ones the
    // fitted context pools too.
    let mut pooled = Pooled::with_capacity(docs.len());
    pool_into(coll, base, &context, &sample, &mut pooled, docs.len(), job)?;
    // In id order, so the same documents always fit the same context.
    let sample_vectors: Vec<f32> = sample
        .iter()
        .flat_map(|d| pooled[&d.0].1.iter().flat_map(|c| c.vector.iter().copied()))
        .collect();
    context.fit(&sample_vectors)?;
    context.version = version;
    Ok((context, pooled))
}

/// Pools `docs` with stage one (and `context`'s token weights) into `out`, [`STEP`]
/// documents at a time, reporting progress out of `total`.
fn pool_into(
    coll: &Collection,
    base: &MiniLm,
    context: &CorpusContext,
    docs: &[&TextDoc],
    out: &mut Pooled,
    total: usize,
    job: Option<&JobHandle<ContextBuild>>,
) -> Result<()> {
    for batch in docs.chunks(STEP) {
        progress(job, "embedding", out.len(), total);
        let texts: Vec<&str> = batch.iter().map(|d| d.1.as_str()).collect();
        let chunks = contextual::pool_chunked(base, context, &texts, coll.config.chunking)?;
        for (d, c) in batch.iter().zip(chunks) {
            out.insert(d.0.clone(), (d.2.clone(), c));
        }
        check_stop(coll, job)?;
    }
    Ok(())
}

/// Every document embedded under a new context, and the graph of them built aside.
struct Built {
    embedded: Pooled,
    index: VectorIndex,
    /// Chunk ids in the new graph, whittled down (by [`commit_swap`]) to those no
    /// live document holds any more (replaced or deleted during the build).
    stale: HashSet<u64>,
}

/// Re-embeds every document of `docs` under `context` (pooling those `pooled` does
/// not hold yet) and builds the new graph from them aside.
fn embed_all(
    coll: &Collection,
    base: &MiniLm,
    context: &CorpusContext,
    docs: &[TextDoc],
    mut pooled: Pooled,
    job: Option<&JobHandle<ContextBuild>>,
) -> Result<Built> {
    let missing: Vec<&TextDoc> = docs.iter().filter(|d| !pooled.contains_key(&d.0)).collect();
    pool_into(coll, base, context, &missing, &mut pooled, docs.len(), job)?;
    for (_, chunks) in pooled.values_mut() {
        let vectors = chunks
            .iter_mut()
            .map(|c| std::mem::take(&mut c.vector))
            .collect();
        for (c, v) in chunks
            .iter_mut()
            .zip(contextual::transform_all(context, vectors)?)
        {
            c.vector = v;
        }
    }
    progress(job, "indexing", docs.len(), docs.len());
    let aside: Vec<(u64, Vec<f32>)> = pooled
        .values()
        .filter(|(ids, chunks)| ids.len() == chunks.len())
        .flat_map(|(ids, chunks)| {
            ids.iter()
                .copied()
                .zip(chunks.iter().map(|c| c.vector.clone()))
        })
        .collect();
    let index = coll.build_index(&aside);
    let stale = aside.into_iter().map(|(id, _)| id).collect();
    Ok(Built {
        embedded: pooled,
        index,
        stale,
    })
}

/// The end of a build, under the collection's write lock (the caller's): re-embeds
/// what changed since `built` was embedded (and brings its graph up to date), commits
/// every vector (tagged with the context's version) and the context with `batch` in
/// one synced RocksDB batch, and swaps the context and the new graph in.
fn commit_swap(
    storage: &Storage,
    coll: &Collection,
    base: Arc<MiniLm>,
    context: Arc<CorpusContext>,
    built: Built,
    mut batch: Batch,
) -> Result<()> {
    let cfg = &coll.config;
    let Built {
        mut embedded,
        index,
        mut stale,
    } = built;
    let version = context.version;
    let encoder = ContextualEncoder::new(base, context.clone());
    let mut late: Vec<(u64, Vec<f32>)> = Vec::new();
    for (id, chunk_ids) in coll.document_chunks() {
        let (chunks, in_graph) = match embedded.remove(&*id) {
            Some((seen, chunks)) if seen == chunk_ids => {
                for c in &chunk_ids {
                    stale.remove(c);
                }
                (chunks, true)
            }
            // Written (or rewritten) while we embedded: embed its current text now.
            _ => {
                let Some(rec) = storage.get_document::<DocumentRecord>(&cfg.name, &id)? else {
                    continue;
                };
                let Some(text) = rec.text else { continue };
                let chunks = encoder
                    .embed_chunked(&[text.as_str()], cfg.chunking)?
                    .remove(0);
                (chunks, false)
            }
        };
        if chunks.len() != chunk_ids.len() {
            return Err(Error::Corrupt(format!(
                "document '{id}' has {} stored chunks but re-embeds into {}",
                chunk_ids.len(),
                chunks.len()
            )));
        }
        for (chunk_id, rec) in chunk_ids
            .iter()
            .zip(VectorRecord::of_chunks(&id, chunks, version))
        {
            storage.put_vector(&mut batch, &cfg.name, *chunk_id, &rec);
            if !in_graph {
                late.push((*chunk_id, rec.vector));
            }
        }
    }
    storage.put_context(&mut batch, &cfg.name, &context.to_bytes()?);
    storage.commit(batch, true)?;
    let items: Vec<(u64, &[f32])> = late.iter().map(|(id, v)| (*id, v.as_slice())).collect();
    coll.insert_in_scope(&index, &items);
    // Chunks the build saw that were replaced or deleted since.
    coll.remove_in_scope(&index, &stale.into_iter().collect::<Vec<_>>());
    coll.swap_context(context, index);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_sample_spreads_and_caps() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(even_sample(&items, 20).len(), 10);
        let s: Vec<u32> = even_sample(&items, 4).into_iter().copied().collect();
        assert_eq!(s, [0, 2, 5, 7]);
    }

    #[test]
    fn the_default_weighs_every_variant_a_named_one_only_itself() {
        assert_eq!(
            candidates(Variant::Learned),
            self_check::DEFAULT_CANDIDATES.to_vec()
        );
        assert_eq!(candidates(Variant::Whiten), vec![Variant::Whiten]);
    }
}
