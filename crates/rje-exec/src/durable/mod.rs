//! A command that outlives the rje process that started it: a supervisor
//! runs the command described in `DIR/spec.json` in a session of its own,
//! with its output in files and its deadline enforced by the supervisor
//! itself, and records how it ended in `DIR/exit.json`, written whole
//! (write, then rename). Anyone who can read the directory can follow the
//! output by byte offset and learn the end, whether or not the process
//! that launched it is still alive.
//!
//! - [`Launcher`] (the worker's side) and [`serve_launches`] (`rje
//!   supervise`, one per worker) fork the supervisors;
//! - [`supervise`] is what a supervisor does;
//! - [`follow`] reads a job's files as they grow.
//!
//! The directory, as the supervisor leaves it:
//!
//! ```text
//! spec.json        what to run (written by the launcher before the job's
//!                  start is recorded)
//! launch           who decided the launch, whoever came first: `launched`
//!                  (the command may have started) or `abandoned` (a
//!                  worker proved its launcher gone before it started it:
//!                  it never will)
//! supervisor.json  the supervisor's pid, start time and the machine's boot id
//! pid              "PGID START": the command's pid, which is its process
//!                  group id, and when it started (/proc/PID/stat field 22)
//! stdout, stderr   everything the command wrote, appended
//! exit.partial     room for the end, taken when the supervisor starts
//! exit.json        how it ended; present only once it has
//! ```
//!
//! Every directory is made 0700 and every file 0600 (the spec holds the
//! job's environment, the output may hold anything), whatever the umask;
//! files are created only where nothing is (`O_EXCL`) and opened without
//! following links, so a link planted in a job's directory is never
//! written or read through. A signal goes to the command's group only
//! while that group provably is the command's ([`CommandGroup::is_current`]).

mod follow;
mod forker;
mod local;
mod state_dir;
mod supervise;
mod watch;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use follow::follow;
pub use forker::{Launcher, serve_launches};
pub use local::DurableLocalExecutor;
pub use state_dir::{StateDirError, prepare_state_dir};
pub use supervise::supervise;

/// Why a job failed when its state directory had no room left: what it
/// printed then is lost, and nothing else would say so.
pub const STATE_DIR_FULL: &str = "the state directory is full (No space left on device)";

/// Why a job failed whose directory was removed under it: nobody can learn
/// its end any more, so its command is ended.
pub const FILES_REMOVED: &str = "the job's files were removed while it ran";

/// What to run, as the launcher writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub command: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// Seconds from the supervisor's start to the kill.
    pub timeout_secs: u64,
    /// Between TERM and KILL, in milliseconds.
    pub kill_grace_ms: u64,
    /// Processes that leave the command's group may outlive it.
    #[serde(default)]
    pub allow_daemons: bool,
    /// The store's output cap per stream (0: none). While the command runs
    /// the supervisor keeps each file within about this much more than
    /// the cap by giving back the middle, which the cap drops anyway: so
    /// nothing grows without bound while no worker follows the job.
    #[serde(default)]
    pub max_output_bytes: u64,
    /// The store the job belongs to (its database, as the server names it):
    /// servers on different stores may share a state directory, and a
    /// server does not remove the files of another store's job while that
    /// store may still come back for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The job's attempt this directory was made for (see
    /// [`crate::StartGate::attempt`]): a worker that proves the launch
    /// never happened queues the job again at exactly this attempt.
    /// `None` from an older rje, or outside a job: never proven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// The name of the file that settles, once, whether a job's command may
/// start in its directory (see [`LaunchMark`]).
const LAUNCH: &str = "launch";

/// Who settled a job directory's launch, first: written whole and only
/// where nothing is (a link of a finished file, which fails on anything
/// there), so that the launcher and a worker proving it gone never both
/// win, and a reader never sees half of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchMark {
    /// The launcher claimed it: the command may have started.
    Launched,
    /// A worker proved the launcher gone before it launched: the command
    /// never started there, and never will.
    Abandoned,
}

impl LaunchMark {
    fn word(self) -> &'static str {
        match self {
            LaunchMark::Launched => "launched",
            LaunchMark::Abandoned => "abandoned",
        }
    }

    /// Anything but `abandoned` may have been a launch: only that word
    /// proves none.
    fn read(text: &str) -> Self {
        if text.trim() == LaunchMark::Abandoned.word() {
            LaunchMark::Abandoned
        } else {
            LaunchMark::Launched
        }
    }
}

