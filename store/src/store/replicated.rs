//! Cluster mode in the store (see `crate::replica` for why it works this way): writes
//! published to the replicated log under a compare-and-set on their shard's subject, and the log's messages applied to the records and the in-memory indexes
//! with the same code the store's own writes use.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use engram_embedder::{CorpusContext, EncoderKind};

use super::Store;
use crate::api::CollectionInfo;
use crate::collection::{Collection, CollectionConfig, DocumentRecord, NewChunk};
use crate::error::{Error, Result};
use crate::keyword::{DocTerms, KeywordUpdate};
use crate::log::{Family, Op};
use crate::replica::{self, Published, Replicator, Subject, APPLIED_KEY, APPLY_WAIT};
use crate::storage::{Batch, VectorChange, VectorRecord};

/// A put into the meta family (a collection's audit reports, job records).
fn is_meta_put(op: &Op) -> bool {
    matches!(
        op,
        Op::Put {
            family: Family::Meta,
            ..
        }
    )
}

impl Store {
    /// Cluster mode from now on: every write goes through `replicator`, and the
    /// caller feeds the log's messages to [`Store::apply_replicated`]. Returns the
    /// last sequence applied here (the follower resumes after it).
    pub fn attach_replicator(&self, replicator: Arc<dyn Replicator>) -> Result<u64> {
        let applied = self.storage.meta_u64(APPLIED_KEY)?;
        self.replication.attach(replicator, applied)?;
        Ok(applied)
    }

    /// The last log sequence applied here (cluster mode; 0 on one machine).
    pub fn applied_seq(&self) -> u64 {
        self.replication.applied()
    }

    /// Waits until this node has applied write `seq` (a query's `min_seq`). On one
    /// machine every acknowledged write is applied, so only an unknown one fails: a
    /// conflict with the server's state (409), not a malformed request, since the same
    /// body succeeds once that write exists.
    pub fn wait_applied(&self, seq: u64) -> Result<()> {
        if self.replication.replicator().is_some() {
            return self.replication.wait_applied(seq, APPLY_WAIT);
        }
        if seq > self.seq.load(Ordering::SeqCst) {
            return Err(Error::conflict(
                "min_seq",
                format!("no write with sequence {seq} was acknowledged by this server"),
            ));
        }
        Ok(())
    }

    /// The last sequence applied on `subject` (a [`Subject::key`]).
    fn subject_seq(&self, subject: &str) -> Result<u64> {
        self.replication.subject(subject, || {
            self.storage.meta_u64(&replica::subject_key(subject))
        })
    }

