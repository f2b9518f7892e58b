//! What the API tells about the hosts jobs run on, whatever runs them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One host as `GET /hosts/` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostStatus {
    pub name: String,
    /// `local` (rje's own machine) or `ssh`.
    pub kind: &'static str,
    /// Jobs without `host` run here.
    pub default: bool,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub labels: Vec<String>,
    pub host_key_policy: Option<&'static str>,
    /// Jobs this process runs on the host at once.
    pub max_concurrent_jobs: Option<usize>,
    pub health: HostHealth,
}

/// What this process has seen of a host.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostHealth {
    /// `up` (the last connection worked), `down` (the last attempt failed)
    /// or `unknown` (no attempt yet from this process).
    pub state: &'static str,
    pub connections: usize,
    pub channels_in_use: usize,
    pub jobs_running: usize,
    pub last_connected_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// The answer of `POST /hosts/{name}/check/`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckReport {
    pub host: String,
    pub ok: bool,
    /// From the first byte sent to `true` having exited, in milliseconds.
    pub latency_ms: f64,
    /// Of which connecting and authenticating (SSH hosts).
    pub connect_ms: Option<f64>,
    /// The step that failed: `connect`, `host-key`, `auth`, `channel` or
    /// `exec`.
    pub stage: Option<&'static str>,
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
}

/// The hosts a process knows.
#[async_trait]
pub trait HostDirectory: Send + Sync {
    fn list(&self) -> Vec<HostStatus>;
    /// Connects, authenticates and runs `true`; `None` for an unknown host.
    async fn check(&self, name: &str) -> Option<CheckReport>;
}
