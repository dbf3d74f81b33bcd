//! A collection: its configuration, as stored, and its in-memory state (the
//! vector index, the keyword index, and the maps between documents and chunks
//! that filters and result assembly need). The state is loaded from storage
//! at start-up, the graph from its dump when it has a sound one (`graph_dump`).

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use engram_embedder::{Chunking, CorpusContext};

use crate::error::{Error, Result};
use crate::graph_dump::{GraphDumps, DIRTY};
use crate::hot::{GroupingCache, HitCounter};
use crate::index::{IndexParams, Metric, VectorIndex};
use crate::keyword::{DocTerms, KeywordIndex, KeywordUpdate};
use crate::questions::QuestionLog;
use crate::shard_scope::ShardScope;
use crate::storage::Storage;

/// How hard a write waits for the disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The WAL is synced before the write is acknowledged: survives power loss.
    #[default]
    Sync,
    /// Acknowledged once in the OS page cache: survives a process crash but not
    /// a power loss or kernel crash. Several times faster for small writes.
    Fast,
}

/// A collection's configuration; fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CollectionConfig {
    pub name: String,
    /// The encoder that embeds documents and text queries; `None` for a
    /// bring-your-own-vector collection.
    pub embedder: Option<String>,
    pub dimension: usize,
    pub distance: Metric,
    pub durability: Durability,
    pub hnsw: IndexParams,
    /// Default search breadth for queries that do not set `ef`.
    pub ef_search: usize,
    /// How text documents are cut into windows (tokens per window and overlap).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub chunking: Chunking,
    /// When a contextual collection builds its corpus context.
    #[serde(default)]
    pub context: ContextSettings,
    /// Tells this collection apart from an earlier one of the same name (deleted,
    /// then created again): what lives outside its records (adapters, a promotion in
    /// flight, hit counts being flushed) records or checks it. Random, set at
    /// creation; a collection stored before it existed gets one when opened.
    #[serde(default)]
    pub incarnation: u64,
    /// Whether the questions asked of the collection are logged (see
    /// `crate::questions`); on by default, stored before the log existed included.
    #[serde(default = "yes")]
    pub log_questions: bool,
    /// How many of the newest questions the log keeps.
    #[serde(default = "default_question_log_size")]
    #[schema(minimum = 1, maximum = 10000)]
    pub question_log_size: usize,
    /// Shards of the collection in cluster mode, fixed at creation (a document's
    /// shard is [`shard_of`] its id); one for a collection stored before shards.
    #[serde(default = "one_shard")]
    #[schema(minimum = 1, maximum = 256)]
    pub shards: u32,
    /// Replicas of each shard in cluster mode (placed on that many live nodes, fewer
    /// while fewer are alive); [`DEFAULT_REPLICATION`] for one stored before it.
    #[serde(default = "default_replication")]
    #[schema(minimum = 1, maximum = 16)]
    pub replication: u32,
}

fn default_replication() -> u32 {
    DEFAULT_REPLICATION
}

/// Replicas per shard unless the creation says otherwise: three, so that one dead
/// node leaves two copies (clamped to the live nodes when placed).
pub const DEFAULT_REPLICATION: u32 = 3;
/// The most replicas per shard a creation may ask for.
pub const MAX_REPLICATION: u32 = 16;

/// A creation's replication factor: the default when not given, else within bounds.
pub fn replication_factor(asked: Option<u32>) -> Result<u32> {
    count_within("replication", asked, DEFAULT_REPLICATION, MAX_REPLICATION)
}

fn one_shard() -> u32 {
    1
}

/// Shards of a new collection unless its creation says otherwise: more than the
/// nodes of a small cluster, so that placement can spread them.
pub const DEFAULT_SHARDS: u32 = 8;
/// The most shards a collection may have (a message per shard per write at most).
pub const MAX_SHARDS: u32 = 256;

/// A creation's shard count: the default when not given, else within bounds.
pub fn shard_count(asked: Option<u32>) -> Result<u32> {
    count_within("shards", asked, DEFAULT_SHARDS, MAX_SHARDS)
}

