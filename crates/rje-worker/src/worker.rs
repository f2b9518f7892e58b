//! The worker's loop: claim, run, renew leases, carry out cancels, reap
//! the jobs of lost workers, and shut down without losing a job.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use rje_bus::{Bus, Received, Subscription};
use rje_domain::{JobId, WorkerId};
use rje_store::{Queue, Reattached, Standing, StoreError, TakeUp};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};
use tokio_util::sync::CancellationToken;

use rje_exec::{Executor, KeptJob, Unlaunched};

use crate::run::{RunContext, StopReasons, run_job, run_reattached};
use crate::{Executors, ShutdownMode, WorkerConfig};

/// A job this worker is running.
struct Running {
    stop: CancellationToken,
    reasons: Arc<StopReasons>,
    /// The task running it, to find the job again if the task fails.
    task: tokio::task::Id,
    /// Runs it: asked at shutdown whether the command outlives the worker
    /// (then it may be left running).
    executor: Option<Arc<dyn Executor>>,
    abort: tokio::task::AbortHandle,
}

impl Running {
    fn outlives_worker(&self) -> bool {
        self.executor
            .as_ref()
            .is_some_and(|executor| executor.is_durable())
    }
}

/// The files a machine keeps of a job nobody can take up are removed after
/// this many leases of quiet: by then any worker that followed it has
/// settled it.
const STALE_AFTER_LEASES: u32 = 10;
/// How long a host may take to say whether a job's launch was claimed.
const PROOF_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
/// How many leases a durable job's own machine gets to take it up before a
/// worker anywhere settles it as lost.
const SUPERVISED_GRACE_LEASES: u32 = 5;

