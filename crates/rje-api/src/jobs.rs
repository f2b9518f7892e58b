//! The job routes of the original API.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rje_bus::{JobEvent, Received};
use rje_domain::{
    IdempotencyKey, JobId, JobPatch, ListOutput, ListQuery, NewJob, Once, Priority, Status,
    ValidationError,
};
use rje_proto::{
    EditRequest, ErrorBody, JobListResponse, JobResponse, JobStatsResponse, SubmitRequest,
};
use rje_store::{CancelOutcome, Created};
use tokio::time::timeout;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditTarget;
use crate::extract::{Caller, JobPath, JsonObject, QueryPairs};
use crate::openapi::{EditAnswers, Guarded, WithBody};
use crate::{ApiError, AppState, streamed};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(list_alias))
        .routes(routes!(stats))
        .routes(routes!(show, edit, patch, delete))
        .routes(routes!(cancel))
}

/// The list's query parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document; the handler parses the pairs.
struct ListParams {
    /// Only jobs in this status.
    status: Option<Status>,
    /// Only jobs of this priority.
    priority: Option<Priority>,
    /// Only jobs on this host (a name of `GET /hosts/`).
    host: Option<String>,
    /// Only jobs submitted by this token (its name).
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    submitted_by: Option<String>,
    /// Only jobs fired by this schedule (its id).
    schedule: Option<rje_domain::ScheduleId>,
    /// Only jobs whose command contains this text: 3 to 200 characters
    /// (ASCII case ignored; `%` and `_` match only themselves). Empty: no
    /// search.
    #[param(max_length = 200, pattern = "^$|^[^\\x00]{3,}$")]
    search: Option<String>,
    /// `created_at` (default), `started_at`, `completed_at` or `priority`;
    /// a leading `-` sorts descending (the default is `-created_at`).
    #[param(pattern = "^-?(created_at|started_at|completed_at|priority)$")]
    ordering: Option<String>,
    /// Jobs per page.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Jobs to skip (kept for the original API's clients; `cursor` costs
    /// the same at any depth). Not with `cursor`.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    offset: Option<u64>,
    /// Where the page starts: the `next` of the page before. It carries
    /// its ordering: an `ordering` beside it must be the same one.
    #[param(max_length = 200, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
    /// `tail` (default): the last `RJE_LIST_OUTPUT_BYTES` of each stream;
    /// `none`: no output.
    #[param(pattern = "^(tail|none)$")]
    output: Option<String>,
}

/// How much output a single job's answer carries.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document; the handler parses the pairs.
struct ShowParams {
    /// Absent (the original's answer): the whole output. `tail`: the last
    /// `RJE_LIST_OUTPUT_BYTES` of each stream, as lists carry it; `none`:
    /// no output, only the sizes (`stdout_bytes`, `stderr_bytes`).
    #[param(pattern = "^(tail|none)$")]
    output: Option<String>,
}

/// A job's id in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by the document; `JobPath` parses it.
pub(crate) struct JobIdParam {
    /// The job's id (a UUID).
    id: JobId,
}

/// The submit's header, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, non_snake_case)] // Read by the document; the handler reads the header.
struct SubmitHeaders {
    /// Makes the submit safe to retry: the first request with a key makes
    /// the job; the same request again with the key (for
    /// `RJE_IDEMPOTENCY_HOURS`, per token) answers that job with 200 and
    /// `Idempotent-Replayed: true`; another request with it is a 409.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x20-\\x7e]+$"
    )]
    Idempotency_Key: Option<String>,
}

