//! One shard of a collection copied whole from a node that keeps it to a node newly
//! placed on it, a shard's records dropped from a node it moved away from, and the
//! shards whose records a node keeps ([`Store::keep_shard_records`]: the follower
//! applies only their writes, `replicated.rs`).
//!
//! Why: once a node keeps only the records of the shards placed on it, a shard that
//! placement moves to a node must arrive with its records, and the node it left
//! must let them go. The export is consistent at one point of the write log (taken
//! under the collection's write lock, which every applied write of the collection
//! takes too, so [`ShardExport::seq`] is exact: every write up to it is in the copy,
//! none after it); the importing node then applies the shard's writes after that
//! sequence from the log. The copy carries the stored vectors (no re-embedding) and
//! the texts; keyword postings are computed again from the texts, as every replica
//! computes them when it applies a write.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::Store;
use crate::collection::{shard_mask, shard_of, DocumentRecord, NewChunk};
use crate::error::{Error, Result};
use crate::keyword::{DocTerms, KeywordUpdate};
use crate::replica::{Subject, APPLIED_KEY};
use crate::shard_scope::ShardScope;
use crate::storage::{Batch, VectorRecord};

/// A document of an exported shard with its chunks' vectors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardDocument {
    pub id: String,
    pub record: DocumentRecord,
    pub chunks: Vec<ShardChunk>,
}

/// A stored chunk: its id and its vector record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardChunk {
    pub id: u64,
    pub chunk_index: u32,
    pub start: u32,
    pub end: u32,
    pub vector: Vec<f32>,
    /// The corpus context version it was embedded under.
    pub context: u64,
}

/// What an export was taken at.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardExport {
    /// The collection's incarnation: a copy of another incarnation is refused.
    pub incarnation: u64,
    /// The last write-log message the copy reflects.
    pub seq: u64,
    /// Its vectors' corpus context version.
    pub context: u64,
    pub documents: u64,
}

impl Store {
    /// Every document of `shard` of collection `name` with its chunks' vectors, in id
    /// order, given to `each`; the collection's writes wait meanwhile (see the module
    /// comment), so the copy is that of one point of the log.
    pub fn export_shard(
        &self,
        name: &str,
        shard: u32,
        mut each: impl FnMut(ShardDocument) -> Result<()>,
    ) -> Result<ShardExport> {
        let coll = self.collection(name)?;
        let shards = coll.config.shards;
        shard_mask(name, shards, [shard])?;
        let _writer = self.lock_for_write(&coll)?;
        let seq = self.storage.meta_u64(APPLIED_KEY)?;
        let mut documents = 0;
        self.storage
            .scan_documents::<DocumentRecord>(name, |id, record| {
                if shard_of(&id, shards) != shard {
                    return Ok(());
                }
                let mut chunks = Vec::with_capacity(record.chunks.len());
                for &c in &record.chunks {
                    let v = self.storage.get_vector(name, c)?.ok_or_else(|| {
                        Error::Corrupt(format!(
                            "document '{id}' names chunk {c}, which is not stored"
                        ))
                    })?;
                    chunks.push(ShardChunk {
                        id: c,
                        chunk_index: v.chunk_index,
                        start: v.start,
                        end: v.end,
                        vector: v.vector,
                        context: v.context,
                    });
                }
                documents += 1;
                each(ShardDocument { id, record, chunks })
            })?;
        Ok(ShardExport {
            incarnation: coll.incarnation(),
            seq,
            context: coll.context_version(),
            documents,
        })
    }

