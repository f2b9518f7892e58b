//! Opening the job store a process is configured with: PostgreSQL, or the
//! embedded SQLite file, which belongs to one process and is locked to say
//! so; and the mark that names the store in its local jobs' files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use rje_store::{JobStore, PostgresStore, SqliteLocation, SqliteStore};

use crate::Settings;
use crate::error::ServerError;

/// A store, opened; for the embedded store, the lock that says this
/// process owns it (held as long as the process runs).
pub struct OpenedStore {
    pub store: Arc<dyn JobStore>,
    pub lock: Option<Flock<File>>,
}

impl OpenedStore {
    /// Whether this process is the only one on its store: then every job
    /// found Running was left by a process that is gone.
    pub fn is_sole(&self) -> bool {
        self.lock.is_some()
    }
}

/// Opens the store the URL names. For the embedded SQLite store, also takes
/// the lock that says this process owns it.
pub async fn open_store(settings: &Settings) -> Result<OpenedStore, ServerError> {
    let url = &settings.database_url;
    if is_postgres(url) {
        let store = PostgresStore::open(url, settings.auto_migrate).await?;
        return Ok(OpenedStore {
            store: Arc::new(store),
            lock: None,
        });
    }
    if !settings.run_api {
        return Err(ServerError::NeedsPostgres("a worker-only process"));
    }
    let (store, lock) = open_embedded(url).await?;
    Ok(OpenedStore {
        store: Arc::new(store),
        lock,
    })
}

/// Opens the embedded store and takes the lock that says this process owns
/// it. The URL is read once, into the one location both the lock and SQLite
/// use: the lock is on exactly the file SQLite opens.
async fn open_embedded(url: &str) -> Result<(SqliteStore, Option<Flock<File>>), ServerError> {
    let location = SqliteLocation::parse(url)?;
    let lock = match &location {
        SqliteLocation::File(path) => Some(lock_embedded_store(path)?),
        SqliteLocation::Memory => None,
    };
    Ok((SqliteStore::open_at(&location).await?, lock))
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Applies the store's migrations (`rje migrate`).
pub async fn migrate(database_url: &str) -> Result<(), ServerError> {
    if is_postgres(database_url) {
        PostgresStore::open(database_url, true).await?;
    } else {
        // Opening the SQLite store applies its migrations.
        SqliteStore::open(database_url).await?;
    }
    Ok(())
}

/// The embedded store belongs to one process: a second `rje serve` on the
/// same file would have two workers reaping each other's jobs. An advisory
/// lock makes that a clear error instead. It is taken on the database file
/// itself, so that it holds however the file is reached: through a symlink,
/// a hard link or another spelling of its path. (`flock` locks are separate
/// from the POSIX locks SQLite takes, so the two never interfere; the
/// descriptor stays open as long as the server runs.)
///
/// The path is the one SQLite opens (see [`open_embedded`]); the file is
/// created here, for this user only, as the store would create it.
fn lock_embedded_store(path: &Path) -> Result<Flock<File>, ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock_error = |cause: std::io::Error| ServerError::Lock {
        path: path.to_owned(),
        cause,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(lock_error)?;
    }
    // SQLite takes an empty file as a new database, so creating it here
    // changes nothing; the store sets its mode to exactly 0600.
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(lock_error)?;
    if file.metadata().map_err(lock_error)?.len() == 0 {
        // A new database: exactly 0600, whatever the umask took from it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(lock_error)?;
    }
    let inode = file_identity(&file);
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(ServerError::Locked {
            path: path.to_owned(),
            owner: inode
                .and_then(lock_owner)
                .map_or_else(|| "another rje process".to_owned(), describe_process),
        }),
        Err((_, errno)) => Err(lock_error(errno.into())),
    }
}

/// The device and inode of an open file, as /proc/locks writes them.
fn file_identity(file: &File) -> Option<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    Some((
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino(),
    ))
}

/// The process holding a `flock` on the file, from /proc/locks (Linux);
/// `None` where that cannot be read.
fn lock_owner((major, minor, inode): (u64, u64, u64)) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let wanted = format!("{major:02x}:{minor:02x}:{inode}");
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&wanted.as_str()))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

fn describe_process(pid: u32) -> String {
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    if command.is_empty() {
        format!("process {pid}")
    } else {
        format!("process {pid} ({command})")
    }
}

/// Names the store whose jobs a server runs, for the files of its local
/// jobs (see docs/DURABLE-JOBS.md): servers on different stores may share
/// a state directory, and each leaves the other's jobs' files alone. An
/// SQLite store is its file's absolute path; any other is a digest of its
/// URL, which may hold a password (the same database reached by two URLs
/// gets two names: its servers then keep each other's files longer, never
/// shorter).
pub fn store_mark(database_url: &str) -> String {
    match SqliteLocation::parse(database_url) {
        Ok(SqliteLocation::File(path)) => format!("sqlite:{}", absolute(&path).display()),
        _ => format!("db:{:016x}", fnv1a(database_url.as_bytes())),
    }
}

