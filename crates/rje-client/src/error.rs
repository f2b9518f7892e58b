//! What can go wrong in the client, and the exit code each stands for.

use std::fmt;

/// The exit codes of the `rje` client. Scripts rely on them, so they are
/// fixed and documented in docs/CLI.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(pub i32);

impl ExitCode {
    pub const SUCCESS: ExitCode = ExitCode(0);
    /// A run (`rje run`, `rje runs watch`) ended with some host not
    /// succeeded: failed, timed out, unreachable, refused, skipped, or
    /// cancelled on its own. Not 2, which clap gives a bad command line;
    /// 3, near Ansible's 2 ("a host failed") without being taken for it.
    pub const HOSTS_FAILED: ExitCode = ExitCode(3);
    /// The server refused the input (400, 413, 415).
    pub const BAD_INPUT: ExitCode = ExitCode(65);
    /// No such job (404).
    pub const NOT_FOUND: ExitCode = ExitCode(66);
    /// Not allowed in the job's state (409).
    pub const CONFLICT: ExitCode = ExitCode(67);
    /// The server could not be reached, or is unavailable (503); for
    /// `tokens create --local`, the database.
    pub const UNREACHABLE: ExitCode = ExitCode(69);
    /// The server failed or answered something unexpected.
    pub const SERVER_ERROR: ExitCode = ExitCode(70);
    /// Missing or wrong token (401).
    pub const UNAUTHORIZED: ExitCode = ExitCode(77);
    /// The job timed out.
    pub const TIMED_OUT: ExitCode = ExitCode(124);
    /// The job failed without an exit code of its own (it could not start,
    /// or its worker was lost).
    pub const JOB_ERROR: ExitCode = ExitCode(125);
    /// The job was cancelled, or the client interrupted with Ctrl-C.
    pub const CANCELLED: ExitCode = ExitCode(130);
    /// The client's output was closed (`| head`): the status a shell gives
    /// a command ended by SIGPIPE.
    pub const OUTPUT_CLOSED: ExitCode = ExitCode(128 + 13);
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Everything that can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the rje server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server is unavailable: {0}")]
    Unavailable(String),
    #[error("the server refused the token (set --token or RJE_TOKEN): {0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the server failed: {0}")]
    Server(String),
    #[error("{0}")]
    Config(String),
    /// The database of `tokens create --local` cannot be opened or
    /// written.
    #[error("{0}")]
    Store(String),
    /// Whoever read the output went away: nothing to say, nobody to say it
    /// to.
    #[error("the output was closed")]
    OutputClosed,
}

impl ClientError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Unavailable(_)
            | ClientError::Store(_) => ExitCode::UNREACHABLE,
            ClientError::Unauthorized(_) => ExitCode::UNAUTHORIZED,
            ClientError::NotFound(_) => ExitCode::NOT_FOUND,
            ClientError::BadInput(_) | ClientError::Config(_) => ExitCode::BAD_INPUT,
            ClientError::Conflict(_) => ExitCode::CONFLICT,
            ClientError::Server(_) => ExitCode::SERVER_ERROR,
            ClientError::OutputClosed => ExitCode::OUTPUT_CLOSED,
        }
    }
}
