//! One claimed job, from start to its final status.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rje_bus::Bus;
use rje_domain::{Job, Outcome, StartCause, retry_delay};
use rje_exec::{ExecRequest, Ran, ResumeError, StartError, StartGate};
use rje_store::{ClaimedJob, Queue, Reattached, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pump::{OutputPump, PumpEnd, with_retries};
use crate::{Executors, WorkerConfig};

/// Events buffered between the executor and the pump: with 64 KiB reads,
/// at most a few MiB per job however fast the command writes.
const EVENT_BUFFER: usize = 32;

/// Why a running job is being stopped, so its end is reported truthfully.
#[derive(Default)]
pub(crate) struct StopReasons {
    /// A user asked for the cancel.
    pub cancelled: AtomicBool,
    /// The worker is shutting down and ran out of grace.
    pub shutdown: AtomicBool,
}

/// Everything a job run needs from its worker.
#[derive(Clone)]
pub(crate) struct RunContext {
    pub store: Arc<dyn Queue>,
    pub bus: Arc<dyn Bus>,
    pub executors: Executors,
    pub config: Arc<WorkerConfig>,
}

impl RunContext {
    /// The pump that stores the output of `job`'s attempt, numbering its
    /// chunks after `last_seq`.
    fn pump(&self, job: &Job, last_seq: i64) -> OutputPump<'_> {
        OutputPump::new(
            &*self.store,
            &*self.bus,
            &self.config,
            job.id,
            job.attempts,
            last_seq,
        )
    }
}

/// Runs a claimed job to its final status. Its span names the job, so that
/// every line logged on the way (the executor's too) says which it is.
#[tracing::instrument(
    name = "job",
    skip_all,
    fields(id = %claimed.job.id, attempt = claimed.job.attempts, host = claimed.job.host.as_deref())
)]
pub(crate) async fn run_job(
    ctx: RunContext,
    claimed: ClaimedJob,
    stop: CancellationToken,
    reasons: Arc<StopReasons>,
) {
    let job = claimed.job;
    let (id, attempt) = (job.id, job.attempts);
    ctx.bus.publish_status(&job).await;

    let Some(executor) = ctx.executors.get(job.host.as_deref()) else {
        let message = format!(
            "the host {} is not configured on this worker",
            job.host.as_deref().unwrap_or("(none)")
        );
        settle(&ctx, &job, Outcome::Error { message }).await;
        return;
    };
    let request = ExecRequest {
        command: job.command.clone(),
        timeout: Duration::from_secs(u64::from(job.timeout)),
        parameters: job
            .parameters
            .as_ref()
            .map(|parameters| parameters.exec().clone())
            .unwrap_or_default(),
    };

    let (sink, events) = mpsc::channel(EVENT_BUFFER);
    let pump = ctx.pump(&job, claimed.last_seq);
    // When the pump ends early (nothing more can be recorded for this
    // attempt) the sink closes: a plain executor then stops the command
    // rather than leave it running unobserved, and a durable one lets it
    // run on for whoever takes it up.
    let pumped = pump.run(events);
    let gate = StoreGate {
        store: &*ctx.store,
        job: &job,
        executor: &*executor,
        supervised: std::sync::OnceLock::new(),
    };
    let key = id.to_string();
    let execution = executor.run(&key, request, &gate, sink, stop.clone());
    let (result, pump_end) = tokio::join!(execution, pumped);

    let process_id = match pump_end {
        PumpEnd::Done { process_id } => process_id,
        PumpEnd::Fenced => {
            tracing::info!(%id, attempt, "job moved on from this attempt; its run was stopped");
            return;
        }
        PumpEnd::StoreFailed(err) if left_for_take_up(gate.ran_supervised(), &result, &reasons) => {
            tracing::error!(%id, attempt, %err, "could not store output; the job is left for a later take-over");
            return;
        }
        PumpEnd::StoreFailed(err) => {
            tracing::error!(%id, attempt, %err, "could not store output; the job was ended and its stored output may be incomplete");
            None
        }
    };

    match result {
        Ok(Ran::Ended(outcome)) => {
            let outcome = explain_stop(outcome, &reasons);
            if settle_with(&ctx, &job, outcome, process_id.as_deref()).await {
                executor.forget(&key).await;
            }
        }
        Ok(Ran::LetGo) => {
            tracing::info!(%id, attempt, "the job was let go while it ran; it is left for a later take-over");
        }
        Err(StartError {
            message,
            retryable: true,
            cause,
        }) => retry(&ctx, &job, &message, cause).await,
        Err(StartError { message, .. }) => settle(&ctx, &job, Outcome::Error { message }).await,
    }
}

