//! The store's operations, free of any transport: the REST handlers and the CLI
//! call these. Blocking by design (embedding and fsync are blocking work); the
//! server runs them on tokio's blocking pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use engram_embedder::{ContextualEncoder, EncoderKind, TextEncoder};
use serde_json::Value;

use crate::api_types::*;
use crate::collection::{
    validate_name, Collection, CollectionConfig, ContextJob, DocumentRecord, NewChunk,
};
use crate::error::{Error, LimitKind, Result};
use crate::index::IndexParams;
use crate::keyword::{DocTerms, KeywordUpdate};
use crate::limits::{check, Limits};
use crate::storage::{Storage, VectorRecord};
use crate::validate;

mod adapters;
mod audit;
mod promote;
mod query;

pub use audit::AuditStatus;
pub use promote::{PairInput, PromoteRequest, PromotionPlan, PromotionStatus, QuestionInput};
pub use query::hybrid_depth;

/// The default text encoder of new collections and of `/embed`.
pub const DEFAULT_EMBEDDER: &str = "minilm";

/// Loads text encoders on first use and shares them between collections.
pub type EncoderLoader =
    dyn Fn(&str) -> engram_embedder::Result<Arc<dyn TextEncoder>> + Send + Sync;

/// The database: storage, every collection's live state, and the encoders.
pub struct Engine {
    /// Shared with background context builds.
    storage: Arc<Storage>,
    collections: RwLock<HashMap<String, Arc<Collection>>>,
    encoders: Mutex<HashMap<String, Arc<dyn TextEncoder>>>,
    loader: Box<EncoderLoader>,
    seq: AtomicU64,
    limits: Limits,
    /// The language model of answers, loaded on first use.
    model: crate::answer::ModelSlot,
    /// Where the database lives (RocksDB files, `adapters/`, `promotions/`).
    dir: std::path::PathBuf,
    /// Adapters per collection (`<dir>/adapters`; the registry opens on first use).
    adapters: Option<Arc<crate::adapters::AdapterStore>>,
    audits: Arc<audit::AuditJobs>,
    promotions: promote::PromotionJobs,
}

/// A document after validation and embedding, ready to be written.
struct PreparedDoc {
    id: String,
    text: Option<String>,
    metadata: Value,
    chunks: Vec<VectorRecord>,
    /// The text's BM25 terms (none without text).
    terms: Option<DocTerms>,
}

