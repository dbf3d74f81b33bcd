//! Cluster mode in the server: starting the node (`engram serve --cluster`, after a
//! bootstrap from a snapshot where needed), `GET /cluster` (the nodes, the shards and
//! their replicas, with their lag), manual placement (`PUT
//! /cluster/placement/{collection}/{shard}`), snapshots (`POST /cluster/snapshot`,
//! `GET /cluster/snapshots`), the same figures for `/metrics`, and cluster errors as
//! HTTP answers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use engram_cluster::snapshot::{Policy, SnapshotInfo, Taken};
use engram_cluster::{AsStore, ClusterConfig, ClusterStatus, Node};
use engram_store::Store;

use super::auth::{Caller, Scope};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Path};
use super::AppState;
use crate::config::ServerConfig;
use crate::engine::Engine;

impl AsStore for Engine {
    fn store(&self) -> &Store {
        Engine::store(self)
    }
}

/// The cluster configuration the server's names (`None`: one machine).
fn cluster_config(cfg: &ServerConfig) -> anyhow::Result<Option<ClusterConfig>> {
    let Some(settings) = &cfg.cluster else {
        return Ok(None);
    };
    let defaults = Policy::default();
    let policy = Policy {
        every_writes: settings
            .snapshot_every_writes
            .unwrap_or(defaults.every_writes),
        every: settings
            .snapshot_every_secs
            .map_or(defaults.every, std::time::Duration::from_secs),
    };
    let config = ClusterConfig::parse(
        &settings.servers,
        settings.node_id,
        format!("http://{}", cfg.addr()),
    )?;
    let records = match settings.shard_records.as_deref() {
        Some(r) => r.parse()?,
        None => Default::default(),
    };
    Ok(Some(config.with_snapshots(policy).with_records(records)))
}

/// Before the database opens, in cluster mode: a node the stream was trimmed past,
/// or one with no database while a snapshot exists, starts from the newest snapshot.
pub fn bootstrap_cluster(cfg: &ServerConfig) -> anyhow::Result<()> {
    if let Some(config) = cluster_config(cfg)? {
        let done = engram_cluster::bootstrap::prepare(&config, &cfg.data_dir)?;
        tracing::info!(?done, "cluster start-up: data directory ready");
    }
    Ok(())
}

/// Joins the cluster when the configuration names one (`None`: one machine).
pub fn start_cluster(
    engine: &Arc<Engine>,
    cfg: &ServerConfig,
) -> anyhow::Result<Option<Arc<Node>>> {
    let Some(config) = cluster_config(cfg)? else {
        return Ok(None);
    };
    tracing::info!(servers = ?config.servers, node = config.node_id, "joining the cluster");
    let node = Node::start(engine.clone(), config)?;
    engine.join_cluster(node.clone());
    Ok(Some(node))
}

/// This server's cluster node; 404 on one machine.
fn clustered(state: &AppState) -> ApiResult<&Arc<Node>> {
    state.cluster.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_clustered",
            "this server is not in cluster mode (start it with --cluster nats://... --node-id N)",
        )
    })
}

/// The cluster as this node sees it: the stream's last sequence and leader, and
/// every node whose heartbeat is recent, with its applied sequence and lag.
#[utoipa::path(get, path = "/cluster", responses((status = 200, body = ClusterStatus),
    (status = 401, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
    (status = 503, body = super::error::ErrorBody)))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<ClusterStatus>> {
    caller.require(Scope::Read)?;
    let node = clustered(&state)?;
    node.status().await.map(Json).map_err(api_error)
}

/// A cluster error as an HTTP answer: a store error as the store's, a shard with no
/// live replica 503, a shard that did not answer in time 504, a lost
/// compare-and-set 409, NATS itself 503.
pub fn api_error(e: engram_cluster::Error) -> ApiError {
    use engram_cluster::Error as E;
    let (status, code) = match e {
        E::Store(e) => return ApiError::from(e),
        E::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "shard_timeout"),
        E::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        E::Unavailable(_) | E::Nats(_) | E::Config(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        E::Snapshot(_) => (StatusCode::INTERNAL_SERVER_ERROR, "snapshot_failed"),
    };
    ApiError::new(status, code, e.to_string())
}

/// A manual placement of one shard's replicas.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceRequest {
    /// The nodes that answer for the shard (those alive); empty: back to rendezvous
    /// hashing.
    pub nodes: Vec<u32>,
    /// The shard's `override_revision` in `GET /cluster` (0: no override yet): the
    /// write is refused (409) if another was made since.
    #[serde(default)]
    pub revision: u64,
}

