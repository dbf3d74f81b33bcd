//! Forwarded writes: a write to a shard this node does not serve goes, as the store's
//! bytes (`Store::write_forwarded`), to subject `engram.w.NAME.SHARD`, where the
//! shard's replicas listen in a queue group (subscribed together with its queries by
//! `scatter::serve`, so only once their graph holds it): one live replica builds and
//! publishes it, and its answer is the write's sequence.

use std::sync::atomic::Ordering;
use std::time::Duration;

use engram_store::replica::ForwardWrites;

use crate::reply::{ask_replica, to_store_error, ShardRequest};
use crate::scatter::Hook;
use crate::{Node, Result};

/// Forwarded-write subjects: `engram.w.` and the shard's `NAME.SHARD`.
pub const WRITE_PREFIX: &str = "engram.w.";
/// How long a forwarded write may take: the serving node's publish rides out a
/// stream leader's election (`log`: up to 8 tries of 4 s), then waits for its own
/// apply. Bounded, so a client's write never hangs on a lost node.
pub const WRITE_WAIT: Duration = Duration::from_secs(45);

/// The subject (and queue group) of a shard's forwarded writes.
pub fn subject(collection: &str, shard: u32) -> String {
    format!("{WRITE_PREFIX}{collection}.{shard}")
}

/// Writes one forwarded write of `collection`'s `shard` here (a replica's side of
/// [`send`]).
pub(crate) fn take(
    node: &Node,
    collection: &str,
    shard: u32,
    write: &[u8],
) -> engram_store::Result<u64> {
    let seq = node
        .store
        .store()
        .write_forwarded(collection, shard, write)?;
    node.forwards.taken.fetch_add(1, Ordering::Relaxed);
    Ok(seq)
}

/// Sends `write` to one replica of `collection`'s `shard`; its sequence once written.
async fn send(node: &Node, collection: &str, shard: u32, write: Vec<u8>) -> Result<u64> {
    let request = ShardRequest {
        collection,
        shard,
        what: "documents",
        wait: WRITE_WAIT,
        on_timeout: "; it may yet be written: retry with the same ids",
    };
    let payload = bytes::Bytes::from(write);
    let seq = ask_replica(node, subject(collection, shard), payload, &request).await?;
    node.forwards.sent.fetch_add(1, Ordering::Relaxed);
    Ok(seq)
}

impl ForwardWrites for Hook {
    fn forward(&self, collection: &str, shard: u32, write: Vec<u8>) -> engram_store::Result<u64> {
        let node = self.node()?;
        crate::fits_in_one_message(&node.client, write.len())?;
        let collection = collection.to_string();
        // Called from a blocking thread, like the write log's publish.
        self.runtime
            .block_on(async move { send(&node, &collection, shard, write).await })
            .map_err(to_store_error)
    }
}
