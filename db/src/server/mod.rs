//! The HTTP layer: routing, auth, limits and metrics around the engine. Handlers
//! only translate between HTTP and `Engine` calls; one file per resource.

mod adapters_api;
mod answer_api;
mod audit_api;
mod auth;
mod cluster_api;
mod collections_api;
mod documents_api;
pub mod error;
mod extract;
mod guard;
mod metrics;
mod openai_api;
mod openapi;
mod promote_api;
mod query_api;
mod schemas;
mod scores;
mod system_api;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use utoipa::OpenApi;

pub use auth::{parse_keys, validate_keys, ApiKey, Scope};
pub use cluster_api::{bootstrap_cluster, start_cluster};
pub use scores::ScoreView;
pub use system_api::{BackupRequest, BackupResponse};

use crate::engine::Engine;
use openapi::SharedResponses;
use schemas::CombinationRules;

/// What every handler shares.
pub struct AppState {
    pub engine: Arc<Engine>,
    keys: auth::KeyRing,
    metrics: metrics::Metrics,
    guard: guard::Guard,
    /// Cluster mode's node (`None` on one machine).
    cluster: Option<Arc<engram_cluster::Node>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Engram",
        description = "A vector database for RAG: text in, nearest documents out."
    ),
    paths(
        collections_api::create,
        collections_api::list,
        collections_api::get,
        collections_api::delete,
        collections_api::recontextualize,
        collections_api::clusters,
        documents_api::upsert,
        documents_api::get,
        documents_api::delete,
        query_api::query,
        query_api::embed,
        answer_api::answer,
        openai_api::models,
        openai_api::chat_completions,
        openai_api::embeddings,
        system_api::healthz,
        system_api::metrics,
        system_api::backup,
        audit_api::start,
        audit_api::list,
        audit_api::status,
        audit_api::report,
        audit_api::html,
        audit_api::cancel,
        promote_api::start,
        promote_api::list,
        promote_api::status,
        promote_api::data,
        promote_api::cancel,
        adapters_api::list,
        adapters_api::activate,
        adapters_api::rollback,
        adapters_api::deactivate,
        adapters_api::delete,
        cluster_api::status,
        cluster_api::place,
        cluster_api::snapshot,
        cluster_api::snapshots,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&SharedResponses, &CombinationRules)
)]
struct ApiDoc;

/// The OpenAPI 3 document, generated from the handlers' types.
pub fn openapi_doc() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Assembles the server: `ServerBuilder::new(engine).with_keys(..).router()`.
pub struct ServerBuilder {
    engine: Arc<Engine>,
    keys: Vec<ApiKey>,
    allowed_origins: Vec<String>,
    allowed_hosts: Vec<String>,
    /// The address listened on, once `serve` has bound it.
    bound: Option<SocketAddr>,
    cluster: Option<Arc<engram_cluster::Node>>,
}

impl ServerBuilder {
    pub fn new(engine: Arc<Engine>) -> Self {
        ServerBuilder {
            engine,
            keys: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            bound: None,
            cluster: None,
        }
    }

    /// Cluster mode: `GET /cluster` answers from this node.
    pub fn with_cluster(mut self, node: Option<Arc<engram_cluster::Node>>) -> Self {
        self.cluster = node;
        self
    }

    pub fn with_keys(mut self, keys: Vec<ApiKey>) -> Self {
        self.keys = keys;
        self
    }

    /// Browser origins allowed to call beyond the server's own, and Host names
    /// served on loopback beyond 127.0.0.1, localhost and [::1] (see `guard`).
    pub fn with_allowed(mut self, origins: Vec<String>, hosts: Vec<String>) -> Self {
        self.allowed_origins = origins;
        self.allowed_hosts = hosts;
        self
    }

