//! Shards and their replicas as the log and the heartbeats show them (`GET /cluster`,
//! `engram cluster status`, `/metrics`): per shard, the last message on its subject,
//! and per replica how far its applied position is below it.
//!
//! A shard's replicas are the live nodes placement gives it (`crate::placement`):
//! they answer its part of queries. Every live node still follows the whole stream
//! in order (README "Cluster mode"), so a replica holds all of its shard once its
//! applied sequence reaches the shard's last message.

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use engram_store::replica::Subject;
use serde::{Deserialize, Serialize};

use crate::placement::Current;
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
    /// The live nodes placed to answer for it (rendezvous hashing, or an override),
    /// best first, with their lag.
    pub replicas: Vec<ReplicaStatus>,
    /// The revision of its manual placement override (0: none); a new override
    /// must name it (compare-and-set).
    #[serde(default)]
    pub override_revision: u64,
}

/// The placed shards, at most [`MAX_LISTED`], with the lag of their replicas
/// (`nodes`: the live ones).
pub async fn read(
    stream: &Stream,
    placement: &Current,
    nodes: &[NodeStatus],
) -> Result<Vec<ShardStatus>> {
    let mut out = Vec::new();
    for ((name, shard), placed) in &placement.replicas {
        let shard = *shard;
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
        let replicas = placed
            .iter()
            .filter_map(|id| nodes.iter().find(|n| n.node_id == *id))
            .map(|n| ReplicaStatus {
                node_id: n.node_id,
                lag: last_seq.saturating_sub(n.applied_seq),
            })
            .collect();
        let override_revision = placement
            .overrides
            .get(&(name.clone(), shard))
            .map_or(0, |(_, rev)| *rev);
        out.push(ShardStatus {
            collection: name.clone(),
            shard,
            last_seq,
            replicas,
            override_revision,
        });
    }
    Ok(out)
}