impl Engine {
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
        let storage = Storage::open(dir)?;
        let mut seq = storage.last_seq()?;
        let mut collections = HashMap::new();
        for (name, config) in storage.collections::<CollectionConfig>()? {
            let coll = Collection::load(config, &storage)?;
            // Concurrent batches may commit their sequence numbers out of order,
            // so the true high-water mark is the largest id actually stored.
            coll.with_chunks(|chunks| {
                seq = seq.max(chunks.keys().copied().max().unwrap_or(0));
            });
            tracing::info!(collection = %name, documents = coll.document_count(), "loaded");
            collections.insert(name, Arc::new(coll));
        }
        tracing::info!(
            collections = collections.len(),
            seconds = started.elapsed().as_secs_f64(),
            "database open"
        );
        Ok(Engine {
            storage: Arc::new(storage),
            collections: RwLock::new(collections),
            encoders: Mutex::new(HashMap::new()),
            loader,
            seq: AtomicU64::new(seq),
            limits,
            model: crate::answer::ModelSlot::smollm2(),
            dir: dir.to_path_buf(),
            adapters: Some(Arc::new(crate::adapters::AdapterStore::new(
                dir.join("adapters"),
            ))),
            audits: Arc::default(),
            promotions: Default::default(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replaces the language model (tests use tiny ones; the default is SmolLM2).
    pub fn with_language_model(mut self, slot: crate::answer::ModelSlot) -> Self {
        self.model = slot;
        self
    }

    /// Where `weights` and `auto` answers find adapters (default `<dir>/adapters`).
    pub fn with_adapters(mut self, adapters: Arc<crate::adapters::AdapterStore>) -> Self {
        self.adapters = Some(adapters);
        self
    }

    pub(crate) fn model_slot(&self) -> &crate::answer::ModelSlot {
        &self.model
    }

    pub(crate) fn adapters(&self) -> Option<&Arc<crate::adapters::AdapterStore>> {
        self.adapters.as_ref()
    }

    pub(crate) fn storage(&self) -> &Storage {
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
            Error::invalid(
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

    /// Starts a background build of the collection's corpus context (and the
    /// re-embedding under it) unless one is running; returns the collection's info.
    pub fn recontextualize(&self, name: &str) -> Result<CollectionInfo> {
        let coll = self.collection(name)?;
        let variant = match coll.config.embedder.as_deref().map(EncoderKind::parse) {
            Some(Ok(EncoderKind::Contextual(v))) => v,
            _ => {
                return Err(Error::invalid(
                    "embedder",
                    format!(
                        "collection '{name}' is not contextual; create one with \"embedder\": \"contextual\""
                    ),
                ))
            }
        };
        if coll.document_count() < 2 {
            return Err(Error::invalid(
                "documents",
                format!("collection '{name}' needs at least 2 documents to build a context"),
            ));
        }
        self.start_context_job(&coll, variant)?;
        Ok(info(&coll))
    }

    /// Spawns the context job unless one is already running for `coll`.
    fn start_context_job(
        &self,
        coll: &Arc<Collection>,
        variant: engram_embedder::Variant,
    ) -> Result<()> {
        {
            let mut job = coll.context_job.lock().expect("lock");
            if job
                .as_ref()
                .is_some_and(|j| j.state == "building" || j.state == "embedding")
            {
                return Ok(());
            }
            *job = Some(ContextJob {
                state: "building".into(),
                done: 0,
                total: coll.document_count(),
                error: None,
            });
        }
        let base = engram_embedder::shared_minilm()?;
        let (storage, coll) = (self.storage.clone(), coll.clone());
        std::thread::Builder::new()
            .name(format!("context-{}", coll.config.name))
            .spawn(move || crate::contextualize::run(&storage, &coll, base, variant))
            .map_err(Error::Io)?;
        Ok(())
    }

    /// After a write: a contextual collection without a context builds its first one
    /// once it holds `context.min_documents` documents.
    fn maybe_start_first_context(&self, coll: &Arc<Collection>) -> Result<()> {
        let Some(Ok(EncoderKind::Contextual(variant))) =
            coll.config.embedder.as_deref().map(EncoderKind::parse)
        else {
            return Ok(());
        };
        let ready = coll.document_count() >= coll.config.context.min_documents.max(2);
        let idle = coll.context_job.lock().expect("lock").is_none();
        if ready && idle && coll.context().is_none() {
            self.start_context_job(coll, variant)?;
        }
        Ok(())
    }

    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>> {
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
        let chunking = req.chunking.unwrap_or_default();
        if let Some(e) = &embedder {
            let max = self.encoder(stage_one(e))?.max_tokens();
            if !(8..=max).contains(&chunking.tokens) || chunking.overlap * 2 > chunking.tokens - 2 {
                return Err(Error::invalid(
                    "chunking",
                    format!("tokens must be in 8..={max} and overlap at most half a window"),
                ));
            }
        }
        let ef_search = req.ef_search.unwrap_or(64);
        check(LimitKind::Ef, ef_search, self.limits.max_ef)?;
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
        };
        let mut collections = self.collections.write().expect("lock");
        if let Some(existing) = collections.get(name) {
            if existing.config == config {
                return Ok(info(existing));
            }
            return Err(Error::CollectionExists(name.to_string()));
        }
        let mut batch = self.storage.batch();
        self.storage.put_collection(&mut batch, name, &config);
        self.storage.commit(batch, true)?;
        let coll = Arc::new(Collection::new(config));
        let out = info(&coll);
        collections.insert(name.to_string(), coll);
        Ok(out)
    }

    pub fn list_collections(&self) -> Vec<CollectionInfo> {
        let collections = self.collections.read().expect("lock");
        let mut out: Vec<CollectionInfo> = collections.values().map(|c| info(c)).collect();
        out.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        out
    }

    pub fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let coll = self.collection(name)?;
        Ok(info(&coll))
    }

    pub fn delete_collection(&self, name: &str) -> Result<()> {
        let coll = self.collection(name)?;
        let _writer = self.lock_for_write(&coll)?;
        let mut batch = self.storage.batch();
        self.storage.delete_collection(&mut batch, name);
        self.storage.commit(batch, true)?;
        coll.deleted.store(true, Ordering::SeqCst);
        self.collections.write().expect("lock").remove(name);
        // Derived files go with the collection, so a new one of the same name starts bare.
        if let Some(store) = &self.adapters {
            store.forget(name)?;
        }
        match std::fs::remove_dir_all(self.promotions_dir(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        Ok(())
    }

    /// Inserts or replaces documents. The whole batch is validated (and embedded)
    /// first; then it is written in one atomic, synced RocksDB batch, so it is
    /// either all there or not at all.
    pub fn upsert(&self, name: &str, docs: Vec<DocumentInput>) -> Result<UpsertResponse> {
        let coll = self.collection(name)?;
        if docs.is_empty() {
            return Err(Error::invalid(
                "documents",
                "the batch is empty; send at least one document",
            ));
        }
        check(LimitKind::BatchSize, docs.len(), self.limits.max_batch)?;
        let (mut prepared, version) = self.prepare(&coll, docs)?;
        let mut keywords = KeywordUpdate::default();
        for doc in &mut prepared {
            keywords.set(&doc.id, doc.terms.take());
        }

        let _writer = self.lock_for_write(&coll)?;
        if version != coll.context_version() {
            // A new corpus context was swapped in while we embedded: vectors of two
            // contexts must never mix in one collection, so embed again with it.
            self.embed_prepared(&coll, &mut prepared)?;
        }
        let seq = self.next_seq();
        let mut batch = self.storage.batch();
        let mut replaced: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut chunk_ids: Vec<Vec<u64>> = Vec::with_capacity(prepared.len());
        let mut max_id = seq;
        for doc in &prepared {
            // Within one batch a later document with the same id replaces the earlier one.
            let old = match replaced.remove(doc.id.as_str()) {
                Some(ids) => ids,
                None => coll.chunks_of(&doc.id),
            };
            for c in &old {
                self.storage.delete_vector(&mut batch, name, *c);
            }
            let ids: Vec<u64> = doc.chunks.iter().map(|_| self.next_seq()).collect();
            for (id, rec) in ids.iter().zip(&doc.chunks) {
                self.storage.put_vector(&mut batch, name, *id, rec);
            }
            max_id = max_id.max(ids.iter().copied().max().unwrap_or(0));
            let record = DocumentRecord {
                text: doc.text.clone(),
                metadata: doc.metadata.clone(),
                chunks: ids.clone(),
                seq,
            };
            self.storage
                .put_document(&mut batch, name, &doc.id, &record);
            replaced.insert(doc.id.as_str(), ids.clone());
            chunk_ids.push(ids);
        }
        coll.keywords()
            .write(&keywords, &self.storage, &mut batch, name);
        self.storage.put_seq(&mut batch, max_id);
        let synced = coll.config.durability == crate::collection::Durability::Sync;
        self.storage.commit(batch, synced)?;

        for (doc, ids) in prepared.iter().zip(&chunk_ids) {
            let new: Vec<NewChunk<'_>> = ids
                .iter()
                .zip(&doc.chunks)
                .map(|(id, rec)| NewChunk {
                    id: *id,
                    vector: &rec.vector,
                })
                .collect();
            coll.apply_upsert(&doc.id, doc.metadata.clone(), &new);
        }
        coll.keywords().apply(keywords);
        coll.maybe_compact(&self.storage)?;
        self.maybe_start_first_context(&coll)?;
        Ok(UpsertResponse {
            ids: prepared.into_iter().map(|d| d.id).collect(),
            seq,
            synced,
        })
    }

    /// Embeds prepared text documents again with the collection's current encoder.
    fn embed_prepared(&self, coll: &Collection, prepared: &mut [PreparedDoc]) -> Result<()> {
        let (encoder, version) = self.text_encoder(coll)?;
        let texts: Vec<&str> = prepared
            .iter()
            .map(|d| d.text.as_deref().unwrap_or(""))
            .collect();
        let chunked = encoder.embed_chunked(&texts, coll.config.chunking)?;
        for (doc, chunks) in prepared.iter_mut().zip(chunked) {
            doc.chunks = chunk_records(&doc.id, chunks, version);
        }
        Ok(())
    }

    /// Validates every document and embeds the text ones (outside any lock).
    /// Returns them with the context version they were embedded under.
    fn prepare(
        &self,
        coll: &Collection,
        docs: Vec<DocumentInput>,
    ) -> Result<(Vec<PreparedDoc>, u64)> {
        let cfg = &coll.config;
        for (i, d) in docs.iter().enumerate() {
            let what = format!("documents[{i}]");
            if let Some(id) = &d.id {
                validate::doc_id(id, &self.limits)
                    .map_err(|e| Error::invalid(&what, e.to_string()))?;
            }
            if let Some(m) = &d.metadata {
                validate::metadata(&what, m, &self.limits)?;
            }
            match (&cfg.embedder, &d.text, &d.vector) {
                (Some(_), Some(t), None) => validate::text(&what, t, &self.limits)?,
                (Some(e), _, Some(_)) => {
                    return Err(Error::invalid(
                        &what,
                        format!(
                            "collection '{}' embeds text with '{e}'; send text, not a vector",
                            cfg.name
                        ),
                    ))
                }
                (Some(_), None, None) => {
                    return Err(Error::invalid(&what, "a text collection needs 'text'"))
                }
                (None, t, Some(v)) => {
                    validate::vector(&what, &cfg.name, v, cfg.dimension, cfg.distance)?;
                    if let Some(t) = t {
                        validate::text(&what, t, &self.limits)?;
                    }
                }
                (None, _, None) => {
                    return Err(Error::invalid(
                        &what,
                        format!(
                            "collection '{}' stores your own vectors; send 'vector'",
                            cfg.name
                        ),
                    ))
                }
            }
        }
        let mut version = 0;
        let chunked: Vec<Vec<VectorRecord>> = match &cfg.embedder {
            Some(_) => {
                let texts: Vec<&str> = docs
                    .iter()
                    .map(|d| d.text.as_deref().unwrap_or(""))
                    .collect();
                let (encoder, v) = self.text_encoder(coll)?;
                version = v;
                encoder
                    .embed_chunked(&texts, cfg.chunking)?
                    .into_iter()
                    .map(|chunks| chunk_records("", chunks, v))
                    .collect()
            }
            None => docs
                .iter()
                .map(|d| {
                    let v = d.vector.clone().expect("validated above");
                    let end = d.text.as_ref().map_or(0, |t| t.len() as u32);
                    vec![VectorRecord {
                        doc_id: String::new(),
                        chunk_index: 0,
                        start: 0,
                        end,
                        vector: v,
                        context: 0,
                    }]
                })
                .collect(),
        };
        let prepared = docs
            .into_iter()
            .zip(chunked)
            .map(|(d, mut chunks)| {
                let id = d.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                for c in &mut chunks {
                    c.doc_id = id.clone();
                }
                PreparedDoc {
                    id,
                    terms: d.text.as_deref().map(DocTerms::from_text),
                    text: d.text,
                    metadata: d.metadata.unwrap_or(Value::Object(Default::default())),
                    chunks,
                }
            })
            .collect();
        Ok((prepared, version))
    }

    pub fn get_document(&self, name: &str, id: &str, with_vectors: bool) -> Result<Document> {
        let coll = self.collection(name)?;
        let rec: DocumentRecord =
            self.storage
                .get_document(name, id)?
                .ok_or_else(|| Error::DocumentNotFound {
                    collection: name.to_string(),
                    id: id.to_string(),
                })?;
        let vectors = if with_vectors {
            let mut out = Vec::with_capacity(rec.chunks.len());
            for c in &rec.chunks {
                if let Some(v) = self.storage.get_vector(&coll.config.name, *c)? {
                    out.push(v.vector);
                }
            }
            Some(out)
        } else {
            None
        };
        Ok(Document {
            id: id.to_string(),
            text: rec.text,
            metadata: rec.metadata,
            chunks: rec.chunks.len(),
            vectors,
        })
    }

    pub fn delete_document(&self, name: &str, id: &str) -> Result<()> {
        let coll = self.collection(name)?;
        let _writer = self.lock_for_write(&coll)?;
        if !coll.contains(id) {
            return Err(Error::DocumentNotFound {
                collection: name.to_string(),
                id: id.to_string(),
            });
        }
        let mut batch = self.storage.batch();
        for c in coll.chunks_of(id) {
            self.storage.delete_vector(&mut batch, name, c);
        }
        self.storage.delete_document(&mut batch, name, id);
        let mut keywords = KeywordUpdate::default();
        keywords.set(id, None);
        coll.keywords()
            .write(&keywords, &self.storage, &mut batch, name);
        let synced = coll.config.durability == crate::collection::Durability::Sync;
        self.storage.commit(batch, synced)?;
        coll.apply_delete(id);
        coll.keywords().apply(keywords);
        coll.maybe_compact(&self.storage)?;
        Ok(())
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
        let heat = coll.hits.snapshot();
        crate::hot::clusters(&self.storage, &coll, &heat, k, top.min(20))
    }

    /// Embeds texts with the named encoder (default MiniLM), one vector per text.
    pub fn embed(&self, req: &EmbedRequest) -> Result<EmbedResponse> {
        if req.texts.is_empty() {
            return Err(Error::invalid("texts", "send at least one text"));
        }
        check(LimitKind::BatchSize, req.texts.len(), self.limits.max_batch)?;
        for (i, t) in req.texts.iter().enumerate() {
            validate::text(&format!("texts[{i}]"), t, &self.limits)?;
        }
        let model = req.model.as_deref().unwrap_or(DEFAULT_EMBEDDER);
        let encoder = self.encoder(model)?;
        let texts: Vec<&str> = req.texts.iter().map(String::as_str).collect();
        Ok(EmbedResponse {
            model: model.to_string(),
            dimension: encoder.dim(),
            vectors: encoder.embed(&texts)?,
        })
    }

    /// Embeds texts as a collection embeds its queries: with its contextual encoder
    /// (and current context) when it has one, so outside vectors match its own.
    pub fn embed_with_collection(&self, name: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let coll = self.collection(name)?;
        if texts.is_empty() {
            return Err(Error::invalid("input", "send at least one text"));
        }
        check(LimitKind::BatchSize, texts.len(), self.limits.max_batch)?;
        for (i, t) in texts.iter().enumerate() {
            validate::text(&format!("input[{i}]"), t, &self.limits)?;
        }
        let (encoder, _) = self.text_encoder(&coll)?;
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(encoder.embed(&texts)?)
    }

    /// A consistent backup of the whole database into `dir` (which must not exist).
    pub fn backup(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            return Err(Error::invalid(
                "path",
                format!("{} already exists; choose a new directory", dir.display()),
            ));
        }
        self.storage.checkpoint(dir)?;
        // Adapters live beside RocksDB as files; a restore moves the whole directory
        // back, so the backup carries them too.
        if let Some(store) = &self.adapters {
            if store.root().is_dir() {
                copy_tree(store.root(), &dir.join("adapters"))?;
            }
        }
        Ok(())
    }
}

/// Copies a directory tree (files and folders only).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The encoder behind an embedder name that stage two builds on.
fn stage_one(embedder: &str) -> &str {
    match EncoderKind::parse(embedder) {
        Ok(EncoderKind::Contextual(_)) => DEFAULT_EMBEDDER,
        _ => embedder,
    }
}

/// Storage records of a document's embedded chunks.
fn chunk_records(
    doc_id: &str,
    chunks: Vec<engram_embedder::Chunk>,
    context: u64,
) -> Vec<VectorRecord> {
    chunks
        .into_iter()
        .map(|c| VectorRecord {
            doc_id: doc_id.to_string(),
            chunk_index: c.index as u32,
            start: c.start as u32,
            end: c.end as u32,
            vector: c.vector,
            context,
        })
        .collect()
}

fn info(coll: &Collection) -> CollectionInfo {
    let index = coll.index();
    let vectors = index.len();
    CollectionInfo {
        config: coll.config.clone(),
        documents: coll.document_count(),
        vectors,
        vector_bytes: vectors * coll.config.dimension * std::mem::size_of::<f32>(),
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
                    job: coll.context_job.lock().expect("lock").clone(),
                }
            })
        }),
        note: (coll.config.durability == crate::collection::Durability::Fast).then(|| {
            "durability is 'fast': writes are acknowledged before the disk sync and the last ones can be lost on power failure".to_string()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine(dir: &Path) -> Engine {
        let no_models: Box<EncoderLoader> =
            Box::new(|name| Err(engram_embedder::Error::UnsupportedModel(name.to_string())));
        Engine::open_with_loader(dir, Limits::default(), no_models).unwrap()
    }

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

    #[test]
    fn selective_filters_still_return_every_match_in_exact_order() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let req = CreateCollection {
            dimension: Some(8),
            ..Default::default()
        };
        e.create_collection("v", req).unwrap();
        let mut rng = 12345u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let docs: Vec<DocumentInput> = (0..3000)
            .map(|i| DocumentInput {
                id: Some(format!("d{i}")),
                vector: Some((0..8).map(|_| next()).collect()),
                metadata: Some(json!({"rare": i % 600 == 7})),
                ..Default::default()
            })
            .collect();
        for batch in docs.chunks(1000) {
            e.upsert("v", batch.to_vec()).unwrap();
        }
        let query: Vec<f32> = (0..8).map(|_| next()).collect();
        let req = QueryRequest {
            vector: Some(query.clone()),
            k: Some(10),
            ef: Some(10),
            filter: Some(json!({"key": "rare", "eq": true})),
            ..Default::default()
        };
        let hits = e.query("v", &req).unwrap().hits;
        let mut expected: Vec<(f32, String)> = docs
            .iter()
            .filter(|d| d.metadata.as_ref().unwrap()["rare"] == json!(true))
            .map(|d| {
                let v = d.vector.as_ref().unwrap();
                (
                    engram_kernels::cosine_similarity(&query, v),
                    d.id.clone().unwrap(),
                )
            })
            .collect();
        expected.sort_by(|a, b| b.0.total_cmp(&a.0));
        let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|(_, id)| id.as_str()).collect();
        // The graph walk goes on through non-matching nodes until it has enough
        // matches, so even a 1-in-600 filter with ef 10 finds every match.
        assert_eq!(got, want, "all 5 matches, best first");
        for (h, (score, _)) in hits.iter().zip(&expected) {
            assert!((h.score - score).abs() < 1e-4);
        }
    }

