//! Local execution that survives its worker: each command runs under
//! `rje supervise` (see [`crate::durable`]) in a directory of its own, and
//! the executor only follows the files. Dropping a run (the worker dies)
//! leaves the command running; [`DurableLocalExecutor::resume`] takes it up
//! again from the byte offsets already delivered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rje_domain::{ExitReport, Outcome};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::durable::{self, ExitRecord, JobDir, Launcher, Spec};
use crate::{
    DurableExecutor, ExecEvent, ExecRequest, JobEnvironment, ResumeError, StartError, StartGate,
};
use async_trait::async_trait;

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
        }
    }

    /// Jobs start from `env` (see [`JobEnvironment`]).
    pub fn with_environment(mut self, env: JobEnvironment) -> Self {
        self.env = env;
        self
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
    pub fn known_jobs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("jobs")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect()
    }

    /// Removes the directory of a job no worker can take up (its lease is
    /// live elsewhere, or the store settled it) once it has been quiet for
    /// `grace`, when nothing of it runs any more: its end was written, or
    /// its supervisor is gone (then its group is ended first). Whether it
    /// was removed.
    pub async fn sweep_if_stale(&self, key: &str, grace: Duration) -> bool {
        let dir = self.job_dir(key);
        let newest = [dir.exit(), dir.supervisor(), dir.spec()]
            .iter()
            .filter_map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .max();
        let quiet = newest
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= grace);
        if !quiet {
            return false;
        }
        let ended = matches!(dir.read_exit(), Ok(Some(_)));
        if !ended {
            if !matches!(durable::supervisor_died(&dir), Ok(true)) {
                return false;
            }
            kill_command(&dir);
        }
        tracing::info!(key, "removing the files of a job nobody will take up");
        self.forget(key).await;
        true
    }

    /// The store says the job `key` is over while its files are still
    /// here (it was settled by a worker elsewhere, or deleted): ends what
    /// may still run of it, on this boot of the machine. The files stay
    /// for [`DurableLocalExecutor::sweep_if_stale`].
    pub fn end_abandoned(&self, key: &str) {
        let dir = self.job_dir(key);
        let this_boot = match (dir.read_supervisor(), durable::boot_id()) {
            (Ok(Some(supervisor)), Ok(boot)) => supervisor.boot_id == boot,
            _ => false,
        };
        let running = !matches!(dir.read_exit(), Ok(Some(_)));
        if this_boot && running {
            tracing::warn!(key, "ending the command of a job the store says is over");
            kill_command(&dir);
        }
    }

    async fn follow_to_end(
        &self,
        dir: &JobDir,
        offsets: &mut [u64; 2],
        sink: &mpsc::Sender<ExecEvent>,
        cancel: &CancellationToken,
        timeout: Duration,
    ) -> Outcome {
        let pgid = match started(dir) {
            Ok(pgid) => pgid,
            Err(message) => return Outcome::Error { message },
        };
        let _ = sink
            .send(ExecEvent::Started {
                process_id: pgid.to_string(),
            })
            .await;
        let cancelled = tokio::select! {
            ended = durable::follow(dir, offsets, sink) => {
                match &ended {
                    // Nobody takes the output any more (the worker let the
                    // job go): the command runs on for whoever comes next.
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
                    // Nobody will end the command now (its supervisor is
                    // gone, or its files are): end it here, so that
                    // nothing of the job is left running.
                    Err(_) => signal_group(pgid, Signal::SIGKILL),
                    Ok(_) => {}
                }
                return outcome(ended, false, timeout);
            }
            () = cancel.cancelled() => true,
        };
        // Stop the command; its supervisor ends what it left and writes
        // the end, which the follower then reads with the last output.
        signal_group(pgid, Signal::SIGTERM);
        let ended = tokio::time::timeout(self.grace, durable::follow(dir, offsets, sink)).await;
        let ended = match ended {
            Ok(ended) => ended,
            Err(_) => {
                signal_group(pgid, Signal::SIGKILL);
                durable::follow(dir, offsets, sink).await
            }
        };
        outcome(ended, cancelled, timeout)
    }
}

#[async_trait]
impl DurableExecutor for DurableLocalExecutor {
    /// Starts `request` as the job `key` and follows it to its end. A job
    /// directory that exists already means the command may have run: it is
    /// never started twice.
    async fn run_keyed(
        &self,
        key: &str,
        request: ExecRequest,
        gate: &dyn StartGate,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, StartError> {
        let dir = self.job_dir(key);
        if dir.root().exists() {
            return Err(StartError {
                message: format!(
                    "{} exists: the command may have started before; not starting it again",
                    dir.root().display()
                ),
                retryable: false,
            });
        }
        if let Some(cwd) = &request.parameters.cwd
            && !std::path::Path::new(cwd).is_dir()
        {
            return Err(StartError {
                message: format!("cannot start the command in {cwd}: no such directory"),
                retryable: false,
            });
        }
        gate.open().await?;
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
        };
        let (launcher, launched) = (self.launcher.clone(), dir.clone());
        tokio::task::spawn_blocking(move || launcher.launch(&launched, &spec))
            .await
            .map_err(|err| StartError {
                message: format!("could not start the supervisor: {err}"),
                retryable: true,
            })?
            .map_err(|err| StartError {
                message: format!("could not start the supervisor: {err}"),
                retryable: true,
            })?;
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
    ) -> Result<Outcome, ResumeError> {
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
}

/// The command's process group. No waiting: the launcher returns only
/// once the supervisor has named it, and a job is taken up only long after.
fn started(dir: &JobDir) -> Result<i32, String> {
    match dir.read_pgid() {
        Ok(Some(pgid)) => Ok(pgid),
        Ok(None) => {
            let log =
                std::fs::read_to_string(dir.root().join("supervisor.log")).unwrap_or_default();
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
    } else if record.timed_out {
        Outcome::TimedOut {
            after_secs: u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX),
            kill,
        }
    } else {
        Outcome::of_exit(record.code, record.signal)
    }
}

fn signal_group(pgid: i32, signal: Signal) {
    if let Err(err) = crate::group::signal_group(pgid, signal) {
        tracing::debug!(pgid, %err, "could not signal the group");
    }
}

/// Kills the job's command, by the group its pid file names, if any.
fn kill_command(dir: &JobDir) {
    if let Ok(Some(pgid)) = dir.read_pgid() {
        signal_group(pgid, Signal::SIGKILL);
    }
}
