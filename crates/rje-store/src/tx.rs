//! How the SQL stores end a transaction, and what a fenced write that
//! changed nothing means.

use crate::StoreError;

/// Ends a transaction by its result: commit on success, an explicit
/// rollback on error. A transaction merely dropped keeps its locks until its
/// connection is next used; in PostgreSQL, `SKIP LOCKED` claims would skip
/// those rows meanwhile.
pub(crate) async fn conclude<DB: sqlx::Database, T>(
    tx: sqlx::Transaction<'_, DB>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(%rollback, "rollback failed");
            }
            Err(err)
        }
    }
}

/// Which job a taken idempotency key answers: the one it made, if
/// `earlier` (its fingerprint and job, as stored) came from the same
/// request as `once`; [`StoreError::KeyReused`] otherwise, or when the
/// key is gone (its job deleted meanwhile).
pub(crate) fn replay(
    once: &rje_domain::Once,
    earlier: Option<(String, rje_domain::JobId)>,
) -> Result<rje_domain::JobId, StoreError> {
    match earlier {
        Some((fingerprint, job)) if fingerprint == once.fingerprint => Ok(job),
        _ => Err(StoreError::KeyReused(once.key.as_str().to_owned())),
    }
}

/// A fenced write (its WHERE names the attempt) that changed no row came
/// from an attempt that is no longer current.
pub(crate) fn fenced_unless_written(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::Fenced)
    } else {
        Ok(())
    }
}