/// Why a job's launch did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Its directory was launched from before: the command may have run,
    /// and it is never started twice.
    #[error("{0} exists: the command may have started before; not starting it again")]
    MayHaveStarted(PathBuf),
    /// A worker found this launch's worker silent past its lease, proved
    /// that the command had not started, and queued the job again.
    #[error(
        "the launch was given up while this worker was stalled: the command never started, \
         and the job was queued again"
    )]
    Abandoned,
    /// The directory made for this launch was replaced or removed before
    /// the command started (by a later attempt's worker): nothing ran.
    #[error("the job's directory was replaced before the command started")]
    Replaced,
    /// The launch was claimed, then the supervisor's start failed in a
    /// way that does not prove nothing forked: the command may run, so it
    /// is not started again (here or on another machine).
    #[error("{}; the command may have started, so it is not started again", describe_io(.0))]
    FailedAfterClaim(io::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A job's directory, held open: what is read, written and claimed
/// through it stays in this very directory even if the path comes to name
/// another one (a later attempt replaced it). A launcher that stalled
/// between the start mark and its claim thus never launches in a
/// directory made for someone else, nor does a prover claim one.
#[derive(Debug)]
pub struct OpenJobDir {
    dir: JobDir,
    handle: File,
}

impl OpenJobDir {
    /// Opens the directory of `dir`; a link there is refused.
    pub fn open(dir: &JobDir) -> io::Result<Self> {
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
            .open(dir.root())?;
        Ok(Self {
            dir: dir.clone(),
            handle,
        })
    }

    pub fn dir(&self) -> &JobDir {
        &self.dir
    }

    /// Who settled the launch, if anyone has.
    pub fn read_mark(&self) -> io::Result<Option<LaunchMark>> {
        match self.read_at(LAUNCH) {
            Ok(bytes) => Ok(bytes.map(|bytes| LaunchMark::read(&String::from_utf8_lossy(&bytes)))),
            // Something that is not a claim's file at the name (a planted
            // link, a directory) proves nothing about the launch: as if
            // claimed, so that nothing is started or given up over it.
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(nix::libc::ELOOP | nix::libc::EISDIR)
                ) =>
            {
                Ok(Some(LaunchMark::Launched))
            }
            Err(err) => Err(err),
        }
    }

    /// The spec, as read through this very directory.
    pub fn read_spec(&self) -> io::Result<Option<Spec>> {
        self.read_at("spec.json")?
            .map(|bytes| serde_json::from_slice(&bytes).map_err(io::Error::other))
            .transpose()
    }

    /// Settles the launch as `mark` unless someone did first: `Ok(Err)`
    /// holds what they settled it as. `NotFound` once the directory was
    /// removed (nothing can be created in a removed directory).
    pub fn mark(&self, mark: LaunchMark) -> io::Result<Result<(), LaunchMark>> {
        // A random draft name, created only where nothing is: no other
        // claimant (of this process, or of another pid namespace where pids
        // repeat) can share it, unlink it or link it as its own.
        let draft = format!("launch.{}.partial", uuid::Uuid::new_v4().simple());
        self.create_new(&draft, mark.word().as_bytes())?;
        // link(2) fails on anything at the name, a link included: the
        // first to link wins, with its word already in place.
        let linked = nix::unistd::linkat(
            &self.handle,
            draft.as_str(),
            &self.handle,
            LAUNCH,
            nix::fcntl::AtFlags::empty(),
        );
        let _ = self.unlink(&draft);
        match linked {
            Ok(()) => Ok(Ok(())),
            Err(nix::errno::Errno::EEXIST) => {
                Ok(Err(self.read_mark()?.unwrap_or(LaunchMark::Launched)))
            }
            Err(err) => Err(io::Error::from(err)),
        }
    }

    /// Writes `bytes` to the file `name` whole (a draft, then a rename).
    fn write_whole(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let draft = format!("{name}.partial");
        self.write_new(&draft, bytes)?;
        nix::fcntl::renameat(&self.handle, draft.as_str(), &self.handle, name)
            .map_err(io::Error::from)
    }

    /// Creates the private file `name` where nothing is (whatever was
    /// there, a leftover or a planted link, is unlinked first, never
    /// opened) and writes `bytes` to it.
    fn write_new(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.unlink(name)?;
        self.create_new(name, bytes)
    }

    /// Writes `bytes` to a file `name` made here and now: fails if
    /// anything, a link included, is at the name.
    fn create_new(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let fd = nix::fcntl::openat(
            &self.handle,
            name,
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_EXCL
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(io::Error::from)?;
        File::from(fd).write_all(bytes)
    }

    /// Unlinks the file `name`, if it is there.
    fn unlink(&self, name: &str) -> io::Result<()> {
        match nix::unistd::unlinkat(&self.handle, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(err) => Err(io::Error::from(err)),
        }
    }

    /// The bytes of the file `name`; `None` when it is not there. A link
    /// is not read.
    fn read_at(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let fd = match nix::fcntl::openat(
            &self.handle,
            name,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(err) => return Err(io::Error::from(err)),
        };
        let mut bytes = Vec::new();
        File::from(fd).read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }
}

/// Makes the job's directory with `spec` in it, before the job's start is
/// recorded, so that a worker lost in between leaves proof that its
/// command never started (see [`LaunchMark`]). A directory already there
/// whose launch nobody claimed, or that was abandoned, is a lost
/// attempt's: it is replaced by a new one (never reused, so that the lost
/// attempt's launcher, should it wake, claims nothing here). One whose
/// launch was claimed is [`LaunchError::MayHaveStarted`].
pub fn prepare(dir: &JobDir, spec: &Spec) -> Result<OpenJobDir, LaunchError> {
    if let Some(parent) = dir.root().parent() {
        create_private_dir(parent, true)?;
    }
    let bytes = serde_json::to_vec(spec).map_err(io::Error::other)?;
    // Twice: a stale worker of an older attempt may make its own at the
    // same moment (it is fenced at its start mark).
    for _ in 0..2 {
        match create_private_dir(dir.root(), false) {
            Ok(()) => {
                let open = OpenJobDir::open(dir)?;
                open.write_whole("spec.json", &bytes)?;
                return Ok(open);
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                let found = match OpenJobDir::open(dir) {
                    Ok(found) => found,
                    // Removed meanwhile: made again on the next round.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err.into()),
                };
                // Only a lost attempt's directory may go: one made for an
                // attempt (an older rje's names none) no later than this
                // one (a stalled worker of an earlier attempt must not
                // take a newer one's), whose launch is given up first, so
                // that its launcher, should it wake, starts nothing.
                let made_for = found.read_spec().ok().flatten().map(|spec| spec.attempt);
                match made_for {
                    Some(None) => {
                        return Err(LaunchError::MayHaveStarted(dir.root().to_owned()));
                    }
                    Some(Some(theirs)) if spec.attempt.is_some_and(|ours| theirs > ours) => {
                        return Err(LaunchError::Replaced);
                    }
                    // No spec: its maker died before the start mark.
                    _ => {}
                }
                match found.mark(LaunchMark::Abandoned)? {
                    Ok(()) | Err(LaunchMark::Abandoned) => {}
                    Err(LaunchMark::Launched) => {
                        return Err(LaunchError::MayHaveStarted(dir.root().to_owned()));
                    }
                }
                match std::fs::remove_dir_all(dir.root()) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err.into()),
                    _ => {}
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(LaunchError::Replaced)
}

/// Who supervises, on which boot of the machine: a pid means nothing
/// after a reboot, so every later signal checks the boot id first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorRecord {
    pub pid: i32,
    pub boot_id: String,
    pub started_at_ms: u64,
    /// When the supervisor started, in clock ticks since boot (field 22
    /// of /proc/PID/stat): a later process given its pid started later.
    /// `None` in a record of an older rje.
    #[serde(default)]
    pub start_ticks: Option<u64>,
}

impl SupervisorRecord {
    /// Whether this supervisor provably still runs, strictly enough to
    /// signal what is below it: this boot's id read and matched, its pid
    /// alive and started when the record says (a record without its start,
    /// of an older rje, proves nothing).
    pub fn is_provably_alive(&self) -> bool {
        boot_id().is_ok_and(|boot| boot == self.boot_id)
            && self.start_ticks.is_some()
            && self.is_alive()
    }

    /// Whether this supervisor still runs: on this boot, its pid alive and
    /// not a later process's.
    pub fn is_alive(&self) -> bool {
        // A boot id that cannot be read was not recorded either.
        let this_boot = boot_id().map_or(true, |boot| boot == self.boot_id);
        // A zombie is gone too: its new parent (init, by now) may not have
        // reaped it yet.
        this_boot
            && crate::group::process_alive(self.pid)
            && self
                .start_ticks
                .is_none_or(|ticks| crate::group::start_ticks(self.pid) == Some(ticks))
    }
}

/// The command's process group as its supervisor recorded it: enough to
/// tell it from a group that got the same number later (after a reboot, or
/// once the job's processes were gone and the number was given out again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandGroup {
    pub pgid: i32,
    /// When the group's leader started, in clock ticks since boot; `None`
    /// in a pid file of an older rje.
    pub start_ticks: Option<u64>,
    /// The boot the supervisor recorded ("" when it recorded none).
    pub boot_id: String,
    /// The supervisor's pid, which is the command's session (it calls
    /// `setsid`); `None` when it left no record.
    pub session: Option<i32>,
}

impl CommandGroup {
    /// Whether the group is provably still the command's: on the same
    /// boot, with its leader the very process that started then (a pid is
    /// not given out again while its process, even a zombie, or its group
    /// lives). A leader that is gone, or a record without a start time,
    /// proves nothing: the number may be someone else's group by now.
    ///
    /// A leader that is gone still leaves a proof when every process left
    /// in the group is of the supervisor's session and started after the
    /// leader: what a command left behind when its supervisor was killed.
    pub fn is_current(&self) -> bool {
        let Some(recorded) = self.start_ticks else {
            return false;
        };
        if !boot_id().is_ok_and(|boot| boot == self.boot_id) {
            return false;
        }
        match crate::group::start_ticks(self.pgid) {
            Some(leader) => leader == recorded,
            None => self
                .session
                .is_some_and(|session| crate::group::members_all_of(self.pgid, session, recorded)),
        }
    }

    /// Sends `signal` to the group if it is provably still the command's
    /// ([`CommandGroup::is_current`]); whether it was sent.
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) -> bool {
        if !self.is_current() {
            return false;
        }
        if let Err(err) = crate::group::signal_group(self.pgid, signal) {
            tracing::debug!(pgid = self.pgid, %err, "could not signal the group");
        }
        true
    }
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// The supervisor's deadline killed it.
    pub timed_out: bool,
    /// The state directory had no room left while the command ran: what
    /// it printed then may be lost.
    #[serde(default)]
    pub state_dir_full: bool,
    pub ended_at_ms: u64,
}

