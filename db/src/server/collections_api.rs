//! `/collections` and `/collections/{name}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::auth::{Caller, Scope};
use super::error::ApiResult;
use super::extract::{blocking, optional_json, Path};
use super::AppState;
use crate::api_types::{CollectionInfo, CollectionView, CreateCollection};

#[derive(Serialize, utoipa::ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionInfo>,
}

/// Create a collection (an empty body gives a MiniLM text collection).
#[utoipa::path(put, path = "/collections/{name}", request_body(content = Option<CreateCollection>, description = "optional: no body makes a MiniLM text collection"),
    params(("name" = String, Path, description = "1-64 of A-Z a-z 0-9 _ -")),
    responses((status = 200, body = CollectionInfo), (status = 400, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<CollectionInfo>> {
    caller.require(Scope::Write)?;
    let req: CreateCollection = optional_json(&body, "the collection settings")?;
    Ok(Json(
        blocking(&state, move |e| e.create_collection(&name, req)).await?,
    ))
}

#[utoipa::path(get, path = "/collections", responses((status = 200, body = CollectionList)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<CollectionList>> {
    caller.require(Scope::Read)?;
    let collections = blocking(&state, |e| e.store().list_collections_all_shards()).await?;
    Ok(Json(CollectionList { collections }))
}

/// A collection's settings and sizes, and its active adapter with the count of
/// learned documents changed since (stale).
#[utoipa::path(get, path = "/collections/{name}", params(("name" = String, Path)),
    responses((status = 200, body = CollectionView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<CollectionView>> {
    caller.require(Scope::Read)?;
    Ok(Json(
        blocking(&state, move |e| e.collection_view(&name)).await?,
    ))
}

/// Delete a collection and all its documents (admin).
#[utoipa::path(delete, path = "/collections/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    blocking(&state, move |e| e.delete_collection(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rebuild a contextual collection's corpus context from its documents and re-embed
/// it under the new context, in the background (admin). Queries keep using the old
/// vectors until the swap; `GET /collections/{name}` shows `corpus_context.job`.
#[utoipa::path(post, path = "/collections/{name}/recontextualize", params(("name" = String, Path)),
    responses((status = 202, body = CollectionInfo), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn recontextualize(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<CollectionInfo>)> {
    caller.require(Scope::Admin)?;
    let info = blocking(&state, move |e| e.recontextualize(&name)).await?;
    Ok((StatusCode::ACCEPTED, Json(info)))
}

/// `?k=` clusters (default about sqrt(n/2)) and `?top=` documents shown per cluster.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct ClusterParams {
    #[param(minimum = 1, maximum = 256)]
    pub k: Option<usize>,
    /// At most 20 are shown; larger values are cut to 20.
    #[param(minimum = 0)]
    pub top: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClusterList {
    pub clusters: Vec<engram_store::hot::ClusterInfo>,
}

/// The collection's topic clusters, hottest first: how many documents each holds,
/// what share of recent query hits (decayed, half-life one week) it received, and
/// how many logged questions it answered best, with the newest (admin callers only).
#[utoipa::path(get, path = "/collections/{name}/clusters", params(("name" = String, Path), ClusterParams),
    responses((status = 200, body = ClusterList), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn clusters(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    super::extract::Query(params): super::extract::Query<ClusterParams>,
) -> ApiResult<Json<ClusterList>> {
    caller.require(Scope::Read)?;
    let mut clusters = blocking(&state, move |e| {
        e.store().clusters(&name, params.k, params.top.unwrap_or(3))
    })
    .await?;
    // Other users' questions are for the operator: only admin callers see them.
    if caller.scope < Scope::Admin {
        clusters.iter_mut().for_each(|c| c.sample_questions.clear());
    }
    Ok(Json(ClusterList { clusters }))
}
