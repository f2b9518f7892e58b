//! The probes (`/health`, `/ready`) and the live workers (`/workers/`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use rje_proto::{HealthResponse, ReadyResponse, WorkerListResponse, WorkerResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::Caller;
use crate::openapi::Guarded;
use crate::{ApiError, AppState};

/// The probes: open to all, never rate limited.
pub(crate) fn probes_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
}

pub(crate) fn workers_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(workers))
}

/// Readiness: the store and the bus answer, and a worker is alive to run
/// jobs. 503 with the reason otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "service",
    responses(
        (status = 200, description = "Ready", body = ReadyResponse),
        (status = 503, description = "Not ready: what is missing", body = ReadyResponse),
    )
)]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyResponse>) {
    let store = state.store.ping().await.map_err(|err| err.to_string());
    let bus = state.bus.ping().await.map_err(|err| err.to_string());
    let since = Utc::now() - state.settings.worker_liveness;
    let workers = match &store {
        Ok(()) => state
            .store
            .workers(since)
            .await
            .map(|w| w.len())
            .unwrap_or(0),
        Err(_) => 0,
    };
    let ok = store.is_ok() && bus.is_ok() && workers > 0;
    // Open without a token, like /health: the causes go to the log, not
    // to whoever asks.
    let describe = |what: &str, result: &Result<(), String>| match result {
        Ok(()) => "ok".to_owned(),
        Err(err) => {
            tracing::warn!(%err, what, "not ready");
            "unavailable".to_owned()
        }
    };
    let body = ReadyResponse {
        status: if ok { "ready" } else { "unavailable" }.to_owned(),
        store: describe("store", &store),
        bus: describe("bus", &bus),
        workers,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// The live workers and the jobs each runs.
#[utoipa::path(
    get,
    path = "/workers",
    operation_id = "list_workers",
    tag = "service",
    responses((status = 200, description = "Live workers", body = WorkerListResponse), Guarded),
    security(("bearer" = []))
)]
async fn workers(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<WorkerListResponse>, ApiError> {
    let since = Utc::now() - state.settings.worker_liveness;
    let hosts = &state.settings.hosts;
    let workers = state.store.workers(since).await?;
    let workers = workers
        .into_iter()
        .map(|w| WorkerResponse {
            id: w.id.to_string(),
            host: w.host,
            concurrency: w.concurrency,
            started_at: w.started_at,
            heartbeat_at: w.heartbeat_at,
            // A token limited to some hosts is shown their jobs only.
            jobs: w
                .jobs
                .into_iter()
                .filter(|job| caller.sees(job.host.as_deref(), hosts))
                .map(|job| job.id)
                .collect(),
        })
        .collect();
    Ok(Json(WorkerListResponse { workers }))
}

/// Liveness: the process answers. Open without a token, so that load
/// balancers and probes need no secret; it reveals nothing.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "service",
    responses((status = 200, description = "The process answers", body = HealthResponse))
)]
async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".to_owned(),
    })
}
