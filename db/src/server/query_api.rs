//! `/collections/{name}/query` and `/embed`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Json;

use super::auth::{Caller, Scope};
use super::error::ApiResult;
use super::extract::{blocking, ApiJson, Path};
use super::AppState;
use crate::api_types::{EmbedRequest, EmbedResponse, Include, QueryRequest, QueryResponse};

/// Nearest documents to a text or a vector, with optional metadata filter.
/// Scores are exact, rounded or left out as the caller's key says (`scores`).
#[utoipa::path(post, path = "/collections/{name}/query", request_body = QueryRequest,
    params(("name" = String, Path)),
    responses((status = 200, body = QueryResponse), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn query(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    if req.includes(Include::Vector) {
        // Raw vectors can be inverted back into text.
        caller.require(Scope::Write)?;
    }
    let resp: QueryResponse = match &state.cluster {
        // Cluster mode: one replica of each shard ranks it, this node merges.
        Some(node) => node
            .query(name, req)
            .await
            .map_err(super::cluster_api::api_error)?,
        None => blocking(&state, move |e| e.store().query(&name, &req)).await?,
    };
    Ok(caller.scores.respond(resp, "hits"))
}

/// Embed texts with the server's encoder (one vector per text, truncated to 256 tokens).
#[utoipa::path(post, path = "/embed", request_body = EmbedRequest,
    responses((status = 200, body = EmbedResponse), (status = 400, body = super::error::ErrorBody)))]
pub async fn embed(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> ApiResult<Json<EmbedResponse>> {
    caller.require(Scope::Read)?;
    Ok(Json(
        blocking(&state, move |e| e.store().embed(&req)).await?,
    ))
}
