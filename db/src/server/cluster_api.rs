//! Cluster mode in the server: starting the node (`engram serve --cluster`),
//! `GET /cluster` (the nodes, the shards and their replicas, with their lag) and the
//! same figures for `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use engram_cluster::{AsStore, ClusterConfig, ClusterStatus, Node};
use engram_store::Store;

use super::auth::{Caller, Scope};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::config::ServerConfig;
use crate::engine::Engine;

impl AsStore for Engine {
    fn store(&self) -> &Store {
        Engine::store(self)
    }
}

/// Joins the cluster when the configuration names one (`None`: one machine).
pub fn start_cluster(
    engine: &Arc<Engine>,
    cfg: &ServerConfig,
) -> anyhow::Result<Option<Arc<Node>>> {
    let Some(settings) = &cfg.cluster else {
        return Ok(None);
    };
    let config = ClusterConfig::parse(
        &settings.servers,
        settings.node_id,
        format!("http://{}", cfg.addr()),
    )?;
    tracing::info!(servers = ?config.servers, node = config.node_id, "joining the cluster");
    Ok(Some(Node::start(engine.clone(), config)?))
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
    let Some(node) = &state.cluster else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_clustered",
            "this server is not in cluster mode (start it with --cluster nats://... --node-id N)",
        ));
    };
    node.status().await.map(Json).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })
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
