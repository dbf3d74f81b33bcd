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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use engram_embedder::{
    contextual, self_check, Chunk, ContextOptions, ContextualEncoder, CorpusContext, MiniLm,
    SelfCheckOptions, TextEncoder, Variant,
};
use serde::{Deserialize, Serialize};

use crate::collection::{Collection, DocumentRecord};
use crate::error::{Error, Result};
use crate::jobs::{JobHandle, JobStatus};
use crate::storage::{Storage, VectorRecord};

/// Documents embedded per step (the progress granularity).
const STEP: usize = 16;

/// A context build as the job framework lists it: stages "checking" (the self-check:
/// does a context beat stage one on this collection?), "building" (sampling and
/// fitting), "embedding" (re-embedding every document) and "indexing" (building the
/// new graph aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContextBuild {
    #[serde(flatten)]
    pub job: JobStatus,
    /// The context version it swapped in, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

crate::job_kind!(ContextBuild, "context");

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

/// Stops the build when a cancel was asked for or the collection was deleted.
fn check_stop(coll: &Collection, job: &JobHandle<ContextBuild>) -> Result<()> {
    if job.is_cancelled() {
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

/// Every text document as stored: id, text and chunk ids.
fn text_documents(storage: &Storage, coll: &str) -> Result<Vec<(String, String, Vec<u64>)>> {
    let mut docs = Vec::new();
    storage.scan_documents::<DocumentRecord>(coll, |id, rec| {
        if let Some(text) = rec.text {
            docs.push((id.to_string(), text, rec.chunks));
        }
        Ok(())
    })?;
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
    let cfg = &coll.config;
    job.progress("building", 0, 0);
    let mut docs = text_documents(storage, &cfg.name)?;
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    if docs.len() < 2 {
        return Err(Error::conflict(
            "documents",
            "a corpus context needs at least 2 text documents; insert more first",
        ));
    }
    // One stage-one pass over every document serves twice: the sampled documents'
    // pooled vectors fit the context, then every vector is transformed by it.
    let sampled: HashSet<&str> = even_sample(&docs, cfg.context.sample.max(2))
        .into_iter()
        .map(|d| d.0.as_str())
        .collect();
    let sample_texts: Vec<&str> = docs
        .iter()
        .filter(|d| sampled.contains(d.0.as_str()))
        .map(|d| d.1.as_str())
        .collect();
    // The self-check decides which variant goes live, or that stage one stays (a
    // context of variant StageOne: MiniLM's own vectors, under a new version).
    job.progress("checking", 0, 0);
    let check = self_check::run(
        &base,
        &sample_texts,
        cfg.chunking,
        &candidates(variant),
        &SelfCheckOptions::default(),
    )?;
    check_stop(coll, job)?;
    tracing::info!(collection = %cfg.name, decision = %check.decision, "context self-check");
    let live = check.chosen.unwrap_or(Variant::StageOne);
    let mut context =
        CorpusContext::count_tokens(&base, &sample_texts, live, ContextOptions::default())?;
    context.self_check = Some(check);
    let total = docs.len();
    let mut embedded: HashMap<String, (Vec<u64>, Vec<Chunk>)> = HashMap::with_capacity(total);
    for (step, batch) in docs.chunks(STEP).enumerate() {
        job.progress("embedding", step * STEP, total);
        let texts: Vec<&str> = batch.iter().map(|d| d.1.as_str()).collect();
        let chunks = contextual::pool_chunked(&base, &context, &texts, cfg.chunking)?;
        for (d, c) in batch.iter().zip(chunks) {
            embedded.insert(d.0.clone(), (d.2.clone(), c));
        }
        check_stop(coll, job)?;
    }
    // In id order, so the same documents always fit the same context.
    let sample_vectors: Vec<f32> = docs
        .iter()
        .filter(|d| sampled.contains(d.0.as_str()))
        .flat_map(|d| {
            embedded[&d.0]
                .1
                .iter()
                .flat_map(|c| c.vector.iter().copied())
        })
        .collect();
    context.fit(&sample_vectors)?;
    context.version = coll.context_version() + 1;
    let version = context.version;
    for (_, chunks) in embedded.values_mut() {
        let pooled = chunks
            .iter_mut()
            .map(|c| std::mem::take(&mut c.vector))
            .collect();
        for (c, v) in chunks
            .iter_mut()
            .zip(contextual::transform_all(&context, pooled)?)
        {
            c.vector = v;
        }
    }
    let context = Arc::new(context);
    let encoder = ContextualEncoder::new(base, context.clone());
    drop(sampled);
    drop(docs);
    job.progress("indexing", total, total);
    let aside: Vec<(u64, Vec<f32>)> = embedded
        .values()
        .filter(|(ids, chunks)| ids.len() == chunks.len())
        .flat_map(|(ids, chunks)| {
            ids.iter()
                .copied()
                .zip(chunks.iter().map(|c| c.vector.clone()))
        })
        .collect();
    let index = coll.build_index(&aside);
    // What the graph holds that no live document has any more (replaced or deleted
    // during the build): whittled down to those below.
    let mut stale: HashSet<u64> = aside.into_iter().map(|(id, _)| id).collect();
    check_stop(coll, job)?;

    let _writer = coll.write_lock.lock().expect("lock");
    check_stop(coll, job)?;
    let mut batch = storage.batch();
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
        for (chunk_id, c) in chunk_ids.iter().zip(chunks) {
            let rec = VectorRecord {
                doc_id: id.to_string(),
                chunk_index: c.index as u32,
                start: c.start as u32,
                end: c.end as u32,
                vector: c.vector,
                context: version,
            };
            storage.put_vector(&mut batch, &cfg.name, *chunk_id, &rec);
            if !in_graph {
                late.push((*chunk_id, rec.vector));
            }
        }
    }
    storage.put_context(&mut batch, &cfg.name, &context.to_bytes()?);
    storage.commit(batch, true)?;
    let items: Vec<(u64, &[f32])> = late.iter().map(|(id, v)| (*id, v.as_slice())).collect();
    index.insert_batch(&items);
    // Chunks the build saw that were replaced or deleted since.
    index.remove(&stale.into_iter().collect::<Vec<_>>());
    coll.swap_context(context, index);
    Ok(version)
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
