use std::sync::Arc;
use std::time::Duration;

use rje_bus::Bus;
use rje_domain::{HostNames, Limits};
use rje_exec::HostDirectory;
use rje_store::JobStore;

/// What every handler may use, passed explicitly through axum's `State`.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn JobStore>,
    pub bus: Arc<dyn Bus>,
    /// The hosts jobs run on, for `/hosts/`.
    pub hosts: Arc<dyn HostDirectory>,
    pub settings: Arc<ApiSettings>,
}

/// The API's configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub limits: Limits,
    /// Bearer tokens accepted; empty means no authentication (loopback only,
    /// which the server enforces at startup).
    pub tokens: Vec<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How much of each stream's output a job list carries per job.
    pub list_output_bytes: u32,
    /// How long a request may take to send its whole body.
    pub body_timeout: Duration,
    /// Hosts a job may name, and the default.
    pub hosts: HostNames,
    /// How long a cancel of a running job waits for the kill to be
    /// confirmed before answering 202.
    pub cancel_wait: Duration,
    /// A worker whose heartbeat is older than this is not counted live.
    pub worker_liveness: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            tokens: Vec::new(),
            max_body_bytes: 1024 * 1024,
            list_output_bytes: 4096,
            body_timeout: Duration::from_secs(30),
            hosts: HostNames::local_only(),
            cancel_wait: Duration::from_secs(10),
            worker_liveness: Duration::from_secs(30),
        }
    }
}