/// Claims and runs jobs until told to shut down.
pub struct Worker {
    id: WorkerId,
    ctx: RunContext,
    /// Jobs taken up by [`Worker::recover_sole_store`], started by `run`.
    recovered: Vec<Reattached>,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Queue>,
        bus: Arc<dyn Bus>,
        executors: Executors,
        config: WorkerConfig,
    ) -> Self {
        Self {
            id: WorkerId::generate(),
            recovered: Vec::new(),
            ctx: RunContext {
                store,
                bus,
                executors,
                config: Arc::new(config),
            },
        }
    }

    pub fn id(&self) -> &WorkerId {
        &self.id
    }

    /// Settles every running job whose lease expired before
    /// `expired_before` (a job under a machine's supervisor: before
    /// `supervised_before`), publishing their new status. Returns how many
    /// were settled.
    pub async fn reap(
        &self,
        expired_before: chrono::DateTime<Utc>,
        supervised_before: chrono::DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let reaped = self
            .ctx
            .store
            .reap_expired(expired_before, supervised_before)
            .await?;
        for job in &reaped {
            tracing::warn!(id = %job.id, status = %job.status, "settled a job whose worker was lost");
            self.ctx.bus.publish_status(job).await;
        }
        if reaped.iter().any(|job| !job.status.is_final()) {
            self.ctx.bus.announce_work().await;
        }
        Ok(reaped.len())
    }

    /// For the only process on its store (the embedded server, which holds
    /// the store's lock): every job found Running was left by a process
    /// that is gone. Takes up those whose commands still run under this
    /// machine's supervisors (they start with [`Worker::run`]) and settles
    /// the rest, before the process says it is up.
    pub async fn recover_sole_store(&mut self) {
        let now = Utc::now();
        let taken = self.find_orphans(past_every_lease(), &HashMap::new()).await;
        self.recovered = taken;
        // The leases taken here expire after `now + lease`, those of the
        // gone process before: the reap tells them apart.
        let lease =
            chrono::Duration::from_std(self.ctx.config.lease).unwrap_or(chrono::Duration::MAX);
        // Alone on the store: no other machine's workers to wait for.
        match self.reap(now + lease, now + lease).await {
            Ok(reaped) if reaped > 0 => {
                tracing::warn!(reaped, "settled the jobs a previous process left running");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "settling the jobs of a previous process failed"),
        }
    }

    /// Runs until `shutdown` fires (call [`Worker::register`] first), then
    /// stops claiming, gives running jobs
    /// `shutdown_grace` to finish, kills the rest, and returns once every
    /// job it ran is settled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let config = self.ctx.config.clone();
        let mut work = subscribe(self.ctx.bus.subscribe_work().await, "work");
        let mut cancels = subscribe(self.ctx.bus.subscribe_cancels().await, "cancels");
        let mut poll = interval(config.poll_every);
        let mut renew = interval(config.renew_every);
        let mut reap = interval(config.reap_every);
        for timer in [&mut poll, &mut renew, &mut reap] {
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let mut tasks: JoinSet<JobId> = JoinSet::new();
        let mut running: HashMap<JobId, Running> = HashMap::new();
        let mut drain_deadline: Option<Instant> = None;
        let mut killed_for_shutdown = false;
        tracing::info!(worker = %self.id, concurrency = config.concurrency, "worker started");
        for reattached in std::mem::take(&mut self.recovered) {
            let (id, host) = (
                reattached.claimed.job.id,
                reattached.claimed.job.host.clone(),
            );
            self.start(
                &mut tasks,
                &mut running,
                id,
                host.as_deref(),
                |ctx, stop, reasons| run_reattached(ctx, reattached, stop, reasons),
            );
        }

        loop {
            if drain_deadline.is_some() && running.is_empty() {
                break;
            }
            let mut claim_now = false;
            tokio::select! {
                () = shutdown.cancelled(), if drain_deadline.is_none() => {
                    if config.shutdown_mode == ShutdownMode::Detach {
                        let detached = running.values().filter(|job| job.outlives_worker()).count();
                        for job in running.values().filter(|job| job.outlives_worker()) {
                            // Only the following stops: the command runs on.
                            job.abort.abort();
                        }
                        tracing::info!(worker = %self.id, detached, "left durable jobs running");
                    }
                    tracing::info!(worker = %self.id, running = running.len(), "worker draining");
                    drain_deadline = Some(Instant::now() + config.shutdown_grace);
                }
                () = sleep_until(drain_deadline.unwrap_or_else(Instant::now)),
                    if drain_deadline.is_some() && !killed_for_shutdown => {
                    killed_for_shutdown = true;
                    for job in running.values() {
                        job.reasons.shutdown.store(true, Ordering::SeqCst);
                        job.stop.cancel();
                    }
                }
                Some(done) = tasks.join_next_with_id() => {
                    forget_finished(&mut running, done);
                    // Collect every other finished job too: one claim fills
                    // all the free slots.
                    while let Some(done) = tasks.try_join_next_with_id() {
                        forget_finished(&mut running, done);
                    }
                    claim_now = true;
                }
                received = next(&mut work) => {
                    claim_now = !matches!(received, Received::Closed);
                    if matches!(received, Received::Closed) {
                        work = None;
                    } else if let Some(work) = work.as_mut() {
                        // Many announcements, one claim.
                        while work.try_recv().is_some() {}
                    }
                }
                received = next(&mut cancels) => match received {
                    Received::Message(id) => self.cancel(&running, id),
                    // Missed cancels are found at the next lease renewal.
                    Received::Gap(_) => {}
                    Received::Closed => cancels = None,
                },
                _ = poll.tick() => claim_now = true,
                _ = renew.tick() => {
                    self.beat().await;
                    self.renew(&running).await;
                }
                _ = reap.tick() => {
                    // A worker on its way out takes nothing new, as it
                    // claims nothing new.
                    if drain_deadline.is_none() {
                        self.take_up(Utc::now(), &mut tasks, &mut running).await;
                    }
                    let now = Utc::now();
                    let grace = config.lease * SUPERVISED_GRACE_LEASES;
                    let supervised_before = now
                        - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
                    if let Err(err) = self.reap(now, supervised_before).await {
                        tracing::warn!(%err, "reaping expired leases failed");
                    }
                }
            }
            if claim_now && drain_deadline.is_none() {
                self.claim(&mut tasks, &mut running).await;
            }
        }
        if let Err(err) = self.ctx.store.remove_worker(&self.id).await {
            tracing::warn!(%err, "could not deregister the worker");
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// Announces the worker, for /ready and /workers, before it runs; the
    /// lease renewals beat its heartbeat after that.
    pub async fn register(&self) {
        self.beat().await;
    }

    async fn beat(&self) {
        let config = &self.ctx.config;
        let concurrency = u32::try_from(config.concurrency).unwrap_or(u32::MAX);
        if let Err(err) = self
            .ctx
            .store
            .heartbeat(&self.id, &config.host_name, concurrency)
            .await
        {
            tracing::warn!(%err, "worker heartbeat failed");
        }
    }

    async fn claim(&self, tasks: &mut JoinSet<JobId>, running: &mut HashMap<JobId, Running>) {
        let config = &self.ctx.config;
        loop {
            let free = config.concurrency.saturating_sub(running.len());
            if free == 0 {
                return;
            }
            let want = u32::try_from(free).unwrap_or(u32::MAX);
            let claimed = match self.ctx.store.claim(&self.id, want, config.lease).await {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(%err, "claiming jobs failed");
                    return;
                }
            };
            let got = claimed.len();
            for job in claimed {
                let id = job.job.id;
                tracing::debug!(%id, attempt = job.job.attempts, "claimed");
                let host = job.job.host.clone();
                self.start(tasks, running, id, host.as_deref(), |ctx, stop, reasons| {
                    run_job(ctx, job, stop, reasons)
                });
            }
            if got < free {
                return;
            }
        }
    }

    /// Runs a job's task and keeps what stops it.
    fn start<F, Fut>(
        &self,
        tasks: &mut JoinSet<JobId>,
        running: &mut HashMap<JobId, Running>,
        id: JobId,
        host: Option<&str>,
        run: F,
    ) where
        F: FnOnce(RunContext, CancellationToken, Arc<StopReasons>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let reasons = Arc::new(StopReasons::default());
        let job = run(self.ctx.clone(), stop.clone(), reasons.clone());
        let task = tasks.spawn(async move {
            job.await;
            id
        });
        running.insert(
            id,
            Running {
                stop,
                reasons,
                task: task.id(),
                executor: self.ctx.executors.get(host),
                abort: task,
            },
        );
    }

    /// Takes up the jobs whose commands still run under this machine's
    /// supervisors while no worker follows them (their lease expired
    /// before `expired_before`).
    async fn take_up(
        &self,
        expired_before: chrono::DateTime<Utc>,
        tasks: &mut JoinSet<JobId>,
        running: &mut HashMap<JobId, Running>,
    ) {
        for reattached in self.find_orphans(expired_before, running).await {
            let (id, host) = (
                reattached.claimed.job.id,
                reattached.claimed.job.host.clone(),
            );
            self.start(tasks, running, id, host.as_deref(), |ctx, stop, reasons| {
                run_reattached(ctx, reattached, stop, reasons)
            });
        }
    }

    /// Claims, as new attempts, the durable jobs no worker follows (lease
    /// expired before `expired_before`) that this worker can reach and
    /// does not run already: those whose files a host's executor keeps and
    /// lists on this machine, and those of the other durable hosts, found
    /// in the store by the host they name.
    async fn find_orphans(
        &self,
        expired_before: chrono::DateTime<Utc>,
        running: &HashMap<JobId, Running>,
    ) -> Vec<Reattached> {
        let mut found = Vec::new();
        let mut indexed_by_store = Vec::new();
        for (host, executor) in self.ctx.executors.durable() {
            match executor.kept_jobs() {
                Some(keys) => {
                    let taken = self
                        .take_up_kept(&**executor, keys, expired_before, running)
                        .await;
                    found.extend(taken);
                }
                None => indexed_by_store.push(host.to_owned()),
            }
        }
        if indexed_by_store.is_empty() {
            return found;
        }
        let orphans = match self
            .ctx
            .store
            .orphaned_supervised(&indexed_by_store, expired_before)
            .await
        {
            Ok(ids) => ids,
            Err(err) => {
                tracing::warn!(%err, "could not look for remote jobs to take up");
                Vec::new()
            }
        };
        for (id, host) in orphans {
            if running.contains_key(&id) || found.iter().any(|r| r.claimed.job.id == id) {
                continue;
            }
            let Some(executor) = self.ctx.executors.get(Some(host.as_str())) else {
                continue;
            };
            // Its worker may have been lost between the start mark and the
            // launch: the host proves whether the command never started.
            let key = id.to_string();
            match prove_unlaunched(&*executor, &key).await {
                Unlaunched::Never { attempt } => {
                    if let Some(job) = self.requeue_unstarted(id, attempt, expired_before).await
                        && job.status.is_final()
                    {
                        // Cancelled instead: no later attempt will make
                        // its directory anew, so it goes now.
                        executor.forget(&key).await;
                    }
                    continue;
                }
                Unlaunched::MayHaveStarted => {}
                // Nothing proven (the host out of reach, say): taken up as
                // before, which holds the job while the host cannot be
                // reached, so that neither this start's reap nor the
                // reaper settles a command that may run on there.
                Unlaunched::Unknown(err) => {
                    tracing::warn!(%id, host, %err, "cannot tell whether the command of a job to take up started");
                }
            }
            match self.take_up_one(id, expired_before).await {
                Ok(TakeUp::Taken(reattached)) => found.push(*reattached),
                // Taken up by another worker meanwhile, or settled.
                Ok(TakeUp::Held | TakeUp::Over | TakeUp::Unknown) => {}
                Err(err) => tracing::warn!(%id, %err, "could not take up a running job"),
            }
        }
        found
    }

    async fn take_up_one(
        &self,
        id: JobId,
        expired_before: chrono::DateTime<Utc>,
    ) -> Result<TakeUp, StoreError> {
        self.ctx
            .store
            .reattach(id, &self.id, self.ctx.config.lease, expired_before)
            .await
    }

    /// Takes up, among the jobs `executor` keeps on this machine (`keys`),
    /// those no worker follows, and tidies the files of the others.
    async fn take_up_kept(
        &self,
        executor: &dyn Executor,
        keys: Vec<String>,
        expired_before: chrono::DateTime<Utc>,
        running: &HashMap<JobId, Running>,
    ) -> Vec<Reattached> {
        let ids: Vec<JobId> = keys
            .iter()
            .filter_map(|key| JobId::parse(key))
            .filter(|id| !running.contains_key(id))
            .collect();
        // One query for all, not one per job on every tick.
        let standings: HashMap<JobId, Standing> =
            match self.ctx.store.standings(&ids, expired_before).await {
                Ok(standings) => standings.into_iter().collect(),
                Err(err) => {
                    tracing::warn!(%err, "could not look at the jobs of this machine");
                    return Vec::new();
                }
            };
        let quiet = self.ctx.config.lease * STALE_AFTER_LEASES;
        let mut found = Vec::new();
        for id in ids {
            let key = id.to_string();
            let standing = match standings.get(&id) {
                Some(Standing::Orphaned) => match prove_unlaunched(executor, &key).await {
                    // Its worker was lost between the start mark and the
                    // launch: nothing ran, so it runs again.
                    Unlaunched::Never { attempt } => {
                        self.requeue_unstarted(id, attempt, expired_before).await;
                        continue;
                    }
                    Unlaunched::MayHaveStarted => {
                        match self.take_up_one(id, expired_before).await {
                            Ok(TakeUp::Taken(reattached)) => {
                                found.push(*reattached);
                                continue;
                            }
                            // Taken up or settled meanwhile: as it stands now.
                            Ok(TakeUp::Held) => KeptJob::Followed,
                            Ok(TakeUp::Over) => KeptJob::Over,
                            Ok(TakeUp::Unknown) => KeptJob::Unknown,
                            Err(err) => {
                                tracing::warn!(%id, %err, "could not take up a running job");
                                continue;
                            }
                        }
                    }
                    // Left for the next tick (or, should it last, to the
                    // reaper): nothing is decided on what cannot be read.
                    Unlaunched::Unknown(err) => {
                        tracing::warn!(%id, %err, "cannot read the files of a job to take up");
                        continue;
                    }
                },
                Some(Standing::Held) => KeptJob::Followed,
                Some(Standing::Over) => KeptJob::Over,
                None => KeptJob::Unknown,
            };
            executor.tidy(&key, standing, quiet).await;
        }
        found
    }

    /// Queues again, at `attempt`, a job whose command its machine proved
    /// never started (see [`rje_exec::Executor::prove_unlaunched`]).
    /// Fenced when the job moved on, or its worker renewed its lease
    /// meanwhile (it stalled, and finds its launch given up): that worker
    /// reports it then. Failures are tried again on the next tick. Returns
    /// the job as it is now, when it was changed here.
    async fn requeue_unstarted(
        &self,
        id: JobId,
        attempt: u32,
        expired_before: chrono::DateTime<Utc>,
    ) -> Option<rje_domain::Job> {
        match self
            .ctx
            .store
            .requeue_unstarted(id, attempt, expired_before)
            .await
        {
            Ok(job) => {
                tracing::warn!(%id, attempt, status = %job.status, "queued again a job whose worker was lost before its command started");
                self.ctx.bus.publish_status(&job).await;
                if !job.status.is_final() {
                    self.ctx.bus.announce_work().await;
                }
                Some(job)
            }
            Err(StoreError::Fenced) => {
                tracing::debug!(%id, attempt, "a job proven unstarted had moved on already");
                None
            }
            Err(err) => {
                tracing::warn!(%id, %err, "could not queue again a job that never started");
                None
            }
        }
    }

    fn cancel(&self, running: &HashMap<JobId, Running>, id: JobId) {
        if let Some(job) = running.get(&id) {
            tracing::info!(%id, "cancelling");
            job.reasons.cancelled.store(true, Ordering::SeqCst);
            job.stop.cancel();
        }
    }

    async fn renew(&self, running: &HashMap<JobId, Running>) {
        if running.is_empty() {
            return;
        }
        // Only what this worker follows: a job it let go keeps no lease.
        let following: Vec<JobId> = running.keys().copied().collect();
        match self
            .ctx
            .store
            .renew_leases(&self.id, &following, self.ctx.config.lease)
            .await
        {
            Ok(cancelled) => {
                for id in cancelled {
                    self.cancel(running, id);
                }
            }
            Err(err) => tracing::warn!(%err, "renewing leases failed"),
        }
    }
}

