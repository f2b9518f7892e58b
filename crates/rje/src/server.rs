//! One `rje serve` process: the store, the bus, the worker and the API,
//! started together and stopped gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use rje_api::{AllowedHosts, AppState};
use rje_bus::{Bus, MemoryBus, RedisBus};
use rje_worker::Worker;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Settings;
pub use crate::error::ServerError;
use crate::hosts::Hosts;
use crate::store::{self, OpenedStore};

pub use crate::store::{is_postgres, migrate, store_mark};

/// A server that is up and answering.
pub struct RunningServer {
    /// Where the API listens; `None` for a worker-only process.
    addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Drop for RunningServer {
    /// A server dropped without [`RunningServer::stop`] still shuts down.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl RunningServer {
    /// Opens the store and the bus, binds, starts the worker, and serves.
    pub async fn start(settings: Settings) -> Result<Self, ServerError> {
        // Before the worker runs, so that nothing it counts is lost.
        rje_api::install_metrics();
        // Every process: the worker's jobs hold pipes and connections, the
        // API's clients sockets.
        let descriptors = crate::http::raise_descriptor_limit();
        let opened = store::open_store(&settings).await?;
        let tokens_in_store = settings.run_api
            && opened
                .store
                .has_tokens()
                .await
                .map_err(ServerError::Store)?;
        refuse_unprotected(&settings, tokens_in_store)?;
        let bus = connect_bus(&settings).await?;
        let listener = bind(&settings).await?;
        let addr = listener.as_ref().map(|(_, addr)| *addr);
        let hosts = Arc::new(Hosts::from_settings(&settings, settings.run_worker)?);
        let shutdown = CancellationToken::new();
        let schedule_changed = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(
            crate::scheduler::Scheduler {
                store: opened.store.clone(),
                bus: bus.clone(),
                limits: settings.api.limits.clone(),
                hosts: hosts.names(),
                changed: schedule_changed.clone(),
                reload_every: settings.schedule_reload,
            }
            .run(shutdown.clone()),
        );
        tokio::spawn(crate::retention::run(
            opened.store.clone(),
            settings.retention,
            rje_domain::WorkerId::generate().0,
            shutdown.clone(),
        ));
        let worker = if settings.run_worker {
            Some(start_worker(&settings, &opened, &bus, &hosts, &shutdown).await)
        } else {
            if opened.is_sole() {
                rje_worker::settle_left_running(&*opened.store).await?;
            }
            None
        };
        let serve = listener.map(|(listener, _)| {
            let mut api_settings = settings.api.clone();
            api_settings.hosts = hosts.names();
            api_settings.tokens_in_store = tokens_in_store;
            if tokens_in_store && api_settings.allowed_hosts == AllowedHosts::LoopbackAnd(vec![]) {
                // Tokens are asked for: no rebinding page has one.
                api_settings.allowed_hosts = AllowedHosts::Any;
            }
            tokio::spawn(housekeeping(
                opened.store.clone(),
                api_settings.audit_retention,
                api_settings.idempotency_window,
                shutdown.clone(),
            ));
            let mut state = AppState::new(opened.store.clone(), bus, hosts, api_settings);
            state.schedule_changed = schedule_changed;
            let limits = settings.connections.within_descriptor_limit(descriptors);
            let app = rje_api::app(state.clone());
            let shutdown = shutdown.clone();
            async move {
                crate::http::serve(listener, app, limits, shutdown).await;
                // Changes answered or under way when the listener closed
                // get their audit entries before the store goes.
                state.settle_changes(AUDIT_SETTLE).await;
            }
        });
        let task = tokio::spawn(run_until_stopped(serve, worker, opened, shutdown.clone()));
        match addr {
            Some(addr) => {
                tracing::info!(%addr, dashboard = %format!("http://{addr}/ui/"), "rje is serving")
            }
            None => tracing::info!("rje is running jobs"),
        }
        Ok(Self {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// Where the API listens.
    ///
    /// # Panics
    /// On a worker-only process, which has no API; see [`Self::api_addr`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .expect("invariant: addr() is only called on a process serving the API")
    }

    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Stops accepting requests and claiming jobs, lets running jobs finish
    /// within their grace, and returns once everything is settled.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(|err| ServerError::Task(err.to_string())),
            None => Ok(()),
        }
    }
}

/// How long the record of a schedule's fire time is kept.
const FIRE_RECORDS_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How long a stopping server waits for the audit entries of the changes
/// under way.
const AUDIT_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// A server without tokens (configured, or in the store) answers anyone
/// who reaches it: only on a loopback address.
fn refuse_unprotected(settings: &Settings, tokens_in_store: bool) -> Result<(), ServerError> {
    if settings.run_api
        && settings.api.tokens.is_empty()
        && !tokens_in_store
        && !settings.bind.ip().is_loopback()
    {
        return Err(ServerError::Unprotected(settings.bind));
    }
    Ok(())
}

/// Removes, now and hourly until the server stops, the audit entries older
/// than `audit_retention` (none: kept) and the idempotency keys older than
/// `idempotency_window`. Every API process does: a second prune finds
/// nothing.
async fn housekeeping(
    store: Arc<dyn rje_store::JobStore>,
    audit_retention: Option<std::time::Duration>,
    idempotency_window: std::time::Duration,
    shutdown: CancellationToken,
) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
    let before = |kept: std::time::Duration| {
        chrono::TimeDelta::from_std(kept)
            .ok()
            .and_then(|kept| chrono::Utc::now().checked_sub_signed(kept))
    };
    let mut every = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Some(before) = audit_retention.and_then(before) {
            match store.prune_audit(before).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned the audit trail"),
                Err(err) => tracing::warn!(%err, "could not prune the audit trail"),
            }
        }
        if let Some(before) = before(idempotency_window)
            && let Err(err) = store.prune_idempotency_keys(before).await
        {
            tracing::warn!(%err, "could not prune the idempotency keys");
        }
        // A fire record matters only while processes may still contend
        // for its fire time; a day is far past that.
        if let Some(before) = before(FIRE_RECORDS_KEPT)
            && let Err(err) = store.prune_fires(before).await
        {
            tracing::warn!(%err, "could not prune the schedules' fire records");
        }
    }
}

