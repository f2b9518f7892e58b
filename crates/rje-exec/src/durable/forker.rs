//! Forking supervisors: one long-lived `rje supervise` per worker forks a
//! supervisor per job, instead of an exec of rje per job.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{SigHandler, Signal};

use super::SuperviseError;
use super::supervise::supervise_then;
use super::{
    ExitRecord, JobDir, LaunchError, LaunchMark, OpenJobDir, STATE_DIR_FULL, Spec, create_private,
    no_room_left, prepare, read_text,
};

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
        // Nothing of rje's environment (its tokens, its database's URL)
        // goes to the supervisors: a job runs as the same user and could
        // read theirs in /proc.
        let mut process = Command::new(program)
            .arg("supervise")
            .env_clear()
            .envs(std::env::var_os("RUST_LOG").map(|level| ("RUST_LOG", level)))
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

    /// Makes the job's directory with its spec ([`prepare`]) and has a
    /// supervisor started for it ([`Launcher::start`]).
    pub fn launch(&self, dir: &JobDir, spec: &Spec) -> Result<(), LaunchError> {
        let prepared = prepare(dir, spec)?;
        self.start(&prepared)
    }

    /// Claims the launch of the job in `dir` (made by [`prepare`]) and has
    /// a supervisor started for it, detached: no signal to the caller's
    /// group, and no end of the caller, reaches it. Returns once the
    /// command runs. A launch claimed before, by a launcher
    /// ([`LaunchError::MayHaveStarted`]: the command may have run, and it
    /// is never started twice) or by a worker that proved this one gone
    /// ([`LaunchError::Abandoned`]), starts nothing; so does a directory
    /// replaced meanwhile ([`LaunchError::Replaced`]).
    pub fn start(&self, dir: &OpenJobDir) -> Result<(), LaunchError> {
        match dir.mark(LaunchMark::Launched) {
            Ok(Ok(())) => {}
            Ok(Err(LaunchMark::Abandoned)) => return Err(LaunchError::Abandoned),
            Ok(Err(LaunchMark::Launched)) => {
                return Err(LaunchError::MayHaveStarted(dir.dir().root().to_owned()));
            }
            // Nothing can be made in a removed directory.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(LaunchError::Replaced);
            }
            Err(err) => return Err(err.into()),
        }
        // Claimed: from here a failure cannot prove that nothing forked.
        self.fork(dir.dir().root())
            .map_err(LaunchError::FailedAfterClaim)
    }

    /// Asks the forker for a supervisor of the job in `root`.
    fn fork(&self, root: &Path) -> io::Result<()> {
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
            match ask(running, root) {
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
    let log = create_private(&log_path).map_err(|err| format!("{}: {err}", log_path.display()))?;
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
                _ => Err(why_not_started(dir, &log_path)),
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

/// What the log of a supervisor that never started the command says; a
/// log a full disk kept empty says nothing, so the disk is asked.
fn why_not_started(dir: &Path, log_path: &Path) -> String {
    let logged = read_text(log_path)
        .ok()
        .flatten()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !logged.is_empty() {
        logged
    } else if no_room_left(dir) {
        STATE_DIR_FULL.to_owned()
    } else {
        "the supervisor ended before its command started".to_owned()
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
