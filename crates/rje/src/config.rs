//! Configuration: flags, then environment variables (and `.env`), then
//! defaults. clap reads the environment, so a flag always wins.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::Args;
use rje_api::{AllowedHosts, ApiSettings, RateLimit};
use rje_domain::Limits;
use rje_exec::JobEnvironment;
use rje_ssh::{Inventory, ProcessEnv};
use rje_worker::WorkerConfig;

use crate::http::ConnectionLimits;

/// Everything `rje serve` can be told.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, env = "RJE_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// Where jobs are stored: sqlite://PATH, or postgres://… for a database
    /// that exists (`createdb`). (`DATABASE_URL` is read too.) [default:
    /// sqlite://rje.db]
    #[arg(long, env = "RJE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis for a distributed deployment; unset uses the in-process bus.
    #[arg(long, env = "RJE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Comma-separated bearer tokens, each an admin's (named `env-` and 8
    /// hex digits of its hash). Without one, and without a token in the
    /// store (`rje tokens create`), rje listens on loopback only.
    #[arg(long, env = "RJE_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,

    /// Days the audit trail keeps an entry; 0 keeps every entry. Each API
    /// process prunes hourly.
    #[arg(long, env = "RJE_AUDIT_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(0..=36_500))]
    pub audit_retention_days: u32,

    /// Days a finished job is kept, with its output; 0 keeps every job.
    /// One process at a time deletes the older ones, hourly, in batches.
    #[arg(long, env = "RJE_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(0..=36_500))]
    pub retention_days: u32,

    /// At most this many finished jobs are kept (the newest); unset: no
    /// limit but `RJE_RETENTION_DAYS`.
    #[arg(long, env = "RJE_RETENTION_MAX_JOBS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_max_jobs: Option<u64>,

    /// Seconds between two readings of the schedules by this process's
    /// scheduler, besides the changes made through this process (read at
    /// once): how soon a schedule made through another process is also
    /// followed here.
    #[arg(long, env = "RJE_SCHEDULE_RELOAD_SECONDS", default_value_t = 30.0)]
    pub schedule_reload_seconds: f64,

    /// Hours an `Idempotency-Key` answers the job it made (a repeat of the
    /// submit then gets that job, not a new one).
    #[arg(long, env = "RJE_IDEMPOTENCY_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(1..=720))]
    pub idempotency_hours: u32,

    /// Jobs run at once by this process's worker.
    #[arg(long, env = "RJE_WORKER_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub worker_concurrency: u32,

    /// Output kept per stream and job; past it rje keeps the head and the
    /// tail with a marker of what was dropped.
    #[arg(long, env = "RJE_MAX_OUTPUT_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_output_bytes: u64,

    /// Run local jobs under detached supervisors that keep their files
    /// here, so that a job outlives this process and the next one on the
    /// same store and directory takes it up (durable jobs). Empty: plain
    /// local jobs, ended by a clean stop (SIGTERM, Ctrl-C) but not by
    /// SIGKILL: their commands then run on unobserved, and the next process
    /// settles them Failed ("worker lost") without killing them.
    #[arg(long, env = "RJE_STATE_DIR", default_value = "rje-state")]
    pub state_dir: String,

    /// How much of each stream's output a job list carries per job (the
    /// end of it); the whole is on the job and its logs route.
    #[arg(long, env = "RJE_LIST_OUTPUT_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(0..=1024 * 1024))]
    pub list_output_bytes: u32,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RJE_MAX_BODY_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_body_bytes: u64,

    /// Longest command accepted, in bytes.
    #[arg(long, env = "RJE_MAX_COMMAND_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=16 * 1024 * 1024))]
    pub max_command_bytes: u64,

    /// Longest job timeout accepted, in seconds.
    #[arg(long, env = "RJE_MAX_TIMEOUT_SECONDS", default_value_t = 7 * 24 * 3600,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_timeout_seconds: u32,

    /// Connections served at once; past it new ones are answered 503 and
    /// closed at once. Kept below the process's file descriptor limit.
    #[arg(long, env = "RJE_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Seconds a connection has to send a complete request head, counted
    /// from when it opens or finished its last request (so also how long a
    /// kept-alive connection may idle).
    #[arg(long, env = "RJE_HEADER_TIMEOUT_SECONDS", default_value_t = 15.0)]
    pub header_timeout_seconds: f64,

    /// Seconds a request has to send its whole body.
    #[arg(long, env = "RJE_BODY_TIMEOUT_SECONDS", default_value_t = 30.0)]
    pub body_timeout_seconds: f64,

    /// Seconds a client may leave what rje sends it (a response, a
    /// WebSocket message) untaken before it is dropped.
    #[arg(long, env = "RJE_SEND_TIMEOUT_SECONDS", default_value_t = 30.0)]
    pub send_timeout_seconds: f64,

    /// Seconds between TERM and KILL when a job is timed out or cancelled.
    #[arg(long, env = "RJE_KILL_GRACE_SECONDS", default_value_t = 5.0)]
    pub kill_grace_seconds: f64,

    /// Seconds a worker's claim on a job lasts without renewal.
    #[arg(long, env = "RJE_LEASE_SECONDS", default_value_t = 30.0)]
    pub lease_seconds: f64,

    /// First wait, in seconds, before retrying a job whose command could
    /// not start (doubling after).
    #[arg(long, env = "RJE_RETRY_BASE_SECONDS", default_value_t = 30.0)]
    pub retry_base_seconds: f64,

    /// On SIGTERM or Ctrl-C: `drain` waits for running jobs (up to the
    /// grace), then kills them (for a scale-in); `detach` leaves the durable
    /// jobs (local ones under RJE_STATE_DIR, SSH ones on durable hosts) to
    /// the next process and exits once its worker has let go of them,
    /// typically in a second or two (for an upgrade or a restart). A second
    /// signal during a shutdown does nothing.
    #[arg(
        long,
        env = "RJE_SHUTDOWN_MODE",
        value_enum,
        default_value = "drain",
        ignore_case = true
    )]
    pub shutdown_mode: rje_worker::ShutdownMode,

    /// Seconds running jobs get to finish on shutdown before they are
    /// killed.
    #[arg(long, env = "RJE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30.0)]
    pub shutdown_grace_seconds: f64,

    /// Channel namespace on Redis, so that deployments can share one.
    #[arg(long, env = "RJE_BUS_NAMESPACE", default_value = "rje")]
    pub bus_namespace: String,

    /// Apply database migrations at start (PostgreSQL; SQLite always does).
    #[arg(long, env = "RJE_AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,

    /// Serve the API only; run no jobs in this process.
    #[arg(long)]
    pub no_worker: bool,

    /// Requests per second per token (per client address without one).
    /// Unset: off when listening on loopback, 50 otherwise; 0: off.
    #[arg(long, env = "RJE_RATE_LIMIT_PER_SECOND")]
    pub rate_limit_per_second: Option<f64>,

    /// Requests a client may send at once above the rate.
    #[arg(long, env = "RJE_RATE_LIMIT_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_burst: u32,

    /// Proxies (addresses or CIDR networks, comma-separated) whose
    /// `X-Forwarded-For` names the client for rate limiting.
    #[arg(long, env = "RJE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// Origins (comma-separated, e.g. `https://ops.example.com`) whose
    /// browser pages may call the API. Unset: no cross-origin access.
    #[arg(long, env = "RJE_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,

    /// Host names (comma-separated) requests may use besides loopback
    /// ones: `name`, `.example.com` for it and every name under it, `*` for
    /// any. Unset: loopback names only without tokens, any name with them.
    #[arg(long, env = "RJE_ALLOWED_HOSTS", default_value = "")]
    pub allowed_hosts: String,

    /// Variables of rje's environment (comma-separated names) that local
    /// jobs get besides the user's and the locale's. rje's own settings
    /// are refused: they never reach a job.
    #[arg(long, env = "RJE_JOB_ENV_PASS", default_value = "")]
    pub job_env_pass: String,

    /// Serve `/openapi.json` and `/docs` without a token (they hold no
    /// data).
    #[arg(long, env = "RJE_PUBLIC_DOCS", default_value_t = true, action = clap::ArgAction::Set)]
    pub public_docs: bool,

    /// Serve `/metrics` without a token.
    #[arg(long, env = "RJE_PUBLIC_METRICS", default_value_t = false, action = clap::ArgAction::Set)]
    pub public_metrics: bool,
}