    /// Writes `docs`, documents of `shard` exported by another node for `export`, into
    /// collection `name` here (records, vectors, keyword postings, graph). Called page
    /// by page, into a node that holds none of the shard's documents (a copy started
    /// again drops what the last one wrote first: [`Store::drop_shard_records`]); a
    /// document already here, a copy of another incarnation of the collection, or one
    /// with vectors of another corpus context is refused.
    pub fn import_shard(
        &self,
        name: &str,
        shard: u32,
        export: &ShardExport,
        docs: Vec<ShardDocument>,
    ) -> Result<()> {
        let coll = self.collection(name)?;
        let shards = coll.config.shards;
        if export.incarnation != coll.incarnation() {
            return Err(Error::conflict(
                "incarnation",
                format!("the copy of shard {shard} is of another collection '{name}' (deleted and created again); copy it again"),
            ));
        }
        if let Some(d) = docs.iter().find(|d| shard_of(&d.id, shards) != shard) {
            return Err(Error::invalid(
                "shard copy",
                format!("document '{}' is not in shard {shard}", d.id),
            ));
        }
        let _writer = self.lock_for_write(&coll)?;
        if export.context != coll.context_version() {
            return Err(Error::Unavailable(format!(
                "the copy of shard {shard} of '{name}' was embedded under corpus context {}, this node holds {}; copy it again once both have the same",
                export.context,
                coll.context_version()
            )));
        }
        if let Some(d) = docs.iter().find(|d| coll.contains(&d.id)) {
            return Err(Error::conflict(
                "shard copy",
                format!("document '{}' of shard {shard} is here already: drop the shard's records before copying it", d.id),
            ));
        }
        let mut batch = self.storage.batch();
        let mut keywords = KeywordUpdate::default();
        let mut max_id = 0;
        for d in &docs {
            for c in &d.chunks {
                let rec = VectorRecord {
                    doc_id: d.id.clone(),
                    chunk_index: c.chunk_index,
                    start: c.start,
                    end: c.end,
                    vector: c.vector.clone(),
                    context: c.context,
                };
                self.storage.put_vector(&mut batch, name, c.id, &rec);
                max_id = max_id.max(c.id);
            }
            self.storage
                .put_document(&mut batch, name, &d.id, &d.record);
            keywords.set(&d.id, d.record.text.as_deref().map(DocTerms::from_text));
        }
        coll.keywords()
            .write(&keywords, &self.storage, &mut batch, name);
        self.storage.commit(batch, true)?;
        for d in docs {
            let new: Vec<NewChunk<'_>> = d
                .chunks
                .iter()
                .map(|c| NewChunk {
                    id: c.id,
                    vector: &c.vector,
                })
                .collect();
            coll.apply_upsert(&d.id, d.record.metadata.clone(), &new);
        }
        coll.keywords().apply(keywords);
        self.seq.fetch_max(max_id, Ordering::SeqCst);
        self.after_commit(&coll);
        Ok(())
    }

    /// Applies message `seq` of the log, a write to shard `key` (`NAME.SHARD`), to a
    /// copy of that shard imported here and not kept yet: the copy's tail, the
    /// shard's writes after the copy's sequence that this node's follower passed over
    /// while the copy was exported and imported (it only advanced its applied
    /// sequence then). Neither the applied sequence nor the subject's moves: both are
    /// at or past `seq` already. A write to a collection deleted, or created again,
    /// since is skipped, as the follower skips it.
    pub fn apply_shard_tail(
        &self,
        seq: u64,
        key: &str,
        incarnation: u64,
        batch: Batch,
    ) -> Result<()> {
        let subject = Subject::parse(key)?;
        let shard = subject.shard.ok_or_else(|| {
            Error::invalid(
                "shard tail",
                format!("message {seq} on '{key}' is not a shard's"),
            )
        })?;
        let Some(coll) = self.live_collection(subject.collection, incarnation) else {
            return Ok(());
        };
        if coll.records.read().expect("lock").holds_shard(shard) {
            return Err(Error::conflict(
                "shard tail",
                format!("shard {shard} of '{}' is kept here already: its writes are applied as they come", subject.collection),
            ));
        }
        let _writer = self.lock_for_write(&coll)?;
        self.apply_documents(&coll, batch)?;
        self.after_commit(&coll);
        Ok(())
    }

