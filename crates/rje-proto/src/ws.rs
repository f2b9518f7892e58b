//! The messages of the WebSockets: a job's output and status
//! (`/ws/jobs/{id}/`) and every job's status (`/ws/jobs/`).

use chrono::{DateTime, Utc};
use rje_domain::{Chunk, JobId, Status, Stream};
use serde::{Deserialize, Serialize};

use crate::logs::is_zero;

/// A WebSocket message. The original's fields are `log`, `status` and
/// `timestamp`; the rest are rje's.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsMessage {
    /// `output` or `status`.
    #[serde(rename = "type")]
    pub kind: WsKind,
    /// Output text (one or more whole lines); empty on status messages.
    pub log: String,
    pub status: Status,
    #[serde(with = "rje_domain::wire_time")]
    pub timestamp: DateTime<Utc>,
    pub stream: Option<Stream>,
    pub seq: Option<i64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_before: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On the final status of a job whose failure runs it again
    /// (`retry_on_failure`): the new job, whose own WebSocket follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_as: Option<JobId>,
}

/// A message of the all-jobs event stream, `WS /ws/jobs/`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EventMessage {
    /// Sent once, when the server is subscribed: events from here on are
    /// delivered.
    Ready,
    /// A job's status changed.
    Status {
        job_id: JobId,
        status: Status,
        #[serde(with = "rje_domain::wire_time")]
        timestamp: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The client fell behind and this many events were skipped; read the
    /// jobs you care about with GET to resynchronise.
    Gap { missed: u64 },
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WsKind {
    Output,
    Status,
}

impl WsMessage {
    pub fn output(chunk: &Chunk) -> Self {
        Self {
            kind: WsKind::Output,
            log: chunk.display_text().into_owned(),
            // Output only ever comes from a running command.
            status: Status::Running,
            timestamp: chunk.timestamp,
            stream: Some(chunk.stream),
            seq: Some(chunk.seq),
            dropped_before: chunk.dropped_before,
            exit_code: None,
            error: None,
            retried_as: None,
        }
    }

    pub fn status(
        status: Status,
        at: DateTime<Utc>,
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> Self {
        Self {
            kind: WsKind::Status,
            log: String::new(),
            status,
            timestamp: at,
            stream: None,
            seq: None,
            dropped_before: 0,
            exit_code,
            error,
            retried_as: None,
        }
    }

    /// The same status message, naming the job that runs this one again.
    pub fn retried_as(self, job: Option<JobId>) -> Self {
        Self {
            retried_as: job,
            ..self
        }
    }
}
