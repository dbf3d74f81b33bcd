//! Membership and lag: every node puts a heartbeat (its address and applied
//! sequence) into a key-value bucket whose entries expire after [`MAX_AGE`], so a
//! dead node drops out of `GET /cluster` on its own; lag is the stream's last
//! sequence minus a node's applied one.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::shards::ShardStatus;
use crate::{nats, Node, Result, STREAM};

/// The heartbeat bucket.
pub const BUCKET: &str = "engram-nodes";
/// A node missing this long is gone.
pub const MAX_AGE: Duration = Duration::from_secs(10);
/// How often a node beats.
const EVERY: Duration = Duration::from_secs(2);
/// How soon a beat that was not stored is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// One node as its last heartbeat says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodeStatus {
    pub node_id: u32,
    /// Its HTTP address.
    pub address: String,
    /// The last log sequence it applied.
    pub applied_seq: u64,
    /// How far it is behind the stream's last sequence.
    #[serde(default)]
    pub lag: u64,
    /// Unix milliseconds of the heartbeat.
    pub at_ms: u64,
    /// The shards it answers for (`NAME.SHARD`), so that a node a shard moved off
    /// keeps answering until another one does (`scatter::serve`).
    #[serde(default)]
    pub serving: Vec<String>,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// The node that answered, and the last sequence it applied (live).
    pub node_id: u32,
    pub applied_seq: u64,
    /// The stream's last sequence (the newest acknowledged write).
    pub last_seq: u64,
    /// The stream's replicas (servers holding it) and its leader.
    pub stream_replicas: usize,
    pub stream_leader: Option<String>,
    /// Live nodes (heartbeat within `MAX_AGE`), by id.
    pub nodes: Vec<NodeStatus>,
    /// Every shard of every collection (at most `shards::MAX_LISTED`), with its
    /// placed replicas and their lag.
    #[serde(default)]
    pub shards: Vec<ShardStatus>,
    /// The answering node's forwarded writes (to and from the shards' replicas).
    #[serde(default)]
    pub forwarded: crate::ShardRequests,
    /// The answering node's reads of query hits' documents (to and from the shards'
    /// replicas: a query's fetch phase).
    #[serde(default)]
    pub fetched: crate::ShardRequests,
}

async fn bucket(node: &Node) -> Result<kv::Store> {
    node.js
        .create_key_value(kv::Config {
            bucket: BUCKET.to_string(),
            history: 1,
            max_age: MAX_AGE,
            num_replicas: node.config.replicas(),
            ..Default::default()
        })
        .await
        .map_err(nats)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Beats every [`EVERY`] for as long as the node runs.
pub async fn heartbeat(node: Arc<Node>) {
    let mut kv = None;
    loop {
        let mut stored = false;
        if kv.is_none() {
            kv = bucket(&node)
                .await
                .map_err(|e| tracing::warn!(error = %e, "no heartbeat bucket yet"))
                .ok();
        }
        if let Some(store) = &kv {
            let beat = NodeStatus {
                node_id: node.config.node_id,
                address: node.config.advertise.clone(),
                applied_seq: node.store.store().applied_seq(),
                lag: 0,
                at_ms: now_ms(),
                serving: node
                    .serving
                    .read()
                    .expect("lock")
                    .iter()
                    .map(|(name, shard)| format!("{name}.{shard}"))
                    .collect(),
            };
            let bytes = serde_json::to_vec(&beat).expect("serialises");
            match store
                .put(format!("node-{}", beat.node_id), bytes.into())
                .await
            {
                Ok(_) => stored = true,
                Err(e) => tracing::warn!(error = %e, "heartbeat not stored"),
            }
        }
        // Retried sooner when not stored (at start-up the bucket's stream may not be
        // ready yet): until its first heartbeat shows, the node places no shard on
        // itself and other nodes place none on it.
        tokio::time::sleep(if stored { EVERY } else { RETRY }).await;
    }
}

/// Every live node, by id, as its heartbeat says (lag not set).
pub async fn live_nodes(node: &Node) -> Result<Vec<NodeStatus>> {
    let kv = bucket(node).await?;
    let mut nodes = Vec::new();
    let mut keys = kv.keys().await.map_err(nats)?;
    while let Some(key) = keys.next().await {
        let key = key.map_err(nats)?;
        if let Some(bytes) = kv.get(&key).await.map_err(nats)? {
            if let Ok(n) = serde_json::from_slice::<NodeStatus>(&bytes) {
                nodes.push(n);
            }
        }
    }
    nodes.sort_by_key(|n| n.node_id);
    Ok(nodes)
}

/// Reads the stream's state, every live heartbeat and the placement.
pub async fn read(node: &Node) -> Result<ClusterStatus> {
    let mut stream = node.js.get_stream(STREAM).await.map_err(nats)?;
    let info = stream.info().await.map_err(nats)?;
    let last_seq = info.state.last_sequence;
    let (stream_replicas, stream_leader) = match &info.cluster {
        Some(c) => (c.replicas.len() + 1, c.leader.clone()),
        None => (1, None),
    };
    let mut nodes = live_nodes(node).await?;
    for n in &mut nodes {
        n.lag = last_seq.saturating_sub(n.applied_seq);
    }
    let placement = crate::placement::current(node, &nodes).await?;
    let shards = crate::shards::read(&stream, &placement, &nodes).await?;
    Ok(ClusterStatus {
        node_id: node.config.node_id,
        applied_seq: node.store.store().applied_seq(),
        last_seq,
        stream_replicas,
        stream_leader,
        nodes,
        shards,
        forwarded: node.forwards.read(),
        fetched: node.fetches.read(),
    })
}
