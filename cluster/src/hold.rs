//! The follower's side of a shard's copy (`crate::shard_move`): the writes to a
//! shard being copied in are kept aside as the follower passes over them, and the
//! follower is held only for the moment the copy's tail is applied and the shard
//! becomes kept.
//!
//! Why: the copy is consistent at one sequence `X` of the exporting node, and the
//! importing node goes on applying the log while the copy is exported, downloaded
//! and imported (seconds for thousands of documents: holding the follower all that
//! time held every read with `min_seq` and every write through this node as long).
//! The shard's writes after `X` must land on top of the copy exactly once: the
//! follower passes over them while the shard is not kept (it only advances its
//! applied sequence), and [`Tail`] keeps them; once the copy is in and the follower
//! has passed `X`, the copier holds the follower between two messages, applies the
//! kept writes after `X`, keeps the shard and lets the follower go on, now applying
//! the shard's writes itself. Applying the shard's writes up to `X` again on top of
//! the copy would not converge (a document rewritten twice would bring back chunk
//! ids its own later write had tombstoned), hence the cut at `X`.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;

use bytes::Bytes;
use tokio::sync::{Mutex, MutexGuard};

/// The most bytes of writes one copy's tail keeps; a copy whose shard takes more
/// while it runs is given up (and tried again), so a busy shard cannot grow a
/// node's memory without bound.
const TAIL_BYTES: usize = 64 << 20;

/// A write to a shard being copied in, as the log delivered it.
#[derive(Debug, Clone)]
pub(crate) struct TailMessage {
    pub seq: u64,
    pub incarnation: u64,
    pub payload: Bytes,
}

#[derive(Default)]
struct Kept {
    /// Writes at or below this sequence are in the copy.
    after: u64,
    messages: Vec<TailMessage>,
    bytes: usize,
    overflowed: bool,
}

/// The follower's gate (held while one message is applied) and the tails being
/// kept, by subject (`NAME.SHARD`).
#[derive(Default)]
pub(crate) struct Hold {
    gate: Mutex<()>,
    tails: StdMutex<HashMap<String, Kept>>,
}

impl Hold {
    /// Taken by the follower while it applies one message, so a hold never starts
    /// in the middle of a message.
    pub(crate) async fn admit(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// Stops the follower after the message it is applying, until the guard drops.
    pub(crate) async fn pause(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// Called by the follower (admitted) for each message it passes over or applies:
    /// kept when a copy of its subject's shard is under way.
    pub(crate) fn offer(&self, key: &str, message: TailMessage) {
        let mut tails = self.tails.lock().expect("lock");
        let Some(kept) = tails.get_mut(key) else {
            return;
        };
        if message.seq <= kept.after || kept.overflowed {
            return;
        }
        kept.bytes += message.payload.len();
        if kept.bytes > TAIL_BYTES {
            kept.overflowed = true;
            kept.messages = Vec::new();
            return;
        }
        kept.messages.push(message);
    }

    /// Starts keeping the writes to subject `key` (from the next message the follower
    /// admits) until the returned [`Tail`] drops.
    pub(crate) fn keep_tail(&self, key: &str) -> Tail<'_> {
        self.tails
            .lock()
            .expect("lock")
            .insert(key.to_string(), Kept::default());
        Tail {
            hold: self,
            key: key.to_string(),
        }
    }
}

/// The writes to one shard being kept for its copy (see the module's doc).
pub(crate) struct Tail<'a> {
    hold: &'a Hold,
    key: String,
}

impl Tail<'_> {
    /// Its shard's subject (`NAME.SHARD`).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Forgets the writes at or below `seq` (they are in the copy) and keeps no more
    /// of them.
    pub(crate) fn after(&self, seq: u64) {
        let mut tails = self.hold.tails.lock().expect("lock");
        if let Some(kept) = tails.get_mut(&self.key) {
            kept.after = kept.after.max(seq);
            kept.messages.retain(|m| m.seq > seq);
            kept.bytes = kept.messages.iter().map(|m| m.payload.len()).sum();
        }
    }

    /// The writes kept, in log order; `None` when more came than a tail may keep.
    /// Called with the follower paused, so none is on its way in.
    pub(crate) fn take(&self) -> Option<Vec<TailMessage>> {
        let mut tails = self.hold.tails.lock().expect("lock");
        let kept = tails.get_mut(&self.key)?;
        if kept.overflowed {
            return None;
        }
        Some(std::mem::take(&mut kept.messages))
    }
}

impl Drop for Tail<'_> {
    fn drop(&mut self) {
        self.hold.tails.lock().expect("lock").remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, bytes: usize) -> TailMessage {
        TailMessage {
            seq,
            incarnation: 1,
            payload: Bytes::from(vec![0u8; bytes]),
        }
    }

    #[test]
    fn a_tail_keeps_its_subjects_writes_after_the_copy_and_no_more_than_its_bound() {
        let hold = Hold::default();
        hold.offer("c.1", message(1, 10));
        let tail = hold.keep_tail("c.1");
        for seq in 2..=6 {
            hold.offer("c.1", message(seq, 10));
            hold.offer("c.2", message(seq, 10));
        }
        // The copy was taken at 3: 4 to 6 are its tail.
        tail.after(3);
        hold.offer("c.1", message(7, 10));
        let seqs: Vec<u64> = tail.take().unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![4, 5, 6, 7]);
        drop(tail);
        assert!(hold.tails.lock().unwrap().is_empty());

        // More than the bound: given up, nothing held.
        let tail = hold.keep_tail("c.1");
        hold.offer("c.1", message(8, TAIL_BYTES / 2));
        hold.offer("c.1", message(9, TAIL_BYTES / 2 + 1));
        hold.offer("c.1", message(10, 1));
        assert!(tail.take().is_none());
        assert!(hold.tails.lock().unwrap()["c.1"].messages.is_empty());
    }

    #[tokio::test]
    async fn a_paused_follower_waits_between_two_messages() {
        let hold = std::sync::Arc::new(Hold::default());
        let paused = hold.pause().await;
        let follower = {
            let hold = hold.clone();
            tokio::spawn(async move {
                let _g = hold.admit().await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!follower.is_finished());
        drop(paused);
        follower.await.unwrap();
    }
}