    /// Readies collection `name` for a copy of `shard`: drops what an earlier copy cut
    /// short left ([`Store::drop_shard_records`]), then lets the graph hold the shard
    /// (empty until the copy's pages arrive), so that [`Store::import_shard`] inserts
    /// each page's vectors as it writes them, as applying the shard's writes would,
    /// instead of a rebuild of the whole graph once the copy is in.
    pub fn begin_shard_import(&self, name: &str, shard: u32) -> Result<()> {
        self.drop_shard_records(name, shard)?;
        let coll = self.collection(name)?;
        let _writer = self.lock_for_write(&coll)?;
        let count = coll.config.shards;
        let mut held = coll.scope().shards(count);
        if held.insert(shard) {
            coll.set_scope(ShardScope::of(&held, count));
        }
        Ok(())
    }

    /// From now on this node keeps and applies the records of `shards` of collection
    /// `name` alone (all of them when `shards` covers every shard); the log's writes
    /// to other shards only advance its applied sequence. Stored, so a restart keeps
    /// it. The caller moves the records: it copies a shard in
    /// ([`Store::import_shard`]) before adding it, and drops one
    /// ([`Store::drop_shard_records`]) after taking it out.
    pub fn keep_shard_records(&self, name: &str, shards: &BTreeSet<u32>) -> Result<()> {
        self.change_record_shards(name, |kept| *kept = shards.clone())
    }

    /// [`Store::keep_shard_records`] with the shards kept now as `change` leaves them
    /// (read and written under the collection's write lock).
    pub fn change_record_shards(
        &self,
        name: &str,
        change: impl FnOnce(&mut BTreeSet<u32>),
    ) -> Result<()> {
        let coll = self.collection(name)?;
        let count = coll.config.shards;
        let _writer = self.lock_for_write(&coll)?;
        let mut kept = coll.records.read().expect("lock").shards(count);
        change(&mut kept);
        let scope = ShardScope::of(&kept, count);
        let mut batch = self.storage.batch();
        self.storage
            .put_record_shards(&mut batch, name, scope.to_list().as_deref());
        self.storage.commit(batch, true)?;
        *coll.records.write().expect("lock") = scope;
        Ok(())
    }

    /// The shards whose records this node keeps of collection `name`.
    pub fn record_shards(&self, name: &str) -> Result<ShardScope> {
        Ok(self.collection(name)?.records.read().expect("lock").clone())
    }

    /// Removes every record of `shard` of collection `name` from this node (a shard
    /// placement moved away, or a copy started again): documents, vectors, keyword
    /// postings and their graph nodes. Returns how many documents went.
    pub fn drop_shard_records(&self, name: &str, shard: u32) -> Result<usize> {
        let coll = self.collection(name)?;
        let shards = coll.config.shards;
        let _writer = self.lock_for_write(&coll)?;
        let mut ids = Vec::new();
        self.storage
            .scan_documents::<DocumentRecord>(name, |id, rec| {
                if shard_of(&id, shards) == shard {
                    ids.push((id, rec.chunks));
                }
                Ok(())
            })?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut batch = self.storage.batch();
        let mut keywords = KeywordUpdate::default();
        for (id, chunks) in &ids {
            for c in chunks {
                self.storage.delete_vector(&mut batch, name, *c);
            }
            self.storage.delete_document(&mut batch, name, id);
            keywords.set(id, None);
        }
        coll.keywords()
            .write(&keywords, &self.storage, &mut batch, name);
        self.storage.commit(batch, true)?;
        for (id, _) in &ids {
            coll.apply_delete(id);
        }
        coll.keywords().apply(keywords);
        drop(_writer);
        // A graph without the shard's nodes, rather than with them tombstoned: a copy
        // of the shard brings the same chunk ids back, which a tombstone would hide.
        while coll.compacting.swap(true, Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let rebuilt = crate::compaction::rebuild(&self.storage, &coll, coll.scope(), || {});
        coll.compacting.store(false, Ordering::SeqCst);
        rebuilt?;
        self.dumps.write_in_background(&coll);
        Ok(ids.len())
    }
}
