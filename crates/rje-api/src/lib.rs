//! rje's HTTP and WebSocket API. Handlers are thin: parse the request, let
//! the domain judge it, call the store and the bus, reply. Every error goes
//! through [`ApiError`], which maps it to HTTP in one place.

mod access;
mod audit;
mod auth;
mod browser_guard;
mod error;
mod extract;
mod frames;
mod health;
mod hosts;
mod jobs;
mod logs;
mod metrics;
mod openapi;
mod rate_limit;
mod reruns;
mod rules;
mod run_ws;
mod runs;
mod schedules;
mod state;
mod streamed;
mod strict_json;
mod ws;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::configured_name;
pub use browser_guard::AllowedHosts;
pub use error::ApiError;
pub use metrics::{schedule_fire, schedule_missed};
pub use reruns::{PRUNE_BATCH, prune_in_batches};
pub use state::{ApiSettings, AppState, ConnectionSlot, HostDirectory, RateLimit};

/// The whole API as one service. Paths answer with and without their
/// trailing slash: the slash is trimmed before routing.
pub fn app(state: AppState) -> NormalizePath<Router> {
    install_metrics();
    let settings = state.settings.clone();
    let request_id = HeaderName::from_static("x-request-id");
    // Everything that takes a token, and counts against a rate limit.
    let (guarded, guarded_doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(jobs::router())
        .merge(reruns::router())
        .merge(schedules::router())
        .merge(runs::router())
        .merge(logs::router())
        .merge(ws::router())
        .merge(health::workers_router())
        .merge(hosts::router())
        .merge(access::router())
        .merge(audit::router())
        .merge(if settings.public_metrics {
            OpenApiRouter::new()
        } else {
            metrics::router()
        })
        .split_for_parts();
    // The probes are never limited and never ask for a token.
    let open = if settings.public_metrics {
        health::probes_router().merge(metrics::router())
    } else {
        health::probes_router()
    };
    let (open, open_doc) = open.split_for_parts();
    let mut document = guarded_doc;
    document.merge(open_doc);
    let (guarded, open) = if settings.public_docs {
        (guarded, open.merge(openapi::router(document, &settings)))
    } else {
        (guarded.merge(openapi::router(document, &settings)), open)
    };
    // The dashboard's pages and assets carry no data: open, like the docs.
    let open = open.merge(rje_ui::router(rje_ui::UiSettings {
        limits: settings.limits.clone(),
        version: env!("CARGO_PKG_VERSION"),
    }));
    // Each part answers a known path with the wrong method with the JSON
    // error; the fallback covers only the routes already in a router.
    let open = open.method_not_allowed_fallback(error::method_not_allowed);
    let guarded = guarded
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Inside out: the rules judge, the trail records their verdict and
        // the handler's, authentication says who asked before either.
        .layer(axum::middleware::from_fn(rules::enforce))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let keys = rate_limit::ClientKeys::new(&settings.tokens, &settings.trusted_proxies);
    let guarded = match settings
        .rate_limit
        .and_then(|limit| rate_limit::layer(limit, keys))
    {
        Some(limiter) => guarded.layer(limiter),
        None => guarded,
    };
    let router = guarded
        .merge(open)
        .layer(axum::middleware::from_fn(error::plain_rejections_as_json))
        .layer(axum::middleware::from_fn(metrics::track_requests))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    let router = match cors(&settings.cors_origins) {
        Some(cors) => router
            .layer(cors)
            .layer(axum::middleware::from_fn(preflight_answer)),
        None => router,
    };
    let guard = std::sync::Arc::new(browser_guard::BrowserGuard::new(
        settings.allowed_hosts.clone(),
        &settings.cors_origins,
        settings.tokens.is_empty() && !settings.tokens_in_store,
    ));
    // Outermost, so that preflights and refusals carry them too.
    let router = with_security_headers(router.layer(axum::middleware::from_fn_with_state(
        guard,
        browser_guard::guard,
    )));
    let router = router
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

/// Installs this process's metrics recorder, so that what the worker
/// counts before the API's first request is kept. Idempotent.
pub fn install_metrics() {
    metrics::handle();
}

/// Headers on every answer that keep browsers from misreading it, framing
/// it or leaking where it was read from.
fn with_security_headers(router: Router<AppState>) -> Router<AppState> {
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    router
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::CACHE_CONTROL, "no-store"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
}

/// A preflight the CORS layer allowed is a 204 (it has no content); one
/// from an origin it does not allow is a 403 saying so, rather than a 200
/// a browser must read the absence of a header from.
async fn preflight_answer(request: Request, next: axum::middleware::Next) -> Response {
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = next.run(request).await;
    if preflight && response.status() == StatusCode::OK {
        if response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        {
            *response.status_mut() = StatusCode::NO_CONTENT;
        } else {
            return ApiError::Forbidden("this origin may not call the API".into()).into_response();
        }
    }
    response
}

/// Cross-origin access for browser pages served from `origins`; none when
/// the list is empty. Preflights answer 204 without a token (they carry
/// none); the requests that follow need one like any other.
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                header::LOCATION,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
