//! The SSH hosts of one process, each with its pool: their executors,
//! their status as this process sees it, and their checks. `local` is their
//! peer in the process's host registry, which holds both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rje_domain::{CheckReport, HostKind, HostStatus};
use rje_exec::Executor;
use russh::ChannelMsg;

use crate::config::HostConfig;
use crate::connection::connect;
use crate::durable::DurableSshExecutor;
use crate::error::SshError;
use crate::executor::SshExecutor;
use crate::pool::HostPool;

/// The configured SSH hosts, by name.
pub struct SshHosts {
    pools: BTreeMap<String, Arc<HostPool>>,
    kill_grace: Duration,
}

impl SshHosts {
    /// `kill_grace` is the time between TERM and KILL on every host.
    pub fn new(hosts: Vec<HostConfig>, kill_grace: Duration) -> Self {
        let pools = hosts
            .into_iter()
            .map(|host| (host.name.clone(), Arc::new(HostPool::new(Arc::new(host)))))
            .collect();
        Self { pools, kill_grace }
    }

    /// One executor per host: durable where the host's jobs outlive the
    /// worker (its `durable` setting), plain elsewhere.
    pub fn executors(&self) -> Vec<(String, Arc<dyn Executor>)> {
        self.pools
            .iter()
            .map(|(name, pool)| {
                let executor: Arc<dyn Executor> = if pool.host().durable {
                    Arc::new(DurableSshExecutor::new(
                        pool.clone(),
                        &pool.host().state_dir,
                        self.kill_grace,
                    ))
                } else {
                    Arc::new(SshExecutor::new(pool.clone(), self.kill_grace))
                };
                (name.clone(), executor)
            })
            .collect()
    }

    /// Every SSH host, in name order, with its health as this process sees
    /// it; `default_host` is the one a job without a host runs on.
    pub fn list(&self, default_host: &str) -> Vec<HostStatus> {
        self.pools
            .values()
            .map(|pool| ssh_status(pool, default_host))
            .collect()
    }

    /// Connects, authenticates and runs `true`; `None` for a host that is
    /// not one of these.
    pub async fn check(&self, name: &str) -> Option<CheckReport> {
        let pool = self.pools.get(name)?;
        let report = check_ssh(pool.host()).await;
        match &report {
            Ok(_) => pool.record(Ok(())),
            Err((err, _)) => pool.record(Err(err)),
        }
        Some(into_report(name, report))
    }
}

fn ssh_status(pool: &HostPool, default_host: &str) -> HostStatus {
    let host = pool.host();
    HostStatus {
        name: host.name.clone(),
        kind: HostKind::Ssh,
        default: default_host == host.name,
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

type Timings = (Duration, Option<Duration>);

fn into_report(name: &str, result: Result<Timings, (SshError, Duration)>) -> CheckReport {
    let checked_at = Utc::now();
    match result {
        Ok((total, connect)) => CheckReport {
            host: name.to_owned(),
            ok: true,
            latency_ms: CheckReport::millis(total),
            connect_ms: connect.map(CheckReport::millis),
            stage: None,
            error: None,
            checked_at,
        },
        Err((err, total)) => CheckReport {
            host: name.to_owned(),
            ok: false,
            latency_ms: CheckReport::millis(total),
            connect_ms: None,
            stage: Some(err.stage()),
            error: Some(err.to_string()),
            checked_at,
        },
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
