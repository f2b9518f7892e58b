//! A plain local job's subreaper: a process between rje and the command
//! that adopts every orphan the command leaves, so that nothing it started
//! can slip out of rje's reach by leaving its process group (`setsid`,
//! `setpgid`, a double fork). (A durable job's supervisor is another
//! thing: `rje supervise`, in [`crate::durable`].)
//!
//! The subreaper is the child rje spawns. It is forked from the spawning
//! child before that one execs the command, marks itself a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`), so that orphaned descendants are re-parented
//! to it instead of to PID 1, reaps them, and exits once none is left. The
//! command runs in a process group of its own below it. Over a pipe the
//! subreaper tells rje the command's pid (which is its group id) and, when
//! the command exits, its wait status. Its own exit therefore means "no
//! process of the job is left", which is what a kill waits for.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rje_domain::ExitReport;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use crate::group::{GroupState, group_state, signal_group};
use crate::kill::{KillSequence, KillTarget};

/// The file descriptor the subreaper reports on.
const REPORT_FD: RawFd = 3;

/// A command running under its subreaper.
pub(crate) struct Subreaped {
    /// The subreaper: tokio's child, reaped by tokio.
    pub subreaper: Child,
    /// The command's pid, which is also its process group id.
    pub pgid: i32,
    /// Whether orphans are adopted and killed at the end (the default), or
    /// left to live on (`allow_daemons`).
    keeps_descendants: bool,
    report: pipe::Receiver,
}

/// Starts `command` under a subreaper. `allow_daemons` lets processes
/// that leave the command's group outlive its normal end.
pub(crate) async fn spawn(mut command: Command, allow_daemons: bool) -> io::Result<Subreaped> {
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let write_fd = write_end.as_raw_fd();
    let keeps_descendants = !allow_daemons;
    // SAFETY: the closure runs in the forked child before exec, and calls
    // only async-signal-safe functions (fork, prctl, setpgid, dup2,
    // close_range, close, sigaction, write, waitpid, _exit); it allocates
    // nothing and takes no lock.
    unsafe {
        command.pre_exec(move || become_subreaper(write_fd, keeps_descendants));
    }
    let subreaper = command.spawn()?;
    drop(write_end);
    let mut report = pipe::Receiver::from_owned_fd(read_end)?;
    let pid = read_i32(&mut report).await.map_err(|err| {
        io::Error::other(format!(
            "the job's supervisor did not report the command: {err}"
        ))
    })?;
    Ok(Subreaped {
        subreaper,
        pgid: pid,
        keeps_descendants,
        report,
    })
}

async fn read_i32(report: &mut pipe::Receiver) -> io::Result<i32> {
    let mut bytes = [0u8; 4];
    report.read_exact(&mut bytes).await?;
    Ok(i32::from_ne_bytes(bytes))
}

impl Subreaped {
    /// Waits for the command (not its leftovers) to exit: its raw wait
    /// status, or an error if the subreaper died without reporting it.
    pub async fn command_exit(&mut self) -> io::Result<i32> {
        read_i32(&mut self.report).await
    }

    /// Whether every process of the job is gone.
    fn all_gone(&mut self) -> bool {
        if self.keeps_descendants {
            // The subreaper exits when its last descendant has.
            matches!(self.subreaper.try_wait(), Ok(Some(_)) | Err(_))
        } else {
            let _ = self.subreaper.try_wait();
            group_state(self.pgid) == GroupState::Gone
        }
    }

    /// Waits up to `within` for every process of the job to be gone.
    pub async fn wait_all_gone(&mut self, within: Duration) -> bool {
        if self.keeps_descendants {
            return timeout(within, self.subreaper.wait()).await.is_ok();
        }
        // `None`: no bound (a wait of `Duration::MAX`).
        let deadline = Instant::now().checked_add(within);
        loop {
            if self.all_gone() {
                return true;
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return false;
            }
            sleep(CHECK_EVERY).await;
        }
    }

    /// Kills every process of the job, as `sequence` goes (see
    /// [`KillSequence`]): TERM to the command's group and to every
    /// descendant of the subreaper, up to the grace for them to go, then
    /// KILL, repeated until none is left or the bound has passed.
    pub async fn kill_all(&mut self, sequence: KillSequence) -> ExitReport {
        let report = sequence.run(&mut *self).await;
        if report == ExitReport::Unconfirmed {
            let left = self.descendants();
            tracing::warn!(
                pgid = self.pgid,
                ?left,
                "processes of the job survived KILL"
            );
        }
        report
    }

