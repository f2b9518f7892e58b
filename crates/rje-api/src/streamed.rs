//! Bodies that carry a job's whole output, streamed from the store in
//! bounded pieces instead of assembled in memory: a request for a job with
//! 20 MB of output costs the server a page of chunks at a time, whatever the
//! number of such requests at once.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream as FuturesStream};
use rje_domain::{JobId, ListedJob, Stream};
use rje_proto::JobResponse;
use rje_store::{Jobs, StoreError};

use crate::state::SnapshotReads;
use crate::{ApiError, AppState};

/// Chunks read from the store per step: at most 16 × 64 KiB of text.
const CHUNKS_PER_STEP: u32 = 16;

/// The job as JSON, with its whole output streamed in.
pub(crate) async fn job_response(
    state: &AppState,
    id: JobId,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let listed = state.store.get_listed(id, 0).await?;
    if !listed.job.status.is_final() {
        // A job still running changes between two reads: the worker
        // appends and prunes. Paged, its body once mixed several states
        // (9 MB against a 4 MiB `stdout_bytes`, two drop markers). Read
        // whole in one store statement instead, one snapshot, its sizes
        // those of what it shows; the cap bounds it (a settled job, which
        // no longer changes, is streamed).
        // A turn that does not come soon is a 429 to try again, never a
        // hang: the turns may be held by clients that read slowly.
        let turn = tokio::time::timeout(
            SnapshotReads::WAIT,
            state.snapshots.0.clone().acquire_owned(),
        )
        .await
        .ok()
        // The semaphore is never closed: `Err` cannot come.
        .and_then(Result::ok)
        .ok_or(ApiError::TooManyRequests {
            retry_after_secs: 1,
        })?;
        let job = state.store.get(id).await?;
        let size = |text: &Option<String>| text.as_ref().map(|text| text.len() as u64);
        let output_bytes = [size(&job.stdout), size(&job.stderr)];
        let body = serde_json::to_vec(&JobResponse::from(ListedJob { job, output_bytes }))
            .map_err(|err| ApiError::Internal(format!("cannot serialise a job: {err}")))?;
        return Ok((
            status,
            [(header::CONTENT_TYPE, "application/json")],
            held_until_sent(body, turn),
        )
            .into_response());
    }
    let sizes = listed.output_bytes;
    let mut fields = serde_json::to_value(JobResponse::from(listed))
        .map_err(|err| ApiError::Internal(format!("cannot serialise a job: {err}")))?;
    if let Some(object) = fields.as_object_mut() {
        object.remove("stdout");
        object.remove("stderr");
    }
    let mut text = fields.to_string();
    // The object is never empty: it ends in '}' and has fields before it.
    text.pop();
    let mut segments = VecDeque::new();
    for (stream, size) in Stream::BOTH.into_iter().zip(sizes) {
        let name = stream.as_str();
        if size.is_none() {
            text.push_str(&format!(",\"{name}\":null"));
            continue;
        }
        text.push_str(&format!(",\"{name}\":\""));
        segments.push_back(Segment::Text(std::mem::take(&mut text)));
        segments.push_back(Segment::Chunks {
            since: 0,
            only: Some(stream),
            json: true,
            upto: None,
        });
        text.push('"');
    }
    text.push('}');
    segments.push_back(Segment::Text(text));
    let body = Body::from_stream(render(state.store.clone(), id, segments));
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `bytes` as a body sent in steps, holding `turn` as long as the body
/// lives: the memory a whole read holds is counted until it is gone.
fn held_until_sent(bytes: Vec<u8>, turn: tokio::sync::OwnedSemaphorePermit) -> Body {
    const STEP: usize = 64 * 1024;
    let bytes = Bytes::from(bytes);
    // The steps own the turn: it goes back when the body is dropped, once
    // sent or when the client leaves.
    let steps = (0..bytes.len()).step_by(STEP).map(move |at| {
        let _held = &turn;
        Ok::<_, std::convert::Infallible>(bytes.slice(at..(at + STEP).min(bytes.len())))
    });
    Body::from_stream(stream::iter(steps))
}

/// The output as plain text, both streams in the order they were read, or
/// one of them.
///
/// `upto`: the last chunk to send (the last one stored when the request
/// came, for a job still running), so that the body ends where the output
/// did then instead of following a flood. Each page is one snapshot; a
/// prune between two pages shows as a second drop marker, never as lines
/// out of order.
pub(crate) fn text_response(
    state: &AppState,
    id: JobId,
    since: i64,
    only: Option<Stream>,
    upto: Option<i64>,
) -> Response {
    let segments = VecDeque::from([Segment::Chunks {
        since,
        only,
        json: false,
        upto,
    }]);
    let body = Body::from_stream(render(state.store.clone(), id, segments));
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// A piece of a body.
enum Segment {
    Text(String),
    /// The output after chunk `since`, of one stream or both, as text or
    /// escaped for the inside of a JSON string.
    Chunks {
        since: i64,
        only: Option<Stream>,
        json: bool,
        /// The last seq to send; `None`: all there is.
        upto: Option<i64>,
    },
}

/// Yields the segments in order, reading chunks from the store a page at a
/// time as the client takes them.
fn render(
    store: Arc<dyn Jobs>,
    id: JobId,
    segments: VecDeque<Segment>,
) -> impl FuturesStream<Item = Result<Bytes, StoreError>> {
    stream::try_unfold(segments, move |mut segments| {
        let store = store.clone();
        async move {
            loop {
                match segments.pop_front() {
                    None => return Ok(None),
                    Some(Segment::Text(text)) => return Ok(Some((Bytes::from(text), segments))),
                    Some(Segment::Chunks {
                        since,
                        only,
                        json,
                        upto,
                    }) => {
                        let mut page = store.read_output(id, since, CHUNKS_PER_STEP, only).await?;
                        let full = page.chunks.len() == CHUNKS_PER_STEP as usize;
                        page.chunks
                            .retain(|chunk| upto.is_none_or(|upto| chunk.seq <= upto));
                        if let Some(last) = page.chunks.last()
                            && full
                            && upto.is_none_or(|upto| last.seq < upto)
                        {
                            segments.push_front(Segment::Chunks {
                                since: last.seq,
                                only,
                                json,
                                upto,
                            });
                        }
                        let mut text = String::new();
                        for chunk in &page.chunks {
                            if json {
                                push_json_escaped(&mut text, &chunk.display_text());
                            } else {
                                text.push_str(&chunk.display_text());
                            }
                        }
                        if !text.is_empty() {
                            return Ok(Some((Bytes::from(text), segments)));
                        }
                    }
                }
            }
        }
    })
}

/// Appends `text` as the inside of a JSON string.
fn push_json_escaped(out: &mut String, text: &str) {
    let quoted = serde_json::Value::from(text).to_string();
    out.push_str(&quoted[1..quoted.len() - 1]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde() {
        let mut out = String::new();
        push_json_escaped(&mut out, "a \"quoted\"\nline\t\u{1}\\ é");
        assert_eq!(
            format!("\"{out}\""),
            serde_json::to_string("a \"quoted\"\nline\t\u{1}\\ é").unwrap()
        );
    }
}
