//! `/runs/`: one command sent to many hosts at once, one job per host.
//! A run's jobs are ordinary jobs; the run keeps the request, and its
//! status and counts are read from its jobs.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use rje_domain::{NewRun, Page, Principal, RunConflict, RunId};
use rje_proto::{ErrorBody, RunListResponse, RunRequest, RunResponse};
use rje_store::{CancelOutcome, RunQuery, RunWithJobs, StoreError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditTarget;
use crate::extract::{Caller, JsonObject, QueryPairs};
use crate::openapi::{Guarded, WithBody};
use crate::{ApiError, AppState};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_run, list_runs))
        .routes(routes!(show_run))
        .routes(routes!(cancel_run))
        .routes(routes!(retry_run))
}

/// A run's id in the path; a malformed one is an unknown run (404).
pub(crate) struct RunPath(pub RunId);

impl FromRequestParts<AppState> for RunPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::RunNotFound)?;
        RunId::parse(&raw).map(RunPath).ok_or(ApiError::RunNotFound)
    }
}

/// A run's id in the path, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by the document; `RunPath` parses it.
pub(crate) struct RunIdParam {
    /// The run's id (a UUID).
    id: RunId,
}

/// The list's query parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document; the handler parses the pairs.
struct PageParams {
    /// Runs per page (50 when absent).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Runs to skip.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    offset: Option<u64>,
}

/// The rule for a run: every one of its hosts in the caller's scope. A
/// run is refused for the first host outside it, as a job is for its own.
pub(crate) fn require_hosts(
    caller: &Principal,
    hosts: &[String],
    known: &rje_domain::HostNames,
) -> Result<(), ApiError> {
    for host in hosts {
        caller.require_host(Some(host), known)?;
    }
    Ok(())
}

/// Reads a run; the store's "not found" is the run's.
pub(crate) async fn find(state: &AppState, id: RunId) -> Result<RunWithJobs, ApiError> {
    state.runs.get_run(id).await.map_err(not_found_as_run)
}

fn not_found_as_run(err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::RunNotFound,
        other => other.into(),
    }
}

fn response_of(run: RunWithJobs) -> RunResponse {
    RunResponse::new(&run.run, run.jobs, Utc::now())
}

/// Queues a run's jobs and answers 201 with the run.
/// `audited` is the run an audit entry names: the new run's id when
/// `None`, else the run it runs again.
async fn start(
    state: &AppState,
    run: &NewRun,
    audited: Option<String>,
) -> Result<Response, ApiError> {
    let created = state.runs.create_run(run).await.map_err(|err| match err {
        // The one unique rule of a run: one retry per run.
        StoreError::NameTaken(_) => ApiError::RunConflict(RunConflict::RunAgainAlready),
        other => other.into(),
    })?;
    crate::metrics::run_created(created.jobs.len());
    for job in &created.jobs {
        crate::metrics::job_created(job.priority, job.host.as_deref().unwrap_or_default());
        state.bus.publish_status(job).await;
    }
    state.bus.announce_work().await;
    let id = created.run.id;
    tracing::info!(run = %id, hosts = created.jobs.len(), "run started");
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/runs/{id}/"))],
        Json(response_of(created)),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(audited.unwrap_or_else(|| id.to_string())));
    Ok(response)
}

/// Starts a run: one job per host of the target, at most `max_parallel`
/// running at once; past `max_failures` failed hosts, those not started
/// yet are Skipped.
#[utoipa::path(
    post,
    path = "/runs",
    operation_id = "create_run",
    tag = "runs",
    request_body = RunRequest,
    responses(
        (status = 201, description = "Started: the run with one Queued job per host", body = RunResponse,
         headers(("Location" = String, description = "The run's URL"))),
        Guarded,
        WithBody,
    ),
    security(("bearer" = []))
)]
async fn create_run(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let settings = &state.settings;
    let run = NewRun::parse(&body, &settings.limits, &settings.hosts)?;
    require_hosts(&caller, run.hosts(), &settings.hosts)?;
    let run = run.submitted_by(caller.name.clone());
    start(&state, &run, None).await
}

