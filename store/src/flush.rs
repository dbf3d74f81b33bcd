//! When a collection's statistics (hit counts, the question log) are written out.
//!
//! Why a gate of its own: statistics change with every query, so writing them on each
//! one would put a RocksDB write on every read. They are kept in memory and written
//! without a WAL sync at most every [`FLUSH_EVERY`], by whichever query finds the last
//! flush old enough, so a crash loses at most the last seconds of them. A flush runs
//! under a read lock that a collection's delete holds for writing across its commit
//! and then closes: a query that raced the delete never writes into the deleted key
//! range, where a new collection of the same name would load it.

use std::sync::{Mutex, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::storage::{Batch, Storage};

/// Statistics are written out at most this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// One statistic's flush clock and its "collection still alive" flag.
pub struct FlushGate {
    last: Mutex<Instant>,
    /// False once the collection is deleted.
    open: RwLock<bool>,
}

/// Held by a collection's delete across its commit: no flush runs meanwhile.
pub struct FlushHold<'a>(RwLockWriteGuard<'a, bool>);

impl FlushHold<'_> {
    /// The delete is committed: no flush may write again.
    pub fn close(&mut self) {
        *self.0 = false;
    }
}

impl Default for FlushGate {
    fn default() -> Self {
        FlushGate {
            last: Mutex::new(Instant::now()),
            open: RwLock::new(true),
        }
    }
}

impl FlushGate {
    /// True when the last flush is at least [`FLUSH_EVERY`] old; the clock then
    /// restarts, so of several concurrent callers one flushes.
    pub fn due(&self) -> bool {
        let mut last = self.last.lock().expect("lock");
        if last.elapsed() < FLUSH_EVERY {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// Makes the next [`FlushGate::due`] true (tests and shutdown flush at once).
    pub fn make_due(&self) {
        if let Some(due) = Instant::now().checked_sub(FLUSH_EVERY) {
            *self.last.lock().expect("lock") = due;
        }
    }

    /// Writes `batch` unsynced unless the collection was deleted. A failed write is
    /// logged, never returned: statistics must not fail the query that carries them.
    pub fn commit(&self, storage: &Storage, coll: &str, batch: Batch, what: &str) {
        let open = self.open.read().expect("lock");
        if !*open || batch.is_empty() {
            return;
        }
        if let Err(e) = storage.commit(batch, false) {
            tracing::warn!(collection = coll, error = %e, "could not store {what}");
        }
    }

    /// Holds off flushes until the hold is dropped; its `close` stops them for good.
    pub fn hold(&self) -> FlushHold<'_> {
        FlushHold(self.open.write().expect("lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_flushes_per_period() {
        let gate = FlushGate::default();
        assert!(!gate.due(), "a fresh gate waits a period");
        gate.make_due();
        assert!(gate.due());
        assert!(!gate.due(), "the clock restarted");
    }

    #[test]
    fn a_closed_gate_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let gate = FlushGate::default();
        let before = storage.last_seq().unwrap();
        gate.hold().close();
        let mut batch = storage.batch();
        storage.put_hits(&mut batch, "c", "d", b"{}");
        gate.commit(&storage, "c", batch, "hit counts");
        let mut seen = 0;
        storage
            .scan_hits("c", |_, _| {
                seen += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!((seen, storage.last_seq().unwrap()), (0, before));
    }
}
