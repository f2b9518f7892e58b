//! Runs a job's command on a host over one channel of the host's pool.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rje_domain::{ExitReport, Outcome, Stream};
use rje_exec::{ExecEvent, ExecRequest, Executor, Ran, StartError, StartGate};
use russh::ChannelMsg;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pool::{ChannelLease, HostPool, JobPermit};
use crate::remote::{self, Header, KillResult};

/// How long output may still arrive after the group was killed.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);
/// After the command exits, how long its output may stay open (held by
/// processes it left behind) before those are killed.
const LINGER: Duration = Duration::from_millis(500);
/// stdout the login shell may print before the wrapper's line.
const MAX_PREAMBLE: usize = 64 * 1024;
/// How long a killed command's first line may take to arrive.
const HEADER_PATIENCE: Duration = Duration::from_secs(10);
/// How long rje keeps trying to reach a host to kill a job's group.
const KILL_PATIENCE: Duration = Duration::from_secs(30);

/// Runs commands on one host over SSH.
pub struct SshExecutor {
    pool: Arc<HostPool>,
    grace: Duration,
}

impl SshExecutor {
    /// `grace` is the time between TERM and KILL.
    pub fn new(pool: Arc<HostPool>, grace: Duration) -> Self {
        Self { pool, grace }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Closed,
    /// The command exited, but processes it left hold its output open.
    LeftBehind,
    TimedOut,
    Cancelled,
}

/// What one run has seen on its channel.
#[derive(Default)]
struct Seen {
    /// stdout held back until the wrapper's line is found.
    header_bytes: Vec<u8>,
    header: Option<Header>,
    /// The first line turned out not to be the wrapper's.
    no_header: bool,
    exit_code: Option<u32>,
    exit_signal: Option<russh::Sig>,
    refused: bool,
    closed: bool,
}

impl Seen {
    /// The command's exit status (or signal) has arrived.
    fn exited(&self) -> bool {
        self.exit_code.is_some() || self.exit_signal.is_some()
    }

    fn group(&self) -> Option<(u32, &str)> {
        match &self.header {
            Some(Header::Started { pgid, boot_id }) => Some((*pgid, boot_id.as_str())),
            _ => None,
        }
    }

    /// Takes in one message; returns the events it makes.
    fn take(&mut self, message: ChannelMsg) -> Vec<ExecEvent> {
        let mut events = Vec::new();
        match message {
            ChannelMsg::Data { data } => self.stdout(&data, &mut events),
            ChannelMsg::ExtendedData { data, ext: 1 } => events.push(ExecEvent::Output {
                stream: Stream::Stderr,
                bytes: data.to_vec(),
            }),
            ChannelMsg::ExitStatus { exit_status } => self.exit_code = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => self.exit_signal = Some(signal_name),
            ChannelMsg::Failure => self.refused = true,
            ChannelMsg::Close => self.closed = true,
            _ => {}
        }
        events
    }

