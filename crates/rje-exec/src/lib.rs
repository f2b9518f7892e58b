//! Runs commands. An [`Executor`] starts a command in its own process group,
//! feeds its output to a sink as it comes, and ends it on timeout or cancel
//! by killing the whole group and confirming that the group is gone.

pub mod durable;
mod durable_local;
mod group;
mod job_env;
mod local;
mod supervisor;

use std::time::Duration;

use async_trait::async_trait;
use rje_domain::{ExecParameters, Outcome, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use durable_local::{DurableLocalExecutor, Unlaunched};
pub use group::{GroupState, group_state};
pub use job_env::{JobEnvError, JobEnvironment, is_rje_setting};
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
    /// This many bytes of the stream, next in order, are gone: given back
    /// while no worker followed the command, because the output cap would
    /// have dropped them anyway (see [`durable::Spec::max_output_bytes`]).
    Skipped { stream: Stream, bytes: u64 },
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

    /// The job's attempt this start is for, when it is a job's: a durable
    /// executor records it beside the command, before the gate opens, so
    /// that a worker that later proves the command never started queues
    /// the job again at exactly that attempt (see
    /// [`durable::Spec::attempt`]).
    fn attempt(&self) -> Option<u32> {
        None
    }
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

/// Why a job cannot be taken up again.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Nothing of the job is where it would be: it never started there,
    /// or its files were removed.
    #[error("the job was never started there (no {0})")]
    NotStarted(String),
    #[error("the machine rebooted while the command ran")]
    Rebooted,
    #[error("the job's supervisor died before the command ended")]
    SupervisorLost,
    /// The job's machine cannot be reached now; another try may succeed.
    #[error("cannot reach the job's machine: {0}")]
    Unreachable(String),
    #[error("cannot read the job's directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs commands under supervisors that outlive the worker: each run is
/// keyed by its job, and a later worker takes it up again by that key.
#[async_trait]
pub trait DurableExecutor: Send + Sync + 'static {
    /// Starts `request` as the job `key` and follows it to its end. A key
    /// that was started before is never started again.
    async fn run_keyed(
        &self,
        key: &str,
        request: ExecRequest,
        gate: &dyn StartGate,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, StartError>;

    /// Takes up the job `key` again from `offsets` (bytes of stdout and
    /// stderr already delivered), after the process that followed it went
    /// away. A cancel already asked for is carried out at once.
    async fn resume(
        &self,
        key: &str,
        offsets: [u64; 2],
        timeout: Duration,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, ResumeError>;

    /// Removes what is kept of the job once its result is stored.
    async fn forget(&self, key: &str);

    /// Whether the command of job `key`, whose worker is gone (its lease
    /// expired), provably never started on its machine, and if so makes
    /// sure it never will: its launch is claimed as abandoned there, so
    /// that the worker, should it only have stalled, launches nothing. By
    /// default nothing proves it ([`Unlaunched::MayHaveStarted`]): the job
    /// is taken up, or settled as lost.
    async fn prove_unlaunched(&self, _key: &str) -> Unlaunched {
        Unlaunched::MayHaveStarted
    }
}
