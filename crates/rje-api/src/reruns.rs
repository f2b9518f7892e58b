//! Running a finished job again (`POST /jobs/{id}/retry/`), and deleting
//! finished jobs on demand (`POST /jobs/prune/`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rje_domain::{NewJob, PruneFilter};
use rje_proto::{ErrorBody, JobResponse, PruneResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditTarget;
use crate::extract::{Caller, JobPath, QueryPairs};
use crate::jobs::JobIdParam;
use crate::openapi::Guarded;
use crate::{ApiError, AppState};

/// How many jobs one delete statement removes: small enough that the
/// store's writer and the list route never wait long behind it.
pub const PRUNE_BATCH: u32 = 1000;
/// The pause between two batches, so that a large prune leaves the
/// store's writer to everyone else most of the time.
const BETWEEN_BATCHES: std::time::Duration = std::time::Duration::from_millis(20);

/// Deletes the finished jobs `filter` matches, a batch at a time, until
/// none is left or `stop` says so; how many went (counted in
/// `rje_jobs_pruned_total{trigger}`). The one loop of a prune on request
/// and of retention.
pub async fn prune_in_batches(
    retention: &dyn rje_store::Retention,
    filter: &PruneFilter,
    trigger: &'static str,
    stop: impl Fn() -> bool,
) -> Result<u64, rje_store::StoreError> {
    let mut deleted = 0;
    loop {
        let batch = retention.prune_finished(filter, PRUNE_BATCH).await?;
        deleted += batch;
        crate::metrics::jobs_pruned(trigger, batch);
        if batch < u64::from(PRUNE_BATCH) || stop() {
            return Ok(deleted);
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(retry))
        .routes(routes!(prune))
}

/// Runs a finished job again: a new job with the same command, priority,
/// timeout, host, parameters and retry choices, linked both ways
/// (`retry_of` on the new job, `retries` on this one).
#[utoipa::path(
    post,
    path = "/jobs/{id}/retry",
    operation_id = "retry_job",
    tag = "jobs",
    params(JobIdParam),
    responses(
        (status = 201, description = "The new job, Queued", body = JobResponse,
         headers(("Location" = String, description = "The new job's URL"))),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not finished", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn retry(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let job = state.store.get_meta(id).await?;
    // Running a job again is submitting it: the host must be in scope;
    // whose job it was does not matter, its command is visible anyway.
    caller.require_host(job.host.as_deref(), &state.settings.hosts)?;
    job.when_run_again().map_err(rje_store::StoreError::from)?;
    job.host_still_known(&state.settings.hosts)?;
    let again = NewJob::again(&job).submitted_by(caller.name.clone());
    let created = state.store.create(again).await?;
    crate::metrics::job_created(
        created.priority,
        created.host.as_deref().unwrap_or_default(),
    );
    state.bus.publish_status(&created).await;
    state.bus.announce_work().await;
    let new_id = created.id;
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/jobs/{new_id}/"))],
        Json(JobResponse::from(created)),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(id.to_string()));
    Ok(response)
}

/// The prune's query parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document; the handler parses the pairs.
struct PruneParams {
    /// Deletes the jobs completed before this instant (RFC 3339).
    #[param(format = DateTime)]
    before: String,
    /// Only jobs in these final statuses (`Success`, `Failed`,
    /// `Cancelled`), comma-separated; every final status when absent. A
    /// Queued or Running job is never deleted.
    #[param(pattern = "^((Success|Failed|Cancelled)(,(Success|Failed|Cancelled))*)?$")]
    status: Option<String>,
}

/// Deletes finished jobs completed before `before`, with their output, a
/// batch at a time; answers how many went.
#[utoipa::path(
    post,
    path = "/jobs/prune",
    operation_id = "prune_jobs",
    tag = "jobs",
    params(PruneParams),
    responses(
        (status = 200, description = "How many jobs were deleted", body = PruneResponse),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn prune(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Json<PruneResponse>, ApiError> {
    let filter = PruneFilter::parse(query.iter())?;
    let deleted = prune_in_batches(&*state.retention, &filter, "request", || false).await?;
    tracing::info!(deleted, before = %filter.before, statuses = ?filter.statuses, "pruned jobs on request");
    Ok(Json(PruneResponse { deleted }))
}
