//! The store's records: reads straight from RocksDB, writes as one [`Batch`] per
//! change through the write log (`crate::log`). A write is acknowledged only after
//! the log has made it durable (RocksDB's synced WAL on one machine, unless the
//! collection chose `durability: fast`), so an acknowledged write survives `kill -9`.
//!
//! Layout, one record family (column family) per kind of record:
//! - `collections`: name -> collection config (JSON)
//! - `documents`:   name \0 doc id -> document record (JSON: text, metadata, chunk ids)
//! - `vectors`:     name \0 chunk id (u64 big-endian) -> vector record (binary)
//! - `meta`:        "seq" -> the last sequence number used (u64 big-endian); and per
//!   collection (name \0 ...): its corpus context, hit counts, question log, audit
//!   and job records, all deleted with the collection's range.
//! - `keywords`:    the BM25 inverted index of each collection's texts:
//!   name \0 'p' term \0 doc id -> term frequency (u32 LE), one posting per key;
//!   name \0 'n' doc id -> the document's length in terms (u32 LE);
//!   name \0 's' -> collection stats: documents, total terms (two u64 LE).
//!   Written in the same batch as the document, so the index can never
//!   disagree with the documents after a crash.
//! - `log`: the embedded write log's recent entries (see `log::embedded`).
//!
//! The encodings of vector and keyword records are in `records.rs`.

mod records;

use records::{collection_range, key, length_key, posting_key, KW_STATS};
pub use records::{KeywordRecord, KeywordStats, VectorRecord};

use std::ops::ControlFlow;
use std::path::Path;

use std::sync::Arc;