    pub fn router(self) -> Router {
        let body_limit = self.engine.limits().max_body_bytes;
        let state = Arc::new(AppState {
            engine: self.engine,
            keys: auth::KeyRing::new(&self.keys),
            metrics: metrics::Metrics::new(),
            guard: guard::Guard::new(self.bound, &self.allowed_origins, &self.allowed_hosts),
            cluster: self.cluster,
        });
        Router::new()
            .route("/collections", get(collections_api::list))
            .route(
                "/collections/{name}",
                put(collections_api::create)
                    .get(collections_api::get)
                    .delete(collections_api::delete),
            )
            .route("/collections/{name}/documents", post(documents_api::upsert))
            .route(
                "/collections/{name}/documents/{id}",
                get(documents_api::get).delete(documents_api::delete),
            )
            .route("/collections/{name}/query", post(query_api::query))
            .route(
                "/collections/{name}/clusters",
                get(collections_api::clusters),
            )
            .route(
                "/collections/{name}/recontextualize",
                post(collections_api::recontextualize),
            )
            .route("/collections/{name}/answer", post(answer_api::answer))
            .route("/v1/models", get(openai_api::models))
            .route("/v1/chat/completions", post(openai_api::chat_completions))
            .route("/v1/embeddings", post(openai_api::embeddings))
            .route("/collections/{name}/audit", post(audit_api::start))
            .route("/collections/{name}/audits", get(audit_api::list))
            .route("/collections/{name}/audits/{id}", get(audit_api::report))
            .route(
                "/collections/{name}/audits/{id}/status",
                get(audit_api::status),
            )
            .route("/collections/{name}/audits/{id}/html", get(audit_api::html))
            .route(
                "/collections/{name}/audits/{id}/cancel",
                post(audit_api::cancel),
            )
            .route("/collections/{name}/promote", post(promote_api::start))
            .route("/collections/{name}/promotions", get(promote_api::list))
            .route(
                "/collections/{name}/promotions/{id}",
                get(promote_api::status),
            )
            .route(
                "/collections/{name}/promotions/{id}/data",
                get(promote_api::data),
            )
            .route(
                "/collections/{name}/promotions/{id}/cancel",
                post(promote_api::cancel),
            )
            .route("/collections/{name}/adapters", get(adapters_api::list))
            .route(
                "/collections/{name}/adapters/rollback",
                post(adapters_api::rollback),
            )
            .route(
                "/collections/{name}/adapters/deactivate",
                post(adapters_api::deactivate),
            )
            .route(
                "/collections/{name}/adapters/{version}/activate",
                post(adapters_api::activate),
            )
            .route(
                "/collections/{name}/adapters/{version}",
                axum::routing::delete(adapters_api::delete),
            )
            .route("/embed", post(query_api::embed))
            .route("/admin/backup", post(system_api::backup))
            .route("/healthz", get(system_api::healthz))
            .route("/cluster", get(cluster_api::status))
            .route(
                "/cluster/placement/{collection}/{shard}",
                axum::routing::put(cluster_api::place),
            )
            .route("/cluster/snapshot", post(cluster_api::snapshot))
            .route("/cluster/snapshots", get(cluster_api::snapshots))
            .route("/metrics", get(system_api::metrics))
            .route("/openapi.json", get(system_api::openapi))
            .fallback(|| async {
                error::ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "not_found",
                    error::NO_SUCH_ENDPOINT,
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                guard::guard,
            ))
            .layer(axum::middleware::from_fn(error::shape_errors))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                metrics::track,
            ))
            .layer(DefaultBodyLimit::max(body_limit))
            .with_state(state)
    }

    /// Binds and serves until Ctrl-C / SIGTERM. With no API keys the server
    /// refuses to listen beyond loopback.
    pub async fn serve(mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let open = self.keys.is_empty();
        let addr = if open && !addr.ip().is_loopback() {
            tracing::warn!(
                requested = %addr,
                "no API keys are configured, so Engram listens on 127.0.0.1 only; set ENGRAM_API_KEYS=KEY:SCOPE,... to serve other hosts"
            );
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        if open {
            tracing::warn!("no API keys configured: every local caller has the admin scope");
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.bound = Some(listener.local_addr()?);
        tracing::info!(address = %listener.local_addr()?, "Engram is serving");
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
