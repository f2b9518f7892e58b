//! The one error of a server process's start and stop, said as an operator
//! reads it: what failed, and what to set or do about it.

use std::net::SocketAddr;
use std::path::PathBuf;

use rje_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {0} without an API token: set RJE_API_TOKENS to one or more \
         comma-separated tokens, or make one with `rje tokens create NAME --role admin --local`, \
         or bind to a loopback address such as 127.0.0.1"
    )]
    Unprotected(SocketAddr),
    #[error("cannot open the job store: {0}")]
    Store(StoreError),
    // The cause is said inline and is not also a `source`: `{:#}` would
    // print it twice.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error(
        "{path} is in use by {owner}; the embedded SQLite store belongs to one process \
         (stop that one first, or run the distributed deployment for more)"
    )]
    Locked { path: PathBuf, owner: String },
    #[error("cannot lock {path}: {cause}")]
    Lock {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Task(String),
    #[error("cannot find this program to supervise local jobs with: {0}")]
    SupervisorProgram(std::io::Error),
    #[error(
        "cannot use the state directory {path} for durable jobs: {cause}; set RJE_STATE_DIR \
         to a directory this process may write, or to nothing (RJE_STATE_DIR=) to run local \
         jobs without it"
    )]
    StateDir {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    /// Another user owns it, or could plant files in it.
    #[error(transparent)]
    UnsafeStateDir(rje_exec::durable::StateDirError),
    #[error("cannot connect to the bus: {0}")]
    Bus(String),
    #[error(
        "{0} needs PostgreSQL: the embedded SQLite store belongs to one process; set \
         RJE_DATABASE_URL=postgres://…"
    )]
    NeedsPostgres(&'static str),
}

// By hand, not `#[from]`: that would make the error its source as well,
// and `{:#}` would print it twice.
impl From<StoreError> for ServerError {
    fn from(err: StoreError) -> Self {
        ServerError::Store(err)
    }
}
