//! A job: its identity, priority and status, the lifecycle rules that move
//! it from Queued to a final state, and how its command ended.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::parameters::JobParameters;
use crate::run::{HostOutcome, StartCause};

/// An identity that is a UUID: made anywhere without coordination, v7 so
/// that new ids sort by creation time (which keeps index inserts local).
macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new id, never seen before. Not `Default`: a default that
            /// is a different random id each time would surprise.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses an id from a URL segment; `None` for anything that is
            /// not a UUID.
            pub fn parse(text: &str) -> Option<Self> {
                Uuid::parse_str(text).ok().map(Self)
            }

            /// The UUID, as a store keeps it.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        /// An id as a store kept it.
        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}
pub(crate) use uuid_id;

uuid_id!(
    /// A job's identity. UUIDs, as in the original system. A malformed id in
    /// a route is answered with 404, like any unknown job.
    JobId
);

/// Identifies one worker for the lifetime of its process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl WorkerId {
    pub fn generate() -> Self {
        Self(format!("worker-{}", Uuid::new_v4().simple()))
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `task_id` of one claim of a job (the original's field): the worker
/// that claimed it and the attempt, `worker-…/3`. The stores build the
/// same text in SQL as they claim.
pub fn task_id(worker: &WorkerId, attempt: u32) -> String {
    format!("{worker}/{attempt}")
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $(stringify!($variant) => Ok($name::$variant),)+
                    _ => Err(format!(
                        "must be one of {}",
                        [$(stringify!($variant)),+].join(", ")
                    )),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Where a job is in its life. The names are the original API's values.
    Status { Queued, Running, Success, Failed, Cancelled }
}

string_enum! {
    /// Queue order: High before Medium before Low.
    Priority { Low, Medium, High }
}

impl Status {
    /// A finished job never changes state again.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Success | Status::Failed | Status::Cancelled)
    }

    /// Only a job nobody has picked up yet may be edited.
    pub fn is_editable(self) -> bool {
        self == Status::Queued
    }

    /// A running job must be cancelled first: deleting it would orphan its
    /// process.
    pub fn is_deletable(self) -> bool {
        self != Status::Running
    }
}

impl Priority {
    /// Rank stored in the queue index; higher runs first.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Low => 1,
            Priority::Medium => 2,
            Priority::High => 3,
        }
    }

    pub fn from_rank(rank: i64) -> Option<Self> {
        match rank {
            1 => Some(Priority::Low),
            2 => Some(Priority::Medium),
            3 => Some(Priority::High),
            _ => None,
        }
    }
}

/// A job as stored: the original API's fields plus rje's additions.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub command: String,
    pub timeout: u32,
    pub priority: Priority,
    pub status: Status,
    pub parameters: Option<JobParameters>,
    /// `None` until the job has run; while it runs, the output so far.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub task_id: Option<String>,
    /// The id of the command's process group on its host.
    pub remote_process_id: Option<String>,
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when one did.
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub host: Option<String>,
    /// How many times a worker has claimed the job; also the fencing token
    /// every worker write carries.
    pub attempts: u32,
    /// How many times a worker took the running command up again after
    /// the one following it was lost (durable jobs).
    pub reattached: u32,
    pub max_retries: u32,
    pub streaming: bool,
    /// A cancel was asked for while the job ran: being carried out while it
    /// runs, and kept once it ended (it may have ended otherwise first).
    pub cancel_requested: bool,
    /// The name of the token that submitted the job; `None` without tokens.
    pub submitted_by: Option<String>,
    /// The name of the token that cancelled it, once one did.
    pub cancelled_by: Option<String>,
    /// A retried job is not claimed before this time.
    pub run_at: DateTime<Utc>,
    /// Where it comes from, and whether a failure runs it again.
    pub lineage: crate::Lineage,
    /// How it ended, as an operator reads it; `None` until it is final.
    pub outcome: Option<crate::HostOutcome>,
}

