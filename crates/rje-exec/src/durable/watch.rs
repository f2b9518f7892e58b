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
use std::sync::{Arc, Mutex, OnceLock};

use notify::Watcher as _;
use tokio::sync::mpsc;

/// Who waits on a directory: each follower's wake-up sender, by its id.
type Wakers = HashMap<PathBuf, Vec<(u64, mpsc::Sender<()>)>>;

struct Shared {
    watcher: Mutex<notify::RecommendedWatcher>,
    wakers: Arc<Mutex<Wakers>>,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn shared() -> io::Result<&'static Shared> {
    SHARED
        .get_or_init(|| {
            let wakers: Arc<Mutex<Wakers>> = Arc::default();
            let routed = wakers.clone();
            let watcher =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    let Ok(event) = event else { return };
                    let Ok(wakers) = routed.lock() else { return };
                    // An event names a file in a watched directory, or the
                    // directory itself (its removal).
                    for path in &event.paths {
                        for dir in [Some(path.as_path()), path.parent()].into_iter().flatten() {
                            for (_, wake) in wakers.get(dir).into_iter().flatten() {
                                // Full means a wake-up is already pending.
                                let _ = wake.try_send(());
                            }
                        }
                    }
                })
                .map_err(|err| err.to_string())?;
            Ok(Shared {
                watcher: Mutex::new(watcher),
                wakers,
            })
        })
        .as_ref()
        .map_err(|err| io::Error::other(err.clone()))
}

/// A follower's wake-ups for one directory, for as long as it is held.
pub(super) struct DirWatch {
    dir: PathBuf,
    id: u64,
    pub(super) woken: mpsc::Receiver<()>,
}

impl DirWatch {
    /// Wakes on every change in `dir` (not below it) and on its removal.
    pub(super) fn new(dir: &Path) -> io::Result<Self> {
        let shared = shared()?;
        let (wake, woken) = mpsc::channel(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // The watcher's lock orders every watch and unwatch. The wakers'
        // lock is never held across a call into the watcher: its thread
        // takes that lock to route an event, while a watch waits on it.
        let mut watcher = shared.watcher.lock().map_err(|_| poisoned())?;
        let first = {
            let mut wakers = shared.wakers.lock().map_err(|_| poisoned())?;
            let waiting = wakers.entry(dir.to_owned()).or_default();
            waiting.push((id, wake));
            waiting.len() == 1
        };
        let watch = DirWatch {
            dir: dir.to_owned(),
            id,
            woken,
        };
        if first && let Err(err) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            // The guard goes first: the watch's drop, which takes its
            // waker out again, locks the watcher.
            drop(watcher);
            drop(watch);
            return Err(io::Error::other(err));
        }
        Ok(watch)
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let Ok(shared) = shared() else { return };
        let Ok(mut watcher) = shared.watcher.lock() else {
            return;
        };
        let last = {
            let Ok(mut wakers) = shared.wakers.lock() else {
                return;
            };
            let Some(waiting) = wakers.get_mut(&self.dir) else {
                return;
            };
            waiting.retain(|(id, _)| *id != self.id);
            let last = waiting.is_empty();
            if last {
                wakers.remove(&self.dir);
            }
            last
        };
        if last {
            // Gone already when the directory was removed: nothing to undo.
            let _ = watcher.unwatch(&self.dir);
        }
    }
}

fn poisoned() -> io::Error {
    io::Error::other("the shared file watcher's lock was poisoned")
}