    #[test]
    fn an_int8_collection_quantizes_after_a_thousand_vectors_and_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let hnsw: IndexParams = serde_json::from_value(json!({"quantization": "int8"})).unwrap();
        assert_eq!(
            (hnsw.m, hnsw.ef_construction),
            (16, 200),
            "the rest default"
        );
        assert_eq!(hnsw, IndexParams::default(), "int8 is the default");
        let f32_only: IndexParams =
            serde_json::from_value(json!({"quantization": "none"})).unwrap();
        let vector = |i: usize| -> Vec<f32> {
            (0..8u64)
                .map(|j| {
                    let x = (i as u64 * 8 + j).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    ((x ^ (x >> 29)) % 10_007) as f32 / 10_007.0 - 0.5
                })
                .collect()
        };
        let docs = |range: std::ops::Range<usize>| -> Vec<DocumentInput> {
            range
                .map(|i| DocumentInput {
                    id: Some(format!("d{i}")),
                    vector: Some(vector(i)),
                    ..Default::default()
                })
                .collect()
        };
        let create = |e: &Engine, name: &str, hnsw: IndexParams| {
            let req = CreateCollection {
                dimension: Some(8),
                hnsw: Some(hnsw),
                ..Default::default()
            };
            e.create_collection(name, req).unwrap();
        };
        {
            let e = engine(dir.path());
            create(&e, "q", hnsw);
            e.upsert("q", docs(0..900)).unwrap();
            assert!(
                !e.collection_info("q").unwrap().quantized,
                "too few to learn a range"
            );
            e.upsert("q", docs(900..1500)).unwrap();
            let info = e.collection_info("q").unwrap();
            assert!(info.quantized);
            // f32 vector + a code row (one cache line at 8 dimensions) + 33 link
            // slots, and the upper layers.
            assert!(info.index_bytes_per_vector >= (32 + 64 + 33 * 4 + 1) as f64);

            create(&e, "f", f32_only);
            e.upsert("f", docs(0..900)).unwrap();
            e.upsert("f", docs(900..1500)).unwrap();
            let info = e.collection_info("f").unwrap();
            assert!(!info.quantized, "opted out");
            assert!(info.index_bytes_per_vector < (32 + 64 + 33 * 4 + 1) as f64);
        }
        let e = engine(dir.path());
        assert!(
            e.collection_info("q").unwrap().quantized,
            "rebuilt quantized"
        );
        let req = QueryRequest {
            vector: Some(vector(1234)),
            k: Some(1),
            ..Default::default()
        };
        let hit = e.query("q", &req).unwrap().hits.remove(0);
        assert_eq!(hit.id, "d1234");
        assert!(
            (hit.score - 1.0).abs() < 1e-5,
            "rescored exactly: {}",
            hit.score
        );
    }

    fn keyword_ids(e: &Engine, text: &str) -> Vec<String> {
        let req = QueryRequest {
            text: Some(text.to_string()),
            mode: Some(QueryMode::Keyword),
            ..Default::default()
        };
        e.query("t", &req)
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect()
    }

    fn doc(id: &str, text: Option<&str>) -> DocumentInput {
        DocumentInput {
            id: Some(id.to_string()),
            text: text.map(String::from),
            vector: Some(vec![1.0, 0.5]),
            ..Default::default()
        }
    }

    #[test]
    fn keyword_index_follows_overwrites_deletes_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = engine(dir.path());
            let req = CreateCollection {
                dimension: Some(2),
                ..Default::default()
            };
            e.create_collection("t", req).unwrap();
            // The same id twice in one batch: the later document wins.
            let batch = vec![
                doc("a", Some("alpha beta")),
                doc("b", Some("alpha")),
                doc("a", Some("gamma")),
            ];
            e.upsert("t", batch).unwrap();
            assert_eq!(keyword_ids(&e, "alpha"), ["b"]);
            assert_eq!(keyword_ids(&e, "gamma"), ["a"]);
            // Text removed by an overwrite without text; then a delete.
            e.upsert("t", vec![doc("a", None)]).unwrap();
            assert!(keyword_ids(&e, "gamma").is_empty());
            e.upsert("t", vec![doc("c", Some("alpha delta"))]).unwrap();
            e.delete_document("t", "b").unwrap();
            assert_eq!(keyword_ids(&e, "alpha"), ["c"]);
        }
        let e = engine(dir.path());
        assert_eq!(keyword_ids(&e, "alpha delta beta gamma"), ["c"]);
        assert_eq!(e.collection("t").unwrap().keywords().len(), 1);
    }

    #[test]
    fn a_database_from_before_keyword_search_gets_its_index_built() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What the store held before keyword search: no `keywords` records.
            let storage = Storage::open(dir.path()).unwrap();
            let e = engine(tempfile::tempdir().unwrap().path());
            let config = e
                .create_collection(
                    "t",
                    CreateCollection {
                        dimension: Some(2),
                        ..Default::default()
                    },
                )
                .unwrap()
                .config;
            let mut batch = storage.batch();
            storage.put_collection(&mut batch, "t", &config);
            for (n, text) in ["old text", "older text"].iter().enumerate() {
                let rec = DocumentRecord {
                    text: Some(text.to_string()),
                    metadata: json!({}),
                    chunks: vec![n as u64 + 1],
                    seq: 1,
                };
                storage.put_document(&mut batch, "t", &format!("d{n}"), &rec);
                let vector = VectorRecord {
                    doc_id: format!("d{n}"),
                    chunk_index: 0,
                    start: 0,
                    end: text.len() as u32,
                    vector: vec![1.0, 0.5],
                    context: 0,
                };
                storage.put_vector(&mut batch, "t", n as u64 + 1, &vector);
            }
            storage.commit(batch, true).unwrap();
        }
        let e = engine(dir.path());
        assert_eq!(keyword_ids(&e, "older"), ["d1"]);
        assert_eq!(keyword_ids(&e, "text").len(), 2);
        drop(e);
        // Built once and stored: a second open loads it.
        let storage = Storage::open(dir.path()).unwrap();
        assert!(storage.keyword_stats("t").unwrap().is_some());
    }
}