/// A job as a list shows it: a request costs the same whatever its jobs
/// printed.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedJob {
    /// The job, whose `stdout` and `stderr` hold at most the last bytes
    /// asked for of each stream (drop markers included), or `None`.
    pub job: Job,
    /// The size in bytes of each stream's whole output (stdout, stderr) as
    /// the job shows it, drop markers included; `None` when the job has
    /// no output (it never ran).
    pub output_bytes: [Option<u64>; 2],
}

impl ListedJob {
    /// Whether `stream`'s output was cut to fit.
    pub fn truncated(&self, stream: crate::Stream) -> bool {
        let shown = match stream {
            crate::Stream::Stdout => self.job.stdout.as_deref(),
            crate::Stream::Stderr => self.job.stderr.as_deref(),
        };
        match (self.output_bytes[stream.index()], shown) {
            (Some(total), Some(shown)) => total > shown.len() as u64,
            _ => false,
        }
    }
}

/// The error a job gets when the worker that ran it vanished.
pub const WORKER_LOST: &str = "worker lost";

/// The error a durable job gets when its machine booted again while its
/// command ran: the command is gone, and is never run again.
pub const HOST_REBOOTED: &str = "the host rebooted while the command ran";

/// The error a job shows that was queued again because its worker was lost
/// before its command started.
pub const REQUEUED_AFTER_LOSS: &str = "worker lost before the command started; queued again";

/// A lifecycle step the job's status does not allow: an edit of a job
/// that is not queued, a delete of a running job, a cancel of a finished
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("job is {status}")]
pub struct LifecycleConflict {
    /// The status that refused the step.
    pub status: Status,
}

/// What a cancel does to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelDecision {
    /// The job never ran (it is queued): it ends now in this state, and
    /// never runs. Its output is not copied: it has none.
    CancelNow(Settlement),
    /// The job runs: the request is recorded (`cancel_requested`) for its
    /// worker to carry out.
    Request,
}

/// What becomes of a running job whose attempt ended without an outcome of
/// its command: its worker vanished, or the command could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostJob {
    /// The command never ran: it is safe to run it (again) later.
    Requeue,
    /// The job ends here: for a lost worker, because a command that may
    /// have had effects is never silently run twice.
    Settle(Settlement),
}

impl Job {
    /// The lifecycle rule for an edit: only a job nobody has picked up yet
    /// may be edited.
    pub fn when_edited(&self) -> Result<(), LifecycleConflict> {
        // A run's job is the run's request on its host: edited alone it
        // would no longer be what the run says it ran.
        if self.status.is_editable() && self.lineage.run.is_none() {
            Ok(())
        } else {
            Err(self.conflict())
        }
    }

    /// The lifecycle rule for a delete: anything but a running job, whose
    /// process deleting would orphan.
    pub fn when_deleted(&self) -> Result<(), LifecycleConflict> {
        // A run's job is one host's part of what the run reports: deleted
        // alone, the run would tell of a host as if it never had one.
        // Retention deletes a run's jobs together, once the run ended.
        if self.status.is_deletable() && self.lineage.run.is_none() {
            Ok(())
        } else {
            Err(self.conflict())
        }
    }

    /// The lifecycle rule for a cancel: a queued job is Cancelled at once
    /// (with no exit code and no signal, since it never ran; an error a
    /// requeue gave it stays), a running one gets the request, a finished
    /// one refuses.
    pub fn when_cancelled(&self) -> Result<CancelDecision, LifecycleConflict> {
        match self.status {
            Status::Queued => Ok(CancelDecision::CancelNow(Settlement {
                status: Status::Cancelled,
                exit_code: None,
                signal: None,
                error: self.error.clone(),
                outcome: HostOutcome::Cancelled,
            })),
            Status::Running => Ok(CancelDecision::Request),
            Status::Success | Status::Failed | Status::Cancelled => Err(self.conflict()),
        }
    }

    fn conflict(&self) -> LifecycleConflict {
        LifecycleConflict {
            status: self.status,
        }
    }

