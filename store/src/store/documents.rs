//! Writes and reads of documents: validation, embedding outside any lock, one
//! atomic batch per request, then the in-memory indexes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::Store;
use crate::api::*;
use crate::collection::{shard_of, Collection, DocumentRecord, NewChunk};
use crate::error::{Error, LimitKind, Result};
use crate::keyword::{DocTerms, KeywordUpdate};
use crate::limits::check;
use crate::replica::Subject;
use crate::storage::{Batch, VectorRecord};
use crate::validate;

/// Threads that publish one upsert's shards side by side, at most.
const PUBLISHERS: usize = 8;

/// A document after validation and embedding, ready to be written.
pub(super) struct PreparedDoc {
    pub(super) id: String,
    pub(super) text: Option<String>,
    pub(super) metadata: Value,
    pub(super) chunks: Vec<VectorRecord>,
    /// The text's BM25 terms (none without text).
    pub(super) terms: Option<DocTerms>,
}

impl Store {
    /// Inserts or replaces documents. The whole batch is validated (and embedded)
    /// first; then it is written in one atomic, synced RocksDB batch, so it is
    /// either all there or not at all. Once that batch is committed the call
    /// succeeds: a retry of a failed one with generated ids would store it twice.
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
        if self.replication.replicator().is_some() {
            // Cluster mode: every node applies the write from the log, this one too.
            let ids = prepared.iter().map(|d| d.id.clone()).collect();
            let seq = self.upsert_replicated(&coll, prepared)?;
            return Ok(UpsertResponse {
                ids,
                seq,
                synced: true,
            });
        }
        let mut keywords = KeywordUpdate::default();
        for doc in &mut prepared {
            keywords.set(&doc.id, doc.terms.take());
        }

