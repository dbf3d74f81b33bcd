//! The store's operations, free of any transport and of any language model: the
//! service layer of `engram-db` (its REST handlers and CLI) and the benchmarks call
//! these. Blocking by design (embedding and fsync are blocking work); a server runs
//! them on its blocking pool.
//!
//! `mod.rs` holds the collections and encoders, `documents.rs` the writes and reads of
//! documents, `query.rs` the searches, `graphs.rs` the graphs' dumps, `contexts.rs`
//! the corpus-context builds.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use engram_embedder::{ContextualEncoder, EncoderKind, TextEncoder};

use crate::api::*;
use crate::collection::{new_incarnation, validate_name, Collection, CollectionConfig};
use crate::context_build::{ContextBuild, ContextQueue};
use crate::error::{Error, LimitKind, Result};
use crate::graph_dump::GraphDumps;
use crate::index::IndexParams;
use crate::jobs::Jobs;
use crate::limits::{check, Limits};
use crate::storage::Storage;
use crate::validate;

mod contexts;
mod documents;
mod embed;
mod forwarded;
mod graphs;
mod query;
mod replicated;
mod replicated_query;
mod shard_copy;
mod shard_fetch;
mod shard_index;
mod shard_scan;
mod snapshot;

pub use query::hybrid_depth;
pub use replicated_query::{Gathered, ShardHit, ShardQuery, ShardRanking};
pub use shard_copy::{ShardChunk, ShardDocument, ShardExport};
pub use shard_fetch::{FetchedHits, HitFetch};
pub use shard_index::Rescoped;
pub use shard_scan::{ShardCounts, ShardPage, ShardScan};
pub use snapshot::{applied_seq_in, LocalSnapshot};

/// The default text encoder of new collections and of `/embed`.
pub const DEFAULT_EMBEDDER: &str = "minilm";

/// Loads text encoders on first use and shares them between collections.
pub type EncoderLoader =
    dyn Fn(&str) -> engram_embedder::Result<Arc<dyn TextEncoder>> + Send + Sync;

/// The store: storage, every collection's live state, and the encoders.
pub struct Store {
    /// Shared with background context builds.
    storage: Arc<Storage>,
    collections: RwLock<HashMap<String, Arc<Collection>>>,
    encoders: Mutex<HashMap<String, Arc<dyn TextEncoder>>>,
    loader: Box<EncoderLoader>,
    seq: AtomicU64,
    limits: Limits,
    /// Corpus-context builds (the job framework), and the lock that keeps two
    /// writes from starting two builds of one collection.
    context_jobs: Jobs<ContextBuild>,
    context_start: Mutex<()>,
    /// Cluster mode: the work queue builds go on, and the ids of the builds this
    /// node queued (`contexts.rs`).
    context_queue: OnceLock<Arc<dyn ContextQueue>>,
    context_queued: Mutex<HashSet<String>>,
    /// Collections stored before incarnations existed, given one at this open.
    migrated: Vec<String>,
    /// The graphs' dumps: read at open, written in the background and at shutdown.
    dumps: Arc<GraphDumps>,
    /// Cluster mode's replicated log and how far this node applied it (`replicated.rs`).
    replication: crate::replica::Replication,
    /// Cluster mode's scatter/gather, which whole-collection queries go through
    /// (`shard_index.rs`).
    scatter: OnceLock<Arc<dyn crate::replica::ScatterQueries>>,
    /// Cluster mode's route for writes to shards this node does not serve
    /// (`forwarded.rs`).
    forwarder: OnceLock<Arc<dyn crate::replica::ForwardWrites>>,
}

impl Store {
    /// Opens (or creates) the database in `dir` with the real encoders.
    pub fn open(dir: &Path, limits: Limits) -> Result<Self> {
        Self::open_with_loader(dir, limits, Box::new(engram_embedder::encoder_by_name))
    }

