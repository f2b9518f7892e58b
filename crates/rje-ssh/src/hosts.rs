//! Every host this process can run jobs on: `local` and the configured SSH
//! hosts, each SSH host with its pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rje_domain::{
    CheckReport, CheckStage, HealthState, HostHealth, HostKind, HostNames, HostStatus,
};
use rje_exec::{DurableExecutor, Executor, LocalExecutor, NoGate};
use russh::ChannelMsg;

use crate::config::{HostConfig, Inventory};
use crate::connection::connect;
use crate::durable::DurableSshExecutor;
use crate::error::SshError;
use crate::executor::SshExecutor;
use crate::pool::HostPool;

/// The hosts of one process.
pub struct Hosts {
    names: HostNames,
    default_host: String,
    pools: BTreeMap<String, Arc<HostPool>>,
    local: Arc<LocalExecutor>,
    /// Local jobs run durably (a state directory is set).
    local_durable: bool,
    kill_grace: Duration,
}

impl Hosts {
    /// `kill_grace` is the time between TERM and KILL on every host.
    pub fn new(inventory: Inventory, kill_grace: Duration) -> Self {
        let names = inventory.names();
        let pools = inventory
            .hosts
            .into_iter()
            .map(|host| (host.name.clone(), Arc::new(HostPool::new(Arc::new(host)))))
            .collect();
        Self {
            names,
            default_host: inventory
                .default_host
                .unwrap_or_else(|| HostNames::LOCAL.to_owned()),
            pools,
            local: Arc::new(LocalExecutor::new(kill_grace)),
            local_durable: false,
            kill_grace,
        }
    }

    /// Local jobs start from `env` (see [`rje_exec::JobEnvironment`]).
    pub fn with_job_environment(mut self, env: rje_exec::JobEnvironment) -> Self {
        self.local = Arc::new(LocalExecutor::new(self.kill_grace).with_environment(env));
        self
    }

    /// Says whether local jobs run durably, for the hosts list.
    pub fn with_local_durable(mut self, durable: bool) -> Self {
        self.local_durable = durable;
        self
    }

    /// The names a job may give, for validation at submit.
    pub fn names(&self) -> HostNames {
        self.names.clone()
    }

    pub fn default_host(&self) -> &str {
        &self.default_host
    }

    /// An executor per host name.
    pub fn executors(&self) -> Vec<(String, Arc<dyn Executor>)> {
        let mut executors: Vec<(String, Arc<dyn Executor>)> =
            vec![(HostNames::LOCAL.to_owned(), self.local.clone())];
        for (name, pool) in &self.pools {
            executors.push((
                name.clone(),
                Arc::new(SshExecutor::new(pool.clone(), self.kill_grace)),
            ));
        }
        executors
    }

    /// A durable executor per host whose jobs outlive the worker.
    pub fn durable_executors(&self) -> Vec<(String, Arc<dyn DurableExecutor>)> {
        self.pools
            .iter()
            .filter(|(_, pool)| pool.host().durable)
            .map(|(name, pool)| {
                let executor: Arc<dyn DurableExecutor> = Arc::new(DurableSshExecutor::new(
                    pool.clone(),
                    &pool.host().state_dir,
                    self.kill_grace,
                ));
                (name.clone(), executor)
            })
            .collect()
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<HostPool>> {
        self.pools.get(name)
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

    fn ssh_status(&self, pool: &HostPool) -> HostStatus {
        let host = pool.host();
        HostStatus {
            name: host.name.clone(),
            kind: HostKind::Ssh,
            default: self.default_host == host.name,
            address: Some(host.address.clone()),
            port: Some(host.port),
            user: Some(host.user.clone()),
            labels: host.labels.clone(),
            host_key_policy: Some(host.host_key_policy),
            max_concurrent_jobs: Some(host.max_concurrent_jobs),
            durable: host.durable,
            health: pool.health(),
        }
    }
}

impl Hosts {
    /// Every host, `local` first, with its health as this process sees it.
    pub fn list(&self) -> Vec<HostStatus> {
        std::iter::once(self.local_status())
            .chain(self.pools.values().map(|pool| self.ssh_status(pool)))
            .collect()
    }

    /// Connects, authenticates and runs `true`; `None` for an unknown host.
    pub async fn check(&self, name: &str) -> Option<CheckReport> {
        if name == HostNames::LOCAL {
            return Some(check_local(&self.local).await);
        }
        let pool = self.pools.get(name)?;
        let report = check_ssh(pool.host()).await;
        match &report {
            Ok(_) => pool.record(Ok(())),
            Err((err, _)) => pool.record(Err(err)),
        }
        Some(into_report(name, report))
    }
}

type Timings = (Duration, Option<Duration>);

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

fn into_report(name: &str, result: Result<Timings, (SshError, Duration)>) -> CheckReport {
    let checked_at = Utc::now();
    match result {
        Ok((total, connect)) => CheckReport {
            host: name.to_owned(),
            ok: true,
            latency_ms: millis(total),
            connect_ms: connect.map(millis),
            stage: None,
            error: None,
            checked_at,
        },
        Err((err, total)) => CheckReport {
            host: name.to_owned(),
            ok: false,
            latency_ms: millis(total),
            connect_ms: None,
            stage: Some(err.stage()),
            error: Some(err.to_string()),
            checked_at,
        },
    }
}

async fn check_local(local: &LocalExecutor) -> CheckReport {
    let began = Instant::now();
    let (sink, mut events) = tokio::sync::mpsc::channel(8);
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let request = rje_exec::ExecRequest {
        command: "true".into(),
        timeout: Duration::from_secs(10),
        parameters: Default::default(),
    };
    let result = local
        .run(
            request,
            &NoGate,
            sink,
            tokio_util::sync::CancellationToken::new(),
        )
        .await;
    let _ = drain.await;
    let ok = matches!(result, Ok(rje_domain::Outcome::Exited { code: 0 }));
    CheckReport {
        host: HostNames::LOCAL.to_owned(),
        ok,
        latency_ms: millis(began.elapsed()),
        connect_ms: None,
        stage: (!ok).then_some(CheckStage::Exec),
        error: (!ok).then(|| format!("`true` did not succeed: {result:?}")),
        checked_at: Utc::now(),
    }
}

/// A fresh connection, not the pool's, so the check proves that connecting
/// and authenticating work now.
async fn check_ssh(host: &Arc<HostConfig>) -> Result<Timings, (SshError, Duration)> {
    let began = Instant::now();
    let failed = |err: SshError| (err, began.elapsed());
    let handle = connect(host).await.map_err(failed)?;
    let connected = began.elapsed();
    let exec_error = |message: String| SshError::Channel {
        host: host.name.clone(),
        message,
    };
    let result = async {
        let mut channel = handle
            .channel_open_session()
            .await
            .map_err(|err| exec_error(format!("cannot open a channel: {err}")))?;
        channel
            .exec(true, "true")
            .await
            .map_err(|err| exec_error(format!("cannot run `true`: {err}")))?;
        let mut status = None;
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::Failure => {
                    return Err(exec_error("the host refused to run `true`".into()));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        let _ = channel.close().await;
        match status {
            Some(0) => Ok(()),
            Some(code) => Err(exec_error(format!("`true` exited with {code}"))),
            None => Err(exec_error("`true` ended without an exit status".into())),
        }
    };
    let result = tokio::time::timeout(host.connect_timeout, result)
        .await
        .unwrap_or_else(|_| Err(exec_error("`true` did not finish in time".into())));
    let total = began.elapsed();
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    result.map_err(|err| (err, total))?;
    Ok((total, Some(connected)))
}
