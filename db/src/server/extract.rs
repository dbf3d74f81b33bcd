//! Request plumbing shared by every handler: JSON, path and query extractors
//! whose failures use the one error shape, and a helper that runs blocking
//! store work off the async runtime.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::engine::Engine;

/// `Json<T>` whose rejections (bad JSON, wrong content type, body too large)
/// become `ApiError`s.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(v))
    }
}

/// `axum::extract::Path` whose rejections (a segment that does not parse, such
/// as a version that is not a number) become `ApiError`s.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(r) => Err(ApiError::new(
                r.status(),
                "invalid_path",
                format!("the URL is not valid: {}", r.body_text()),
            )),
        }
    }
}

/// `axum::extract::Query` whose rejections become `ApiError`s.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(r) => Err(ApiError::new(
                r.status(),
                "invalid_query",
                format!("the query string is not valid: {}", r.body_text()),
            )),
        }
    }
}

/// Runs store work (embedding, fsync) on the blocking pool.
pub async fn blocking<T, E, F>(state: &Arc<AppState>, work: F) -> ApiResult<T>
where
    T: Send + 'static,
    // The store's errors and the application's alike.
    E: Into<crate::error::Error> + Send + 'static,
    // The shared handle, so work that outlives the request (background jobs) can keep it.
    F: FnOnce(&Arc<Engine>) -> Result<T, E> + Send + 'static,
{
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(&state.engine))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "worker task failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request's worker failed; see the server log",
            )
        })?
        .map_err(|e| ApiError::from(e.into()))
}

/// A JSON body whose every field is optional: an empty body means the defaults.
/// `what` names the settings in the error ("the audit settings").
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8], what: &str) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("{what} are not valid: {e}"),
        )
    })
}
