//! RocksDB, the source of truth. Every write is one atomic `WriteBatch`; a write
//! is acknowledged only after RocksDB has synced its WAL (unless the collection
//! chose `durability: fast`), so an acknowledged write survives `kill -9`.
//!
//! Layout, one column family per kind of record:
//! - `collections`: name -> collection config (JSON)
//! - `documents`:   name \0 doc id -> document record (JSON: text, metadata, chunk ids)
//! - `vectors`:     name \0 chunk id (u64 big-endian) -> vector record (binary)
//! - `meta`:        "seq" -> the last sequence number used (u64 big-endian)
//! - `keywords`:    the BM25 inverted index of each collection's texts:
//!   name \0 'p' term \0 doc id -> term frequency (u32 LE), one posting per key;
//!   name \0 'n' doc id -> the document's length in terms (u32 LE);
//!   name \0 's' -> collection stats: documents, total terms (two u64 LE).
//!   Written in the same batch as the document, so the index can never
//!   disagree with the documents after a crash.

use std::path::Path;

use rocksdb::{
    checkpoint::Checkpoint, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

const CF_COLLECTIONS: &str = "collections";
const CF_DOCUMENTS: &str = "documents";
const CF_VECTORS: &str = "vectors";
const CF_META: &str = "meta";
const CF_KEYWORDS: &str = "keywords";
const SEQ_KEY: &[u8] = b"seq";
/// Meta key (inside a collection's range) of its corpus context.
const CONTEXT_KEY: &[u8] = b"context";
/// Meta key prefix (inside a collection's range) of per-document hit counts.
const HITS_PREFIX: &[u8] = b"hits\0";
/// Meta key prefix (inside a collection's range) of leakage audit records.
const AUDIT_PREFIX: &[u8] = b"audit\0";

/// One stored chunk vector and the document it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    pub doc_id: String,
    pub chunk_index: u32,
    pub start: u32,
    pub end: u32,
    pub vector: Vec<f32>,
    /// Version of the corpus context the vector was embedded with (0: none).
    pub context: u64,
}

/// Set in a record's id-length field when a context version follows the header.
/// Records written before versions existed lack it and read as version 0.
const HAS_CONTEXT: u32 = 1 << 31;

impl VectorRecord {
    fn encode(&self) -> Vec<u8> {
        let id = self.doc_id.as_bytes();
        let mut out = Vec::with_capacity(24 + id.len() + 4 * self.vector.len());
        out.extend_from_slice(&(id.len() as u32 | HAS_CONTEXT).to_le_bytes());
        out.extend_from_slice(id);
        for x in [self.chunk_index, self.start, self.end] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&self.context.to_le_bytes());
        for x in &self.vector {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt("vector record is truncated".into());
        let u32_at = |at: usize| -> Result<u32> {
            let b = bytes.get(at..at + 4).ok_or_else(corrupt)?;
            Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let header = u32_at(0)?;
        let id_len = (header & !HAS_CONTEXT) as usize;
        let id = bytes.get(4..4 + id_len).ok_or_else(corrupt)?;
        let doc_id = String::from_utf8(id.to_vec())
            .map_err(|_| Error::Corrupt("vector record has a non-UTF-8 document id".into()))?;
        let mut at = 4 + id_len;
        let (chunk_index, start, end) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
        at += 12;
        let mut context = 0;
        if header & HAS_CONTEXT != 0 {
            let b = bytes.get(at..at + 8).ok_or_else(corrupt)?;
            context = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            at += 8;
        }
        let floats = &bytes[at..];
        if !floats.len().is_multiple_of(4) {
            return Err(corrupt());
        }
        let vector = floats
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        Ok(VectorRecord {
            doc_id,
            chunk_index,
            start,
            end,
            vector,
            context,
        })
    }
}

/// Tags of the three kinds of keyword records (they sort 'n' < 'p' < 's', so a
/// scan sees every document length before any posting).
const KW_LENGTH: u8 = b'n';
const KW_POSTING: u8 = b'p';
const KW_STATS: u8 = b's';

/// A collection's keyword-index totals, the N and average length of BM25.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeywordStats {
    pub documents: u64,
    pub total_terms: u64,
}

