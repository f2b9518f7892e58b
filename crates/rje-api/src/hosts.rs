//! `GET /hosts/` and `POST /hosts/{name}/check/`: the hosts jobs can name
//! and their health.

use axum::Json;
use axum::extract::{Path, State};
use rje_domain::CheckReport;
use rje_proto::{ErrorBody, HostListResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::Caller;
use crate::openapi::Guarded;
use crate::{ApiError, AppState};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(check))
}

/// The hosts jobs can name, and their health as this process sees it.
#[utoipa::path(
    get,
    path = "/hosts",
    operation_id = "list_hosts",
    tag = "service",
    responses((status = 200, description = "The hosts", body = HostListResponse), Guarded),
    security(("bearer" = []))
)]
async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Json<HostListResponse> {
    let known = &state.settings.hosts;
    Json(HostListResponse {
        hosts: state
            .hosts
            .list()
            .into_iter()
            .filter(|host| caller.sees(Some(&host.name), known))
            .collect(),
    })
}

/// Connects, authenticates and runs `true`. A failed check is still a
/// completed request: 200 with `ok: false`, the failing stage and the
/// exact error.
#[utoipa::path(
    post,
    path = "/hosts/{name}/check",
    operation_id = "check_host",
    tag = "service",
    params(("name" = String, Path, description = "A host of `GET /hosts/`", example = "local")),
    responses(
        (status = 200, description = "The check ran; `ok` says how it went", body = CheckReport),
        (status = 404, description = "No such host", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn check(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<CheckReport>, ApiError> {
    if state.settings.hosts.is_known(&name) {
        caller.require_host(Some(&name), &state.settings.hosts)?;
    }
    state
        .hosts
        .check(&name)
        .await
        .map(Json)
        .ok_or(ApiError::HostNotFound(name))
}