/// The files of one job's directory.
#[derive(Debug, Clone)]
pub struct JobDir {
    root: PathBuf,
}

impl JobDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn spec(&self) -> PathBuf {
        self.root.join("spec.json")
    }

    pub fn supervisor(&self) -> PathBuf {
        self.root.join("supervisor.json")
    }

    pub fn pid(&self) -> PathBuf {
        self.root.join("pid")
    }

    pub fn stdout(&self) -> PathBuf {
        self.root.join("stdout")
    }

    pub fn stderr(&self) -> PathBuf {
        self.root.join("stderr")
    }

    pub fn exit(&self) -> PathBuf {
        self.root.join("exit.json")
    }

    /// How the command ended, once it has.
    pub fn read_exit(&self) -> io::Result<Option<ExitRecord>> {
        read_json(&self.exit())
    }

    /// What to run, as the launcher wrote it.
    pub fn read_spec(&self) -> io::Result<Option<Spec>> {
        read_json(&self.spec())
    }

    /// The command's process group, once the supervisor has named it.
    pub fn read_pgid(&self) -> io::Result<Option<i32>> {
        Ok(read_text(&self.pid())?
            .map(|text| parse_pid_file(&text))
            .transpose()?
            .map(|(pgid, _)| pgid))
    }

    /// The command's group with what proves it is still the command's,
    /// once the supervisor has named it.
    pub fn read_command(&self) -> io::Result<Option<CommandGroup>> {
        let Some(text) = read_text(&self.pid())? else {
            return Ok(None);
        };
        let (pgid, start_ticks) = parse_pid_file(&text)?;
        // Written before the pid file: missing, it proves nothing.
        let supervisor = self.read_supervisor()?;
        let session = supervisor.as_ref().map(|supervisor| supervisor.pid);
        let boot_id = supervisor
            .map(|supervisor| supervisor.boot_id)
            .unwrap_or_default();
        Ok(Some(CommandGroup {
            pgid,
            start_ticks,
            boot_id,
            session,
        }))
    }

    pub fn read_supervisor(&self) -> io::Result<Option<SupervisorRecord>> {
        read_json(&self.supervisor())
    }
}