/// The end of `rje serve --help` and `rje worker --help`: the settings read
/// from the environment only, which have no flag above.
pub const ENVIRONMENT_HELP: &str = "\
SSH hosts, from the environment only (docs/SSH.md):
  RJE_SSH_HOST (or EC2_HOST)      the default host, named `default` [default: none: jobs run here]
  RJE_SSH_PORT                    its port [default: 22]
  RJE_SSH_USER (or EC2_USERNAME)  the user to log in as [default: $USER]
  RJE_SSH_KEY (or EC2_KEY_PATH)   private key file: ed25519, ECDSA or RSA
  RJE_SSH_KEY_PASSPHRASE          the key's passphrase...
  RJE_SSH_KEY_PASSPHRASE_FILE     ...or a file whose first line is it
  RJE_SSH_KNOWN_HOSTS             host keys to trust [default: ~/.ssh/known_hosts]
  RJE_SSH_HOST_KEY_POLICY         strict, or accept-new to trust a new host's key [default: strict]
  RJE_SSH_MAX_CONCURRENT_JOBS     jobs this process runs on one host at once [default: 64]
  RJE_SSH_DURABLE                 jobs outlive the worker: true or false [default: true]
  RJE_SSH_STATE_DIR               where durable jobs keep their files on the host [default: ~/.rje/jobs]
  RJE_HOSTS_FILE                  a TOML file of named hosts
  SSH_AUTH_SOCK                   an ssh-agent whose keys are offered after the key file's