    /// Like `open`, with a custom encoder loader (tests use tiny models).
    pub fn open_with_loader(
        dir: &Path,
        limits: Limits,
        loader: Box<EncoderLoader>,
    ) -> Result<Self> {
        let started = Instant::now();
        let storage = Arc::new(Storage::open(dir)?);
        let dumps = Arc::new(GraphDumps::new(dir, storage.clone()));
        let mut seq = storage.last_seq()?;
        let mut collections = HashMap::new();
        let mut migrated = Vec::new();
        for (name, mut config) in storage.collections::<CollectionConfig>()? {
            if config.incarnation == 0 {
                migrated.push(name.clone());
                // Stored before incarnations: this one is the collection's first.
                config.incarnation = new_incarnation();
                let mut batch = storage.batch();
                storage.put_collection(&mut batch, &name, &config);
                storage.commit(batch, true)?;
            }
            let coll = Collection::load(config, &storage, &dumps)?;
            // Concurrent batches may commit their sequence numbers out of order,
            // so the true high-water mark is the largest id actually stored.
            coll.with_chunks(|chunks| {
                seq = seq.max(chunks.keys().copied().max().unwrap_or(0));
            });
            tracing::info!(collection = %name, documents = coll.document_count(), "loaded");
            collections.insert(name, Arc::new(coll));
        }
        dumps.forget_tail();
        // A graph that was rebuilt (or caught up a long way) is dumped at once, in
        // the background, so the next start-up has a recent dump.
        for coll in collections.values() {
            dumps.after_write(coll);
        }
        tracing::info!(
            collections = collections.len(),
            seconds = started.elapsed().as_secs_f64(),
            "database open"
        );
        Ok(Store {
            context_jobs: Jobs::new(storage.clone()),
            context_start: Mutex::new(()),
            context_queue: OnceLock::new(),
            context_queued: Mutex::default(),
            storage,
            collections: RwLock::new(collections),
            encoders: Mutex::new(HashMap::new()),
            loader,
            seq: AtomicU64::new(seq),
            limits,
            migrated,
            dumps,
            replication: Default::default(),
            scatter: OnceLock::new(),
            forwarder: OnceLock::new(),
        })
    }

