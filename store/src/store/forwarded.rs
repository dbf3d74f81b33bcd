//! Cluster mode: a write to a shard this node does not serve goes to a node that
//! does, which publishes it.
//!
//! Why: a shard's batches are built from their writer's view of its documents (which
//! chunks a replaced document had, its old postings: `crate::replica`), so the nodes
//! that build them are the ones placed on the shard, whose view follows it. The node
//! a client reaches still validates and embeds (the costly part, spread over every
//! node); it hands the prepared documents to one replica of the shard and waits until
//! it has applied the write itself, so a client reads its own writes on the node it
//! talks to, as before. A node that serves every shard (one machine, or placed on all
//! of them) forwards nothing.
//!
//! The wire form is the store's own (the transport only moves bytes): a version byte,
//! the kind, the collection's incarnation, then for an upsert each document as a JSON
//! header (id, text, metadata, chunk count) followed by its chunks in the vector
//! records' storage encoding, and for a delete the document's id.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::documents::PreparedDoc;
use super::Store;
use crate::collection::{shard_of, Collection};
use crate::error::{Error, Result};
use crate::keyword::{DocTerms, KeywordUpdate};
use crate::replica::{ForwardWrites, APPLY_WAIT};
use crate::storage::VectorRecord;

/// The wire form's version: a node that reads another version refuses the write.
const VERSION: u8 = 1;
const UPSERT: u8 = 0;
const DELETE: u8 = 1;

/// A forwarded write, as the node serving its shard reads it.
pub(super) enum Forwarded {
    Upsert {
        incarnation: u64,
        docs: Vec<PreparedDoc>,
    },
    Delete {
        incarnation: u64,
        id: String,
    },
}

/// A document's fields besides its chunks, on the wire.
#[derive(Deserialize)]
struct Header {
    id: String,
    text: Option<String>,
    metadata: Value,
    chunks: u32,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn head(kind: u8, incarnation: u64) -> Vec<u8> {
    let mut out = vec![VERSION, kind];
    out.extend_from_slice(&incarnation.to_le_bytes());
    out
}

pub(super) fn encode_upsert(incarnation: u64, docs: &[PreparedDoc]) -> Vec<u8> {
    let mut out = head(UPSERT, incarnation);
    out.extend_from_slice(&(docs.len() as u32).to_le_bytes());
    for doc in docs {
        let header = serde_json::json!({
            "id": doc.id,
            "text": doc.text,
            "metadata": doc.metadata,
            "chunks": doc.chunks.len(),
        });
        put_bytes(&mut out, &serde_json::to_vec(&header).expect("JSON"));
        for chunk in &doc.chunks {
            put_bytes(&mut out, &chunk.encode());
        }
    }
    out
}

pub(super) fn encode_delete(incarnation: u64, id: &str) -> Vec<u8> {
    let mut out = head(DELETE, incarnation);
    put_bytes(&mut out, id.as_bytes());
    out
}

/// Reads the wire form front to back; any shortfall is a malformed write.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::invalid("forwarded write", "truncated"));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<Forwarded> {
    let bad = |what: &str| Error::invalid("forwarded write", what.to_string());
    let mut r = Reader(bytes);
    let (version, kind) = (r.take(1)?[0], r.take(1)?[0]);
    if version != VERSION {
        return Err(bad(&format!(
            "wire version {version}, this node reads {VERSION}: run one Engram version on every node"
        )));
    }
    let incarnation = r.u64()?;
    let write = match kind {
        UPSERT => {
            let n = r.u32()?;
            let mut docs = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                let h: Header = serde_json::from_slice(r.bytes()?)
                    .map_err(|e| bad(&format!("a document's header: {e}")))?;
                let chunks = (0..h.chunks)
                    .map(|_| VectorRecord::decode(r.bytes()?))
                    .collect::<Result<Vec<_>>>()?;
                docs.push(PreparedDoc {
                    terms: h.text.as_deref().map(DocTerms::from_text),
                    id: h.id,
                    text: h.text,
                    metadata: h.metadata,
                    chunks,
                });
            }
            Forwarded::Upsert { incarnation, docs }
        }
        DELETE => {
            let id = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| bad("a non-UTF-8 id"))?;
            Forwarded::Delete { incarnation, id }
        }
        other => return Err(bad(&format!("unknown kind {other}"))),
    };
    if !r.0.is_empty() {
        return Err(bad("bytes after the end"));
    }
    Ok(write)
}