/// `asked`, or `default` when not given; an error naming `what` outside 1..=`max`.
fn count_within(what: &str, asked: Option<u32>, default: u32, max: u32) -> Result<u32> {
    match asked.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(Error::invalid(
            what,
            format!("{what} must be between 1 and {max}, got {n}"),
        )),
    }
}

/// The shard of document `id` among `shards`: FNV-1a of its bytes, so that every
/// node and every version agrees (std's hasher is seeded per process).
pub fn shard_of(id: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// `mask[s]` is true for each of `shards` of collection `name`, which has `count`
/// shards; a shard it does not have is refused (400), naming the range.
pub(crate) fn shard_mask(
    name: &str,
    count: u32,
    shards: impl IntoIterator<Item = u32>,
) -> Result<Vec<bool>> {
    let mut mask = vec![false; count as usize];
    for s in shards {
        let Some(slot) = mask.get_mut(s as usize) else {
            return Err(Error::invalid(
                "shard",
                format!("collection '{name}' has {count} shards (0..{count}), not shard {s}"),
            ));
        };
        *slot = true;
    }
    Ok(mask)
}

fn yes() -> bool {
    true
}

fn default_question_log_size() -> usize {
    crate::questions::DEFAULT_KEEP
}

/// A new random, non-zero incarnation (0 marks a record stored without one).
pub fn new_incarnation() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 | 1
}

/// When and from how much a contextual collection builds its corpus context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ContextSettings {
    /// The first context is built once the collection holds this many documents;
    /// until then documents are embedded by stage one alone (plain MiniLM).
    pub min_documents: usize,
    /// Most documents sampled (evenly over ids) to build a context.
    pub sample: usize,
}

impl Default for ContextSettings {
    fn default() -> Self {
        ContextSettings {
            min_documents: 100,
            sample: 2000,
        }
    }
}

/// What a document looks like on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub text: Option<String>,
    #[serde(default)]
    pub metadata: Value,
    pub chunks: Vec<u64>,
    pub seq: u64,
}

/// What the index needs to know about a document while searching.
#[derive(Debug)]
pub struct DocRef {
    pub id: Arc<str>,
    pub metadata: Value,
}

/// A live document: what filters see, and its chunks.
#[derive(Debug)]
pub struct DocEntry {
    pub doc: Arc<DocRef>,
    pub chunks: Vec<u64>,
}

/// Rebuild the graph when deleted vectors outnumber live ones (and there are enough
/// of them for the rebuild to be worth its cost).
pub(crate) const REBUILD_MIN_TOMBSTONES: usize = 1024;

/// A collection's live state.
pub struct Collection {
    pub config: CollectionConfig,
    index: RwLock<Arc<VectorIndex>>,
    /// document id -> the document and its chunk ids
    docs: RwLock<HashMap<Arc<str>, DocEntry>>,
    /// chunk id -> its document
    chunks: RwLock<HashMap<u64, Arc<DocRef>>>,
    /// BM25 over the documents' texts.
    keywords: KeywordIndex,
    /// Serialises writers of this collection so an upsert's read of the old
    /// chunks and its batch commit cannot interleave with another write.
    pub(crate) write_lock: Mutex<()>,
    /// The corpus context documents are embedded with now (contextual collections).
    context: RwLock<Option<Arc<CorpusContext>>>,
    /// Why the stored corpus context could not be read at start-up, if it could not.
    pub(crate) context_problem: Mutex<Option<String>>,
    /// How often queries returned each document (decayed), for hot clusters.
    pub hits: HitCounter,
    /// The questions asked of it, newest last (bounded; off by setting).
    pub questions: QuestionLog,
    /// Set (under the write lock) when the collection is deleted, so a background
    /// job holding it does not write into a dead or re-created collection.
    pub(crate) deleted: AtomicBool,
    /// Moves on with every change of the documents or their vectors (upsert, delete,
    /// a new corpus context): what cached results derived from them are keyed by.
    generation: AtomicU64,
    /// The latest document clusters (`GET .../clusters`), valid for one generation.
    pub(crate) groupings: GroupingCache,
    /// Set while a compaction builds a new graph in the background (see `compaction`).
    pub(crate) compacting: AtomicBool,
    /// Chunks inserted or removed since the graph was last dumped (or
    /// [`DIRTY`] after a swap or a rebuild): when a dump is due (`graph_dump`).
    pub(crate) graph_changes: AtomicUsize,
    /// Held by the one writer of this collection's dump file.
    pub(crate) dump_lock: Mutex<()>,
    /// Set while a background dump of this collection runs.
    pub(crate) dump_running: AtomicBool,
    /// The shards whose vectors the graph holds (cluster mode: those placed here).
    /// Changed only under the write lock, with the graph that matches it.
    pub(crate) scope: RwLock<ShardScope>,
    /// The shards whose records this node keeps and applies (`crate::shard_scope`):
    /// every shard unless cluster mode narrowed it.
    pub(crate) records: RwLock<ShardScope>,
}