impl KeywordStats {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.documents.to_le_bytes());
        v.extend_from_slice(&self.total_terms.to_le_bytes());
        v
    }

    fn decode(value: &[u8]) -> Result<Self> {
        let (a, b) = value
            .split_at_checked(8)
            .filter(|(_, b)| b.len() == 8)
            .ok_or_else(|| Error::Corrupt("keyword stats are not 16 bytes".into()))?;
        Ok(KeywordStats {
            documents: u64::from_le_bytes(a.try_into().expect("8 bytes")),
            total_terms: u64::from_le_bytes(b.try_into().expect("8 bytes")),
        })
    }
}

/// One record of a collection's keyword index, as scanned at start-up.
#[derive(Debug, Clone, PartialEq)]
pub enum KeywordRecord {
    Length { doc: String, terms: u32 },
    Posting { term: String, doc: String, tf: u32 },
    Stats(KeywordStats),
}

fn posting_key(coll: &str, term: &str, doc: &str) -> Vec<u8> {
    let mut rest = Vec::with_capacity(2 + term.len() + doc.len());
    rest.push(KW_POSTING);
    rest.extend_from_slice(term.as_bytes());
    rest.push(0);
    rest.extend_from_slice(doc.as_bytes());
    key(coll, &rest)
}

fn length_key(coll: &str, doc: &str) -> Vec<u8> {
    let mut rest = Vec::with_capacity(1 + doc.len());
    rest.push(KW_LENGTH);
    rest.extend_from_slice(doc.as_bytes());
    key(coll, &rest)
}

fn u32_value(v: &[u8]) -> Result<u32> {
    let b: [u8; 4] = v
        .try_into()
        .map_err(|_| Error::Corrupt("keyword record value is not 4 bytes".into()))?;
    Ok(u32::from_le_bytes(b))
}

impl KeywordRecord {
    /// Parses a key (after the collection prefix) and its value.
    fn decode(rest: &[u8], value: &[u8]) -> Result<Self> {
        let utf8 = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .map_err(|_| Error::Corrupt("keyword record is not UTF-8".into()))
        };
        match rest.split_first() {
            Some((&KW_LENGTH, doc)) => Ok(KeywordRecord::Length {
                doc: utf8(doc)?,
                terms: u32_value(value)?,
            }),
            Some((&KW_POSTING, term_doc)) => {
                let at = term_doc
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| Error::Corrupt("posting key has no separator".into()))?;
                Ok(KeywordRecord::Posting {
                    term: utf8(&term_doc[..at])?,
                    doc: utf8(&term_doc[at + 1..])?,
                    tf: u32_value(value)?,
                })
            }
            Some((&KW_STATS, [])) => Ok(KeywordRecord::Stats(KeywordStats::decode(value)?)),
            _ => Err(Error::Corrupt("unknown keyword record".into())),
        }
    }
}

