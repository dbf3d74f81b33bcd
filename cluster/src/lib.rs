//! Cluster mode (`engram serve --cluster nats://...,... --node-id N`): the store's
//! writes go through a replicated NATS JetStream stream, and every node follows it.
//!
//! Why JetStream: Engram runs on an existing replicated log instead of a consensus
//! protocol of its own (README "Cluster mode"). The store stays transport-free: it
//! sees a [`engram_store::replica::Replicator`] (here [`log::JetStreamLog`]) and is fed
//! the stream's messages by [`follower`]. [`status`] keeps the membership (heartbeats
//! in a key-value bucket with a max age) behind `GET /cluster`, with each shard's
//! replicas and their lag ([`shards`]).
//!
//! Layout in NATS: stream `ENGRAM`, a subject per collection (`engram.c.NAME`: its
//! creation and deletion) and per shard (`engram.c.NAME.SHARD`: its documents),
//! replicated on up to three servers; each node's durable consumer `node-N`; the
//! buckets `engram-nodes` (heartbeats) and `engram-placement` (overrides); query
//! subjects `engram.q.NAME.SHARD` ([`scatter`]) and forwarded-write subjects
//! `engram.w.NAME.SHARD` ([`forward`]), one queue group per shard; the
//! object store `engram-snapshots` and the lease bucket `engram-snapshot-lease`
//! ([`snapshot`], [`bootstrap`]). Heavy jobs: the work-queue stream `ENGRAM-JOBS`
//! and status bucket `engram-jobs` ([`work_queue`]); adapters: object store
//! `engram-adapters` and registry bucket `engram-adapter-registry`
//! ([`adapter_bucket`]).

pub mod adapter_bucket;
pub mod archive;
pub mod bootstrap;
pub mod fetch;
pub mod follower;
pub mod forward;
mod hold;
pub mod local;
pub mod log;
pub mod placement;
mod reply;
pub mod scatter;
pub mod shard_move;
mod shard_restore;
pub mod shards;
pub mod snapshot;
pub mod status;
pub mod work_queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::ServerAddr;
use engram_store::Store;

pub use reply::ShardRequests;
pub use shards::{ReplicaStatus, ShardStatus};
pub use status::{ClusterStatus, NodeStatus};

/// The stream that holds the write log.
pub const STREAM: &str = "ENGRAM";
/// Subjects of the stream: `engram.c.` and a collection's name.
pub const SUBJECT_PREFIX: &str = "engram.c.";
/// How long start-up waits for the NATS cluster (servers starting, leader election).
const START_WAIT: Duration = Duration::from_secs(60);