    /// Collections stored before incarnations existed, given one at this open: the
    /// application adopts what it kept beside them (adapters) for that incarnation.
    pub fn migrated(&self) -> &[String] {
        &self.migrated
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The RocksDB records under the live state (jobs of the service layer read
    /// documents and store their records here).
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// The named encoder, loaded (and its model fetched) on first use.
    pub fn encoder(&self, name: &str) -> Result<Arc<dyn TextEncoder>> {
        let mut encoders = self.encoders.lock().expect("lock");
        if let Some(e) = encoders.get(name) {
            return Ok(e.clone());
        }
        let e = (self.loader)(name)?;
        encoders.insert(name.to_string(), e.clone());
        Ok(e)
    }

    /// The encoder that embeds a collection's text now, and the context version it
    /// stands for (0 for stage one alone). A contextual collection without a context
    /// yet embeds with plain MiniLM, version 0, until its first context is built.
    fn text_encoder(&self, coll: &Collection) -> Result<(Arc<dyn TextEncoder>, u64)> {
        let name = coll.config.embedder.as_deref().ok_or_else(|| {
            Error::conflict(
                "text",
                format!(
                    "collection '{}' has no embedder; use vectors",
                    coll.config.name
                ),
            )
        })?;
        match (EncoderKind::parse(name)?, coll.context()) {
            (EncoderKind::Contextual(_), Some(context)) => {
                let version = context.version;
                let base = engram_embedder::shared_minilm()?;
                Ok((Arc::new(ContextualEncoder::new(base, context)), version))
            }
            (EncoderKind::Contextual(_), None) => Ok((self.encoder(DEFAULT_EMBEDDER)?, 0)),
            (EncoderKind::MiniLm, _) => Ok((self.encoder(name)?, 0)),
        }
    }

    /// What follows a committed write (under its write lock): a compaction in the
    /// background and a contextual collection's first context. Nothing here may fail
    /// the write, which is stored: problems are logged, and a later write retries.
    fn after_commit(&self, coll: &Arc<Collection>) {
        crate::compaction::start(&self.storage, &self.dumps, coll);
        self.dumps.after_write(coll);
        if let Err(e) = self.maybe_start_first_context(coll) {
            tracing::error!(collection = %coll.config.name, error = %e, "cannot start the first corpus context build; recontextualize to retry");
        }
    }

    /// A live collection by name.
    pub fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        self.collections
            .read()
            .expect("lock")
            .get(name)
            .cloned()
            .ok_or_else(|| Error::CollectionNotFound(name.to_string()))
    }

    /// Takes a collection's write lock, then checks the collection was not
    /// deleted (or deleted and re-created) while we waited: writing into a
    /// deleted collection's key range would resurrect data under a new one.
    fn lock_for_write<'a>(
        &self,
        coll: &'a Arc<Collection>,
    ) -> Result<std::sync::MutexGuard<'a, ()>> {
        let guard = coll.write_lock.lock().expect("lock");
        let current = self
            .collections
            .read()
            .expect("lock")
            .get(&coll.config.name)
            .is_some_and(|c| Arc::ptr_eq(c, coll));
        if !current {
            return Err(Error::CollectionNotFound(coll.config.name.clone()));
        }
        Ok(guard)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Creates a collection; creating it again with the same settings is a no-op,
    /// with different settings a conflict.
    pub fn create_collection(&self, name: &str, req: CreateCollection) -> Result<CollectionInfo> {
        validate_name(name)?;
        let embedder = match (&req.embedder, req.dimension) {
            (Some(e), _) if e == "none" => None,
            (Some(e), _) => Some(EncoderKind::parse(e)?.name()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_EMBEDDER.to_string()),
        };
        let dimension = match &embedder {
            Some(e) => {
                let dim = self.encoder(stage_one(e))?.dim();
                if let Some(d) = req.dimension.filter(|d| *d != dim) {
                    return Err(Error::invalid(
                        "dimension",
                        format!("embedder '{e}' makes {dim}-dimensional vectors, not {d}; omit dimension"),
                    ));
                }
                dim
            }
            None => {
                let d = req.dimension.ok_or_else(|| {
                    Error::invalid(
                        "dimension",
                        "a collection without an embedder needs a dimension",
                    )
                })?;
                if d == 0 {
                    return Err(Error::invalid("dimension", "dimension must be at least 1"));
                }
                check(LimitKind::Dimension, d, self.limits.max_dimension)?;
                d
            }
        };
        let hnsw = req.hnsw.unwrap_or_default();
        if !(2..=128).contains(&hnsw.m) || !(1..=4096).contains(&hnsw.ef_construction) {
            return Err(Error::invalid(
                "hnsw",
                "m must be in 2..=128 and ef_construction in 1..=4096",
            ));
        }
        let max = match &embedder {
            Some(e) => self.encoder(stage_one(e))?.max_tokens(),
            None => 256, // no windows to cut: MiniLM's bounds, the widest here
        };
        let chunking = validate::chunking(req.chunking.unwrap_or_default(), max)?;
        let ef_search = req.ef_search.unwrap_or(64);
        check(LimitKind::Ef, ef_search, self.limits.max_ef)?;
        let question_log_size = req
            .question_log_size
            .unwrap_or(crate::questions::DEFAULT_KEEP);
        if !(1..=crate::questions::MAX_KEEP).contains(&question_log_size) {
            return Err(Error::invalid(
                "question_log_size",
                format!(
                    "question_log_size must be between 1 and {}, got {question_log_size}; to keep no questions set \"log_questions\": false",
                    crate::questions::MAX_KEEP
                ),
            ));
        }
        let config = CollectionConfig {
            name: name.to_string(),
            embedder,
            dimension,
            distance: req.distance.unwrap_or_default(),
            durability: req.durability.unwrap_or_default(),
            hnsw: IndexParams { ..hnsw },
            ef_search: ef_search.max(1),
            chunking,
            context: req.context.unwrap_or_default(),
            incarnation: new_incarnation(),
            log_questions: req.log_questions.unwrap_or(true),
            question_log_size,
            shards: crate::collection::shard_count(req.shards)?,
            replication: crate::collection::replication_factor(req.replication)?,
        };
        if self.replication.replicator().is_some() {
            return self.create_replicated(config);
        }
        let mut collections = self.collections.write().expect("lock");
        if let Some(info) = self.same_collection(&collections, &config)? {
            return Ok(info);
        }
        let mut batch = self.storage.batch();
        self.storage.put_collection(&mut batch, name, &config);
        self.storage.commit(batch, true)?;
        let coll = Arc::new(Collection::new(config));
        let out = self.info(&coll);
        collections.insert(name.to_string(), coll);
        Ok(out)
    }

