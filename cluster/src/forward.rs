//! Forwarded writes: a write to a shard this node does not serve goes, as the store's
//! bytes (`Store::write_forwarded`), to subject `engram.w.NAME.SHARD`, where the
//! shard's replicas listen in a queue group (subscribed together with its queries by
//! `scatter::serve`, so only once their graph holds it): one live replica builds and
//! publishes it, and its answer is the write's sequence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{RequestErrorKind, Subscriber};
use engram_store::replica::ForwardWrites;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::reply::{to_store_error, Reply};
use crate::scatter::{Hook, NO_REPLICA_WAIT};
use crate::{nats, Error, Node, Result};

/// Forwarded-write subjects: `engram.w.` and the shard's `NAME.SHARD`.
pub const WRITE_PREFIX: &str = "engram.w.";
/// How long a forwarded write may take: the serving node's publish rides out a
/// stream leader's election (`log`: up to 8 tries of 4 s), then waits for its own
/// apply. Bounded, so a client's write never hangs on a lost node.
pub const WRITE_WAIT: Duration = Duration::from_secs(45);

/// This node's forwarded writes since it started (`GET /cluster`, `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForwardedWrites {
    /// Writes to shards it does not serve, sent to a replica and written there.
    pub sent: u64,
    /// Writes other nodes sent it, written here.
    pub taken: u64,
}

/// The running counts behind [`ForwardedWrites`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    taken: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) -> ForwardedWrites {
        ForwardedWrites {
            sent: self.sent.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
        }
    }
}

/// The subject (and queue group) of a shard's forwarded writes.
pub fn subject(collection: &str, shard: u32) -> String {
    format!("{WRITE_PREFIX}{collection}.{shard}")
}

/// Takes the forwarded writes of `collection`'s `shard`, each in its own task.
pub(crate) async fn take(node: Arc<Node>, mut sub: Subscriber, collection: String, shard: u32) {
    while let Some(msg) = sub.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let (node, name) = (node.clone(), collection.clone());
        tokio::spawn(async move {
            let owner = node.store.clone();
            let written = tokio::task::spawn_blocking(move || {
                owner.store().write_forwarded(&name, shard, &msg.payload)
            })
            .await
            .unwrap_or_else(|e| Err(engram_store::Error::Unavailable(format!("worker: {e}"))));
            if written.is_ok() {
                node.forwards.taken.fetch_add(1, Ordering::Relaxed);
            }
            let bytes = Reply::encode(node.config.node_id, written);
            if let Err(e) = node.client.publish(reply_to, bytes).await {
                tracing::warn!(error = %e, "a forwarded write's answer was not sent");
            }
        });
    }
}

/// Sends `write` to one replica of `collection`'s `shard`; its sequence once written.
/// A shard with no replica listening is asked again for [`NO_REPLICA_WAIT`] (nobody
/// received the write, so asking again is safe).
async fn send(node: &Node, collection: &str, shard: u32, write: Vec<u8>) -> Result<u64> {
    let subject = subject(collection, shard);
    let payload = bytes::Bytes::from(write);
    let started = Instant::now();
    loop {
        let request = async_nats::client::Request::new()
            .payload(payload.clone())
            .timeout(Some(WRITE_WAIT));
        match node.client.send_request(subject.clone(), request).await {
            Ok(msg) => {
                let seq = Reply::decode(&msg.payload, collection, shard, "documents")?;
                node.forwards.sent.fetch_add(1, Ordering::Relaxed);
                return Ok(seq);
            }
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                if started.elapsed() >= NO_REPLICA_WAIT {
                    return Err(Error::Unavailable(format!(
                        "shard {shard} of collection '{collection}' has no live replica to take the write (none for {:.1} s); retry, and see GET /cluster",
                        started.elapsed().as_secs_f64()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) if e.kind() == RequestErrorKind::TimedOut => {
                return Err(Error::Timeout(format!(
                    "shard {shard} of collection '{collection}' did not take the write within {} s; it may yet be written: retry with the same ids",
                    WRITE_WAIT.as_secs()
                )))
            }
            Err(e) => return Err(nats(e)),
        }
    }
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
