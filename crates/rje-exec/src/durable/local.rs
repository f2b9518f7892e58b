//! Local execution that survives its worker: each command runs under
//! `rje supervise` (see [`crate::durable`]) in a directory of its own, and
//! the executor only follows the files. Dropping a run (the worker dies)
//! leaves the command running; [`Executor::resume`] takes it up
//! again from the byte offsets already delivered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rje_domain::{ExitReport, Outcome};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::durable::{self, CommandGroup, ExitRecord, JobDir, Launcher, Spec};
use crate::{
    ExecEvent, ExecRequest, Executor, JobEnvironment, KeptJob, Ran, ResumeError, StartError,
    StartGate, Unlaunched,
};
use async_trait::async_trait;

/// The files of a job the store does not know, made for another store
/// that shares the state directory (or by an older rje, which named no
/// store), are removed only after this long of quiet: that store's server
/// may be down for a while and come back for them, and only it can report
/// the job's end.
const FOREIGN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Runs commands on this machine under detached supervisors.
#[derive(Debug, Clone)]
pub struct DurableLocalExecutor {
    state_dir: PathBuf,
    /// Starts the supervisors, shared by the clones.
    launcher: Arc<Launcher>,
    /// The store's output cap per stream, which bounds the files (0: none).
    max_output_bytes: u64,
    grace: Duration,
    /// What every job's environment starts from: never rje's own.
    env: JobEnvironment,
    /// The store whose jobs this executor runs (see [`Spec::store`]).
    store: Option<String>,
}

impl DurableLocalExecutor {
    /// `state_dir` holds one directory per job; `grace` is the time
    /// between TERM and KILL.
    pub fn new(state_dir: PathBuf, program: PathBuf, grace: Duration) -> Self {
        Self {
            state_dir,
            launcher: Arc::new(Launcher::new(program)),
            grace,
            max_output_bytes: 0,
            env: JobEnvironment::inherited(),
            store: None,
        }
    }

    /// Jobs start from `env` (see [`JobEnvironment`]).
    pub fn with_environment(mut self, env: JobEnvironment) -> Self {
        self.env = env;
        self
    }

    /// Marks each job's files as the store `mark`'s (see [`Spec::store`]),
    /// so that another store's server sharing the state directory tells
    /// them from its own.
    pub fn with_store(mut self, mark: impl Into<String>) -> Self {
        self.store = Some(mark.into());
        self
    }

    /// Whether the files of job `key` were made for this executor's store.
    /// Files without a readable spec, or of an older rje (no mark), are
    /// not known to be: they are left to a long retention.
    pub fn is_ours(&self, key: &str) -> bool {
        matches!(self.job_dir(key).read_spec(), Ok(Some(spec)) if spec.store == self.store)
    }

    /// Keeps each job's files within about `bytes` per stream plus a
    /// margin while it runs, followed or not (see
    /// [`Spec::max_output_bytes`]).
    pub fn with_max_output_bytes(mut self, bytes: u64) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// The directory of the job named `key`.
    pub fn job_dir(&self, key: &str) -> JobDir {
        JobDir::new(self.state_dir.join("jobs").join(key))
    }

