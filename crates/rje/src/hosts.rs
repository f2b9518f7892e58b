//! The host registry: every host this process can run jobs on, as peers.
//! `local` (this machine) and each configured SSH host has one executor,
//! plain or durable as configured; a status for `GET /hosts/`; and a check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rje_api::HostDirectory;
use rje_domain::{
    CheckReport, CheckStage, HealthState, HostHealth, HostKind, HostNames, HostStatus, Outcome,
};
use rje_exec::{
    DurableLocalExecutor, ExecRequest, Executor, JobEnvironment, LocalExecutor, NoGate, Ran,
};
use rje_ssh::{Inventory, SshHosts};
use rje_worker::Executors;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::error::ServerError;
use crate::store::store_mark;

/// Every host of one process, by name.
pub struct Hosts {
    names: HostNames,
    default_host: String,
    /// Runs this machine's jobs.
    local: Arc<dyn Executor>,
    /// Local jobs run durably, as the hosts list says (a process that runs
    /// no jobs says what its settings would do).
    local_durable: bool,
    /// Runs the check's `true` here: the plain way, so that a check leaves
    /// nothing behind.
    local_probe: LocalExecutor,
    ssh: SshHosts,
}

impl Hosts {
    /// `local` runs this machine's jobs; `kill_grace` is the time between
    /// TERM and KILL on every host.
    pub fn new(
        inventory: Inventory,
        kill_grace: Duration,
        env: JobEnvironment,
        local: Arc<dyn Executor>,
    ) -> Self {
        Self {
            names: inventory.names(),
            default_host: inventory
                .default_host
                .unwrap_or_else(|| HostNames::LOCAL.to_owned()),
            local_durable: local.is_durable(),
            local,
            local_probe: LocalExecutor::new(kill_grace).with_environment(env),
            ssh: SshHosts::new(inventory.hosts, kill_grace),
        }
    }

    /// The hosts of a process as `settings` configure them. This
    /// machine's jobs run durably under a state directory, which is probed
    /// here (when `runs_jobs`): a directory that cannot be used is said at
    /// start, not by every local job failing.
    pub fn from_settings(settings: &Settings, runs_jobs: bool) -> Result<Self, ServerError> {
        let plain = || -> Arc<dyn Executor> {
            Arc::new(
                LocalExecutor::new(settings.kill_grace).with_environment(settings.job_env.clone()),
            )
        };
        let local = match &settings.state_dir {
            Some(state_dir) if runs_jobs => {
                let program = match &settings.supervisor_program {
                    Some(program) => program.clone(),
                    None => std::env::current_exe().map_err(ServerError::SupervisorProgram)?,
                };
                rje_exec::durable::prepare_state_dir(state_dir).map_err(state_dir_error)?;
                let durable =
                    DurableLocalExecutor::new(state_dir.clone(), program, settings.kill_grace)
                        .with_max_output_bytes(settings.worker.max_output_bytes)
                        .with_store(store_mark(&settings.database_url))
                        .with_environment(settings.job_env.clone());
                Arc::new(durable) as Arc<dyn Executor>
            }
            _ => plain(),
        };
        let mut hosts = Self::new(
            settings.inventory.clone(),
            settings.kill_grace,
            settings.job_env.clone(),
            local,
        );
        hosts.local_durable = settings.state_dir.is_some();
        Ok(hosts)
    }

    /// The names a job may give, for validation at submit.
    pub fn names(&self) -> HostNames {
        self.names.clone()
    }

    /// One executor per host, for a worker.
    pub fn executors(&self) -> Executors {
        self.ssh.executors().into_iter().fold(
            Executors::new(&self.default_host).with(HostNames::LOCAL, self.local.clone()),
            |all, (name, executor)| all.with(name, executor),
        )
    }

    /// Every host, `local` first, with its health as this process sees it.
    pub fn list(&self) -> Vec<HostStatus> {
        std::iter::once(self.local_status())
            .chain(self.ssh.list(&self.default_host))
            .collect()
    }