/// "PGID START" (or "PGID", from an older rje).
fn parse_pid_file(text: &str) -> io::Result<(i32, Option<u64>)> {
    let mut fields = text.split_whitespace();
    let pgid = fields.next().and_then(|field| field.parse().ok());
    let start = fields.next().map(str::parse::<u64>);
    match (pgid, start, fields.next()) {
        (Some(pgid), None, None) => Ok((pgid, None)),
        (Some(pgid), Some(Ok(start)), None) => Ok((pgid, Some(start))),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a pid file holding {text:?}"),
        )),
    }
}

/// Why `rje supervise` could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot read the job's spec {path}: {source}")]
    Spec { path: PathBuf, source: io::Error },
    #[error("cannot start the command: {0}")]
    Start(io::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// Nobody could learn the end any more: the command was ended.
    #[error("the job's files were removed while it ran; its command was ended")]
    FilesRemoved,
}

/// This boot of the machine, as Linux names it.
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// Gives the space of `from..to` of the file back (a hole; the file's size
/// and offsets stay).
fn punch_hole(path: &Path, from: u64, to: u64) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let offset = i64::try_from(from).map_err(io::Error::other)?;
    let len = i64::try_from(to - from).map_err(io::Error::other)?;
    nix::fcntl::fallocate(
        &file,
        nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )
    .map_err(io::Error::from)
}