    /// A live collection named as `config` with the same settings: its info; with
    /// other settings: a conflict; none: `None`.
    fn same_collection(
        &self,
        collections: &HashMap<String, Arc<Collection>>,
        config: &CollectionConfig,
    ) -> Result<Option<CollectionInfo>> {
        let Some(existing) = collections.get(&config.name) else {
            return Ok(None);
        };
        let same = CollectionConfig {
            incarnation: existing.incarnation(),
            ..config.clone()
        };
        if existing.config == same {
            return Ok(Some(self.info(existing)));
        }
        Err(Error::CollectionExists(config.name.clone()))
    }

    pub fn list_collections(&self) -> Vec<CollectionInfo> {
        let collections = self.collections.read().expect("lock");
        let mut out: Vec<CollectionInfo> = collections.values().map(|c| self.info(c)).collect();
        out.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        out
    }

    pub fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let coll = self.collection(name)?;
        Ok(self.info(&coll))
    }

    /// Deletes a collection and every record in it, in one synced batch. Files an
    /// application keeps beside the store for the collection are its own to remove
    /// (tied to it by its incarnation). Hit counts and logged questions a query is
    /// flushing are held off across the commit, and never written after it: they
    /// would land in the deleted key range and be loaded by a new collection of the
    /// same name.
    pub fn delete_collection(&self, name: &str) -> Result<()> {
        let coll = self.collection(name)?;
        let deletion = || {
            let mut batch = self.storage.batch();
            self.storage.delete_collection(&mut batch, name);
            batch
        };
        if self.replication.replicator().is_some() {
            let subject = crate::replica::Subject {
                collection: name,
                shard: None,
            };
            return self
                .replicate(subject, Some(&coll), coll.incarnation(), || {
                    Ok(Some(deletion()))
                })
                .map(drop);
        }
        let _writer = self.lock_for_write(&coll)?;
        self.drop_collection(&coll, deletion())
    }

    /// Commits `batch`, which deletes `coll`, and drops the collection from memory
    /// (under its write lock).
    fn drop_collection(&self, coll: &Collection, batch: crate::storage::Batch) -> Result<()> {
        let name = coll.config.name.as_str();
        let mut hits = coll.hits.hold_flushes();
        let mut questions = coll.questions.hold_flushes();
        self.storage.commit(batch, true)?;
        hits.close();
        questions.close();
        coll.deleted.store(true, Ordering::SeqCst);
        self.dumps.remove(name);
        self.collections.write().expect("lock").remove(name);
        Ok(())
    }

    /// The incarnation of the live collection `name` (see
    /// [`CollectionConfig::incarnation`]).
    pub fn incarnation(&self, name: &str) -> Result<u64> {
        Ok(self.collection(name)?.incarnation())
    }

    /// The collection's document clusters ranked by recent query hits (see `hot`).
    pub fn clusters(
        &self,
        name: &str,
        k: Option<usize>,
        top: usize,
    ) -> Result<Vec<crate::hot::ClusterInfo>> {
        let coll = self.collection(name)?;
        if let Some(k) = k.filter(|k| !(1..=256).contains(k)) {
            return Err(Error::invalid(
                "k",
                format!("k must be in 1..=256, got {k}"),
            ));
        }
        let generation = coll.generation();
        let grouping = coll.groupings.get_or_compute(generation, k, || {
            crate::hot::group(&self.storage, &coll, generation, k)
        })?;
        let heat = coll.hits.snapshot();
        let questions = coll.questions.newest_first();
        let top = top.min(20);
        let mut out = crate::hot::clusters(&self.storage, &coll, &grouping, &heat, top)?;
        crate::hot::attach_questions(&mut out, &questions, top);
        Ok(out)
    }

    /// Logs a question asked of `name` that retrieved `ids` (best first) when the
    /// collection keeps questions. Text queries are logged by [`Store::query`]; an
    /// answer that retrieves nothing (weights, full context) logs here.
    pub fn log_question(&self, name: &str, question: &str, ids: &[&str]) -> Result<()> {
        let coll = self.collection(name)?;
        coll.questions.record(&self.storage, name, question, ids);
        Ok(())
    }

    /// The collection's logged questions, newest first.
    pub fn questions(&self, name: &str) -> Result<Vec<crate::questions::LoggedQuestion>> {
        Ok(self.collection(name)?.questions.newest_first())
    }

    /// What a collection is and holds, with its latest context build.
    fn info(&self, coll: &Collection) -> CollectionInfo {
        let index = coll.index();
        let indexed = index.len();
        CollectionInfo {
            config: coll.config.clone(),
            documents: coll.document_count(),
            vectors: coll.chunk_count(),
            indexed_vectors: indexed,
            indexed_shards: coll.scope().to_list(),
            record_shards: coll.records.read().expect("lock").to_list(),
            vector_bytes: indexed * coll.config.dimension * std::mem::size_of::<f32>(),
            index_bytes_per_vector: (index.bytes_per_vector() * 10.0).round() / 10.0,
            quantized: index.is_quantized(),
            keyword_documents: coll.keywords().len(),
            corpus_context: coll.config.embedder.as_deref().and_then(|e| {
                matches!(EncoderKind::parse(e), Ok(EncoderKind::Contextual(_))).then(|| {
                    let context = coll.context();
                    ContextInfo {
                        version: context.as_ref().map_or(0, |c| c.version),
                        sampled_documents: context.as_ref().map_or(0, |c| c.texts),
                        vocabulary: context.as_ref().map_or(0, |c| c.vocabulary()),
                        variant: context.as_ref().map(|c| c.variant.name().to_string()),
                        self_check: context.as_ref().and_then(|c| c.self_check.clone()),
                        job: self.latest_context_build(coll),
                    }
                })
            }),
            note: (coll.config.durability == crate::collection::Durability::Fast).then(|| {
                "durability is 'fast': writes are acknowledged before the disk sync and the last ones can be lost on power failure".to_string()
            }),
        }
    }

    /// A consistent copy of the store's records into `dir` (which must not exist).
    pub fn backup(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            return Err(Error::invalid(
                "path",
                format!("{} already exists; choose a new directory", dir.display()),
            ));
        }
        self.storage.checkpoint(dir)
    }
}

/// The encoder behind an embedder name that stage two builds on.
fn stage_one(embedder: &str) -> &str {
    match EncoderKind::parse(embedder) {
        Ok(EncoderKind::Contextual(_)) => DEFAULT_EMBEDDER,
        _ => embedder,
    }
}

#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod replicated_tests;
#[cfg(test)]
mod shard_copy_tests;
#[cfg(test)]
mod shard_index_tests;
#[cfg(test)]
mod tests;
