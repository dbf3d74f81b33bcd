//! Cluster mode in the server: starting the node (`engram serve --cluster`) and
//! `GET /cluster`, the nodes with their applied sequence and lag.

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
