//! What a supervisor does: runs the command to its end, keeps its deadline
//! and its files' bound, ends what it leaves, and records the end.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use rje_domain::ExitReport;

use crate::kill::{BlockingKillTarget, KillSequence, poll_gone};
use crate::subreaper::{descendants_of, process_table};

use super::{
    ExitRecord, JobDir, Spec, SuperviseError, SupervisorRecord, boot_id, create_private,
    files_removed, no_room_left, now_ms, punch_hole, remove_if_present, write_json, write_whole,
};

/// What a supervisor does with its job directory: runs the spec to its end
/// and records it.
pub fn supervise(dir: &JobDir) -> Result<ExitRecord, SuperviseError> {
    supervise_then(dir, || {})
}

/// [`supervise`], calling `started` once the command runs and its pid file
/// is written.
pub(super) fn supervise_then(
    dir: &JobDir,
    on_started: impl FnOnce(),
) -> Result<ExitRecord, SuperviseError> {
    let started = Instant::now();
    let spec: Spec = dir
        .read_spec()
        .and_then(|spec| spec.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
        .map_err(|source| SuperviseError::Spec {
            path: dir.spec(),
            source,
        })?;
    // Orphans of the command are re-parented here, not to PID 1, so that
    // nothing it started escapes the end of the job.
    // SAFETY: prctl with these arguments only sets a flag of this process.
    if unsafe { nix::libc::prctl(nix::libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!(
            "rje supervise: cannot adopt orphans ({}); a process that leaves the \
             job's group may outlive it",
            io::Error::last_os_error()
        );
    }
    let me = std::process::id() as i32;
    let record = SupervisorRecord {
        pid: me,
        boot_id: boot_id().unwrap_or_default(),
        started_at_ms: now_ms(),
        start_ticks: crate::group::start_ticks(me),
    };
    write_json(&dir.supervisor(), &record)?;
    // Taken before the command can fill the disk: however full it gets,
    // the end can be written.
    let exit_slot = ExitSlot::reserve(dir).map_err(|source| SuperviseError::Write {
        path: dir.exit(),
        source,
    })?;
    // New files, private: nothing planted in their place is written through.
    let append = |path: PathBuf| {
        OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| SuperviseError::Write { path, source })
    };
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(append(dir.stdout())?)
        .stderr(append(dir.stderr())?)
        // The spec holds the job's whole environment; the supervisor's own
        // is not the job's business.
        .env_clear()
        .envs(&spec.env);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(SuperviseError::Start)?;
    let pgid = child.id() as i32;
    // Not reaped before the wait below, so its start time can be read: with
    // it, a later kill can tell this group from one that got its number.
    let named = match crate::group::start_ticks(pgid) {
        Some(ticks) => format!("{pgid} {ticks}"),
        None => pgid.to_string(),
    };
    write_whole(&dir.pid(), named.as_bytes()).map_err(|source| SuperviseError::Write {
        path: dir.pid(),
        source,
    })?;
    on_started();

    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let deadline = started + Duration::from_secs(spec.timeout_secs);
    let grace = Duration::from_millis(spec.kill_grace_ms);
    let mut bounds = [
        FileBound::new(dir.stdout(), spec.max_output_bytes),
        FileBound::new(dir.stderr(), spec.max_output_bytes),
    ];
    let mut full = false;
    let stop = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ended.recv_timeout(left.min(CHECK_EVERY)) {
            Ok(status) => break Stop::Ended(status),
            Err(_) if Instant::now() >= deadline => break Stop::Deadline,
            Err(_) => {
                for bound in &mut bounds {
                    bound.keep();
                }
                full |= no_room_left(dir.root());
                if files_removed(dir) {
                    break Stop::FilesRemoved;
                }
            }
        }
    };
    let timed_out = matches!(stop, Stop::Deadline);
    let removed = matches!(stop, Stop::FilesRemoved);
    let status = match stop {
        Stop::Ended(status) => status,
        Stop::Deadline | Stop::FilesRemoved => {
            // Everything of the job at once, daemons too: one grace for
            // all, not one for the group and another for what left it.
            let mut command = Overdue {
                leftovers: Leftovers::of(pgid, true),
                ended: &ended,
                status: None,
                killed: false,
            };
            KillSequence {
                grace,
                confirm_within: KILL_CONFIRM,
                kill_every: LEFTOVERS_CHECK,
            }
            .run_blocking(&mut command);
            // After the KILL the shell is waited for, however long it takes.
            command.status.unwrap_or_else(|| {
                ended
                    .recv()
                    .unwrap_or_else(|_| Err(io::Error::other("lost the command")))
            })
        }
    };
    // What the command left: given a moment to finish writing, as on a
    // plain run, then ended. A job that allows daemons keeps those that
    // left its group; its group's stragglers go all the same.
    let killed = timed_out || removed;
    let mut leftovers = Leftovers::of(pgid, !spec.allow_daemons || killed);
    if killed {
        // What survived the kill above had its grace already.
        leftovers.end(Duration::ZERO);
    } else {
        poll_gone(LINGER, LEFTOVERS_CHECK, || leftovers.gone());
        leftovers.end(grace);
    }
    if removed {
        return Err(SuperviseError::FilesRemoved);
    }
    let status = status.unwrap_or_else(|_| ExitStatus::from_raw(0x7f00));
    let record = ExitRecord {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        // The command may have ended on its failed write just now.
        state_dir_full: full || no_room_left(dir.root()),
        ended_at_ms: now_ms(),
    };
    exit_slot.fill(&record)?;
    Ok(record)
}

