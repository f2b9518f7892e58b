//! The logs route's JSON pages.

use chrono::{DateTime, Utc};
use rje_domain::{Chunk, JobId, Status, Stream};
use serde::{Deserialize, Serialize};

/// One output chunk as the logs route returns it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkResponse {
    pub seq: i64,
    pub stream: Stream,
    /// The text, with a drop marker in front when output was dropped here.
    pub log: String,
    #[serde(with = "rje_domain::wire_time")]
    pub timestamp: DateTime<Utc>,
    /// Bytes of this stream dropped just before this chunk (over the cap).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_before: u64,
}

pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<&Chunk> for ChunkResponse {
    fn from(chunk: &Chunk) -> Self {
        Self {
            seq: chunk.seq,
            stream: chunk.stream,
            log: chunk.display_text().into_owned(),
            timestamp: chunk.timestamp,
            dropped_before: chunk.dropped_before,
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsResponse {
    pub job_id: JobId,
    pub status: Status,
    pub chunks: Vec<ChunkResponse>,
    /// Pass as `since` to get what comes after this page.
    pub next_since: i64,
    /// The job is finished and this page holds the last of its output.
    pub complete: bool,
}
