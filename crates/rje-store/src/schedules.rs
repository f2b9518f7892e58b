//! Schedules as the store keeps them, the fire that only one process wins,
//! and the housekeeping that keeps the database from growing forever.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{Job, JobId, NewJob, PruneFilter, ScheduleId, Status};

use crate::StoreError;

/// A schedule as stored. Its `definition` is the create-shaped JSON it
/// was made from (the job template included), kept as it was validated:
/// the job is validated again, under the rules and hosts of the day, each
/// time the schedule fires.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub id: ScheduleId,
    pub name: String,
    pub definition: serde_json::Value,
    /// The template's host: what a token's scope is checked against.
    pub host: String,
    pub paused: bool,
    /// Fire times at or before this are handled, and never considered
    /// again: the last one fired, skipped or missed, or the moment the
    /// schedule was created, edited or resumed.
    pub since: DateTime<Utc>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    /// The newest job it fired, and that job's status.
    pub last_job: Option<(JobId, Status)>,
}

/// A schedule to write: made, or replacing one.
#[derive(Debug, Clone)]
pub struct ScheduleWrite<'a> {
    pub name: &'a str,
    pub definition: &'a serde_json::Value,
    pub host: &'a str,
    pub paused: bool,
}

/// A fire time a scheduler reached, and what it asks of the store.
#[derive(Debug, Clone)]
pub struct Fire {
    pub schedule: ScheduleId,
    /// The schedule's `modified_at` as the scheduler read it: a schedule
    /// edited, paused or deleted since is not fired from a stale reading.
    pub read_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
    /// Earlier fire times passed over on the way here (never fired).
    pub missed: u64,
    /// The job to make; `None` records the fire time as missed.
    pub job: Option<NewJob>,
    /// Record a skip instead of a job while a job of the schedule is
    /// Queued or Running (overlap `skip`).
    pub skip_while_active: bool,
    /// Record a skip instead of a job while a job of the schedule waits
    /// Queued (overlap `queue`: at most one job waits, so that a slow
    /// job under a fast schedule never piles up a backlog).
    pub skip_while_waiting: bool,
}

/// What a fire time won records, by the schedule's overlap rule.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recorded<'a> {
    /// A job, this one.
    Fired(&'a NewJob),
    Skipped,
    Missed,
}

impl Recorded<'_> {
    /// The `outcome` of its row in `schedule_fires`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Recorded::Fired(_) => "fired",
            Recorded::Skipped => "skipped",
            Recorded::Missed => "missed",
        }
    }
}

impl Fire {
    /// The statuses (an SQL list) of the schedule's jobs that turn this
    /// fire into a skip; `None` when nothing does.
    pub(crate) fn busy_statuses(&self) -> Option<&'static str> {
        if self.skip_while_active {
            Some("('Queued', 'Running')")
        } else if self.skip_while_waiting {
            Some("('Queued')")
        } else {
            None
        }
    }

    /// What the fire records, `busy` when a job of the schedule is in one
    /// of [`Fire::busy_statuses`].
    pub(crate) fn recorded(&self, busy: bool) -> Recorded<'_> {
        match (&self.job, busy) {
            (None, _) => Recorded::Missed,
            (Some(_), true) => Recorded::Skipped,
            (Some(job), false) => Recorded::Fired(job),
        }
    }
}

/// What became of a [`Fire`].
#[derive(Debug, Clone, PartialEq)]
pub enum FireOutcome {
    /// This process won the fire time and made the job.
    Fired(Box<Job>),
    /// This process won the fire time and recorded a skip: a job of the
    /// schedule was still Queued or Running.
    Skipped,
    /// This process won the fire time and recorded it as missed.
    Missed,
    /// Another process had handled this fire time already.
    Taken,
    /// The schedule was paused, edited or deleted since it was read.
    Stale,
}

/// The schedules' face of the store.
#[async_trait]
pub trait Schedules: Send + Sync + 'static {
    /// [`StoreError::NameTaken`] when the name is.
    async fn create_schedule(
        &self,
        schedule: &ScheduleWrite<'_>,
        created_by: Option<&str>,
    ) -> Result<ScheduleRecord, StoreError>;

    /// A schedule by its id or its name.
    async fn schedule(&self, id_or_name: &str) -> Result<ScheduleRecord, StoreError>;

    /// A page of schedules by name, and how many there are; only those
    /// on `hosts_within` when it is given.
    async fn schedules(
        &self,
        limit: u32,
        offset: u64,
        hosts_within: Option<&[String]>,
    ) -> Result<(Vec<ScheduleRecord>, u64), StoreError>;

    /// Every schedule that is not paused: what a scheduler follows.
    async fn active_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Replaces a schedule's definition and paused state. `since`, when
    /// given, becomes its handled mark (an edit or a resume starts
    /// afresh from now: fire times passed while it was paused are not
    /// missed fires).
    async fn update_schedule(
        &self,
        id: ScheduleId,
        schedule: &ScheduleWrite<'_>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ScheduleRecord, StoreError>;

    /// Pauses or resumes a schedule, and nothing else: an edit made
    /// meanwhile stands. `since` as for [`Schedules::update_schedule`].
    async fn set_paused(
        &self,
        id: ScheduleId,
        paused: bool,
        since: Option<DateTime<Utc>>,
    ) -> Result<ScheduleRecord, StoreError>;

    /// Deletes a schedule; the jobs it fired stay.
    async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError>;

    /// Handles one fire time, once across every process: the fire time's
    /// primary key decides which process's fire counts.
    async fn fire(&self, fire: &Fire) -> Result<FireOutcome, StoreError>;

    /// Forgets the fire records made before `before`; how many.
    async fn prune_fires(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Deleting what is no longer wanted, a batch at a time, and the chores
/// only one process at a time should carry out.
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Deletes at most `batch` finished jobs matching `filter`, oldest
    /// first, with their output and keys; how many. A Queued or Running
    /// job is never deleted.
    async fn prune_finished(&self, filter: &PruneFilter, batch: u32) -> Result<u64, StoreError>;

    /// The completion time of the `keep`-th newest finished job: the jobs
    /// completed before it are the ones past a limit of `keep`. `None`
    /// when there are no more than `keep`.
    async fn finished_cutoff(&self, keep: u64) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Takes or renews the chore `name` for `holder` until `until`,
    /// unless another holder's claim is still live; whether `holder`
    /// holds it now.
    async fn hold_chore(
        &self,
        name: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Lets go of the chore `name` if `holder` holds it, for the next
    /// process to take at once.
    async fn release_chore(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}