    fn signal_all(&self, signal: Signal) {
        if let Err(err) = signal_group(self.pgid, signal) {
            tracing::debug!(pgid = self.pgid, %err, "could not signal the group");
        }
        for pid in self.descendants() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Live processes below the subreaper (or, for a job that allows
    /// daemons, below the command), from /proc.
    fn descendants(&self) -> Vec<i32> {
        let root = if self.keeps_descendants {
            self.subreaper.id().and_then(|pid| i32::try_from(pid).ok())
        } else {
            Some(self.pgid)
        };
        root.map(|root| descendants_of(root, &process_table()))
            .unwrap_or_default()
    }
}

/// What [`Subreaped::kill_all`] ends: every process of the job.
impl KillTarget for Subreaped {
    fn signal(&mut self, signal: Signal) {
        self.signal_all(signal);
    }

    async fn wait_gone(&mut self, within: Duration) -> bool {
        self.wait_all_gone(within).await
    }

    fn outlived_grace(&mut self) {
        tracing::debug!(
            pgid = self.pgid,
            "the job outlived its grace period; sending KILL"
        );
    }
}

impl Drop for Subreaped {
    /// A run abandoned half-way (its task dropped) still leaves nothing
    /// behind.
    fn drop(&mut self) {
        if !self.all_gone() {
            self.signal_all(Signal::SIGKILL);
        }
    }
}

const CHECK_EVERY: Duration = Duration::from_millis(20);

/// (pid, parent pid) of every live (non-zombie) process.
pub(crate) fn process_table() -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            // The process may have exited since read_dir.
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            (state != "Z" && state != "X").then_some((pid, ppid))
        })
        .collect()
}

/// Every process below `root` in `table`, `root` excluded.
pub(crate) fn descendants_of(root: i32, table: &[(i32, i32)]) -> Vec<i32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in table {
            if ppid == parent && pid != root && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// Runs in the child rje spawned, after fork and before exec. Forks the
/// command's process, which returns to exec it; the calling process stays
/// behind as the subreaper and never returns.
fn become_subreaper(report_fd: RawFd, keeps_descendants: bool) -> io::Result<()> {
    // SAFETY (for every libc call below): plain system calls on values we
    // own, async-signal-safe as required after fork in a threaded process.
    unsafe {
        // Before the fork, so that no orphan can slip by between the two.
        if keeps_descendants && libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let command = libc::fork();
        if command < 0 {
            return Err(io::Error::last_os_error());
        }
        if command == 0 {
            // The command: its own process group, so that its group id is
            // its pid and a group kill never reaches the subreaper.
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(());
        }
        // Both sides set the group, as shells do: whichever runs first, the
        // group exists before rje learns its id, so a kill sent at once
        // cannot miss it. (EACCES once the command has exec'd is fine.)
        libc::setpgid(command, command);
        supervise(command, report_fd, keeps_descendants)
    }
}

/// The subreaper's whole life. Never returns.
unsafe fn supervise(command: libc::pid_t, report_fd: RawFd, keeps_descendants: bool) -> ! {
    // SAFETY: as in `become_subreaper`.
    unsafe {
        // Keep only the report pipe: the subreaper must not hold rje's
        // sockets, database or locks, the job's output pipes, or the pipe
        // through which the spawning rje waits for the exec.
        if report_fd != REPORT_FD {
            libc::dup2(report_fd, REPORT_FD);
        }
        libc::syscall(libc::SYS_close_range, REPORT_FD as u32 + 1, u32::MAX, 0u32);
        for fd in 0..REPORT_FD {
            libc::close(fd);
        }
        // A stray signal to the subreaper would set the job's processes
        // loose; rje never signals it (a kill reaches the command's group
        // and the descendants instead).
        // sigaction, not signal(): only the former is async-signal-safe.
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        for signal in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
        ] {
            libc::sigaction(signal, &ignore, std::ptr::null_mut());
        }
        write_all(REPORT_FD, &command.to_ne_bytes());
        loop {
            let mut status: libc::c_int = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == command {
                write_all(REPORT_FD, &status.to_ne_bytes());
                if !keeps_descendants {
                    libc::_exit(0);
                }
            } else if pid < 0 && *libc::__errno_location() != libc::EINTR {
                // ECHILD: nothing of the job is left.
                libc::_exit(0);
            }
        }
    }
}

unsafe fn write_all(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a live slice.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written <= 0 {
            // SAFETY: reads this thread's errno.
            if written < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[written.unsigned_abs()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_are_found_through_every_level() {
        // 10 → 11 → 12 → 13, 10 → 14; 20 is someone else's.
        let table = [(11, 10), (12, 11), (13, 12), (14, 10), (20, 1), (10, 1)];
        let mut found = descendants_of(10, &table);
        found.sort_unstable();
        assert_eq!(found, [11, 12, 13, 14]);
        assert!(descendants_of(20, &table).is_empty());
    }
}
