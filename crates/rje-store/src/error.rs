//! The store's one error type, in terms callers can act on.

use rje_domain::{LifecycleConflict, Status};

/// Everything that can go wrong in the store, in terms callers can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job not found")]
    NotFound,
    /// The operation is not allowed in the job's current state.
    #[error("job is {status}")]
    Conflict { status: Status },
    /// A worker wrote about an attempt that is no longer current: another
    /// claim, a cancel or the reaper moved the job on.
    #[error("the job moved on from this attempt")]
    Fenced,
    /// A name that must be unique (a token's) is taken already.
    #[error("the name {0:?} is taken")]
    NameTaken(String),
    /// An idempotency key already made a job from another request.
    #[error("the idempotency key {0:?} was used for another request")]
    KeyReused(String),
    /// The database cannot be reached or is overloaded.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or damaged data. Logged, never shown to clients.
    #[error("store failure: {0}")]
    Internal(String),
}

/// The one place a lifecycle rule's refusal becomes the store's error.
impl From<LifecycleConflict> for StoreError {
    fn from(conflict: LifecycleConflict) -> Self {
        StoreError::Conflict {
            status: conflict.status,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(err.to_string())
            }
            sqlx::Error::Database(db)
                if is_busy(db.code().as_deref()) || is_transient(db.code().as_deref()) =>
            {
                StoreError::Unavailable(db.to_string())
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// PostgreSQL's deadlock and serialization failures: the transaction was
/// rolled back whole, and the same one may simply run again.
fn is_transient(code: Option<&str>) -> bool {
    matches!(code, Some("40P01" | "40001"))
}

/// SQLite's SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
fn is_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Internal(format!("migration failed: {err}"))
    }
}

/// `err`, unless it is a unique name met (`name`): that is said as such,
/// not as a database failure.
pub(crate) fn name_taken(err: sqlx::Error, name: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::NameTaken(name.to_owned())
        }
        _ => err.into(),
    }
}
