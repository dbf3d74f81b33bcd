//! `/collections/{name}/audit` and `/collections/{name}/audits...`: leakage audits
//! (admin). Starting one returns 202 at once; the job runs in the background.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use engram_inverter::AuditOptions;
use serde::Serialize;

use super::auth::{Caller, Scope};
use super::error::ApiResult;
use super::extract::{blocking, optional_json, Path};
use super::AppState;
use crate::engine::AuditStatus;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub audits: Vec<AuditStatus>,
}

/// Start a leakage audit (admin). Body (all optional): `{"sample": 10, "steps": 10,
/// "beam": 2, "defences": ["none", "noise:0.5", "rotation:7"]}`.
#[utoipa::path(post, path = "/collections/{name}/audit", params(("name" = String, Path)),
    request_body(content = Object, description = "sample, steps, beam, defences (optional)"),
    responses((status = 202, body = AuditStatus), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<AuditStatus>)> {
    caller.require(Scope::Admin)?;
    let opts: AuditOptions = optional_json(&body, "the audit settings")?;
    let status = blocking(&state, move |e| e.start_audit(&name, opts)).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// The collection's audits with their state and progress (admin).
#[utoipa::path(get, path = "/collections/{name}/audits", params(("name" = String, Path)),
    responses((status = 200, body = AuditList), (status = 404, body = super::error::ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AuditList>> {
    caller.require(Scope::Admin)?;
    let audits = blocking(&state, move |e| e.audits(&name)).await?;
    Ok(Json(AuditList { audits }))
}

/// One audit's state and progress (admin).
#[utoipa::path(get, path = "/collections/{name}/audits/{id}/status", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AuditStatus), (status = 404, body = super::error::ErrorBody)))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<AuditStatus>> {
    caller.require(Scope::Admin)?;
    Ok(Json(
        blocking(&state, move |e| e.audit_status(&name, &id)).await?,
    ))
}

/// The finished report as JSON (admin); 409 while the audit runs.
#[utoipa::path(get, path = "/collections/{name}/audits/{id}", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "the audit report", body = Object), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn report(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<engram_inverter::AuditReport>> {
    caller.require(Scope::Admin)?;
    Ok(Json(
        blocking(&state, move |e| e.audit_report(&name, &id)).await?,
    ))
}

/// The finished report as a self-contained HTML page (admin).
#[utoipa::path(get, path = "/collections/{name}/audits/{id}/html", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "HTML page", content_type = "text/html"), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn html(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Admin)?;
    let report = blocking(&state, move |e| e.audit_report(&name, &id)).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        report.to_html(),
    ))
}

/// Cancel a running audit (admin): it stops after the text it is inverting and then
/// reads "cancelled". A finished audit is returned unchanged.
#[utoipa::path(post, path = "/collections/{name}/audits/{id}/cancel", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AuditStatus), (status = 404, body = super::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<AuditStatus>> {
    caller.require(Scope::Admin)?;
    Ok(Json(
        blocking(&state, move |e| e.cancel_audit(&name, &id)).await?,
    ))
}
