//! What the SQL stores share: the parts of their queries that do not depend
//! on the dialect, and the pruning plan.

use chrono::{DateTime, Utc};
use rje_domain::{JobId, ListQuery, OrderField, Stream, WorkerId};

use crate::WorkerInfo;

use crate::StoreError;

/// Why a job whose worker vanished before starting it is queued again.
pub(crate) const REQUEUED_AFTER_LOSS: &str = "worker lost before the command started; queued again";

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

pub(crate) fn corrupt(what: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::Internal(format!("stored {what} is invalid: {value:?}"))
}

pub(crate) fn to_u32(what: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(what, value))
}

/// The ORDER BY of a job list. Ties break on the row key, so that pages
/// never overlap or skip.
pub(crate) fn order_by(query: &ListQuery) -> String {
    let dir = if query.ordering.descending {
        "DESC"
    } else {
        "ASC"
    };
    match query.ordering.field {
        OrderField::CreatedAt => format!("created_at {dir}, pk {dir}"),
        // Within a priority, queue order: first come first.
        OrderField::Priority => format!("priority {dir}, pk ASC"),
        OrderField::StartedAt => format!("started_at {dir} NULLS LAST, pk {dir}"),
        OrderField::CompletedAt => format!("completed_at {dir} NULLS LAST, pk {dir}"),
    }
}

/// SQL for one stream of a job's output (the job row is `jobs`), assembled
/// from its chunks in seq order, with the marker of
/// [`rje_domain::drop_marker`] wherever output was dropped. The dialect
/// gives its ordered string aggregate (`group_concat`, `string_agg`) and
/// its newline (`char(10)`, `chr(10)`).
pub(crate) fn assembled_sql(stream: Stream, aggregate: &str, newline: &str) -> String {
    format!(
        "(SELECT COALESCE({aggregate}(\
            CASE WHEN o.dropped_before > 0 \
                 THEN '[rje: ' || o.dropped_before || ' bytes of {name} dropped]' || {newline} \
                 ELSE '' END || o.text, '' ORDER BY o.seq), '') \
          FROM job_output o WHERE o.job_pk = jobs.pk AND o.stream = {index})",
        name = stream.as_str(),
        index = stream.index()
    )
}

/// One row of workers joined to the jobs they lease, ordered by worker.
pub(crate) struct WorkerJobRow {
    pub id: String,
    pub host: String,
    pub concurrency: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub job: Option<JobId>,
}

/// Folds worker rows (one per leased job, or one with no job) into workers.
pub(crate) fn group_workers(
    rows: impl IntoIterator<Item = WorkerJobRow>,
) -> Result<Vec<WorkerInfo>, StoreError> {
    let mut workers: Vec<WorkerInfo> = Vec::new();
    for row in rows {
        if workers.last().is_none_or(|w| w.id.0 != row.id) {
            workers.push(WorkerInfo {
                id: WorkerId(row.id),
                host: row.host,
                concurrency: to_u32("concurrency", row.concurrency)?,
                started_at: row.started_at,
                heartbeat_at: row.heartbeat_at,
                jobs: Vec::new(),
            });
        }
        if let (Some(job), Some(worker)) = (row.job, workers.last_mut()) {
            worker.jobs.push(job);
        }
    }
    Ok(workers)
}

/// What to do to keep at most `keep` bytes of a stream's tail, given its
/// chunks after the head, newest first, as (seq, bytes, dropped_before).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PrunePlan {
    /// The oldest chunk kept: its front is cut to fit, and it records the
    /// count of everything dropped before it.
    pub boundary_seq: i64,
    /// Bytes of the boundary chunk that may stay.
    pub room: usize,
    /// The oldest chunk deleted whole, if any; all from it up to the
    /// boundary go.
    pub oldest_deleted: Option<i64>,
    /// Bytes dropped before the boundary chunk so far, not counting its cut.
    pub dropped: u64,
    /// Bytes kept in the chunks newer than the boundary.
    pub kept: u64,
}

/// Plans a prune, or `None` when everything fits (returning what is kept).
pub(crate) fn plan_prune(rows: &[(i64, i64, i64)], keep: u64) -> Result<PrunePlan, u64> {
    let size = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut kept = 0u64;
    let Some(boundary) = rows.iter().position(|&(_, len, _)| {
        let fits = kept + size(len) <= keep;
        if fits {
            kept += size(len);
        }
        !fits
    }) else {
        return Err(kept);
    };
    let (boundary_seq, _, boundary_dropped) = rows[boundary];
    let older = &rows[boundary + 1..];
    let dropped = older
        .iter()
        .map(|&(_, len, dropped)| size(len) + size(dropped))
        .sum::<u64>()
        + size(boundary_dropped);
    Ok(PrunePlan {
        boundary_seq,
        room: usize::try_from(keep - kept).unwrap_or(usize::MAX),
        oldest_deleted: older.last().map(|&(seq, _, _)| seq),
        dropped,
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prune_keeps_the_newest_chunks_that_fit() {
        // Newest first: 5 (10 bytes), 4 (10), 3 (10, 7 dropped before it).
        let rows = [(5, 10, 0), (4, 10, 0), (3, 10, 7)];
        assert_eq!(plan_prune(&rows, 100), Err(30));
        let plan = plan_prune(&rows, 15).unwrap();
        assert_eq!(plan.boundary_seq, 4);
        assert_eq!(plan.room, 5);
        assert_eq!(plan.oldest_deleted, Some(3));
        assert_eq!(plan.dropped, 17);
        assert_eq!(plan.kept, 10);
    }
}