/// Whether a job whose output could not be stored is left for a take-up
/// rather than settled. What the store lacks of a durable job is still in
/// its files, whether the command runs on or has ended: a take-up goes on
/// from the stored offsets, rather than the job being settled (and its
/// files removed) without it. Not once a cancel has ended the command: the
/// job ends Cancelled with what was stored, instead of being taken up again
/// for as long as the store refuses its output.
fn left_for_take_up<E>(supervised: bool, result: &Result<Ran, E>, reasons: &StopReasons) -> bool {
    let cancelled = reasons.cancelled.load(Ordering::SeqCst) && matches!(result, Ok(Ran::Ended(_)));
    supervised && !cancelled
}

/// The executor only knows it was stopped; the worker knows why.
fn explain_stop(outcome: Outcome, reasons: &StopReasons) -> Outcome {
    match outcome {
        Outcome::Cancelled { .. } if reasons.cancelled.load(Ordering::SeqCst) => outcome,
        Outcome::Cancelled { kill } if reasons.shutdown.load(Ordering::SeqCst) => Outcome::Error {
            message: match kill {
                rje_domain::ExitReport::Confirmed => {
                    "the worker shut down before the command finished".to_owned()
                }
                rje_domain::ExitReport::Unconfirmed => "the worker shut down before the command \
                     finished; the process group could not be confirmed gone"
                    .to_owned(),
            },
        },
        other => other,
    }
}

/// Records that the command may have started, before it is launched.
struct StoreGate<'a> {
    store: &'a dyn Queue,
    job: &'a Job,
    /// Says, when the gate opens, whether the command starts under a
    /// supervisor that outlives the worker: a reaper elsewhere then leaves
    /// the job to the workers that can take it up. Asked then, not
    /// before: a host found unable to supervise runs it plainly.
    executor: &'a dyn rje_exec::Executor,
    /// What the gate recorded, once it opened.
    supervised: std::sync::OnceLock<bool>,
}

impl StoreGate<'_> {
    /// Whether the command started under a supervisor that outlives the
    /// worker, as the start mark says (as the executor says, if the gate
    /// never opened).
    fn ran_supervised(&self) -> bool {
        self.supervised
            .get()
            .copied()
            .unwrap_or_else(|| self.executor.is_durable())
    }
}

#[async_trait]
impl StartGate for StoreGate<'_> {
    async fn open(&self) -> Result<(), StartError> {
        let (store, id, attempt) = (self.store, self.job.id, self.job.attempts);
        let supervised = *self.supervised.get_or_init(|| self.executor.is_durable());
        let started = with_retries(|| store.mark_started(id, attempt, supervised)).await;
        if started.is_ok() {
            let waited = (Utc::now() - self.job.created_at).as_seconds_f64().max(0.0);
            metrics::histogram!(
                "rje_job_start_delay_seconds",
                "priority" => self.job.priority.as_str(),
            )
            .record(waited);
        }
        started.map_err(|err| StartError {
            retryable: !matches!(err, StoreError::Fenced),
            message: match err {
                StoreError::Fenced => "the job moved on before its command started".into(),
                other => format!("could not record the start: {other}"),
            },
            cause: StartCause::Other,
        })
    }

    fn attempt(&self) -> Option<u32> {
        Some(self.job.attempts)
    }
}

async fn settle(ctx: &RunContext, job: &Job, outcome: Outcome) {
    settle_with(ctx, job, outcome, None).await;
}

/// Records the job's outcome; whether it was stored. A failure that
/// calls for an automatic retry is stored with the retry, which is
/// announced too.
async fn settle_with(
    ctx: &RunContext,
    job: &Job,
    outcome: Outcome,
    process_id: Option<&str>,
) -> bool {
    let (store, id, attempt) = (&ctx.store, job.id, job.attempts);
    // Drawn once, so that a finish written again after a lost answer asks
    // for the same retry time.
    let delay = retry_delay(
        ctx.config.retry_base,
        job.lineage.retry_number + 1,
        rand::random::<f64>(),
    );
    let rerun_at = Utc::now() + delay;
    let write = || store.finish(id, attempt, &outcome, process_id, rerun_at);
    let Some(done) = store_then_publish_with(ctx, job, "its outcome", write, |f| &f.job).await
    else {
        return false;
    };
    tracing::info!(%id, status = %done.job.status, exit_code = ?done.job.exit_code, "job finished");
    if let Some(next) = &done.follow_up {
        tracing::info!(%id, retry = %next.id, due = %next.run_at, "job failed; it runs again");
        metrics::counter!("rje_job_reruns_total").increment(1);
        ctx.bus.publish_status(next).await;
    }
    publish_skipped(ctx, &done.skipped).await;
    true
}

/// Announces the jobs of a run that a failure made it skip.
async fn publish_skipped(ctx: &RunContext, skipped: &[Job]) {
    if let Some(first) = skipped.first() {
        tracing::warn!(
            run = ?first.lineage.run,
            skipped = skipped.len(),
            "the run failed past its limit; its hosts still queued are skipped"
        );
    }
    for job in skipped {
        ctx.bus.publish_status(job).await;
    }
}