/// The bus the settings name: Redis, or the one in this process.
async fn connect_bus(settings: &Settings) -> Result<Arc<dyn Bus>, ServerError> {
    Ok(match &settings.redis_url {
        None => Arc::new(MemoryBus::new()),
        Some(url) => Arc::new(
            RedisBus::connect(url, &settings.bus_namespace)
                .await
                .map_err(|err| ServerError::Bus(err.to_string()))?,
        ),
    })
}

/// The API's listener and its address; `None` for a worker-only process.
async fn bind(settings: &Settings) -> Result<Option<(TcpListener, SocketAddr)>, ServerError> {
    if !settings.run_api {
        return Ok(None);
    }
    let bind_error = |cause| ServerError::Bind {
        addr: settings.bind,
        cause,
    };
    let listener = TcpListener::bind(settings.bind).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok(Some((listener, addr)))
}

/// Starts the worker, registered (so that /ready and /workers/ count it)
/// and, on a store only this process uses, with what a previous process
/// left running taken up or settled first: a job it answers for is never
/// shown Running by nobody once the process says it is up.
async fn start_worker(
    settings: &Settings,
    opened: &OpenedStore,
    bus: &Arc<dyn Bus>,
    hosts: &Hosts,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let mut worker = Worker::new(
        opened.store.clone(),
        bus.clone(),
        hosts.executors(),
        settings.worker.clone(),
    );
    if opened.is_sole() {
        worker.recover_sole_store().await;
    }
    worker.register().await;
    tokio::spawn(worker.run(shutdown.clone()))
}

/// Serves until told to stop (a worker-only process just waits), then
/// waits for the worker to settle its jobs; the store's lock goes last.
async fn run_until_stopped(
    serve: Option<impl Future<Output = ()>>,
    worker: Option<JoinHandle<()>>,
    opened: OpenedStore,
    shutdown: CancellationToken,
) {
    match serve {
        Some(serve) => serve.await,
        None => shutdown.cancelled().await,
    }
    if let Some(worker) = worker
        && let Err(err) = worker.await
    {
        tracing::error!(%err, "the worker failed");
    }
    drop(opened);
}
