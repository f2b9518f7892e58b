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

/// A fenced write (its WHERE names the attempt) that changed no row came
/// from an attempt that is no longer current.
pub(crate) fn fenced_unless_written(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::Fenced)
    } else {
        Ok(())
    }
}
