//! The store's two faces, `Jobs` for the API and `Queue` for workers, and
//! the values they exchange.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{
    Chunk, Job, JobId, JobPatch, ListCursor, ListQuery, ListedJob, NewJob, Once, Outcome, Priority,
    SortKey, StartCause, Status, Stream, WorkerId,
};

use crate::StoreError;

/// One page of a job list.
#[derive(Debug, Clone)]
pub struct JobPage {
    pub jobs: Vec<ListedJob>,
    /// How many jobs match the filters, across all pages.
    pub total_count: u64,
    /// Whether `total_count` is exact. Past a store's counting limit it is
    /// the query planner's estimate, so that a list never counts millions
    /// of rows.
    pub total_exact: bool,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ListCursor>,
}

impl JobPage {
    /// The page of `query` from the rows read for it with their row keys:
    /// up to one row more than the page, which only says that a next page
    /// exists.
    pub(crate) fn from_rows(
        mut rows: Vec<(i64, ListedJob)>,
        query: &ListQuery,
        total_count: u64,
        total_exact: bool,
    ) -> Self {
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows.last().filter(|_| more).map(|(pk, last)| ListCursor {
            ordering: query.ordering,
            after: SortKey::of(&last.job, *pk, query.ordering.field),
        });
        JobPage {
            jobs: rows.into_iter().map(|(_, job)| job).collect(),
            total_count,
            total_exact,
            next,
        }
    }
}

/// Jobs in one status at one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveCount {
    pub status: Status,
    pub priority: Priority,
    pub jobs: u64,
}

/// What a cancel did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The job was queued and is now Cancelled; it will never run.
    Cancelled(Job),
    /// The job is running; the request is recorded for its worker to carry
    /// out. The job as it is now.
    Requested(Job),
}

/// A job a worker has just claimed.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job: Job,
    /// The highest output seq already stored for the job; the worker numbers
    /// its chunks from here.
    pub last_seq: i64,
}

/// A running job a worker took up again (see [`Queue::reattach`]).
#[derive(Debug, Clone)]
pub struct Reattached {
    /// The job as the new attempt, and the last output seq stored.
    pub claimed: ClaimedJob,
    /// Per stream (stdout, stderr), the byte offset in the command's
    /// output file just past the last chunk stored: where to read on.
    pub offsets: [u64; 2],
    /// The stored chunks in seq order as (seq, stream, bytes, bytes
    /// dropped before it): what the output cap already holds.
    pub stored: Vec<(i64, Stream, u64, u64)>,
}

/// Where a job stands for a worker that found its files (see
/// [`Queue::standings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Running, and a worker's lease on it is live.
    Held,
    /// Running, and nobody's lease is live: a worker may take it up.
    Orphaned,
    /// Settled: its command may not run on.
    Over,
}

/// What became of an attempt to take a job up (see [`Queue::reattach`]).
#[derive(Debug, Clone)]
pub enum TakeUp {
    /// Taken: this worker follows the job now.
    Taken(Box<Reattached>),
    /// Running, and another worker's lease on it is live.
    Held,
    /// Settled: its command may not run on.
    Over,
    /// No such job in this store: its files belong to another store that
    /// shares the state directory (or to one that was wiped), and are
    /// left alone.
    Unknown,
}

/// A worker as it announced itself, with the jobs it holds leases on.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    pub id: WorkerId,
    /// The machine it runs on.
    pub host: String,
    pub concurrency: u32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub jobs: Vec<LeasedJob>,
}

/// A job a worker holds, and the host it runs on (so that a token limited
/// to some hosts is shown only theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedJob {
    pub id: JobId,
    pub host: Option<String>,
}

/// What [`Jobs::create_once`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The key was new: this job was made for it.
    New(Job),
    /// The key had made this job already.
    Replayed(Job),
}

/// A job as [`Queue::finish`] ended it.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The job, its `retries` including the follow-up.
    pub job: Job,
    /// The job that runs it again, queued, when its failure called for one.
    pub follow_up: Option<Job>,
    /// Jobs of the same run skipped because this one's failure took the
    /// run past its failure limit (see [`crate::Runs`]).
    pub skipped: Vec<Job>,
}

impl Finished {
    /// `job` as it ended, and the job made to run it again, if any.
    pub fn new(mut job: Job, follow_up: Option<Job>) -> Self {
        if let Some(next) = &follow_up {
            job.lineage.retries.push(next.id);
        }
        Self {
            job,
            follow_up,
            skipped: Vec::new(),
        }
    }

    pub fn with_skipped(self, skipped: Vec<Job>) -> Self {
        Self { skipped, ..self }
    }
}

/// What a prune left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Bytes of the stream that remain after the head.
    pub kept: u64,
    /// Bytes dropped that no stored chunk records (when nothing was kept);
    /// the next chunk of the stream must carry them as `dropped_before`.
    pub unrecorded: u64,
}

/// A page of a job's output chunks.
#[derive(Debug, Clone)]
pub struct OutputPage {
    pub chunks: Vec<Chunk>,
}