    /// The lifecycle rule for a job whose worker was lost.
    pub fn when_worker_lost(&self) -> LostJob {
        if self.cancel_requested {
            return LostJob::Settle(Settlement {
                status: Status::Cancelled,
                exit_code: None,
                signal: None,
                error: Some(format!("{WORKER_LOST}; {KILL_UNCONFIRMED}")),
                outcome: HostOutcome::Cancelled,
            });
        }
        if self.started_at.is_none() {
            return LostJob::Requeue;
        }
        LostJob::Settle(Settlement {
            status: Status::Failed,
            exit_code: None,
            signal: None,
            error: Some(WORKER_LOST.to_owned()),
            outcome: HostOutcome::Failed,
        })
    }

    /// The lifecycle rule for a job whose command is proven never to have
    /// started (its machine found its launch unclaimed and claimed it, so
    /// it never will): queued again whatever its retries, since nothing
    /// ran and nothing failed; Cancelled if a cancel came meanwhile, and
    /// nothing is left to kill.
    pub fn when_never_started(&self) -> LostJob {
        if self.cancel_requested {
            return LostJob::Settle(
                Outcome::Cancelled {
                    kill: ExitReport::Confirmed,
                }
                .settle(),
            );
        }
        LostJob::Requeue
    }

    /// Whether an infrastructure failure on the current attempt leaves a
    /// retry: `max_retries` counts retries, so attempts go up to one more.
    pub fn may_retry(&self) -> bool {
        !self.cancel_requested && self.attempts <= self.max_retries
    }

    /// The lifecycle rule for a command that could not start because of
    /// `error`: another attempt later, or the end of the job (Cancelled if
    /// a cancel came meanwhile, Failed with the error when out of retries,
    /// its outcome told by `cause`).
    pub fn when_start_failed(&self, error: &str, cause: StartCause) -> LostJob {
        if self.may_retry() {
            return LostJob::Requeue;
        }
        let outcome = if self.cancel_requested {
            Outcome::Cancelled {
                kill: ExitReport::Confirmed,
            }
        } else {
            Outcome::NotStarted {
                message: error.to_owned(),
                cause,
            }
        };
        LostJob::Settle(outcome.settle())
    }
}

/// Whether the process group of a killed command is known to be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReport {
    /// The group was checked and no process of it is left.
    Confirmed,
    /// Some process of the group could not be confirmed dead.
    Unconfirmed,
}

/// How a command's run ended, as the worker reports it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited by itself with this code.
    Exited { code: i32 },
    /// The command was ended by a signal nobody in rje sent.
    Signaled { signal: i32 },
    /// rje killed it because it ran past its timeout.
    TimedOut { after_secs: u32, kill: ExitReport },
    /// rje killed it on request.
    Cancelled { kill: ExitReport },
    /// Running the command failed after it started, or before it could start
    /// with no retries left.
    Error { message: String },
    /// The command could not start, for this cause, and no retry is left.
    NotStarted { message: String, cause: StartCause },
}

/// What an [`Outcome`] means for the stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    /// How the job ended, as an operator reads it.
    pub outcome: HostOutcome,
}

const KILL_UNCONFIRMED: &str = "the process group could not be confirmed gone";

/// How the `error` of a timed-out job begins; clients match on it (the CLI
/// exits 124), so it is part of the contract.
pub const TIMED_OUT_PREFIX: &str = "timed out after ";

/// Whether a job's `error` says it timed out.
pub fn is_timeout_error(error: &str) -> bool {
    error.starts_with(TIMED_OUT_PREFIX)
}

impl Outcome {
    /// How a command reads whose end only a shell's `$?` tells (a
    /// supervisor on an SSH host): past 128, the signal that killed it, as
    /// shells report one; a command that exits 130 on its own reads the
    /// same.
    pub fn of_shell_status(status: i32) -> Self {
        match status {
            129..=192 => Outcome::Signaled {
                signal: status - 128,
            },
            code => Outcome::Exited { code },
        }
    }