/// A new chunk in memory, after its batch was committed.
pub struct NewChunk<'a> {
    pub id: u64,
    pub vector: &'a [f32],
}

impl Collection {
    pub fn new(config: CollectionConfig) -> Self {
        Self::with_keywords(config, KeywordIndex::new())
    }

    fn with_keywords(config: CollectionConfig, keywords: KeywordIndex) -> Self {
        let index = VectorIndex::new(config.dimension, config.distance, config.hnsw, 1024);
        let questions = QuestionLog::new(config.question_log_size, config.log_questions);
        let keywords = keywords.with_shards(config.shards);
        Collection {
            config,
            index: RwLock::new(Arc::new(index)),
            docs: RwLock::new(HashMap::new()),
            chunks: RwLock::new(HashMap::new()),
            keywords,
            write_lock: Mutex::new(()),
            context: RwLock::new(None),
            context_problem: Mutex::new(None),
            hits: HitCounter::empty(),
            questions,
            deleted: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            groupings: GroupingCache::default(),
            compacting: AtomicBool::new(false),
            graph_changes: AtomicUsize::new(0),
            dump_lock: Mutex::new(()),
            dump_running: AtomicBool::new(false),
            scope: RwLock::new(ShardScope::All),
            records: RwLock::new(ShardScope::All),
        }
    }

    /// See [`CollectionConfig::incarnation`].
    pub fn incarnation(&self) -> u64 {
        self.config.incarnation
    }

    /// See `Collection::generation` (the field).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a background compaction is building a new graph now.
    pub fn is_compacting(&self) -> bool {
        self.compacting.load(Ordering::SeqCst)
    }

    /// The context text is embedded with now, if the collection has one.
    pub fn context(&self) -> Option<Arc<CorpusContext>> {
        self.context.read().expect("lock").clone()
    }

