//! The JSON the API speaks. Field names and values are the original API's;
//! everything rje adds is an extra field.

use chrono::{DateTime, Utc};
use rje_domain::{Chunk, Job, JobId, Priority, Status, Stream};
use rje_store::ListedJob;
use serde::{Deserialize, Serialize};

/// A job as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResponse {
    pub id: JobId,
    pub command: String,
    pub timeout: u32,
    pub priority: Priority,
    pub status: Status,
    pub parameters: Option<serde_json::Value>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub task_id: Option<String>,
    pub remote_process_id: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub host: Option<String>,
    pub attempts: u32,
    pub max_retries: u32,
    pub streaming: bool,
    pub cancel_requested: bool,
    /// In lists: `stdout` holds only the last `RJE_LIST_OUTPUT_BYTES` of
    /// the output (get the job, or its logs, for the whole).
    #[serde(default)]
    pub stdout_truncated: bool,
    #[serde(default)]
    pub stderr_truncated: bool,
    /// The size in bytes of the whole of each stream's output (drop markers
    /// included), where the answer knows it: in lists and on a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_bytes: Option<u64>,
}

impl From<ListedJob> for JobResponse {
    fn from(listed: ListedJob) -> Self {
        let (stdout_truncated, stderr_truncated) = (
            listed.truncated(Stream::Stdout),
            listed.truncated(Stream::Stderr),
        );
        Self {
            stdout_truncated,
            stderr_truncated,
            stdout_bytes: listed.output_bytes[0],
            stderr_bytes: listed.output_bytes[1],
            ..Self::from(listed.job)
        }
    }
}

impl From<Job> for JobResponse {
    fn from(job: Job) -> Self {
        Self {
            id: job.id,
            command: job.command,
            timeout: job.timeout,
            priority: job.priority,
            status: job.status,
            parameters: job.parameters,
            stdout: job.stdout,
            stderr: job.stderr,
            created_at: job.created_at,
            modified_at: job.modified_at,
            started_at: job.started_at,
            completed_at: job.completed_at,
            task_id: job.task_id,
            remote_process_id: job.remote_process_id,
            exit_code: job.exit_code,
            signal: job.signal,
            error: job.error,
            host: job.host,
            attempts: job.attempts,
            max_retries: job.max_retries,
            streaming: job.streaming,
            cancel_requested: job.cancel_requested,
            stdout_truncated: false,
            stderr_truncated: false,
            stdout_bytes: None,
            stderr_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobListResponse {
    pub jobs: Vec<JobResponse>,
    pub total_count: u64,
    /// `false` when `total_count` is an estimate: past 10,000 matching jobs
    /// PostgreSQL reports the planner's estimate rather than count them all.
    #[serde(default = "exact")]
    pub total_count_exact: bool,
}

fn exact() -> bool {
    true
}

/// One output chunk as the logs route returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkResponse {
    pub seq: i64,
    pub stream: Stream,
    /// The text, with a drop marker in front when output was dropped here.
    pub log: String,
    pub timestamp: DateTime<Utc>,
    /// Bytes of this stream dropped just before this chunk (over the cap).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_before: u64,
}

fn is_zero(n: &u64) -> bool {
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

/// A WebSocket message. The original's fields are `log`, `status` and
/// `timestamp`; the rest are rje's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsMessage {
    /// `output` or `status`.
    #[serde(rename = "type")]
    pub kind: WsKind,
    /// Output text (one or more whole lines); empty on status messages.
    pub log: String,
    pub status: Status,
    pub timestamp: DateTime<Utc>,
    pub stream: Option<Stream>,
    pub seq: Option<i64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_before: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A message of the all-jobs event stream, `WS /ws/jobs/`.
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
        }
    }
}