    /// How a command that ended by itself reads: its exit code, else the
    /// signal that ended it.
    pub fn of_exit(code: Option<i32>, signal: Option<i32>) -> Self {
        match (code, signal) {
            (Some(code), _) => Outcome::Exited { code },
            (None, Some(signal)) => Outcome::Signaled { signal },
            (None, None) => Outcome::Error {
                message: "the command ended with neither an exit code nor a signal".into(),
            },
        }
    }

    /// The rules for the final state: Success exactly when the exit code is
    /// 0; output on stderr does not matter.
    pub fn settle(&self) -> Settlement {
        let unconfirmed = |kill: &ExitReport| match kill {
            ExitReport::Confirmed => None,
            ExitReport::Unconfirmed => Some(KILL_UNCONFIRMED),
        };
        match self {
            Outcome::Exited { code } => Settlement {
                status: if *code == 0 {
                    Status::Success
                } else {
                    Status::Failed
                },
                exit_code: Some(*code),
                signal: None,
                error: None,
                outcome: if *code == 0 {
                    HostOutcome::Success
                } else {
                    HostOutcome::Failed
                },
            },
            Outcome::Signaled { signal } => Settlement {
                status: Status::Failed,
                exit_code: None,
                signal: Some(*signal),
                error: Some(format!("killed by signal {signal}")),
                outcome: HostOutcome::Failed,
            },
            Outcome::TimedOut { after_secs, kill } => Settlement {
                status: Status::Failed,
                exit_code: None,
                signal: None,
                error: Some(match unconfirmed(kill) {
                    None => format!("{TIMED_OUT_PREFIX}{after_secs} s"),
                    Some(note) => format!("{TIMED_OUT_PREFIX}{after_secs} s; {note}"),
                }),
                outcome: HostOutcome::TimedOut,
            },
            Outcome::Cancelled { kill } => Settlement {
                status: Status::Cancelled,
                exit_code: None,
                signal: None,
                error: unconfirmed(kill).map(str::to_owned),
                outcome: HostOutcome::Cancelled,
            },
            Outcome::Error { message } => Settlement {
                status: Status::Failed,
                exit_code: None,
                signal: None,
                error: Some(message.clone()),
                outcome: HostOutcome::Failed,
            },
            Outcome::NotStarted { message, cause } => Settlement {
                status: Status::Failed,
                exit_code: None,
                signal: None,
                error: Some(message.clone()),
                outcome: cause.outcome(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_reads_as_its_code_else_its_signal() {
        assert_eq!(Outcome::of_exit(Some(3), None), Outcome::Exited { code: 3 });
        assert_eq!(
            Outcome::of_exit(None, Some(9)),
            Outcome::Signaled { signal: 9 }
        );
        assert!(matches!(
            Outcome::of_exit(None, None),
            Outcome::Error { .. }
        ));
    }

    #[test]
    fn shell_statuses_past_128_are_signals() {
        assert_eq!(Outcome::of_shell_status(0), Outcome::Exited { code: 0 });
        assert_eq!(Outcome::of_shell_status(127), Outcome::Exited { code: 127 });
        assert_eq!(
            Outcome::of_shell_status(143),
            Outcome::Signaled { signal: 15 }
        );
        assert_eq!(Outcome::of_shell_status(255), Outcome::Exited { code: 255 });
    }

    #[test]
    fn names_round_trip_as_the_original_api_spells_them() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(*status));
        }
        for priority in Priority::ALL {
            assert_eq!(priority.as_str().parse::<Priority>(), Ok(*priority));
            assert_eq!(Priority::from_rank(priority.rank()), Some(*priority));
        }
        assert_eq!(
            serde_json::to_string(&Status::Queued).unwrap(),
            "\"Queued\""
        );
        assert!("queued".parse::<Status>().is_err());
        assert!("Urgent".parse::<Priority>().unwrap_err().contains("High"));
    }

    #[test]
    fn priorities_rank_high_first() {
        assert!(Priority::High.rank() > Priority::Medium.rank());
        assert!(Priority::Medium.rank() > Priority::Low.rank());
    }

    #[test]
    fn only_exit_code_zero_succeeds() {
        assert_eq!(Outcome::Exited { code: 0 }.settle().status, Status::Success);
        let failed = Outcome::Exited { code: 3 }.settle();
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.exit_code, Some(3));
    }

