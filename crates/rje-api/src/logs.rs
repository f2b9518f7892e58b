//! `GET /jobs/{id}/logs/`: a job's stored output, as pages of chunks (JSON)
//! or as the whole text.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rje_domain::{Stream, ValidationError};

use crate::dto::{ChunkResponse, LogsResponse};
use crate::extract::{JobPath, QueryPairs, parse_since};
use crate::{ApiError, AppState};

const DEFAULT_PAGE: u32 = 1000;
const MAX_PAGE: u32 = 1000;
/// A JSON page stops growing past this many bytes of text.
const PAGE_BYTES: usize = 8 * 1024 * 1024;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/jobs/{id}/logs", get(logs))
}

async fn logs(
    State(state): State<AppState>,
    JobPath(id): JobPath,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let since = parse_since(&query)?;
    let limit = match query.get("limit") {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ValidationError::field(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE}"),
                )
            })?,
    };
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
    if wants_text(&headers) {
        return whole_text(&state, id, since, stream).await;
    }
    let page = state.store.read_output(id, since, limit).await?;
    let full_page = page.chunks.len() == limit as usize;
    let (mut bytes, mut read) = (0, 0);
    let mut chunks = Vec::with_capacity(page.chunks.len());
    for chunk in &page.chunks {
        if read > 0 && bytes + chunk.text.len() > PAGE_BYTES {
            break;
        }
        bytes += chunk.text.len();
        read += 1;
        if stream.is_none_or(|s| s == chunk.stream) {
            chunks.push(ChunkResponse::from(chunk));
        }
    }
    let next_since = page.chunks[..read].last().map_or(since, |c| c.seq);
    let complete = job.status.is_final() && !full_page && read == page.chunks.len();
    Ok(Json(LogsResponse {
        job_id: id,
        status: job.status,
        chunks,
        next_since,
        complete,
    })
    .into_response())
}

fn wants_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/plain") && !accept.contains("json"))
}

/// The output as one text, both streams in the order they were read
/// (or one of them with `?stream=`).
async fn whole_text(
    state: &AppState,
    id: rje_domain::JobId,
    mut since: i64,
    stream: Option<Stream>,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    loop {
        let page = state.store.read_output(id, since, MAX_PAGE).await?;
        for chunk in &page.chunks {
            if stream.is_none_or(|s| s == chunk.stream) {
                text.push_str(&chunk.display_text());
            }
        }
        match page.chunks.last() {
            Some(last) if page.chunks.len() == MAX_PAGE as usize => since = last.seq,
            _ => break,
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
