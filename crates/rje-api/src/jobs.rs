//! The job routes of the original API.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rje_bus::{JobEvent, Received};
use rje_domain::{JobId, JobPatch, ListOutput, ListQuery, NewJob};
use rje_store::CancelOutcome;
use tokio::time::timeout;

use crate::extract::{JobPath, JsonObject, QueryPairs};
use crate::{ApiError, AppState, streamed};
use rje_proto::{JobListResponse, JobResponse};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", post(create).get(list))
        .route("/jobs/list", get(list))
        .route("/jobs/{id}", get(show).put(edit).patch(edit).delete(delete))
        .route("/jobs/{id}/cancel", post(cancel))
}

async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let settings = &state.settings;
    let new_job = NewJob::parse(&body, &settings.limits, &settings.hosts)?;
    let job = state.store.create(new_job).await?;
    crate::metrics::job_created(job.priority, job.host.as_deref().unwrap_or_default());
    state.bus.announce_work().await;
    let location = format!("/jobs/{}/", job.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(JobResponse::from(job)),
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Json<JobListResponse>, ApiError> {
    let query = ListQuery::parse(query.iter(), &state.settings.hosts)?;
    let tail_bytes = match query.output {
        ListOutput::Tail => state.settings.list_output_bytes,
        ListOutput::None => 0,
    };
    let page = state.store.list(&query, tail_bytes).await?;
    Ok(Json(JobListResponse {
        jobs: page.jobs.into_iter().map(JobResponse::from).collect(),
        total_count: page.total_count,
        total_count_exact: page.total_exact,
    }))
}

/// A job with its whole output, streamed from the store.
async fn show(State(state): State<AppState>, JobPath(id): JobPath) -> Result<Response, ApiError> {
    streamed::job_response(&state, id, StatusCode::OK).await
}

async fn edit(
    State(state): State<AppState>,
    JobPath(id): JobPath,
    JsonObject(body): JsonObject,
) -> Result<Json<JobResponse>, ApiError> {
    // Read first: a field sent back unchanged is judged against the job as
    // it is, and a job that cannot be edited is a 409 whatever the body.
    let current = state.store.get_meta(id).await?;
    if !current.status.is_editable() {
        return Err(ApiError::Conflict {
            status: current.status,
        });
    }
    let settings = &state.settings;
    let patch = JobPatch::parse(&body, &settings.limits, &settings.hosts, &current)?;
    let job = state.store.edit(id, &patch).await?;
    if patch.priority().is_some() {
        // A job may now be first in line.
        state.bus.announce_work().await;
    }
    Ok(Json(job.into()))
}

async fn delete(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> Result<StatusCode, ApiError> {
    state.store.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels a job. A queued job is cancelled at once. For a running job the
/// request is recorded, the worker told, and the answer waits (briefly) for
/// the kill to be confirmed: 200 with the Cancelled job, or 202 with the job
/// as it is if the kill takes longer.
async fn cancel(State(state): State<AppState>, JobPath(id): JobPath) -> Result<Response, ApiError> {
    // Subscribe before asking, so the final status cannot slip by unseen.
    let events = state.bus.subscribe_job(id).await.ok();
    match state.store.cancel(id).await? {
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
