//! The state directory, checked once when a worker starts: private to
//! rje's user, and nobody else able to plant files in it.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{create_private, create_private_dir, remove_if_present};

/// Why a state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot use the state directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the state directory {path} belongs to user {owner}, not to user {user} who runs rje: \
         its jobs' files would not be private to rje; `chown {user} {path}`, or set \
         RJE_STATE_DIR to a directory of rje's user"
    )]
    NotOwned {
        path: PathBuf,
        owner: u32,
        user: u32,
    },
    #[error(
        "the state directory {path} may be written by other users (mode {mode}): they could \
         plant files or links that rje would act on; `chmod go-w {path}` (or `chmod 700`), \
         or set RJE_STATE_DIR to a directory only rje's user may write"
    )]
    Writable { path: PathBuf, mode: String },
    #[error(
        "{path} is a symbolic link, and rje follows none inside its state directory: \
         replace it with a directory"
    )]
    Link { path: PathBuf },
}

/// Makes `state` ready for durable jobs: creates it and its `jobs`
/// directory, 0700, where they are missing, and refuses them when another
/// user owns them or may write them, or when `jobs` is a link. Then checks
/// that a file can be made there, so that a worker that cannot run its
/// local jobs finds out at its start, not by every job failing.
pub fn prepare_state_dir(state: &Path) -> Result<(), StateDirError> {
    create_private_dir(state, true).map_err(io_error(state))?;
    // The configured path itself may be a link (to another disk, say):
    // the operator chose it. Inside it, nothing is followed.
    let meta = std::fs::metadata(state).map_err(io_error(state))?;
    check_private(state, &meta)?;
    let jobs = state.join("jobs");
    if let Err(err) = create_private_dir(&jobs, false)
        && err.kind() != io::ErrorKind::AlreadyExists
    {
        return Err(io_error(&jobs)(err));
    }
    let meta = std::fs::symlink_metadata(&jobs).map_err(io_error(&jobs))?;
    if meta.file_type().is_symlink() {
        return Err(StateDirError::Link { path: jobs });
    }
    if !meta.is_dir() {
        return Err(io_error(&jobs)(io::Error::other("not a directory")));
    }
    check_private(&jobs, &meta)?;
    let probe = jobs.join(format!(".writable-{}", std::process::id()));
    remove_if_present(&probe)
        .and_then(|()| create_private(&probe))
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(io_error(state))
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateDirError {
    let path = path.to_owned();
    move |source| StateDirError::Io { path, source }
}

/// Refuses a directory of another user, or one that group or others may
/// write.
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), StateDirError> {
    let user = nix::unistd::geteuid().as_raw();
    if meta.uid() != user {
        return Err(StateDirError::NotOwned {
            path: path.to_owned(),
            owner: meta.uid(),
            user,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(StateDirError::Writable {
            path: path.to_owned(),
            mode: format!("{:04o}", meta.mode() & 0o7777),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_missing_state_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("rje-state");
        prepare_state_dir(&state).unwrap();
        assert_eq!(mode_of(&state), 0o700);
        assert_eq!(mode_of(&state.join("jobs")), 0o700);
        // And again: an existing private one is fine.
        prepare_state_dir(&state).unwrap();
    }

    #[test]
    fn a_state_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("rje-state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = prepare_state_dir(&state).unwrap_err();
        assert!(matches!(err, StateDirError::Writable { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&state.display().to_string()), "{message}");
        assert!(message.contains("chmod go-w"), "{message}");
    }

    #[test]
    fn a_jobs_directory_that_is_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("rje-state");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&state).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, state.join("jobs")).unwrap();
        let err = prepare_state_dir(&state).unwrap_err();
        assert!(matches!(err, StateDirError::Link { .. }), "{err}");
    }

    #[test]
    fn a_state_directory_of_another_user_is_refused() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test gives a directory to another user: it needs root (the suite runs as root in CI)"
        );
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("rje-state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        let err = prepare_state_dir(&state).unwrap_err();
        assert!(
            matches!(err, StateDirError::NotOwned { owner: 65534, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chown"), "{err}");
    }
}
