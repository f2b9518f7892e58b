//! A pool of connections per host. Channels share a connection up to the
//! host's `max_sessions`; past that (or when the server refuses a channel,
//! as OpenSSH does past its `MaxSessions`) the pool opens another
//! connection. Failed connects back off, and while they do, callers get the
//! last error at once instead of each trying again.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rje_domain::{HealthState, HostHealth};
use russh::Channel;
use russh::client::Msg;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::HostConfig;
use crate::connection::{SshHandle, connect, describe_russh};
use crate::error::SshError;

/// Tries to get a channel before giving up on one request.
const CHANNEL_TRIES: usize = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

struct Connection {
    handle: SshHandle,
    slots: Arc<Semaphore>,
    /// The slots it was opened with.
    capacity: usize,
    /// Counts the times it became idle; an idle timer that finds the count
    /// moved on knows the connection was used meanwhile.
    idled: AtomicU64,
    /// The server refused a channel: skip this connection until one of its
    /// channels closes.
    full: AtomicBool,
}

/// A channel and the session slot it holds on its connection.
pub struct ChannelLease {
    pub(crate) channel: Channel<Msg>,
    connection: Arc<Connection>,
    in_use: Arc<AtomicUsize>,
    idle_timeout: Duration,
    _slot: OwnedSemaphorePermit,
}

impl Drop for ChannelLease {
    fn drop(&mut self) {
        let connection = &self.connection;
        connection.full.store(false, Ordering::Release);
        self.in_use.fetch_sub(1, Ordering::AcqRel);
        // The slot is released after this, as the fields drop.
        let last = connection.slots.available_permits() + 1 == connection.capacity;
        if last && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let generation = connection.idled.fetch_add(1, Ordering::AcqRel) + 1;
            runtime.spawn(close_when_idle(
                connection.clone(),
                generation,
                self.idle_timeout,
            ));
        }
    }
}

/// Closes a connection that stayed without channels for `after`.
async fn close_when_idle(connection: Arc<Connection>, generation: u64, after: Duration) {
    tokio::time::sleep(after).await;
    if connection.idled.load(Ordering::Acquire) != generation {
        return;
    }
    // Holding every slot keeps new channels off it while it closes; a job
    // that finds it closing takes another connection.
    let Ok(all) = connection
        .slots
        .try_acquire_many(u32::try_from(connection.capacity).unwrap_or(u32::MAX))
    else {
        return;
    };
    all.forget();
    tracing::debug!("closing an idle connection");
    let _ = connection
        .handle
        .disconnect(russh::Disconnect::ByApplication, "idle", "en")
        .await;
}

impl ChannelLease {
    /// Closes the channel, so that the server frees its session: a channel
    /// that is only dropped keeps one of sshd's `MaxSessions`.
    pub async fn close(self) {
        let _ = self.channel.close().await;
    }
}

/// Leave to run one job on the host (its concurrency limit).
pub struct JobPermit {
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug, Default)]
struct Failures {
    consecutive: u32,
    retry_at: Option<Instant>,
    last: Option<SshError>,
}

/// What this process has seen of a host, besides what the counters say.
#[derive(Debug, Clone, Default)]
struct Seen {
    connections: usize,
    last_connected_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    /// `Some(true)` after a success, `Some(false)` after a failure, `None`
    /// before either.
    reachable: Option<bool>,
    /// Attempts to connect (or check) that failed, since the start.
    connect_failures: u64,
}

pub struct HostPool {
    host: Arc<HostConfig>,
    jobs: Arc<Semaphore>,
    connections: tokio::sync::Mutex<Vec<Arc<Connection>>>,
    /// Held while a connection is being opened.
    connecting: tokio::sync::Mutex<()>,
    in_use: Arc<AtomicUsize>,
    failures: Mutex<Failures>,
    health: Mutex<Seen>,
    opened: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HostPool {
    /// Limits below 1 (possible only for a `HostConfig` built in code; the
    /// settings refuse them) are raised to 1: a zero limit would make every
    /// job wait for ever.
    pub fn new(host: Arc<HostConfig>) -> Self {
        let host = if host.max_concurrent_jobs == 0 || host.max_sessions == 0 {
            let mut fixed = (*host).clone();
            fixed.max_concurrent_jobs = fixed.max_concurrent_jobs.max(1);
            fixed.max_sessions = fixed.max_sessions.max(1);
            Arc::new(fixed)
        } else {
            host
        };
        Self {
            jobs: Arc::new(Semaphore::new(host.max_concurrent_jobs)),
            host,
            connections: tokio::sync::Mutex::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
            in_use: Arc::new(AtomicUsize::new(0)),
            failures: Mutex::new(Failures::default()),
            health: Mutex::new(Seen::default()),
            opened: AtomicU64::new(0),
        }
    }

    pub fn host(&self) -> &Arc<HostConfig> {
        &self.host
    }

    /// Waits for the host's concurrency limit to let one more job run.
    pub async fn job_permit(&self) -> JobPermit {
        let permit = self
            .jobs
            .clone()
            .acquire_owned()
            .await
            // The semaphore lives as long as the pool and is never closed.
            .expect("the job semaphore is never closed");
        JobPermit { _permit: permit }
    }

    /// Connections opened since the pool was made.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> HostHealth {
        let mut seen = lock(&self.health).clone();
        if let Ok(connections) = self.connections.try_lock() {
            seen.connections = connections.iter().filter(|c| !c.handle.is_closed()).count();
        }
        HostHealth {
            state: match seen.reachable {
                Some(true) => HealthState::Up,
                Some(false) => HealthState::Down,
                None => HealthState::Unknown,
            },
            connections: seen.connections,
            channels_in_use: self.in_use.load(Ordering::Acquire),
            jobs_running: self.host.max_concurrent_jobs - self.jobs.available_permits(),
            last_connected_at: seen.last_connected_at,
            last_error: seen.last_error,
            last_error_at: seen.last_error_at,
            connect_failures: seen.connect_failures,
        }
    }