/// Submits a job. It is Queued and runs when a worker takes it.
#[utoipa::path(
    post,
    path = "/jobs",
    operation_id = "submit_job",
    tag = "jobs",
    params(SubmitHeaders),
    request_body = SubmitRequest,
    responses(
        (status = 201, description = "Queued", body = JobResponse,
         headers(("Location" = String, description = "The job's URL"))),
        (status = 200, description = "The job this Idempotency-Key made already", body = JobResponse,
         headers(
             ("Location" = String, description = "The job's URL"),
             ("Idempotent-Replayed" = String, description = "`true`")
         )),
        (status = 409, description = "The Idempotency-Key made a job from another request", body = ErrorBody),
        Guarded,
        WithBody,
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let settings = &state.settings;
    let new_job = NewJob::parse(&body, &settings.limits, &settings.hosts)?;
    caller.require_host(Some(new_job.host()), &settings.hosts)?;
    let once = once_of(
        &headers,
        &body,
        caller.name.as_deref(),
        settings.idempotency_window,
    )?;
    let new_job = new_job.submitted_by(caller.name.clone());
    let job = match once {
        None => state.store.create(new_job).await?,
        Some(once) => match state.store.create_once(new_job, &once).await? {
            Created::New(job) => job,
            Created::Replayed(job) => return replay(&state, &caller, &job).await,
        },
    };
    crate::metrics::job_created(job.priority, job.host.as_deref().unwrap_or_default());
    state.bus.announce_work().await;
    let id = job.id;
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/jobs/{id}/"))],
        Json(JobResponse::from(job)),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(id.to_string()));
    Ok(response)
}

/// The answer to a submit whose key made `job` already: the job as it is
/// now, as `GET /jobs/{id}/` answers it (its output included), if the
/// token may still see it (an admin may have moved it out of the scope).
async fn replay(
    state: &AppState,
    caller: &rje_domain::Principal,
    job: &rje_domain::Job,
) -> Result<Response, ApiError> {
    caller.require_sight(job, &state.settings.hosts)?;
    let mut response = streamed::job_response(state, job.id, StatusCode::OK).await?;
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("idempotent-replayed"),
        HeaderValue::from_static("true"),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/jobs/{}/", job.id)) {
        headers.insert(header::LOCATION, location);
    }
    response
        .extensions_mut()
        .insert(AuditTarget(job.id.to_string()));
    Ok(response)
}

/// The submit's `Idempotency-Key`, if it has one, as the store takes it
/// (see [`Once::of`]).
fn once_of(
    headers: &HeaderMap,
    body: &serde_json::Value,
    owner: Option<&str>,
    window: Duration,
) -> Result<Option<Once>, ApiError> {
    let mut keys = headers.get_all(IdempotencyKey::HEADER).iter();
    let Some(key) = keys.next() else {
        return Ok(None);
    };
    if keys.next().is_some() {
        return Err(
            ValidationError::field(IdempotencyKey::HEADER, "appears more than once").into(),
        );
    }
    let key = IdempotencyKey::parse(key.as_bytes())?;
    Ok(Some(Once::of(key, owner, body, chrono::Utc::now(), window)))
}

/// A page of jobs, newest first unless `ordering` says otherwise.
#[utoipa::path(
    get,
    path = "/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    params(ListParams),
    responses((status = 200, description = "A page of jobs", body = JobListResponse), Guarded),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: QueryPairs,
) -> Result<Json<JobListResponse>, ApiError> {
    let hosts = &state.settings.hosts;
    let mut query = ListQuery::parse(query.iter(), hosts)?;
    if let Some(host) = &query.host {
        caller.require_host(Some(host), hosts)?;
    }
    query.hosts_within = caller.visible_hosts(hosts);
    let tail_bytes = match query.output {
        ListOutput::Tail => state.settings.list_output_bytes,
        ListOutput::None => 0,
    };
    let page = state.store.list(&query, tail_bytes).await?;
    Ok(Json(JobListResponse {
        jobs: page.jobs.into_iter().map(JobResponse::from).collect(),
        total_count: page.total_count,
        total_count_exact: page.total_exact,
        next: page.next.map(|cursor| cursor.encode()),
    }))
}

