//! The workers as the SQL stores list them: their rows, joined to the jobs
//! they lease, folded into one [`WorkerInfo`] each.

use chrono::{DateTime, Utc};
use rje_domain::WorkerId;

use crate::rows::to_u32;
use crate::{LeasedJob, StoreError, WorkerInfo};

/// One row of workers joined to the jobs they lease, ordered by worker.
pub(crate) struct WorkerJobRow {
    pub id: String,
    pub host: String,
    pub concurrency: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub job: Option<LeasedJob>,
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