    #[test]
    fn timeout_and_cancel_explain_themselves() {
        let timed_out = Outcome::TimedOut {
            after_secs: 5,
            kill: ExitReport::Confirmed,
        }
        .settle();
        assert_eq!(timed_out.status, Status::Failed);
        assert_eq!(timed_out.error.as_deref(), Some("timed out after 5 s"));
        assert!(is_timeout_error(timed_out.error.as_deref().unwrap()));
        assert!(!is_timeout_error("worker lost"));

        let cancelled = Outcome::Cancelled {
            kill: ExitReport::Unconfirmed,
        }
        .settle();
        assert_eq!(cancelled.status, Status::Cancelled);
        assert!(cancelled.error.unwrap().contains("could not be confirmed"));
    }

    #[test]
    fn state_rules() {
        assert!(Status::Queued.is_editable());
        assert!(!Status::Running.is_editable());
        assert!(!Status::Running.is_deletable());
        assert!(Status::Failed.is_deletable());
        assert!(Status::Cancelled.is_final());
        assert!(!Status::Queued.is_final());
    }

    fn running_job() -> Job {
        let now = Utc::now();
        Job {
            id: JobId::new(),
            command: "true".into(),
            timeout: 60,
            priority: Priority::Medium,
            status: Status::Running,
            parameters: None,
            stdout: None,
            stderr: None,
            created_at: now,
            modified_at: now,
            started_at: None,
            completed_at: None,
            task_id: None,
            remote_process_id: None,
            exit_code: None,
            signal: None,
            error: None,
            host: None,
            attempts: 1,
            reattached: 0,
            max_retries: 3,
            streaming: false,
            cancel_requested: false,
            submitted_by: None,
            cancelled_by: None,
            run_at: now,
            lineage: crate::Lineage::default(),
            outcome: None,
        }
    }

    #[test]
    fn a_lost_job_runs_again_only_if_it_never_started() {
        let mut job = running_job();
        assert_eq!(job.when_worker_lost(), LostJob::Requeue);
        job.started_at = Some(Utc::now());
        let LostJob::Settle(settlement) = job.when_worker_lost() else {
            panic!("a started job must not be requeued");
        };
        assert_eq!(settlement.status, Status::Failed);
        assert_eq!(settlement.error.as_deref(), Some(WORKER_LOST));
        job.cancel_requested = true;
        let LostJob::Settle(settlement) = job.when_worker_lost() else {
            panic!("a cancelled job must not be requeued");
        };
        assert_eq!(settlement.status, Status::Cancelled);
    }

    #[test]
    fn a_job_that_never_started_is_queued_again_whatever_its_retries() {
        let mut job = running_job();
        job.started_at = Some(Utc::now());
        job.attempts = 9;
        assert_eq!(job.when_never_started(), LostJob::Requeue);
        job.cancel_requested = true;
        let LostJob::Settle(settlement) = job.when_never_started() else {
            panic!("a cancelled job is not queued again");
        };
        assert_eq!(settlement.status, Status::Cancelled);
    }

    #[test]
    fn a_start_failure_retries_then_fails_or_is_cancelled() {
        let mut job = running_job();
        assert_eq!(
            job.when_start_failed("refused", StartCause::Other),
            LostJob::Requeue
        );
        job.attempts = 4;
        let LostJob::Settle(settlement) = job.when_start_failed("refused", StartCause::Other)
        else {
            panic!("out of retries");
        };
        assert_eq!(settlement.status, Status::Failed);
        assert_eq!(settlement.error.as_deref(), Some("refused"));
        job.cancel_requested = true;
        let LostJob::Settle(settlement) = job.when_start_failed("refused", StartCause::Other)
        else {
            panic!("cancelled");
        };
        assert_eq!(settlement.status, Status::Cancelled);
    }