/// The same list as `GET /jobs/` (the original API's path).
#[utoipa::path(
    get,
    path = "/jobs/list",
    operation_id = "list_jobs_original",
    tag = "jobs",
    params(ListParams),
    responses((status = 200, description = "A page of jobs", body = JobListResponse), Guarded),
    security(("bearer" = []))
)]
async fn list_alias(
    state: State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<JobListResponse>, ApiError> {
    list(state, caller, query).await
}

/// A job with its whole output, streamed from the store; `?output=` asks
/// for less.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    operation_id = "get_job",
    tag = "jobs",
    params(JobIdParam, ShowParams),
    responses(
        (status = 200, description = "The job", body = JobResponse),
        (status = 404, description = "No such job", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JobPath(id): JobPath,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    require_in_scope(&state, &caller, id).await?;
    let tail_bytes = match query.get("output").map(str::parse::<ListOutput>) {
        None => return streamed::job_response(&state, id, StatusCode::OK).await,
        Some(Err(message)) => return Err(ValidationError::field("output", message).into()),
        Some(Ok(ListOutput::Tail)) => state.settings.list_output_bytes,
        Some(Ok(ListOutput::None)) => 0,
    };
    let job = state.store.get_listed(id, tail_bytes).await?;
    Ok(Json(JobResponse::from(job)).into_response())
}

/// How many jobs there are in each status, and how many are queued and
/// running at each priority: the figures a dashboard shows on top. Counted
/// at most half a second ago. A token limited to some hosts is told of
/// their jobs only.
#[utoipa::path(
    get,
    path = "/jobs/stats",
    operation_id = "job_stats",
    tag = "jobs",
    responses((status = 200, description = "The counts", body = JobStatsResponse), Guarded),
    security(("bearer" = []))
)]
async fn stats(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<JobStatsResponse>, ApiError> {
    let store = &state.store;
    let scope = caller.visible_hosts(&state.settings.hosts);
    let stats = state
        .stats
        .get_or_count(scope.clone(), || async {
            let mut stats = JobStatsResponse::default();
            if let Some(hosts) = &scope {
                // A scoped token's counts: its hosts' jobs only.
                for counted in store.count_within(hosts).await? {
                    *stats.by_status.slot(counted.status) += counted.jobs;
                    stats.total += counted.jobs;
                    match counted.status {
                        Status::Queued => {
                            *stats.queued_by_priority.slot(counted.priority) += counted.jobs;
                        }
                        Status::Running => {
                            *stats.running_by_priority.slot(counted.priority) += counted.jobs;
                        }
                        _ => {}
                    }
                }
                return Ok::<_, ApiError>(stats);
            }
            for (status, jobs) in store.count_by_status().await? {
                *stats.by_status.slot(status) = jobs;
                stats.total += jobs;
            }
            for active in store.count_active().await? {
                let by_priority = match active.status {
                    Status::Queued => &mut stats.queued_by_priority,
                    Status::Running => &mut stats.running_by_priority,
                    _ => continue,
                };
                *by_priority.slot(active.priority) = active.jobs;
            }
            Ok::<_, ApiError>(stats)
        })
        .await?;
    Ok(Json(stats))
}

/// The same edit as `PUT`.
#[utoipa::path(
    patch,
    path = "/jobs/{id}",
    operation_id = "patch_job",
    tag = "jobs",
    params(JobIdParam),
    request_body = EditRequest,
    responses(EditAnswers, Guarded, WithBody),
    security(("bearer" = []))
)]
async fn patch(
    state: State<AppState>,
    caller: Caller,
    path: JobPath,
    body: JsonObject,
) -> Result<Json<JobResponse>, ApiError> {
    edit(state, caller, path, body).await
}

