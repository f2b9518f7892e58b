//! What rje tells about the hosts jobs run on, whatever runs them: the
//! views `GET /hosts/` and `POST /hosts/{name}/check/` answer with.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a host's jobs run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    /// rje's own machine.
    Local,
    /// A machine reached over SSH.
    Ssh,
}

/// Whether a host key that known_hosts does not hold may be trusted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Only keys already in known_hosts.
    #[default]
    Strict,
    /// Trust on first use: an unknown host's key is recorded in known_hosts
    /// and trusted from then on. A changed key is still refused.
    AcceptNew,
}

impl HostKeyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::AcceptNew => "accept-new",
        }
    }
}

/// One host as `GET /hosts/` lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub name: String,
    pub kind: HostKind,
    /// Jobs without `host` run here.
    pub default: bool,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub labels: Vec<String>,
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Jobs this process runs on the host at once.
    pub max_concurrent_jobs: Option<usize>,
    /// The host's jobs run under a supervisor there and outlive the worker
    /// that started them (durable jobs).
    #[serde(default)]
    pub durable: bool,
    pub health: HostHealth,
}

/// What this process has seen of a host's connections.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// The last connection worked.
    Up,
    /// The last attempt failed.
    Down,
    /// No attempt yet from this process.
    Unknown,
}

/// What this process has seen of a host.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostHealth {
    pub state: HealthState,
    pub connections: usize,
    pub channels_in_use: usize,
    pub jobs_running: usize,
    #[serde(with = "crate::wire_time::option")]
    pub last_connected_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Connections (and checks) that failed since this process started.
    #[serde(default)]
    pub connect_failures: u64,
    #[serde(with = "crate::wire_time::option")]
    pub last_error_at: Option<DateTime<Utc>>,
}

/// The step of a host check that failed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStage {
    Connect,
    HostKey,
    Auth,
    Channel,
    Exec,
}

/// The answer of `POST /hosts/{name}/check/`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub host: String,
    pub ok: bool,
    /// From the first byte sent to `true` having exited, in milliseconds.
    pub latency_ms: f64,
    /// Of which connecting and authenticating (SSH hosts).
    pub connect_ms: Option<f64>,
    /// The step that failed.
    pub stage: Option<CheckStage>,
    pub error: Option<String>,
    #[serde(with = "crate::wire_time")]
    pub checked_at: DateTime<Utc>,
}

impl CheckReport {
    /// A duration as a check reports it: milliseconds, to the hundredth.
    pub fn millis(duration: std::time::Duration) -> f64 {
        (duration.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_on_the_wire_are_the_documented_ones() {
        assert_eq!(json!(HostKind::Ssh), json!("ssh"));
        assert_eq!(json!(HealthState::Unknown), json!("unknown"));
        assert_eq!(json!(CheckStage::HostKey), json!("host-key"));
        assert_eq!(json!(HostKeyPolicy::AcceptNew), json!("accept-new"));
    }
}
