//! Runs as the store keeps them: the request in a row of its own, the
//! jobs in the jobs table, and the tally read from the jobs, so that a
//! run's status has one truth.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{FailureLimit, HostOutcome, Job, NewRun, Run, RunId, RunTally, Status, Target};

use crate::rows::corrupt;
use crate::{CancelOutcome, StoreError};

/// A run and its jobs, in the order of its hosts.
#[derive(Debug, Clone)]
pub struct RunWithJobs {
    pub run: Run,
    pub jobs: Vec<Job>,
}

/// What a cancel of a run did to each of its jobs that had not ended.
#[derive(Debug, Clone)]
pub struct RunCancel {
    pub run: RunWithJobs,
    pub cancels: Vec<CancelOutcome>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone)]
pub struct RunPage {
    pub runs: Vec<Run>,
    pub total_count: u64,
}

/// Which runs a list shows.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub limit: u32,
    pub offset: u64,
    /// Only runs every host of which is among these (a token's scope);
    /// `None`: every run.
    pub hosts_within: Option<Vec<String>>,
}

#[async_trait]
pub trait Runs: Send + Sync + 'static {
    /// Records the run and queues its jobs, in one transaction.
    async fn create_run(&self, run: &NewRun) -> Result<RunWithJobs, StoreError>;

    async fn get_run(&self, id: RunId) -> Result<RunWithJobs, StoreError>;

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError>;

    /// Records the cancel, ends the run's queued jobs and asks its running
    /// ones to stop (their workers carry it out), in one transaction.
    /// Cancelling a run that has ended is [`StoreError::Conflict`]-free:
    /// nothing is left to cancel, and the answer says so by `cancels`
    /// being empty.
    async fn cancel_run(&self, id: RunId, by: Option<&str>) -> Result<RunCancel, StoreError>;
}

/// The columns of a run row.
pub(crate) const RUN_COLUMNS: &str = "id, command, target, hosts, max_parallel, max_failures, \
    cancel_requested, submitted_by, cancelled_by, retry_of, created_at";

/// How a run's jobs stand, one row per status and outcome: bind the run.
pub(crate) const TALLY_COLUMNS: &str =
    "status, outcome, COUNT(*) AS jobs, MAX(completed_at) AS last_completed_at";

/// The outcomes that count towards `max_failures`, as an SQL list: the
/// enum's own names, so safe as literals.
pub(crate) fn failure_outcomes() -> String {
    let named: Vec<String> = HostOutcome::ALL
        .iter()
        .filter(|outcome| outcome.is_failure())
        .map(|outcome| format!("'{}'", outcome.as_str()))
        .collect();
    format!("({})", named.join(", "))
}

/// The claim's condition on a queued job `q` of a run: its turn has come
/// when fewer than its run's `max_parallel` jobs run or wait ahead of it.
/// Counted by rank over the active jobs of runs only (the partial index
/// `jobs_run_active`), so a batch claim never takes more than the limit:
/// the jobs it takes are all ahead of one another. Jobs of no run pass at
/// once.
pub(crate) const RUN_TURN: &str = "(q.run_id IS NULL OR q.pk IN (\
    SELECT t.pk FROM (SELECT r.pk, r.status, r.run_parallel, ROW_NUMBER() OVER (\
        PARTITION BY r.run_id ORDER BY CASE WHEN r.status = 'Running' THEN 0 ELSE 1 END, r.pk\
    ) AS place FROM jobs r WHERE r.run_id IS NOT NULL AND r.status IN ('Queued', 'Running')) t \
    WHERE t.status = 'Queued' AND t.place <= t.run_parallel))";

/// A run's fields as both stores read them, whatever their column types.
pub(crate) struct RunFields {
    pub id: RunId,
    pub command: String,
    pub target: String,
    pub hosts: String,
    pub max_parallel: i64,
    pub max_failures: Option<String>,
    pub cancel_requested: bool,
    pub submitted_by: Option<String>,
    pub cancelled_by: Option<String>,
    pub retry_of: Option<RunId>,
    pub created_at: DateTime<Utc>,
}

impl RunFields {
    pub(crate) fn into_run(self, tally: RunTally) -> Result<Run, StoreError> {
        let target: Target =
            serde_json::from_str(&self.target).map_err(|_| corrupt("target", &self.target))?;
        let hosts: Vec<String> =
            serde_json::from_str(&self.hosts).map_err(|_| corrupt("hosts", &self.hosts))?;
        let max_failures = self
            .max_failures
            .map(|text| {
                text.parse::<FailureLimit>()
                    .map_err(|_| corrupt("max_failures", text))
            })
            .transpose()?;
        Ok(Run {
            id: self.id,
            command: self.command,
            target,
            hosts,
            max_parallel: u32::try_from(self.max_parallel)
                .map_err(|_| corrupt("max_parallel", self.max_parallel))?,
            max_failures,
            cancel_requested: self.cancel_requested,
            submitted_by: self.submitted_by,
            cancelled_by: self.cancelled_by,
            retry_of: self.retry_of,
            created_at: self.created_at,
            tally,
        })
    }
}

/// A page's runs, each with its tally (a run with no jobs left has an
/// empty one).
pub(crate) fn with_tallies(
    fields: Vec<RunFields>,
    mut tallies: std::collections::HashMap<RunId, RunTally>,
) -> Result<Vec<Run>, StoreError> {
    fields
        .into_iter()
        .map(|run| {
            let tally = tallies.remove(&run.id).unwrap_or_default();
            run.into_run(tally)
        })
        .collect()
}

/// Adds one tally row to `tally`.
pub(crate) fn add_tally_row(
    tally: &mut RunTally,
    status: &str,
    outcome: Option<&str>,
    jobs: i64,
    last_completed_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let status: Status = status.parse().map_err(|_| corrupt("status", status))?;
    let outcome = outcome
        .map(|text| {
            text.parse::<HostOutcome>()
                .map_err(|_| corrupt("outcome", text))
        })
        .transpose()?;
    let jobs = u64::try_from(jobs).map_err(|_| corrupt("jobs", jobs))?;
    tally.add(status, outcome, jobs, last_completed_at);
    Ok(())
}

/// The run's request as the row keeps it: target and hosts as JSON.
pub(crate) fn encoded_request(run: &NewRun) -> Result<(String, String), StoreError> {
    let encode = |value: serde_json::Result<String>| {
        value.map_err(|err| StoreError::Internal(format!("cannot encode a run: {err}")))
    };
    Ok((
        encode(serde_json::to_string(run.target()))?,
        encode(serde_json::to_string(run.hosts()))?,
    ))
}

/// Whether a job just settled may have taken its run past its failure
/// limit: only a failure of a job of a run can.
pub(crate) fn may_exceed_limit(job: &Job) -> Option<RunId> {
    job.outcome
        .is_some_and(HostOutcome::is_failure)
        .then_some(job.lineage.run)
        .flatten()
}
