//! A command that outlives the rje process that started it (issue 13's
//! foundation): `rje supervise DIR` runs the command described in
//! `DIR/spec.json` in a session of its own, with its output in files and
//! its deadline enforced by the supervisor itself, and records how it ended
//! in `DIR/exit.json`, written whole (write, then rename). Anyone who can
//! read the directory can follow the output by byte offset and learn the
//! end, whether or not the process that launched it is still alive.
//!
//! The directory, as the supervisor leaves it:
//!
//! ```text
//! spec.json        what to run (written by the launcher)
//! supervisor.json  the supervisor's pid and the machine's boot id
//! pid              the command's pid, which is its process group id
//! stdout, stderr   everything the command wrote, appended
//! exit.json        how it ended; present only once it has
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::supervisor::{descendants_of, process_table};

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
}

/// Who supervises, on which boot of the machine: a pid means nothing
/// after a reboot, so every later signal checks the boot id first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorRecord {
    pub pid: i32,
    pub boot_id: String,
    pub started_at_ms: u64,
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

    /// The command's process group, once the supervisor has named it.
    pub fn read_pgid(&self) -> io::Result<Option<i32>> {
        match std::fs::read_to_string(self.pid()) {
            Ok(text) => text.trim().parse().map(Some).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a pid file holding {text:?}"),
                )
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub fn read_supervisor(&self) -> io::Result<Option<SupervisorRecord>> {
        read_json(&self.supervisor())
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
}

/// This boot of the machine, as Linux names it.
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// Starts supervisors through one `PROGRAM supervise`, which lives as long
/// as this launcher (see [`serve_launches`]): a fork per job instead of an
/// exec of rje per job.
#[derive(Debug)]
pub struct Launcher {
    program: PathBuf,
    forker: Mutex<Option<Forker>>,
}

/// The running `PROGRAM supervise` and its pipes.
#[derive(Debug)]
struct Forker {
    process: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl Forker {
    fn start(program: &Path) -> io::Result<Self> {
        let mut process = Command::new(program)
            .arg("supervise")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(requests), Some(answers)) = (process.stdin.take(), process.stdout.take()) else {
            return Err(io::Error::other("the supervisor's pipes were not made"));
        };
        Ok(Self {
            process,
            requests,
            answers: BufReader::new(answers),
        })
    }
}

impl Drop for Forker {
    fn drop(&mut self) {
        // Its input ends with `requests`, and with it the process; the
        // supervisors it forked live on.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A request the forker never read: nothing was started.
struct NotSent(io::Error);

impl Launcher {
    /// `program` is the rje binary.
    pub fn new(program: PathBuf) -> Self {
        Self {
            program,
            forker: Mutex::new(None),
        }
    }

    /// Writes the spec and has a supervisor started for it, detached: no
    /// signal to the caller's group, and no end of the caller, reaches it.
    /// Returns once the command runs.
    pub fn launch(&self, dir: &JobDir, spec: &Spec) -> io::Result<()> {
        std::fs::create_dir_all(dir.root())?;
        write_whole(
            &dir.spec(),
            &serde_json::to_vec(spec).map_err(io::Error::other)?,
        )?;
        let mut forker = self
            .forker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A forker found dead (killed, say) is replaced once: a request it
        // never read started nothing.
        for _ in 0..2 {
            let running = match forker.as_mut() {
                Some(running) => running,
                None => forker.insert(Forker::start(&self.program)?),
            };
            match ask(running, dir.root()) {
                Ok(result) => {
                    if result.is_err() {
                        *forker = None;
                    }
                    return result;
                }
                Err(NotSent(err)) => {
                    tracing::debug!(%err, "the supervisor launcher was gone; starting another");
                    *forker = None;
                }
            }
        }
        Err(io::Error::other("the supervisor launcher keeps dying"))
    }
}

fn ask(forker: &mut Forker, dir: &Path) -> Result<io::Result<()>, NotSent> {
    let mut request = dir.as_os_str().as_encoded_bytes().to_vec();
    request.push(b'\n');
    forker
        .requests
        .write_all(&request)
        .and_then(|()| forker.requests.flush())
        .map_err(NotSent)?;
    let mut answer = String::new();
    Ok(match forker.answers.read_line(&mut answer) {
        Ok(0) => Err(io::Error::other(
            "the supervisor launcher ended before it answered",
        )),
        Err(err) => Err(err),
        Ok(_) => match answer.trim_end().strip_prefix("err ") {
            None if answer.trim_end() == "ok" => Ok(()),
            None => Err(io::Error::other(format!("the launcher said {answer:?}"))),
            Some(why) => Err(io::Error::other(format!(
                "the supervisor did not start: {why}"
            ))),
        },
    })
}

/// The body of `rje supervise`, a launcher that lives as long as its
/// worker's [`Launcher`]: reads job directories, one per line, and for
/// each forks a supervisor, detached in a session of its own, and answers
/// `ok` once the command runs, or `err` and why. A fork of this small, idle,
/// single-threaded process costs far less than an exec of rje per job.
/// Ends at the end of its input: when its worker is gone.
pub fn serve_launches() -> i32 {
    // The kernel reaps the supervisors that end while this one runs.
    // SAFETY: sets a disposition; no handler runs.
    if let Err(err) = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigIgn) } {
        eprintln!("rje supervise: cannot ignore SIGCHLD: {err}");
        return 1;
    }
    let mut stdout = io::stdout();
    let mut line = String::new();
    loop {
        line.clear();
        match io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        let answer = match fork_supervisor(Path::new(line.trim_end_matches('\n'))) {
            Ok(()) => "ok".to_owned(),
            Err(message) => format!("err {}", message.replace('\n', " ")),
        };
        if writeln!(stdout, "{answer}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return 0;
        }
    }
}

/// Forks a supervisor for the job in `dir`, detached in a session of its
/// own; returns once its command runs.
fn fork_supervisor(dir: &Path) -> Result<(), String> {
    let log_path = dir.join("supervisor.log");
    let log = File::create(&log_path).map_err(|err| format!("{}: {err}", log_path.display()))?;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|err| format!("/dev/null: {err}"))?;
    let (started_rx, started_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|err| format!("cannot make a pipe: {err}"))?;
    // SAFETY: this process never starts a thread, so the child may do
    // anything the parent could.
    match unsafe { nix::unistd::fork() } {
        Err(err) => Err(format!("cannot fork: {err}")),
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(started_tx);
            let mut byte = [0u8; 1];
            match nix::unistd::read(&started_rx, &mut byte) {
                Ok(1) => Ok(()),
                _ => Err(std::fs::read_to_string(&log_path)
                    .unwrap_or_default()
                    .trim()
                    .to_owned()),
            }
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(started_rx);
            let code = as_detached_child(&null, &log, || {
                supervise_then(&JobDir::new(dir), move || {
                    let _ = nix::unistd::write(&started_tx, b"1");
                })
            });
            // No exit handlers: they belong to the launcher's image.
            // SAFETY: ends this process at once, which is all it does.
            unsafe { nix::libc::_exit(code) }
        }
    }
}

