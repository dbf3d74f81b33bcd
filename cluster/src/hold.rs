//! Holding this node's follower at one sequence of the write log, so that a shard's
//! copy (`crate::shard_move`) is imported at exactly the point of the log it was
//! taken at.
//!
//! Why a hold and not a replay: the copy is consistent at one sequence `X` of the
//! exporting node. The importing node applies every message up to `X` as usual (the
//! copied shard's writes skipped, its records being elsewhere until then), stops,
//! takes the copy in, and goes on from `X + 1` with the shard kept. Applying the
//! shard's writes up to `X` again on top of the copy instead would not converge: a
//! document rewritten twice would bring back chunk ids its own later write had
//! tombstoned.

use tokio::sync::{watch, Mutex, MutexGuard};

/// The follower's gate (held while one message is applied) and the last sequence it
/// may apply (`u64::MAX`: any).
pub(crate) struct Hold {
    gate: Mutex<()>,
    until: watch::Sender<u64>,
}

impl Default for Hold {
    fn default() -> Self {
        Hold {
            gate: Mutex::new(()),
            until: watch::Sender::new(u64::MAX),
        }
    }
}

impl Hold {
    /// Waits until message `seq` may be applied; the follower keeps the guard while
    /// it applies it, so a hold never starts in the middle of a message.
    pub(crate) async fn admit(&self, seq: u64) -> MutexGuard<'_, ()> {
        let mut until = self.until.subscribe();
        loop {
            let guard = self.gate.lock().await;
            if seq <= *until.borrow_and_update() {
                return guard;
            }
            drop(guard);
            if until.changed().await.is_err() {
                // The sender lives as long as the node; never reached while it runs.
                return self.gate.lock().await;
            }
        }
    }

    /// Stops the follower after the message it is applying, until the returned
    /// [`Paused`] lets it go on (to a sequence, or for good when dropped).
    pub(crate) async fn pause(&self) -> Paused<'_> {
        Paused {
            hold: self,
            gate: Some(self.gate.lock().await),
        }
    }
}

/// A paused follower (see [`Hold::pause`]).
pub(crate) struct Paused<'a> {
    hold: &'a Hold,
    gate: Option<MutexGuard<'a, ()>>,
}

impl Paused<'_> {
    /// Lets the follower apply messages up to `seq` and no further.
    pub(crate) fn until(&mut self, seq: u64) {
        self.hold.until.send_replace(seq);
        self.gate = None;
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.hold.until.send_replace(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_paused_follower_applies_up_to_the_hold_and_no_further() {
        let hold = Arc::new(Hold::default());
        let (applied_tx, mut applied) = tokio::sync::mpsc::unbounded_channel();
        let mut paused = hold.pause().await;
        let follower = {
            let hold = hold.clone();
            tokio::spawn(async move {
                for seq in 1..=6u64 {
                    let _g = hold.admit(seq).await;
                    applied_tx.send(seq).unwrap();
                }
            })
        };
        let quiet = Duration::from_millis(100);
        // Paused: nothing at all.
        assert!(tokio::time::timeout(quiet, applied.recv()).await.is_err());
        paused.until(3);
        for want in 1..=3 {
            assert_eq!(applied.recv().await, Some(want));
        }
        assert!(
            tokio::time::timeout(quiet, applied.recv()).await.is_err(),
            "held at 3"
        );
        drop(paused);
        for want in 4..=6 {
            assert_eq!(applied.recv().await, Some(want));
        }
        follower.await.unwrap();
    }
}