/// Whether the job's supervisor is gone without having written the end
/// (killed itself, or the machine rebooted): nobody will ever write it then.
pub fn supervisor_died(dir: &JobDir) -> io::Result<bool> {
    let Some(supervisor) = dir.read_supervisor()? else {
        return Ok(false);
    };
    let gone = !supervisor.is_alive();
    // The end may have been written just before the supervisor exited.
    Ok(gone && dir.read_exit()?.is_none())
}

/// Whether the job's files were removed (its spec is there from before
/// the launch until the directory goes).
pub fn files_removed(dir: &JobDir) -> bool {
    matches!(
        std::fs::symlink_metadata(dir.spec()),
        Err(err) if err.kind() == io::ErrorKind::NotFound
    )
}

/// Whether the file system holding `path` has no room left for the
/// command's writes: none at all for root (who may use the blocks kept
/// for root, so nothing of its output was lost while those remained), none
/// but root's for anyone else.
pub fn no_room_left(path: &Path) -> bool {
    let root = nix::unistd::geteuid().is_root();
    nix::sys::statvfs::statvfs(path).is_ok_and(|stats| {
        let left = if root {
            stats.blocks_free()
        } else {
            stats.blocks_available()
        };
        left == 0
    })
}

/// An I/O error as a job's failure says it: a full disk in plain words.
pub(crate) fn describe_io(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(nix::libc::ENOSPC | nix::libc::EDQUOT) => STATE_DIR_FULL.to_owned(),
        _ => err.to_string(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match read_bytes(path)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        None => Ok(None),
    }
}

