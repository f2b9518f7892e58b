//! Runs a job's command on a host so that it outlives the worker: the
//! command runs under a supervisor on the host (see [`crate::durable_remote`])
//! and the worker only follows its files by byte offset. A worker that
//! dies leaves the command running; any worker that reaches the host takes
//! it up again from the offsets the store holds. A dropped connection is
//! taken up again at once by the same worker.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rje_domain::{ExitReport, Outcome, Stream};
use rje_exec::{
    ExecEvent, ExecRequest, Executor, Ran, ResumeError, StartError, StartGate, Unlaunched,
};
use russh::ChannelMsg;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::durable_remote::{
    self, DurableHeader, Launch, LaunchProof, finish_script, follow_script, launch_script,
    parse_durable_header,
};
use crate::executor::SshExecutor;
use crate::executor::{NOTHING_RAN, kill_group, ready_channel, run_script, start_error};
use crate::pool::{ChannelLease, HostPool};

/// Output the login shell may print before the script's first line.
const MAX_PREAMBLE: usize = 64 * 1024;
/// How long rje keeps trying to reach the host again after the connection
/// dropped, beyond the job's own deadline (which the host keeps).
const RECONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// Finished jobs whose directories are removed with one exec at most.
const REMOVALS_PER_SCRIPT: usize = 64;
/// Removals ride along with a job's script only this many at a time, so
/// that a busy host pays one `rm` per batch, not one per job.
const REMOVALS_TO_RIDE: usize = 16;

/// Runs commands on one host under detached supervisors.
pub struct DurableSshExecutor {
    pool: Arc<HostPool>,
    grace: Duration,
    /// The state directory as the host's shell sees it.
    state_dir: String,
    /// Jobs whose results are stored and whose directories are still to be
    /// removed, by the next script sent to the host.
    to_remove: Mutex<Vec<String>>,
    /// Runs following a job now: while any does, removals ride along with
    /// its scripts instead of costing an exec of their own.
    active: AtomicUsize,
    /// Runs jobs the plain way on a host that lacks what a supervisor
    /// needs (`setsid`, `flock`), once it said so.
    plain: SshExecutor,
    plain_only: AtomicBool,
}

impl DurableSshExecutor {
    /// `state_dir` holds the jobs' directories on the host (`~/` is the
    /// login directory); `grace` is the time between TERM and KILL.
    pub fn new(pool: Arc<HostPool>, state_dir: &str, grace: Duration) -> Self {
        Self {
            grace,
            state_dir: durable_remote::state_dir_word(state_dir),
            to_remove: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            plain: SshExecutor::new(pool.clone(), grace),
            plain_only: AtomicBool::new(false),
            pool,
        }
    }

    fn host(&self) -> &str {
        &self.pool.host().name
    }

    /// The removals owed, as shell text for the next script: none until
    /// `at_least` are owed. `sweep` also removes what a lost worker left.
    fn take_removals(&self, at_least: usize, sweep: bool) -> String {
        let keys = {
            let mut pending = self
                .to_remove
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if pending.len() < at_least.max(1) {
                return String::new();
            }
            let take = pending.len().min(REMOVALS_PER_SCRIPT);
            pending.drain(..take).collect::<Vec<_>>()
        };
        durable_remote::removals(&self.state_dir, &keys, sweep)
    }

    /// Removals to ride along with a job's script.
    fn riding_removals(&self) -> String {
        self.take_removals(REMOVALS_TO_RIDE, false)
    }