/// Takes up a job whose command outlived the worker that followed it:
/// the output goes on from where the store stopped, and the job ends with
/// the command's real outcome. Never runs the command again.
#[tracing::instrument(
    name = "job",
    skip_all,
    fields(
        id = %reattached.claimed.job.id,
        attempt = reattached.claimed.job.attempts,
        host = reattached.claimed.job.host.as_deref(),
        reattached = true,
    )
)]
pub(crate) async fn run_reattached(
    ctx: RunContext,
    reattached: Reattached,
    stop: CancellationToken,
    reasons: Arc<StopReasons>,
) {
    let Reattached {
        claimed,
        offsets,
        stored,
    } = reattached;
    let job = claimed.job;
    let (id, attempt) = (job.id, job.attempts);
    tracing::warn!(%id, attempt, reattached = job.reattached, ?offsets, "took up a running job again");
    // Only a durable executor has anything to take up; the host of a job
    // taken up is one, unless it was configured otherwise since.
    let Some(executor) = ctx
        .executors
        .get(job.host.as_deref())
        .filter(|executor| executor.is_durable())
    else {
        return;
    };
    if job.cancel_requested {
        // Asked for while nobody followed the job: carried out now.
        reasons.cancelled.store(true, Ordering::SeqCst);
        stop.cancel();
    }
    let (sink, events) = mpsc::channel(EVENT_BUFFER);
    let pump = ctx.pump(&job, claimed.last_seq).resuming(offsets, &stored);

    // When the pump ends early its sink closes and the follower lets the
    // command run on for a later take-over (see run_job).
    let pumped = pump.run(events);
    let key = id.to_string();
    let timeout = Duration::from_secs(u64::from(job.timeout));
    let resumed = executor.resume(&key, offsets, timeout, sink, stop.clone());
    let (result, pump_end) = tokio::join!(resumed, pumped);
    let process_id = match pump_end {
        PumpEnd::Done { process_id } => process_id,
        PumpEnd::Fenced => {
            tracing::info!(%id, attempt, "job moved on from this attempt; stopped following it");
            return;
        }
        PumpEnd::StoreFailed(err) if left_for_take_up(true, &result, &reasons) => {
            tracing::error!(%id, attempt, %err, "could not store output; the job is left for a later take-over");
            return;
        }
        PumpEnd::StoreFailed(err) => {
            tracing::error!(%id, attempt, %err, "could not store output of a cancelled job; it ends with what was stored");
            None
        }
    };
    let outcome = match result {
        Ok(Ran::Ended(outcome)) => explain_stop(outcome, &reasons),
        Ok(Ran::LetGo) => {
            tracing::info!(%id, attempt, "the job was let go while it ran; it is left for a later take-over");
            return;
        }
        Err(ResumeError::Unreachable(err)) => {
            // Nothing is known of the command: it is left to a later take-up
            // (its lease lapses), or to the reaper after the grace.
            tracing::warn!(%id, attempt, %err, "cannot reach the job's host to take it up");
            return;
        }
        Err(ResumeError::Rebooted) => Outcome::Error {
            message: rje_domain::HOST_REBOOTED.into(),
        },
        Err(err) => Outcome::Error {
            message: format!("could not take the running command up again: {err}"),
        },
    };
    if settle_with(&ctx, &job, outcome, process_id.as_deref()).await {
        executor.forget(&key).await;
    }
}

async fn retry(ctx: &RunContext, job: &Job, reason: &str, cause: StartCause) {
    let delay = retry_delay(ctx.config.retry_base, job.attempts, rand::random::<f64>());
    let run_at = Utc::now() + delay;
    let (store, id, attempt) = (&ctx.store, job.id, job.attempts);
    let message = format!("attempt {attempt}: {reason}");
    let write = || store.retry_later(id, attempt, run_at, &message, cause);
    if let Some(after) = store_then_publish_with(ctx, job, "the retry", write, |f| &f.job).await {
        tracing::warn!(%id, attempt, %reason, status = %after.job.status, ?delay, "command could not start");
        publish_skipped(ctx, &after.skipped).await;
    }
}

/// Writes a change of the job's state (with retries), then publishes its
/// new status (`job_of` finds the job in the write's answer): subscribers
/// only ever hear of what the store holds. `None` when the write did not
/// happen, which is logged here; a lease left behind lapses and the
/// reaper settles the job.
async fn store_then_publish_with<T, F, Fut>(
    ctx: &RunContext,
    job: &Job,
    what: &str,
    write: F,
    job_of: impl Fn(&T) -> &Job,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let (id, attempt) = (job.id, job.attempts);
    match with_retries(write).await {
        Ok(after) => {
            ctx.bus.publish_status(job_of(&after)).await;
            Some(after)
        }
        Err(StoreError::Fenced) => {
            tracing::info!(%id, attempt, "job moved on before {what} was recorded");
            None
        }
        Err(err) => {
            tracing::error!(%id, attempt, %err, "could not record {what}");
            None
        }
    }
}
