//! Which executor runs a job, by the host it names.

use std::collections::HashMap;
use std::sync::Arc;

use rje_exec::{DurableExecutor, DurableLocalExecutor, Executor};

/// The executor for each host a job may name.
#[derive(Clone)]
pub struct Executors {
    by_host: HashMap<String, Arc<dyn Executor>>,
    default_host: String,
    /// Runs the jobs of these hosts so that they outlive the worker, and
    /// takes them up again after it.
    durable: HashMap<String, Arc<dyn DurableExecutor>>,
    /// The durable executor of this machine, whose job directories the
    /// worker lists itself to find the jobs to take up.
    local: Option<(String, DurableLocalExecutor)>,
}

impl Executors {
    pub fn new(default_host: impl Into<String>) -> Self {
        Self {
            by_host: HashMap::new(),
            default_host: default_host.into(),
            durable: HashMap::new(),
            local: None,
        }
    }

    pub fn with(mut self, host: impl Into<String>, executor: Arc<dyn Executor>) -> Self {
        self.by_host.insert(host.into(), executor);
        self
    }

    /// Runs the jobs of `host`, this machine, through `executor` instead.
    pub fn with_durable(mut self, host: impl Into<String>, executor: DurableLocalExecutor) -> Self {
        let host = host.into();
        self.durable
            .insert(host.clone(), Arc::new(executor.clone()));
        self.local = Some((host, executor));
        self
    }

    /// Runs the jobs of `host`, a remote one, through `executor` instead.
    /// Its jobs are found again through the store (see
    /// [`Executors::remote_durable_hosts`]).
    pub fn with_durable_remote(
        mut self,
        host: impl Into<String>,
        executor: Arc<dyn DurableExecutor>,
    ) -> Self {
        self.durable.insert(host.into(), executor);
        self
    }

    /// The durable executor of `host`, if its jobs run durably.
    pub fn durable_for(&self, host: Option<&str>) -> Option<Arc<dyn DurableExecutor>> {
        self.durable
            .get(host.unwrap_or(&self.default_host))
            .cloned()
    }

    /// This machine's durable executor, if any.
    pub fn local_durable(&self) -> Option<&DurableLocalExecutor> {
        self.local.as_ref().map(|(_, executor)| executor)
    }

    /// The remote hosts whose jobs run durably.
    pub fn remote_durable_hosts(&self) -> Vec<String> {
        let local = self.local.as_ref().map(|(host, _)| host.as_str());
        self.durable
            .keys()
            .filter(|host| Some(host.as_str()) != local)
            .cloned()
            .collect()
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