    /// stdout before the wrapper's line is what the login shell's start-up
    /// files printed (a banner in `.bashrc`, say): passed on as output, and
    /// the wrapper's line is still found after it.
    fn stdout(&mut self, data: &[u8], events: &mut Vec<ExecEvent>) {
        let output = |bytes: Vec<u8>| ExecEvent::Output {
            stream: Stream::Stdout,
            bytes,
        };
        if self.header.is_some() || self.no_header {
            events.push(output(data.to_vec()));
            return;
        }
        self.header_bytes.extend_from_slice(data);
        let mut line_start = 0;
        while let Some(length) = self.header_bytes[line_start..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line = &self.header_bytes[line_start..line_start + length];
            if let Some(header) = remote::parse_header(line) {
                let rest = self.header_bytes.split_off(line_start + length + 1);
                let mut preamble = std::mem::take(&mut self.header_bytes);
                preamble.truncate(line_start);
                if !preamble.is_empty() {
                    events.push(output(preamble));
                }
                if let Header::Started { pgid, .. } = &header {
                    events.push(ExecEvent::Started {
                        process_id: pgid.to_string(),
                    });
                }
                self.header = Some(header);
                if !rest.is_empty() {
                    events.push(output(rest));
                }
                return;
            }
            line_start += length + 1;
        }
        if self.header_bytes.len() > MAX_PREAMBLE {
            tracing::warn!(
                "no process group line from the wrapper; the job cannot be killed by group"
            );
            self.no_header = true;
            events.push(output(std::mem::take(&mut self.header_bytes)));
        }
    }
}

async fn forward(events: Vec<ExecEvent>, sink: &mpsc::Sender<ExecEvent>) {
    for event in events {
        // A closed sink means the worker stopped listening; the run still
        // ends properly.
        let _ = sink.send(event).await;
    }
}

/// What a run reports when it was cancelled before anything started.
pub(crate) const NOTHING_RAN: Outcome = Outcome::Cancelled {
    kill: ExitReport::Confirmed,
};

/// Waits for the host's job limit and a channel. `None` when cancelled
/// first.
pub(crate) async fn ready_channel(
    pool: &HostPool,
    cancel: &CancellationToken,
) -> Result<Option<(JobPermit, ChannelLease)>, StartError> {
    let permit = tokio::select! {
        permit = pool.job_permit() => permit,
        () = cancel.cancelled() => return Ok(None),
    };
    let lease = tokio::select! {
        lease = pool.channel() => lease.map_err(StartError::from)?,
        () = cancel.cancelled() => return Ok(None),
    };
    Ok(Some((permit, lease)))
}

/// Waits for the host's job limit and a channel, then opens the gate: the
/// channel is ready for the command. `None` when cancelled first.
pub(crate) async fn ready_to_launch(
    pool: &HostPool,
    gate: &dyn StartGate,
    cancel: &CancellationToken,
) -> Result<Option<(JobPermit, ChannelLease)>, StartError> {
    let Some((permit, lease)) = ready_channel(pool, cancel).await? else {
        return Ok(None);
    };
    if let Err(err) = gate.open().await {
        lease.close().await;
        return Err(err);
    }
    Ok(Some((permit, lease)))
}

pub(crate) fn start_error(err: impl std::fmt::Display) -> StartError {
    StartError {
        message: err.to_string(),
        retryable: true,
        cause: rje_domain::StartCause::Other,
    }
}

#[async_trait]
impl Executor for SshExecutor {
    async fn run(
        &self,
        _key: &str,
        request: ExecRequest,
        gate: &dyn StartGate,
        sink: mpsc::Sender<ExecEvent>,
        cancel: CancellationToken,
    ) -> Result<Ran, StartError> {
        let Some((_permit, mut lease)) = ready_to_launch(&self.pool, gate, &cancel).await? else {
            return Ok(Ran::Ended(NOTHING_RAN));
        };
        let script = remote::wrapper(&request.command, &request.parameters);
        if let Err(err) = lease.channel.exec(true, script).await {
            return Err(start_error(format!(
                "lost the connection to {} before the command was sent: {err}",
                self.pool.host().name
            )));
        }
        let _ = lease.channel.eof().await;

        let mut seen = Seen::default();
        let deadline = tokio::time::Instant::now() + request.timeout;
        let mut linger_until = None;
        let ending = loop {
            tokio::select! {
                message = lease.channel.wait() => match message {
                    Some(message) => {
                        forward(seen.take(message), &sink).await;
                        if seen.closed {
                            break Ending::Closed;
                        }
                        if linger_until.is_none() && seen.exited() {
                            linger_until = Some(tokio::time::Instant::now() + LINGER);
                        }
                    }
                    None => {
                        seen.closed = true;
                        break Ending::Closed;
                    }
                },
                () = sleep_until_some(linger_until) => break Ending::LeftBehind,
                () = tokio::time::sleep_until(deadline) => break Ending::TimedOut,
                () = cancel.cancelled() => break Ending::Cancelled,
                // Nobody records the output any more: ended as on a cancel,
                // rather than left running unobserved.
                () = sink.closed() => break Ending::Cancelled,
            }
        };

        let outcome = match ending {
            Ending::Closed => self.settle_closed(&seen, &request).await,
            Ending::LeftBehind => {
                // As on the local machine: a job leaves nothing running, and
                // never hangs on a pipe that a background process holds.
                tracing::debug!(host = %self.pool.host().name, "the command left processes behind; killing its group");
                if self.kill_while_draining(&mut seen, &mut lease, &sink).await
                    == ExitReport::Unconfirmed
                {
                    tracing::warn!(host = %self.pool.host().name, "could not confirm the leftover processes are gone");
                }
                self.settle_closed(&seen, &request).await
            }
            Ending::TimedOut | Ending::Cancelled => {
                let kill = self.kill_while_draining(&mut seen, &mut lease, &sink).await;
                if ending == Ending::TimedOut {
                    Outcome::TimedOut {
                        after_secs: u32::try_from(request.timeout.as_secs()).unwrap_or(u32::MAX),
                        kill,
                    }
                } else {
                    Outcome::Cancelled { kill }
                }
            }
        };
        lease.close().await;
        Ok(Ran::Ended(outcome))
    }
}

impl SshExecutor {
    /// The channel closed by itself: the command ended, or the connection
    /// was lost with it still running.
    async fn settle_closed(&self, seen: &Seen, request: &ExecRequest) -> Outcome {
        let host = &self.pool.host().name;
        if let Some(Header::NoDirectory) = seen.header {
            let cwd = request.parameters.cwd.as_deref().unwrap_or_default();
            return Outcome::Error {
                message: format!("cannot start the command in {cwd} on {host}: no such directory"),
            };
        }
        if seen.refused {
            return Outcome::Error {
                message: format!("{host} refused to run the command"),
            };
        }
        match (&seen.exit_signal, seen.exit_code) {
            (Some(signal), _) => match remote::signal_number(signal) {
                Some(signal) => Outcome::Signaled { signal },
                None => Outcome::Error {
                    message: format!("the command was killed by an unknown signal {signal:?}"),
                },
            },
            (None, Some(code)) => Outcome::Exited {
                code: i32::try_from(code).unwrap_or(i32::MAX),
            },
            (None, None) => {
                let kill = match seen.group() {
                    Some((pgid, boot_id)) => {
                        match kill_group(&self.pool, pgid, boot_id, self.grace).await {
                            ExitReport::Confirmed => "its process group was killed".to_owned(),
                            ExitReport::Unconfirmed => format!(
                                "its process group {pgid} could not be confirmed gone; check the host"
                            ),
                        }
                    }
                    None => "it may still be running there".to_owned(),
                };
                Outcome::Error {
                    message: format!("lost the connection to {host} while the command ran; {kill}"),
                }
            }
        }
    }

