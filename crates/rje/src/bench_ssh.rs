//! `rje bench --baseline` against an SSH host: the raw rates of one
//! connection, measured with the same host settings as the server's. It
//! lives here, not in the client library, so that the client carries no
//! SSH stack.

use rje_client::ClientError;
use rje_client::bench::{SshBaseline, SshRates, SshWork};
use rje_ssh::{Inventory, ProcessEnv};

/// Finds the host in this process's settings (`RJE_HOSTS_FILE` or
/// `RJE_SSH_*`) and measures it.
pub struct InventoryBaseline;

impl SshBaseline for InventoryBaseline {
    async fn measure(&self, work: SshWork) -> Result<SshRates, ClientError> {
        let inventory =
            Inventory::from_env(&ProcessEnv).map_err(|err| ClientError::Config(err.to_string()))?;
        let host = inventory.get(&work.host).cloned().ok_or_else(|| {
            ClientError::Config(format!(
                "--baseline needs host {:?} in this process's settings (RJE_HOSTS_FILE or \
                 RJE_SSH_*), the same as the server's",
                work.host
            ))
        })?;
        let rates = rje_ssh::raw_rates(
            host,
            work.concurrency,
            work.total,
            work.singles,
            work.seq_lines,
        )
        .await
        .map_err(|err| ClientError::Config(err.to_string()))?;
        Ok(SshRates {
            channels_per_second: rates.channels_per_second,
            exec_ms: rates.exec_ms,
            seq_seconds: rates.seq_seconds,
            seq_bytes: rates.seq_bytes,
        })
    }
}
