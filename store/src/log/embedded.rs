//! The write log of a store on one machine: RocksDB itself. A batch becomes one
//! RocksDB `WriteBatch`, written with a synced WAL when asked, so "durable in the
//! log" and "applied to the records" are the same atomic write.
//!
//! For [`WriteLog::read_from`] the log also keeps the encoded batches of the recent
//! past in a `log` column family, written in the same `WriteBatch` as the records
//! (so the two never disagree after a crash) and trimmed to a byte budget. Sequence
//! numbers are given in order; batches of one collection commit in that order (they
//! hold the collection's write lock), batches of different collections touch
//! disjoint records, so replaying in sequence order rebuilds the same state.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use super::{Batch, Family, Op, WriteLog};
use crate::error::{Error, Result};

/// The column family of the retained log entries (sequence number, big-endian ->
/// encoded batch).
pub const LOG_FAMILY: &str = "log";

/// Bytes of encoded batches kept for `read_from` by default.
pub const DEFAULT_RETAINED_BYTES: usize = 64 << 20;

/// The retained entries' sizes, oldest first, and their total.
#[derive(Default)]
struct Retained {
    entries: VecDeque<(u64, usize)>,
    bytes: usize,
}

/// RocksDB as the write log (see the module comment).
pub struct EmbeddedLog {
    db: Arc<DB>,
    last: AtomicU64,
    retained: Mutex<Retained>,
    budget: usize,
}

impl EmbeddedLog {
    /// Opens the log over `db`, which must have been opened with the column
    /// families of every [`Family`] and [`LOG_FAMILY`].
    pub fn open(db: Arc<DB>, budget: usize) -> Result<Self> {
        let mut retained = Retained::default();
        for item in db.iterator_cf(log_cf(&db), IteratorMode::Start) {
            let (k, v) = item?;
            retained.entries.push_back((seq_of(&k)?, v.len()));
            retained.bytes += v.len();
        }
        let last = retained.entries.back().map_or(0, |(s, _)| *s);
        Ok(EmbeddedLog {
            db,
            last: AtomicU64::new(last),
            retained: Mutex::new(retained),
            budget,
        })
    }

    fn cf(&self, family: Family) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(family.name())
            .expect("column families are created at open")
    }
}

fn log_cf(db: &DB) -> &rocksdb::ColumnFamily {
    db.cf_handle(LOG_FAMILY)
        .expect("the log column family is created at open")
}

fn seq_of(key: &[u8]) -> Result<u64> {
    let b: [u8; 8] = key
        .try_into()
        .map_err(|_| Error::Corrupt("log key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(b))
}

impl WriteLog for EmbeddedLog {
    fn append(&self, batch: Batch, sync: bool) -> Result<u64> {
        let seq = self.last.fetch_add(1, Ordering::SeqCst) + 1;
        let entry = batch.encode();
        let mut wb = WriteBatch::default();
        for op in batch.ops() {
            match op {
                Op::Put { family, key, value } => wb.put_cf(self.cf(*family), key, value),
                Op::Delete { family, key } => wb.delete_cf(self.cf(*family), key),
                Op::DeleteRange { family, start, end } => {
                    wb.delete_range_cf(self.cf(*family), start, end)
                }
            }
        }
        let log = log_cf(&self.db);
        {
            let mut retained = self.retained.lock().expect("lock");
            retained.entries.push_back((seq, entry.len()));
            retained.bytes += entry.len();
            let mut trimmed = false;
            while retained.bytes > self.budget && retained.entries.len() > 1 {
                let (_, len) = retained.entries.pop_front().expect("more than one");
                retained.bytes -= len;
                trimmed = true;
            }
            if trimmed {
                let keep = retained.entries.front().expect("one is kept").0;
                wb.delete_range_cf(log, 0u64.to_be_bytes(), keep.to_be_bytes());
            }
        }
        wb.put_cf(log, seq.to_be_bytes(), entry);
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(wb, &opts)?;
        Ok(seq)
    }

    fn read_from(&self, seq: u64) -> Result<Vec<(u64, Batch)>> {
        let start = (seq + 1).to_be_bytes();
        let mode = IteratorMode::From(&start, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(log_cf(&self.db), mode) {
            let (k, v) = item?;
            out.push((seq_of(&k)?, Batch::decode(&v)?));
        }
        Ok(out)
    }

    fn last_seq(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocksdb::{ColumnFamilyDescriptor, Options};

    fn open_db(dir: &std::path::Path) -> Arc<DB> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = Family::ALL
            .iter()
            .map(|f| f.name())
            .chain([LOG_FAMILY])
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        Arc::new(DB::open_cf_descriptors(&opts, dir, cfs).unwrap())
    }

    fn batch(n: u8) -> Batch {
        let mut b = Batch::default();
        b.put(Family::Documents, vec![b'k', n], vec![n; 100]);
        b
    }

    #[test]
    fn appended_batches_are_applied_and_read_back_in_order_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(open_db(dir.path()), DEFAULT_RETAINED_BYTES).unwrap();
            for n in 1..=5 {
                assert_eq!(log.append(batch(n), n % 2 == 0).unwrap(), n as u64);
            }
            let mut delete = Batch::default();
            delete.delete_range(Family::Documents, vec![b'k', 1], vec![b'k', 3]);
            assert_eq!(log.append(delete, true).unwrap(), 6);
        }
        let db = open_db(dir.path());
        let docs = db.cf_handle("documents").unwrap();
        assert!(
            db.get_cf(docs, [b'k', 2]).unwrap().is_none(),
            "range deleted"
        );
        assert_eq!(db.get_cf(docs, [b'k', 4]).unwrap().unwrap(), vec![4u8; 100]);
        let log = EmbeddedLog::open(db.clone(), DEFAULT_RETAINED_BYTES).unwrap();
        assert_eq!(log.last_seq(), 6);
        let tail = log.read_from(3).unwrap();
        let seqs: Vec<u64> = tail.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [4, 5, 6]);
        assert_eq!(tail[0].1, batch(4));
        assert_eq!(log.append(batch(7), true).unwrap(), 7);
    }

    #[test]
    fn the_log_keeps_to_its_byte_budget_and_never_drops_the_newest_entry() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(open_db(dir.path()), 350).unwrap();
        for n in 1..=10 {
            log.append(batch(n), false).unwrap();
        }
        // Each entry is ~110 bytes: the last three fit in 350.
        let kept: Vec<u64> = log.read_from(0).unwrap().iter().map(|(s, _)| *s).collect();
        assert_eq!(kept, [8, 9, 10]);
        let other = tempfile::tempdir().unwrap();
        let tiny = EmbeddedLog::open(open_db(other.path()), 1).unwrap();
        tiny.append(batch(1), false).unwrap();
        assert_eq!(tiny.read_from(0).unwrap().len(), 1);
    }
}
