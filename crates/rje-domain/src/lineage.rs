//! Where a job comes from: the job it runs again, the schedule that fired
//! it, and whether a failure makes it run again by itself.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValidationError;
use crate::hosts::HostNames;
use crate::job::{Job, JobId, LifecycleConflict, Status, is_timeout_error, uuid_id};

uuid_id!(
    /// A schedule's identity. A route takes it or the schedule's name: a
    /// name is never shaped like a UUID.
    ScheduleId
);

/// A job's origin and its retry-on-failure choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// The job this one runs again.
    pub retry_of: Option<JobId>,
    /// How many automatic retries came before this job in its chain: 0
    /// for a first run, and for a run again asked for by hand (which
    /// starts a chain of its own).
    pub retry_number: u32,
    /// Run again, as a new job, when the command fails or times out.
    pub retry_on_failure: bool,
    /// The schedule that fired the job, and the fire time it stands for.
    pub schedule: Option<ScheduleId>,
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Runs one at a time, in queue order, with the other jobs of its
    /// schedule (a schedule whose overlap is `queue`).
    pub serial: bool,
    /// The jobs that run this one again, oldest first (by hand, or
    /// automatically after a failure).
    pub retries: Vec<JobId>,
    /// The run this job is one host's part of.
    pub run: Option<crate::RunId>,
}

impl Job {
    /// A job may be run again by hand once it is finished: a queued or
    /// running one is still the one to follow.
    pub fn when_run_again(&self) -> Result<(), LifecycleConflict> {
        if self.status.is_final() {
            Ok(())
        } else {
            Err(LifecycleConflict {
                status: self.status,
            })
        }
    }

    /// The job's host, if a job may still be made for it today: a host
    /// that left the inventory since would make a job no worker can run.
    pub fn host_still_known(&self, hosts: &HostNames) -> Result<(), ValidationError> {
        match self.host.as_deref() {
            Some(host) if hosts.is_known(host) => Ok(()),
            host => Err(ValidationError::field(
                "host",
                format!(
                    "the job's host {:?} is no longer configured; submit it anew on another host",
                    host.unwrap_or_default()
                ),
            )),
        }
    }

    /// Whether this job, as it ended, runs again by itself: it asked to
    /// (`retry_on_failure`), its command failed (a non-zero exit, a signal
    /// nobody in rje sent, or its timeout), no cancel was asked for, and
    /// its chain has retries left. A failure of rje's own (a worker lost
    /// after the start, an unreachable host after the retries of the
    /// start) is not the command's and does not count: running it again
    /// could run it twice.
    /// The job that runs this one again after its failure, once the store
    /// made it: the first of its retries, since the store makes it in the
    /// transaction that ends this job, before anyone could ask for a run
    /// again by hand.
    pub fn automatic_retry(&self) -> Option<JobId> {
        self.reruns_after_failure()
            .then(|| self.lineage.retries.first().copied())
            .flatten()
    }

    pub fn reruns_after_failure(&self) -> bool {
        let command_failed = self.exit_code.is_some_and(|code| code != 0)
            || self.signal.is_some()
            || self.error.as_deref().is_some_and(is_timeout_error);
        self.status == Status::Failed
            && command_failed
            && self.lineage.retry_on_failure
            && !self.cancel_requested
            && self.lineage.retry_number < self.max_retries
    }
}
