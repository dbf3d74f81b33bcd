//! The one place where domain errors become HTTP statuses, and the one JSON
//! error shape: `{"error": {"code": "...", "message": "..."}}`, which
//! `shape_errors` gives to the error responses axum makes on its own too.

use axum::extract::rejection::JsonRejection;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use engram_embedder::Error as E;
use engram_models::Error as M;
use engram_store::Error as StoreError;

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. "collection_not_found".
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<engram_store::Error> for ApiError {
    fn from(e: engram_store::Error) -> Self {
        Error::Store(e).into()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use engram_generator::Error as G;
        use engram_inverter::Error as I;
        use engram_trainer::Error as T;
        let (status, code) = match &e {
            Error::Store(s) => store_status(s),
            Error::ContextTooLong { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "context_too_long"),
            Error::NoAdapter(_) => (StatusCode::CONFLICT, "no_adapter"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            Error::DeadlineExceeded { .. } => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            Error::Generator(G::PromptTooLong { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "prompt_too_long")
            }
            Error::Generator(G::InvalidOptions(_)) => (StatusCode::BAD_REQUEST, "invalid_input"),
            Error::Generator(G::AdapterMismatch { .. }) => {
                (StatusCode::CONFLICT, "adapter_mismatch")
            }
            Error::Generator(G::ModelCache(M::ModelUnavailable(_))) => {
                (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable")
            }
            Error::Adapter(r)
            | Error::Generator(G::Registry(r))
            | Error::Trainer(T::Model(G::Registry(r))) => registry_status(r),
            Error::Generator(_) => (StatusCode::INTERNAL_SERVER_ERROR, "generator_error"),
            Error::AuditNotFound { .. } => (StatusCode::NOT_FOUND, "audit_not_found"),
            Error::AuditNotReady(..) => (StatusCode::CONFLICT, "audit_not_ready"),
            Error::Inverter(I::InvalidInput { .. }) => (StatusCode::BAD_REQUEST, "invalid_input"),
            Error::Inverter(I::Artifact { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "inverter_unavailable")
            }
            Error::Inverter(I::Encoder(e)) => embedder_status(e, "inverter_error"),
            Error::Inverter(I::Cancelled) => (StatusCode::CONFLICT, "cancelled"),
            Error::Inverter(I::Solve(_) | I::Io { .. } | I::Model(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "inverter_error")
            }
            Error::PromotionNotFound { .. } => (StatusCode::NOT_FOUND, "promotion_not_found"),
            Error::PromotionRunning(_) => (StatusCode::CONFLICT, "promotion_running"),
            Error::Trainer(T::InvalidConfig(_)) => (StatusCode::BAD_REQUEST, "invalid_input"),
            Error::Trainer(T::Refused(_)) => (StatusCode::CONFLICT, "adapter_refused"),
            Error::Trainer(T::NoData(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "no_training_data"),
            Error::Trainer(T::Cancelled(_)) => (StatusCode::CONFLICT, "cancelled"),
            Error::Trainer(T::Model(G::ModelCache(M::ModelUnavailable(_)))) => {
                (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable")
            }
            Error::Trainer(_) => (StatusCode::INTERNAL_SERVER_ERROR, "trainer_error"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        let message = if status == StatusCode::INSUFFICIENT_STORAGE {
            format!("the disk holding the database is full, so writes are refused until space is freed (reads keep working): {e}")
        } else {
            e.to_string()
        };
        ApiError::new(status, code, message)
    }
}

/// The status and code of an adapter registry error (from the answer path, the
/// adapter routes, or a promotion registering its version).
fn registry_status(e: &engram_generator::RegistryError) -> (StatusCode, &'static str) {
    use engram_generator::RegistryError as R;
    match e {
        R::NotFound { .. } => (StatusCode::NOT_FOUND, "adapter_not_found"),
        R::Refused(_) => (StatusCode::CONFLICT, "adapter_refused"),
        R::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
        R::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "adapter_error"),
    }
}

/// The status and code of a store error.
fn store_status(e: &StoreError) -> (StatusCode, &'static str) {
    match e {
        StoreError::CollectionNotFound(_) => (StatusCode::NOT_FOUND, "collection_not_found"),
        StoreError::DocumentNotFound { .. } => (StatusCode::NOT_FOUND, "document_not_found"),
        StoreError::CollectionExists(_) => (StatusCode::CONFLICT, "collection_exists"),
        StoreError::InvalidCollectionName(_) => {
            (StatusCode::BAD_REQUEST, "invalid_collection_name")
        }
        // The request is well formed; the collection it names refuses it (its kind,
        // its dimension, its state): 409, which a schema cannot rule out.
        StoreError::WrongDimension { .. } => (StatusCode::CONFLICT, "wrong_dimension"),
        StoreError::Conflict { .. } => (StatusCode::CONFLICT, "collection_conflict"),
        StoreError::InvalidInput { .. } => (StatusCode::BAD_REQUEST, "invalid_input"),
        StoreError::LimitExceeded { .. } => (StatusCode::BAD_REQUEST, "limit_exceeded"),
        StoreError::InvalidFilter(_) => (StatusCode::BAD_REQUEST, "invalid_filter"),
        StoreError::Cancelled(_) => (StatusCode::CONFLICT, "cancelled"),
        StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        StoreError::Embedder(e) => embedder_status(e, "embedder_error"),
        e if out_of_space(e) => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
        StoreError::Storage(_) | StoreError::Corrupt(_) | StoreError::Io(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "storage_error")
        }
    }
}

/// True when the disk holding the database is full (ENOSPC from RocksDB or a file
/// write): a 507 that says to free space, not a 500. RocksDB keeps refusing writes
/// until space returns, then recovers on its own (its default SstFileManager polls).
fn out_of_space(e: &StoreError) -> bool {
    match e {
        StoreError::Storage(e) => e.to_string().contains("No space left on device"),
        StoreError::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    }
}

/// The status of an embedder error; `internal` is the code of its server-side failures.
fn embedder_status(e: &E, internal: &'static str) -> (StatusCode, &'static str) {
    match e {
        E::EmptyText { .. } => (StatusCode::BAD_REQUEST, "invalid_input"),
        E::UnsupportedModel(_) => (StatusCode::BAD_REQUEST, "unsupported_model"),
        E::ModelCache(M::ModelUnavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, internal),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_json",
        };
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => TOO_LARGE.to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => SEND_JSON.to_string(),
            _ => format!(
                "the request body is not valid JSON for this endpoint: {}",
                r.body_text()
            ),
        };
        // Invalid JSON is a 400 whatever axum's finer distinction (422 for a
        // type mismatch): both mean "fix the body".
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

const TOO_LARGE: &str = "request body is too large; split the batch into smaller requests";
pub const SEND_JSON: &str = "send the body as JSON with 'Content-Type: application/json'";
/// The message of a 404 for a path no route matches.
pub const NO_SUCH_ENDPOINT: &str = "no such endpoint; see GET /openapi.json";

/// The longest error body of axum's own that is kept as the message.
const MAX_PLAIN_ERROR: usize = 4096;

/// Middleware giving every error response that is not already JSON (axum's
/// own 405s, and rejections of extractors other than ours) the one shape,
/// keeping its status and headers.
pub async fn shape_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            // axum adds the `Allow` header after this layer, so it is not at hand here.
            format!("{method} is not allowed on this endpoint; the Allow header lists the methods it accepts (see GET /openapi.json)"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", TOO_LARGE.to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", SEND_JSON.to_string()),
        StatusCode::NOT_FOUND => ("not_found", NO_SUCH_ENDPOINT.to_string()),
        s if s.is_server_error() => ("internal", format!("the server failed: {text}")),
        _ => ("bad_request", format!("the request is not valid: {text}")),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let mut shaped = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        shaped.headers_mut().insert(name.clone(), value.clone());
    }
    shaped
}