    /// Records what a check outside the pool learned.
    pub fn record(&self, result: Result<(), &SshError>) {
        let mut health = lock(&self.health);
        match result {
            Ok(()) => {
                health.reachable = Some(true);
                health.last_connected_at = Some(Utc::now());
            }
            Err(err) => {
                health.reachable = Some(false);
                health.connect_failures += 1;
                health.last_error = Some(err.to_string());
                health.last_error_at = Some(Utc::now());
            }
        }
    }

    /// A new channel, on a connection with room for it.
    pub async fn channel(&self) -> Result<ChannelLease, SshError> {
        let mut last_refusal = String::new();
        for _ in 0..CHANNEL_TRIES {
            let (connection, slot) = self.reserve().await?;
            match connection.handle.channel_open_session().await {
                Ok(channel) => {
                    self.in_use.fetch_add(1, Ordering::AcqRel);
                    return Ok(ChannelLease {
                        channel,
                        connection,
                        in_use: self.in_use.clone(),
                        idle_timeout: self.host.idle_timeout,
                        _slot: slot,
                    });
                }
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    // OpenSSH refuses sessions past its MaxSessions; use
                    // another connection until this one frees a channel.
                    tracing::debug!(host = %self.host.name, ?reason, "channel refused; connection full");
                    connection.full.store(true, Ordering::Release);
                    last_refusal = format!("the host refused a channel ({reason:?})");
                }
                Err(err) => {
                    tracing::debug!(host = %self.host.name, %err, "connection lost; dropping it");
                    last_refusal = describe_russh(&err);
                    self.discard(&connection).await;
                }
            }
        }
        Err(SshError::Channel {
            host: self.host.name.clone(),
            message: format!("no channel after {CHANNEL_TRIES} tries: {last_refusal}"),
        })
    }

    async fn discard(&self, dead: &Arc<Connection>) {
        let mut connections = self.connections.lock().await;
        connections.retain(|c| !Arc::ptr_eq(c, dead));
        lock(&self.health).connections = connections.len();
    }

    /// A session slot on an open connection, opening one if none has room.
    async fn reserve(&self) -> Result<(Arc<Connection>, OwnedSemaphorePermit), SshError> {
        if let Some(found) = self.free_slot().await {
            return Ok(found);
        }
        // One connect at a time per host: the others wait here and then
        // take slots on the connection it opened. The list itself stays
        // unlocked meanwhile, so channels of open connections (a kill's)
        // never wait for a slow connect.
        let _connecting = self.connecting.lock().await;
        if let Some(found) = self.free_slot().await {
            return Ok(found);
        }
        self.wait_out_backoff()?;
        let handle = match connect(&self.host).await {
            Ok(handle) => handle,
            Err(err) => {
                self.connect_failed(&err);
                return Err(err);
            }
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        *lock(&self.failures) = Failures::default();
        let connection = Arc::new(Connection {
            handle,
            slots: Arc::new(Semaphore::new(self.host.max_sessions)),
            capacity: self.host.max_sessions,
            idled: AtomicU64::new(0),
            full: AtomicBool::new(false),
        });
        let slot = connection
            .slots
            .clone()
            .try_acquire_owned()
            // A new connection has max_sessions ≥ 1 free slots.
            .expect("a new connection has a free slot");
        let mut connections = self.connections.lock().await;
        connections.push(connection.clone());
        {
            let mut health = lock(&self.health);
            health.connections = connections.len();
            health.reachable = Some(true);
            health.last_connected_at = Some(Utc::now());
        }
        tracing::debug!(host = %self.host.name, connections = connections.len(), "opened a connection");
        Ok((connection, slot))
    }

    /// A free session slot on an open connection, dropping closed ones.
    async fn free_slot(&self) -> Option<(Arc<Connection>, OwnedSemaphorePermit)> {
        let mut connections = self.connections.lock().await;
        connections.retain(|c| !c.handle.is_closed());
        lock(&self.health).connections = connections.len();
        connections
            .iter()
            .filter(|c| !c.full.load(Ordering::Acquire))
            .find_map(|c| {
                let slot = c.slots.clone().try_acquire_owned().ok()?;
                Some((c.clone(), slot))
            })
    }

    /// While a failed host is backing off, fail at once with its error.
    fn wait_out_backoff(&self) -> Result<(), SshError> {
        let failures = lock(&self.failures);
        match (&failures.retry_at, &failures.last) {
            (Some(at), Some(last)) if Instant::now() < *at => Err(last.clone()),
            _ => Ok(()),
        }
    }

    fn connect_failed(&self, err: &SshError) {
        let mut failures = lock(&self.failures);
        failures.consecutive = failures.consecutive.saturating_add(1);
        let exponent = failures.consecutive.saturating_sub(1).min(16);
        let backoff = (FIRST_BACKOFF * 2u32.pow(exponent)).min(MAX_BACKOFF);
        failures.retry_at = Some(Instant::now() + backoff);
        failures.last = Some(err.clone());
        drop(failures);
        tracing::warn!(host = %self.host.name, %err, ?backoff, "connecting failed");
        self.record(Err(err));
    }
}
