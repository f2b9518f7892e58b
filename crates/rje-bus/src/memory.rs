//! The embedded bus: one process, tokio broadcast channels, nothing to run.

use async_trait::async_trait;
use rje_domain::JobId;
use tokio::sync::broadcast;

use crate::fanout::Fanout;
use crate::{Bus, BusError, JobEvent, StatusEvent, Subscription};

/// Messages per job a subscriber may fall behind by before it is told of a
/// gap. An output event carries at most one batch (~64 KiB).
const JOB_CAPACITY: usize = 256;
const STATUS_CAPACITY: usize = 4096;
const CANCEL_CAPACITY: usize = 1024;
/// Wake-ups carry no data: one pending is as good as many.
const WORK_CAPACITY: usize = 1;

/// The embedded bus: tokio broadcast channels inside one process.
pub struct MemoryBus {
    jobs: Fanout<JobId, JobEvent>,
    status: broadcast::Sender<StatusEvent>,
    work: broadcast::Sender<()>,
    cancels: broadcast::Sender<JobId>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self {
            jobs: Fanout::new(JOB_CAPACITY),
            status: broadcast::channel(STATUS_CAPACITY).0,
            work: broadcast::channel(WORK_CAPACITY).0,
            cancels: broadcast::channel(CANCEL_CAPACITY).0,
        }
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells every subscriber that messages may have been lost, so that
    /// each re-reads the store: every job's watchers get a
    /// [`JobEvent::Resync`], and idle workers a wake-up.
    pub fn resync(&self) {
        self.jobs.send_each(|job| JobEvent::Resync { job: *job });
        let _ = self.work.send(());
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn publish(&self, event: JobEvent) {
        if let JobEvent::Status(status) = &event {
            let _ = self.status.send(status.clone());
        }
        self.jobs.send(&event.job(), event);
    }

    async fn subscribe_job(&self, job: JobId) -> Result<Subscription<JobEvent>, BusError> {
        Ok(self.jobs.subscribe(job))
    }

    async fn subscribe_status(&self) -> Result<Subscription<StatusEvent>, BusError> {
        Ok(Subscription::new(self.status.subscribe()))
    }

    async fn announce_work(&self) {
        let _ = self.work.send(());
    }

    async fn subscribe_work(&self) -> Result<Subscription<()>, BusError> {
        Ok(Subscription::new(self.work.subscribe()))
    }

    async fn request_cancel(&self, job: JobId) {
        let _ = self.cancels.send(job);
    }

    async fn subscribe_cancels(&self) -> Result<Subscription<JobId>, BusError> {
        Ok(Subscription::new(self.cancels.subscribe()))
    }
}