use rocksdb::{
    checkpoint::Checkpoint, ColumnFamilyDescriptor, Direction, IteratorMode, Options, DB,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
pub use crate::log::Batch;
use crate::log::{EmbeddedLog, Family, Op, WriteLog};

const SEQ_KEY: &[u8] = b"seq";
/// Meta key (inside a collection's range) of its corpus context.
const CONTEXT_KEY: &[u8] = b"context";
/// Meta key (inside a collection's range) of the shards whose records a cluster node
/// keeps, when not all (a JSON list).
const RECORD_SHARDS_KEY: &[u8] = b"record_shards";
/// Meta key prefix (inside a collection's range) of per-document hit counts.
const HITS_PREFIX: &[u8] = b"hits\0";
/// Meta key prefix (inside a collection's range) of the question log: then the
/// entry's number (u64 big-endian, so keys sort oldest first).
const QUESTIONS_PREFIX: &[u8] = b"questions\0";
/// Meta key prefix (inside a collection's range) of leakage audit records.
const AUDIT_PREFIX: &[u8] = b"audit\0";
/// Meta key prefix (inside a collection's range) of job records: then the kind, a
/// NUL and the job id.
const JOB_PREFIX: &[u8] = b"job\0";

/// The store's handle on its records and its write log.
pub struct Storage {
    db: Arc<DB>,
    log: Box<dyn WriteLog>,
}

impl Storage {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        let cfs = Family::ALL
            .iter()
            .map(|f| f.name())
            .chain([crate::log::embedded::LOG_FAMILY])
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?);
        let log = EmbeddedLog::open(db.clone(), crate::log::embedded::DEFAULT_RETAINED_BYTES)?;
        Ok(Storage {
            db,
            log: Box::new(log),
        })
    }

    fn cf(&self, family: Family) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(family.name())
            .expect("column families are created at open")
    }

    pub fn batch(&self) -> Batch {
        Batch::default()
    }

    /// Writes the batch atomically through the write log and returns its sequence
    /// number there. With `sync`, returns only once it is on disk; that is what
    /// makes an acknowledged write survive a crash.
    pub fn commit(&self, batch: Batch, sync: bool) -> Result<u64> {
        self.log.append(batch, sync)
    }

    /// The write log (start-up reads the writes after a graph dump from it).
    pub fn log(&self) -> &dyn WriteLog {
        &*self.log
    }

    /// What a logged operation does to collection `coll`'s chunk vectors or corpus
    /// context, the records its graph is derived from; `None` for any other record.
    pub fn vector_change(&self, coll: &str, op: &Op) -> Result<Option<VectorChange>> {
        let (start, end) = collection_range(coll);
        let ours = |k: &[u8]| k.starts_with(&start);
        Ok(match op {
            Op::Put {
                family: Family::Vectors,
                key,
                value,
            } if ours(key) => Some(VectorChange::Put(
                chunk_id(&key[start.len()..])?,
                VectorRecord::decode(value)?,
            )),
            Op::Delete {
                family: Family::Vectors,
                key,
            } if ours(key) => Some(VectorChange::Delete(chunk_id(&key[start.len()..])?)),
            Op::Put {
                family: Family::Meta,
                key: k,
                ..
            } if *k == key(coll, CONTEXT_KEY) => Some(VectorChange::Context),
            Op::DeleteRange {
                family: Family::Vectors,
                start: s,
                end: e,
            } => (s.as_slice() < end.as_slice() && e.as_slice() > start.as_slice())
                .then_some(VectorChange::Dropped),
            _ => None,
        })
    }

    /// What a logged operation does to collection `coll`'s documents: the id and the
    /// new record for a put, the id and `None` for a delete; `None` for other records.
    pub fn document_change<T: DeserializeOwned>(
        &self,
        coll: &str,
        op: &Op,
    ) -> Result<Option<(String, Option<T>)>> {
        let (start, _) = collection_range(coll);
        let id = |k: &[u8]| {
            String::from_utf8(k[start.len()..].to_vec())
                .map_err(|_| Error::Corrupt("document id is not UTF-8".into()))
        };
        Ok(match op {
            Op::Put {
                family: Family::Documents,
                key,
                value,
            } if key.starts_with(&start) => Some((id(key)?, Some(decode_json(value)?))),
            Op::Delete {
                family: Family::Documents,
                key,
            } if key.starts_with(&start) => Some((id(key)?, None)),
            _ => None,
        })
    }

    /// A big-endian u64 stored in the meta records under `key` (0 when absent).
    pub fn meta_u64(&self, key: &[u8]) -> Result<u64> {
        Ok(self
            .db
            .get_cf(self.cf(Family::Meta), key)?
            .map(|b| u64::from_be_bytes(b.as_slice().try_into().unwrap_or([0; 8])))
            .unwrap_or(0))
    }

    pub fn last_seq(&self) -> Result<u64> {
        self.meta_u64(SEQ_KEY)
    }

    pub fn put_seq(&self, batch: &mut Batch, seq: u64) {
        batch.put(Family::Meta, SEQ_KEY, seq.to_be_bytes().to_vec());
    }

    pub fn put_collection<T: Serialize>(&self, batch: &mut Batch, name: &str, config: &T) {
        let json = serde_json::to_vec(config).expect("configs serialise");
        batch.put(Family::Collections, name.as_bytes(), json);
    }

    /// Removes a collection and every record in it, in the same batch.
    pub fn delete_collection(&self, batch: &mut Batch, name: &str) {
        batch.delete(Family::Collections, name.as_bytes());
        let (start, end) = collection_range(name);
        for family in [
            Family::Documents,
            Family::Vectors,
            Family::Keywords,
            Family::Meta,
        ] {
            batch.delete_range(family, start.clone(), end.clone());
        }
    }

    pub fn collections<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(Family::Collections), IteratorMode::Start)
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
        batch.put(Family::Meta, key(coll, CONTEXT_KEY), bytes.to_vec());
    }

    /// Stores the shards whose records this node keeps (None: all of them).
    pub fn put_record_shards(&self, batch: &mut Batch, coll: &str, shards: Option<&[u32]>) {
        match shards {
            Some(list) => batch.put(
                Family::Meta,
                key(coll, RECORD_SHARDS_KEY),
                serde_json::to_vec(list).expect("a list of numbers serialises"),
            ),
            None => batch.delete(Family::Meta, key(coll, RECORD_SHARDS_KEY)),
        }
    }

    /// The shards whose records this node keeps, if not all.
    pub fn get_record_shards(&self, coll: &str) -> Result<Option<Vec<u32>>> {
        self.db
            .get_cf(self.cf(Family::Meta), key(coll, RECORD_SHARDS_KEY))?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| Error::Corrupt(format!("record shards of '{coll}': {e}")))
            })
            .transpose()
    }

    /// The collection's stored corpus context, if it has one.
    pub fn get_context(&self, coll: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_cf(self.cf(Family::Meta), key(coll, CONTEXT_KEY))?)
    }

    /// Stores a document's decayed hit count (statistics: batched, not synced).
    pub fn put_hits(&self, batch: &mut Batch, coll: &str, doc: &str, bytes: &[u8]) {
        let mut rest = HITS_PREFIX.to_vec();
        rest.extend_from_slice(doc.as_bytes());
        batch.put(Family::Meta, key(coll, &rest), bytes.to_vec());
    }

    /// Every stored hit count of a collection: document id and the stored bytes.
    pub fn scan_hits(
        &self,
        coll: &str,
        mut each: impl FnMut(&str, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.scan(Family::Meta, coll, |rest, v| {
            match rest.strip_prefix(HITS_PREFIX) {
                Some(doc) => each(&String::from_utf8_lossy(doc), v),
                None => Ok(()),
            }
        })
    }

    /// Stores entry `number` of the collection's question log (statistics: batched,
    /// not synced).
    pub fn put_question(&self, batch: &mut Batch, coll: &str, number: u64, bytes: &[u8]) {
        batch.put(Family::Meta, question_key(coll, number), bytes.to_vec());
    }

    /// Deletes the question log's entries numbered below `number`.
    pub fn delete_questions_before(&self, batch: &mut Batch, coll: &str, number: u64) {
        batch.delete_range(
            Family::Meta,
            question_key(coll, 0),
            question_key(coll, number),
        );
    }

    /// Every stored question log entry of a collection, oldest first: its number and
    /// the stored bytes.
    pub fn scan_questions(
        &self,
        coll: &str,
        mut each: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.scan(Family::Meta, coll, |rest, v| {
            match rest
                .strip_prefix(QUESTIONS_PREFIX)
                .and_then(|n| <[u8; 8]>::try_from(n).ok())
            {
                Some(n) => each(u64::from_be_bytes(n), v),
                None => Ok(()),
            }
        })
    }

    /// Adds a leakage audit record (JSON) under its id to `batch`.
    pub fn put_audit(&self, batch: &mut Batch, coll: &str, id: &str, json: &[u8]) {
        let mut k = AUDIT_PREFIX.to_vec();
        k.extend_from_slice(id.as_bytes());
        batch.put(Family::Meta, key(coll, &k), json.to_vec());
    }

    /// Every audit record of a collection: id and the stored JSON, in id order.
    pub fn scan_audits(
        &self,
        coll: &str,
        mut each: impl FnMut(&str, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.scan(Family::Meta, coll, |rest, v| {
            match rest.strip_prefix(AUDIT_PREFIX) {
                Some(id) => each(&String::from_utf8_lossy(id), v),
                None => Ok(()),
            }
        })
    }

    /// Stores a job's record (JSON) under its kind and id, synced.
    pub fn put_job(&self, coll: &str, kind: &str, id: &str, json: &[u8]) -> Result<()> {
        let mut batch = self.batch();
        batch.put(Family::Meta, key(coll, &job_key(kind, id)), json.to_vec());
        self.commit(batch, true).map(|_| ())
    }

    /// Every job record of one kind in a collection: id and the stored JSON.
    pub fn scan_jobs(
        &self,
        coll: &str,
        kind: &str,
        mut each: impl FnMut(&str, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let start = key(coll, &job_key(kind, ""));
        let iter = self.db.iterator_cf(
            self.cf(Family::Meta),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            let Some(id) = k.strip_prefix(start.as_slice()) else {
                break;
            };
            each(&String::from_utf8_lossy(id), &v)?;
        }
        Ok(())
    }

    pub fn put_document<T: Serialize>(&self, batch: &mut Batch, coll: &str, id: &str, doc: &T) {
        let json = serde_json::to_vec(doc).expect("documents serialise");
        batch.put(Family::Documents, key(coll, id.as_bytes()), json);
    }

    pub fn delete_document(&self, batch: &mut Batch, coll: &str, id: &str) {
        batch.delete(Family::Documents, key(coll, id.as_bytes()));
    }

    pub fn get_document<T: DeserializeOwned>(&self, coll: &str, id: &str) -> Result<Option<T>> {
        match self
            .db
            .get_pinned_cf(self.cf(Family::Documents), key(coll, id.as_bytes()))?
        {
            Some(v) => Ok(Some(decode_json(&v)?)),
            None => Ok(None),
        }
    }

    pub fn put_vector(&self, batch: &mut Batch, coll: &str, chunk_id: u64, rec: &VectorRecord) {
        batch.put(
            Family::Vectors,
            key(coll, &chunk_id.to_be_bytes()),
            rec.encode(),
        );
    }

    pub fn delete_vector(&self, batch: &mut Batch, coll: &str, chunk_id: u64) {
        batch.delete(Family::Vectors, key(coll, &chunk_id.to_be_bytes()));
    }

    pub fn get_vector(&self, coll: &str, chunk_id: u64) -> Result<Option<VectorRecord>> {
        match self
            .db
            .get_pinned_cf(self.cf(Family::Vectors), key(coll, &chunk_id.to_be_bytes()))?
        {
            Some(v) => Ok(Some(VectorRecord::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Records that `doc` has `tf` occurrences of `term`.
    pub fn put_posting(&self, batch: &mut Batch, coll: &str, term: &str, doc: &str, tf: u32) {
        batch.put(
            Family::Keywords,
            posting_key(coll, term, doc),
            tf.to_le_bytes(),
        );
    }

    pub fn delete_posting(&self, batch: &mut Batch, coll: &str, term: &str, doc: &str) {
        batch.delete(Family::Keywords, posting_key(coll, term, doc));
    }

    /// Records that `doc` is in the keyword index with `terms` terms.
    pub fn put_keyword_length(&self, batch: &mut Batch, coll: &str, doc: &str, terms: u32) {
        batch.put(Family::Keywords, length_key(coll, doc), terms.to_le_bytes());
    }

    pub fn delete_keyword_length(&self, batch: &mut Batch, coll: &str, doc: &str) {
        batch.delete(Family::Keywords, length_key(coll, doc));
    }

    pub fn put_keyword_stats(&self, batch: &mut Batch, coll: &str, stats: KeywordStats) {
        batch.put(Family::Keywords, key(coll, &[KW_STATS]), stats.encode());
    }

    /// The collection's keyword stats; `None` when its keyword index was never
    /// written (a database from before keyword search).
    pub fn keyword_stats(&self, coll: &str) -> Result<Option<KeywordStats>> {
        self.db
            .get_pinned_cf(self.cf(Family::Keywords), key(coll, &[KW_STATS]))?
            .map(|v| KeywordStats::decode(&v))
            .transpose()
    }

    /// Every keyword record of a collection: lengths, then postings, then stats.
    pub fn scan_keywords(
        &self,
        coll: &str,
        mut each: impl FnMut(KeywordRecord) -> Result<()>,
    ) -> Result<()> {
        self.scan(Family::Keywords, coll, |rest, v| {
            each(KeywordRecord::decode(rest, v)?)
        })
    }

    /// Every document of a collection, in key order (used at start-up).
    pub fn scan_documents<T: DeserializeOwned>(
        &self,
        coll: &str,
        mut each: impl FnMut(String, T) -> Result<()>,
    ) -> Result<()> {
        self.scan_documents_after(coll, None, |id, doc| {
            each(id, doc)?;
            Ok(ControlFlow::Continue(()))
        })
    }

    /// A collection's documents after id `after` (from the first with None), in id
    /// order, until `each` breaks: a page of a listing that resumes where it stopped.
    pub fn scan_documents_after<T: DeserializeOwned>(
        &self,
        coll: &str,
        after: Option<&str>,
        mut each: impl FnMut(String, T) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        // The first key past `after`'s: the same bytes and one more (a zero).
        let from = after.map(|a| {
            let mut k = key(coll, a.as_bytes());
            k.push(0);
            k
        });
        self.scan_from(Family::Documents, coll, from, |rest, v| {
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
        self.scan(Family::Vectors, coll, |rest, v| {
            each(chunk_id(rest)?, VectorRecord::decode(v)?)
        })
    }

    fn scan(
        &self,
        cf: Family,
        coll: &str,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.scan_from(cf, coll, None, |k, v| {
            each(k, v)?;
            Ok(ControlFlow::Continue(()))
        })
    }

    /// The keys of `coll` in `cf` from key `from` (the collection's first with None)
    /// until `each` breaks; `each` sees each key without the collection's prefix.
    fn scan_from(
        &self,
        cf: Family,
        coll: &str,
        from: Option<Vec<u8>>,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let (start, end) = collection_range(coll);
        let first = from.unwrap_or_else(|| start.clone());
        let iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(&first, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if k.as_ref() >= end.as_slice() {
                break;
            }
            if each(&k[start.len()..], &v)?.is_break() {
                break;
            }
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

/// A change of a collection's vector records, read from the write log.
#[derive(Debug)]
pub enum VectorChange {
    /// A chunk's vector stored under its id.
    Put(u64, VectorRecord),
    Delete(u64),
    /// A new corpus context (every vector is re-embedded with it).
    Context,
    /// The collection's vectors deleted whole (the collection was deleted).
    Dropped,
}

/// The chunk id at the end of a vector key.
fn chunk_id(rest: &[u8]) -> Result<u64> {
    let id: [u8; 8] = rest
        .try_into()
        .map_err(|_| Error::Corrupt("chunk key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(id))
}

/// The key of question log entry `number` of `coll`.
fn question_key(coll: &str, number: u64) -> Vec<u8> {
    let mut rest = QUESTIONS_PREFIX.to_vec();
    rest.extend_from_slice(&number.to_be_bytes());
    key(coll, &rest)
}

fn job_key(kind: &str, id: &str) -> Vec<u8> {
    let mut k = JOB_PREFIX.to_vec();
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
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