    /// Follows the job from `follow`'s position to the supervisor's end,
    /// then reads the rest and the exit status.
    async fn follow_to_end(
        &self,
        key: &str,
        mut follow: Follow,
        sink: &mpsc::Sender<ExecEvent>,
        cancel: &CancellationToken,
        timeout: Duration,
    ) -> Ran {
        let mut kill: Option<JoinHandle<ExitReport>> = None;
        let give_up = tokio::time::Instant::now() + timeout + self.grace + RECONNECT_PATIENCE;
        loop {
            if let Some(lease) = follow.lease.take() {
                self.drain(lease, &mut follow, sink, cancel, &mut kill)
                    .await;
            }
            match follow.header_seen {
                Some(DurableHeader::Gone) => return Ran::Ended(self.gone()),
                Some(DurableHeader::Rebooted) => return Ran::Ended(rebooted()),
                _ => {}
            }
            if follow.let_go {
                // Nobody takes the output any more (the worker let the job
                // go): the command runs on for whoever takes it up.
                return Ran::LetGo;
            }
            // The follow script ran to its end: the supervisor is gone.
            if follow.exited {
                break;
            }
            // The connection dropped while the command ran: it runs on,
            // so take it up again from what was delivered.
            if cancel.is_cancelled() && kill.is_none() {
                kill = Some(self.start_kill(&follow));
            }
            if tokio::time::Instant::now() >= give_up {
                return Ran::Ended(Outcome::Error {
                    message: format!(
                        "lost the connection to {} while the command ran and could not \
                         reach it again; the host still ends the command at its deadline",
                        self.host()
                    ),
                });
            }
            tracing::warn!(
                host = self.host(),
                key,
                "lost the job's channel; following it again"
            );
            match self
                .open(&follow_script(&self.state_dir, key, follow.offsets))
                .await
            {
                Ok(lease) => follow.restart(lease),
                Err(err) => {
                    tracing::warn!(host = self.host(), %err, "cannot reach the host yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let kill_report = match kill {
            Some(task) => Some(task.await.unwrap_or(ExitReport::Unconfirmed)),
            None => None,
        };
        self.finish(key, &mut follow, sink, kill_report, timeout)
            .await
    }

    /// Reads one follow channel to its close, passing output on; a cancel
    /// starts the kill of the group and goes on reading.
    async fn drain(
        &self,
        mut lease: ChannelLease,
        follow: &mut Follow,
        sink: &mpsc::Sender<ExecEvent>,
        cancel: &CancellationToken,
        kill: &mut Option<JoinHandle<ExitReport>>,
    ) {
        loop {
            let message = tokio::select! {
                message = lease.channel.wait() => message,
                () = cancel.cancelled(), if kill.is_none() => {
                    *kill = Some(self.start_kill(follow));
                    continue;
                }
                // Nobody records the output any more: let go at once, not
                // at the command's next output (unless a kill is under way,
                // which is carried through).
                () = sink.closed(), if kill.is_none() => {
                    follow.let_go = true;
                    break;
                }
            };
            match message {
                Some(ChannelMsg::Data { data }) => follow.stdout(&data, sink).await,
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    follow.output(Stream::Stderr, data.to_vec(), sink).await;
                }
                Some(ChannelMsg::ExitStatus { .. }) => follow.exited = true,
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
            if follow.header_ends_follow() || follow.let_go {
                break;
            }
        }
        // The script said its last, or the connection dropped: either way
        // this channel is done.
        lease.close().await;
    }

    fn start_kill(&self, follow: &Follow) -> JoinHandle<ExitReport> {
        let pool = self.pool.clone();
        let grace = self.grace;
        let group = follow.group.clone();
        tokio::spawn(async move {
            match group {
                Some((pgid, boot_id)) => kill_group(&pool, pgid, &boot_id, grace).await,
                None => ExitReport::Unconfirmed,
            }
        })
    }

    /// Reads what the tails had not sent and the exit status.
    async fn finish(
        &self,
        key: &str,
        follow: &mut Follow,
        sink: &mpsc::Sender<ExecEvent>,
        kill: Option<ExitReport>,
        timeout: Duration,
    ) -> Ran {
        let mut tries = 0;
        let header = loop {
            let script = finish_script(
                &self.state_dir,
                key,
                follow.offsets,
                &self.riding_removals(),
            );
            match self.open(&script).await {
                Ok(lease) => {
                    follow.restart_without_lease();
                    let never = CancellationToken::new();
                    let mut no_kill = None;
                    self.drain(lease, follow, sink, &never, &mut no_kill).await;
                    if follow.let_go {
                        return Ran::LetGo;
                    }
                    match follow.header_seen.take() {
                        // A missing job stays missing: no point asking again.
                        Some(header)
                            if follow.exited
                                || matches!(
                                    header,
                                    DurableHeader::Gone | DurableHeader::Rebooted
                                ) =>
                        {
                            break header;
                        }
                        _ => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(host = self.host(), %err, "cannot read the job's end yet")
                }
            }
            tries += 1;
            if tries >= 10 {
                return Ran::Ended(Outcome::Error {
                    message: format!(
                        "the command ended on {} but its exit status could not be read",
                        self.host()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200 * tries)).await;
        };
        let after_secs = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX);
        Ran::Ended(match (header, kill) {
            (DurableHeader::Exit { .. }, Some(kill)) => Outcome::Cancelled { kill },
            (
                DurableHeader::Exit {
                    timed_out: true, ..
                },
                None,
            ) => Outcome::TimedOut {
                after_secs,
                kill: ExitReport::Confirmed,
            },
            (DurableHeader::Exit { code, .. }, None) => Outcome::of_shell_status(code),
            (DurableHeader::NoExit, _) => {
                // Nobody will end or record the command now: end it here,
                // so that nothing of the job is left running.
                let killed = match &follow.group {
                    Some((pgid, boot_id)) => {
                        match kill_group(&self.pool, *pgid, boot_id, self.grace).await {
                            ExitReport::Confirmed => "its process group was killed",
                            ExitReport::Unconfirmed => {
                                "its process group could not be confirmed gone"
                            }
                        }
                    }
                    None => "its process group is unknown",
                };
                Outcome::Error {
                    message: format!(
                        "the job's supervisor on {} died before the command ended; {killed}",
                        self.host()
                    ),
                }
            }
            (DurableHeader::Rebooted, _) => rebooted(),
            (DurableHeader::Gone, _) => self.gone(),
            (other, _) => Outcome::Error {
                message: format!(
                    "{} answered {other:?} where the job's end was expected",
                    self.host()
                ),
            },
        })
    }

    fn gone(&self) -> Outcome {
        Outcome::Error {
            message: format!("the job's files on {} are gone", self.host()),
        }
    }

    /// The go was sent, or may have been, and the launch script's answer
    /// was lost with the connection: whether the command started is known
    /// only on the host. Its launch, unless the script claimed it already,
    /// is claimed there as abandoned: then nothing ran, and nothing will
    /// (a start error, retried). Otherwise the job is followed as one that
    /// may run, as it is when the host stays out of reach.
    async fn launch_unsure(
        &self,
        key: &str,
        follow: Follow,
        sink: &mpsc::Sender<ExecEvent>,
        cancel: &CancellationToken,
        timeout: Duration,
    ) -> Result<Ran, StartError> {
        let give_up = tokio::time::Instant::now() + RECONNECT_PATIENCE;
        loop {
            match self.prove_unlaunched(key).await {
                Unlaunched::Never { .. } => {
                    return Err(start_error(format!(
                        "lost the connection to {} before the command started; nothing ran",
                        self.host()
                    )));
                }
                Unlaunched::MayHaveStarted => break,
                Unlaunched::Unknown(err) if tokio::time::Instant::now() >= give_up => {
                    tracing::warn!(host = self.host(), key, %err, "cannot tell whether the command started; following it");
                    break;
                }
                Unlaunched::Unknown(err) => {
                    tracing::warn!(host = self.host(), key, %err, "cannot tell yet whether the command started");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Ok(self.follow_to_end(key, follow, sink, cancel, timeout).await)
    }

    /// A channel running `script`.
    async fn open(&self, script: &str) -> Result<ChannelLease, String> {
        let lease = self.pool.channel().await.map_err(|err| err.to_string())?;
        lease
            .channel
            .exec(true, script.to_owned())
            .await
            .map_err(|err| err.to_string())?;
        let _ = lease.channel.eof().await;
        Ok(lease)
    }

    /// Removes owed directories with an exec of their own when no run
    /// will carry them soon.
    async fn flush_removals_if_idle(&self) {
        if self.active.load(Ordering::Acquire) > 0 {
            return;
        }
        let script = self.take_removals(1, true);
        if script.is_empty() {
            return;
        }
        if let Err(err) = crate::executor::run_script(&self.pool, &format!("{script}exit 0")).await
        {
            tracing::warn!(host = self.host(), %err, "could not remove the files of finished jobs");
        }
    }
}

fn rebooted() -> Outcome {
    Outcome::Error {
        message: rje_domain::HOST_REBOOTED.into(),
    }
}

/// Counts a run as active for as long as it lives.
struct Active<'a>(&'a AtomicUsize);

impl<'a> Active<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

enum HeaderState {
    /// stdout held back until the script's first line is found.
    Waiting(Vec<u8>),
    Found,
}

/// Where one run stands in following its job.
struct Follow {
    lease: Option<ChannelLease>,
    /// Bytes of stdout and stderr delivered.
    offsets: [u64; 2],
    header: HeaderState,
    /// The last header found, not yet acted on.
    header_seen: Option<DurableHeader>,
    group: Option<(u32, String)>,
    /// The script's exit status arrived: it ran to its end.
    exited: bool,
    /// The sink is closed: nobody takes the output any more.
    let_go: bool,
}

impl Follow {
    fn new(lease: ChannelLease, offsets: [u64; 2]) -> Self {
        Self {
            lease: Some(lease),
            offsets,
            header: HeaderState::Waiting(Vec::new()),
            header_seen: None,
            group: None,
            exited: false,
            let_go: false,
        }
    }

    /// Follows again on a new channel, from the offsets reached.
    fn restart(&mut self, lease: ChannelLease) {
        self.restart_without_lease();
        self.lease = Some(lease);
    }

    fn restart_without_lease(&mut self) {
        self.header = HeaderState::Waiting(Vec::new());
        self.header_seen = None;
        self.exited = false;
    }

    /// Tells the launch script, waiting on its stdin, that the start is
    /// recorded. `false` when the channel failed: whether the go arrived
    /// is unknown then.
    async fn send_go(&self) -> bool {
        match &self.lease {
            Some(lease) => {
                lease.channel.data(&b"go\n"[..]).await.is_ok() && lease.channel.eof().await.is_ok()
            }
            None => false,
        }
    }

    /// Closes the channel: a launch script still waiting for its go reads
    /// the end of its input and gives the launch up (nothing ran). A
    /// channel only dropped would keep it waiting, and a session of sshd.
    async fn close(&mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = lease.channel.eof().await;
            lease.close().await;
        }
    }

    /// Reads the channel until the script's first line; `None` if the
    /// channel closed before it.
    async fn read_header(&mut self, sink: &mpsc::Sender<ExecEvent>) -> Option<DurableHeader> {
        let mut lease = self.lease.take()?;
        while self.header_seen.is_none() {
            match lease.channel.wait().await {
                Some(ChannelMsg::Data { data }) => self.stdout(&data, sink).await,
                Some(ChannelMsg::Close) | None => return None,
                Some(_) => {}
            }
        }
        self.lease = Some(lease);
        self.header_seen.take()
    }

    /// A header that means there is nothing to follow.
    fn header_ends_follow(&self) -> bool {
        matches!(
            self.header_seen,
            Some(DurableHeader::Gone | DurableHeader::Rebooted)
        )
    }

    async fn output(&mut self, stream: Stream, bytes: Vec<u8>, sink: &mpsc::Sender<ExecEvent>) {
        let index = usize::from(stream == Stream::Stderr);
        self.offsets[index] += bytes.len() as u64;
        if sink
            .send(ExecEvent::Output { stream, bytes })
            .await
            .is_err()
        {
            self.let_go = true;
        }
    }

    /// stdout before the script's first line is what the login shell's
    /// start-up files printed: not the command's, so dropped.
    async fn stdout(&mut self, data: &[u8], sink: &mpsc::Sender<ExecEvent>) {
        let HeaderState::Waiting(held) = &mut self.header else {
            self.output(Stream::Stdout, data.to_vec(), sink).await;
            return;
        };
        held.extend_from_slice(data);
        let mut line_start = 0;
        while let Some(length) = held[line_start..].iter().position(|&b| b == b'\n') {
            let line = &held[line_start..line_start + length];
            if let Some(header) = parse_durable_header(line) {
                let rest = held.split_off(line_start + length + 1);
                if let DurableHeader::Started { pgid, boot_id } = &header {
                    self.group = Some((*pgid, boot_id.clone()));
                    let _ = sink
                        .send(ExecEvent::Started {
                            process_id: pgid.to_string(),
                        })
                        .await;
                }
                self.header_seen = Some(header);
                self.header = HeaderState::Found;
                if !rest.is_empty() {
                    self.output(Stream::Stdout, rest, sink).await;
                }
                return;
            }
            line_start += length + 1;
        }
        if held.len() > MAX_PREAMBLE {
            tracing::warn!("the host printed too much before the job's first line");
            held.clear();
        }
    }
}

#[async_trait]
impl Executor for DurableSshExecutor {
    /// Starts `request` as the job `key` and follows it to its end, in one
    /// exec: the launch script makes the job's directory (naming the
    /// attempt) and waits on its stdin; the gate records the start; then
    /// `go` has the script claim the launch and start the supervisor (see
    /// [`durable_remote::launch_script`]). A worker lost before its go
    /// leaves the launch unclaimed, or given up by the script itself when
    /// its input ended: proof that the command never started (see
    /// [`Executor::prove_unlaunched`]). A directory whose launch was
    /// claimed before is never started again.
    async fn run(
        &self,
        key: &str,
        request: ExecRequest,
        gate: &dyn StartGate,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Ran, StartError> {
        if self.plain_only.load(Ordering::Acquire) {
            return self.plain.run(key, request, gate, sink, cancel).await;
        }
        let _active = Active::new(&self.active);
        let Some((permit, lease)) = ready_channel(&self.pool, &cancel).await? else {
            return Ok(Ran::Ended(NOTHING_RAN));
        };
        let env: Vec<(String, String)> = request.parameters.env.clone().into_iter().collect();
        let launch = Launch {
            state_dir: &self.state_dir,
            key,
            command: &request.command,
            cwd: request.parameters.cwd.as_deref(),
            env: &env,
            timeout: request.timeout,
            grace: self.grace,
            keep_leftovers: request.parameters.allow_daemons,
            attempt: gate.attempt(),
        };
        let script = launch_script(&launch, &self.riding_removals());
        let sent = lease.channel.exec(true, script).await;
        if let Err(err) = sent {
            // Should the script have started after all, it finds its input
            // ended and gives the launch up.
            lease.close().await;
            return Err(start_error(format!(
                "lost the connection to {} before the command was sent: {err}",
                self.host()
            )));
        }
        // stdin stays open: the script waits there for the go.
        let mut follow = Follow::new(lease, [0, 0]);
        let host = self.host();
        let no_dir = || {
            let cwd = request.parameters.cwd.as_deref().unwrap_or_default();
            format!("cannot start the command in {cwd} on {host}: no such directory")
        };
        // The first line says whether the job's directory was made; nothing
        // runs, nor is recorded, yet.
        match follow.read_header(&sink).await {
            Some(DurableHeader::Prepared) => {}
            Some(DurableHeader::Exists) => {
                return Err(StartError {
                    message: format!(
                        "the job's directory exists on {host}: the command may have started \
                         before; not starting it again"
                    ),
                    retryable: false,
                    cause: rje_domain::StartCause::Other,
                });
            }
            Some(DurableHeader::NoDirectory) => {
                return Err(StartError {
                    message: no_dir(),
                    retryable: false,
                    cause: rje_domain::StartCause::Other,
                });
            }
            Some(DurableHeader::NoTools) => {
                // Nothing was made (the check comes first): the job runs
                // the plain way, as will every later one on this host.
                tracing::warn!(
                    host,
                    "the host lacks setsid or flock (util-linux): its jobs run without a \
                     supervisor there and end with the worker that runs them"
                );
                self.plain_only.store(true, Ordering::Release);
                drop((permit, follow));
                return self.plain.run(key, request, gate, sink, cancel).await;
            }
            Some(DurableHeader::NoState) => {
                return Err(StartError {
                    message: format!(
                        "cannot make the state directory {} on {host}",
                        self.state_dir
                    ),
                    retryable: false,
                    cause: rje_domain::StartCause::Other,
                });
            }
            Some(DurableHeader::Replaced) => {
                return Err(start_error(format!(
                    "the job's directory on {host} was replaced while it was made; nothing ran"
                )));
            }
            Some(other) => {
                follow.close().await;
                return Err(StartError {
                    message: format!("the job's directory could not be made on {host} ({other:?})"),
                    retryable: false,
                    cause: rje_domain::StartCause::Other,
                });
            }
            // The go was never sent: nothing started.
            None => {
                return Err(start_error(format!(
                    "lost the connection to {host} before the command started; nothing ran"
                )));
            }
        }
        // What comes next begins with a line of its own.
        follow.restart_without_lease();
        if cancel.is_cancelled() {
            follow.close().await;
            return Ok(Ran::Ended(NOTHING_RAN));
        }
        if let Err(err) = gate.open().await {
            follow.close().await;
            return Err(err);
        }
        if !follow.send_go().await {
            follow.close().await;
            return self
                .launch_unsure(key, follow, &sink, &cancel, request.timeout)
                .await;
        }
        // The next line says whether the command started.
        match follow.read_header(&sink).await {
            Some(DurableHeader::Started { .. }) => {}
            Some(DurableHeader::Abandoned) => {
                return Err(StartError {
                    message: format!(
                        "the launch on {host} was given up while this worker was stalled: the \
                         command never started, and the job was queued again"
                    ),
                    retryable: true,
                    cause: rje_domain::StartCause::Other,
                });
            }
            Some(DurableHeader::Replaced) => {
                return Err(start_error(format!(
                    "the job's directory on {host} was replaced before the command started; \
                     nothing ran"
                )));
            }
            Some(DurableHeader::NoDirectory) => {
                return Ok(Ran::Ended(Outcome::Error { message: no_dir() }));
            }
            Some(other) => {
                return Ok(Ran::Ended(Outcome::Error {
                    message: format!("the supervisor did not start on {host} ({other:?})"),
                }));
            }
            // The connection dropped before the answer.
            None => {
                return self
                    .launch_unsure(key, follow, &sink, &cancel, request.timeout)
                    .await;
            }
        }
        Ok(self
            .follow_to_end(key, follow, &sink, &cancel, request.timeout)
            .await)
    }

    async fn resume(
        &self,
        key: &str,
        offsets: [u64; 2],
        timeout: Duration,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Ran, ResumeError> {
        let _permit = self.pool.job_permit().await;
        let _active = Active::new(&self.active);
        let lease = self
            .open(&follow_script(&self.state_dir, key, offsets))
            .await
            .map_err(ResumeError::Unreachable)?;
        let mut follow = Follow::new(lease, offsets);
        match follow.read_header(&sink).await {
            Some(DurableHeader::Started { .. }) => {}
            Some(DurableHeader::Gone) => {
                return Err(ResumeError::NotStarted(format!(
                    "{}/{key} on {}",
                    self.state_dir,
                    self.host()
                )));
            }
            Some(DurableHeader::Rebooted) => return Err(ResumeError::Rebooted),
            Some(other) => {
                return Err(ResumeError::Unreachable(format!(
                    "{} answered {other:?}",
                    self.host()
                )));
            }
            None => {
                return Err(ResumeError::Unreachable(format!(
                    "the connection to {} dropped",
                    self.host()
                )));
            }
        }
        if cancel.is_cancelled() {
            tracing::info!(
                key,
                "carrying out a cancel asked for while the job was detached"
            );
        }
        Ok(self
            .follow_to_end(key, follow, &sink, &cancel, timeout)
            .await)
    }

    /// Until the host is found to lack what a supervisor needs: its jobs
    /// then run plainly, and end with the worker that runs them.
    fn is_durable(&self) -> bool {
        !self.plain_only.load(Ordering::Acquire)
    }

    async fn forget(&self, key: &str) {
        self.to_remove
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(key.to_owned());
        self.flush_removals_if_idle().await;
    }

    /// One exec on the host (see [`durable_remote::abandon_script`]): a
    /// directory that names its attempt and whose launch nobody claimed is
    /// claimed as abandoned. No directory, or one of an older rje, proves
    /// nothing; an unreachable host decides nothing.
    async fn prove_unlaunched(&self, key: &str) -> Unlaunched {
        let script = durable_remote::abandon_script(&self.state_dir, key);
        let output = match run_script(&self.pool, &script).await {
            Ok(output) => output,
            Err(err) => return Unlaunched::Unknown(std::io::Error::other(err)),
        };
        match durable_remote::parse_launch_proof(&output) {
            Some(LaunchProof::Abandoned { attempt }) => {
                tracing::info!(
                    host = self.host(),
                    key,
                    attempt,
                    "gave up a launch its lost worker never made"
                );
                Unlaunched::Never { attempt }
            }
            Some(LaunchProof::Launched | LaunchProof::Unproven) => Unlaunched::MayHaveStarted,
            Some(LaunchProof::Unsettled) => {
                Unlaunched::Unknown(std::io::Error::other("its launch is being claimed"))
            }
            None => Unlaunched::Unknown(std::io::Error::other(format!(
                "{} answered {:?}",
                self.host(),
                output.trim()
            ))),
        }
    }
}