/// Errors of cluster mode (start-up and status; writes answer store errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cluster: {0}")]
    Config(String),
    #[error("cluster: NATS: {0}")]
    Nats(String),
    #[error("cluster: {0}")]
    Store(#[from] engram_store::Error),
    /// A shard has no replica that answers (503).
    #[error("{0}")]
    Unavailable(String),
    /// A shard's replica did not answer in time (504).
    #[error("{0}")]
    Timeout(String),
    /// A compare-and-set lost (409).
    #[error("{0}")]
    Conflict(String),
    /// A snapshot could not be written, read or used.
    #[error("cluster: {0}")]
    Snapshot(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn nats(e: impl std::fmt::Display) -> Error {
    Error::Nats(e.to_string())
}

/// Room left in a message for its headers (message id, expected sequence,
/// incarnation: well under this).
const HEADER_ROOM: usize = 1024;

/// The payload one message may carry: the servers' `max_payload` less
/// [`HEADER_ROOM`]; unbounded before the first connection (then the server decides).
pub(crate) fn message_room(client: &async_nats::Client) -> usize {
    client
        .try_server_info()
        .map(|i| i.max_payload)
        .filter(|&m| m > HEADER_ROOM)
        .map_or(usize::MAX, |m| m - HEADER_ROOM)
}

/// Refuses `bytes` of payload that the NATS servers would not take in one message
/// (their `max_payload`, 1 MiB by default), as the request's fault (400) and before
/// anything is sent, instead of a NATS error after it (a 503 that retrying cannot
/// cure). Unknown before the first connection: then the server decides.
pub(crate) fn fits_in_one_message(
    client: &async_nats::Client,
    bytes: usize,
) -> engram_store::Result<()> {
    let limit = message_room(client);
    if bytes > limit {
        return Err(engram_store::Error::LimitExceeded {
            kind: engram_store::error::LimitKind::LogMessageBytes,
            got: bytes,
            limit,
        });
    }
    Ok(())
}

/// Tries a JetStream request up to three times: the first creation of a replicated
/// stream or bucket (a new Raft group) can outlast one JetStream API request on a
/// loaded cluster, which is worth a retry rather than a failed snapshot or job.
/// Only for requests that are safe to repeat (creations, de-duplicated publishes).
pub(crate) async fn made<
    T,
    E: std::fmt::Display,
    F: std::future::Future<Output = std::result::Result<T, E>>,
>(
    mut make: impl FnMut() -> F,
) -> Result<T> {
    let mut tries = 0;
    loop {
        match make().await {
            Ok(t) => return Ok(t),
            Err(e) if tries < 2 => {
                tries += 1;
                tracing::warn!(error = %e, tries, "a JetStream request was not answered; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(nats(e)),
        }
    }
}

/// Object store `bucket` on file storage (made if missing, retried as [`made`] says).
pub(crate) async fn object_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<jetstream::object_store::ObjectStore> {
    made(|| {
        js.create_object_store(jetstream::object_store::Config {
            bucket: bucket.to_string(),
            description: Some(description.to_string()),
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
    })
    .await
}

/// Where the NATS servers are and who this node is.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://127.0.0.1:4222`).
    pub servers: Vec<String>,
    /// This node's id, unique in the cluster (its durable consumer and heartbeat).
    pub node_id: u32,
    /// The node's HTTP address, shown to others in `GET /cluster`.
    pub advertise: String,
    /// When this node takes snapshots unasked ([`snapshot::Policy`]).
    pub snapshots: snapshot::Policy,
    /// Which shards' records this node keeps ([`shard_move::ShardRecords`]).
    pub records: shard_move::ShardRecords,
}

impl ClusterConfig {
    /// Parses `--cluster nats://h1:4222,h2:4222` (comma-separated URLs).
    pub fn parse(servers: &str, node_id: u32, advertise: String) -> Result<Self> {
        let servers: Vec<String> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if servers.is_empty() {
            return Err(Error::Config(
                "--cluster needs at least one nats:// URL".into(),
            ));
        }
        for s in &servers {
            s.parse::<ServerAddr>()
                .map_err(|e| Error::Config(format!("'{s}' is not a NATS server URL: {e}")))?;
        }
        Ok(ClusterConfig {
            servers,
            node_id,
            advertise,
            snapshots: Default::default(),
            records: Default::default(),
        })
    }

    /// The same, keeping the records `records` says.
    pub fn with_records(mut self, records: shard_move::ShardRecords) -> Self {
        self.records = records;
        self
    }

    /// The same, taking snapshots by `policy`.
    pub fn with_snapshots(mut self, policy: snapshot::Policy) -> Self {
        self.snapshots = policy;
        self
    }

    /// Replicas of the stream and bucket: three where three servers run.
    pub fn replicas(&self) -> usize {
        self.servers.len().clamp(1, 3)
    }
}

/// A running cluster node: its NATS connection, runtime and background tasks.
pub struct Node {
    config: ClusterConfig,
    js: jetstream::Context,
    /// Plain NATS (queries' request/reply).
    client: async_nats::Client,
    store: Arc<dyn AsStore>,
    /// The shards this node answers for (collection, shard), as
    /// `scatter::serve` last subscribed; its own queries rank these in-process.
    serving: std::sync::RwLock<std::collections::BTreeSet<(String, u32)>>,
    /// Its forwarded writes, sent and taken ([`forward`]).
    forwards: reply::Counters,
    fetches: reply::Counters,
    /// Holds the follower while a shard's copy is taken in ([`shard_move`]).
    hold: hold::Hold,
    /// Wakes `scatter::serve` before its period (a copy or a graph rebuild is done).
    replan: tokio::sync::Notify,
    /// The shards being copied in ([`shard_move`]): their graph holds them already.
    copying: std::sync::Mutex<std::collections::BTreeSet<(String, u32)>>,
    /// Its own runtime: the store calls in from blocking threads of any runtime.
    runtime: Option<tokio::runtime::Runtime>,
}

/// Whatever owns the store (the server's engine).
pub trait AsStore: Send + Sync + 'static {
    fn store(&self) -> &Store;
}

impl Node {
    /// Connects, makes sure the stream and bucket exist, attaches the write log to the
    /// store and starts following the stream and heartbeating.
    pub fn start(store: Arc<dyn AsStore>, config: ClusterConfig) -> Result<Arc<Node>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cluster")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the cluster runtime: {e}")))?;
        let js = runtime.block_on(connect(&config))?;
        let node = Arc::new(Node {
            config,
            client: js.client(),
            js,
            store,
            serving: Default::default(),
            forwards: Default::default(),
            fetches: Default::default(),
            hold: Default::default(),
            replan: Default::default(),
            copying: Default::default(),
            runtime: Some(runtime),
        });
        let writer = log::JetStreamLog::new(node.js.clone(), node.handle(), node.config.node_id);
        let applied = node.store.store().attach_replicator(Arc::new(writer))?;
        let hook = Arc::new(scatter::Hook {
            node: Arc::downgrade(&node),
            runtime: node.handle(),
        });
        node.store.store().attach_scatter(hook.clone());
        node.store.store().attach_forwarder(hook);
        tracing::info!(
            node = node.config.node_id,
            applied,
            "cluster mode: following the write log"
        );
        node.handle().spawn(follower::follow(node.clone()));
        node.handle().spawn(status::heartbeat(node.clone()));
        node.handle().spawn(scatter::serve(node.clone()));
        node.handle().spawn(snapshot::periodic(node.clone()));
        Ok(node)
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("running").handle().clone()
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The cluster as this node sees it (for `GET /cluster`); callable from any
    /// async context.
    pub async fn status(self: &Arc<Self>) -> Result<ClusterStatus> {
        let node = self.clone();
        self.handle()
            .spawn(async move { status::read(&node).await })
            .await
            .map_err(nats)?
    }

    /// A query, answered by one replica of each shard and merged here (see
    /// [`scatter`]); callable from any async context.
    pub async fn query(
        self: &Arc<Self>,
        name: String,
        req: engram_store::api::QueryRequest,
    ) -> Result<engram_store::api::QueryResponse> {
        let node = self.clone();
        self.handle()
            .spawn(async move { scatter::query(&node, name, req).await })
            .await
            .map_err(nats)?
    }

    /// Overrides the replicas of `collection`'s `shard` with `nodes` (empty: back to
    /// rendezvous), if the override's revision is still `revision` (0: none yet).
    /// Returns the new revision.
    pub async fn place(
        self: &Arc<Self>,
        collection: String,
        shard: u32,
        nodes: Vec<u32>,
        revision: u64,
    ) -> Result<u64> {
        let shards = self
            .store
            .store()
            .collection_info(&collection)?
            .config
            .shards;
        if shard >= shards {
            return Err(engram_store::Error::invalid(
                "shard",
                format!("collection '{collection}' has {shards} shards (0..{shards}), not {shard}"),
            )
            .into());
        }
        let max = engram_store::collection::MAX_REPLICATION as usize;
        if nodes.len() > max {
            return Err(engram_store::Error::invalid(
                "nodes",
                format!("at most {max} nodes per shard, got {}", nodes.len()),
            )
            .into());
        }
        let node = self.clone();
        let o = placement::Override { nodes };
        self.handle()
            .spawn(async move {
                placement::write_override(&node, &collection, shard, &o, revision).await
            })
            .await
            .map_err(nats)?
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Connects to the servers and makes sure the stream exists, retrying while the
/// NATS cluster starts (its JetStream needs an elected meta leader).
async fn connect(config: &ClusterConfig) -> Result<jetstream::Context> {
    let addrs: Vec<ServerAddr> = config
        .servers
        .iter()
        .map(|s| s.parse().expect("checked by parse"))
        .collect();
    let client = async_nats::ConnectOptions::new()
        .name(format!("engram-node-{}", config.node_id))
        // Queries bound their own requests (`scatter::SHARD_WAIT`).
        .request_timeout(Some(scatter::SHARD_WAIT + Duration::from_secs(1)))
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .map_err(nats)?;
    let js = jetstream::new(client);
    let started = Instant::now();
    loop {
        let made = js
            .get_or_create_stream(jetstream::stream::Config {
                name: STREAM.to_string(),
                // `>`: a collection's shards will be `engram.c.NAME.S` in the same stream.
                subjects: vec![format!("{SUBJECT_PREFIX}>")],
                num_replicas: config.replicas(),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await;
        match made {
            Ok(_) => return Ok(js),
            Err(e) if started.elapsed() < START_WAIT => {
                tracing::info!(error = %e, "waiting for JetStream");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(nats(format!("the stream {STREAM} is not available: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_are_parsed_and_checked() {
        let c = ClusterConfig::parse(
            "nats://127.0.0.1:4222, nats://127.0.0.1:4223",
            2,
            "a".into(),
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.replicas(), 2);
        assert!(ClusterConfig::parse(" , ", 1, "a".into()).is_err());
        assert!(ClusterConfig::parse("nats://host:notaport", 1, "a".into()).is_err());
    }
}