    /// The next chunk id of a write to shard `shard` of `shards`: above every id this
    /// node has seen and `shard` modulo `shards`. Writers of one shard are ordered by
    /// its compare-and-set, so each has applied every id its shard holds; writers of
    /// different shards pick different residues: ids never collide across nodes.
    pub(super) fn shard_chunk_id(&self, shard: u32, shards: u32) -> u64 {
        let shards = u64::from(shards.max(1));
        let next = |seen: u64| {
            let above = seen + 1;
            above + (u64::from(shard) + shards - above % shards) % shards
        };
        let seen = self
            .seq
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| Some(next(s)))
            .expect("always Some");
        next(seen)
    }

    /// Publishes the batch `build` makes on `subject` (built under `coll`'s write
    /// lock, when given: a creation has no collection yet), provided that nobody wrote
    /// to the subject since this node last applied it; otherwise waits for the other
    /// write to be applied here and builds again. The lock is not held while the log
    /// answers, so writes to other shards go on meanwhile (the compare-and-set refuses
    /// a batch built on a view that moved). Returns the write's sequence once applied
    /// here; `None` when `build` found nothing to write.
    pub(super) fn replicate(
        &self,
        subject: Subject<'_>,
        coll: Option<&Arc<Collection>>,
        incarnation: u64,
        build: impl FnMut() -> Result<Option<Batch>>,
    ) -> Result<Option<u64>> {
        self.replicate_waiting(subject, coll, incarnation, APPLY_WAIT, build)
    }

    /// [`Store::replicate`], waiting up to `wait` for the write to be applied here (a
    /// corpus context's install takes longer than a write's).
    pub(super) fn replicate_waiting(
        &self,
        subject: Subject<'_>,
        coll: Option<&Arc<Collection>>,
        incarnation: u64,
        wait: std::time::Duration,
        mut build: impl FnMut() -> Result<Option<Batch>>,
    ) -> Result<Option<u64>> {
        let replicator = self.replication.replicator().expect("cluster mode").clone();
        let key = subject.key();
        let wait = wait.max(APPLY_WAIT);
        let deadline = Instant::now() + wait;
        loop {
            let (expected, batch) = {
                let _writer = coll.map(|c| self.lock_for_write(c)).transpose()?;
                (self.subject_seq(&key)?, build()?)
            };
            let Some(batch) = batch else {
                return Ok(None);
            };
            match replicator.publish(subject, incarnation, expected, &batch)? {
                Published::Seq(seq) => {
                    self.replication.wait_applied(seq, wait)?;
                    if self.replication.was_skipped(seq) {
                        return Err(Error::CollectionNotFound(subject.collection.to_string()));
                    }
                    return Ok(Some(seq));
                }
                Published::Conflict(last) if Instant::now() < deadline => {
                    // Build again once this node has applied the other writes.
                    let left = deadline.saturating_duration_since(Instant::now());
                    match last {
                        Some(last) => self.replication.wait_applied(last, left)?,
                        None => self.replication.wait_subject_past(&key, expected, left),
                    }
                }
                Published::Conflict(_) => {
                    return Err(Error::Unavailable(format!(
                        "collection '{}' is written through other nodes faster than this node applies their writes; not written after {} s, retry (or write through another node)",
                        subject.collection,
                        wait.as_secs()
                    )))
                }
            }
        }
    }

    /// Stores a leakage audit's record (JSON) in `name`'s meta range, so it goes away
    /// with the collection. On one machine a synced local write; in cluster mode it
    /// is published on the collection's own subject and applied on every node (the
    /// report is collection state: any node serves it, snapshots carry it), and its
    /// sequence is returned so a read on another node can wait for it
    /// ([`Store::wait_applied`]). A collection deleted (or deleted and made again:
    /// not `incarnation` any more) is a 404 either way.
    pub fn put_audit(
        &self,
        name: &str,
        incarnation: u64,
        id: &str,
        json: &[u8],
    ) -> Result<Option<u64>> {
        let coll = self
            .collection(name)
            .ok()
            .filter(|c| c.incarnation() == incarnation)
            .ok_or_else(|| Error::CollectionNotFound(name.to_string()))?;
        let record = || {
            let mut batch = self.storage.batch();
            self.storage.put_audit(&mut batch, name, id, json);
            batch
        };
        if self.replication.replicator().is_none() {
            let _writer = self.lock_for_write(&coll)?;
            self.storage.commit(record(), true)?;
            return Ok(None);
        }
        let subject = Subject {
            collection: name,
            shard: None,
        };
        self.replicate(subject, Some(&coll), coll.incarnation(), || {
            Ok(Some(record()))
        })
    }

    /// Cluster mode's collection creation: published, then applied on every node.
    pub(super) fn create_replicated(&self, config: CollectionConfig) -> Result<CollectionInfo> {
        let name = config.name.clone();
        let subject = Subject {
            collection: &name,
            shard: None,
        };
        let published = self.replicate(subject, None, config.incarnation, || {
            let collections = self.collections.read().expect("lock");
            if self.same_collection(&collections, &config)?.is_some() {
                return Ok(None);
            }
            let mut batch = self.storage.batch();
            self.storage.put_collection(&mut batch, &name, &config);
            Ok(Some(batch))
        })?;
        let info = self.collection_info(&name)?;
        if published.is_some() && info.config.incarnation != config.incarnation {
            return Err(Error::CollectionExists(name));
        }
        Ok(info)
    }

    /// Applies message `seq` of the replicated log, a batch on subject `key` (a
    /// [`Subject::key`]) written for the collection's `incarnation` (0: unknown), to
    /// the records (with the applied sequence, in one RocksDB batch) and to memory. A
    /// message applied before (at or below the applied sequence) is skipped, and so
    /// is a shard's write to a collection this node no longer has in that incarnation
    /// (it lost a race with the deletion; its writer is told). Messages come from one
    /// follower in log order: the applied sequence is stored with each, so two applied
    /// at once could leave the records behind memory.
    pub fn apply_replicated(
        &self,
        seq: u64,
        key: &str,
        incarnation: u64,
        mut batch: Batch,
    ) -> Result<()> {
        if seq <= self.replication.applied() {
            return Ok(());
        }
        let subject = Subject::parse(key)?;
        let name = subject.collection;
        if let Some(shard) = subject.shard {
            let kept = self
                .collection(name)
                .map_or(true, |c| c.records.read().expect("lock").holds_shard(shard));
            if !kept {
                // A shard whose records live on other nodes: only the position moves
                // (not synced, as applied writes are not: a crash only skips it again).
                self.mark_applied_only(key, seq, false)?;
                self.replication.advance(key, seq);
                return Ok(());
            }
        }
        replica::mark_applied(&mut batch, key, seq);
        if subject.shard.is_some() {
            self.apply_to_live(seq, key, incarnation, |coll| {
                self.apply_documents(coll, batch)?;
                self.after_commit(coll);
                Ok(())
            })?;
            self.replication.advance(key, seq);
            return Ok(());
        }
        if let Some(context) = self.context_in(seq, name, &batch)? {
            self.apply_context(seq, key, incarnation, context)?;
            self.replication.advance(key, seq);
            return Ok(());
        }
        let mut created = None;
        let mut dropped = false;
        for op in batch.ops() {
            match op {
                Op::Put {
                    family: Family::Collections,
                    value,
                    ..
                } => created = Some(value.clone()),
                Op::Delete {
                    family: Family::Collections,
                    ..
                } => dropped = true,
                _ => {}
            }
        }
        match (created, dropped) {
            (Some(config), _) => {
                let config: CollectionConfig = serde_json::from_slice(&config).map_err(|e| {
                    Error::Corrupt(format!("log entry {seq}: bad collection config: {e}"))
                })?;
                let mut collections = self.collections.write().expect("lock");
                self.storage.commit(batch, true)?;
                collections.insert(name.to_string(), Arc::new(Collection::new(config)));
            }
            (None, true) => match self.collection(name) {
                Ok(coll) => {
                    let _writer = self.lock_for_write(&coll)?;
                    self.drop_collection(&coll, batch)?;
                }
                Err(_) => {
                    self.storage.commit(batch, true)?;
                }
            },
            // Records of the collection's meta range (an audit's report).
            (None, false) if batch.ops().iter().all(is_meta_put) => {
                self.apply_to_live(seq, key, incarnation, |_| {
                    self.storage.commit(batch, true).map(|_| ())
                })?;
            }
            (None, false) => {
                return Err(Error::Corrupt(format!(
                    "log entry {seq} on collection '{name}' neither creates nor deletes it, nor holds only its meta records"
                )))
            }
        }
        self.replication.advance(key, seq);
        Ok(())
    }

    /// The corpus context message `seq` publishes for collection `name`, if it is one.
    fn context_in(&self, seq: u64, name: &str, batch: &Batch) -> Result<Option<CorpusContext>> {
        for op in batch.ops() {
            if let (Some(VectorChange::Context), Op::Put { value, .. }) =
                (self.storage.vector_change(name, op)?, op)
            {
                return CorpusContext::from_bytes(value).map(Some).map_err(|e| {
                    Error::Corrupt(format!("log entry {seq}: unreadable corpus context: {e}"))
                });
            }
        }
        Ok(None)
    }

    /// Installs a corpus context from the log (see `contexts.rs`): every document of
    /// the collection re-embedded under it, committed with the applied sequence, the
    /// new graph swapped in. Synchronous, so this node applies nothing else (its
    /// follower lags) for as long as the re-embedding takes. A version this node
    /// holds already (a redelivered job published it twice) is skipped: every node
    /// skips the same ones, in log order.
    fn apply_context(
        &self,
        seq: u64,
        key: &str,
        incarnation: u64,
        context: CorpusContext,
    ) -> Result<()> {
        self.apply_to_live(seq, key, incarnation, |coll| {
            let mut marks = self.storage.batch();
            replica::mark_applied(&mut marks, key, seq);
            let contextual = matches!(
                coll.config.embedder.as_deref().map(EncoderKind::parse),
                Some(Ok(EncoderKind::Contextual(_)))
            );
            if !contextual || context.version <= coll.context_version() {
                tracing::info!(seq, collection = %coll.config.name, version = context.version, "a corpus context this node holds (or cannot use): skipped");
                self.storage.commit(marks, true)?;
                return Ok(());
            }
            crate::context_build::install(&self.storage, coll, context, marks)?;
            self.dumps.write_in_background(coll);
            Ok(())
        })
    }

    /// Applies message `seq` on subject `key` with `apply`, under the collection's
    /// write lock, when this node holds the collection as `incarnation` (0: any);
    /// otherwise marks it applied without applying it: a write to a collection this
    /// node no longer has in that incarnation (it lost a race with the deletion; its
    /// writer is told).
    fn apply_to_live(
        &self,
        seq: u64,
        key: &str,
        incarnation: u64,
        apply: impl FnOnce(&Arc<Collection>) -> Result<()>,
    ) -> Result<()> {
        if let Some(coll) = self.live_collection(Subject::parse(key)?.collection, incarnation) {
            let _writer = self.lock_for_write(&coll)?;
            return apply(&coll);
        }
        tracing::info!(
            seq,
            subject = key,
            "a write to a deleted collection: skipped"
        );
        self.mark_applied_only(key, seq, true)?;
        self.replication.skip(seq);
        Ok(())
    }

    /// Collection `name` as a log message of `incarnation` finds it: `None` once
    /// deleted, or deleted and created again (0: a message from before incarnations).
    pub(super) fn live_collection(&self, name: &str, incarnation: u64) -> Option<Arc<Collection>> {
        self.collection(name)
            .ok()
            .filter(|c| incarnation == 0 || c.incarnation() == incarnation)
    }

    /// Commits that message `seq` on subject `key` is applied, with nothing else.
    fn mark_applied_only(&self, key: &str, seq: u64, synced: bool) -> Result<()> {
        let mut marks = self.storage.batch();
        replica::mark_applied(&mut marks, key, seq);
        self.storage.commit(marks, synced).map(|_| ())
    }

    /// Commits a batch of document writes to `coll` and applies it to memory: the
    /// graph, the document map and the keyword index, as the store's own writes do.
    pub(super) fn apply_documents(&self, coll: &Collection, mut batch: Batch) -> Result<()> {
        let name = coll.config.name.as_str();
        let mut vectors = HashMap::new();
        let mut documents = Vec::new();
        for op in batch.ops() {
            if let Some(VectorChange::Put(id, rec)) = self.storage.vector_change(name, op)? {
                vectors.insert(id, rec);
            } else if let Some(change) = self.storage.document_change::<DocumentRecord>(name, op)? {
                documents.push(change);
            }
        }
        self.embed_stale(coll, &documents, &mut vectors, &mut batch)?;
        let mut keywords = KeywordUpdate::default();
        for (id, record) in &documents {
            let terms = record.as_ref().and_then(|r| r.text.as_deref());
            keywords.set(id, terms.map(DocTerms::from_text));
        }
        // The collection's keyword stats as this node counts them (see `write_stats`).
        coll.keywords()
            .write_stats(&keywords, &self.storage, &mut batch, name);
        self.storage.commit(batch, false)?;
        let mut max_id = 0;
        for (id, record) in documents {
            let Some(record) = record else {
                coll.apply_delete(&id);
                continue;
            };
            let mut new = Vec::with_capacity(record.chunks.len());
            for c in &record.chunks {
                let rec = vectors.get(c).ok_or_else(|| {
                    Error::Corrupt(format!("document '{id}' names chunk {c}, not in its batch"))
                })?;
                new.push(NewChunk {
                    id: *c,
                    vector: &rec.vector,
                });
                max_id = max_id.max(*c);
            }
            coll.apply_upsert(&id, record.metadata, &new);
        }
        coll.keywords().apply(keywords);
        // Chunk ids this node hands out next stay above every id in the collection.
        self.seq.fetch_max(max_id, Ordering::SeqCst);
        Ok(())
    }

    /// Embeds again, with the collection's current context, the documents of a write
    /// whose vectors carry an older context version: its writer embedded them before
    /// it applied the context this node has installed. Log order decides which
    /// context a write follows, so every node embeds the same documents again and
    /// holds vectors of one version.
    fn embed_stale(
        &self,
        coll: &Collection,
        documents: &[(String, Option<DocumentRecord>)],
        vectors: &mut HashMap<u64, VectorRecord>,
        batch: &mut Batch,
    ) -> Result<()> {
        let current = coll.context_version();
        let stale: Vec<(&str, &DocumentRecord, &str)> = documents
            .iter()
            .filter_map(|(id, rec)| {
                let rec = rec.as_ref()?;
                let old = rec
                    .chunks
                    .iter()
                    .any(|c| vectors.get(c).is_some_and(|v| v.context < current));
                Some((id.as_str(), rec, rec.text.as_deref().filter(|_| old)?))
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        let (encoder, version) = self.text_encoder(coll)?;
        let texts: Vec<&str> = stale.iter().map(|(_, _, t)| *t).collect();
        let embedded = encoder.embed_chunked(&texts, coll.config.chunking)?;
        tracing::info!(collection = %coll.config.name, documents = stale.len(), version, "a write embedded under an older context: embedded again");
        for ((id, rec, _), chunks) in stale.into_iter().zip(embedded) {
            if chunks.len() != rec.chunks.len() {
                return Err(Error::Corrupt(format!(
                    "document '{id}' has {} chunks in its write but re-embeds into {}",
                    rec.chunks.len(),
                    chunks.len()
                )));
            }
            for (chunk_id, v) in rec
                .chunks
                .iter()
                .zip(VectorRecord::of_chunks(id, chunks, version))
            {
                // After the writer's put of the same key in the batch: this one stands.
                self.storage
                    .put_vector(batch, &coll.config.name, *chunk_id, &v);
                vectors.insert(*chunk_id, v);
            }
        }
        Ok(())
    }
}