    /// The jobs whose directories are here: those a worker may take up.
    /// A link is none (it is not followed).
    pub fn known_jobs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("jobs")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect()
    }

    /// Removes the directory of a job no worker can take up (its lease is
    /// live elsewhere, or the store settled it) once it has been quiet for
    /// `grace`, when nothing of it runs any more: its end was written, or
    /// its supervisor is gone (then its group is ended first, if it
    /// provably is still the job's). Whether it was removed.
    pub async fn sweep_if_stale(&self, key: &str, grace: Duration) -> bool {
        let dir = self.job_dir(key);
        // A directory a launch left empty (it failed early) goes too, by
        // its own time.
        let newest = [dir.exit(), dir.supervisor(), dir.spec()]
            .iter()
            .map(PathBuf::as_path)
            .filter_map(modified)
            .max()
            .or_else(|| modified(dir.root()));
        let quiet = newest
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= grace);
        if !quiet {
            return false;
        }
        let ended = matches!(dir.read_exit(), Ok(Some(_)));
        if !ended {
            match dir.read_supervisor() {
                // No supervisor ever started there (it records itself
                // before the command): nothing of the job runs.
                Ok(None) => {}
                Ok(Some(_)) if matches!(durable::supervisor_died(&dir), Ok(true)) => {
                    kill_command(&dir);
                }
                _ => return false,
            }
        }
        tracing::info!(key, "removing the files of a job nobody will take up");
        self.forget(key).await;
        true
    }

    /// Whether the command of job `key`, whose worker is gone (its lease
    /// expired), provably never started here, and if so makes sure it
    /// never will: its launch is claimed as abandoned, so that its
    /// launcher, should it only have stalled, starts nothing. Blocking
    /// (a few small file operations).
    pub fn abandon_unlaunched(&self, key: &str) -> Unlaunched {
        let dir = match durable::OpenJobDir::open(&self.job_dir(key)) {
            Ok(dir) => dir,
            Err(err) => return Unlaunched::Unknown(err),
        };
        let attempt = match dir.read_spec() {
            Ok(spec) => spec.and_then(|spec| spec.attempt),
            Err(err) => return Unlaunched::Unknown(err),
        };
        // A directory of an older rje, or one made outside a job, names no
        // attempt: nothing proves which one never started.
        let Some(attempt) = attempt else {
            return Unlaunched::MayHaveStarted;
        };
        let mark = match dir.read_mark() {
            Ok(Some(mark)) => Ok(mark),
            Ok(None) => match dir.mark(durable::LaunchMark::Abandoned) {
                Ok(Ok(())) => {
                    tracing::info!(key, attempt, "gave up a launch its lost worker never made");
                    Ok(durable::LaunchMark::Abandoned)
                }
                Ok(Err(first)) => Ok(first),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        match mark {
            Ok(durable::LaunchMark::Launched) => Unlaunched::MayHaveStarted,
            // Claimed here or by a worker before (one that may have died
            // before it could queue the job again).
            Ok(durable::LaunchMark::Abandoned) => Unlaunched::Never { attempt },
            Err(err) => Unlaunched::Unknown(err),
        }
    }

    /// The store says the job `key` is over while its files are still
    /// here (it was settled by a worker elsewhere, or deleted): ends what
    /// may still run of it, if its group provably is still the job's (same
    /// boot, same leader). The files stay for
    /// [`DurableLocalExecutor::sweep_if_stale`].
    pub fn end_abandoned(&self, key: &str) {
        let dir = self.job_dir(key);
        let running = !matches!(dir.read_exit(), Ok(Some(_)));
        if running && kill_command(&dir) {
            tracing::warn!(key, "ended the command of a job the store says is over");
        }
    }

    async fn follow_to_end(
        &self,
        dir: &JobDir,
        offsets: &mut [u64; 2],
        sink: &mpsc::Sender<ExecEvent>,
        cancel: &CancellationToken,
        timeout: Duration,
    ) -> Ran {
        // Read now, while the files are sure to be there: the proof that
        // the group is the command's is kept for any later kill.
        let group = match started(dir) {
            Ok(group) => group,
            Err(message) => return Ran::Ended(Outcome::Error { message }),
        };
        let _ = sink
            .send(ExecEvent::Started {
                process_id: group.pgid.to_string(),
            })
            .await;
        let cancelled = tokio::select! {
            ended = durable::follow(dir, offsets, sink) => {
                match &ended {
                    // Nobody takes the output any more (the worker let the
                    // job go): the command runs on for whoever comes next.
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ran::LetGo,
                    // Nobody will end the command now (its supervisor is
                    // gone, or its files are): end it here, so that
                    // nothing of the job is left running.
                    Err(_) => signal_group(&group, Signal::SIGKILL),
                    Ok(_) => {}
                }
                return Ran::Ended(outcome(ended, false, timeout));
            }
            () = cancel.cancelled() => true,
            // The same, heard at once rather than at the command's next
            // output: a quiet command is let go as soon as the sink closes.
            () = sink.closed() => return Ran::LetGo,
        };
        // Stop the command; its supervisor ends what it left and writes
        // the end, which the follower then reads with the last output.
        // What left the group is the job's too, unless the job lets its
        // daemons live: it gets the same TERM and KILL at the same time,
        // rather than a grace of its own once the group is gone.
        let allows_daemons = dir
            .read_spec()
            .ok()
            .flatten()
            .is_none_or(|s| s.allow_daemons);
        // A record is only a file: it counts only for the supervisor that
        // started the command, the parent of the group's leader while that
        // provably is the command's.
        let supervisor = match allows_daemons {
            true => None,
            false => dir.read_supervisor().ok().flatten().filter(|record| {
                group.is_current() && crate::group::parent_of(group.pgid) == Some(record.pid)
            }),
        };
        let mut command = Following {
            group: &group,
            supervisor,
            dir,
            offsets,
            sink,
            ended: None,
        };
        // After the KILL the end is waited for, however long it takes.
        crate::kill::KillSequence {
            grace: self.grace,
            confirm_within: Duration::MAX,
            kill_every: Duration::MAX,
        }
        .run(&mut command)
        .await;
        let ended = command
            .ended
            .unwrap_or_else(|| Err(std::io::Error::other("the kill ended before the command")));
        Ran::Ended(outcome(ended, cancelled, timeout))
    }
}

#[async_trait]
impl Executor for DurableLocalExecutor {
    /// Starts `request` as the job `key` and follows it to its end. The
    /// job's directory and spec are made before the gate records the
    /// start, and the launch is claimed after it (see
    /// [`durable::LaunchMark`]): a worker lost in between leaves proof that
    /// the command never started. A directory whose launch was claimed
    /// before means the command may have run: it is never started twice.
    async fn run(
        &self,
        key: &str,
        request: ExecRequest,
        gate: &dyn StartGate,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Ran, StartError> {
        let dir = self.job_dir(key);
        if let Some(cwd) = &request.parameters.cwd
            && !std::path::Path::new(cwd).is_dir()
        {
            return Err(StartError {
                message: format!("cannot start the command in {cwd}: no such directory"),
                retryable: false,
                cause: rje_domain::StartCause::Other,
            });
        }
        let spec = Spec {
            command: request.command.clone(),
            // The whole environment: the supervisor starts the command
            // with this and nothing else.
            env: self.env.of_job(&request.parameters.env),
            cwd: request.parameters.cwd.clone(),
            timeout_secs: request.timeout.as_secs(),
            kill_grace_ms: u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX),
            allow_daemons: request.parameters.allow_daemons,
            max_output_bytes: self.max_output_bytes,
            store: self.store.clone(),
            attempt: gate.attempt(),
        };
        let made = dir.clone();
        let prepared = tokio::task::spawn_blocking(move || durable::prepare(&made, &spec))
            .await
            .map_err(|err| StartError {
                message: format!("could not make the job's directory: {err}"),
                retryable: true,
                cause: rje_domain::StartCause::Other,
            })?
            .map_err(|err| launch_error(&err))?;
        gate.open().await?;
        let launcher = self.launcher.clone();
        tokio::task::spawn_blocking(move || launcher.start(&prepared))
            .await
            .map_err(|err| StartError {
                message: format!("could not start the supervisor: {err}"),
                retryable: true,
                cause: rje_domain::StartCause::Other,
            })?
            .map_err(|err| launch_error(&err))?;
        Ok(self
            .follow_to_end(&dir, &mut [0, 0], &sink, &cancel, request.timeout)
            .await)
    }

    /// Takes up the job `key` again, from `offsets` (bytes of stdout and
    /// stderr already delivered), after the process that followed it went
    /// away. A cancel already asked for is carried out at once.
    async fn resume(
        &self,
        key: &str,
        mut offsets: [u64; 2],
        timeout: Duration,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Ran, ResumeError> {
        let dir = self.job_dir(key);
        if !dir.spec().exists() {
            return Err(ResumeError::NotStarted(dir.spec().display().to_string()));
        }
        if dir.read_exit()?.is_none() {
            if let Some(supervisor) = dir.read_supervisor()?
                && supervisor.boot_id != durable::boot_id()?
            {
                // Its pids name other processes now: nothing is signalled.
                return Err(ResumeError::Rebooted);
            }
            if durable::supervisor_died(&dir)? {
                // Nobody will end or record the command: end it here, so
                // that nothing of the job is left running.
                kill_command(&dir);
                return Err(ResumeError::SupervisorLost);
            }
        }
        Ok(self
            .follow_to_end(&dir, &mut offsets, &sink, &cancel, timeout)
            .await)
    }

    fn is_durable(&self) -> bool {
        true
    }

    /// Removes the job's directory once its result is stored.
    async fn forget(&self, key: &str) {
        let dir = self.job_dir(key).root().to_owned();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
        if let Ok(Err(err)) = removed
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(key, %err, "could not remove the job's directory");
        }
    }

    /// [`DurableLocalExecutor::abandon_unlaunched`], off the runtime's
    /// threads.
    async fn prove_unlaunched(&self, key: &str) -> Unlaunched {
        let (executor, key) = (self.clone(), key.to_owned());
        tokio::task::spawn_blocking(move || executor.abandon_unlaunched(&key))
            .await
            .unwrap_or_else(|err| Unlaunched::Unknown(std::io::Error::other(err)))
    }

    /// The job directories here: every job of this machine a worker may
    /// take up or tidy.
    fn kept_jobs(&self) -> Option<Vec<String>> {
        Some(self.known_jobs())
    }

    /// Ends what may run on of a job the store says is over, and removes
    /// the files of one nobody follows once they have been quiet for
    /// `quiet` (or, for another store's job, for [`FOREIGN_RETENTION`]).
    async fn tidy(&self, key: &str, standing: KeptJob, quiet: Duration) {
        // Settled elsewhere: nothing of it may run on. A job another
        // worker of this machine follows is left alone, and so is one
        // this store does not know (another store shares the directory,
        // or this one was wiped): never ended from here.
        if standing == KeptJob::Over {
            self.end_abandoned(key);
        }
        // Files go once nothing of the job runs and it has been quiet
        // long; those of a job someone follows never are. Those of
        // another store's job are that store's to report: kept until it
        // has surely given up on them.
        let grace = if standing == KeptJob::Unknown && !self.is_ours(key) {
            FOREIGN_RETENTION
        } else {
            quiet
        };
        self.sweep_if_stale(key, grace).await;
    }
}

/// When the file at `path` (a link itself, not what it names) last changed.
fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::symlink_metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// Why a launch failed, as the job says it. A launch claimed before is
/// never retried: the command may have run. One given up for this stalled
/// worker, or whose directory a later attempt replaced, started nothing.
fn launch_error(err: &durable::LaunchError) -> StartError {
    use durable::LaunchError;
    match err {
        LaunchError::MayHaveStarted(_) | LaunchError::FailedAfterClaim(_) => StartError {
            message: err.to_string(),
            retryable: false,
            cause: rje_domain::StartCause::Other,
        },
        LaunchError::Abandoned | LaunchError::Replaced => StartError {
            message: err.to_string(),
            retryable: true,
            cause: rje_domain::StartCause::Other,
        },
        LaunchError::Io(err) => StartError {
            message: format!(
                "could not start the supervisor: {}",
                durable::describe_io(err)
            ),
            retryable: true,
            cause: rje_domain::StartCause::Other,
        },
    }
}

/// The command's process group, as its supervisor recorded it. No
/// waiting: the launcher returns only once the supervisor has named it,
/// and a job is taken up only long after.
fn started(dir: &JobDir) -> Result<CommandGroup, String> {
    match dir.read_command() {
        Ok(Some(group)) => Ok(group),
        Ok(None) => {
            let log = dir.root().join("supervisor.log");
            let log = crate::durable::open_nofollow(&log)
                .and_then(std::io::read_to_string)
                .unwrap_or_default();
            Err(format!("the supervisor never named the command: {log}"))
        }
        Err(err) => Err(format!("cannot read the job's pid file: {err}")),
    }
}

fn outcome(ended: std::io::Result<ExitRecord>, cancelled: bool, timeout: Duration) -> Outcome {
    let record = match ended {
        Ok(record) => record,
        Err(err) => {
            return Outcome::Error {
                message: format!("lost track of the command: {err}"),
            };
        }
    };
    // The supervisor writes the end only once nothing of the job is left.
    let kill = ExitReport::Confirmed;
    if cancelled {
        Outcome::Cancelled { kill }
    } else if record.state_dir_full {
        // Whatever the command said, what it printed may be lost.
        Outcome::Error {
            message: durable::STATE_DIR_FULL.to_owned(),
        }
    } else if record.timed_out {
        Outcome::TimedOut {
            after_secs: u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX),
            kill,
        }
    } else {
        Outcome::of_exit(record.code, record.signal)
    }
}