/// The command past its deadline (or with its files gone), as its kill
/// sees it: everything of the job is signalled, and it is gone once its
/// shell has been waited for (`ended`, whose status is kept) and nothing
/// else of it is left.
struct Overdue<'a> {
    leftovers: Leftovers,
    ended: &'a mpsc::Receiver<io::Result<ExitStatus>>,
    status: Option<io::Result<ExitStatus>>,
    killed: bool,
}

impl BlockingKillTarget for Overdue<'_> {
    fn signal(&mut self, signal: Signal) {
        self.leftovers.signal(signal);
        self.killed |= signal == Signal::SIGKILL;
    }

    fn wait_gone(&mut self, within: Duration) -> bool {
        let deadline = Instant::now().checked_add(within);
        if self.status.is_none() {
            match self.ended.recv_timeout(within) {
                Ok(status) => self.status = Some(status),
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                // The waiter went without a word: nothing will tell any
                // more. Before the KILL that is as a wait that ran out
                // (the KILL follows); after it, the end is lost.
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.killed,
            }
        }
        // Only once the shell has been waited for: looking for what is
        // left reaps every exited child, which must not take the shell's
        // status from its waiter.
        let left = deadline.map_or(Duration::MAX, |at| {
            at.saturating_duration_since(Instant::now())
        });
        poll_gone(left, LEFTOVERS_CHECK, || self.leftovers.gone())
    }
}

/// Why the supervisor stopped waiting for the command.
enum Stop {
    Ended(io::Result<ExitStatus>),
    Deadline,
    /// The job's directory went: nobody could learn the end any more.
    FilesRemoved,
}

/// How often a running command's files are checked: against the bound,
/// for room left, and for being there at all.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Room kept for `exit.json`, far more than a record takes.
const EXIT_ROOM: usize = 1024;

/// `exit.partial`, made with room for the record when the supervisor
/// starts, so that a command that fills the disk cannot take from the
/// supervisor the room to say how it ended (the record is written over the
/// reserved bytes, then renamed to `exit.json`).
struct ExitSlot {
    file: File,
    partial: PathBuf,
    path: PathBuf,
}

impl ExitSlot {
    fn reserve(dir: &JobDir) -> io::Result<Self> {
        let path = dir.exit();
        let partial = path.with_extension("partial");
        remove_if_present(&partial)?;
        let mut file = create_private(&partial)?;
        file.write_all(&[b' '; EXIT_ROOM])?;
        Ok(Self {
            file,
            partial,
            path,
        })
    }

