//! What handlers share: the store's client face, the bus, the hosts and
//! the API's settings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::HeaderValue;
use ipnet::IpNet;
use rje_bus::Bus;
use rje_domain::{CheckReport, HostNames, HostStatus, Limits};
use rje_proto::JobStatsResponse;
use rje_store::{Access, Jobs};

use crate::AllowedHosts;

/// The hosts a process knows, as the API reads them: whatever runs the
/// jobs provides this.
#[async_trait]
pub trait HostDirectory: Send + Sync {
    fn list(&self) -> Vec<HostStatus>;
    /// Connects, authenticates and runs `true`; `None` for an unknown host.
    async fn check(&self, name: &str) -> Option<CheckReport>;
}

/// The listener's hold on one of its connection slots, handed to each
/// request. A WebSocket keeps it for as long as it lives: an upgraded
/// connection still holds a socket and a descriptor, so it counts against
/// `RJE_MAX_CONNECTIONS` like any other.
#[derive(Clone)]
pub struct ConnectionSlot(pub Arc<tokio::sync::OwnedSemaphorePermit>);

/// What every handler may use, passed explicitly through axum's `State`.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Jobs>,
    /// Tokens and the audit trail: the same store, by its access face.
    pub access: Arc<dyn Access>,
    /// Schedules: the same store, by its schedules face.
    pub schedules: Arc<dyn rje_store::Schedules>,
    /// Deleting finished jobs: the same store, by its retention face.
    pub retention: Arc<dyn rje_store::Retention>,
    /// Runs over many hosts: the same store, by its runs face.
    pub runs: Arc<dyn rje_store::Runs>,
    /// Told when a schedule is made, changed or deleted here, so that
    /// this process's scheduler reads the schedules again at once.
    pub schedule_changed: Arc<tokio::sync::Notify>,
    pub bus: Arc<dyn Bus>,
    /// The hosts jobs run on, for `/hosts/`.
    pub hosts: Arc<dyn HostDirectory>,
    pub settings: Arc<ApiSettings>,
    /// Who presents which token.
    pub(crate) authentication: Arc<crate::auth::Authentication>,
    /// How a request's client address is read (behind trusted proxies).
    pub(crate) clients: crate::rate_limit::ClientKeys,
    /// Writes the audit trail in batches.
    pub(crate) audit: crate::audit::AuditWriter,
    /// `GET /jobs/stats/`'s last answer, shared by every caller.
    pub(crate) stats: StatsCache,
    /// Turns for reading a running job whole (see [`SnapshotReads`]).
    pub(crate) snapshots: SnapshotReads,
    /// Output messages encoded once for all of a job's subscribers.
    pub(crate) frames: Arc<crate::frames::OutputFrames>,
}

impl AppState {
    /// Waits, at most `within`, for the changes under way to have their
    /// audit entries written; for a server that stopped taking requests.
    pub async fn settle_changes(&self, within: Duration) {
        self.audit.settle(within).await;
    }

    pub fn new(
        store: Arc<dyn rje_store::JobStore>,
        bus: Arc<dyn Bus>,
        hosts: Arc<dyn HostDirectory>,
        settings: ApiSettings,
    ) -> Self {
        let authentication = Arc::new(crate::auth::Authentication::new(
            &settings.tokens,
            settings.tokens_in_store,
        ));
        let clients = crate::rate_limit::ClientKeys::new(&[], &settings.trusted_proxies);
        let access: Arc<dyn Access> = store.clone();
        let audit = crate::audit::AuditWriter::new(access.clone());
        Self {
            schedules: store.clone(),
            retention: store.clone(),
            runs: store.clone(),
            store,
            access,
            schedule_changed: Arc::new(tokio::sync::Notify::new()),
            authentication,
            clients,
            audit,
            bus,
            hosts,
            settings: Arc::new(settings),
            stats: StatsCache::default(),
            snapshots: SnapshotReads::default(),
            frames: Arc::default(),
        }
    }
}

/// A running job's `GET` body is read from the store in one piece, so
/// that it is one instant's output: up to the output cap per stream in
/// memory. A few at a time, so that a flood of such reads waits its turn
/// instead of taking the server's memory.
#[derive(Clone)]
pub struct SnapshotReads(pub(crate) Arc<tokio::sync::Semaphore>);

