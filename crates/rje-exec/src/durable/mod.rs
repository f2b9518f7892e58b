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
//! spec.json        what to run (written by the launcher)
//! supervisor.json  the supervisor's pid and the machine's boot id
//! pid              the command's pid, which is its process group id
//! stdout, stderr   everything the command wrote, appended
//! exit.json        how it ended; present only once it has
//! ```

mod follow;
mod forker;
mod supervise;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use follow::follow;
pub use forker::{Launcher, serve_launches};
pub use supervise::supervise;

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