Also read: DATABASE_URL and REDIS_URL when RJE_DATABASE_URL and RJE_REDIS_URL are unset;
RUST_LOG, the log filter [default: info]; and a .env file in the working directory.
Every setting: docs/CONFIGURATION.md";

/// The default rate limit when listening beyond loopback.
pub const DEFAULT_RATE_PER_SECOND: f64 = 50.0;

/// Validated settings for one server process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database_url: String,
    /// `None`: the in-process bus.
    pub redis_url: Option<String>,
    pub bus_namespace: String,
    pub auto_migrate: bool,
    pub run_api: bool,
    pub api: ApiSettings,
    pub worker: WorkerConfig,
    pub kill_grace: Duration,
    pub run_worker: bool,
    /// The SSH hosts jobs may run on, and the default host.
    pub inventory: Inventory,
    /// Limits on the API's connections.
    pub connections: ConnectionLimits,
    /// Where local jobs' supervisors keep their files (`RJE_STATE_DIR`);
    /// `None`: plain local jobs, ended by a clean stop, not by SIGKILL.
    pub state_dir: Option<std::path::PathBuf>,
    /// The rje binary that supervises local jobs; `None`: this one.
    pub supervisor_program: Option<std::path::PathBuf>,
    /// What local jobs' environments start from (never rje's own).
    pub job_env: JobEnvironment,
    /// Which finished jobs are deleted by themselves.
    pub retention: crate::retention::RetentionPolicy,
    /// How often the scheduler reads the schedules again.
    pub schedule_reload: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be a number of seconds from {min} to {max}, not {value}")]
    Seconds {
        name: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{name}: {message}")]
    Invalid { name: &'static str, message: String },
    #[error(transparent)]
    Hosts(#[from] rje_ssh::ConfigError),
    #[error(transparent)]
    JobEnv(#[from] rje_exec::JobEnvError),
}

/// `RJE_RATE_LIMIT_*`: unset means on only beyond loopback; 0 means off.
fn rate_limit(
    per_second: Option<f64>,
    burst: u32,
    loopback: bool,
) -> Result<Option<RateLimit>, ConfigError> {
    let per_second = match per_second {
        None if loopback => return Ok(None),
        None => DEFAULT_RATE_PER_SECOND,
        Some(0.0) => return Ok(None),
        Some(rate) if rate.is_finite() && (0.001..=1_000_000.0).contains(&rate) => rate,
        Some(rate) => {
            return Err(ConfigError::Invalid {
                name: "RJE_RATE_LIMIT_PER_SECOND",
                message: format!("must be 0 (off) or from 0.001 to 1000000, not {rate}"),
            });
        }
    };
    Ok(Some(RateLimit { per_second, burst }))
}

/// A comma-separated setting, each item checked by `parse`.
fn list<T>(
    name: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse(item).map_err(|message| ConfigError::Invalid { name, message }))
        .collect()
}

/// A proxy: an address, or a CIDR network of them.
fn proxy(item: &str) -> Result<ipnet::IpNet, String> {
    item.parse::<ipnet::IpNet>()
        .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{item:?} is not an address or a CIDR network"))
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn origin(item: &str) -> Result<HeaderValue, String> {
    let refuse = || format!("{item:?} is not an origin like https://ops.example.com");
    let (scheme, rest) = item.split_once("://").ok_or_else(refuse)?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#']) {
        return Err(refuse());
    }
    HeaderValue::from_str(item).map_err(|_| refuse())
}

fn seconds(name: &'static str, value: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::Seconds {
            name,
            value,
            min,
            max,
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            database_url: "sqlite://rje.db".into(),
            redis_url: None,
            bus_namespace: "rje".into(),
            auto_migrate: true,
            run_api: true,
            api: ApiSettings::default(),
            worker: WorkerConfig::default(),
            kill_grace: Duration::from_secs(5),
            run_worker: true,
            inventory: Inventory::default(),
            connections: ConnectionLimits::default(),
            state_dir: None,
            supervisor_program: None,
            job_env: JobEnvironment::inherited(),
            retention: crate::retention::RetentionPolicy::default(),
            schedule_reload: crate::scheduler::RELOAD_EVERY,
        }
    }
}

