//! The scheduler: every process runs one, and none leads. Each sleeps
//! until the next fire time of the schedules it follows, and then asks
//! the store to fire it; the fire time's primary key lets exactly one
//! process's fire count (see [`rje_store::Schedules::fire`]), whatever
//! the number of processes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rje_bus::Bus;
use rje_domain::{Decision, HostNames, Limits, NewSchedule, Overlap};
use rje_store::{Fire, FireOutcome, JobStore, ScheduleRecord};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the schedules are read again by default although nothing
/// was heard: a schedule made through another process is followed from
/// then on (that process fires it meanwhile).
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// A fire time this close before a process started counts as on time, not
/// missed: another process may be firing it at that very moment (it is
/// the fire time's key that decides who does), and the misfire policy is
/// for the times that passed while no scheduler ran.
const STARTUP_GRACE: Duration = Duration::from_secs(2);
/// The wait before trying again when the store failed.
const AFTER_FAILURE: Duration = Duration::from_secs(1);

pub struct Scheduler {
    pub store: Arc<dyn JobStore>,
    pub bus: Arc<dyn Bus>,
    pub limits: Limits,
    pub hosts: HostNames,
    /// Told when a schedule was made, changed or deleted in this process.
    pub changed: Arc<Notify>,
    /// How often the schedules are read again (`RJE_SCHEDULE_RELOAD_SECONDS`).
    pub reload_every: Duration,
}

/// A schedule as the scheduler follows it.
struct Followed {
    schedule: NewSchedule,
    record: ScheduleRecord,
    /// Its next fire time, once known: until then nothing about it is
    /// computed again, so that a wake for one schedule costs nothing for
    /// the thousands of others.
    next: Option<DateTime<Utc>>,
}

impl Scheduler {
    pub async fn run(self, shutdown: CancellationToken) {
        // Fire times before this instant passed while this process did
        // not run: they are the misfire policy's.
        let alive_since = Utc::now() - STARTUP_GRACE;
        loop {
            let mut followed = match self.load().await {
                Ok(followed) => followed,
                Err(err) => {
                    tracing::warn!(%err, "could not read the schedules");
                    if self.pause(AFTER_FAILURE, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let reload_at = Instant::now() + self.reload_every;
            loop {
                let next = self.fire_due(&mut followed, alive_since).await;
                let Some(next) = next else {
                    // A schedule moved on under us: read them all again.
                    break;
                };
                let wake = next.min(reload_at);
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {
                        if wake >= reload_at {
                            break;
                        }
                    }
                    () = self.changed.notified() => break,
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// Waits `wait`; whether the process is stopping.
    async fn pause(&self, wait: Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = shutdown.cancelled() => true,
        }
    }

    async fn load(&self) -> Result<Vec<Followed>, rje_store::StoreError> {
        let records = self.store.active_schedules().await?;
        Ok(records
            .into_iter()
            .filter_map(|record| {
                match NewSchedule::parse(&record.definition, &self.limits, &self.hosts) {
                    Ok(schedule) => Some(Followed {
                        schedule,
                        record,
                        next: None,
                    }),
                    Err(err) => {
                        // Its host left the inventory, or a limit shrank:
                        // said each time the schedules are read.
                        tracing::error!(schedule = %record.name, %err, "a schedule no longer holds; it does not fire");
                        None
                    }
                }
            })
            .collect())
    }

    /// Fires what is due; when to look again, or `None` to read the
    /// schedules again first.
    async fn fire_due(
        &self,
        followed: &mut [Followed],
        alive_since: DateTime<Utc>,
    ) -> Option<Instant> {
        let mut next = Instant::now() + self.reload_every;
        for entry in followed.iter_mut() {
            let now = Utc::now();
            if let Some(at) = entry.next
                && at > now
            {
                next = next.min(instant_of(at));
                continue;
            }
            let timetable = entry.schedule.timetable();
            let decision = timetable.decide(
                entry.record.since,
                alive_since,
                now,
                entry.schedule.misfire(),
            );
            let (at, catch_up, missed, make_job) = match decision {
                Decision::Never => continue,
                Decision::Wait(at) => {
                    entry.next = Some(at);
                    next = next.min(instant_of(at));
                    continue;
                }
                Decision::Fire {
                    at,
                    catch_up,
                    missed,
                } => (at, catch_up, missed, true),
                Decision::Miss { at, missed } => (at, false, missed, false),
            };
            match self
                .fire(entry, at, catch_up, u64::from(missed), make_job)
                .await
            {
                Ok(FireOutcome::Stale) => return None,
                Ok(_) => {
                    entry.record.since = at;
                    entry.next = None;
                    // Look again at once: the next fire time may be due.
                    next = Instant::now();
                }
                Err(err) => {
                    tracing::warn!(schedule = %entry.record.name, %err, fire_time = %at, "could not fire; trying again");
                    next = next.min(Instant::now() + AFTER_FAILURE);
                }
            }
        }
        Some(next)
    }

    async fn fire(
        &self,
        entry: &Followed,
        at: DateTime<Utc>,
        catch_up: bool,
        missed: u64,
        make_job: bool,
    ) -> Result<FireOutcome, rje_store::StoreError> {
        let record = &entry.record;
        let overlap = entry.schedule.overlap();
        let job = make_job.then(|| {
            entry
                .schedule
                .job()
                .clone()
                .submitted_by(record.created_by.clone())
                .fired_by(record.id, at, overlap == Overlap::Queue)
        });
        let fire = Fire {
            schedule: record.id,
            read_at: record.modified_at,
            at,
            missed,
            job,
            skip_while_active: overlap == Overlap::Skip,
            skip_while_waiting: overlap == Overlap::Queue,
        };
        let outcome = self.store.fire(&fire).await?;
        let name = &record.name;
        match &outcome {
            FireOutcome::Fired(job) => {
                let delay = (Utc::now() - at).as_seconds_f64().max(0.0);
                let kind = if catch_up { "caught_up" } else { "fired" };
                rje_api::schedule_fire(kind, Some(delay));
                tracing::info!(schedule = %name, fire_time = %at, job = %job.id, catch_up, "schedule fired");
                self.bus.publish_status(job).await;
                self.bus.announce_work().await;
            }
            FireOutcome::Skipped => {
                rje_api::schedule_fire("skipped", None);
                tracing::info!(schedule = %name, fire_time = %at, "fire skipped: the schedule's last job is still queued or running");
            }
            FireOutcome::Missed => {
                rje_api::schedule_fire("missed", None);
            }
            FireOutcome::Taken | FireOutcome::Stale => {}
        }
        if missed > 0 && !matches!(outcome, FireOutcome::Taken | FireOutcome::Stale) {
            rje_api::schedule_missed(missed);
            tracing::warn!(schedule = %name, missed, latest = %at, catch_up, "fire times passed without a fire");
        }
        Ok(outcome)
    }
}

/// The monotonic instant of a wall-clock time (now, if it is past), a
/// millisecond late so that the clock has surely reached it on waking.
fn instant_of(at: DateTime<Utc>) -> Instant {
    let ahead = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + ahead + Duration::from_millis(1)
}