    /// Runs `true` on the host (over a fresh connection for an SSH host);
    /// `None` for an unknown host.
    pub async fn check(&self, name: &str) -> Option<CheckReport> {
        if name == HostNames::LOCAL {
            return Some(check_local(&self.local_probe).await);
        }
        self.ssh.check(name).await
    }

    fn local_status(&self) -> HostStatus {
        HostStatus {
            name: HostNames::LOCAL.to_owned(),
            kind: HostKind::Local,
            default: self.default_host == HostNames::LOCAL,
            address: None,
            port: None,
            user: None,
            labels: Vec::new(),
            host_key_policy: None,
            max_concurrent_jobs: None,
            durable: self.local_durable,
            health: HostHealth {
                state: HealthState::Up,
                connections: 0,
                channels_in_use: 0,
                jobs_running: 0,
                last_connected_at: None,
                last_error: None,
                last_error_at: None,
                connect_failures: 0,
            },
        }
    }
}

#[async_trait::async_trait]
impl HostDirectory for Hosts {
    fn list(&self) -> Vec<HostStatus> {
        Hosts::list(self)
    }

    async fn check(&self, name: &str) -> Option<CheckReport> {
        Hosts::check(self, name).await
    }
}

async fn check_local(local: &LocalExecutor) -> CheckReport {
    let began = Instant::now();
    let (sink, mut events) = tokio::sync::mpsc::channel(8);
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let request = ExecRequest {
        command: "true".into(),
        timeout: Duration::from_secs(10),
        parameters: Default::default(),
    };
    let result = local
        .run("check", request, &NoGate, sink, CancellationToken::new())
        .await;
    let _ = drain.await;
    let ok = matches!(result, Ok(Ran::Ended(Outcome::Exited { code: 0 })));
    CheckReport {
        host: HostNames::LOCAL.to_owned(),
        ok,
        latency_ms: CheckReport::millis(began.elapsed()),
        connect_ms: None,
        stage: (!ok).then_some(CheckStage::Exec),
        error: (!ok).then(|| format!("`true` did not succeed: {result:?}")),
        checked_at: Utc::now(),
    }
}

fn state_dir_error(err: rje_exec::durable::StateDirError) -> ServerError {
    match err {
        rje_exec::durable::StateDirError::Io { path, source } => ServerError::StateDir {
            path,
            cause: source,
        },
        unsafe_dir => ServerError::UnsafeStateDir(unsafe_dir),
    }
}

#[cfg(test)]
mod tests {
    use rje_domain::HostKind;
    use rje_ssh::HostConfig;

    use super::*;

    fn hosts(default_host: Option<&str>) -> Hosts {
        let inventory = Inventory {
            hosts: vec![HostConfig::new("box", "127.0.0.1")],
            default_host: default_host.map(str::to_owned),
        };
        let grace = Duration::from_secs(1);
        let local = Arc::new(LocalExecutor::new(grace));
        Hosts::new(inventory, grace, JobEnvironment::inherited(), local)
    }

    #[tokio::test]
    async fn local_and_ssh_hosts_are_peers_in_one_registry() {
        let hosts = hosts(Some("box"));
        assert!(hosts.check("local").await.unwrap().ok);
        assert!(hosts.check("nowhere").await.is_none());
        let listed = hosts.list();
        let kinds: Vec<_> = listed.iter().map(|h| (h.name.as_str(), h.kind)).collect();
        assert_eq!(kinds, [("local", HostKind::Local), ("box", HostKind::Ssh)]);
        assert!(listed[1].default && !listed[0].default);
        assert!(!listed[0].durable, "a plain local executor is not durable");

        let executors = hosts.executors();
        assert_eq!(executors.default_host(), "box");
        assert!(executors.knows("local") && executors.knows("box"));
        assert!(!executors.knows("nowhere"));
        // SSH hosts run their jobs durably by default; this local one not.
        let durable: Vec<_> = executors.durable().map(|(host, _)| host).collect();
        assert_eq!(durable, ["box"]);
    }

    #[test]
    fn without_a_default_jobs_run_here() {
        let hosts = hosts(None);
        assert!(hosts.list()[0].default);
        assert_eq!(hosts.executors().default_host(), "local");
    }
}
