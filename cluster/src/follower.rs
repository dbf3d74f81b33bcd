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

use crate::{nats, Error, Node, Result, STREAM, SUBJECT_PREFIX};

/// How long the follower's JetStream API requests (stream info, consumer delete and
/// create) wait for an answer at first; doubled after each failed attempt in a row,
/// up to [`API_WAIT_MAX`]. Why not the connection's request timeout: that one is
/// 13 s (sized for scatter queries, `scatter::SHARD_WAIT`), and a request that went
/// to a server just killed, or to a consumer with no leader yet, is never answered:
/// each one left the follower idle for the whole 13 s after the stream leader's kill
/// (the ~17 s stall seen in the cluster e2e: ~2 s to notice the lost pull, 13 s
/// waiting, then a retry that succeeds). A short first bound retries sooner, and the
/// retry reaches a live server or the newly elected leader; the doubling keeps a
/// loaded server that answers slowly from failing the follower forever.
const API_WAIT: Duration = Duration::from_secs(2);
/// The longest bound of one API request (see [`API_WAIT`]).
const API_WAIT_MAX: Duration = Duration::from_secs(16);
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
    let mut wait = API_WAIT;
    loop {
        let started = node.store.store().applied_seq();
        if let Err(e) = follow_once(&node, wait).await {
            tracing::warn!(error = %e, applied = node.store.store().applied_seq(), "following the write log stopped; resuming");
        }
        // Progress made: the next failure is a new one.
        wait = if node.store.store().applied_seq() > started {
            API_WAIT
        } else {
            (wait * 2).min(API_WAIT_MAX)
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `request`'s answer, or an error once `wait` has passed without one.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    wait: Duration,
    request: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    match tokio::time::timeout(wait, request).await {
        Ok(answer) => answer.map_err(nats),
        Err(_) => Err(Error::Nats(format!(
            "{what}: no answer within {:.0} s",
            wait.as_secs_f64()
        ))),
    }
}

async fn follow_once(node: &Arc<Node>, wait: Duration) -> Result<()> {
    let applied = node.store.store().applied_seq();
    let stream = bounded("stream info", wait, node.js.get_stream(STREAM)).await?;
    let name = consumer_name(node.config.node_id);
    // Made again at the store's position (a kept one may be ahead or behind it).
    let _ = bounded("consumer delete", wait, stream.delete_consumer(&name)).await;
    let create = stream.create_consumer(pull::Config {
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
    });
    let consumer = bounded("consumer create", wait, create).await?;
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
        let incarnation = crate::log::incarnation_of(message.headers.as_ref());
        let batch = Batch::decode(&message.payload)?;
        // Held while a shard's copy becomes kept; its writes kept aside until then
        // (`crate::hold`).
        let _admitted = node.hold.admit().await;
        node.hold.offer(
            &key,
            crate::hold::TailMessage {
                seq,
                incarnation,
                payload: message.payload.clone(),
            },
        );
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