impl Store {
    /// From now on writes to shards this node does not serve go through `forwarder`
    /// (cluster mode; set once).
    pub fn attach_forwarder(&self, forwarder: Arc<dyn ForwardWrites>) {
        let _ = self.forwarder.set(forwarder);
    }

    /// Whether a write to `shard` of `coll` goes to another node: one is attached to
    /// take it and this node's graph does not hold the shard (`crate::shard_scope`:
    /// the scope follows the placement).
    pub(super) fn forwards(&self, coll: &Collection, shard: u32) -> bool {
        self.forwarder.get().is_some() && !coll.scope().holds_shard(shard)
    }

    pub(super) fn forward_upsert(
        &self,
        coll: &Collection,
        shard: u32,
        docs: &[PreparedDoc],
    ) -> Result<u64> {
        self.forward(coll, shard, encode_upsert(coll.incarnation(), docs))
    }

    pub(super) fn forward_delete(&self, coll: &Collection, shard: u32, id: &str) -> Result<u64> {
        self.forward(coll, shard, encode_delete(coll.incarnation(), id))
    }

    /// Sends `write` to a node serving `shard` and waits until this node has applied
    /// the sequence it answers with.
    fn forward(&self, coll: &Collection, shard: u32, write: Vec<u8>) -> Result<u64> {
        let forwarder = self.forwarder.get().expect("checked by `forwards`");
        let seq = forwarder.forward(&coll.config.name, shard, write)?;
        if seq > 0 {
            self.replication.wait_applied(seq, APPLY_WAIT)?;
        }
        Ok(seq)
    }

    /// Builds and publishes a write another node forwarded for `shard` of `name`
    /// (see the module's doc), whatever this node serves now: a write is forwarded
    /// once, never again. Returns its sequence (0: nothing to write). A collection
    /// deleted, or deleted and created again since the write was sent, is a 404.
    pub fn write_forwarded(&self, name: &str, shard: u32, write: &[u8]) -> Result<u64> {
        if self.replication.replicator().is_none() {
            return Err(Error::Unavailable(
                "a forwarded write reached a node that is not in cluster mode".into(),
            ));
        }
        let coll = self.collection(name)?;
        if !coll.records.read().expect("lock").holds_shard(shard) {
            // Built from records this node no longer keeps (the shard moved away while
            // the write was on its way), it could not see the document it replaces.
            return Err(Error::Unavailable(format!(
                "shard {shard} of '{name}' is no longer kept on the node the write reached; retry"
            )));
        }
        let live = |incarnation: u64| {
            if incarnation == coll.incarnation() {
                Ok(())
            } else {
                Err(Error::CollectionNotFound(name.to_string()))
            }
        };
        let in_shard = |id: &str| {
            if shard_of(id, coll.config.shards) == shard {
                Ok(())
            } else {
                Err(Error::invalid(
                    "forwarded write",
                    format!("document '{id}' is not in shard {shard}"),
                ))
            }
        };
        match decode(write)? {
            Forwarded::Upsert {
                incarnation,
                mut docs,
            } => {
                live(incarnation)?;
                let mut keywords = KeywordUpdate::default();
                for doc in &mut docs {
                    in_shard(&doc.id)?;
                    keywords.set(&doc.id, doc.terms.take());
                }
                self.publish_upsert(&coll, shard, &docs, &keywords)
            }
            Forwarded::Delete { incarnation, id } => {
                live(incarnation)?;
                in_shard(&id)?;
                self.delete_here(&coll, shard, &id)
            }
        }
    }
}

#[cfg(test)]
#[path = "forwarded_tests.rs"]
mod tests;