impl ServeArgs {
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let inventory = Inventory::from_env(&ProcessEnv)?;
        let database_url = database_url(self.database_url)?;
        let redis_url = self
            .redis_url
            .or_else(|| std::env::var("REDIS_URL").ok())
            .filter(|v| !v.is_empty());
        let tokens: Vec<String> = self
            .api_tokens
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let lease = seconds("RJE_LEASE_SECONDS", self.lease_seconds, 1.0, 3600.0)?;
        let defaults = WorkerConfig::default();
        let worker = WorkerConfig {
            concurrency: self.worker_concurrency as usize,
            host_name: nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
            lease,
            renew_every: lease / 3,
            reap_every: (lease / 6).max(Duration::from_millis(500)),
            max_output_bytes: self.max_output_bytes,
            retry_base: seconds(
                "RJE_RETRY_BASE_SECONDS",
                self.retry_base_seconds,
                0.0,
                3600.0,
            )?,
            shutdown_grace: seconds(
                "RJE_SHUTDOWN_GRACE_SECONDS",
                self.shutdown_grace_seconds,
                0.0,
                86400.0,
            )?,
            shutdown_mode: self.shutdown_mode,
            ..defaults
        };
        let kill_grace = seconds(
            "RJE_KILL_GRACE_SECONDS",
            self.kill_grace_seconds,
            0.0,
            300.0,
        )?;
        let send_timeout = seconds(
            "RJE_SEND_TIMEOUT_SECONDS",
            self.send_timeout_seconds,
            0.1,
            3600.0,
        )?;
        let connections = ConnectionLimits {
            send_timeout,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            header_timeout: seconds(
                "RJE_HEADER_TIMEOUT_SECONDS",
                self.header_timeout_seconds,
                0.1,
                3600.0,
            )?,
            ..ConnectionLimits::default()
        };
        let body_timeout = seconds(
            "RJE_BODY_TIMEOUT_SECONDS",
            self.body_timeout_seconds,
            0.1,
            3600.0,
        )?;
        let allowed_hosts = allowed_hosts(&tokens, &self.allowed_hosts)?;
        let api = ApiSettings {
            limits: Limits {
                max_command_bytes: self.max_command_bytes as usize,
                max_timeout_secs: self.max_timeout_seconds,
                ..Limits::default()
            },
            tokens,
            tokens_in_store: false,
            audit_retention: (self.audit_retention_days > 0)
                .then(|| Duration::from_secs(u64::from(self.audit_retention_days) * 24 * 3600)),
            idempotency_window: Duration::from_secs(u64::from(self.idempotency_hours) * 3600),
            max_body_bytes: self.max_body_bytes as usize,
            list_output_bytes: self.list_output_bytes,
            body_timeout,
            cancel_wait: kill_grace + Duration::from_secs(5),
            worker_liveness: lease,
            rate_limit: rate_limit(
                self.rate_limit_per_second,
                self.rate_limit_burst,
                self.bind.ip().is_loopback(),
            )?,
            trusted_proxies: list("RJE_TRUSTED_PROXIES", &self.trusted_proxies, proxy)?,
            cors_origins: list("RJE_CORS_ORIGINS", &self.cors_origins, origin)?,
            allowed_hosts,
            ws_send_timeout: send_timeout,
            public_docs: self.public_docs,
            public_metrics: self.public_metrics,
            ..ApiSettings::default()
        };
        Ok(Settings {
            bind: self.bind,
            database_url,
            redis_url,
            bus_namespace: self.bus_namespace,
            auto_migrate: self.auto_migrate,
            run_api: true,
            api,
            worker,
            kill_grace,
            run_worker: !self.no_worker,
            inventory,
            connections,
            state_dir: Some(self.state_dir)
                .filter(|dir| !dir.is_empty())
                .map(std::path::PathBuf::from),
            supervisor_program: None,
            job_env: JobEnvironment::passing(&names_in(&self.job_env_pass))?,
            retention: crate::retention::RetentionPolicy {
                days: self.retention_days,
                max_jobs: self.retention_max_jobs,
            },
            schedule_reload: seconds(
                "RJE_SCHEDULE_RELOAD_SECONDS",
                self.schedule_reload_seconds,
                0.1,
                3600.0,
            )?,
        })
    }
}

