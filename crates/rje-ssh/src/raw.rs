//! The raw rates of one SSH connection, for `rje bench --baseline`: what
//! rje's SSH jobs are measured against.

use std::sync::Arc;
use std::time::Instant;

use russh::ChannelMsg;
use serde::Serialize;

use crate::config::HostConfig;
use crate::connection::{SshHandle, connect};
use crate::error::SshError;

#[derive(Debug, Clone, Serialize)]
pub struct RawRates {
    /// `true` over exec channels of one connection, per second, with as
    /// many channels at once as the host's `max_sessions` allows.
    pub channels_per_second: f64,
    /// Milliseconds for one exec of `true` on the open connection (the
    /// median): the floor of any job's submit→finish on this host.
    pub exec_ms: f64,
    /// Seconds to receive the output of `seq 1 N` over one channel.
    pub seq_seconds: f64,
    /// Bytes that run received.
    pub seq_bytes: u64,
}

async fn exec(handle: &SshHandle, command: &str, host: &str) -> Result<u64, SshError> {
    let failed = |message: String| SshError::Channel {
        host: host.to_owned(),
        message,
    };
    let mut channel = handle
        .channel_open_session()
        .await
        .map_err(|err| failed(err.to_string()))?;
    channel
        .exec(true, command)
        .await
        .map_err(|err| failed(err.to_string()))?;
    let mut bytes = 0u64;
    let mut status = None;
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => bytes += data.len() as u64,
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    let _ = channel.close().await;
    match status {
        Some(0) => Ok(bytes),
        other => Err(failed(format!("{command:?} ended with {other:?}"))),
    }
}

/// Measures one connection to `host`: `total` runs of `true` with
/// `concurrency` channels at once (at most the host's `max_sessions`),
/// `singles` one at a time, and `seq 1 lines` (best of three).
pub async fn raw_rates(
    host: HostConfig,
    concurrency: usize,
    total: usize,
    singles: usize,
    lines: u64,
) -> Result<RawRates, SshError> {
    let host = Arc::new(host);
    let handle = Arc::new(connect(&host).await?);
    let at_once = concurrency.clamp(1, host.max_sessions);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let runners = (0..at_once).map(|_| {
        let (handle, next, name) = (handle.clone(), next.clone(), host.name.clone());
        tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                exec(&handle, "true", &name).await?;
            }
            Ok::<(), SshError>(())
        })
    });
    for result in futures_join(runners).await {
        result?;
    }
    let channels_per_second = total as f64 / started.elapsed().as_secs_f64();

    let mut one_at_a_time = Vec::new();
    for _ in 0..singles.max(1) {
        let began = Instant::now();
        exec(&handle, "true", &host.name).await?;
        one_at_a_time.push(began.elapsed());
    }
    one_at_a_time.sort();
    let exec_ms = one_at_a_time[one_at_a_time.len() / 2].as_secs_f64() * 1000.0;

    let (mut seq_seconds, mut seq_bytes) = (f64::MAX, 0);
    for _ in 0..3 {
        let began = Instant::now();
        seq_bytes = exec(&handle, &format!("seq 1 {lines}"), &host.name).await?;
        seq_seconds = seq_seconds.min(began.elapsed().as_secs_f64());
    }
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    Ok(RawRates {
        channels_per_second,
        exec_ms,
        seq_seconds,
        seq_bytes,
    })
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<Result<T, SshError>>>,
) -> Vec<Result<T, SshError>> {
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap_or_else(|err| {
            Err(SshError::Channel {
                host: String::new(),
                message: format!("a measuring task failed: {err}"),
            })
        }));
    }
    results
}