    fn fill(self, record: &ExitRecord) -> Result<(), SuperviseError> {
        let bytes = serde_json::to_vec(record).map_err(io::Error::other);
        let written = bytes.and_then(|bytes| {
            if !self.still_in_place() {
                // Something else took its name (a link planted there, say):
                // the record is written anew, never through it.
                return write_whole(&self.path, &bytes);
            }
            self.file.write_all_at(&bytes, 0)?;
            self.file.set_len(bytes.len() as u64)?;
            std::fs::rename(&self.partial, &self.path)
        });
        written.map_err(|source| SuperviseError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Whether `exit.partial` is still the file reserved.
    fn still_in_place(&self) -> bool {
        match (
            self.file.metadata(),
            std::fs::symlink_metadata(&self.partial),
        ) {
            (Ok(ours), Ok(there)) => ours.dev() == there.dev() && ours.ino() == there.ino(),
            _ => false,
        }
    }
}

/// Space is given back in steps of at least this much.
const BOUND_STEP: u64 = 4 * 1024 * 1024;

/// The file system's block: a hole must cover whole blocks, or the edges
/// are zeroed data instead of a hole.
const BLOCK: u64 = 4096;

/// Keeps one output file of a running command within the cap plus a
/// margin: the head the store keeps (a quarter of the cap, and a block or
/// so more) and the last cap's worth stay; the middle, which the store's
/// budget drops anyway, is given back as a hole. A follower finds the hole
/// (`SEEK_DATA`) and reports the bytes skipped.
struct FileBound {
    path: PathBuf,
    head_keep: u64,
    tail_keep: u64,
    /// Given back up to here.
    released: u64,
}

impl FileBound {
    fn new(path: PathBuf, cap: u64) -> Self {
        Self {
            path,
            head_keep: (cap / 4 + 64 * 1024).div_ceil(BLOCK) * BLOCK,
            tail_keep: cap,
            released: 0,
        }
    }

    fn keep(&mut self) {
        if self.tail_keep == 0 {
            return;
        }
        let Ok(size) = std::fs::metadata(&self.path).map(|m| m.len()) else {
            return;
        };
        let from = self.released.max(self.head_keep);
        let to = size.saturating_sub(self.tail_keep) / BLOCK * BLOCK;
        if to < from.saturating_add(BOUND_STEP) {
            return;
        }
        match punch_hole(&self.path, from, to) {
            Ok(()) => self.released = to,
            Err(err) => {
                eprintln!(
                    "rje supervise: cannot bound {} ({err}); it grows with the output",
                    self.path.display()
                );
                // Not again: the file system cannot do it.
                self.tail_keep = 0;
            }
        }
    }
}

/// The supervisor has no log but its stderr (`supervisor.log`).
fn signal_group(pgid: i32, signal: Signal) {
    if let Err(err) = crate::group::signal_group(pgid, signal) {
        eprintln!("rje supervise: cannot signal group {pgid}: {err}");
    }
}

/// How often what is left of a job is looked for, and KILL sent again.
const LEFTOVERS_CHECK: Duration = Duration::from_millis(20);
/// How long after a KILL the job's processes may take to be gone before
/// the supervisor gives up confirming it.
const KILL_CONFIRM: Duration = Duration::from_secs(5);
/// After the command exits, how long what it left behind may take to
/// finish on its own (writing its last output) before it is ended: as on
/// a plain run.
const LINGER: Duration = Duration::from_millis(500);

/// What the command left: its group, and (`escaped`) the orphans
/// re-parented to the supervisor (`me`), which left the group.
struct Leftovers {
    pgid: i32,
    me: i32,
    escaped: bool,
    /// The group was found empty once: its number is free from then on,
    /// and may name another group, which is never signalled nor waited for.
    group_gone: std::cell::Cell<bool>,
}

impl Leftovers {
    fn of(pgid: i32, escaped: bool) -> Self {
        Self {
            pgid,
            me: std::process::id() as i32,
            escaped,
            group_gone: std::cell::Cell::new(false),
        }
    }

    fn group_gone(&self) -> bool {
        if !self.group_gone.get() && killpg(Pid::from_raw(self.pgid), None) == Err(Errno::ESRCH) {
            self.group_gone.set(true);
        }
        self.group_gone.get()
    }

    /// No group, and (when they count) no child left, orphans being
    /// adopted as children: known without reading all of /proc.
    fn gone(&self) -> bool {
        let no_children = reap_orphans();
        self.group_gone()
            && (!self.escaped
                || no_children
                || descendants_of(self.me, &process_table()).is_empty())
    }

    /// TERM, the grace, then KILL until none is left (for
    /// [`KILL_CONFIRM`] at most).
    fn end(&mut self, grace: Duration) {
        if self.gone() {
            return;
        }
        let sequence = KillSequence {
            grace,
            confirm_within: KILL_CONFIRM,
            kill_every: LEFTOVERS_CHECK,
        };
        if sequence.run_blocking(self) == ExitReport::Unconfirmed {
            eprintln!("rje supervise: processes of the job survived KILL");
        }
    }
}

impl BlockingKillTarget for Leftovers {
    fn signal(&mut self, signal: Signal) {
        if !self.group_gone() {
            signal_group(self.pgid, signal);
        }
        if self.escaped {
            for pid in descendants_of(self.me, &process_table()) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    fn wait_gone(&mut self, within: Duration) -> bool {
        poll_gone(within, LEFTOVERS_CHECK, || self.gone())
    }
}

/// Reaps every exited child (orphans adopted as subreaper included);
/// whether no child at all is left.
fn reap_orphans() -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return false,
            Ok(_) => {}
            Err(Errno::ECHILD) => return true,
            Err(_) => return false,
        }
    }
}