        let synced = coll.config.durability == crate::collection::Durability::Sync;
        let _writer = self.lock_for_write(&coll)?;
        if version != coll.context_version() {
            // A new corpus context was swapped in while we embedded: vectors of two
            // contexts must never mix in one collection, so embed again with it.
            self.embed_prepared(&coll, &mut prepared)?;
        }
        let (batch, seq, chunk_ids) = self.upsert_batch(&coll, &prepared, &keywords, None);
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
        self.after_commit(&coll);
        Ok(UpsertResponse {
            ids: prepared.into_iter().map(|d| d.id).collect(),
            seq,
            synced,
        })
    }

    /// Cluster mode's upsert: one message per shard the documents fall in, published
    /// side by side (by up to [`PUBLISHERS`] threads). Each shard's message is atomic;
    /// the batch as a whole is not (a failure names no shard: retry with the same ids).
    /// Returns the highest sequence, which covers them all (see `crate::replica`).
    fn upsert_replicated(&self, coll: &Arc<Collection>, prepared: Vec<PreparedDoc>) -> Result<u64> {
        let mut shards: BTreeMap<u32, (Vec<PreparedDoc>, KeywordUpdate)> = BTreeMap::new();
        for mut doc in prepared {
            let (docs, keywords) = shards
                .entry(shard_of(&doc.id, coll.config.shards))
                .or_default();
            keywords.set(&doc.id, doc.terms.take());
            docs.push(doc);
        }
        let publish = |shard: u32, docs: &[PreparedDoc], keywords: &KeywordUpdate| {
            if self.forwards(coll, shard) {
                return self.forward_upsert(coll, shard, docs);
            }
            self.publish_upsert(coll, shard, docs, keywords)
        };
        let threads = shards.len().min(PUBLISHERS);
        let work = Mutex::new(shards.into_iter());
        let worker = || -> Result<u64> {
            let mut highest = 0;
            loop {
                let next = work.lock().expect("lock").next();
                let Some((shard, (docs, keywords))) = next else {
                    return Ok(highest);
                };
                highest = highest.max(publish(shard, &docs, &keywords)?);
            }
        };
        if threads == 1 {
            return worker();
        }
        std::thread::scope(|s| {
            let running: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
            running
                .into_iter()
                .map(|t| t.join().expect("a publisher panicked"))
                .try_fold(0, |highest, seq| seq.map(|s| highest.max(s)))
        })
    }

    /// Publishes one shard's documents on its subject, built from this node's view of
    /// them (see `crate::replica`). Returns the write's sequence (0: nothing written).
    pub(super) fn publish_upsert(
        &self,
        coll: &Arc<Collection>,
        shard: u32,
        docs: &[PreparedDoc],
        keywords: &KeywordUpdate,
    ) -> Result<u64> {
        let subject = Subject {
            collection: &coll.config.name,
            shard: Some(shard),
        };
        self.replicate(subject, Some(coll), coll.incarnation(), || {
            Ok(Some(self.upsert_batch(coll, docs, keywords, Some(shard)).0))
        })
        .map(Option::unwrap_or_default)
    }

    /// The records of an upsert (under the collection's write lock): the batch, the
    /// write's sequence number and each document's new chunk ids (in cluster mode,
    /// those of `shard`: see `shard_chunk_id`).
    fn upsert_batch(
        &self,
        coll: &Collection,
        prepared: &[PreparedDoc],
        keywords: &KeywordUpdate,
        shard: Option<u32>,
    ) -> (Batch, u64, Vec<Vec<u64>>) {
        let name = coll.config.name.as_str();
        let seq = self.next_seq();
        let mut batch = self.storage.batch();
        let mut replaced: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut chunk_ids: Vec<Vec<u64>> = Vec::with_capacity(prepared.len());
        let mut max_id = seq;
        for doc in prepared {
            // Within one batch a later document with the same id replaces the earlier one.
            let old = match replaced.remove(doc.id.as_str()) {
                Some(ids) => ids,
                None => coll.chunks_of(&doc.id),
            };
            for c in &old {
                self.storage.delete_vector(&mut batch, name, *c);
            }
            let ids: Vec<u64> = doc
                .chunks
                .iter()
                .map(|_| match shard {
                    Some(s) => self.shard_chunk_id(s, coll.config.shards),
                    None => self.next_seq(),
                })
                .collect();
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
            .write(keywords, &self.storage, &mut batch, name);
        self.storage.put_seq(&mut batch, max_id);
        (batch, seq, chunk_ids)
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
            doc.chunks = VectorRecord::of_chunks(&doc.id, chunks, version);
        }
        Ok(())
    }

    /// Validates every document and embeds the text ones (outside any lock).
    /// Returns them with the context version they were embedded under.
    pub(super) fn prepare(
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
                    return Err(Error::conflict(
                        &what,
                        format!(
                            "collection '{}' embeds text with '{e}'; send text, not a vector",
                            cfg.name
                        ),
                    ))
                }
                (Some(_), None, None) => {
                    return Err(Error::conflict(&what, "a text collection needs 'text'"))
                }
                (None, t, Some(v)) => {
                    validate::vector(&what, &cfg.name, v, cfg.dimension, cfg.distance)?;
                    if let Some(t) = t {
                        validate::text(&what, t, &self.limits)?;
                    }
                }
                (None, _, None) => {
                    return Err(Error::conflict(
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
                    .map(|chunks| VectorRecord::of_chunks("", chunks, v))
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

    /// A document by id. In cluster mode one whose shard this node's graph does not
    /// hold is read by a node placed on that shard (the nodes that keep its records).
    pub fn get_document(&self, name: &str, id: &str, with_vectors: bool) -> Result<Document> {
        let coll = self.collection(name)?;
        if let Some((scatter, shard)) = self.read_elsewhere(&coll, id) {
            return scatter.get_document(name, shard, id, with_vectors);
        }
        self.get_document_here(name, id, with_vectors)
    }

    /// A document's record (text, metadata, chunk ids, write sequence), for the jobs
    /// that read documents by id (a promotion's documents, a logged question's
    /// passages, an adapter's staleness); None when it is not there, or the
    /// collection is not. In cluster mode one whose shard this node's graph does not
    /// hold is read by a node placed on that shard, as [`Store::get_document`].
    pub fn document_record(&self, name: &str, id: &str) -> Result<Option<DocumentRecord>> {
        let coll = match self.collection(name) {
            Ok(coll) => coll,
            Err(Error::CollectionNotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some((scatter, shard)) = self.read_elsewhere(&coll, id) {
            return scatter.document_record(name, shard, id);
        }
        self.storage.get_document(name, id)
    }

    /// The text span (byte offsets) of chunk `chunk` of document `id`, read where the
    /// document's shard is kept (as [`Store::document_record`]); None when it is not
    /// stored.
    pub fn chunk_span(&self, name: &str, id: &str, chunk: u64) -> Result<Option<(u32, u32)>> {
        let coll = self.collection(name)?;
        if let Some((scatter, shard)) = self.read_elsewhere(&coll, id) {
            return scatter.chunk_span(name, shard, chunk);
        }
        self.chunk_span_here(name, chunk)
    }

    /// [`Store::chunk_span`] from this node's own records.
    pub fn chunk_span_here(&self, name: &str, chunk: u64) -> Result<Option<(u32, u32)>> {
        Ok(self
            .storage
            .get_vector(name, chunk)?
            .map(|v| (v.start, v.end)))
    }

    /// A document by id from this node's own records.
    pub fn get_document_here(&self, name: &str, id: &str, with_vectors: bool) -> Result<Document> {
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
        let shard = shard_of(id, coll.config.shards);
        if self.forwards(&coll, shard) {
            return self.forward_delete(&coll, shard, id).map(drop);
        }
        self.delete_here(&coll, shard, id).map(drop)
    }

    /// [`Store::delete_document`] by this node (`shard` is the document's): in
    /// cluster mode published from its view of the document. Returns the write's
    /// sequence (0 on one machine).
    pub(super) fn delete_here(&self, coll: &Arc<Collection>, shard: u32, id: &str) -> Result<u64> {
        let name = coll.config.name.as_str();
        let mut keywords = KeywordUpdate::default();
        keywords.set(id, None);
        let build = || {
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
            coll.keywords()
                .write(&keywords, &self.storage, &mut batch, name);
            Ok(batch)
        };
        if self.replication.replicator().is_some() {
            let subject = Subject {
                collection: name,
                shard: Some(shard),
            };
            return self
                .replicate(subject, Some(coll), coll.incarnation(), || {
                    build().map(Some)
                })
                .map(Option::unwrap_or_default);
        }
        let _writer = self.lock_for_write(coll)?;
        let batch = build()?;
        let synced = coll.config.durability == crate::collection::Durability::Sync;
        self.storage.commit(batch, synced)?;
        coll.apply_delete(id);
        coll.keywords().apply(keywords);
        self.after_commit(coll);
        Ok(0)
    }
}
