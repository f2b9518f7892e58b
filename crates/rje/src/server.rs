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
use rje_bus::{Bus, MemoryBus};
use rje_domain::HostNames;
use rje_exec::LocalExecutor;
use rje_store::{JobStore, SqliteStore, StoreError};
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
}

/// A server that is up and answering.
pub struct RunningServer {
    addr: SocketAddr,
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
    /// Opens the store, starts the worker, binds and serves.
    pub async fn start(settings: Settings) -> Result<Self, ServerError> {
        if settings.api.tokens.is_empty() && !settings.bind.ip().is_loopback() {
            return Err(ServerError::Unprotected(settings.bind));
        }
        let lock = lock_embedded_store(&settings.database_url)?;
        let store: Arc<dyn JobStore> = Arc::new(SqliteStore::open(&settings.database_url).await?);
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());

        // This process owns the embedded store (the lock says so): any job
        // still Running was left by a process that died. Settle it now.
        let reaped = store
            .reap_expired(Utc::now() + chrono::Duration::days(36500))
            .await?;
        for job in &reaped {
            tracing::warn!(id = %job.id, status = %job.status, "settled a job left running by a previous process");
        }

        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: settings.bind,
            source,
        })?;

        let shutdown = CancellationToken::new();
        let worker = settings.run_worker.then(|| {
            let executors = Executors::new(HostNames::LOCAL).with(
                HostNames::LOCAL,
                Arc::new(LocalExecutor::new(settings.kill_grace)),
            );
            let worker = Worker::new(
                store.clone(),
                bus.clone(),
                executors,
                settings.worker.clone(),
            );
            tokio::spawn(worker.run(shutdown.clone()))
        });
        let state = AppState {
            store,
            bus,
            settings: Arc::new(settings.api.clone()),
        };
        let app = rje_api::app(state);
        // Small messages (a status, a WebSocket close) must not wait for
        // the peer's delayed ACK: Nagle's algorithm off.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "could not set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            axum::ServiceExt::<Request>::into_make_service(app),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(err) = serve.await {
                tracing::error!(%err, "the HTTP server failed");
            }
            if let Some(worker) = worker
                && let Err(err) = worker.await
            {
                tracing::error!(%err, "the worker failed");
            }
            drop(lock);
        });
        tracing::info!(%addr, "rje is serving");
        Ok(Self {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
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
