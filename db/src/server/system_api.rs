//! Health, metrics, the OpenAPI document and backups.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Scope};
use super::error::ApiResult;
use super::extract::{blocking, ApiJson};
use super::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub collections: usize,
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        collections: state.engine.store().list_collections().len(),
    })
}

/// Request counters for anyone who can reach the server; the per-collection
/// gauges (names and sizes) only for the admin scope, which is every caller
/// when no keys are configured.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format"),
    (status = 401, body = super::error::ErrorBody)))]
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let admin = match state.keys.caller(&headers) {
        Ok(caller) => caller.scope == Scope::Admin,
        // No key at all: the counters only. A wrong key is refused as anywhere.
        Err(_) if !has_key(&headers) => false,
        Err(e) => return Err(e),
    };
    let collections = if admin {
        state.engine.store().list_collections()
    } else {
        Vec::new()
    };
    let mut gauges = Vec::new();
    for c in &collections {
        let labels = format!("{{collection=\"{}\"}}", c.config.name);
        gauges.push((
            "engram_collection_documents",
            "Documents per collection.",
            labels.clone(),
            c.documents as f64,
        ));
        gauges.push((
            "engram_collection_vectors",
            "Live vectors per collection.",
            labels,
            c.vectors as f64,
        ));
    }
    if let (true, Some(node)) = (admin, &state.cluster) {
        match node.status().await {
            Ok(status) => gauges.extend(super::cluster_api::cluster_gauges(&status)),
            Err(e) => tracing::warn!(error = %e, "no cluster figures for /metrics"),
        }
    }
    let generation = state.engine.generation_gate().stats();
    gauges.extend(super::answer_api::generation_gauges(&generation));
    gauges.sort_by(|a, b| a.0.cmp(b.0));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    ))
}

/// Whether the request presents a key in any of the headers `KeyRing` reads.
fn has_key(headers: &HeaderMap) -> bool {
    ["authorization", "api-key", "x-api-key"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

pub async fn openapi() -> impl IntoResponse {
    Json(super::openapi_doc())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// A directory on the server's machine that does not exist yet.
    pub path: String,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupResponse {
    pub path: String,
}

/// A consistent online backup (RocksDB checkpoint); restore it with `engram restore`.
#[utoipa::path(post, path = "/admin/backup", request_body = BackupRequest,
    responses((status = 200, body = BackupResponse), (status = 400, body = super::error::ErrorBody)))]
pub async fn backup(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<BackupRequest>,
) -> ApiResult<Json<BackupResponse>> {
    caller.require(Scope::Admin)?;
    let path = PathBuf::from(&req.path);
    blocking(&state, move |e| e.backup(&path)).await?;
    Ok(Json(BackupResponse { path: req.path }))
}