/// A job file's bytes; `None` when it is not there. A link is not read.
fn read_bytes(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = match open_nofollow(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

fn read_text(path: &Path) -> io::Result<Option<String>> {
    read_bytes(path)?
        .map(|bytes| String::from_utf8(bytes).map_err(io::Error::other))
        .transpose()
}

/// Opens a job file for reading; a link there is an error (`ELOOP`), never
/// followed to whatever it names.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Creates a file only this user may read or write, whatever the umask,
/// where nothing is yet: `O_EXCL` fails on anything there, a link
/// included, so nothing planted is written through.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Creates a directory only this user may enter (0700, whatever the
/// umask); with `parents`, the missing ones above it too.
pub(crate) fn create_private_dir(path: &Path, parents: bool) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(parents)
        .mode(0o700)
        .create(path)
}

/// Removes what is at `path` (a link itself, not what it names), if
/// anything.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SuperviseError> {
    serde_json::to_vec(value)
        .map_err(io::Error::other)
        .and_then(|bytes| write_whole(path, &bytes))
        .map_err(|source| SuperviseError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Writes a file whole or not at all: a reader never sees half of it.
/// Not synced to disk: the rename is what readers need, and a machine
/// that crashes loses its running jobs whatever the disk holds (four syncs
/// per job cost a third of the throughput).
fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let partial = path.with_extension("partial");
    // Whatever is there (a crash's leftover, or a planted link) goes
    // first: it is never opened.
    remove_if_present(&partial)?;
    let mut file = create_private(&partial)?;
    file.write_all(bytes)?;
    std::fs::rename(&partial, path)
}

/// Whether `mode` lets only its owner in: group and others get nothing.
#[cfg(test)]
fn private(mode: u32) -> bool {
    mode & 0o077 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_write_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        write_whole(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert!(!path.with_extension("partial").exists());
    }

    #[test]
    fn a_missing_exit_record_is_none_and_a_broken_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let job = JobDir::new(dir.path());
        assert_eq!(job.read_exit().unwrap(), None);
        std::fs::write(job.exit(), b"{").unwrap();
        assert!(job.read_exit().is_err());
    }

    #[test]
    fn the_boot_id_is_known() {
        assert_eq!(boot_id().unwrap().len(), 36);
    }

    #[test]
    fn a_whole_write_is_private_and_goes_around_a_planted_link() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let path = dir.path().join("exit.json");
        std::os::unix::fs::symlink(&target, path.with_extension("partial")).unwrap();
        write_whole(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file());
        assert!(private(meta.mode()), "mode {:o}", meta.mode());
    }

    #[test]
    fn a_link_is_never_read_as_a_job_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, b"{}").unwrap();
        let job = JobDir::new(dir.path());
        std::os::unix::fs::symlink(&target, job.exit()).unwrap();
        assert!(job.read_exit().is_err());
    }

    #[test]
    fn a_pid_file_names_the_group_and_when_its_leader_started() {
        assert_eq!(parse_pid_file("4242 987654").unwrap(), (4242, Some(987654)));
        assert_eq!(parse_pid_file("4242\n").unwrap(), (4242, None));
        assert!(parse_pid_file("4242 soon").is_err());
        assert!(parse_pid_file("").is_err());
    }

    #[test]
    fn a_group_is_current_only_on_its_boot_with_its_leader() {
        let me = std::process::id() as i32;
        let boot = boot_id().unwrap();
        let ticks = crate::group::start_ticks(me);
        let group = |start_ticks, boot_id: &str| CommandGroup {
            pgid: me,
            start_ticks,
            boot_id: boot_id.to_owned(),
            session: None,
        };
        assert!(group(ticks, &boot).is_current());
        assert!(
            !group(ticks.map(|t| t + 1), &boot).is_current(),
            "a later process"
        );
        assert!(!group(ticks, "another-boot").is_current());
        assert!(!group(None, &boot).is_current(), "no start time: no proof");
    }

    /// What a command leaves when its supervisor is killed and its leader
    /// exits: members of the group, of the supervisor's session, started
    /// after the leader. They may still be ended; a group of another
    /// session with that number may not.
    #[test]
    fn a_group_whose_leader_is_gone_is_current_by_its_session() {
        let boot = boot_id().unwrap();
        // `setsid sh` leads a session and a group of its own; it leaves a
        // `sleep` in both and exits.
        let output = std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $$"])
            .output()
            .unwrap();
        let leader: i32 = String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while crate::group::start_ticks(leader).is_some() {
            assert!(std::time::Instant::now() < deadline, "the leader lingered");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let before_it = crate::group::start_ticks(std::process::id() as i32).unwrap();
        let group = |session, since| CommandGroup {
            pgid: leader,
            start_ticks: Some(since),
            boot_id: boot.clone(),
            session,
        };
        assert!(group(Some(leader), before_it).is_current());
        assert!(
            !group(Some(leader + 1), before_it).is_current(),
            "another session"
        );
        assert!(!group(None, before_it).is_current(), "no supervisor record");
        assert!(
            !group(Some(leader), u64::MAX).is_current(),
            "members older than the leader"
        );
        assert!(group(Some(leader), before_it).signal(nix::sys::signal::Signal::SIGKILL));
        while crate::group::members_all_of(leader, leader, 0) {
            assert!(std::time::Instant::now() < deadline, "the sleep lived on");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
