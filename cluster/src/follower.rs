//! Following the write log: this node's durable consumer delivers every message of
//! the stream in order, each applied to the store (records, graph, keyword index)
//! with its sequence in the same RocksDB batch.
//!
//! Resuming: the store's applied sequence is the truth, so at every (re)start the
//! consumer is made again to deliver from the message after it. A message at or
//! below it is a repeat and skipped; one beyond the next is a gap (lost delivery,
//! or a trim past this node: `crate::snapshot` keeps what live nodes still need) and
//! restarts the consumer.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use engram_store::log::Batch;
use futures_util::StreamExt;

use crate::log::INCARNATION;
use crate::{nats, Error, Node, Result, STREAM, SUBJECT_PREFIX};

/// How long one pull request waits for messages before the next is sent.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How often the server says a pull request is alive while no message comes.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The durable consumer's name of node `id`.
pub fn consumer_name(id: u32) -> String {
    format!("node-{id}")
}

/// Follows the stream for as long as the node runs.
pub async fn follow(node: Arc<Node>) {
    loop {
        if let Err(e) = follow_once(&node).await {
            tracing::warn!(error = %e, applied = node.store.store().applied_seq(), "following the write log stopped; resuming");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn follow_once(node: &Arc<Node>) -> Result<()> {
    let applied = node.store.store().applied_seq();
    let stream = node.js.get_stream(STREAM).await.map_err(nats)?;
    let name = consumer_name(node.config.node_id);
    // Made again at the store's position (a kept one may be ahead or behind it).
    let _ = stream.delete_consumer(&name).await;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            deliver_policy: if applied == 0 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: applied + 1,
                }
            },
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    // Short pulls with frequent heartbeats: a pull request is lost when the server
    // that holds it dies, and the client notices only when the pull expires or a
    // heartbeat is missing for twice its period. With the library's defaults (pulls
    // of 30 s, heartbeats every 15 s) that is up to 30 s of not following; now it is
    // about 2 s ([`HEARTBEAT`] x 2), then the consumer is made again.
    let mut messages = consumer
        .stream()
        .expires(PULL_EXPIRES)
        .heartbeat(HEARTBEAT)
        .messages()
        .await
        .map_err(nats)?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(nats)?;
        let seq = message.info().map_err(nats)?.stream_sequence;
        let applied = node.store.store().applied_seq();
        if seq <= applied {
            continue;
        }
        if seq != applied + 1 {
            return Err(Error::Nats(format!(
                "message {seq} arrived after {applied}: a gap; following again from {} (if a snapshot trimmed the stream past this node, restart it: it bootstraps from the snapshot)",
                applied + 1
            )));
        }
        let key = message
            .subject
            .strip_prefix(SUBJECT_PREFIX)
            .ok_or_else(|| Error::Nats(format!("message {seq} has subject {}", message.subject)))?
            .to_string();
        let incarnation = message
            .headers
            .as_ref()
            .and_then(|h| h.get(INCARNATION))
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or(0);
        let batch = Batch::decode(&message.payload)?;
        let owner = node.store.clone();
        tokio::task::spawn_blocking(move || {
            owner
                .store()
                .apply_replicated(seq, &key, incarnation, batch)
        })
        .await
        .map_err(nats)??;
    }
    Err(Error::Nats("the consumer's message stream ended".into()))
}
