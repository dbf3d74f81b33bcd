//! Request plumbing shared by every handler: JSON, path and query extractors
//! whose failures use the one error shape, and a helper that runs blocking
//! store work off the async runtime.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, ApiResult, SEND_JSON};
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
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                SEND_JSON,
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::from(JsonRejection::from(e)))?;
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => integral_retry(&bytes)
                .map(ApiJson)
                .ok_or_else(|| JsonRejection::JsonDataError(e).into()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Axum's test for a JSON body: `application/json` or a `+json` type.
fn json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// A body that failed to deserialize, read again with every integral float
/// (`869.0`) as the integer it equals. Why: JSON does not tell 869.0 from 869 and
/// JSON Schema's `integer` accepts both, so the spec promises that `"k": 869.0`
/// works; serde refuses a float for an integer field. Only tried after a failure,
/// so a well-typed body (every client's) costs nothing extra and keeps its floats.
fn integral_retry<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    if !integralize(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// Rewrites each integral float in `v` (exactly representable, |x| <= 2^53) as an
/// integer; says whether any was.
fn integralize(v: &mut Value) -> bool {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.fract() != 0.0 || x.abs() > EXACT {
                return false;
            }
            *v = if x >= 0.0 {
                Value::from(x as u64)
            } else {
                Value::from(x as i64)
            };
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, i| integralize(i) | c),
        Value::Object(map) => map.values_mut().fold(false, |c, i| integralize(i) | c),
        _ => false,
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

/// A JSON body whose every field is optional: an empty body, or `null`, means the
/// defaults. `what` names the settings in the error ("the audit settings").
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8], what: &str) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .or_else(|e| integral_retry(body).ok_or(e))
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("{what} are not valid: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Req {
        k: usize,
        weight: f32,
        metadata: Value,
    }

    #[test]
    fn an_integral_float_is_read_as_an_integer_and_only_after_a_failure() {
        let body = br#"{"k": 869.0, "weight": 2.0, "metadata": {"x": 1.0}}"#;
        assert!(
            serde_json::from_slice::<Req>(body).is_err(),
            "serde alone refuses it"
        );
        let r: Req = integral_retry(body).unwrap();
        assert_eq!(r.k, 869);
        assert_eq!(r.weight, 2.0);
        // A body that needs no retry keeps its floats as sent.
        let ok: Req =
            serde_json::from_slice(br#"{"k": 3, "weight": 2.0, "metadata": {"x": 1.0}}"#).unwrap();
        assert_eq!(ok.metadata["x"], serde_json::json!(1.0));
    }

    #[test]
    fn a_fractional_or_huge_float_stays_refused() {
        assert!(integral_retry::<Req>(br#"{"k": 869.5, "weight": 1, "metadata": {}}"#).is_none());
        assert!(integral_retry::<Req>(br#"{"k": 1e300, "weight": 1, "metadata": {}}"#).is_none());
        assert!(integral_retry::<Req>(br#"{"k": -3.0, "weight": 1, "metadata": {}}"#).is_none());
    }
}
