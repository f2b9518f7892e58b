//! One `rje serve` process: the store, the bus, the worker and the API,
//! started together and stopped gracefully.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Request;
use axum::serve::ListenerExt;
use chrono::Utc;
use nix::fcntl::{Flock, FlockArg};
use rje_api::AppState;
use rje_bus::{Bus, MemoryBus, RedisBus};
use rje_ssh::Hosts;
use rje_store::{JobStore, PostgresStore, SqliteStore, StoreError};
use rje_worker::{Executors, Worker};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {0} without an API token: set RJE_API_TOKENS to one or more \
         comma-separated tokens, or bind to a loopback address such as 127.0.0.1"
    )]
    Unprotected(SocketAddr),
    #[error("cannot open the job store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "{0} is in use by another rje process; the embedded SQLite store belongs to one \
         process (run the distributed deployment for more)"
    )]
    Locked(PathBuf),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Task(String),
    #[error("cannot connect to the bus: {0}")]
    Bus(String),
    #[error(
        "{0} needs PostgreSQL: the embedded SQLite store belongs to one process; set \
         RJE_DATABASE_URL=postgres://…"
    )]
    NeedsPostgres(&'static str),
}

/// Opens the store the URL names. For the embedded SQLite store, also takes
/// the lock that says this process owns it.
async fn open_store(
    settings: &Settings,
) -> Result<(Arc<dyn JobStore>, Option<Flock<File>>), ServerError> {
    let url = &settings.database_url;
    if is_postgres(url) {
        let store = PostgresStore::open(url, settings.auto_migrate).await?;
        return Ok((Arc::new(store), None));
    }
    if !settings.run_api {
        return Err(ServerError::NeedsPostgres("a worker-only process"));
    }
    let lock = lock_embedded_store(url)?;
    Ok((Arc::new(SqliteStore::open(url).await?), lock))
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Applies the store's migrations (`rje migrate`).
pub async fn migrate(database_url: &str) -> Result<(), ServerError> {
    if is_postgres(database_url) {
        PostgresStore::open(database_url, true).await?;
    } else {
        // Opening the SQLite store applies its migrations.
        SqliteStore::open(database_url).await?;
    }
    Ok(())
}

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
    /// Opens the store and the bus, starts the worker, binds and serves.
    pub async fn start(settings: Settings) -> Result<Self, ServerError> {
        if settings.run_api && settings.api.tokens.is_empty() && !settings.bind.ip().is_loopback() {
            return Err(ServerError::Unprotected(settings.bind));
        }
        let (store, lock) = open_store(&settings).await?;
        let bus: Arc<dyn Bus> = match &settings.redis_url {
            None => Arc::new(MemoryBus::new()),
            Some(url) => Arc::new(
                RedisBus::connect(url, &settings.bus_namespace)
                    .await
                    .map_err(|err| ServerError::Bus(err.to_string()))?,
            ),
        };

        if lock.is_some() {
            // This process owns the embedded store (the lock says so): any
            // job still Running was left by a process that died. Settle it
            // now rather than when its lease would have expired.
            let reaped = store
                .reap_expired(Utc::now() + chrono::Duration::days(36500))
                .await?;
            for job in &reaped {
                tracing::warn!(id = %job.id, status = %job.status, "settled a job left running by a previous process");
            }
        }

        let listener = if settings.run_api {
            let listener =
                TcpListener::bind(settings.bind)
                    .await
                    .map_err(|source| ServerError::Bind {
                        addr: settings.bind,
                        source,
                    })?;
            Some(listener)
        } else {
            None
        };
        let addr = listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(|source| ServerError::Bind {
                addr: settings.bind,
                source,
            })?;

        let hosts = Arc::new(Hosts::new(settings.inventory.clone(), settings.kill_grace));
        let mut api_settings = settings.api.clone();
        api_settings.hosts = hosts.names();
        let shutdown = CancellationToken::new();
        let worker = if settings.run_worker {
            let executors = hosts.executors().into_iter().fold(
                Executors::new(hosts.default_host()),
                |all, (name, executor)| all.with(name, executor),
            );
            let worker = Worker::new(
                store.clone(),
                bus.clone(),
                executors,
                settings.worker.clone(),
            );
            // Registered before the process says it runs, so that /ready
            // and /workers/ count it from then on.
            worker.register().await;
            Some(tokio::spawn(worker.run(shutdown.clone())))
        } else {
            None
        };
        let state = AppState {
            store,
            bus,
            hosts,
            settings: Arc::new(api_settings),
        };
        let serve = listener.map(|listener| {
            let app = rje_api::app(state);
            // Small messages (a status, a WebSocket close) must not wait for
            // the peer's delayed ACK: Nagle's algorithm off.
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(%err, "could not set TCP_NODELAY");
                }
            });
            axum::serve(
                listener,
                axum::ServiceExt::<Request>::into_make_service(app),
            )
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        });
        let worker_done = shutdown.clone();
        let task = tokio::spawn(async move {
            match serve {
                Some(serve) => {
                    if let Err(err) = serve.await {
                        tracing::error!(%err, "the HTTP server failed");
                    }
                }
                // A worker-only process runs until told to stop.
                None => worker_done.cancelled().await,
            }
            if let Some(worker) = worker
                && let Err(err) = worker.await
            {
                tracing::error!(%err, "the worker failed");
            }
            drop(lock);
        });
        match addr {
            Some(addr) => tracing::info!(%addr, "rje is serving"),
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

/// The embedded store belongs to one process: a second `rje serve` on the
/// same file would have two workers reaping each other's jobs. An advisory
/// lock beside the database makes that a clear error instead.
fn lock_embedded_store(database_url: &str) -> Result<Option<Flock<File>>, ServerError> {
    let Some(path) = sqlite_path(database_url) else {
        return Ok(None);
    };
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ServerError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| ServerError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(ServerError::Locked(path)),
        Err((_, errno)) => Err(ServerError::Lock {
            path: lock_path,
            source: errno.into(),
        }),
    }
}

/// The file behind a `sqlite:` URL; `None` for an in-memory database.
fn sqlite_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://rje.db"),
            Some(PathBuf::from("rje.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/rje/rje.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/rje/rje.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }
}
