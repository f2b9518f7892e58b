//! Which executor runs a job, by the host it names.

use std::collections::HashMap;
use std::sync::Arc;

use rje_exec::Executor;

/// The executor of each host a job may name: one per host, plain or
/// durable as the host is configured.
#[derive(Clone)]
pub struct Executors {
    by_host: HashMap<String, Arc<dyn Executor>>,
    default_host: String,
}

impl Executors {
    pub fn new(default_host: impl Into<String>) -> Self {
        Self {
            by_host: HashMap::new(),
            default_host: default_host.into(),
        }
    }

    /// Runs the jobs of `host` through `executor` (replacing any before).
    pub fn with(mut self, host: impl Into<String>, executor: Arc<dyn Executor>) -> Self {
        self.by_host.insert(host.into(), executor);
        self
    }

    /// The host a job without one runs on.
    pub fn default_host(&self) -> &str {
        &self.default_host
    }

    pub fn knows(&self, host: &str) -> bool {
        self.by_host.contains_key(host)
    }

    /// The executor of `host` (of the default host for `None`).
    pub fn get(&self, host: Option<&str>) -> Option<Arc<dyn Executor>> {
        self.by_host
            .get(host.unwrap_or(&self.default_host))
            .cloned()
    }

    /// The hosts whose jobs outlive the worker, with their executors: those
    /// a worker takes jobs up from.
    pub fn durable(&self) -> impl Iterator<Item = (&str, &Arc<dyn Executor>)> {
        self.by_host
            .iter()
            .filter(|(_, executor)| executor.is_durable())
            .map(|(host, executor)| (host.as_str(), executor))
    }
}