    /// Kills the group while still reading the channel: unread messages
    /// would stall every channel of the connection, the kill's included.
    async fn kill_while_draining(
        &self,
        seen: &mut Seen,
        lease: &mut ChannelLease,
        sink: &mpsc::Sender<ExecEvent>,
    ) -> ExitReport {
        // The command was sent: its wrapper's first line, with the group to
        // kill, is at most a round trip away. Wait for it (or for the end).
        let header_by = tokio::time::Instant::now() + HEADER_PATIENCE;
        while seen.header.is_none() && !seen.no_header && !seen.closed {
            match tokio::time::timeout_at(header_by, lease.channel.wait()).await {
                Ok(Some(message)) => forward(seen.take(message), sink).await,
                Ok(None) => seen.closed = true,
                Err(_) => break,
            }
        }
        let Some((pgid, boot_id)) = seen.group().map(|(p, b)| (p, b.to_owned())) else {
            if seen.closed && seen.header.is_none() {
                // The session ended before the wrapper printed anything:
                // nothing of the command is running.
                return ExitReport::Confirmed;
            }
            tracing::warn!(host = %self.pool.host().name, "the command never reported its process group");
            return ExitReport::Unconfirmed;
        };
        let kill = kill_group(&self.pool, pgid, &boot_id, self.grace);
        tokio::pin!(kill);
        let mut report = None;
        let mut drain_until = None;
        loop {
            tokio::select! {
                result = &mut kill, if report.is_none() => {
                    report = Some(result);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_KILL);
                }
                message = lease.channel.wait(), if !seen.closed => match message {
                    Some(message) => forward(seen.take(message), sink).await,
                    None => seen.closed = true,
                },
                () = sleep_until_some(drain_until) => break,
            }
            if report.is_some() && seen.closed {
                break;
            }
        }
        report.unwrap_or(ExitReport::Unconfirmed)
    }
}

