//! Shards and their replicas as the log and the heartbeats show them (`GET /cluster`,
//! `engram cluster status`, `/metrics`): per shard, the last message on its subject,
//! and per replica how far its applied position is below it.
//!
//! Every live node follows the whole stream in order, so every live node is a replica
//! of every shard (placement on a subset is not built yet) and holds all of a shard
//! once its applied sequence reaches the shard's last message.

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use engram_store::replica::Subject;
use serde::{Deserialize, Serialize};

use crate::status::NodeStatus;
use crate::{nats, Result, SUBJECT_PREFIX};

/// Shards listed at most per status (one request to the stream each).
pub const MAX_LISTED: usize = 1024;

/// One replica of a shard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ReplicaStatus {
    pub node_id: u32,
    /// The shard's last sequence minus the replica's applied one (0: it holds every
    /// acknowledged write of the shard).
    pub lag: u64,
}

/// One shard of a collection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ShardStatus {
    pub collection: String,
    pub shard: u32,
    /// The sequence of the shard's last message (0: none yet).
    pub last_seq: u64,
    /// Live nodes holding it, with their lag.
    pub replicas: Vec<ReplicaStatus>,
}

/// The shards of `collections` (name, shard count), at most [`MAX_LISTED`], with
/// `nodes` as their replicas.
pub async fn read(
    stream: &Stream,
    collections: &[(String, u32)],
    nodes: &[NodeStatus],
) -> Result<Vec<ShardStatus>> {
    let mut out = Vec::new();
    for (name, shards) in collections {
        for shard in 0..*shards {
            if out.len() == MAX_LISTED {
                return Ok(out);
            }
            let subject = Subject {
                collection: name,
                shard: Some(shard),
            };
            let last = stream
                .get_last_raw_message_by_subject(&format!("{SUBJECT_PREFIX}{}", subject.key()))
                .await;
            let last_seq = match last {
                Ok(m) => m.sequence,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => 0,
                Err(e) => return Err(nats(e)),
            };
            let replicas = nodes
                .iter()
                .map(|n| ReplicaStatus {
                    node_id: n.node_id,
                    lag: last_seq.saturating_sub(n.applied_seq),
                })
                .collect();
            out.push(ShardStatus {
                collection: name.clone(),
                shard,
                last_seq,
                replicas,
            });
        }
    }
    Ok(out)
}
