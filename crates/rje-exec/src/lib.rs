//! Runs commands. An [`Executor`] starts a command in its own process group,
//! feeds its output to a sink as it comes, and ends it on timeout or cancel
//! by killing the whole group and confirming that the group is gone.

pub mod durable;
mod group;
mod job_env;
mod kill;
mod local;
mod subreaper;

use std::time::Duration;

use async_trait::async_trait;
use rje_domain::{ExecParameters, Outcome, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use durable::DurableLocalExecutor;
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
    /// Why, as far as the job's outcome tells it: a host that could not be
    /// reached, or that refused rje's credentials, once no retry is left.
    pub cause: rje_domain::StartCause,
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

/// How a run ended, as its follower takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// The command ended, or was ended, this way.
    Ended(Outcome),
    /// The sink closed (nobody records the output any more) while the
    /// command ran under a supervisor that outlives its follower: it runs
    /// on, and a later worker takes it up with [`Executor::resume`].
    LetGo,
}

/// What an executor's machine proves about a job whose worker was lost.
#[derive(Debug)]
pub enum Unlaunched {
    /// The command never started, and now never will: the job may be
    /// queued again at `attempt`, the one its files were made for.
    Never { attempt: u32 },
    /// Its launch was claimed (or nothing proves it was not): the command
    /// may have started, and is taken up or settled as lost.
    MayHaveStarted,
    /// The machine could not be asked, or its files read: nothing is
    /// proven now.
    Unknown(std::io::Error),
}

/// What the store says of a job whose files an executor keeps on its
/// machine (see [`Executor::kept_jobs`]), for [`Executor::tidy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptJob {
    /// A worker follows it (its lease is live).
    Followed,
    /// It is settled, or deleted: nothing of it may run on.
    Over,
    /// The store does not know it: another store shares the machine's
    /// state directory, or this one was wiped.
    Unknown,
}

/// Runs the jobs of one host. Every run is keyed by its job's id.
///
/// A plain executor runs a command as a child of its run: it answers
/// [`Executor::is_durable`] with `false`, and the default methods below
/// say that nothing of its jobs outlives a run. A durable one starts each
/// command under a supervisor that outlives the worker, so that a later
/// worker takes the job up again by its key.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Starts `request` as the job `key`, opening `gate` just before the
    /// launch, and follows it to its end. Events go to `sink`, whose
    /// bounded buffer slows the reading of output when the consumer falls
    /// behind, so a flood never grows memory. `cancel` ends the run early.
    /// The sink closing means nobody records the output any more: a plain
    /// executor then ends the command, as a cancel does, rather than leave
    /// it running unobserved; a durable one lets it run on
    /// ([`Ran::LetGo`]). A durable key that was started before is never
    /// started again.
    async fn run(
        &self,
        key: &str,
        request: ExecRequest,
        gate: &dyn StartGate,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Ran, StartError>;

    /// Whether its commands outlive the worker that follows them, and can
    /// be taken up again with [`Executor::resume`].
    fn is_durable(&self) -> bool {
        false
    }

    /// Takes up the job `key` again from `offsets` (bytes of stdout and
    /// stderr already delivered), after the process that followed it went
    /// away. A cancel already asked for is carried out at once.
    async fn resume(
        &self,
        key: &str,
        _offsets: [u64; 2],
        _timeout: Duration,
        _sink: mpsc::Sender<ExecEvent>,
        _cancel: CancellationToken,
    ) -> Result<Ran, ResumeError> {
        Err(ResumeError::NotDurable(key.to_owned()))
    }

    /// Lets go of the job `key` once its result is stored: removes what is
    /// kept of it. Nothing is kept of a plain run.
    async fn forget(&self, _key: &str) {}

    /// Whether the command of job `key`, whose worker is gone (its lease
    /// expired), provably never started on its machine, and if so makes
    /// sure it never will: its launch is claimed as abandoned there, so
    /// that the worker, should it only have stalled, launches nothing. By
    /// default nothing proves it ([`Unlaunched::MayHaveStarted`]): the job
    /// is taken up, or settled as lost.
    async fn prove_unlaunched(&self, _key: &str) -> Unlaunched {
        Unlaunched::MayHaveStarted
    }

    /// The machine's housekeeping, first half: the jobs whose files this
    /// executor keeps and can list on its machine, for the worker to take
    /// up or tidy. `None` when it lists none itself: the store is then the
    /// index of its jobs (an SSH host's are found by the host they name).
    fn kept_jobs(&self) -> Option<Vec<String>> {
        None
    }

    /// The machine's housekeeping, second half: looks after the files of
    /// the kept job `key`, which no worker here follows, given what the
    /// store says of it: ends what may run on of a job that is `Over`, and
    /// removes files that have been quiet for `quiet`.
    async fn tidy(&self, _key: &str, _standing: KeptJob, _quiet: Duration) {}
}

/// Why a job cannot be taken up again.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Its host runs jobs plainly: nothing of the job outlived its run.
    #[error("the job {0} ran plainly: nothing of it can be taken up")]
    NotDurable(String),
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