/// Edits a queued job (PUT and PATCH alike: a partial edit, or the whole
/// job sent back with its other fields unchanged).
#[utoipa::path(
    put,
    path = "/jobs/{id}",
    operation_id = "edit_job",
    tag = "jobs",
    params(JobIdParam),
    request_body = EditRequest,
    responses(EditAnswers, Guarded, WithBody),
    security(("bearer" = []))
)]
async fn edit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JobPath(id): JobPath,
    JsonObject(body): JsonObject,
) -> Result<Json<JobResponse>, ApiError> {
    // Read first: a field sent back unchanged is judged against the job as
    // it is, and a job that cannot be edited is a 409 whatever the body.
    let settings = &state.settings;
    let current = state.store.get_meta(id).await?;
    caller.require_change(&current, &settings.hosts)?;
    if !current.status.is_editable() {
        return Err(ApiError::Conflict {
            status: current.status,
        });
    }
    let patch = JobPatch::parse(&body, &settings.limits, &settings.hosts, &current)?;
    if let Some(host) = patch.host() {
        caller.require_host(Some(host), &settings.hosts)?;
    }
    let job = state.store.edit(id, &patch).await?;
    if patch.priority().is_some() {
        // A job may now be first in line.
        state.bus.announce_work().await;
    }
    Ok(Json(job.into()))
}

/// Deletes a job that is not running, with its output.
#[utoipa::path(
    delete,
    path = "/jobs/{id}",
    operation_id = "delete_job",
    tag = "jobs",
    params(JobIdParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is running", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JobPath(id): JobPath,
) -> Result<StatusCode, ApiError> {
    require_in_scope(&state, &caller, id).await?;
    state.store.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels a job. A queued job is cancelled at once. For a running job the
/// request is recorded, the worker told, and the answer waits (briefly) for
/// the kill to be confirmed: 200 with the Cancelled job, or 202 with the job
/// as it is if the kill takes longer.
#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    operation_id = "cancel_job",
    tag = "jobs",
    params(JobIdParam),
    responses(
        (status = 200, description = "Cancelled (a running job's kill confirmed)", body = JobResponse),
        (status = 202, description = "Requested; the kill is under way", body = JobResponse),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is already finished", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let job = state.store.get_meta(id).await?;
    caller.require_change(&job, &state.settings.hosts)?;
    // Subscribe before asking, so the final status cannot slip by unseen.
    let events = state.bus.subscribe_job(id).await.ok();
    match state.store.cancel(id, caller.name.as_deref()).await? {
        CancelOutcome::Cancelled(job) => {
            state.bus.publish_status(&job).await;
            Ok(Json(JobResponse::from(job)).into_response())
        }
        CancelOutcome::Requested(_) => {
            state.bus.request_cancel(id).await;
            let finished = wait_until_final(&state, id, events, state.settings.cancel_wait).await?;
            let status = if finished {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            streamed::job_response(&state, id, status).await
        }
    }
}

/// Refuses a job outside the caller's scope: a 403 naming its host, never
/// a 404 that would hide a job the token may not see. Reads the job only
/// for a scoped token.
pub(crate) async fn require_in_scope(
    state: &AppState,
    caller: &rje_domain::Principal,
    id: JobId,
) -> Result<(), ApiError> {
    if caller.scope.is_everything() {
        return Ok(());
    }
    let job = state.store.get_meta(id).await?;
    caller.require_sight(&job, &state.settings.hosts)?;
    Ok(())
}

/// Waits for a final status event, then asks the store (the truth) whether
/// the job is finished. A lost event costs only the wait.
async fn wait_until_final(
    state: &AppState,
    id: JobId,
    events: Option<rje_bus::Subscription<JobEvent>>,
    within: Duration,
) -> Result<bool, ApiError> {
    if let Some(mut events) = events {
        let _ = timeout(within, async {
            loop {
                match events.recv().await {
                    Received::Message(JobEvent::Status(event)) if event.status.is_final() => {
                        return;
                    }
                    Received::Closed => return,
                    Received::Gap(_) | Received::Message(JobEvent::Resync { .. }) => {
                        // The final status may have been among the missed.
                        if state
                            .store
                            .get_meta(id)
                            .await
                            .is_ok_and(|j| j.status.is_final())
                        {
                            return;
                        }
                    }
                    Received::Message(_) => {}
                }
            }
        })
        .await;
    }
    Ok(state.store.get_meta(id).await?.status.is_final())
}
