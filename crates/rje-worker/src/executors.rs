//! Which executor runs a job, by the host it names.

use std::collections::HashMap;
use std::sync::Arc;

use rje_exec::{DurableLocalExecutor, Executor};

/// The executor for each host a job may name.
#[derive(Clone)]
pub struct Executors {
    by_host: HashMap<String, Arc<dyn Executor>>,
    default_host: String,
    /// Runs the jobs of one host (this machine) so that they outlive the
    /// worker, and takes them up again after it.
    durable: Option<(String, DurableLocalExecutor)>,
}

impl Executors {
    pub fn new(default_host: impl Into<String>) -> Self {
        Self {
            by_host: HashMap::new(),
            default_host: default_host.into(),
            durable: None,
        }
    }

    pub fn with(mut self, host: impl Into<String>, executor: Arc<dyn Executor>) -> Self {
        self.by_host.insert(host.into(), executor);
        self
    }

    /// Runs `host`'s jobs (this machine's) through `executor` instead,
    /// each keyed by its job (see [`DurableLocalExecutor::run_keyed`]).
    pub fn with_durable(mut self, host: impl Into<String>, executor: DurableLocalExecutor) -> Self {
        self.durable = Some((host.into(), executor));
        self
    }

    /// The durable executor, when it runs the jobs of `host`.
    pub fn durable_for(&self, host: Option<&str>) -> Option<&DurableLocalExecutor> {
        let host = host.unwrap_or(&self.default_host);
        self.durable
            .as_ref()
            .filter(|(durable_host, _)| durable_host == host)
            .map(|(_, executor)| executor)
    }

    /// The durable executor, if any.
    pub fn durable(&self) -> Option<&DurableLocalExecutor> {
        self.durable.as_ref().map(|(_, executor)| executor)
    }

    /// The host a job without one runs on.
    pub fn default_host(&self) -> &str {
        &self.default_host
    }

    pub fn knows(&self, host: &str) -> bool {
        self.by_host.contains_key(host)
    }

    pub fn get(&self, host: Option<&str>) -> Option<Arc<dyn Executor>> {
        self.by_host
            .get(host.unwrap_or(&self.default_host))
            .cloned()
    }
}
