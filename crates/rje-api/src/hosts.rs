//! `GET /hosts/` and `POST /hosts/{name}/check/`: the hosts jobs can name
//! and their health.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use rje_domain::CheckReport;
use rje_proto::HostListResponse;

use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/hosts", get(list))
        .route("/hosts/{name}/check", post(check))
}

/// The hosts jobs can name, and their health as this process sees it.
async fn list(State(state): State<AppState>) -> Json<HostListResponse> {
    Json(HostListResponse {
        hosts: state.hosts.list(),
    })
}

/// Connects, authenticates and runs `true`. A failed check is still a
/// completed request: 200 with `ok: false`, the failing stage and the
/// exact error.
async fn check(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CheckReport>, ApiError> {
    state
        .hosts
        .check(&name)
        .await
        .map(Json)
        .ok_or(ApiError::HostNotFound(name))
}