/// What clients see of the store: jobs to create, read, edit, cancel and
/// delete, their output, and the workers. The API holds only this face.
#[async_trait]
pub trait Jobs: Send + Sync + 'static {
    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create(&self, job: NewJob) -> Result<Job, StoreError>;

    /// Creates `job` once for `once`'s key and owner: a repeat with the
    /// same fingerprint (while the key holds) answers the job the first
    /// made; another fingerprint is [`StoreError::KeyReused`]. Concurrent
    /// requests with one key make one job: the key's primary key decides.
    async fn create_once(&self, job: NewJob, once: &Once) -> Result<Created, StoreError>;

    /// Forgets the idempotency keys made before `before`; how many.
    async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// A job with its output; while it runs, the output so far.
    async fn get(&self, id: JobId) -> Result<Job, StoreError>;

    /// A job without its output (`stdout`/`stderr` are `None`): cheap, for
    /// callers that only need its state.
    async fn get_meta(&self, id: JobId) -> Result<Job, StoreError>;

    /// A page of jobs, each with at most the last `tail_bytes` of each
    /// stream's output (0: none).
    async fn list(&self, query: &ListQuery, tail_bytes: u32) -> Result<JobPage, StoreError>;

    /// One job as a list shows it (see [`Jobs::list`]). With
    /// `tail_bytes` 0 it is the cheap way to learn the size of its output
    /// before reading it chunk by chunk.
    async fn get_listed(&self, id: JobId, tail_bytes: u32) -> Result<ListedJob, StoreError>;

    /// Edits a queued job; [`StoreError::Conflict`] in any other state.
    async fn edit(&self, id: JobId, patch: &JobPatch) -> Result<Job, StoreError>;

    /// Deletes a job that is not running, with its output.
    async fn delete(&self, id: JobId) -> Result<(), StoreError>;

    /// Cancels a queued job at once, or records the request for a running
    /// one. [`StoreError::Conflict`] for a finished job. `by` (a token's
    /// name) is recorded as the job's `cancelled_by`.
    async fn cancel(&self, id: JobId, by: Option<&str>) -> Result<CancelOutcome, StoreError>;

    /// How many jobs are Queued and Running now, by status and priority:
    /// figures that hold for the whole deployment, whichever process asks.
    async fn count_active(&self) -> Result<Vec<ActiveCount>, StoreError>;

    /// How many jobs there are in each status, every status listed (0s
    /// included), in the order of [`Status::ALL`].
    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError>;

    /// How many jobs on `hosts` there are, by status and priority (every
    /// status, not only the active ones): the counts a token whose scope
    /// is `hosts` may see. Only the pairs that have jobs are listed.
    async fn count_within(&self, hosts: &[String]) -> Result<Vec<ActiveCount>, StoreError>;

    /// Workers whose heartbeat is newer than `since`, with their jobs.
    async fn workers(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>, StoreError>;

    /// Output chunks with `seq > since`, oldest first, at most `limit`.
    /// Only chunks of `stream` when it is given: a reader of one stream
    /// never reads the other's text.
    async fn read_output(
        &self,
        id: JobId,
        since: i64,
        limit: u32,
        stream: Option<Stream>,
    ) -> Result<OutputPage, StoreError>;

    /// The last `last` output chunks with `seq > since`, oldest first:
    /// the end of a long output without reading the rest.
    async fn read_output_last(
        &self,
        id: JobId,
        since: i64,
        last: u32,
        stream: Option<Stream>,
    ) -> Result<OutputPage, StoreError>;
}

