//! The service's own answers: probes, workers and hosts.

use chrono::{DateTime, Utc};
use rje_domain::{HostStatus, JobId};
use serde::{Deserialize, Serialize};

/// `GET /health/`: the process answers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Always `ok`.
    pub status: String,
}

/// `GET /ready/`: whether this process can take and run jobs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyResponse {
    /// `ready` or `unavailable`.
    pub status: String,
    /// `ok` or `unavailable`.
    pub store: String,
    /// `ok` or `unavailable`.
    pub bus: String,
    /// Live workers.
    pub workers: usize,
}

/// `GET /workers/`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerListResponse {
    pub workers: Vec<WorkerResponse>,
}

/// A live worker and the jobs it runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerResponse {
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Jobs it runs at once.
    pub concurrency: u32,
    #[serde(with = "rje_domain::wire_time")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "rje_domain::wire_time")]
    pub heartbeat_at: DateTime<Utc>,
    pub jobs: Vec<JobId>,
}

/// `GET /hosts/`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostListResponse {
    pub hosts: Vec<HostStatus>,
}
