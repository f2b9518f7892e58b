//! Why rje could not get a channel on a host, and which check stage that is.

use std::path::PathBuf;

use rje_domain::{CheckStage, StartCause};

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

/// A host that cannot be reached (no connection, a host key that does
/// not match) or that refuses rje's credentials is told apart, so that a
/// run reports it per host; either may pass, so both are retryable.
impl From<SshError> for rje_exec::StartError {
    fn from(err: SshError) -> Self {
        let cause = match &err {
            SshError::Connect { .. } | SshError::HostKey(_) => StartCause::Unreachable,
            SshError::Key { .. } | SshError::Auth { .. } => StartCause::AuthFailed,
            SshError::Channel { .. } => StartCause::Other,
        };
        Self {
            message: err.to_string(),
            retryable: true,
            cause,
        }
    }
}

impl SshError {
    /// Which step failed, for the check route.
    pub fn stage(&self) -> CheckStage {
        match self {
            Self::Connect { .. } => CheckStage::Connect,
            Self::HostKey(_) => CheckStage::HostKey,
            Self::Key { .. } | Self::Auth { .. } => CheckStage::Auth,
            Self::Channel { .. } => CheckStage::Channel,
        }
    }
}
