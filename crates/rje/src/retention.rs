//! Retention: finished jobs older than `RJE_RETENTION_DAYS`, or past
//! `RJE_RETENTION_MAX_JOBS`, deleted hourly by one process at a time, a
//! batch at a time.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rje_domain::{PruneFilter, retention_cutoff};
use rje_store::{JobStore, StoreError};
use tokio_util::sync::CancellationToken;

/// Which finished jobs are deleted by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Days a finished job is kept; 0 keeps every job.
    pub days: u32,
    /// At most this many finished jobs are kept.
    pub max_jobs: Option<u64>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            days: 30,
            max_jobs: None,
        }
    }
}

/// How often retention runs.
const EVERY: Duration = Duration::from_secs(3600);
/// The chore's name in the store, and how long one holding lasts at
/// most: past a round's length, so that a holder that died hands over.
const CHORE: &str = "retention";
const HOLD: Duration = Duration::from_secs(2 * 3600);

/// Runs retention hourly (first at once) until `shutdown`, when this
/// process holds the chore; another process holding it keeps it.
pub async fn run(
    store: Arc<dyn JobStore>,
    policy: RetentionPolicy,
    holder: String,
    shutdown: CancellationToken,
) {
    if policy.days == 0 && policy.max_jobs.is_none() {
        return;
    }
    let mut every = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match round(&*store, policy, &holder, &shutdown).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, ?policy, "retention deleted finished jobs"),
            Err(err) => tracing::warn!(%err, "retention failed; it runs again in an hour"),
        }
    }
}

/// One round: the jobs past the days, then those past the count. How
/// many went.
pub async fn round(
    store: &dyn JobStore,
    policy: RetentionPolicy,
    holder: &str,
    shutdown: &CancellationToken,
) -> Result<u64, StoreError> {
    let until = Utc::now() + HOLD;
    if !store.hold_chore(CHORE, holder, until).await? {
        tracing::debug!("another process carries out retention");
        return Ok(0);
    }
    let deleted = delete_past(store, policy, shutdown).await;
    // Held for the round only: the next round, or a process started
    // meanwhile, may take it at once. A holder that dies mid-round hands
    // over when its hold lapses.
    if let Err(err) = store.release_chore(CHORE, holder).await {
        tracing::warn!(%err, "could not let go of the retention chore; it lapses by itself");
    }
    deleted
}

/// The jobs past the days, then those past the count; how many went.
async fn delete_past(
    store: &dyn JobStore,
    policy: RetentionPolicy,
    shutdown: &CancellationToken,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    if let Some(before) = retention_cutoff(Utc::now(), policy.days) {
        deleted += prune(store, &PruneFilter::before(before), shutdown).await?;
    }
    if let Some(keep) = policy.max_jobs
        && let Some(cutoff) = store.finished_cutoff(keep).await?
    {
        deleted += prune(store, &PruneFilter::before(cutoff), shutdown).await?;
    }
    Ok(deleted)
}

async fn prune(
    store: &dyn JobStore,
    filter: &PruneFilter,
    shutdown: &CancellationToken,
) -> Result<u64, StoreError> {
    rje_api::prune_in_batches(store, filter, "retention", || shutdown.is_cancelled()).await
}