/// TERM, then KILL after the grace period, to the whole group, over a
/// channel of its own; reconnects if it must.
pub(crate) async fn kill_group(
    pool: &HostPool,
    pgid: u32,
    boot_id: &str,
    grace: Duration,
) -> ExitReport {
    let host = &pool.host().name;
    let script = remote::kill_script(pgid, boot_id, grace);
    let give_up = tokio::time::Instant::now() + KILL_PATIENCE + grace;
    let mut pause = Duration::from_millis(100);
    loop {
        match run_control(pool, &script).await {
            Ok(KillResult::Gone) => return ExitReport::Confirmed,
            Ok(KillResult::Rebooted) => {
                tracing::warn!(
                    host,
                    pgid,
                    "the host rebooted; the job's processes are gone"
                );
                return ExitReport::Confirmed;
            }
            Ok(KillResult::Alive) => {
                tracing::warn!(host, pgid, "processes of the job survived KILL");
                return ExitReport::Unconfirmed;
            }
            Err(err) if tokio::time::Instant::now() + pause < give_up => {
                tracing::warn!(host, pgid, %err, "cannot reach the host to kill the job yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                tracing::error!(host, pgid, %err, "gave up killing the job's processes");
                return ExitReport::Unconfirmed;
            }
        }
    }
}

async fn run_control(pool: &HostPool, script: &str) -> Result<KillResult, String> {
    let output = run_script(pool, script).await?;
    remote::parse_kill_result(&output)
        .ok_or_else(|| format!("the kill script said {:?}", output.trim()))
}

/// Runs a short script on a channel of its own; its stdout (at most 4 KiB).
pub(crate) async fn run_script(pool: &HostPool, script: &str) -> Result<String, String> {
    let mut lease = pool.channel().await.map_err(|e| e.to_string())?;
    lease
        .channel
        .exec(true, script.to_owned())
        .await
        .map_err(|e| e.to_string())?;
    let mut output = String::new();
    let read = lease
        .channel
        .make_reader()
        .take(4096)
        .read_to_string(&mut output)
        .await;
    lease.close().await;
    read.map_err(|e| e.to_string())?;
    Ok(output)
}

pub(crate) async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> (Seen, Vec<ExecEvent>) {
        let mut seen = Seen::default();
        let mut events = Vec::new();
        for chunk in chunks {
            seen.stdout(chunk, &mut events);
        }
        (seen, events)
    }

    fn out(bytes: &[u8]) -> ExecEvent {
        ExecEvent::Output {
            stream: Stream::Stdout,
            bytes: bytes.to_vec(),
        }
    }

    fn started(pgid: &str) -> ExecEvent {
        ExecEvent::Started {
            process_id: pgid.into(),
        }
    }

    #[test]
    fn the_wrapper_line_is_taken_out_even_split_across_reads() {
        let (seen, events) = feed(&[b"rje-pid 42", b" boot\nhello\n", b"world\n"]);
        assert_eq!(seen.group(), Some((42, "boot")));
        assert_eq!(events, [started("42"), out(b"hello\n"), out(b"world\n")]);
    }

    #[test]
    fn a_login_banner_before_the_wrapper_line_is_output() {
        let (seen, events) = feed(&[b"Welcome!\nrje-pid 7 b\nx"]);
        assert_eq!(seen.group(), Some((7, "b")));
        assert_eq!(events, [out(b"Welcome!\n"), started("7"), out(b"x")]);
    }

    #[test]
    fn without_a_wrapper_line_output_still_flows_past_the_limit() {
        let flood = vec![b'y'; MAX_PREAMBLE + 1];
        let (seen, events) = feed(&[&flood]);
        assert!(seen.no_header && seen.group().is_none());
        assert_eq!(events, [out(&flood)]);
    }
}
