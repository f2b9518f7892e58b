//! `/schedules/`: jobs fired by a cron expression. The fires themselves
//! are the scheduler's (crates/rje/src/scheduler.rs); here schedules are
//! made, read, edited, paused, resumed and deleted.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use rje_domain::{Misfire, NewSchedule, Overlap, Page, Principal, Priority, Timetable};
use rje_proto::{
    ErrorBody, LastJob, ScheduleEdit, ScheduleListResponse, ScheduleRequest, ScheduleResponse,
};
use rje_store::{ScheduleRecord, ScheduleWrite};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditTarget;
use crate::extract::{Caller, JsonObject, QueryPairs};
use crate::openapi::{Guarded, WithBody};
use crate::{ApiError, AppState};

/// How many fire times a schedule shows.
const NEXT_FIRE_TIMES: usize = 5;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_schedule, list_schedules))
        .routes(routes!(
            show_schedule,
            replace_schedule,
            patch_schedule,
            delete_schedule
        ))
        .routes(routes!(pause_schedule))
        .routes(routes!(resume_schedule))
}

/// The schedule's id or its name.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by the document; the handlers read the segment.
struct ScheduleKey {
    /// The schedule's id (a UUID) or its name.
    #[param(min_length = 1, max_length = 100)]
    id: String,
}

/// The list's query parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document; the handler parses the pairs.
struct PageParams {
    /// Schedules per page (50 when absent).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Schedules to skip.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    offset: Option<u64>,
}

/// Makes a schedule. Its next five fire times are in the answer, so that
/// a mistake in the expression or the time zone shows at once.
#[utoipa::path(
    post,
    path = "/schedules",
    operation_id = "create_schedule",
    tag = "schedules",
    request_body = ScheduleRequest,
    responses(
        (status = 201, description = "Made", body = ScheduleResponse,
         headers(("Location" = String, description = "The schedule's URL"))),
        (status = 409, description = "The name is taken", body = ErrorBody),
        Guarded,
        WithBody,
    ),
    security(("bearer" = []))
)]
async fn create_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let settings = &state.settings;
    let schedule = NewSchedule::parse(&body, &settings.limits, &settings.hosts)?;
    caller.require_host(Some(schedule.job().host()), &settings.hosts)?;
    let definition = schedule.to_body();
    let record = state
        .schedules
        .create_schedule(&write_of(&schedule, &definition), caller.name.as_deref())
        .await?;
    state.schedule_changed.notify_one();
    let id = record.id;
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/schedules/{id}/"))],
        Json(response_of(record)?),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(id.to_string()));
    Ok(response)
}

/// The schedules, by name; a token limited to some hosts sees theirs.
#[utoipa::path(
    get,
    path = "/schedules",
    operation_id = "list_schedules",
    tag = "schedules",
    params(PageParams),
    responses((status = 200, description = "A page of schedules", body = ScheduleListResponse), Guarded),
    security(("bearer" = []))
)]
async fn list_schedules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: QueryPairs,
) -> Result<Json<ScheduleListResponse>, ApiError> {
    let page = Page::parse(query.iter())?;
    let within = caller.visible_hosts(&state.settings.hosts);
    let (records, total_count) = state
        .schedules
        .schedules(page.limit, page.offset, within.as_deref())
        .await?;
    Ok(Json(ScheduleListResponse {
        schedules: records
            .into_iter()
            .map(response_of)
            .collect::<Result<_, _>>()?,
        total_count,
    }))
}

