//! `/collections/{name}/adapters...` (admin): the adapter registry of a collection
//! (versions, activate, rollback, deactivate, delete).

use std::sync::Arc;

use crate::engine::adapters::AdapterEntry;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::auth::{Caller, Scope};
use super::error::ApiResult;
use super::extract::{blocking, Path};
use super::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdapterList {
    /// Versions oldest first: number, directory, `kind` (`lora` or `prefix`), manifest
    /// (base model hash, documents and their write sequences, data strategy, seed,
    /// metrics), whether it is active, and `staleness` (learned documents written or
    /// deleted since).
    #[schema(value_type = Vec<Object>)]
    pub adapters: Vec<AdapterEntry>,
}

/// The collection's adapter versions (admin).
#[utoipa::path(get, path = "/collections/{name}/adapters", params(("name" = String, Path)),
    responses((status = 200, body = AdapterList), (status = 404, body = super::error::ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AdapterList>> {
    caller.require(Scope::Admin)?;
    let adapters = blocking(&state, move |e| e.adapter_versions(&name)).await?;
    Ok(Json(AdapterList { adapters }))
}

/// Activate a version (admin): answers in progress finish with the old one.
#[utoipa::path(post, path = "/collections/{name}/adapters/{version}/activate", params(("name" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = AdapterList), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn activate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, u32)>,
) -> ApiResult<Json<AdapterList>> {
    caller.require(Scope::Admin)?;
    let adapters = blocking(&state, move |e| e.activate_adapter(&name, version)).await?;
    Ok(Json(AdapterList { adapters }))
}

/// Go back to the previously active version (admin).
#[utoipa::path(post, path = "/collections/{name}/adapters/rollback", params(("name" = String, Path)),
    responses((status = 200, body = AdapterList), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AdapterList>> {
    caller.require(Scope::Admin)?;
    let adapters = blocking(&state, move |e| e.rollback_adapter(&name)).await?;
    Ok(Json(AdapterList { adapters }))
}

/// Stop answering with an adapter (admin); `auto` answers fall back to rag.
#[utoipa::path(post, path = "/collections/{name}/adapters/deactivate", params(("name" = String, Path)),
    responses((status = 200, body = AdapterList), (status = 404, body = super::error::ErrorBody)))]
pub async fn deactivate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AdapterList>> {
    caller.require(Scope::Admin)?;
    let adapters = blocking(&state, move |e| e.deactivate_adapter(&name)).await?;
    Ok(Json(AdapterList { adapters }))
}

/// Delete a version (admin); refused for the active one.
#[utoipa::path(delete, path = "/collections/{name}/adapters/{version}", params(("name" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = AdapterList), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, u32)>,
) -> ApiResult<Json<AdapterList>> {
    caller.require(Scope::Admin)?;
    let adapters = blocking(&state, move |e| e.delete_adapter(&name, version)).await?;
    Ok(Json(AdapterList { adapters }))
}
