//! The store's side of cluster mode, free of any transport: what a replicated log
//! must offer ([`Replicator`]), and how far this node has applied it ([`Replication`]).
//!
//! Why this shape: in cluster mode a write is durable once a replicated log (NATS
//! JetStream, in `engram-cluster`) has taken it, and every node, the one that took
//! the request included, applies the log's messages in order to its own records and
//! in-memory indexes. The batches are record-level (`log::Batch`), built from the
//! writer's view of the documents they touch (which chunks a replaced document had,
//! its old keyword postings), so two nodes must never build on different views of
//! one document. A collection is cut into shards (a document's shard is a hash of its
//! id), each with its own subject in the log, and a batch is published only if the
//! last message on its shard's subject is the one its writer has applied
//! (compare-and-set on the subject's last sequence): writes to different shards do
//! not wait for each other, writes to one shard are ordered. A writer that lost the
//! race waits until it has applied the winner's message and builds again. What spans
//! shards (the keyword statistics, the chunk id counter) is recomputed by each node
//! as it applies. Creation and deletion go on the collection's own subject.
//!
//! Sequences: a message's sequence is the log's (one count across all subjects), and
//! a node applies the whole log in that order, so "applied up to N" (a query's
//! `min_seq`) covers every shard. The applied sequence, and each subject's, are
//! stored in the same RocksDB batch as the records they apply, so a restarted node
//! resumes exactly after them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::log::{Batch, Family};

/// Meta key of the last log sequence applied here (no NUL, so in no collection's range).
pub(crate) const APPLIED_KEY: &[u8] = b"cluster.applied";
/// Meta key prefix of the last log sequence applied per collection subject; kept
/// when the collection is deleted, so a re-creation knows what it follows.
const SUBJECT_PREFIX: &str = "cluster.subject.";

/// How long a write waits for its own message to be applied here, and how long a
/// writer that lost a compare-and-set waits for the winner's message.
pub const APPLY_WAIT: Duration = Duration::from_secs(10);

/// How long the node that fitted a corpus context waits for its own install of it
/// (every document re-embedded as the message is applied: minutes for a large
/// collection, see `Store::run_queued_context`).
pub const INSTALL_WAIT: Duration = Duration::from_secs(3600);

/// What publishing a batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Durable in the log (a quorum of its servers), at this sequence.
    Seq(u64),
    /// The collection's subject has moved past the expected sequence: another node
    /// wrote first. Holds the subject's last sequence when the log said it.
    Conflict(Option<u64>),
}

/// Where a message goes: a collection's own subject (its creation and deletion,
/// `shard: None`) or one of its shards'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub collection: &'a str,
    pub shard: Option<u32>,
}

impl<'a> Subject<'a> {
    /// `NAME` or `NAME.SHARD` (collection names hold no dot): what follows the
    /// log's subject prefix, and the key of the subject's applied sequence.
    pub fn key(&self) -> String {
        match self.shard {
            Some(s) => format!("{}.{s}", self.collection),
            None => self.collection.to_string(),
        }
    }

    /// The subject a [`Subject::key`] names.
    pub fn parse(key: &'a str) -> Result<Self> {
        let bad = || Error::Corrupt(format!("'{key}' is not a collection's subject"));
        match key.split_once('.') {
            None => Ok(Subject {
                collection: key,
                shard: None,
            }),
            Some((collection, shard)) => Ok(Subject {
                collection,
                shard: Some(shard.parse().map_err(|_| bad())?),
            }),
        }
    }
}

/// A replicated log (cluster mode). Implementations block until the log answers.
pub trait Replicator: Send + Sync {
    /// Publishes `batch` on `subject`, provided that the subject's last message is
    /// `expected` (0: none yet). `incarnation` is the collection's (see
    /// `CollectionConfig::incarnation`) and comes back with the message, so that a
    /// shard's write that lost a race with the collection's deletion is not applied to
    /// a collection created again under the same name.
    fn publish(
        &self,
        subject: Subject<'_>,
        incarnation: u64,
        expected: u64,
        batch: &Batch,
    ) -> Result<Published>;
}

