//! `/collections/{name}/documents`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::auth::{Caller, Scope};
use super::error::ApiResult;
use super::extract::{blocking, ApiJson, Path, Query};
use super::AppState;
use crate::api_types::{Document, UpsertRequest, UpsertResponse};

/// Insert or replace documents in one atomic, durable batch.
#[utoipa::path(post, path = "/collections/{name}/documents", request_body = UpsertRequest,
    params(("name" = String, Path)),
    responses((status = 200, body = UpsertResponse), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody)))]
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpsertRequest>,
) -> ApiResult<Json<UpsertResponse>> {
    caller.require(Scope::Write)?;
    Ok(Json(
        blocking(&state, move |e| e.store().upsert(&name, req.documents)).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct GetParams {
    /// `vector` to return the document's chunk vectors (write scope).
    pub include: Option<String>,
}

#[utoipa::path(get, path = "/collections/{name}/documents/{id}",
    params(("name" = String, Path), ("id" = String, Path), GetParams),
    responses((status = 200, body = Document), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    Query(params): Query<GetParams>,
) -> ApiResult<Json<Document>> {
    caller.require(Scope::Read)?;
    let with_vectors = params
        .include
        .as_deref()
        .is_some_and(|i| i.split(',').any(|x| x == "vector"));
    if with_vectors {
        caller.require(Scope::Write)?;
    }
    Ok(Json(
        blocking(&state, move |e| {
            e.store().get_document(&name, &id, with_vectors)
        })
        .await?,
    ))
}

#[utoipa::path(delete, path = "/collections/{name}/documents/{id}",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    blocking(&state, move |e| e.store().delete_document(&name, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