    #[test]
    fn retries_stop_after_max_retries() {
        let mut job = running_job();
        job.max_retries = 2;
        job.attempts = 2;
        assert!(job.may_retry());
        job.attempts = 3;
        assert!(!job.may_retry());
        job.attempts = 1;
        job.cancel_requested = true;
        assert!(!job.may_retry());
    }

    fn job_in(status: Status) -> Job {
        Job {
            status,
            ..running_job()
        }
    }

    #[test]
    fn only_a_queued_job_may_be_edited() {
        for status in Status::ALL {
            let decision = job_in(*status).when_edited();
            match status {
                Status::Queued => assert_eq!(decision, Ok(())),
                _ => assert_eq!(decision, Err(LifecycleConflict { status: *status })),
            }
        }
    }

    #[test]
    fn every_job_but_a_running_one_may_be_deleted() {
        for status in Status::ALL {
            let decision = job_in(*status).when_deleted();
            match status {
                Status::Running => assert_eq!(
                    decision,
                    Err(LifecycleConflict {
                        status: Status::Running
                    })
                ),
                _ => assert_eq!(decision, Ok(())),
            }
        }
    }

    #[test]
    fn a_cancel_ends_a_queued_job_asks_a_running_one_and_refuses_the_rest() {
        for status in Status::ALL {
            let mut job = job_in(*status);
            job.error = Some(REQUEUED_AFTER_LOSS.to_owned());
            let decision = job.when_cancelled();
            match status {
                Status::Queued => assert_eq!(
                    decision,
                    Ok(CancelDecision::CancelNow(Settlement {
                        status: Status::Cancelled,
                        exit_code: None,
                        signal: None,
                        error: Some(REQUEUED_AFTER_LOSS.to_owned()),
                        outcome: HostOutcome::Cancelled,
                    }))
                ),
                Status::Running => {
                    assert_eq!(decision, Ok(CancelDecision::Request));
                    job.cancel_requested = true;
                    assert_eq!(
                        job.when_cancelled(),
                        Ok(CancelDecision::Request),
                        "asking again changes nothing"
                    );
                }
                _ => assert_eq!(decision, Err(LifecycleConflict { status: *status })),
            }
        }
    }

    #[test]
    fn a_conflict_names_the_status() {
        assert_eq!(
            LifecycleConflict {
                status: Status::Running
            }
            .to_string(),
            "job is Running"
        );
    }

    #[test]
    fn a_task_id_names_the_worker_and_the_attempt() {
        assert_eq!(task_id(&WorkerId("worker-a".into()), 3), "worker-a/3");
    }

    #[test]
    fn malformed_ids_are_rejected() {
        assert!(JobId::parse("not-a-uuid").is_none());
        let id = JobId::new();
        assert_eq!(JobId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn an_id_round_trips_through_its_uuid() {
        let id = JobId::new();
        assert_eq!(JobId::from(id.as_uuid()), id);
        assert_ne!(JobId::new(), id, "every new id is new");
    }

    #[test]
    fn a_runs_job_is_neither_edited_nor_deleted_alone() {
        let mut job = job_in(Status::Queued);
        job.lineage.run = Some(crate::RunId::new());
        assert!(job.when_edited().is_err(), "the run says what it ran");
        assert!(job.when_deleted().is_err(), "cancel it first");
        assert!(job.when_cancelled().is_ok());
        job.status = Status::Failed;
        assert!(
            job.when_deleted().is_err(),
            "retention deletes a run's jobs together"
        );
        job.lineage.run = None;
        job.status = Status::Queued;
        assert!(job.when_edited().is_ok() && job.when_deleted().is_ok());
    }
}