/// Whether the command of job `key` provably never started on its machine
/// (see [`Executor::prove_unlaunched`]). Bounded: a slow host must not hold
/// up the worker's lease renewals, claims and cancels; too slow proves
/// nothing.
async fn prove_unlaunched(executor: &dyn Executor, key: &str) -> Unlaunched {
    tokio::time::timeout(PROOF_WITHIN, executor.prove_unlaunched(key))
        .await
        .unwrap_or_else(|_| {
            Unlaunched::Unknown(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the host did not answer in time",
            ))
        })
}

/// A time past every lease, however long: on a store only this process
/// uses, every lease of the process before has expired.
fn past_every_lease() -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::days(36500)
}

/// For the only process on its store when it runs no worker: settles every
/// job a previous process left running now, rather than when its lease
/// would have expired (a worker does it with [`Worker::recover_sole_store`],
/// after taking up what its machine's supervisors still run).
pub async fn settle_left_running(store: &dyn Queue) -> Result<usize, StoreError> {
    let gone = past_every_lease();
    let reaped = store.reap_expired(gone, gone).await?;
    for job in &reaped {
        tracing::warn!(id = %job.id, status = %job.status, "settled a job left running by a previous process");
    }
    Ok(reaped.len())
}

fn forget_finished(
    running: &mut HashMap<JobId, Running>,
    done: Result<(tokio::task::Id, JobId), tokio::task::JoinError>,
) {
    let task = match &done {
        Ok((task, _)) => *task,
        // Aborted on purpose: a durable job left running on shutdown.
        Err(err) if err.is_cancelled() => err.id(),
        Err(err) => {
            // run_job does not panic by design; if it did, the job's lease
            // lapses and the reaper settles it.
            tracing::error!(%err, "a job task failed");
            err.id()
        }
    };
    running.retain(|_, job| job.task != task);
}

fn subscribe<T: Clone>(
    subscription: Result<Subscription<T>, rje_bus::BusError>,
    what: &str,
) -> Option<Subscription<T>> {
    match subscription {
        Ok(subscription) => Some(subscription),
        Err(err) => {
            // Polling and lease renewals still find work and cancels.
            tracing::warn!(%err, what, "bus subscription failed; relying on the store");
            None
        }
    }
}

/// The next message of an optional subscription; pending for ever when
/// there is none, so a `select!` branch on it simply never fires.
async fn next<T: Clone>(subscription: &mut Option<Subscription<T>>) -> Received<T> {
    match subscription {
        Some(subscription) => subscription.recv().await,
        None => std::future::pending().await,
    }
}
