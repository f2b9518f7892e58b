//! One inotify watcher for every followed job directory of the process.
//!
//! A watcher of its own per job cost an inotify instance (the kernel
//! allows 128 per user by default: the 129th job at once failed with
//! "Too many open files"), a thread and three descriptors. The shared one
//! costs one watch per directory (the kernel allows many thousands) and
//! wakes the job whose directory changed.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use notify::Watcher as _;
use tokio::sync::mpsc;

/// Who waits on a directory: each follower's wake-up sender, by its id.
type Wakers = HashMap<PathBuf, Vec<(u64, mpsc::Sender<()>)>>;

struct Shared {
    watcher: Mutex<notify::RecommendedWatcher>,
    wakers: Arc<Mutex<Wakers>>,
}

/// Made on first use and kept; a failure to make it (no inotify instance
/// left, for a moment) is not kept: the next job tries again.
static SHARED: Mutex<Option<&'static Shared>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn shared() -> io::Result<&'static Shared> {
    let mut made = SHARED.lock().map_err(|_| poisoned())?;
    if let Some(shared) = *made {
        return Ok(shared);
    }
    let wakers: Arc<Mutex<Wakers>> = Arc::default();
    let routed = wakers.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(wakers) = routed.lock() else { return };
        // An overflowed queue (a rescan) or an error names no directory:
        // every follower looks again rather than wait for its recheck.
        let every = match &event {
            Ok(event) => event.need_rescan(),
            Err(_) => true,
        };
        let wake = |waiting: &Vec<(u64, mpsc::Sender<()>)>| {
            for (_, wake) in waiting {
                // Full means a wake-up is already pending.
                let _ = wake.try_send(());
            }
        };
        if every {
            wakers.values().for_each(wake);
            return;
        }
        // An event names a file in a watched directory, or the directory
        // itself (its removal).
        for path in event.iter().flat_map(|event| &event.paths) {
            for dir in [Some(path.as_path()), path.parent()].into_iter().flatten() {
                if let Some(waiting) = wakers.get(dir) {
                    wake(waiting);
                }
            }
        }
    })
    .map_err(io::Error::other)?;
    // Kept for the life of the process, as a static would be.
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        watcher: Mutex::new(watcher),
        wakers,
    }));
    *made = Some(shared);
    Ok(shared)
}

/// A follower's wake-ups for one directory, for as long as it is held.
pub(super) struct DirWatch {
    shared: &'static Shared,
    dir: PathBuf,
    id: u64,
    pub(super) woken: mpsc::Receiver<()>,
}

impl DirWatch {
    /// Wakes on every change in `dir` (not below it) and on its removal.
    pub(super) fn new(dir: &Path) -> io::Result<Self> {
        // The watcher names what changed by absolute path (it joins a
        // relative one to the working directory, as the default state
        // directory `./rje-state` is): the followers are found by it.
        let dir = &if dir.is_absolute() {
            dir.to_owned()
        } else {
            std::env::current_dir()?.join(dir)
        };
        let shared = shared()?;
        let (wake, woken) = mpsc::channel(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // The watcher's lock orders every watch and unwatch. The wakers'
        // lock is never held across a call into the watcher: its thread
        // takes that lock to route an event, while a watch waits on it.
        let mut watcher = shared.watcher.lock().map_err(|_| poisoned())?;
        shared
            .wakers
            .lock()
            .map_err(|_| poisoned())?
            .entry(dir.to_owned())
            .or_default()
            .push((id, wake));
        // Watched again even when another follower watches it: the
        // directory may have been removed and made anew since (inotify
        // then forgot it), and watching a watched one changes nothing.
        if let Err(err) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            leave(shared, &mut watcher, dir, id);
            return Err(io::Error::other(err));
        }
        Ok(DirWatch {
            shared,
            dir: dir.to_owned(),
            id,
            woken,
        })
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        if let Ok(mut watcher) = self.shared.watcher.lock() {
            leave(self.shared, &mut watcher, &self.dir, self.id);
        }
    }
}

/// Takes follower `id` off `dir`, and the watch with the last one, under
/// the watcher's lock (held by the caller).
fn leave(shared: &Shared, watcher: &mut notify::RecommendedWatcher, dir: &Path, id: u64) {
    let last = {
        let Ok(mut wakers) = shared.wakers.lock() else {
            return;
        };
        let Some(waiting) = wakers.get_mut(dir) else {
            return;
        };
        waiting.retain(|(other, _)| *other != id);
        let last = waiting.is_empty();
        if last {
            wakers.remove(dir);
        }
        last
    };
    if last {
        // Gone already when the directory was removed: nothing to undo.
        let _ = watcher.unwatch(dir);
    }
}

fn poisoned() -> io::Error {
    io::Error::other("the shared file watcher's lock was poisoned")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Within this long a change must have woken its follower: far more
    /// than inotify takes, and no recheck stands in for a lost wake-up.
    const WAKE: Duration = Duration::from_secs(10);

    async fn woken(watch: &mut DirWatch) -> bool {
        tokio::time::timeout(WAKE, watch.woken.recv()).await.is_ok()
    }

    #[tokio::test]
    async fn a_change_wakes_the_followers_of_its_directory_only() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let mut on_a = DirWatch::new(&a).unwrap();
        let mut also_on_a = DirWatch::new(&a).unwrap();
        let mut on_b = DirWatch::new(&b).unwrap();
        std::fs::write(a.join("stdout"), "x").unwrap();
        assert!(woken(&mut on_a).await);
        assert!(woken(&mut also_on_a).await);
        assert!(on_b.woken.try_recv().is_err(), "b did not change");
        drop(also_on_a);
        std::fs::write(a.join("exit.json"), "{}").unwrap();
        assert!(
            woken(&mut on_a).await,
            "still watched after one follower left"
        );
    }

    /// The default state directory is relative (`./rje-state`).
    #[tokio::test]
    async fn a_relative_directory_is_followed() {
        let here = std::env::current_dir().unwrap();
        let root = tempfile::tempdir_in(&here).unwrap();
        let relative = root.path().strip_prefix(&here).unwrap().to_owned();
        assert!(relative.is_relative());
        let mut watch = DirWatch::new(&relative).unwrap();
        std::fs::write(relative.join("stdout"), "x").unwrap();
        assert!(woken(&mut watch).await);
    }

    /// A directory removed and made anew under the same name (inotify
    /// forgets the first) is watched again for a new follower.
    #[tokio::test]
    async fn a_directory_made_anew_is_watched_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("job");
        std::fs::create_dir(&dir).unwrap();
        let mut first = DirWatch::new(&dir).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert!(woken(&mut first).await, "its removal wakes it");
        std::fs::create_dir(&dir).unwrap();
        let mut second = DirWatch::new(&dir).unwrap();
        std::fs::write(dir.join("stdout"), "x").unwrap();
        assert!(woken(&mut second).await);
    }
}
