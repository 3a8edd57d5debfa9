//! # outpost-http
//!
//! The HTTP layer of an outpost node: the seed's `/api/database/status`
//! endpoints, mode, models, pending changes, conflicts, failed rows (retry,
//! discard), the sync log, verify and resync under `/api/database`, the model service under `/api/models/{model}/{operation}`,
//! an OpenAPI document at `/api/openapi.json` and Prometheus metrics at
//! `/metrics`, and the Database Sync Manager page at `/admin/database-sync`
//! (see [`admin`]; not in [`ROUTES`], which lists the JSON API). No SQL here: everything goes through [`outpost_engine`].
//!
//! ```no_run
//! # async fn demo(node: outpost_engine::Outpost) -> std::io::Result<()> {
//! let app = outpost_http::router(outpost_http::AppState { node, admin_token: None, cors_origins: Vec::new() });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

pub mod admin;
mod auth;
mod cors;
mod error;
mod events;
mod extract;
mod handlers;
mod metrics;
mod openapi;
mod origin;
pub mod server;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, MethodRouter, on};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use extract::{ApiJson, BODY_LIMIT, BODY_READ_TIMEOUT};
pub use openapi::{openapi, openapi_for};
pub use server::serve;

/// What every handler sees: the node, and the admin token when one is set.
#[derive(Clone)]
pub struct AppState {
    /// The node.
    pub node: outpost_engine::Outpost,
    /// When set, every route needs `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Browser origins (`scheme://host:port`) other than the node's own that
    /// may call the API (`OUTPOST_CORS_ORIGINS`, comma-separated; none by
    /// default).
    pub cors_origins: Vec<String>,
}

/// One route of the API: the single list the router and the OpenAPI
/// document are both built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST` or `PUT`.
    pub method: &'static str,
    /// The path, with `{param}` placeholders.
    pub path: &'static str,
    /// One line for the document.
    pub summary: &'static str,
}

macro_rules! routes {
    ($($method:ident $path:literal $handler:path => $summary:literal;)*) => {
        /// Every route the router serves.
        pub const ROUTES: &[Route] = &[
            $(Route { method: stringify!($method), path: $path, summary: $summary },)*
        ];

        fn method_routers() -> Vec<(&'static str, MethodRouter<AppState>)> {
            vec![$(($path, on(MethodFilter::$method, $handler)),)*]
        }
    };
}

routes! {
    GET "/api/database/status" handlers::status =>
        "Database status: online state, connections, mode, pending changes, conflicts.";
    POST "/api/database/status" handlers::trigger_sync =>
        "Trigger a sync; body {direction?: BIDIRECTIONAL|TO_SERVER|FROM_SERVER, models?: [..]}.";
    GET "/api/database/mode" handlers::get_mode => "The mode (auto, local or remote).";
    PUT "/api/database/mode" handlers::put_mode => "Set the mode; body {mode}.";
    GET "/api/database/models" handlers::models =>
        "Per model: pending, conflicts, failed and the last SyncLog entry.";
    GET "/api/database/conflicts" handlers::conflicts => "Rows in conflict.";
    GET "/api/database/conflicts/{model}/{key}" handlers::conflict =>
        "One conflict: base, local and server rows.";
    POST "/api/database/conflicts/{model}/{key}/resolve" handlers::resolve =>
        "Resolve a conflict; body {keep: local|server} or {merged: {column: value}}.";
    GET "/api/database/log" handlers::log =>
        "The sync log, newest first, with its total (query: model, limit, offset).";
    GET "/api/database/pending" handlers::pending =>
        "Local changes not yet pushed, oldest first, with their total (query: model, limit, offset).";
    GET "/api/database/failed" handlers::failed =>
        "Rows the server refused, with its error and their total (query: model, limit, offset).";
    POST "/api/database/failed/{model}/{key}/retry" handlers::retry =>
        "Put a FAILED row back in the push queue.";
    POST "/api/database/failed/{model}/{key}/discard" handlers::discard =>
        "Drop a FAILED row's local change: the server's row comes back (or the row goes, if the server has none).";
    GET "/api/database/verify" handlers::verify =>
        "Compare the replica with the server (query: model): rows that differ with both values, local changes apart.";
    POST "/api/database/resync" handlers::resync =>
        "Copy one model again from the server, keeping its rows with local changes; body {model}.";
    POST "/api/models/{model}/{operation}" handlers::model_operation =>
        "Run a Prisma operation with Prisma's argument object as body.";
    GET "/api/database/events" events::handler =>
        "Live events (Server-Sent Events): status, progress, sync results, changed models.";
    GET "/api/openapi.json" openapi::handler => "This document.";
    GET "/metrics" metrics::handler => "Prometheus metrics.";
}

/// The HTTP API of `state.node`.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (path, method_router) in method_routers() {
        router = router.route(path, method_router);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // The page checks the token itself (bearer header or `?token=`).
        .route(admin::PAGE_PATH, axum::routing::get(admin::page))
        // Writes must be JSON; only for routes the router serves.
        .route_layer(axum::middleware::from_fn(origin::json_writes))
        .layer(axum::middleware::from_fn(events::note_writes))
        .layer(axum::Extension(events::Hub::new()))
        // Before the token check and any handler: a foreign web page is
        // refused without learning whether a token is needed.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::guard,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Outermost but for tracing: preflights from listed origins are
        // answered before the guard and the bearer check (browsers send no
        // credentials on them); the same list decides in both.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::cors,
        ))
        // The span names the path only: the query may carry the page's
        // `?token=`, which must never reach a log.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|r| openapi::matches(r.path, uri.path()))
        .map(|r| r.method)
        .collect();
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {} (allowed: {})",
            uri.path(),
            allowed.join(", ")
        ),
    )
}
