//! Jobs as the API returns them, one at a time and in lists.

use chrono::{DateTime, Utc};
use rje_domain::{
    HostOutcome, Job, JobId, JobParameters, ListedJob, Priority, RunId, ScheduleId, Status, Stream,
};
use serde::{Deserialize, Serialize};

/// A job as the API returns it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[serde(with = "rje_domain::wire_time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rje_domain::wire_time")]
    pub modified_at: DateTime<Utc>,
    #[serde(with = "rje_domain::wire_time::option")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "rje_domain::wire_time::option")]
    pub completed_at: Option<DateTime<Utc>>,
    pub task_id: Option<String>,
    pub remote_process_id: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub host: Option<String>,
    pub attempts: u32,
    /// How many times a worker took the running command up again after
    /// the one following it was lost (durable jobs).
    #[serde(default)]
    pub reattached: u32,
    pub max_retries: u32,
    pub streaming: bool,
    pub cancel_requested: bool,
    /// The name of the token that submitted the job; `null` without tokens
    /// (or for a job older than access control).
    #[serde(default)]
    pub submitted_by: Option<String>,
    /// The name of the token that cancelled it, once one did.
    #[serde(default)]
    pub cancelled_by: Option<String>,
    /// The job this one runs again (`POST /jobs/{id}/retry/`, or an
    /// automatic retry after a failure).
    #[serde(default)]
    pub retry_of: Option<JobId>,
    /// The jobs that run this one again, oldest first.
    #[serde(default)]
    pub retries: Vec<JobId>,
    /// Automatic retries before this job in its chain: 0 for a first run
    /// (and for a run again asked for by hand).
    #[serde(default)]
    pub retry_number: u32,
    /// Whether a failure (a non-zero exit, a signal or the timeout) runs
    /// the job again as a new job, up to `max_retries` times.
    #[serde(default)]
    pub retry_on_failure: bool,
    /// The schedule that fired the job, and the fire time it stands for.
    #[serde(default)]
    pub schedule: Option<ScheduleId>,
    #[serde(default, with = "rje_domain::wire_time::option")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The run this job is one host's part of (`POST /runs/`).
    #[serde(default)]
    pub run: Option<RunId>,
    /// How the job ended, as an operator reads it; null until it is final.
    #[serde(default)]
    pub outcome: Option<HostOutcome>,
    /// In lists: `stdout` holds only the last `RJE_LIST_OUTPUT_BYTES` of
    /// the output (get the job, or its logs, for the whole).
    #[serde(default)]
    pub stdout_truncated: bool,
    #[serde(default)]
    pub stderr_truncated: bool,
    /// The size in bytes of what is stored of each stream's output (at most
    /// the cap, plus the drop marker, which is counted), where the answer
    /// knows it: in lists and on a job. Not the size of all the command
    /// printed: the marker states what was dropped.
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
            parameters: job.parameters.map(JobParameters::into_json),
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
            reattached: job.reattached,
            max_retries: job.max_retries,
            streaming: job.streaming,
            cancel_requested: job.cancel_requested,
            submitted_by: job.submitted_by,
            cancelled_by: job.cancelled_by,
            retry_of: job.lineage.retry_of,
            retries: job.lineage.retries,
            retry_number: job.lineage.retry_number,
            retry_on_failure: job.lineage.retry_on_failure,
            schedule: job.lineage.schedule,
            scheduled_for: job.lineage.scheduled_for,
            run: job.lineage.run,
            outcome: job.outcome,
            stdout_truncated: false,
            stderr_truncated: false,
            stdout_bytes: None,
            stderr_bytes: None,
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobListResponse {
    pub jobs: Vec<JobResponse>,
    pub total_count: u64,
    /// `false` when `total_count` is an estimate: past 10,000 matching jobs
    /// a list does not count them all. PostgreSQL reports the planner's
    /// estimate; SQLite the share of its newest jobs that match, scaled to
    /// the table (for a text search, 10,000: a lower bound).
    #[serde(default = "exact")]
    pub total_count_exact: bool,
    /// The next page: pass it back as `cursor` (with the same filters).
    /// It starts just past this page's last job through an index,
    /// whatever the depth, where an `offset` steps over every job before
    /// the page. `null` on the last page. Opaque: its text may change
    /// between versions.
    #[serde(default)]
    pub next: Option<String>,
}

fn exact() -> bool {
    true
}

/// `GET /jobs/stats/`: how many jobs there are in each status, and the
/// queue and the running jobs by priority.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatsResponse {
    pub by_status: StatusCounts,
    /// Jobs waiting for a worker, by priority.
    pub queued_by_priority: PriorityCounts,
    /// Jobs running now, by priority.
    pub running_by_priority: PriorityCounts,
    /// Every job in the store.
    pub total: u64,
}

/// Jobs per status.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(non_snake_case)] // The keys are the status values themselves.
pub struct StatusCounts {
    pub Queued: u64,
    pub Running: u64,
    pub Success: u64,
    pub Failed: u64,
    pub Cancelled: u64,
}

/// Jobs per priority.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(non_snake_case)] // The keys are the priority values themselves.
pub struct PriorityCounts {
    pub High: u64,
    pub Medium: u64,
    pub Low: u64,
}

impl StatusCounts {
    pub fn slot(&mut self, status: Status) -> &mut u64 {
        match status {
            Status::Queued => &mut self.Queued,
            Status::Running => &mut self.Running,
            Status::Success => &mut self.Success,
            Status::Failed => &mut self.Failed,
            Status::Cancelled => &mut self.Cancelled,
        }
    }
}

impl PriorityCounts {
    pub fn slot(&mut self, priority: Priority) -> &mut u64 {
        match priority {
            Priority::High => &mut self.High,
            Priority::Medium => &mut self.Medium,
            Priority::Low => &mut self.Low,
        }
    }
}
