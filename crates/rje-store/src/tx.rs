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
/// request as `once`; [`StoreError::KeyReused`] if from another; `None`
/// when the key is gone (its job deleted meanwhile): free to take again.
pub(crate) fn replay(
    once: &rje_domain::Once,
    earlier: Option<(String, rje_domain::JobId)>,
) -> Result<Option<rje_domain::JobId>, StoreError> {
    match earlier {
        None => Ok(None),
        Some((fingerprint, job)) if fingerprint == once.fingerprint => Ok(Some(job)),
        Some(_) => Err(StoreError::KeyReused(once.key.as_str().to_owned())),
    }
}

/// Tries of a submit under a key whose job keeps being deleted between
/// the insert that finds the key taken and the read of it.
pub(crate) const ONCE_TRIES: usize = 3;

/// What a submit under a key answers after [`ONCE_TRIES`] such tries.
pub(crate) fn key_kept_vanishing() -> StoreError {
    StoreError::Unavailable("the key's job was deleted while the submit was made; try again".into())
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
