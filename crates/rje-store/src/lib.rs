//! Where jobs and their output live. The store is the truth: the bus only
//! speeds things up, so everything a job needs to survive a crash is here.

mod error;
mod postgres;
mod prune;
mod rows;
mod sql;
mod sqlite;
mod store;
mod tx;
mod workers;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sqlite::{SqliteLocation, SqliteStore};
pub use store::{
    ActiveCount, CancelOutcome, ClaimedJob, JobPage, JobStore, Jobs, OutputPage, Pruned, Queue,
    Reattached, Standing, TakeUp, WorkerInfo,
};