/// In a freshly forked supervisor: the launcher's pipes let go (so that
/// its worker sees their end only when the launcher ends), SIGCHLD back to
/// its default (so the command can be waited for), a session of its own.
fn as_detached_child(
    null: &File,
    log: &File,
    supervise: impl FnOnce() -> Result<ExitRecord, SuperviseError>,
) -> i32 {
    let redirected = nix::unistd::dup2_stdin(null).is_ok()
        && nix::unistd::dup2_stdout(null).is_ok()
        && nix::unistd::dup2_stderr(log).is_ok();
    // SAFETY: sets a disposition; no handler runs.
    let default_sigchld =
        unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }.is_ok();
    if !redirected || !default_sigchld {
        return 1;
    }
    if let Err(err) = nix::unistd::setsid() {
        eprintln!("rje supervise: cannot start a session: {err}");
    }
    match supervise() {
        Ok(_) => 0,
        Err(err) => {
            eprintln!("rje supervise: {err}");
            1
        }
    }
}

/// `rje supervise DIR`: runs the spec to its end and records it.
pub fn supervise(dir: &JobDir) -> Result<ExitRecord, SuperviseError> {
    supervise_then(dir, || {})
}

/// [`supervise`], calling `started` once the command runs and its pid file
/// is written.
fn supervise_then(dir: &JobDir, on_started: impl FnOnce()) -> Result<ExitRecord, SuperviseError> {
    let started = Instant::now();
    let spec: Spec = read_json(&dir.spec())
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
    let record = SupervisorRecord {
        pid: std::process::id() as i32,
        boot_id: boot_id().unwrap_or_default(),
        started_at_ms: now_ms(),
    };
    write_json(&dir.supervisor(), &record)?;
    let append = |path: PathBuf| {
        OpenOptions::new()
            .create(true)
            .append(true)
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
        .envs(&spec.env);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(SuperviseError::Start)?;
    let pgid = child.id() as i32;
    write_whole(&dir.pid(), pgid.to_string().as_bytes()).map_err(|source| {
        SuperviseError::Write {
            path: dir.pid(),
            source,
        }
    })?;
    on_started();

    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let deadline = started + Duration::from_secs(spec.timeout_secs);
    let grace = Duration::from_millis(spec.kill_grace_ms);
    let mut timed_out = false;
    let mut bounds = [
        FileBound::new(dir.stdout(), spec.max_output_bytes),
        FileBound::new(dir.stderr(), spec.max_output_bytes),
    ];
    let ended_by_deadline = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if spec.max_output_bytes > 0 {
            left.min(BOUND_EVERY)
        } else {
            left
        };
        match ended.recv_timeout(wait) {
            Ok(status) => break Ok(status),
            Err(_) if Instant::now() < deadline => {
                for bound in &mut bounds {
                    bound.keep();
                }
            }
            Err(_) => break Err(()),
        }
    };
    let status = match ended_by_deadline {
        Ok(status) => status,
        Err(()) => {
            timed_out = true;
            signal_group(pgid, Signal::SIGTERM);
            match ended.recv_timeout(grace) {
                Ok(status) => status,
                Err(_) => {
                    signal_group(pgid, Signal::SIGKILL);
                    ended
                        .recv()
                        .unwrap_or_else(|_| Err(io::Error::other("lost the command")))
                }
            }
        }
    };
    if !spec.allow_daemons || timed_out {
        end_leftovers(pgid, grace);
    }
    let status = status.unwrap_or_else(|_| ExitStatus::from_raw(0x7f00));
    let record = ExitRecord {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        ended_at_ms: now_ms(),
    };
    write_json(&dir.exit(), &record)?;
    Ok(record)
}