/// Signals the command's group while it provably is the command's; once
/// its leader is gone the supervisor ends what is left, or has.
fn signal_group(group: &CommandGroup, signal: Signal) {
    if !group.signal(signal) {
        tracing::debug!(
            pgid = group.pgid,
            ?signal,
            "not signalling a group that is no longer provably the command's"
        );
    }
}

/// A cancelled command, as its kill sees it: signalled by its group while
/// that provably is the command's, and gone once the follower has read its
/// end, which the supervisor writes only once nothing of the job is left.
struct Following<'a> {
    group: &'a CommandGroup,
    /// The supervisor whose descendants (the orphans it adopted) are
    /// signalled with the group, while it provably is the job's.
    supervisor: Option<durable::SupervisorRecord>,
    dir: &'a JobDir,
    offsets: &'a mut [u64; 2],
    sink: &'a mpsc::Sender<ExecEvent>,
    /// The end, once read (or what kept it from being read).
    ended: Option<std::io::Result<ExitRecord>>,
}

impl crate::kill::KillTarget for Following<'_> {
    fn signal(&mut self, signal: Signal) {
        signal_group(self.group, signal);
        if let Some(supervisor) = self.supervisor.as_ref().filter(|s| s.is_provably_alive()) {
            let table = crate::subreaper::process_table();
            for pid in crate::subreaper::descendants_of(supervisor.pid, &table) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
        }
    }

    async fn wait_gone(&mut self, within: Duration) -> bool {
        let follow = durable::follow(self.dir, self.offsets, self.sink);
        match tokio::time::timeout(within, follow).await {
            Ok(ended) => {
                self.ended = Some(ended);
                true
            }
            Err(_) => false,
        }
    }
}

/// Kills the job's command, by the group its pid file names, if that group
/// provably is still the command's: on this boot, with the leader that
/// started then. A pid file is only a number, and a number is given out
/// again. Whether it was killed.
fn kill_command(dir: &JobDir) -> bool {
    match dir.read_command() {
        Ok(Some(group)) => {
            let killed = group.signal(Signal::SIGKILL);
            // Said only when a group of that number lives: the one case an
            // operator may have to look at.
            if !killed && crate::group::group_state(group.pgid) == crate::GroupState::Alive {
                tracing::warn!(
                    dir = %dir.root().display(),
                    pgid = group.pgid,
                    "not killing process group: nothing proves it is still the job's"
                );
            }
            killed
        }
        Ok(None) => false,
        Err(err) => {
            tracing::warn!(dir = %dir.root().display(), %err, "cannot read the job's pid file");
            false
        }
    }
}