/// Key of a record inside a collection: the name, a NUL, then the record key.
/// Collection names never contain NUL, so prefixes never collide.
fn key(collection: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(collection.len() + 1 + rest.len());
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// [start, end) covering every key of one collection.
fn collection_range(collection: &str) -> (Vec<u8>, Vec<u8>) {
    let start = key(collection, b"");
    let mut end = collection.as_bytes().to_vec();
    end.push(1);
    (start, end)
}

/// The store's handle on RocksDB.
pub struct Storage {
    db: DB,
}

/// A batch of changes committed atomically by `Storage::commit`.
pub struct Batch {
    inner: WriteBatch,
}

impl Storage {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        let cfs = [
            CF_COLLECTIONS,
            CF_DOCUMENTS,
            CF_VECTORS,
            CF_META,
            CF_KEYWORDS,
        ]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(Storage { db })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    pub fn batch(&self) -> Batch {
        Batch {
            inner: WriteBatch::default(),
        }
    }

    /// Writes the batch atomically. With `sync`, returns only once the WAL is on
    /// disk; that is what makes an acknowledged write survive a crash.
    pub fn commit(&self, batch: Batch, sync: bool) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch.inner, &opts)?;
        Ok(())
    }

    pub fn last_seq(&self) -> Result<u64> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META), SEQ_KEY)?
            .map(|b| u64::from_be_bytes(b.as_slice().try_into().unwrap_or([0; 8])))
            .unwrap_or(0))
    }

    pub fn put_seq(&self, batch: &mut Batch, seq: u64) {
        batch
            .inner
            .put_cf(self.cf(CF_META), SEQ_KEY, seq.to_be_bytes());
    }

    pub fn put_collection<T: Serialize>(&self, batch: &mut Batch, name: &str, config: &T) {
        let json = serde_json::to_vec(config).expect("configs serialise");
        batch.inner.put_cf(self.cf(CF_COLLECTIONS), name, json);
    }

    /// Removes a collection and every record in it, in the same batch.
    pub fn delete_collection(&self, batch: &mut Batch, name: &str) {
        batch.inner.delete_cf(self.cf(CF_COLLECTIONS), name);
        let (start, end) = collection_range(name);
        for cf in [CF_DOCUMENTS, CF_VECTORS, CF_KEYWORDS, CF_META] {
            batch.inner.delete_range_cf(self.cf(cf), &start, &end);
        }
    }

    pub fn collections<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_COLLECTIONS), IteratorMode::Start)
        {
            let (k, v) = item?;
            let name = String::from_utf8(k.to_vec())
                .map_err(|_| Error::Corrupt("collection name is not UTF-8".into()))?;
            out.push((name, decode_json(&v)?));
        }
        Ok(out)
    }

    /// Stores a collection's corpus context (serialised), replacing the previous one.
    pub fn put_context(&self, batch: &mut Batch, coll: &str, bytes: &[u8]) {
        batch
            .inner
            .put_cf(self.cf(CF_META), key(coll, CONTEXT_KEY), bytes);
    }

    /// The collection's stored corpus context, if it has one.
    pub fn get_context(&self, coll: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_META), key(coll, CONTEXT_KEY))?)
    }

    /// Stores a document's decayed hit count (statistics: batched, not synced).
    pub fn put_hits(&self, batch: &mut Batch, coll: &str, doc: &str, bytes: &[u8]) {
        let mut rest = HITS_PREFIX.to_vec();
        rest.extend_from_slice(doc.as_bytes());
        batch
            .inner
            .put_cf(self.cf(CF_META), key(coll, &rest), bytes);
    }

    /// Every stored hit count of a collection: document id and the stored bytes.
    pub fn scan_hits(
        &self,
        coll: &str,
        mut each: impl FnMut(&str, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.scan(CF_META, coll, |rest, v| {
            match rest.strip_prefix(HITS_PREFIX) {
                Some(doc) => each(&String::from_utf8_lossy(doc), v),
                None => Ok(()),
            }
        })
    }

    /// Stores a leakage audit record (JSON) under its id, synced: reports survive restarts.
    pub fn put_audit(&self, coll: &str, id: &str, json: &[u8]) -> Result<()> {
        let mut k = AUDIT_PREFIX.to_vec();
        k.extend_from_slice(id.as_bytes());
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_cf_opt(self.cf(CF_META), key(coll, &k), json, &opts)?;
        Ok(())
    }

    /// Every audit record of a collection: id and the stored JSON, in id order.
    pub fn scan_audits(
        &self,
        coll: &str,
        mut each: impl FnMut(&str, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.scan(CF_META, coll, |rest, v| {
            match rest.strip_prefix(AUDIT_PREFIX) {
                Some(id) => each(&String::from_utf8_lossy(id), v),
                None => Ok(()),
            }
        })
    }

    pub fn put_document<T: Serialize>(&self, batch: &mut Batch, coll: &str, id: &str, doc: &T) {
        let json = serde_json::to_vec(doc).expect("documents serialise");
        batch
            .inner
            .put_cf(self.cf(CF_DOCUMENTS), key(coll, id.as_bytes()), json);
    }

    pub fn delete_document(&self, batch: &mut Batch, coll: &str, id: &str) {
        batch
            .inner
            .delete_cf(self.cf(CF_DOCUMENTS), key(coll, id.as_bytes()));
    }

    pub fn get_document<T: DeserializeOwned>(&self, coll: &str, id: &str) -> Result<Option<T>> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_DOCUMENTS), key(coll, id.as_bytes()))?
        {
            Some(v) => Ok(Some(decode_json(&v)?)),
            None => Ok(None),
        }
    }

    pub fn put_vector(&self, batch: &mut Batch, coll: &str, chunk_id: u64, rec: &VectorRecord) {
        batch.inner.put_cf(
            self.cf(CF_VECTORS),
            key(coll, &chunk_id.to_be_bytes()),
            rec.encode(),
        );
    }

    pub fn delete_vector(&self, batch: &mut Batch, coll: &str, chunk_id: u64) {
        batch
            .inner
            .delete_cf(self.cf(CF_VECTORS), key(coll, &chunk_id.to_be_bytes()));
    }

    pub fn get_vector(&self, coll: &str, chunk_id: u64) -> Result<Option<VectorRecord>> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_VECTORS), key(coll, &chunk_id.to_be_bytes()))?
        {
            Some(v) => Ok(Some(VectorRecord::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Records that `doc` has `tf` occurrences of `term`.
    pub fn put_posting(&self, batch: &mut Batch, coll: &str, term: &str, doc: &str, tf: u32) {
        batch.inner.put_cf(
            self.cf(CF_KEYWORDS),
            posting_key(coll, term, doc),
            tf.to_le_bytes(),
        );
    }

    pub fn delete_posting(&self, batch: &mut Batch, coll: &str, term: &str, doc: &str) {
        batch
            .inner
            .delete_cf(self.cf(CF_KEYWORDS), posting_key(coll, term, doc));
    }

    /// Records that `doc` is in the keyword index with `terms` terms.
    pub fn put_keyword_length(&self, batch: &mut Batch, coll: &str, doc: &str, terms: u32) {
        batch.inner.put_cf(
            self.cf(CF_KEYWORDS),
            length_key(coll, doc),
            terms.to_le_bytes(),
        );
    }

    pub fn delete_keyword_length(&self, batch: &mut Batch, coll: &str, doc: &str) {
        batch
            .inner
            .delete_cf(self.cf(CF_KEYWORDS), length_key(coll, doc));
    }

    pub fn put_keyword_stats(&self, batch: &mut Batch, coll: &str, stats: KeywordStats) {
        batch
            .inner
            .put_cf(self.cf(CF_KEYWORDS), key(coll, &[KW_STATS]), stats.encode());
    }

    /// The collection's keyword stats; `None` when its keyword index was never
    /// written (a database from before keyword search).
    pub fn keyword_stats(&self, coll: &str) -> Result<Option<KeywordStats>> {
        self.db
            .get_pinned_cf(self.cf(CF_KEYWORDS), key(coll, &[KW_STATS]))?
            .map(|v| KeywordStats::decode(&v))
            .transpose()
    }

    /// Every keyword record of a collection: lengths, then postings, then stats.
    pub fn scan_keywords(
        &self,
        coll: &str,
        mut each: impl FnMut(KeywordRecord) -> Result<()>,
    ) -> Result<()> {
        self.scan(CF_KEYWORDS, coll, |rest, v| {
            each(KeywordRecord::decode(rest, v)?)
        })
    }

    /// Every document of a collection, in key order (used at start-up).
    pub fn scan_documents<T: DeserializeOwned>(
        &self,
        coll: &str,
        mut each: impl FnMut(String, T) -> Result<()>,
    ) -> Result<()> {
        self.scan(CF_DOCUMENTS, coll, |rest, v| {
            let id = String::from_utf8(rest.to_vec())
                .map_err(|_| Error::Corrupt("document id is not UTF-8".into()))?;
            each(id, decode_json(v)?)
        })
    }

    /// Every chunk vector of a collection (used to rebuild the index).
    pub fn scan_vectors(
        &self,
        coll: &str,
        mut each: impl FnMut(u64, VectorRecord) -> Result<()>,
    ) -> Result<()> {
        self.scan(CF_VECTORS, coll, |rest, v| {
            let id: [u8; 8] = rest
                .try_into()
                .map_err(|_| Error::Corrupt("chunk key is not 8 bytes".into()))?;
            each(u64::from_be_bytes(id), VectorRecord::decode(v)?)
        })
    }

    fn scan(
        &self,
        cf: &str,
        coll: &str,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let (start, end) = collection_range(coll);
        let iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if k.as_ref() >= end.as_slice() {
                break;
            }
            each(&k[start.len()..], &v)?;
        }
        Ok(())
    }

    /// A consistent copy of the whole database in `dir` (hard links where the
    /// file system allows), safe to take while the server is writing.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        self.db.flush_wal(true)?;
        Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }
}

fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("bad JSON record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_records_round_trip() {
        let rec = VectorRecord {
            doc_id: "döc-1".into(),
            chunk_index: 3,
            start: 10,
            end: 99,
            vector: vec![0.5, -1.25, f32::MIN_POSITIVE],
            context: 7,
        };
        assert_eq!(VectorRecord::decode(&rec.encode()).unwrap(), rec);
        assert!(VectorRecord::decode(&rec.encode()[..5]).is_err());
        // A record from before context versions: no flag, no version, reads as 0.
        let mut legacy = (6u32).to_le_bytes().to_vec();
        legacy.extend_from_slice("döc-1".as_bytes());
        for x in [3u32, 10, 99] {
            legacy.extend_from_slice(&x.to_le_bytes());
        }
        for x in &rec.vector {
            legacy.extend_from_slice(&x.to_le_bytes());
        }
        let old = VectorRecord::decode(&legacy).unwrap();
        assert_eq!(old, VectorRecord { context: 0, ..rec });
    }

    #[test]
    fn collections_are_isolated_and_deleted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let mut b = s.batch();
        for coll in ["a", "ab"] {
            s.put_collection(&mut b, coll, &serde_json::json!({"n": coll}));
            s.put_document(&mut b, coll, "x", &serde_json::json!({"t": 1}));
            let rec = VectorRecord {
                doc_id: "x".into(),
                chunk_index: 0,
                start: 0,
                end: 0,
                vector: vec![1.0],
                context: 0,
            };
            s.put_vector(&mut b, coll, 7, &rec);
        }
        s.put_seq(&mut b, 42);
        s.commit(b, true).unwrap();
        assert_eq!(s.last_seq().unwrap(), 42);

        let mut b = s.batch();
        s.delete_collection(&mut b, "a");
        s.commit(b, true).unwrap();
        let names: Vec<String> = s
            .collections::<serde_json::Value>()
            .unwrap()
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(names, vec!["ab"]);
        let mut n = 0;
        s.scan_vectors("a", |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 0);
        s.scan_vectors("ab", |id, _| {
            assert_eq!(id, 7);
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
        assert!(s
            .get_document::<serde_json::Value>("ab", "x")
            .unwrap()
            .is_some());
    }
}