/// What workers do with the store: claim queued jobs and record what their
/// commands do. Every write carries the attempt number the worker claimed,
/// and is refused with [`StoreError::Fenced`] when the job has moved on, so
/// a stale worker can never overwrite a job.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Claims up to `max` queued jobs due now, highest priority first, first
    /// come first served within a priority, each under a lease of `lease`.
    async fn claim(
        &self,
        worker: &WorkerId,
        max: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Records, *before* the command is launched, that it may have started:
    /// from then on a lost worker's job is failed, never run again, since
    /// a shell command must not silently run twice (unless its machine
    /// later proves that it never started: see
    /// [`Queue::requeue_unstarted`]). `supervised`: the
    /// command runs under a supervisor that outlives the worker, so that
    /// reapers leave the job a while to the workers that can take it up
    /// (see [`Queue::reap_expired`]).
    async fn mark_started(
        &self,
        id: JobId,
        attempt: u32,
        supervised: bool,
    ) -> Result<(), StoreError>;

    /// Appends output chunks, and the command's process (group) id when it
    /// has become known, in one transaction.
    async fn append_output(
        &self,
        id: JobId,
        attempt: u32,
        chunks: &[Chunk],
        process_id: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Drops the oldest output of `stream` after chunk `after_seq` until at
    /// most `keep_bytes` remain, recording the exact count dropped in the
    /// first chunk kept. With `keep_bytes` 0 every chunk after `after_seq`
    /// goes, and the count is returned for the caller to record on the
    /// next chunk it writes.
    async fn prune_output(
        &self,
        id: JobId,
        attempt: u32,
        stream: Stream,
        after_seq: i64,
        keep_bytes: u64,
    ) -> Result<Pruned, StoreError>;

    /// Ends the current attempt with `outcome` (and the process id, if it
    /// was not written yet); the job's `stdout` and `stderr` then hold its
    /// whole (capped) output. Returns the job without its output (up to
    /// twice the cap, which the caller has no use for).
    ///
    /// A job that runs again after this failure
    /// ([`rje_domain::Job::reruns_after_failure`]) gets its follow-up in
    /// the same transaction, due at `rerun_at`: a finish acknowledged is
    /// never a retry lost.
    async fn finish(
        &self,
        id: JobId,
        attempt: u32,
        outcome: &Outcome,
        process_id: Option<&str>,
        rerun_at: DateTime<Utc>,
    ) -> Result<Finished, StoreError>;

    /// Puts a job whose command never started back in the queue, not to be
    /// claimed before `run_at`. A job whose cancel was requested meanwhile
    /// is cancelled instead.
    async fn retry_later(
        &self,
        id: JobId,
        attempt: u32,
        run_at: DateTime<Utc>,
        error: &str,
        cause: StartCause,
    ) -> Result<Finished, StoreError>;

    /// Puts a Running job back in the queue, due now, when its machine has
    /// proven that the command of attempt `attempt` never started and
    /// never will (the worker was lost between the start mark and the
    /// launch, and the launch was claimed from it). Nothing ran, so no
    /// retry is used up, whatever `max_retries`; a job whose cancel was
    /// requested is Cancelled instead.
    ///
    /// Fenced ([`StoreError::Fenced`]) unless the job is still Running at
    /// `attempt` and no lease on it expires at or after `expired_before`:
    /// a job that moved on, or whose worker is alive, is left alone.
    async fn requeue_unstarted(
        &self,
        id: JobId,
        attempt: u32,
        expired_before: DateTime<Utc>,
    ) -> Result<Job, StoreError>;

    /// Extends, in one statement, the worker's leases on `jobs`: those it
    /// follows. A lease of its on any other job lapses, so that a job it let
    /// go (its store failed, or its host could not be reached) is taken up
    /// or settled instead of held for as long as the worker lives. Returns
    /// those of `jobs` whose cancel has been requested, so that a lost
    /// cancel message costs latency, never the cancel.
    async fn renew_leases(
        &self,
        worker: &WorkerId,
        jobs: &[JobId],
        lease: Duration,
    ) -> Result<Vec<JobId>, StoreError>;

    /// Settles running jobs whose lease expired before `before`, by the
    /// lifecycle rules ([`Job::when_worker_lost`]). Returns the jobs as
    /// they are now.
    ///
    /// A job run under a supervisor of its machine (see
    /// [`Queue::mark_started`]) is settled only once its lease expired
    /// before `supervised_before` (earlier): its own machine's workers get
    /// that long to take it up, since no other can.
    async fn reap_expired(
        &self,
        before: DateTime<Utc>,
        supervised_before: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError>;

    /// Takes up a Running job whose lease expired before `expired_before`
    /// (its worker is gone) as a new attempt held by `worker`, so that the
    /// old attempt is fenced, and counts one more re-attach.
    async fn reattach(
        &self,
        id: JobId,
        worker: &WorkerId,
        lease: Duration,
        expired_before: DateTime<Utc>,
    ) -> Result<TakeUp, StoreError>;

    /// Where each of `ids` stands, with a lease that expired before
    /// `expired_before` counted as gone; ids the store does not know are
    /// left out. One query for all the job directories a worker finds.
    async fn standings(
        &self,
        ids: &[JobId],
        expired_before: DateTime<Utc>,
    ) -> Result<Vec<(JobId, Standing)>, StoreError>;

    /// The Running jobs of `hosts` whose command runs under a supervisor
    /// and whose lease expired before `expired_before`, each with its
    /// host: those a worker that reaches one of the hosts may take up (see
    /// [`Queue::reattach`]), once it asked that host whether the command
    /// ever started (see [`Queue::requeue_unstarted`]).
    async fn orphaned_supervised(
        &self,
        hosts: &[String],
        expired_before: DateTime<Utc>,
    ) -> Result<Vec<(JobId, String)>, StoreError>;

    /// Announces a worker, or beats its heartbeat.
    async fn heartbeat(
        &self,
        worker: &WorkerId,
        host: &str,
        concurrency: u32,
    ) -> Result<(), StoreError>;

    /// A worker that stops cleanly says goodbye.
    async fn remove_worker(&self, worker: &WorkerId) -> Result<(), StoreError>;
}

/// Every face: what a backend implements, and what the server that wires
/// the API and the worker together holds.
pub trait JobStore:
    Jobs + Queue + crate::Access + crate::Schedules + crate::Retention + crate::Runs
{
}

impl<T: Jobs + Queue + crate::Access + crate::Schedules + crate::Retention + crate::Runs> JobStore
    for T
{
}