/// Cluster mode's route for a write to a shard this node does not serve: to a node
/// that does (`engram-cluster`'s forwarding, a queue group per shard like the
/// queries'), which builds the write from its own view of the shard's documents and
/// publishes it. Why: a shard's writes are built by the nodes placed on it, the ones
/// that follow its documents (`crate::store`'s `forwarded.rs`). `write` is opaque to
/// the transport; implementations block until the other node answers with the
/// write's sequence.
pub trait ForwardWrites: Send + Sync {
    fn forward(&self, collection: &str, shard: u32, write: Vec<u8>) -> Result<u64>;
}

/// Cluster mode's query of a whole collection: one replica of each shard ranks it
/// and the asking node merges (`engram-cluster`'s scatter). What [`crate::Store`]'s
/// own `query` hands over to once attached, because a node's graph holds only the
/// shards placed on it (`crate::shard_scope`): a local walk would miss the others.
/// Implementations block until the answer is merged.
pub trait ScatterQueries: Send + Sync {
    fn query(
        &self,
        name: &str,
        req: &crate::api::QueryRequest,
    ) -> Result<crate::api::QueryResponse>;

    /// One document of `shard`, read by a node placed on it
    /// (`Store::get_document_here` there).
    fn get_document(
        &self,
        name: &str,
        shard: u32,
        id: &str,
        with_vectors: bool,
    ) -> Result<crate::api::Document>;

    /// One document's record of `shard`, read by a node placed on it (None: not
    /// there).
    fn document_record(
        &self,
        name: &str,
        shard: u32,
        id: &str,
    ) -> Result<Option<crate::collection::DocumentRecord>>;

    /// The text span (byte offsets) of stored chunk `chunk` of `shard`, read by a
    /// node placed on it (None: not there).
    fn chunk_span(&self, name: &str, shard: u32, chunk: u64) -> Result<Option<(u32, u32)>>;

    /// A page of one shard's documents, read by a node placed on it
    /// (`Store::shard_documents` there).
    fn shard_documents(&self, scan: &crate::ShardScan) -> Result<crate::ShardPage>;

    /// What one shard holds, counted by a node placed on it (`Store::shard_counts`).
    fn shard_counts(&self, name: &str, shard: u32) -> Result<crate::ShardCounts>;
}

/// The meta key of a subject's applied sequence.
pub(crate) fn subject_key(subject: &str) -> Vec<u8> {
    format!("{SUBJECT_PREFIX}{subject}").into_bytes()
}

/// Adds to `batch` the records that say it was applied at `seq` for `subject`.
pub(crate) fn mark_applied(batch: &mut Batch, subject: &str, seq: u64) {
    batch.put(Family::Meta, APPLIED_KEY, seq.to_be_bytes().to_vec());
    batch.put(
        Family::Meta,
        subject_key(subject),
        seq.to_be_bytes().to_vec(),
    );
}

/// How many skipped messages a node remembers (their writers wait for them here).
const SKIPPED_KEPT: usize = 4096;

/// This node's place in the replicated log.
#[derive(Default)]
pub struct Replication {
    replicator: OnceLock<Arc<dyn Replicator>>,
    /// The last sequence applied, and a signal for those waiting on it.
    applied: Mutex<u64>,
    advanced: Condvar,
    /// The last sequence applied per subject (read from the records on first use).
    subjects: Mutex<HashMap<String, u64>>,
    /// The newest messages that were skipped rather than applied (a shard's write to a
    /// collection deleted, or created again, before it): their writers fail.
    skipped: Mutex<VecDeque<u64>>,
}