    /// Version of [`Collection::context`] (0: none, stage one alone).
    pub fn context_version(&self) -> u64 {
        self.context().map_or(0, |c| c.version)
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    /// Swaps in a new context and the index of the vectors embedded with it. The
    /// context goes first: a query that embedded with the old context and then finds
    /// a changed version re-embeds (see `Store::query`).
    pub fn swap_context(&self, context: Arc<CorpusContext>, index: VectorIndex) {
        *self.context.write().expect("lock") = Some(context);
        self.swap_index(index);
        self.changed();
    }

    /// Swaps in a graph built aside; callers hold the write lock, so no write lands
    /// in the old graph after they caught the new one up.
    pub(crate) fn swap_index(&self, index: VectorIndex) {
        *self.index.write().expect("lock") = Arc::new(index);
        self.graph_changes.store(DIRTY, Ordering::SeqCst);
    }

    /// Loads documents, the keyword index, the corpus context, the hit counts and the
    /// question log from storage, then the graph: from its dump when sound, else rebuilt
    /// from the vectors (see `graph_dump`). A collection stored before keyword search
    /// existed gets its keyword index built from the documents' texts and written, once.
    pub fn load(config: CollectionConfig, storage: &Storage, dumps: &GraphDumps) -> Result<Self> {
        let name = config.name.clone();
        let stored = KeywordIndex::load(storage, &name)?;
        let mut missing = stored.is_none().then(KeywordUpdate::default);
        let mut coll = Collection::with_keywords(config, stored.unwrap_or_default());
        coll.hits = HitCounter::load(storage, &name)?;
        *coll.records.write().expect("lock") =
            ShardScope::from_list(storage.get_record_shards(&name)?.as_deref());
        coll.questions = QuestionLog::load(
            storage,
            &name,
            coll.config.question_log_size,
            coll.config.log_questions,
        )?;
        let mut with_text = 0;
        {
            let mut docs = coll.docs.write().expect("lock");
            let mut chunks = coll.chunks.write().expect("lock");
            storage.scan_documents::<DocumentRecord>(&name, |id, rec| {
                if let Some(text) = &rec.text {
                    with_text += 1;
                    if let Some(update) = &mut missing {
                        update.set(&id, Some(DocTerms::from_text(text)));
                    }
                }
                let doc = Arc::new(DocRef {
                    id: id.into(),
                    metadata: rec.metadata,
                });
                for c in &rec.chunks {
                    chunks.insert(*c, doc.clone());
                }
                let entry = DocEntry {
                    doc: doc.clone(),
                    chunks: rec.chunks,
                };
                docs.insert(doc.id.clone(), entry);
                Ok(())
            })?;
        }
        if let Some(update) = missing {
            let mut batch = storage.batch();
            coll.keywords.write(&update, storage, &mut batch, &name);
            storage.commit(batch, true)?;
            coll.keywords.apply(update);
            tracing::info!(collection = %name, documents = with_text, "built the keyword index");
        }
        if coll.keywords.len() != with_text {
            return Err(Error::Corrupt(format!(
                "collection '{name}' has {with_text} documents with text but {} in its keyword index",
                coll.keywords.len()
            )));
        }
        if let Some(bytes) = storage.get_context(&name)? {
            match CorpusContext::from_bytes(&bytes) {
                Ok(c) => *coll.context.write().expect("lock") = Some(Arc::new(c)),
                // Keep serving (stage one) and say why; recontextualizing repairs it.
                Err(e) => {
                    tracing::error!(collection = %name, error = %e, "unreadable corpus context");
                    *coll.context_problem.lock().expect("lock") =
                        Some(format!("unreadable corpus context: {e}; recontextualize the collection to repair it"));
                }
            }
        }
        dumps.open_index(&coll)?;
        Ok(coll)
    }

    /// Holds off the collection's writers, its deletion included: a background job
    /// takes it to store a record knowing the collection is not deleted under it.
    pub fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().expect("lock")
    }

    /// Builds a fresh graph from the vectors in storage and swaps it in.
    pub fn rebuild_index(&self, storage: &Storage) -> Result<()> {
        let mut vectors = Vec::new();
        storage.scan_vectors(&self.config.name, |id, rec| {
            vectors.push((id, rec.vector));
            Ok(())
        })?;
        self.swap_index(self.build_index(&vectors));
        Ok(())
    }

    /// A new graph over those of `vectors` its scope holds, with the collection's
    /// settings.
    pub fn build_index(&self, vectors: &[(u64, Vec<f32>)]) -> VectorIndex {
        self.build_scoped_index(&self.scope(), vectors)
    }

    /// Live chunks stored (every shard's, whatever the graph holds).
    pub fn chunk_count(&self) -> usize {
        self.chunks.read().expect("lock").len()
    }

    /// Every live chunk id.
    pub fn live_chunks(&self) -> HashSet<u64> {
        self.chunks.read().expect("lock").keys().copied().collect()
    }

    /// Every document's id and chunk ids, as the collection holds them now.
    pub fn document_chunks(&self) -> HashMap<Arc<str>, Vec<u64>> {
        self.docs
            .read()
            .expect("lock")
            .iter()
            .map(|(id, e)| (id.clone(), e.chunks.clone()))
            .collect()
    }

    pub fn index(&self) -> Arc<VectorIndex> {
        self.index.read().expect("lock").clone()
    }

    /// The BM25 index; writers update it through `KeywordIndex::write` and
    /// `apply`, under the write lock, like the documents.
    pub fn keywords(&self) -> &KeywordIndex {
        &self.keywords
    }

    pub fn document_count(&self) -> usize {
        self.docs.read().expect("lock").len()
    }

    /// The chunk ids a document has now (empty when it does not exist).
    pub fn chunks_of(&self, id: &str) -> Vec<u64> {
        self.docs
            .read()
            .expect("lock")
            .get(id)
            .map(|e| e.chunks.clone())
            .unwrap_or_default()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.docs.read().expect("lock").contains_key(id)
    }