/// The revision of a stored placement.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PlaceResponse {
    pub revision: u64,
}

/// Places one shard's replicas by hand (compare-and-set on its revision).
#[utoipa::path(put, path = "/cluster/placement/{collection}/{shard}", request_body = PlaceRequest,
    params(("collection" = String, Path), ("shard" = u32, Path)),
    responses((status = 200, body = PlaceResponse), (status = 400, body = super::error::ErrorBody),
    (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
    (status = 409, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn place(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((collection, shard)): Path<(String, u32)>,
    ApiJson(req): ApiJson<PlaceRequest>,
) -> ApiResult<Json<PlaceResponse>> {
    caller.require(Scope::Admin)?;
    let node = clustered(&state)?;
    let revision = node
        .place(collection, shard, req.nodes, req.revision)
        .await
        .map_err(api_error)?;
    Ok(Json(PlaceResponse { revision }))
}

/// Takes a snapshot of this node's database now, uploads it to the object store
/// and trims the stream below it (admin). 409 while another node writes one.
#[utoipa::path(post, path = "/cluster/snapshot",
    responses((status = 200, body = Taken), (status = 401, body = super::error::ErrorBody),
    (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
    (status = 409, body = super::error::ErrorBody), (status = 500, body = super::error::ErrorBody),
    (status = 503, body = super::error::ErrorBody)))]
pub async fn snapshot(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Taken>> {
    caller.require(Scope::Admin)?;
    let node = clustered(&state)?;
    node.snapshot().await.map(Json).map_err(api_error)
}

/// The stored snapshots, newest first (admin).
#[utoipa::path(get, path = "/cluster/snapshots",
    responses((status = 200, body = Vec<SnapshotInfo>), (status = 401, body = super::error::ErrorBody),
    (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
    (status = 503, body = super::error::ErrorBody)))]
pub async fn snapshots(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<SnapshotInfo>>> {
    caller.require(Scope::Admin)?;
    let node = clustered(&state)?;
    node.snapshots().await.map(Json).map_err(api_error)
}

/// A `/metrics` gauge: (name, help, labels, value), as the store's.
type Gauge = (&'static str, &'static str, String, f64);

/// The cluster's figures for `/metrics`: the same as `GET /cluster`.
pub fn cluster_gauges(s: &ClusterStatus) -> Vec<Gauge> {
    let mut gauges = vec![(
        "engram_cluster_last_seq",
        "The write log's last sequence (the newest acknowledged write).",
        String::new(),
        s.last_seq as f64,
    )];
    // This node's requests to and from the replicas of shards: (gauge, help, count).
    let requests = [
        ("engram_cluster_forwarded_writes_sent", "Writes this node sent to a replica of a shard it does not serve, written there.", s.forwarded.sent),
        ("engram_cluster_forwarded_writes_taken", "Writes other nodes forwarded to this node, written here.", s.forwarded.taken),
        ("engram_cluster_fetches_sent", "Reads of query hits and documents this node sent to a replica of a shard it does not serve.", s.fetched.sent),
        ("engram_cluster_fetches_taken", "Reads of query hits and documents other nodes sent to this node, read here.", s.fetched.taken),
    ];
    gauges.extend(requests.map(|(name, help, n)| (name, help, String::new(), n as f64)));
    for n in &s.nodes {
        let labels = format!("{{node=\"{}\"}}", n.node_id);
        gauges.push((
            "engram_cluster_node_applied_seq",
            "The last log sequence each live node has applied.",
            labels.clone(),
            n.applied_seq as f64,
        ));
        gauges.push((
            "engram_cluster_node_lag",
            "How far each live node is behind the log's last sequence.",
            labels,
            n.lag as f64,
        ));
    }
    for sh in &s.shards {
        let labels = format!("collection=\"{}\",shard=\"{}\"", sh.collection, sh.shard);
        gauges.push((
            "engram_cluster_shard_last_seq",
            "The sequence of each shard's last message.",
            format!("{{{labels}}}"),
            sh.last_seq as f64,
        ));
        for r in &sh.replicas {
            gauges.push((
                "engram_cluster_replica_lag",
                "Each shard's last sequence minus each replica's applied one.",
                format!("{{{labels},node=\"{}\"}}", r.node_id),
                r.lag as f64,
            ));
        }
    }
    gauges
}
