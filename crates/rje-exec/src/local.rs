//! Plain local execution: `/bin/sh -c` under a subreaper on this machine (see
//! [`crate::subreaper`]); a durable job runs under `rje supervise` instead.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use rje_domain::{ExitReport, Outcome, Stream};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::JobEnvironment;
use crate::kill::KillSequence;
use crate::subreaper::{self, Subreaped};
use crate::{ExecEvent, ExecRequest, Executor, Ran, StartError, StartGate};

/// Bytes read from a pipe at a time: big reads keep floods cheap.
const READ_SIZE: usize = 64 * 1024;

/// Runs commands on this machine with `/bin/sh -c`, each in a process group
/// of its own under a subreaper that adopts whatever leaves that group, so
/// that a kill reaches everything the command started.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    kill: KillSequence,
    /// After the command exits, how long its output pipes may stay open
    /// (held by processes it left behind) before those are killed.
    linger: Duration,
    /// What every job's environment starts from: never rje's own.
    env: JobEnvironment,
}

impl LocalExecutor {
    /// `grace` is the time between TERM and KILL.
    pub fn new(grace: Duration) -> Self {
        Self {
            kill: KillSequence {
                grace,
                confirm_within: Duration::from_secs(5),
                // KILL again every 100 ms, to reach what was forked since.
                kill_every: Duration::from_millis(100),
            },
            linger: Duration::from_millis(500),
            env: JobEnvironment::inherited(),
        }
    }

    /// Jobs start from `env` (see [`JobEnvironment`]).
    pub fn with_environment(mut self, env: JobEnvironment) -> Self {
        self.env = env;
        self
    }
}

#[derive(Clone, Copy)]
enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

#[async_trait]
impl Executor for LocalExecutor {
    async fn run(
        &self,
        _key: &str,
        request: ExecRequest,
        gate: &dyn StartGate,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Ran, StartError> {
        // By absolute path: the job's own PATH (in its env) applies to what
        // the command runs, not to which shell runs it.
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&request.command)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env_clear()
            .envs(self.env.of_job(&request.parameters.env));
        if let Some(cwd) = &request.parameters.cwd {
            command.current_dir(cwd);
        }
        if let Some(cwd) = &request.parameters.cwd {
            // Checked before the gate: a job with a missing directory never
            // started, and fails with a reason that says so.
            if !std::path::Path::new(cwd).is_dir() {
                return Err(StartError {
                    message: format!("cannot start the command in {cwd}: no such directory"),
                    retryable: false,
                    cause: rje_domain::StartCause::Other,
                });
            }
        }
        gate.open().await?;
        let mut job = subreaper::spawn(command, request.parameters.allow_daemons)
            .await
            .map_err(|err| StartError {
                retryable: err.kind() != std::io::ErrorKind::NotFound,
                cause: rje_domain::StartCause::Other,
                message: match &request.parameters.cwd {
                    Some(cwd) if err.kind() == std::io::ErrorKind::NotFound => {
                        format!("could not start the command in {cwd}: {err}")
                    }
                    _ => format!("could not start /bin/sh: {err}"),
                },
            })?;
        let _ = sink
            .send(ExecEvent::Started {
                process_id: job.pgid.to_string(),
            })
            .await;
        // Kept to hear the follower go away: nothing would record the
        // output then, so the command is ended as on a cancel.
        let follower = sink.clone();
        let readers = [
            spawn_reader(job.subreaper.stdout.take(), Stream::Stdout, sink.clone()),
            spawn_reader(job.subreaper.stderr.take(), Stream::Stderr, sink),
        ];

        let ending = tokio::select! {
            status = job.command_exit() => match status {
                Ok(status) => Ending::Exited(ExitStatus::from_raw(status)),
                Err(err) => {
                    let kill = job.kill_all(self.kill).await;
                    finish_readers(readers, self.linger).await;
                    return Ok(Ran::Ended(Outcome::Error {
                        message: format!("lost track of the command: {err} ({kill:?})"),
                    }));
                }
            },
            () = tokio::time::sleep(request.timeout) => Ending::TimedOut,
            () = cancel.cancelled() => Ending::Cancelled,
            () = follower.closed() => Ending::Cancelled,
        };

        let outcome = match ending {
            Ending::Exited(status) => {
                self.reap_leftovers(&mut job, readers).await;
                exit_outcome(status)
            }
            Ending::TimedOut => {
                let kill = job.kill_all(self.kill).await;
                finish_readers(readers, self.linger).await;
                Outcome::TimedOut {
                    after_secs: u32::try_from(request.timeout.as_secs()).unwrap_or(u32::MAX),
                    kill,
                }
            }
            Ending::Cancelled => {
                let kill = job.kill_all(self.kill).await;
                finish_readers(readers, self.linger).await;
                Outcome::Cancelled { kill }
            }
        };
        Ok(Ran::Ended(outcome))
    }
}

impl LocalExecutor {
    /// The command exited. Processes it left behind (`cmd &`, daemons)
    /// would hold its pipes open and outlive the job: give them a moment to
    /// finish writing, then kill them, so a job leaves nothing behind.
    async fn reap_leftovers(&self, job: &mut Subreaped, readers: [JoinHandle<()>; 2]) {
        let mut readers = readers.map(Some);
        let drained = join_within(&mut readers, self.linger).await;
        if drained && job.wait_all_gone(Duration::ZERO).await {
            return;
        }
        tracing::debug!(
            pgid = job.pgid,
            "the command left processes behind; killing them"
        );
        if job.kill_all(self.kill).await == ExitReport::Unconfirmed {
            tracing::warn!(
                pgid = job.pgid,
                "could not confirm the leftover processes are gone"
            );
        }
        // What the killed ones wrote is read to the end; a daemon the job
        // may leave (`allow_daemons`) holds the pipes for as long as it
        // lives, and is read no more, so that the job ends.
        finish_those_left(&mut readers, self.linger).await;
    }
}

/// Waits up to `within` for the readers still running (`Some`) to reach
/// the end of their pipes, taking out each that did: a finished reader is
/// never waited for again. Whether all did.
async fn join_within(readers: &mut [Option<JoinHandle<()>>; 2], within: Duration) -> bool {
    tokio::time::timeout(within, async {
        for slot in readers.iter_mut() {
            if let Some(reader) = slot {
                let _ = reader.await;
                *slot = None;
            }
        }
    })
    .await
    .is_ok()
}

/// Waits a bounded time for the readers to reach the end of their pipes; a
/// process that escaped the group may hold one open for ever.
async fn finish_readers(readers: [JoinHandle<()>; 2], within: Duration) {
    finish_those_left(&mut readers.map(Some), within).await;
}

/// [`finish_readers`], of the readers still running (`Some`).
async fn finish_those_left(readers: &mut [Option<JoinHandle<()>>; 2], within: Duration) {
    if !join_within(readers, within.max(Duration::from_secs(2))).await {
        for reader in readers.iter().flatten() {
            reader.abort();
        }
    }
}

fn exit_outcome(status: ExitStatus) -> Outcome {
    Outcome::of_exit(status.code(), status.signal())
}

fn spawn_reader(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    stream: Stream,
    sink: mpsc::Sender<ExecEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut buffer = vec![0u8; READ_SIZE];
        loop {
            match pipe.read(&mut buffer).await {
                Ok(0) => return,
                Ok(n) => {
                    let event = ExecEvent::Output {
                        stream,
                        bytes: buffer[..n].to_vec(),
                    };
                    if sink.send(event).await.is_err() {
                        return;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    tracing::warn!(%stream, %err, "reading the command's output failed");
                    return;
                }
            }
        }
    })
}