/// `path` from the root, its directory's links resolved; as given when
/// that directory cannot be found.
fn absolute(path: &std::path::Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(parent), Some(name)) => parent.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
    }
}

/// FNV-1a, 64 bits: a digest that stays the same across builds and
/// releases (the standard library's hasher promises no such thing), and
/// the names it gives are compared across upgrades.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling of one database file either meets the lock the first
    /// server holds on it (and names that server), or is refused as a bad
    /// URL: never a second owner. (`jobs%2Edb` and a nested `sqlite://`
    /// once locked another file while SQLite opened this one.)
    #[tokio::test]
    async fn every_spelling_of_the_file_meets_its_lock_or_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        let file = root.join("jobs.db");
        let abs = file.display().to_string();
        let (_first, lock) = open_embedded(&format!("sqlite://{abs}")).await.unwrap();
        assert!(lock.is_some(), "the first server owns the file");
        std::os::unix::fs::symlink(&file, root.join("link.db")).unwrap();

        // The same file from the working directory, without changing it
        // (the tests of this binary share it).
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count().saturating_sub(1));
        let relative = format!("{up}{}", abs.trim_start_matches('/'));
        let root = root.display();
        let same_file = [
            format!("sqlite://{abs}"),
            format!("sqlite:{abs}"),
            format!("sqlite:///{abs}"),
            format!("sqlite://{root}/./jobs.db"),
            format!("sqlite://{root}/sub/../jobs.db"),
            format!("sqlite://{root}//jobs.db"),
            format!("sqlite://{root}/link.db"),
            format!("sqlite://{relative}"),
            format!("sqlite://./{relative}"),
            format!("sqlite:{relative}"),
            // Decoded once, as sqlx documents: the same file, locked.
            format!("sqlite://{root}/jobs%2Edb"),
            format!("sqlite://{root}/jobs.d%62"),
            format!("sqlite://{abs}?mode=rwc"),
            format!("sqlite://{abs}?mode=rw&cache=shared"),
        ];
        let me = format!("process {}", std::process::id());
        for url in &same_file {
            match open_embedded(url).await {
                Err(ServerError::Locked { owner, .. }) => assert!(
                    // /proc/locks may be unreadable (or in another pid
                    // namespace); the message then says so plainly.
                    owner.starts_with(&me) || owner == "another rje process",
                    "{url}: the owner is named {owner:?}"
                ),
                Err(other) => panic!("{url}: refused, but not for the lock: {other}"),
                Ok(_) => panic!("{url}: a second owner of {abs}"),
            }
        }

        let refused = [
            format!("sqlite://sqlite://{abs}"),
            format!("sqlite://sqlite%3A%2F%2F{abs}"),
            format!("sqlite://{abs}?mode=ro"),
            format!("sqlite://{abs}?vfs=unix-none"),
            format!("sqlite://{root}/jobs%FF.db"),
            format!("sqlite://sqlite:{abs}"),
            format!("sqlite:sqlite:{abs}"),
            format!("sqlite://SQLite://{abs}"),
            format!("sqlite://file:{abs}"),
            format!("sqlite://{abs}#x"),
            format!("sqlite://{abs} "),
            "sqlite://".to_owned(),
        ];
        for url in &refused {
            match open_embedded(url).await {
                Err(ServerError::Store(rje_store::StoreError::Unavailable(message))) => {
                    assert!(message.contains("bad SQLite URL"), "{url}: {message}");
                }
                Err(other) => panic!("{url}: refused, but not as a bad URL: {other}"),
                Ok(_) => panic!("{url}: a second owner"),
            }
        }

        // No spelling made a database anywhere else in the directory.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(
            names
                .iter()
                .all(|name| name.starts_with("jobs.db") || name == "link.db" || name == "sub"),
            "{names:?}"
        );
    }

    /// The database, its WAL and its index are for rje's user only,
    /// whatever the umask would have made them.
    #[tokio::test]
    async fn the_embedded_database_is_private_to_its_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
        let (_store, _lock) = open_embedded(&url).await.unwrap();
        for name in ["jobs.db", "jobs.db-wal", "jobs.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn each_store_has_its_own_mark_and_no_password_shows() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        assert_eq!(
            store_mark(&url("first.db")),
            format!("sqlite:{}", real.join("first.db").display())
        );
        assert_ne!(store_mark(&url("first.db")), store_mark(&url("second.db")));
        let postgres = "postgres://rje:hunter2@db.internal:5432/rje";
        assert_eq!(store_mark(postgres), store_mark(postgres));
        assert_ne!(
            store_mark(postgres),
            store_mark("postgres://rje:hunter2@db.internal:5432/other")
        );
        assert!(!store_mark(postgres).contains("hunter2"));
        // The digest is FNV-1a's, the same from one release to the next.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
