//! `/collections/{name}/promote`, `/promotions...` and `/adapters...` (admin): turning a
//! hot cluster into a LoRA adapter in the background, and the adapter registry.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use engram_trainer::synth::SynthItem;
use engram_trainer::AdapterVersion;
use serde::Serialize;

use super::auth::{Caller, Scope};
use super::error::ApiResult;
use super::extract::{blocking, optional_json};
use super::AppState;
use crate::engine::{PromoteRequest, PromotionStatus};

#[derive(Serialize, utoipa::ToSchema)]
pub struct PromotionList {
    pub promotions: Vec<PromotionStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdapterList {
    /// Versions oldest first: number, directory, manifest (base model hash, documents,
    /// data strategy, seed, metrics) and whether it is active.
    #[schema(value_type = Vec<Object>)]
    pub adapters: Vec<AdapterVersion>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SynthData {
    /// The synthetic items (question/answer pairs, rephrasings) in journal order.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<SynthItem>,
}

/// Promote a cluster of the collection to a LoRA adapter (admin). Runs in the
/// background (202); asking again for the same promotion resumes it. Body optional:
/// `{"cluster": 0, "strategies": ["cloze", "self_qa"], "rank": 16, "steps": 60, "force": false}`.
#[utoipa::path(post, path = "/collections/{name}/promote", params(("name" = String, Path)),
    request_body(content = PromoteRequest, description = "every field optional"),
    responses((status = 202, body = PromotionStatus), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PromotionStatus>)> {
    caller.require(Scope::Admin)?;
    let req: PromoteRequest = optional_json(&body, "the promotion settings")?;
    let status = blocking(&state, move |e| e.start_promotion(&name, &req)).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// The collection's promotions with state and progress (admin).
#[utoipa::path(get, path = "/collections/{name}/promotions", params(("name" = String, Path)),
    responses((status = 200, body = PromotionList), (status = 404, body = super::error::ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<PromotionList>> {
    caller.require(Scope::Admin)?;
    let promotions = blocking(&state, move |e| e.promotions(&name)).await?;
    Ok(Json(PromotionList { promotions }))
}

/// One promotion: progress while it runs, the report and summary table when done (admin).
#[utoipa::path(get, path = "/collections/{name}/promotions/{id}", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = PromotionStatus), (status = 404, body = super::error::ErrorBody)))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<PromotionStatus>> {
    caller.require(Scope::Admin)?;
    Ok(Json(
        blocking(&state, move |e| e.promotion_status(&name, &id)).await?,
    ))
}

/// The synthetic training data a promotion made, for inspection (admin).
#[utoipa::path(get, path = "/collections/{name}/promotions/{id}/data", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = SynthData), (status = 404, body = super::error::ErrorBody)))]
pub async fn data(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<SynthData>> {
    caller.require(Scope::Admin)?;
    let items = blocking(&state, move |e| e.promotion_data(&name, &id)).await?;
    Ok(Json(SynthData { items }))
}

/// The collection's adapter versions (admin).
#[utoipa::path(get, path = "/collections/{name}/adapters", params(("name" = String, Path)),
    responses((status = 200, body = AdapterList), (status = 404, body = super::error::ErrorBody)))]
pub async fn adapters(
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
