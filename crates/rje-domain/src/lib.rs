//! The domain of rje: what a job is, which states it may move through, and
//! every rule about input and output. Nothing here does I/O, so every rule
//! can be unit-tested and shared by the store, the worker and the API.

mod error;
mod hosts;
mod job;
mod limits;
mod list;
mod new_job;
mod output;
mod patch;
mod retry;

pub use error::{FieldError, ValidationError};
pub use hosts::{HostNames, is_valid_host_name};
pub use job::{
    ExitReport, Job, JobId, LostJob, Outcome, Priority, Settlement, Status, TIMED_OUT_PREFIX,
    TaskId, WORKER_LOST, WorkerId, is_timeout_error,
};
pub use limits::Limits;
pub use list::{ListOutput, ListQuery, OrderField, Ordering};
pub use new_job::{ExecParameters, NewJob};
pub use output::{
    Admission, Chunk, NewChunk, OutputBudget, OutputSplitter, Stream, drop_marker, head_cut,
    tail_cut,
};
pub use patch::JobPatch;
pub use retry::retry_delay;