/// The names in a comma-separated list, blanks dropped.
fn names_in(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Which `Host` names requests may use: without tokens, loopback ones and
/// those listed, so that a DNS-rebinding page cannot reach a token-less
/// server; with tokens, those listed, or any when none is.
fn allowed_hosts(tokens: &[String], listed: &str) -> Result<AllowedHosts, ConfigError> {
    let names = names_in(listed);
    if let Some(bad) = names.iter().find(|name| {
        name.as_str() != "*"
            && !name.trim_start_matches('.').chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '[' | ']')
            })
    }) {
        return Err(ConfigError::Invalid {
            name: "RJE_ALLOWED_HOSTS",
            message: format!("{bad:?} is not a host name, a .domain or *"),
        });
    }
    Ok(if names.is_empty() && !tokens.is_empty() {
        AllowedHosts::Any
    } else {
        AllowedHosts::LoopbackAnd(names)
    })
}

/// The store's URL: the flag or `RJE_DATABASE_URL`, then `DATABASE_URL`
/// (the original's variable), then the embedded default.
pub fn database_url(flag: Option<String>) -> Result<String, ConfigError> {
    let url = flag
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "sqlite://rje.db".into());
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if !known.iter().any(|scheme| url.starts_with(scheme)) {
        return Err(ConfigError::Unsupported(format!(
            "database URL {:?} is neither sqlite://PATH nor postgres://…",
            redact(&url)
        )));
    }
    Ok(url)
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_off_on_loopback_and_on_beyond_it_by_default() {
        assert_eq!(rate_limit(None, 100, true).unwrap(), None);
        assert_eq!(
            rate_limit(None, 100, false).unwrap(),
            Some(RateLimit {
                per_second: DEFAULT_RATE_PER_SECOND,
                burst: 100
            })
        );
        assert_eq!(rate_limit(Some(0.0), 100, false).unwrap(), None, "0 is off");
        assert_eq!(
            rate_limit(Some(5.0), 10, true).unwrap(),
            Some(RateLimit {
                per_second: 5.0,
                burst: 10
            }),
            "asked for, on loopback too"
        );
        assert!(rate_limit(Some(-1.0), 10, true).is_err());
        assert!(rate_limit(Some(f64::NAN), 10, true).is_err());
    }

    #[test]
    fn origins_and_proxies_are_checked() {
        let origins = list(
            "RJE_CORS_ORIGINS",
            " https://a.example , http://b:3000",
            origin,
        )
        .unwrap();
        assert_eq!(origins, ["https://a.example", "http://b:3000"]);
        for bad in ["a.example", "https://a.example/path", "ftp://a", "https://"] {
            assert!(list("RJE_CORS_ORIGINS", bad, origin).is_err(), "{bad}");
        }
        let proxies = list("RJE_TRUSTED_PROXIES", "10.0.0.0/8, ::1", proxy).unwrap();
        assert_eq!(proxies.len(), 2);
        assert!(proxies[1].contains(&"::1".parse::<std::net::IpAddr>().unwrap()));
        assert!(list("RJE_TRUSTED_PROXIES", "10.0.0.0/33", proxy).is_err());
    }

    #[test]
    fn allowed_hosts_default_to_loopback_without_tokens() {
        assert_eq!(
            allowed_hosts(&[], "").unwrap(),
            AllowedHosts::LoopbackAnd(vec![])
        );
        assert_eq!(allowed_hosts(&["t".into()], "").unwrap(), AllowedHosts::Any);
        assert_eq!(
            allowed_hosts(&["t".into()], " rje.internal , .ops.example").unwrap(),
            AllowedHosts::LoopbackAnd(vec!["rje.internal".into(), ".ops.example".into()])
        );
        assert!(allowed_hosts(&[], "a b").is_err());
        assert!(allowed_hosts(&[], "http://a").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://rje:secret@db:5432/rje"),
            "postgres://rje:***@db:5432/rje"
        );
        assert_eq!(redact("sqlite://rje.db"), "sqlite://rje.db");
    }

    #[test]
    fn seconds_are_range_checked() {
        assert!(seconds("X", 1.5, 0.0, 2.0).is_ok());
        assert!(seconds("X", -1.0, 0.0, 2.0).is_err());
        assert!(seconds("X", f64::NAN, 0.0, 2.0).is_err());
    }
}
