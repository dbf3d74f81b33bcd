//! `/collections/{name}/promote` and `/promotions...` (admin): turning a hot cluster
//! into a LoRA adapter in the background.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use engram_trainer::synth::SynthItem;
use serde::Serialize;

use super::auth::{Caller, Scope};
use super::error::ApiResult;
use super::extract::{blocking, optional_json, Path};
use super::AppState;
use crate::engine::{PromoteRequest, PromotionStatus};

#[derive(Serialize, utoipa::ToSchema)]
pub struct PromotionList {
    pub promotions: Vec<PromotionStatus>,
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

/// Cancel a running promotion (admin): the trainer stops at its next step and the
/// promotion then reads "cancelled"; its files stay, so asking for the same promotion
/// again resumes it. A finished promotion is returned unchanged.
#[utoipa::path(post, path = "/collections/{name}/promotions/{id}/cancel", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = PromotionStatus), (status = 404, body = super::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<PromotionStatus>> {
    caller.require(Scope::Admin)?;
    Ok(Json(
        blocking(&state, move |e| e.cancel_promotion(&name, &id)).await?,
    ))
}
