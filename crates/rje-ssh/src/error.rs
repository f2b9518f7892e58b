use std::path::PathBuf;

use crate::known_hosts::HostKeyError;

/// Why rje could not get a channel on a host. Every one of these happens
/// before a command is sent, so trying again later is always safe.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {host} ({endpoint}): {message}")]
    Connect {
        host: String,
        endpoint: String,
        message: String,
    },
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    #[error("cannot use the key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("authentication as {user} on {host} failed: {message}")]
    Auth {
        host: String,
        user: String,
        message: String,
    },
    #[error("{host}: {message}")]
    Channel { host: String, message: String },
}

impl SshError {
    /// Which step failed, for the check route.
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::HostKey(_) => "host-key",
            Self::Key { .. } | Self::Auth { .. } => "auth",
            Self::Channel { .. } => "channel",
        }
    }
}
