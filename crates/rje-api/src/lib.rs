//! rje's HTTP and WebSocket API. Handlers are thin: parse the request, let
//! the domain judge it, call the store and the bus, reply. Every error goes
//! through [`ApiError`], which maps it to HTTP in one place.

mod auth;
mod error;
mod extract;
mod health;
mod hosts;
mod jobs;
mod logs;
mod state;
mod streamed;
mod strict_json;
mod ws;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use state::{ApiSettings, AppState, HostDirectory};

/// The whole API as one service. Paths answer with and without their
/// trailing slash: the slash is trimmed before routing.
pub fn app(state: AppState) -> NormalizePath<Router> {
    let request_id = HeaderName::from_static("x-request-id");
    let router = Router::new()
        .merge(jobs::router())
        .merge(logs::router())
        .merge(ws::router())
        .merge(health::router())
        .merge(hosts::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The path only: a query may carry a token.
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                )
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(router)
}
