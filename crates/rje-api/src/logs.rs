//! `GET /jobs/{id}/logs/`: a job's stored output, as pages of chunks (JSON)
//! or as the whole text.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use rje_domain::{Stream, ValidationError};
use rje_proto::{ChunkResponse, ErrorBody, LogsResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::{Caller, JobPath, QueryPairs, parse_since};
use crate::jobs::JobIdParam;
use crate::openapi::Guarded;
use crate::{ApiError, AppState, streamed};

const DEFAULT_PAGE: u32 = 1000;
const MAX_PAGE: u32 = 1000;
/// A JSON page stops growing past this many bytes of text.
const PAGE_BYTES: usize = 1024 * 1024;
/// Chunks read from the store at a time while filling a page: the page's
/// byte bound then also bounds what is read.
const READ_STEP: u32 = 16;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(logs))
}

/// The logs' query parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document; the handler parses the pairs.
struct LogsParams {
    /// Only chunks after this seq (0: from the start).
    #[param(minimum = 0)]
    since: Option<i64>,
    /// Chunks per page (a page also stops at about 1 MiB of text).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only this stream.
    stream: Option<Stream>,
    /// Only the last this many chunks (after `since`): the end of a long
    /// output without reading the rest. `next_since` then follows on.
    #[param(minimum = 1, maximum = 1000)]
    last: Option<u32>,
}

/// A job's stored output: pages of chunks as JSON, or the whole text with
/// `Accept: text/plain`.
#[utoipa::path(
    get,
    path = "/jobs/{id}/logs",
    operation_id = "job_logs",
    tag = "jobs",
    params(JobIdParam, LogsParams),
    responses(
        (status = 200, description = "A page of output chunks, or the text",
         content(
             (LogsResponse = "application/json"),
             (String = "text/plain")
         )),
        (status = 404, description = "No such job", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn logs(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JobPath(id): JobPath,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let since = parse_since(&query)?;
    let limit = page_size(&query, "limit")?.unwrap_or(DEFAULT_PAGE);
    let last = page_size(&query, "last")?;
    let stream = match query.get("stream") {
        None => None,
        Some("stdout") => Some(Stream::Stdout),
        Some("stderr") => Some(Stream::Stderr),
        Some(_) => {
            return Err(ValidationError::field("stream", "must be stdout or stderr").into());
        }
    };
    // Read the status first: if the job was finished then, every chunk is
    // already stored and the page can say it is complete.
    let job = state.store.get_meta(id).await?;
    caller.require_sight(&job, &state.settings.hosts)?;
    if wants_text(&headers) {
        // A running job's body ends at its last chunk stored now.
        let upto = if job.status.is_final() {
            None
        } else {
            let last = state.store.read_output_last(id, since, 1, stream).await?;
            Some(last.chunks.last().map_or(since, |chunk| chunk.seq))
        };
        return Ok(streamed::text_response(&state, id, since, stream, upto));
    }
    if let Some(last) = last {
        let page = state
            .store
            .read_output_last(id, since, last, stream)
            .await?;
        // The same byte bound as a forward page, kept from the end.
        let mut bytes = 0usize;
        let keep = page
            .chunks
            .iter()
            .rev()
            .take_while(|chunk| {
                bytes += chunk.text.len();
                bytes <= PAGE_BYTES
            })
            .count()
            .max(1);
        let chunks = &page.chunks[page.chunks.len().saturating_sub(keep)..];
        return Ok(Json(LogsResponse {
            job_id: id,
            status: job.status,
            next_since: chunks.last().map_or(since, |chunk| chunk.seq),
            chunks: chunks.iter().map(ChunkResponse::from).collect(),
            complete: job.status.is_final(),
        })
        .into_response());
    }
    let mut chunks = Vec::new();
    let (mut bytes, mut read) = (0usize, 0u32);
    let mut next_since = since;
    let mut exhausted = false;
    'pages: while read < limit {
        let step = READ_STEP.min(limit - read);
        let page = state
            .store
            .read_output(id, next_since, step, stream)
            .await?;
        let full_step = page.chunks.len() == step as usize;
        for chunk in &page.chunks {
            if read > 0 && bytes + chunk.text.len() > PAGE_BYTES {
                break 'pages;
            }
            bytes += chunk.text.len();
            read += 1;
            next_since = chunk.seq;
            chunks.push(ChunkResponse::from(chunk));
        }
        if !full_step {
            exhausted = true;
            break;
        }
    }
    let complete = job.status.is_final() && exhausted;
    Ok(Json(LogsResponse {
        job_id: id,
        status: job.status,
        chunks,
        next_since,
        complete,
    })
    .into_response())
}

/// A count of chunks from 1 to [`MAX_PAGE`], if the query names one.
fn page_size(query: &QueryPairs, name: &str) -> Result<Option<u32>, ApiError> {
    let Some(text) = query.get(name) else {
        return Ok(None);
    };
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .map(Some)
        .ok_or_else(|| {
            ValidationError::field(name, format!("must be a whole number from 1 to {MAX_PAGE}"))
                .into()
        })
}

fn wants_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/plain") && !accept.contains("json"))
}