/// A schedule, with its next five fire times and its last job.
#[utoipa::path(
    get,
    path = "/schedules/{id}",
    operation_id = "get_schedule",
    tag = "schedules",
    params(ScheduleKey),
    responses(
        (status = 200, description = "The schedule", body = ScheduleResponse),
        (status = 404, description = "No such schedule", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn show_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
) -> Result<Json<ScheduleResponse>, ApiError> {
    let record = find(&state, &key).await?;
    caller.require_host(Some(&record.host), &state.settings.hosts)?;
    Ok(Json(response_of(record)?))
}

/// Replaces a schedule whole. The fields GET adds (`id`,
/// `next_fire_times`, `last_job`, `created_at`, `modified_at`,
/// `created_by`) may be sent back; they are ignored. Fire times already
/// passed are not caught up.
#[utoipa::path(
    put,
    path = "/schedules/{id}",
    operation_id = "replace_schedule",
    tag = "schedules",
    params(ScheduleKey),
    request_body = ScheduleRequest,
    responses(
        (status = 200, description = "Replaced", body = ScheduleResponse),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        Guarded,
        WithBody,
    ),
    security(("bearer" = []))
)]
async fn replace_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let settings = &state.settings;
    let record = find_to_change(&state, &caller, &key).await?;
    let schedule = NewSchedule::parse_put(&body, &settings.limits, &settings.hosts)?;
    rewrite(&state, &caller, record, &schedule).await
}

/// Changes the fields sent; the others stay. Fire times already passed
/// are not caught up.
#[utoipa::path(
    patch,
    path = "/schedules/{id}",
    operation_id = "patch_schedule",
    tag = "schedules",
    params(ScheduleKey),
    request_body = ScheduleEdit,
    responses(
        (status = 200, description = "Changed", body = ScheduleResponse),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        Guarded,
        WithBody,
    ),
    security(("bearer" = []))
)]
async fn patch_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let settings = &state.settings;
    let record = find_to_change(&state, &caller, &key).await?;
    let stored = stored_of(&record);
    let schedule = NewSchedule::patched_stored(&stored, &body, &settings.limits, &settings.hosts)?;
    rewrite(&state, &caller, record, &schedule).await
}

/// Deletes a schedule. The jobs it fired stay.
#[utoipa::path(
    delete,
    path = "/schedules/{id}",
    operation_id = "delete_schedule",
    tag = "schedules",
    params(ScheduleKey),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn delete_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let record = find_to_change(&state, &caller, &key).await?;
    state
        .schedules
        .delete_schedule(record.id)
        .await
        .map_err(|err| not_found_as_schedule(err, &key))?;
    state.schedule_changed.notify_one();
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(record.id.to_string()));
    Ok(response)
}