/// The runs, newest first, without their jobs; a token limited to some
/// hosts sees the runs all of whose hosts it covers.
#[utoipa::path(
    get,
    path = "/runs",
    operation_id = "list_runs",
    tag = "runs",
    params(PageParams),
    responses((status = 200, description = "A page of runs", body = RunListResponse), Guarded),
    security(("bearer" = []))
)]
async fn list_runs(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: QueryPairs,
) -> Result<Json<RunListResponse>, ApiError> {
    let page = Page::parse(query.iter())?;
    let listed = state
        .runs
        .list_runs(&RunQuery {
            limit: page.limit,
            offset: page.offset,
            hosts_within: caller.visible_hosts(&state.settings.hosts),
        })
        .await?;
    let now = Utc::now();
    Ok(Json(RunListResponse {
        runs: listed
            .runs
            .iter()
            .map(|run| RunResponse::new(run, Vec::new(), now))
            .collect(),
        total_count: listed.total_count,
    }))
}

/// A run: its status, counts per outcome and one job per host (without
/// their output: read a job, or its logs, for that).
#[utoipa::path(
    get,
    path = "/runs/{id}",
    operation_id = "get_run",
    tag = "runs",
    params(RunIdParam),
    responses(
        (status = 200, description = "The run", body = RunResponse),
        (status = 404, description = "No such run", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn show_run(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RunPath(id): RunPath,
) -> Result<Json<RunResponse>, ApiError> {
    let run = find(&state, id).await?;
    require_hosts(&caller, &run.run.hosts, &state.settings.hosts)?;
    Ok(Json(response_of(run)))
}

/// Cancels a run: its queued jobs end Cancelled at once, its running ones
/// are killed as a job's cancel kills them (202 until they have ended;
/// the run's WebSocket tells when). A run that has ended is a 409.
#[utoipa::path(
    post,
    path = "/runs/{id}/cancel",
    operation_id = "cancel_run",
    tag = "runs",
    params(RunIdParam),
    responses(
        (status = 200, description = "Cancelled: nothing of it runs any more", body = RunResponse),
        (status = 202, description = "Its running jobs are being killed", body = RunResponse),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has ended", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn cancel_run(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RunPath(id): RunPath,
) -> Result<Response, ApiError> {
    let before = find(&state, id).await?;
    require_hosts(&caller, &before.run.hosts, &state.settings.hosts)?;
    caller.require_owner(before.run.submitted_by.as_deref())?;
    before.run.when_cancelled()?;
    let cancelled = state
        .runs
        .cancel_run(id, caller.name.as_deref())
        .await
        .map_err(not_found_as_run)?;
    let mut killing = false;
    for cancel in &cancelled.cancels {
        match cancel {
            CancelOutcome::Cancelled(job) => state.bus.publish_status(job).await,
            CancelOutcome::Requested(job) => {
                killing = true;
                state.bus.request_cancel(job.id).await;
            }
        }
    }
    tracing::info!(run = %id, jobs = cancelled.cancels.len(), "run cancelled");
    let code = if killing {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut response = (code, Json(response_of(cancelled.run))).into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(id.to_string()));
    Ok(response)
}

/// Runs a finished run again over the hosts that did not succeed (Skipped
/// ones included): a new run with the same command and controls, linked
/// by `retry_of`, each job linked to the one it runs again.
#[utoipa::path(
    post,
    path = "/runs/{id}/retry",
    operation_id = "retry_run",
    tag = "runs",
    params(RunIdParam),
    responses(
        (status = 201, description = "The new run", body = RunResponse,
         headers(("Location" = String, description = "The new run's URL"))),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has not ended, or every host succeeded", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn retry_run(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RunPath(id): RunPath,
) -> Result<Response, ApiError> {
    let first = find(&state, id).await?;
    let known = &state.settings.hosts;
    require_hosts(&caller, &first.run.hosts, known)?;
    let again = NewRun::retry(&first.run, &first.jobs)?;
    // The hosts it will run on, as its jobs name them, are the ones checked.
    require_hosts(&caller, again.hosts(), known)?;
    again.hosts_still_known(known)?;
    start(
        &state,
        &again.submitted_by(caller.name.clone()),
        Some(id.to_string()),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_run_id_is_not_a_run() {
        assert!(RunId::parse("nope").is_none());
        assert_eq!(
            ApiError::RunNotFound.status_code(),
            axum::http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::RunConflict(RunConflict::NothingToRunAgain).status_code(),
            axum::http::StatusCode::CONFLICT
        );
    }
}
