//! Where jobs and their output live. The store is the truth: the bus only
//! speeds things up, so everything a job needs to survive a crash is here.

mod access;
mod error;
mod postgres;
mod prune;
mod rows;
mod runs;
mod schedules;
mod sql;
mod sqlite;
mod store;
mod tx;
mod workers;

pub use access::{
    Access, AuditPage, AuditQuery, MAX_AUDIT_BATCH, MAX_AUDIT_PAGE, hash_secret, is_secret_shaped,
    new_secret,
};
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use runs::{RunCancel, RunPage, RunQuery, RunWithJobs, Runs};
pub use schedules::{Fire, FireOutcome, Retention, ScheduleRecord, ScheduleWrite, Schedules};
pub use sqlite::{SqliteLocation, SqliteStore};
pub use store::{
    ActiveCount, CancelOutcome, ClaimedJob, Created, Finished, JobPage, JobStore, Jobs, LeasedJob,
    OutputPage, Pruned, Queue, Reattached, Standing, TakeUp, WorkerInfo,
};