/// How often a running command's files are checked against the bound.
const BOUND_EVERY: Duration = Duration::from_secs(1);
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

/// Bytes read from an output file at a time.
const READ_SIZE: usize = 64 * 1024;
/// A change the watcher missed is still seen within this long.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Follows a supervised command's output files from `offsets` (bytes of
/// stdout and stderr already taken), sending what they gain to `sink` as
/// it is written, until the command has ended and both files are read to
/// their end. Woken by inotify, not by polling. Returns how the command
/// ended. `offsets` always says what has been delivered, so a follower may
/// stop at any point (its future dropped) and another go on from there.
pub async fn follow(
    dir: &JobDir,
    offsets: &mut [u64; 2],
    sink: &tokio::sync::mpsc::Sender<crate::ExecEvent>,
) -> io::Result<ExitRecord> {
    use notify::Watcher;
    let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        // Full means a wake-up is already pending: nothing is lost.
        let _ = wake.try_send(());
    })
    .map_err(io::Error::other)?;
    watcher
        .watch(dir.root(), notify::RecursiveMode::NonRecursive)
        .map_err(io::Error::other)?;
    let streams = [
        (rje_domain::Stream::Stdout, dir.stdout()),
        (rje_domain::Stream::Stderr, dir.stderr()),
    ];
    // Kept open: the files only grow, and each read says where.
    let mut files: [Option<File>; 2] = [None, None];
    let mut released = [0u64; 2];
    let mut buffer = vec![0; READ_SIZE];
    loop {
        let mut got = 0;
        for (i, (stream, path)) in streams.iter().enumerate() {
            got += drain(
                &mut files[i],
                path,
                *stream,
                &mut offsets[i],
                &mut buffer,
                sink,
            )
            .await?;
            release_behind(path, offsets[i], &mut released[i]);
        }
        if got > 0 {
            // More may have come meanwhile: read on before asking anything.
            continue;
        }
        // Caught up. The end is written after the last output, so one more
        // read after seeing it takes everything.
        if let Some(exit) = dir.read_exit()? {
            for (i, (stream, path)) in streams.iter().enumerate() {
                drain(
                    &mut files[i],
                    path,
                    *stream,
                    &mut offsets[i],
                    &mut buffer,
                    sink,
                )
                .await?;
            }
            return Ok(exit);
        }
        if tokio::time::timeout(RECHECK_EVERY, woken.recv())
            .await
            .is_err()
            && supervisor_died(dir)?
        {
            return Err(io::Error::other(
                "the job's supervisor died before the command ended",
            ));
        }
    }
}

/// What a follower keeps of a file behind what it delivered: more than
/// what can be delivered and not yet stored (the worker's bounded event
/// buffer and batch), so that a successor resuming from the store's offset
/// always finds its bytes.
const KEEP_BEHIND: u64 = 8 * 1024 * 1024;
/// Space is given back in steps of this much, not on every read.
const RELEASE_STEP: u64 = 4 * 1024 * 1024;

