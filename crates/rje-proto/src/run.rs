//! Runs as clients start and read them, and the messages of a run's
//! WebSocket (`/ws/runs/{id}/`).

use chrono::{DateTime, Utc};
use rje_domain::{Chunk, HostOutcome, Job, JobId, Priority, Run, RunId, RunTally, Status, Stream};
use serde::{Deserialize, Serialize};

use crate::job::JobResponse;
use crate::request::Parameters;

/// `POST /runs/`: the job fields of `POST /jobs/` (no `host`: the target
/// names the hosts), a target (`hosts` or `labels`, not both) and the
/// controls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 65536,
            pattern = r"^[^\x00]*[^\x00\s][^\x00]*$"
        )
    )]
    pub command: String,
    /// The hosts to run on, by name (from the hosts file, or `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub hosts: Option<Vec<String>>,
    /// Every host carrying all of these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub labels: Option<Vec<String>>,
    /// Hosts running at once; 10 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub max_parallel: Option<u32>,
    /// Failed hosts tolerated: a count (`3`) or a share of the hosts
    /// (`"10%"`). One more, and the hosts not yet started are Skipped.
    /// No limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>, example = "10%"))]
    pub max_failures: Option<serde_json::Value>,
    /// `max_failures: 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on_first_failure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604800))]
    pub timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// Retries of a host that could not be reached; 0 when absent (an
    /// unreachable host is reported at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10))]
    pub max_retries: Option<u32>,
}

/// How many of a run's jobs have each outcome, and how many are still
/// queued or running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "PascalCase")]
pub struct RunCounts {
    pub success: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub unreachable: u64,
    pub auth_failed: u64,
    pub cancelled: u64,
    pub skipped: u64,
    pub queued: u64,
    pub running: u64,
}

impl RunCounts {
    pub fn of(tally: &RunTally) -> Self {
        let count = |outcome| tally.count(outcome);
        Self {
            success: count(HostOutcome::Success),
            failed: count(HostOutcome::Failed),
            timed_out: count(HostOutcome::TimedOut),
            unreachable: count(HostOutcome::Unreachable),
            auth_failed: count(HostOutcome::AuthFailed),
            cancelled: count(HostOutcome::Cancelled),
            skipped: count(HostOutcome::Skipped),
            queued: tally.queued,
            running: tally.running,
        }
    }

    /// The number with `outcome`.
    pub fn get(&self, outcome: HostOutcome) -> u64 {
        match outcome {
            HostOutcome::Success => self.success,
            HostOutcome::Failed => self.failed,
            HostOutcome::TimedOut => self.timed_out,
            HostOutcome::Unreachable => self.unreachable,
            HostOutcome::AuthFailed => self.auth_failed,
            HostOutcome::Cancelled => self.cancelled,
            HostOutcome::Skipped => self.skipped,
        }
    }

    /// Every host that has not succeeded, once final.
    pub fn not_succeeded(&self) -> u64 {
        HostOutcome::ALL
            .iter()
            .filter(|outcome| **outcome != HostOutcome::Success)
            .map(|outcome| self.get(*outcome))
            .sum()
    }
}

/// A run as the API returns it. `jobs` holds one job per host, in the
/// order of `hosts`, without their output (read a job for it); a list of
/// runs leaves `jobs` empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunResponse {
    pub id: RunId,
    pub command: String,
    /// Running until every job is final; then Success only if every host
    /// succeeded, Cancelled if the run was cancelled, else Failed.
    pub status: Status,
    /// The hosts the target resolved to, in the order their jobs queue.
    pub hosts: Vec<String>,
    /// The labels the run was started with, if it named labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    pub counts: RunCounts,
    pub jobs: Vec<JobResponse>,
    pub max_parallel: u32,
    /// As asked: a count, a share such as `"10%"`, or null for no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub max_failures: Option<serde_json::Value>,
    #[serde(with = "rje_domain::wire_time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rje_domain::wire_time::option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Seconds from the run's creation to its end, or to now while it runs.
    pub duration: f64,
    /// The run this one runs again (`POST /runs/{id}/retry/`).
    pub retry_of: Option<RunId>,
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default)]
    pub submitted_by: Option<String>,
    #[serde(default)]
    pub cancelled_by: Option<String>,
}

impl RunResponse {
    pub fn new(run: &Run, jobs: Vec<Job>, now: DateTime<Utc>) -> Self {
        let completed_at = run.completed_at();
        let end = completed_at.unwrap_or(now);
        Self {
            id: run.id,
            command: run.command.clone(),
            status: run.status(),
            hosts: run.hosts.clone(),
            labels: match &run.target {
                rje_domain::Target::Labels(labels) => Some(labels.clone()),
                rje_domain::Target::Hosts(_) => None,
            },
            counts: RunCounts::of(&run.tally),
            jobs: jobs.into_iter().map(JobResponse::from).collect(),
            max_parallel: run.max_parallel,
            max_failures: run.max_failures.map(|limit| match limit {
                rje_domain::FailureLimit::Count(count) => count.into(),
                rje_domain::FailureLimit::Percent(_) => limit.to_string().into(),
            }),
            created_at: run.created_at,
            completed_at,
            duration: (end - run.created_at).as_seconds_f64().max(0.0),
            retry_of: run.retry_of,
            cancel_requested: run.cancel_requested,
            submitted_by: run.submitted_by.clone(),
            cancelled_by: run.cancelled_by.clone(),
        }
    }
}

/// `GET /runs/`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunListResponse {
    pub runs: Vec<RunResponse>,
    pub total_count: u64,
}

/// A message of a run's WebSocket, `WS /ws/runs/{id}/`. First a `job`
/// message for every job as it stands and a `run` message; then a `job`
/// message whenever a job's status changes, `output` messages (with
/// `?output=true`) and a `run` message whenever the counts change. The
/// last message is the `run` message with the final status, then a
/// normal close (1000).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RunMessage {
    /// One host's job changed status.
    Job {
        job_id: JobId,
        host: String,
        status: Status,
        /// Set once the job is final.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<HostOutcome>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(with = "rje_domain::wire_time")]
        timestamp: DateTime<Utc>,
    },
    /// Output of one host's job: one or more whole lines.
    Output {
        job_id: JobId,
        host: String,
        stream: Stream,
        log: String,
        seq: i64,
        #[serde(default, skip_serializing_if = "crate::logs::is_zero")]
        dropped_before: u64,
        #[serde(with = "rje_domain::wire_time")]
        timestamp: DateTime<Utc>,
    },
    /// The run's status and counts.
    Run {
        status: Status,
        counts: RunCounts,
        #[serde(default, with = "rje_domain::wire_time::option")]
        completed_at: Option<DateTime<Utc>>,
    },
}

impl RunMessage {
    pub fn job(job: &Job) -> Self {
        Self::Job {
            job_id: job.id,
            host: job.host.clone().unwrap_or_default(),
            status: job.status,
            outcome: job.outcome,
            exit_code: job.exit_code,
            error: job.error.clone(),
            timestamp: job.modified_at,
        }
    }

    pub fn output(job: JobId, host: &str, chunk: &Chunk) -> Self {
        Self::Output {
            job_id: job,
            host: host.to_owned(),
            stream: chunk.stream,
            log: chunk.display_text().into_owned(),
            seq: chunk.seq,
            dropped_before: chunk.dropped_before,
            timestamp: chunk.timestamp,
        }
    }

    pub fn run(run: &Run) -> Self {
        Self::Run {
            status: run.status(),
            counts: RunCounts::of(&run.tally),
            completed_at: run.completed_at(),
        }
    }
}
