//! The domain of rje: what a job is, which states it may move through, and
//! every rule about input and output. Nothing here does I/O, so every rule
//! can be unit-tested and shared by the store, the worker and the API.

mod access;
mod cursor;
mod error;
mod host_status;
mod hosts;
mod idempotency;
mod job;
mod limits;
mod lineage;
mod list;
mod new_job;
mod output;
mod parameters;
mod patch;
mod retention;
mod retry;
mod run;
mod schedule;
pub mod wire_time;

pub use access::{
    AuditEntry, AuditQuery, Denied, ENV_TOKEN_PREFIX, MAX_AUDIT_PAGE, MAX_SCOPE_ENTRIES, NewToken,
    Principal, Role, Scope, Token, printable,
};
pub use cursor::{ListCursor, SortKey};
pub use error::{FieldError, ValidationError};
pub use host_status::{
    CheckReport, CheckStage, HealthState, HostHealth, HostKeyPolicy, HostKind, HostStatus,
};
pub use hosts::{HostNames, is_valid_host_name};
pub use idempotency::{IdempotencyKey, Once};
pub use job::{
    CancelDecision, ExitReport, HOST_REBOOTED, Job, JobId, LifecycleConflict, ListedJob, LostJob,
    Outcome, Priority, REQUEUED_AFTER_LOSS, Settlement, Status, TIMED_OUT_PREFIX, WORKER_LOST,
    WorkerId, is_timeout_error, task_id,
};
pub use limits::Limits;
pub use lineage::{Lineage, ScheduleId};
pub use list::{ListOutput, ListQuery, OrderField, Ordering, Page};
pub use new_job::NewJob;
pub use output::{
    Admission, Chunk, NewChunk, OutputBudget, OutputSplitter, Stream, drop_marker, head_cut,
    tail_cut,
};
pub use parameters::{ExecParameters, JobParameters};
pub use patch::JobPatch;
pub use retention::{PruneFilter, retention_cutoff};
pub use retry::retry_delay;
pub use run::{
    DEFAULT_MAX_PARALLEL, DEFAULT_RUN_MAX_RETRIES, FailureLimit, HostOutcome, MAX_RUN_HOSTS,
    NewRun, Run, RunConflict, RunId, RunTally, StartCause, Target, skipped_error,
};
pub use schedule::{
    Decision, MAX_COUNTED_MISSES, MAX_CRON_CHARS, Misfire, NewSchedule, Overlap, Timetable,
};