/// Gives the disk space of what lies well behind `delivered` back to the
/// file system (a hole: the file's offsets stay as they are), so that a
/// command printing gigabytes while followed takes megabytes of disk.
/// Where the file system cannot punch holes, the file just stays whole.
fn release_behind(path: &Path, delivered: u64, released: &mut u64) {
    let upto = delivered.saturating_sub(KEEP_BEHIND) / RELEASE_STEP * RELEASE_STEP;
    if upto < released.saturating_add(RELEASE_STEP) {
        return;
    }
    match punch_hole(path, *released, upto) {
        Ok(()) => *released = upto,
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot release the space of read output");
            // Not again: the file system will not change its mind.
            *released = u64::MAX;
        }
    }
}

/// Gives the space of `from..to` of the file back (a hole; the file's size
/// and offsets stay).
fn punch_hole(path: &Path, from: u64, to: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
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
/// (killed itself): nobody will ever write it then.
pub fn supervisor_died(dir: &JobDir) -> io::Result<bool> {
    let Some(supervisor) = dir.read_supervisor()? else {
        return Ok(false);
    };
    // A zombie is gone too: its new parent (init, by now) may not have
    // reaped it yet.
    let gone = !crate::group::process_alive(supervisor.pid);
    // The end may have been written just before the supervisor exited.
    Ok(gone && dir.read_exit()?.is_none())
}

/// Sends what `path` holds past `offset`, moving `offset` along; how many
/// bytes that was. A regular file's read does not block on anyone, so it
/// is done in place.
async fn drain(
    file: &mut Option<File>,
    path: &Path,
    stream: rje_domain::Stream,
    offset: &mut u64,
    buffer: &mut [u8],
    sink: &tokio::sync::mpsc::Sender<crate::ExecEvent>,
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    if file.is_none() {
        match File::open(path) {
            Ok(opened) => *file = Some(opened),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err),
        }
    }
    let Some(file) = file.as_ref() else {
        return Ok(0);
    };
    let mut total = 0;
    loop {
        // Output given back while nobody followed is a hole: skipped, and
        // said so, never read as zeros.
        let next_data = i64::try_from(*offset)
            .ok()
            .map(|at| nix::unistd::lseek(file, at, nix::unistd::Whence::SeekData));
        match next_data {
            Some(Ok(data)) if u64::try_from(data).is_ok_and(|data| data > *offset) => {
                let skipped = data as u64 - *offset;
                send(
                    sink,
                    crate::ExecEvent::Skipped {
                        stream,
                        bytes: skipped,
                    },
                )
                .await?;
                *offset += skipped;
                total += skipped;
            }
            // Nothing but a hole up to the end: nothing to read yet.
            Some(Err(Errno::ENXIO)) => return Ok(total),
            // Data here, or a file system that cannot tell: read.
            _ => {}
        }
        let read = file.read_at(buffer, *offset)?;
        if read == 0 {
            return Ok(total);
        }
        let event = crate::ExecEvent::Output {
            stream,
            bytes: buffer[..read].to_vec(),
        };
        send(sink, event).await?;
        *offset += read as u64;
        total += read as u64;
    }
}

async fn send(
    sink: &tokio::sync::mpsc::Sender<crate::ExecEvent>,
    event: crate::ExecEvent,
) -> io::Result<()> {
    sink.send(event).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "nobody takes the output any more",
        )
    })
}

/// The supervisor has no log but its stderr (`supervisor.log`).
fn signal_group(pgid: i32, signal: Signal) {
    if let Err(err) = crate::group::signal_group(pgid, signal) {
        eprintln!("rje supervise: cannot signal group {pgid}: {err}");
    }
}

/// What the command left: its group, and the orphans re-parented here.
/// TERM, the grace, then KILL until none is left.
fn end_leftovers(pgid: i32, grace: Duration) {
    let me = std::process::id() as i32;
    let signal_all = |signal: Signal| {
        signal_group(pgid, signal);
        for pid in descendants_of(me, &process_table()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    };
    let gone = || {
        // No child left (orphans are adopted as children) and no group:
        // nothing is left, known without reading all of /proc.
        let no_children = reap_orphans();
        killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH)
            && (no_children || descendants_of(me, &process_table()).is_empty())
    };
    if gone() {
        return;
    }
    signal_all(Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if gone() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..250 {
        signal_all(Signal::SIGKILL);
        if gone() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("rje supervise: processes of the job survived KILL");
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
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
    let mut file = File::create(&partial)?;
    file.write_all(bytes)?;
    std::fs::rename(&partial, path)
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
}
