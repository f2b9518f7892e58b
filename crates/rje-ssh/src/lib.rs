//! Runs jobs on remote hosts over SSH, with russh: the hosts' configuration,
//! keys and ssh-agent, known_hosts, a pool of connections per host, and an
//! [`rje_exec::Executor`] that runs each command in a process group of its
//! own on the host, so that a timeout or cancel can kill all of it.

mod config;
mod connection;
mod durable;
mod durable_remote;
mod error;
mod executor;
mod hosts;
mod known_hosts;
mod pool;
mod raw;
mod remote;

pub use config::{
    ConfigError, DEFAULT_MAX_CONCURRENT_JOBS, DEFAULT_MAX_SESSIONS, DEFAULT_REMOTE_STATE_DIR,
    ENV_HOST_NAME, Environment, HostConfig, HostKeyPolicy, Inventory, Passphrase, ProcessEnv,
    Secret,
};
pub use connection::connect;
pub use durable::DurableSshExecutor;
pub use error::SshError;
pub use executor::SshExecutor;
pub use hosts::SshHosts;
pub use known_hosts::{HostKeyError, Verdict, describe_key, endpoint};
pub use pool::{ChannelLease, HostPool};
pub use raw::{RawRates, raw_rates};
