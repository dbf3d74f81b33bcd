//! The store's side of cluster mode, free of any transport: what a replicated log
//! must offer ([`Replicator`]), and how far this node has applied it ([`Replication`]).
//!
//! Why this shape: in cluster mode a write is durable once a replicated log (NATS
//! JetStream, in `engram-cluster`) has taken it, and every node, the one that took
//! the request included, applies the log's messages in order to its own records and
//! in-memory indexes. The batches are record-level (`log::Batch`), built from the
//! writer's view of the collection (which chunks a replaced document had, the keyword
//! statistics), so two nodes must never build on different views: each collection has
//! one subject in the log, and a batch is published only if the last message on that
//! subject is the one its writer has applied (compare-and-set on the subject's last
//! sequence). A writer that lost the race waits until it has applied the winner's
//! message and builds again. The applied sequence is stored in the same RocksDB batch
//! as the records it applies, so a restarted node resumes exactly after it.

use std::collections::HashMap;
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

/// What publishing a batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Durable in the log (a quorum of its servers), at this sequence.
    Seq(u64),
    /// The collection's subject has moved past the expected sequence: another node
    /// wrote first. Holds the subject's last sequence when the log said it.
    Conflict(Option<u64>),
}

/// A replicated log (cluster mode). Implementations block until the log answers.
pub trait Replicator: Send + Sync {
    /// Publishes `batch` on collection `collection`'s subject, provided that the
    /// subject's last message is `expected` (0: none yet).
    fn publish(&self, collection: &str, expected: u64, batch: &Batch) -> Result<Published>;
}

/// The meta key of collection `name`'s subject sequence.
pub(crate) fn subject_key(name: &str) -> Vec<u8> {
    format!("{SUBJECT_PREFIX}{name}").into_bytes()
}

/// Adds to `batch` the records that say it was applied at `seq` for `collection`.
pub(crate) fn mark_applied(batch: &mut Batch, collection: &str, seq: u64) {
    batch.put(Family::Meta, APPLIED_KEY, seq.to_be_bytes().to_vec());
    batch.put(
        Family::Meta,
        subject_key(collection),
        seq.to_be_bytes().to_vec(),
    );
}

/// This node's place in the replicated log.
#[derive(Default)]
pub struct Replication {
    replicator: OnceLock<Arc<dyn Replicator>>,
    /// The last sequence applied, and a signal for those waiting on it.
    applied: Mutex<u64>,
    advanced: Condvar,
    /// The last sequence applied per collection subject (read from the records on
    /// first use).
    subjects: Mutex<HashMap<String, u64>>,
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

    /// Records that `seq` was applied (on `collection`'s subject).
    pub(crate) fn advance(&self, collection: &str, seq: u64) {
        self.subjects
            .lock()
            .expect("lock")
            .insert(collection.to_string(), seq);
        let mut applied = self.applied.lock().expect("lock");
        *applied = (*applied).max(seq);
        self.advanced.notify_all();
    }

    /// The last sequence applied on `collection`'s subject; `stored` reads it from
    /// the records when this run has not applied one yet.
    pub(crate) fn subject(
        &self,
        collection: &str,
        stored: impl FnOnce() -> Result<u64>,
    ) -> Result<u64> {
        let mut subjects = self.subjects.lock().expect("lock");
        if let Some(s) = subjects.get(collection) {
            return Ok(*s);
        }
        let s = stored()?;
        subjects.insert(collection.to_string(), s);
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

    /// Waits (at most `wait`) until `collection`'s subject has moved past `seen`.
    pub(crate) fn wait_subject_past(&self, collection: &str, seen: u64, wait: Duration) {
        let deadline = Instant::now() + wait;
        let mut applied = self.applied.lock().expect("lock");
        loop {
            let now = self.subjects.lock().expect("lock").get(collection).copied();
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
}
