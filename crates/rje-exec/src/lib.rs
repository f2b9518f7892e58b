//! Runs commands. An [`Executor`] starts a command in its own process group,
//! feeds its output to a sink as it comes, and ends it on timeout or cancel
//! by killing the whole group and confirming that the group is gone.

pub mod durable;
mod durable_local;
mod group;
mod local;
mod supervisor;

use std::time::Duration;

use async_trait::async_trait;
use rje_domain::{ExecParameters, Outcome, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use durable_local::{DurableLocalExecutor, ResumeError};
pub use group::{GroupState, group_state};
pub use local::LocalExecutor;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub command: String,
    pub timeout: Duration,
    pub parameters: ExecParameters,
}

/// What an executor reports while the command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// The command started as this process group.
    Started { process_id: String },
    /// Bytes the command wrote, in the order they were read per stream.
    Output { stream: Stream, bytes: Vec<u8> },
}

/// The command never started: nothing ran, so trying again is safe.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    pub message: String,
    /// An infrastructure failure that may pass (a host down, a refused
    /// connection), which the retry rule covers; `false` for a mistake in
    /// the job itself, which no retry can fix.
    pub retryable: bool,
}

/// Opened by an executor right before it launches the command, once
/// everything else (a connection, a session) is ready. The worker records
/// there that the command may have started, so that a command never runs
/// without that record: a lost worker's job is then failed, not run again.
#[async_trait]
pub trait StartGate: Send + Sync {
    /// `Err` means the command must not be launched.
    async fn open(&self) -> Result<(), StartError>;
}

/// A gate that is always open, for running commands outside a job.
pub struct NoGate;

#[async_trait]
impl StartGate for NoGate {
    async fn open(&self) -> Result<(), StartError> {
        Ok(())
    }
}

/// Runs commands somewhere.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs `request` to its end, opening `gate` just before the launch.
    /// Events go to `sink`, whose bounded buffer slows the reading of
    /// output when the consumer falls behind, so a flood never grows
    /// memory. `cancel` ends the run early.
    async fn run(
        &self,
        request: ExecRequest,
        gate: &dyn StartGate,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, StartError>;
}