    /// Applies a committed upsert to memory: old chunks become tombstones, new
    /// chunks enter the index.
    pub fn apply_upsert(&self, id: &str, metadata: Value, new_chunks: &[NewChunk<'_>]) {
        let doc = Arc::new(DocRef {
            id: id.into(),
            metadata,
        });
        let ids: Vec<u64> = new_chunks.iter().map(|c| c.id).collect();
        let old = {
            let mut docs = self.docs.write().expect("lock");
            let mut chunks = self.chunks.write().expect("lock");
            for c in &ids {
                chunks.insert(*c, doc.clone());
            }
            let entry = DocEntry {
                doc: doc.clone(),
                chunks: ids,
            };
            let old = docs.insert(doc.id.clone(), entry).map(|e| e.chunks);
            if let Some(old) = &old {
                for c in old {
                    chunks.remove(c);
                }
            }
            old
        };
        let index = self.index();
        let items: Vec<(u64, &[f32])> = new_chunks.iter().map(|c| (c.id, c.vector)).collect();
        let inserted = self.insert_in_scope(&index, &items);
        let removed = old.map_or(0, |old| self.remove_in_scope(&index, &old));
        self.graph_changes
            .fetch_add(inserted + removed, Ordering::SeqCst);
        self.changed();
    }

    /// Applies a committed delete to memory.
    pub fn apply_delete(&self, id: &str) {
        let removed = self
            .docs
            .write()
            .expect("lock")
            .remove(id)
            .map(|e| e.chunks);
        if let Some(old) = removed {
            let mut chunks = self.chunks.write().expect("lock");
            for c in &old {
                chunks.remove(c);
            }
            drop(chunks);
            let removed = self.remove_in_scope(&self.index(), &old);
            self.graph_changes.fetch_add(removed, Ordering::SeqCst);
            self.changed();
        }
    }

    /// Whether tombstones dominate the graph, so that it is worth rebuilding.
    pub fn needs_compaction(&self) -> bool {
        let index = self.index();
        let dead = index.tombstone_count();
        dead >= REBUILD_MIN_TOMBSTONES && dead > index.len()
    }

    /// Runs `f` with the chunk -> document map read-locked (for filters and
    /// for turning chunk hits into document hits).
    pub fn with_chunks<R>(&self, f: impl FnOnce(&HashMap<u64, Arc<DocRef>>) -> R) -> R {
        f(&self.chunks.read().expect("lock"))
    }

    /// Runs `f` with the document map read-locked (for filtering documents
    /// that keyword search found).
    pub fn with_documents<R>(&self, f: impl FnOnce(&HashMap<Arc<str>, DocEntry>) -> R) -> R {
        f(&self.docs.read().expect("lock"))
    }

    /// Average chunks per document, so queries can ask the graph for enough
    /// chunks to fill k distinct documents.
    pub fn chunks_per_doc(&self) -> f64 {
        let docs = self.docs.read().expect("lock").len().max(1);
        let chunks = self.chunks.read().expect("lock").len();
        (chunks as f64 / docs as f64).max(1.0)
    }
}

/// Collection names appear in URLs and storage keys: keep them plain.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidCollectionName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_defaults_to_three_and_is_bounded() {
        assert_eq!(replication_factor(None).unwrap(), 3);
        assert_eq!(replication_factor(Some(1)).unwrap(), 1);
        assert_eq!(replication_factor(Some(16)).unwrap(), 16);
        for bad in [0, 17] {
            let e = replication_factor(Some(bad)).unwrap_err();
            assert!(e.to_string().contains("between 1 and 16"), "{e}");
        }
        // A collection stored before replication factors reads as the default.
        let stored = serde_json::json!({"name": "a", "embedder": null, "dimension": 2,
            "distance": "cosine", "durability": "sync", "hnsw": {}, "ef_search": 64});
        let read: CollectionConfig = serde_json::from_value(stored).unwrap();
        assert_eq!(read.replication, DEFAULT_REPLICATION);
    }

    #[test]
    fn names() {
        for good in ["a", "my_docs-2", &"x".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(65), "a\0b"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