impl Replication {
    /// Cluster mode from now on: writes go through `replicator`. Once only.
    pub fn attach(&self, replicator: Arc<dyn Replicator>, applied: u64) -> Result<()> {
        *self.applied.lock().expect("lock") = applied;
        self.replicator
            .set(replicator)
            .map_err(|_| Error::invalid("cluster", "this store already follows a log"))
    }

    pub fn replicator(&self) -> Option<&Arc<dyn Replicator>> {
        self.replicator.get()
    }

    pub fn applied(&self) -> u64 {
        *self.applied.lock().expect("lock")
    }

    /// Records that `seq` was applied (on `subject`).
    pub(crate) fn advance(&self, subject: &str, seq: u64) {
        self.subjects
            .lock()
            .expect("lock")
            .insert(subject.to_string(), seq);
        let mut applied = self.applied.lock().expect("lock");
        *applied = (*applied).max(seq);
        self.advanced.notify_all();
    }

    /// Records that message `seq` was skipped, not applied.
    pub(crate) fn skip(&self, seq: u64) {
        let mut skipped = self.skipped.lock().expect("lock");
        if skipped.len() == SKIPPED_KEPT {
            skipped.pop_front();
        }
        skipped.push_back(seq);
    }

    /// Whether message `seq` (applied here) was skipped.
    pub(crate) fn was_skipped(&self, seq: u64) -> bool {
        self.skipped.lock().expect("lock").contains(&seq)
    }

    /// The last sequence applied on `subject`; `stored` reads it from the records
    /// when this run has not applied one yet.
    pub(crate) fn subject(
        &self,
        subject: &str,
        stored: impl FnOnce() -> Result<u64>,
    ) -> Result<u64> {
        let mut subjects = self.subjects.lock().expect("lock");
        if let Some(s) = subjects.get(subject) {
            return Ok(*s);
        }
        let s = stored()?;
        subjects.insert(subject.to_string(), s);
        Ok(s)
    }

    /// Waits until `seq` is applied here, at most `wait`.
    pub fn wait_applied(&self, seq: u64, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        let mut applied = self.applied.lock().expect("lock");
        while *applied < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(format!(
                    "this node has applied the log up to {} and not yet {seq} after {:.1} s; retry, or ask another node",
                    *applied,
                    wait.as_secs_f64()
                )));
            }
            applied = self.advanced.wait_timeout(applied, left).expect("lock").0;
        }
        Ok(())
    }

    /// Waits (at most `wait`) until `subject` has moved past `seen`.
    pub(crate) fn wait_subject_past(&self, subject: &str, seen: u64, wait: Duration) {
        let deadline = Instant::now() + wait;
        let mut applied = self.applied.lock().expect("lock");
        loop {
            let now = self.subjects.lock().expect("lock").get(subject).copied();
            let left = deadline.saturating_duration_since(Instant::now());
            if now.is_some_and(|s| s > seen) || left.is_zero() {
                return;
            }
            applied = self
                .advanced
                .wait_timeout(applied, left.min(Duration::from_millis(50)))
                .expect("lock")
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_a_sequence_ends_when_it_is_applied_or_times_out() {
        let r = Arc::new(Replication::default());
        let err = r.wait_applied(3, Duration::from_millis(20)).unwrap_err();
        assert!(err.to_string().contains("not yet 3"), "{err}");
        let bump = r.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            bump.advance("c", 3);
        });
        r.wait_applied(3, Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert_eq!(r.subject("c", || Ok(0)).unwrap(), 3);
        assert_eq!(r.subject("other", || Ok(7)).unwrap(), 7);
    }

    #[test]
    fn subjects_name_a_collection_or_one_of_its_shards() {
        for (key, shard) in [("docs", None), ("docs.0", Some(0)), ("docs.255", Some(255))] {
            let s = Subject::parse(key).unwrap();
            assert_eq!((s.collection, s.shard), ("docs", shard));
            assert_eq!(s.key(), key);
        }
        assert!(Subject::parse("docs.x").is_err());
        assert!(Subject::parse("docs.1.2").is_err());
    }
}
