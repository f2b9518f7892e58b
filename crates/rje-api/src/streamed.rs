//! Bodies that carry a job's whole output, streamed from the store in
//! bounded pieces instead of assembled in memory: a request for a job with
//! 20 MB of output costs the server a page of chunks at a time, whatever the
//! number of such requests at once.

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream as FuturesStream};
use rje_domain::{JobId, Stream};
use rje_store::{JobStore, StoreError};
use std::sync::Arc;

use crate::dto::JobResponse;
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
    let sizes = listed.output_bytes;
    let mut fields = serde_json::to_value(JobResponse::from(listed))
        .map_err(|err| ApiError::Internal(format!("cannot serialise a job: {err}")))?;
    if let Some(object) = fields.as_object_mut() {
        object.remove("stdout");
        object.remove("stderr");
    }
    let mut prefix = fields.to_string();
    // The object is never empty, so it ends in '}' and has fields before it.
    prefix.pop();
    let parts: Vec<Part> = vec![
        Part::Text(prefix),
        Part::Output {
            name: "stdout",
            stream: Stream::Stdout,
            present: sizes[0].is_some(),
        },
        Part::Output {
            name: "stderr",
            stream: Stream::Stderr,
            present: sizes[1].is_some(),
        },
        Part::Text("}".into()),
    ];
    let body = Body::from_stream(render(state.store.clone(), id, parts, Encoding::Json));
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The output as plain text, both streams in the order they were read, or
/// one of them.
pub(crate) fn text_response(
    state: &AppState,
    id: JobId,
    since: i64,
    only: Option<Stream>,
) -> Response {
    let parts = vec![Part::Chunks { since, only }];
    let body = Body::from_stream(render(state.store.clone(), id, parts, Encoding::Text));
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

enum Part {
    Text(String),
    /// `,"NAME":"…"` with the stream's output, or `,"NAME":null`.
    Output {
        name: &'static str,
        stream: Stream,
        present: bool,
    },
    /// Chunks after `since`, of one stream or both, as they are.
    Chunks {
        since: i64,
        only: Option<Stream>,
    },
}

#[derive(Clone, Copy)]
enum Encoding {
    /// Inside a JSON string.
    Json,
    Text,
}

/// Where the rendering is: which part, and how far into the output.
struct Cursor {
    store: Arc<dyn JobStore>,
    id: JobId,
    parts: std::vec::IntoIter<Part>,
    current: Option<Part>,
    since: i64,
    encoding: Encoding,
}

fn render(
    store: Arc<dyn JobStore>,
    id: JobId,
    parts: Vec<Part>,
    encoding: Encoding,
) -> impl FuturesStream<Item = Result<Bytes, StoreError>> {
    let mut parts = parts.into_iter();
    let current = parts.next();
    let cursor = Cursor {
        store,
        id,
        parts,
        current,
        since: 0,
        encoding,
    };
    stream::try_unfold(cursor, |mut cursor| async move {
        loop {
            let Some(part) = cursor.current.take() else {
                return Ok(None);
            };
            match part {
                Part::Text(text) => {
                    cursor.advance();
                    return Ok(Some((Bytes::from(text), cursor)));
                }
                Part::Output {
                    name,
                    stream,
                    present: false,
                } => {
                    let _ = stream;
                    cursor.advance();
                    return Ok(Some((Bytes::from(format!(",\"{name}\":null")), cursor)));
                }
                Part::Output {
                    name,
                    stream,
                    present: true,
                } => {
                    // Opens the string, then continues as chunks of the stream.
                    cursor.since = 0;
                    cursor.current = Some(Part::Chunks {
                        since: 0,
                        only: Some(stream),
                    });
                    cursor.parts = prepend(Part::Text("\"".into()), cursor.parts);
                    return Ok(Some((Bytes::from(format!(",\"{name}\":\"")), cursor)));
                }
                Part::Chunks { since, only } => {
                    let from = since.max(cursor.since);
                    let page = cursor
                        .store
                        .read_output(cursor.id, from, CHUNKS_PER_STEP)
                        .await?;
                    let mut text = String::new();
                    for chunk in page
                        .chunks
                        .iter()
                        .filter(|c| only.is_none_or(|s| s == c.stream))
                    {
                        match cursor.encoding {
                            Encoding::Text => text.push_str(&chunk.display_text()),
                            Encoding::Json => push_json_escaped(&mut text, &chunk.display_text()),
                        }
                    }
                    match page.chunks.last() {
                        Some(last) if page.chunks.len() == CHUNKS_PER_STEP as usize => {
                            cursor.since = last.seq;
                            cursor.current = Some(Part::Chunks { since, only });
                        }
                        _ => cursor.advance(),
                    }
                    if !text.is_empty() {
                        return Ok(Some((Bytes::from(text), cursor)));
                    }
                }
            }
        }
    })
}

impl Cursor {
    fn advance(&mut self) {
        self.since = 0;
        self.current = self.parts.next();
    }
}

fn prepend(first: Part, rest: std::vec::IntoIter<Part>) -> std::vec::IntoIter<Part> {
    let mut parts = vec![first];
    parts.extend(rest);
    parts.into_iter()
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