/// Pauses a schedule: it fires nothing until resumed.
#[utoipa::path(
    post,
    path = "/schedules/{id}/pause",
    operation_id = "pause_schedule",
    tag = "schedules",
    params(ScheduleKey),
    responses(
        (status = 200, description = "Paused", body = ScheduleResponse),
        (status = 404, description = "No such schedule", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn pause_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(&state, &caller, &key, true).await
}

/// Resumes a schedule from now: the fire times passed while it was paused
/// are not caught up.
#[utoipa::path(
    post,
    path = "/schedules/{id}/resume",
    operation_id = "resume_schedule",
    tag = "schedules",
    params(ScheduleKey),
    responses(
        (status = 200, description = "Resumed", body = ScheduleResponse),
        (status = 404, description = "No such schedule", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn resume_schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(&state, &caller, &key, false).await
}

async fn set_paused(
    state: &AppState,
    caller: &Principal,
    key: &str,
    paused: bool,
) -> Result<Response, ApiError> {
    let record = find_to_change(state, caller, key).await?;
    // Resuming starts afresh: what passed while paused was not missed.
    let since = (!paused).then(Utc::now);
    let record = state
        .schedules
        .set_paused(record.id, paused, since)
        .await
        .map_err(|err| not_found_as_schedule(err, key))?;
    answer_changed(state, record)
}

/// Writes `schedule` over `record`, from now on.
async fn rewrite(
    state: &AppState,
    caller: &Principal,
    record: ScheduleRecord,
    schedule: &NewSchedule,
) -> Result<Response, ApiError> {
    caller.require_host(Some(schedule.job().host()), &state.settings.hosts)?;
    let definition = schedule.to_body();
    let key = record.id.to_string();
    let record = state
        .schedules
        .update_schedule(
            record.id,
            &write_of(schedule, &definition),
            Some(Utc::now()),
        )
        .await
        .map_err(|err| not_found_as_schedule(err, &key))?;
    answer_changed(state, record)
}

fn answer_changed(state: &AppState, record: ScheduleRecord) -> Result<Response, ApiError> {
    state.schedule_changed.notify_one();
    let id = record.id;
    let mut response = Json(response_of(record)?).into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(id.to_string()));
    Ok(response)
}

async fn find(state: &AppState, key: &str) -> Result<ScheduleRecord, ApiError> {
    state
        .schedules
        .schedule(key)
        .await
        .map_err(|err| not_found_as_schedule(err, key))
}

/// The store's "not found" for a schedule route: the schedule (perhaps
/// deleted meanwhile), never a job.
fn not_found_as_schedule(err: rje_store::StoreError, key: &str) -> ApiError {
    match err {
        // Bounded: a route's key is the client's text, of any length.
        rje_store::StoreError::NotFound => {
            ApiError::ScheduleNotFound(key.chars().take(100).collect())
        }
        other => other.into(),
    }
}

/// A schedule the caller may change: on its hosts, and its own unless the
/// caller is an admin (as for jobs).
async fn find_to_change(
    state: &AppState,
    caller: &Principal,
    key: &str,
) -> Result<ScheduleRecord, ApiError> {
    let record = find(state, key).await?;
    caller.require_host(Some(&record.host), &state.settings.hosts)?;
    caller.require_schedule_owner(record.created_by.as_deref())?;
    Ok(record)
}

/// The schedule as it stands, to edit: its definition as stored (not
/// checked again: the edit may be what repairs it), with its paused state
/// as pause and resume left it.
fn stored_of(record: &ScheduleRecord) -> serde_json::Value {
    let mut definition = record.definition.clone();
    if let Some(fields) = definition.as_object_mut() {
        fields.insert("paused".into(), record.paused.into());
    }
    definition
}

fn write_of<'a>(schedule: &'a NewSchedule, definition: &'a serde_json::Value) -> ScheduleWrite<'a> {
    ScheduleWrite {
        name: schedule.name(),
        definition,
        host: schedule.job().host(),
        paused: schedule.paused(),
    }
}

/// A stored definition: what `NewSchedule::to_body` wrote.
#[derive(Deserialize)]
struct Definition {
    cron: String,
    timezone: String,
    command: String,
    priority: Priority,
    timeout: u32,
    host: String,
    parameters: Option<serde_json::Value>,
    max_retries: u32,
    #[serde(default)]
    retry_on_failure: bool,
    overlap: Overlap,
    misfire: Misfire,
}

pub(crate) fn response_of(record: ScheduleRecord) -> Result<ScheduleResponse, ApiError> {
    let definition: Definition = serde_json::from_value(record.definition)
        .map_err(|err| ApiError::Internal(format!("a stored schedule does not read: {err}")))?;
    let next_fire_times = if record.paused {
        Vec::new()
    } else {
        Timetable::parse(&definition.cron, &definition.timezone)
            .map(|timetable| timetable.upcoming(Utc::now().max(record.since), NEXT_FIRE_TIMES))
            .unwrap_or_default()
            .iter()
            .map(rje_domain::wire_time::format)
            .collect()
    };
    Ok(ScheduleResponse {
        id: record.id,
        name: record.name,
        cron: definition.cron,
        timezone: definition.timezone,
        command: definition.command,
        priority: definition.priority,
        timeout: definition.timeout,
        host: definition.host,
        parameters: definition.parameters,
        max_retries: definition.max_retries,
        retry_on_failure: definition.retry_on_failure,
        overlap: definition.overlap,
        misfire: definition.misfire,
        paused: record.paused,
        next_fire_times,
        last_job: record.last_job.map(|(id, status)| LastJob { id, status }),
        created_by: record.created_by,
        created_at: record.created_at,
        modified_at: record.modified_at,
    })
}
