//! Best-effort messages between rje's parts. The store is the truth: a lost
//! message may cost latency, never a job, an output line or a cancel, so
//! every consumer can fall back to the store (a [`Received::Gap`] says when).

mod fanout;
mod memory;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{Chunk, JobId, Status};
use serde::{Deserialize, Serialize};

pub use fanout::{Received, Subscription};
pub use memory::MemoryBus;
pub use redis::RedisBus;

/// Something that happened to one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    /// Output chunks, published only after the store committed them.
    Output { job: JobId, chunks: Arc<[Chunk]> },
    /// The job's status changed.
    Status(StatusEvent),
    /// Events about the job may have been lost (the bus lost its
    /// connection): re-read the store.
    Resync { job: JobId },
}

impl JobEvent {
    pub fn job(&self) -> JobId {
        match self {
            JobEvent::Output { job, .. } | JobEvent::Resync { job } => *job,
            JobEvent::Status(status) => status.job,
        }
    }
}

/// A job's status changed; for a final status, how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub job: JobId,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
    /// The job's host, so that a stream of every job's events can leave
    /// out those a token's scope does not cover.
    #[serde(default)]
    pub host: Option<String>,
    /// The job that runs this one again after its failure
    /// (`retry_on_failure`), for followers to follow on.
    #[serde(default)]
    pub retried_as: Option<JobId>,
}

impl StatusEvent {
    pub fn of(job: &rje_domain::Job) -> Self {
        Self {
            job: job.id,
            status: job.status,
            exit_code: job.exit_code,
            error: job.error.clone(),
            at: job.modified_at,
            host: job.host.clone(),
            retried_as: job.automatic_retry(),
        }
    }
}

/// Every final status goes out through [`Bus::publish_status`] once, from
/// the process that stored it: the one place to count finished jobs and
/// time their runs (`rje_jobs_finished_total`, `rje_job_duration_seconds`).
fn count_finished(job: &rje_domain::Job) {
    if !job.status.is_final() {
        return;
    }
    let host = job.host.clone().unwrap_or_default();
    metrics::counter!(
        "rje_jobs_finished_total",
        "status" => job.status.as_str(),
        "priority" => job.priority.as_str(),
        "host" => host,
    )
    .increment(1);
    if let Some(outcome) = job.outcome {
        metrics::counter!("rje_job_outcomes_total", "outcome" => outcome.as_str()).increment(1);
    }
    if let (Some(started), Some(completed)) = (job.started_at, job.completed_at) {
        let seconds = (completed - started).as_seconds_f64().max(0.0);
        metrics::histogram!("rje_job_duration_seconds", "status" => job.status.as_str())
            .record(seconds);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// The messaging between API processes and workers.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Checks that the bus answers.
    async fn ping(&self) -> Result<(), BusError>;

    /// Publishes an event about a job. Best effort: failures are logged,
    /// since every reader can recover from the store.
    async fn publish(&self, event: JobEvent);

    /// Publishes a job's status as the store now holds it. The one way a
    /// status goes out: call it after the store committed the change, so
    /// that a subscriber who reads the store on hearing it finds it there.
    async fn publish_status(&self, job: &rje_domain::Job) {
        count_finished(job);
        self.publish(JobEvent::Status(StatusEvent::of(job))).await;
    }

    /// Events about one job, from now on.
    async fn subscribe_job(&self, job: JobId) -> Result<Subscription<JobEvent>, BusError>;

    /// Status changes of every job, from now on.
    async fn subscribe_status(&self) -> Result<Subscription<StatusEvent>, BusError>;

    /// Tells idle workers that new work may be waiting.
    async fn announce_work(&self);

    async fn subscribe_work(&self) -> Result<Subscription<()>, BusError>;

    /// Tells whichever worker runs `job` that its cancel was requested (the
    /// store recorded the request first).
    async fn request_cancel(&self, job: JobId);

    async fn subscribe_cancels(&self) -> Result<Subscription<JobId>, BusError>;
}