impl SnapshotReads {
    /// Whole reads at once, whatever the number of clients.
    pub const AT_ONCE: usize = 4;
    /// How long a read waits for its turn before it is told to come back.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
}

impl Default for SnapshotReads {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(Self::AT_ONCE)))
    }
}

/// The job counts, computed at most twice a second however many
/// dashboards ask: at a million jobs a count by status reads the whole
/// status index. Dashboards re-read at most once a second, so each read
/// finds a new count. One count per scope of hosts (`None`: every host),
/// since a scoped token sees only its hosts' jobs counted.
#[derive(Clone, Default)]
pub struct StatsCache(Arc<tokio::sync::Mutex<StatsByScope>>);

type StatsByScope = std::collections::HashMap<Option<Vec<String>>, (Instant, JobStatsResponse)>;

impl StatsCache {
    const FRESH_FOR: Duration = Duration::from_millis(500);
    /// Counts kept at once: past it, the stale ones go.
    const SCOPES: usize = 64;

    /// The cached counts of `scope` while fresh, else `count()`'s, kept.
    /// Callers that arrive during a count wait for it rather than start
    /// their own.
    pub(crate) async fn get_or_count<F, Fut, E>(
        &self,
        scope: Option<Vec<String>>,
        count: F,
    ) -> Result<JobStatsResponse, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<JobStatsResponse, E>>,
    {
        let mut cached = self.0.lock().await;
        if let Some((at, stats)) = cached.get(&scope)
            && at.elapsed() < Self::FRESH_FOR
        {
            return Ok(*stats);
        }
        let stats = count().await?;
        if cached.len() >= Self::SCOPES {
            cached.retain(|_, (at, _)| at.elapsed() < Self::FRESH_FOR);
        }
        cached.insert(scope, (Instant::now(), stats));
        Ok(stats)
    }
}

/// The API's configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub limits: Limits,
    /// Bearer tokens of the configuration (`RJE_API_TOKENS`), each an
    /// admin's. Without them and without a token in the store, no
    /// authentication (loopback only, which the server enforces at
    /// startup).
    pub tokens: Vec<String>,
    /// The store held a token when the server started: tokens are asked
    /// for from the first request.
    pub tokens_in_store: bool,
    /// Audit entries older than this are pruned; `None`: kept for ever.
    pub audit_retention: Option<Duration>,
    /// How long an `Idempotency-Key` answers the job it made.
    pub idempotency_window: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How much of each stream's output a job list carries per job.
    pub list_output_bytes: u32,
    /// How long a request may take to send its whole body.
    pub body_timeout: Duration,
    /// Hosts a job may name, and the default.
    pub hosts: HostNames,
    /// How long a cancel of a running job waits for the kill to be
    /// confirmed before answering 202.
    pub cancel_wait: Duration,
    /// A worker whose heartbeat is older than this is not counted live.
    pub worker_liveness: Duration,
    /// Requests per token (or per client address without one); `None`:
    /// unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Origins whose browser pages may call the API; empty: none.
    pub cors_origins: Vec<HeaderValue>,
    /// `Host` names requests may use: loopback ones (and those listed)
    /// when there are no tokens, so that no DNS-rebinding page reaches a
    /// token-less server.
    pub allowed_hosts: AllowedHosts,
    /// How long a WebSocket client may take to accept one message before
    /// it is dropped: a client that stops reading holds no memory or
    /// socket for longer.
    pub ws_send_timeout: Duration,
    /// `/openapi.json` and `/docs` readable without a token.
    pub public_docs: bool,
    /// `/metrics` readable without a token.
    pub public_metrics: bool,
}

/// A sustained rate with room for bursts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            tokens: Vec::new(),
            tokens_in_store: false,
            audit_retention: Some(Duration::from_secs(90 * 24 * 3600)),
            idempotency_window: Duration::from_secs(24 * 3600),
            max_body_bytes: 1024 * 1024,
            list_output_bytes: 4096,
            body_timeout: Duration::from_secs(30),
            hosts: HostNames::local_only(),
            cancel_wait: Duration::from_secs(10),
            worker_liveness: Duration::from_secs(30),
            rate_limit: None,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            allowed_hosts: AllowedHosts::LoopbackAnd(Vec::new()),
            ws_send_timeout: Duration::from_secs(30),
            public_docs: true,
            public_metrics: false,
        }
    }
}
