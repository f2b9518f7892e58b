//! Where the hosts come from: the default host from `RJE_SSH_*` (or the
//! original's `EC2_*`) and named hosts from a TOML file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use rje_domain::HostKeyPolicy;
use rje_domain::is_valid_host_name;
use serde::Deserialize;

/// OpenSSH's default `MaxSessions`: channels one connection may carry.
pub const DEFAULT_MAX_SESSIONS: usize = 10;
/// Jobs one process runs on a host at once unless the host says otherwise.
pub const DEFAULT_MAX_CONCURRENT_JOBS: usize = 64;
/// How long a connection without channels stays open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Where durable jobs keep their files on a host unless it says otherwise.
pub const DEFAULT_REMOTE_STATE_DIR: &str = "~/.rje/jobs";
/// The name of the host configured from the environment.
pub const ENV_HOST_NAME: &str = "default";

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a passphrase for an encrypted key comes from; never the TOML
/// file itself, so the inventory can be shared without secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passphrase {
    /// Read from an environment variable when the settings were loaded.
    Value(Secret),
    /// Read from this file (its first line) when the key is loaded, so a
    /// rotated secret needs no restart.
    File(PathBuf),
}

/// One host jobs can run on over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// A private key file; `None` uses only ssh-agent.
    pub key: Option<PathBuf>,
    pub passphrase: Option<Passphrase>,
    /// The ssh-agent socket (`SSH_AUTH_SOCK` when rje started), whose keys
    /// are offered after the key file's.
    pub agent: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    /// Jobs this process runs on the host at once.
    pub max_concurrent_jobs: usize,
    /// Channels per connection before another connection is opened.
    pub max_sessions: usize,
    pub labels: Vec<String>,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    /// A connection without channels for this long is closed.
    pub idle_timeout: Duration,
    /// Jobs run under a supervisor on the host and outlive the worker
    /// (the default; a host without `setsid` and `flock` runs them plainly).
    pub durable: bool,
    /// Where durable jobs keep their files on the host; `~/` is the login
    /// directory.
    pub state_dir: String,
}

impl HostConfig {
    /// A host with the defaults for everything but its name and address:
    /// port 22, the user running rje, ssh-agent and `~/.ssh/known_hosts`
    /// as the environment gives them, strict host keys.
    pub fn new(name: &str, address: &str) -> Self {
        let common = Common::from_env(&ProcessEnv).unwrap_or_else(|_| Common::fallback());
        common.plain_host(name, address)
    }
}

/// Every configured host, and the one a job without `host` runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub hosts: Vec<HostConfig>,
    /// `None`: jobs without a host run locally.
    pub default_host: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read the hosts file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("the hosts file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    Env(String),
}

/// The process environment, as a lookup, so tests need not set real
/// variables.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn home_dir(env: &dyn Environment) -> PathBuf {
    PathBuf::from(env.var("HOME").unwrap_or_else(|| "/root".into()))
}

/// `~/…` in configured paths means the home directory, as in ssh_config.
fn expand_home(path: &str, env: &dyn Environment) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home_dir(env).join(rest),
        None => PathBuf::from(path),
    }
}

/// A `[defaults]` table or a `[hosts.NAME]` table: the same settings,
/// each overriding the level above it. Only hosts have an address and
/// labels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    address: Option<String>,
    labels: Option<Vec<String>>,
    user: Option<String>,
    port: Option<u16>,
    key: Option<String>,
    key_passphrase_env: Option<String>,
    key_passphrase_file: Option<String>,
    known_hosts: Option<String>,
    host_key_policy: Option<HostKeyPolicy>,
    max_concurrent_jobs: Option<usize>,
    max_sessions: Option<usize>,
    connect_timeout_seconds: Option<f64>,
    keepalive_seconds: Option<f64>,
    idle_timeout_seconds: Option<f64>,
    durable: Option<bool>,
    state_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    /// The host a job without `host` runs on.
    default: Option<String>,
    defaults: Option<FileSettings>,
    #[serde(default)]
    hosts: BTreeMap<String, FileSettings>,
}

/// Settings that every host has, from the file's `[defaults]` or the
/// environment, before a host's own override them.
struct Common {
    user: String,
    port: u16,
    key: Option<PathBuf>,
    passphrase: Option<Passphrase>,
    agent: Option<PathBuf>,
    known_hosts: PathBuf,
    host_key_policy: HostKeyPolicy,
    max_concurrent_jobs: usize,
    max_sessions: usize,
    connect_timeout: Duration,
    keepalive: Duration,
    idle_timeout: Duration,
    durable: bool,
    state_dir: String,
}

fn seconds(name: &str, value: Option<f64>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(format!("{name} must be from 0.1 to 3600 seconds, not {s}")),
    }
}

fn positive(name: &str, value: Option<usize>, default: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(n) if (1..=10_000).contains(&n) => Ok(n),
        Some(n) => Err(format!("{name} must be from 1 to 10000, not {n}")),
    }
}

/// A remote state directory: a path the host's shell takes as one word
/// (it is quoted), without control characters.
fn state_dir(name: &str, value: Option<String>, default: &str) -> Result<String, String> {
    match value {
        None => Ok(default.to_owned()),
        Some(dir) if dir.trim().is_empty() || dir.chars().any(char::is_control) => {
            Err(format!("{name} must be a path, not {dir:?}"))
        }
        Some(dir) => Ok(dir),
    }
}

/// The passphrase from the variable named `variable`, else from `file`.
fn passphrase(
    variable: Option<String>,
    file: Option<PathBuf>,
    env: &dyn Environment,
) -> Result<Option<Passphrase>, String> {
    match (variable, file) {
        (Some(name), _) => env
            .var(&name)
            .map(|value| Some(Passphrase::Value(Secret(value))))
            .ok_or_else(|| format!("the key's passphrase variable {name} is not set")),
        (None, file) => Ok(file.map(Passphrase::File)),
    }
}

impl Common {
    /// The defaults when the environment's own are not valid.
    fn fallback() -> Self {
        Self {
            user: "root".into(),
            port: 22,
            key: None,
            passphrase: None,
            agent: None,
            known_hosts: PathBuf::from("/root/.ssh/known_hosts"),
            host_key_policy: HostKeyPolicy::Strict,
            max_concurrent_jobs: DEFAULT_MAX_CONCURRENT_JOBS,
            max_sessions: DEFAULT_MAX_SESSIONS,
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            durable: true,
            state_dir: DEFAULT_REMOTE_STATE_DIR.to_owned(),
        }
    }

    fn plain_host(&self, name: &str, address: &str) -> HostConfig {
        HostConfig {
            name: name.to_owned(),
            address: address.to_owned(),
            port: self.port,
            user: self.user.clone(),
            key: self.key.clone(),
            passphrase: self.passphrase.clone(),
            agent: self.agent.clone(),
            known_hosts: self.known_hosts.clone(),
            host_key_policy: self.host_key_policy,
            max_concurrent_jobs: self.max_concurrent_jobs,
            max_sessions: self.max_sessions,
            labels: Vec::new(),
            connect_timeout: self.connect_timeout,
            keepalive: self.keepalive,
            idle_timeout: self.idle_timeout,
            durable: self.durable,
            state_dir: self.state_dir.clone(),
        }
    }

    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let known_hosts = env
            .var("RJE_SSH_KNOWN_HOSTS")
            .map(|p| expand_home(&p, env))
            .unwrap_or_else(|| home_dir(env).join(".ssh").join("known_hosts"));
        let port = match env.var("RJE_SSH_PORT") {
            None => 22,
            Some(port) => port.parse().map_err(|_| {
                ConfigError::Env(format!("RJE_SSH_PORT must be a port number, not {port:?}"))
            })?,
        };
        let host_key_policy = match env.var("RJE_SSH_HOST_KEY_POLICY").as_deref() {
            None | Some("strict") => HostKeyPolicy::Strict,
            Some("accept-new") => HostKeyPolicy::AcceptNew,
            Some(other) => {
                return Err(ConfigError::Env(format!(
                    "RJE_SSH_HOST_KEY_POLICY must be strict or accept-new, not {other:?}"
                )));
            }
        };
        let max_concurrent_jobs = match env.var("RJE_SSH_MAX_CONCURRENT_JOBS") {
            None => None,
            Some(n) => Some(n.parse().map_err(|_| {
                ConfigError::Env(format!(
                    "RJE_SSH_MAX_CONCURRENT_JOBS must be a number, not {n:?}"
                ))
            })?),
        };
        Ok(Self {
            user: env
                .var("RJE_SSH_USER")
                .or_else(|| env.var("EC2_USERNAME"))
                .or_else(|| env.var("USER"))
                .unwrap_or_else(|| "root".into()),
            port,
            key: env
                .var("RJE_SSH_KEY")
                .or_else(|| env.var("EC2_KEY_PATH"))
                .map(|p| expand_home(&p, env)),
            passphrase: passphrase(
                env.var("RJE_SSH_KEY_PASSPHRASE")
                    .map(|_| "RJE_SSH_KEY_PASSPHRASE".to_owned()),
                env.var("RJE_SSH_KEY_PASSPHRASE_FILE")
                    .map(|p| expand_home(&p, env)),
                env,
            )
            .map_err(ConfigError::Env)?,
            agent: env.var("SSH_AUTH_SOCK").map(PathBuf::from),
            known_hosts,
            host_key_policy,
            max_concurrent_jobs: positive(
                "RJE_SSH_MAX_CONCURRENT_JOBS",
                max_concurrent_jobs,
                DEFAULT_MAX_CONCURRENT_JOBS,
            )
            .map_err(ConfigError::Env)?,
            max_sessions: DEFAULT_MAX_SESSIONS,
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            durable: match env.var("RJE_SSH_DURABLE").as_deref() {
                None | Some("1" | "true") => true,
                Some("0" | "false") => false,
                Some(other) => {
                    return Err(ConfigError::Env(format!(
                        "RJE_SSH_DURABLE must be true or false, not {other:?}"
                    )));
                }
            },
            state_dir: state_dir(
                "RJE_SSH_STATE_DIR",
                env.var("RJE_SSH_STATE_DIR"),
                DEFAULT_REMOTE_STATE_DIR,
            )
            .map_err(ConfigError::Env)?,
        })
    }

    /// These settings with a table's own over them; `table` names it in
    /// messages (`defaults`, `hosts.web-1`).
    fn overridden(
        &self,
        table: &str,
        settings: &FileSettings,
        env: &dyn Environment,
    ) -> Result<Self, String> {
        let path = |p: &Option<String>| p.as_deref().map(|p| expand_home(p, env));
        let field = |name: &str| format!("{table}.{name}");
        Ok(Self {
            user: settings.user.clone().unwrap_or_else(|| self.user.clone()),
            port: settings.port.unwrap_or(self.port),
            key: path(&settings.key).or_else(|| self.key.clone()),
            passphrase: passphrase(
                settings.key_passphrase_env.clone(),
                path(&settings.key_passphrase_file),
                env,
            )?
            .or_else(|| self.passphrase.clone()),
            agent: self.agent.clone(),
            known_hosts: path(&settings.known_hosts).unwrap_or_else(|| self.known_hosts.clone()),
            host_key_policy: settings.host_key_policy.unwrap_or(self.host_key_policy),
            max_concurrent_jobs: positive(
                &field("max_concurrent_jobs"),
                settings.max_concurrent_jobs,
                self.max_concurrent_jobs,
            )?,
            max_sessions: positive(
                &field("max_sessions"),
                settings.max_sessions,
                self.max_sessions,
            )?,
            connect_timeout: seconds(
                &field("connect_timeout_seconds"),
                settings.connect_timeout_seconds,
                self.connect_timeout,
            )?,
            keepalive: seconds(
                &field("keepalive_seconds"),
                settings.keepalive_seconds,
                self.keepalive,
            )?,
            idle_timeout: seconds(
                &field("idle_timeout_seconds"),
                settings.idle_timeout_seconds,
                self.idle_timeout,
            )?,
            durable: settings.durable.unwrap_or(self.durable),
            state_dir: state_dir(
                &field("state_dir"),
                settings.state_dir.clone(),
                &self.state_dir,
            )?,
        })
    }

    fn host(
        &self,
        name: &str,
        settings: FileSettings,
        env: &dyn Environment,
    ) -> Result<HostConfig, String> {
        let table = format!("hosts.{name}");
        let address = settings.address.clone().unwrap_or_default();
        if address.trim().is_empty() {
            return Err(format!("{table}.address is missing or empty"));
        }
        let mut host = self
            .overridden(&table, &settings, env)?
            .plain_host(name, &address);
        host.labels = settings.labels.unwrap_or_default();
        Ok(host)
    }
}

impl Inventory {
    /// Reads `RJE_SSH_*` / `EC2_*` and the file `RJE_HOSTS_FILE` names.
    pub fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        let common = Common::from_env(env)?;
        let mut inventory = Inventory::default();
        if let Some(address) = env.var("RJE_SSH_HOST").or_else(|| env.var("EC2_HOST")) {
            inventory
                .hosts
                .push(common.plain_host(ENV_HOST_NAME, &address));
            inventory.default_host = Some(ENV_HOST_NAME.to_owned());
        }
        if let Some(path) = env.var("RJE_HOSTS_FILE") {
            let path = expand_home(&path, env);
            let text = std::fs::read_to_string(&path).map_err(|err| ConfigError::Read {
                path: path.clone(),
                message: err.to_string(),
            })?;
            inventory
                .add_file(&text, common, env)
                .map_err(|message| ConfigError::Invalid { path, message })?;
        }
        Ok(inventory)
    }

    /// Parses a hosts file's text (see docs/SSH.md for its form).
    pub fn parse_file(text: &str, env: &dyn Environment) -> Result<Self, String> {
        let mut inventory = Inventory::default();
        inventory.add_file(text, Common::from_env(env).map_err(|e| e.to_string())?, env)?;
        Ok(inventory)
    }

    fn add_file(
        &mut self,
        text: &str,
        common: Common,
        env: &dyn Environment,
    ) -> Result<(), String> {
        let file: HostsFile = toml::from_str(text).map_err(|err| err.to_string())?;
        let common = match file.defaults {
            Some(defaults) if defaults.address.is_some() || defaults.labels.is_some() => {
                return Err(
                    "defaults cannot have an address or labels: they belong to a host".into(),
                );
            }
            Some(defaults) => common.overridden("defaults", &defaults, env)?,
            None => common,
        };
        for (name, host) in file.hosts {
            if !is_valid_host_name(&name) || name == rje_domain::HostNames::LOCAL {
                return Err(format!(
                    "{name:?} cannot name a host: use 1 to 64 letters, digits, '-', '_' or '.', \
                     and not \"local\""
                ));
            }
            if self.hosts.iter().any(|h| h.name == name) {
                return Err(format!("host {name:?} is configured twice"));
            }
            self.hosts.push(common.host(&name, host, env)?);
        }
        if let Some(default) = file.default {
            let known = default == rje_domain::HostNames::LOCAL
                || self.hosts.iter().any(|h| h.name == default);
            if !known {
                return Err(format!("default = {default:?} names no configured host"));
            }
            self.default_host = Some(default);
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&HostConfig> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The names a job may give (`local` and every host), and the default.
    pub fn names(&self) -> rje_domain::HostNames {
        use rje_domain::HostNames;
        let names = HostNames::new(
            self.default_host.as_deref().unwrap_or(HostNames::LOCAL),
            std::iter::once(HostNames::LOCAL).chain(self.hosts.iter().map(|h| h.name.as_str())),
        );
        self.hosts.iter().fold(names, |names, host| {
            names.with_labels(&host.name, &host.labels)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_original_ec2_variables_make_the_default_host() {
        let inventory = Inventory::from_env(&env(&[
            ("EC2_HOST", "ec2-1.example.com"),
            ("EC2_USERNAME", "ubuntu"),
            ("EC2_KEY_PATH", "/keys/ssh-key.pem"),
            ("HOME", "/home/op"),
        ]))
        .unwrap();
        let host = inventory.get(ENV_HOST_NAME).unwrap();
        assert_eq!(host.address, "ec2-1.example.com");
        assert_eq!(host.user, "ubuntu");
        assert_eq!(host.port, 22);
        assert_eq!(host.key.as_deref(), Some(Path::new("/keys/ssh-key.pem")));
        assert_eq!(host.known_hosts, Path::new("/home/op/.ssh/known_hosts"));
        assert_eq!(host.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(inventory.default_host.as_deref(), Some(ENV_HOST_NAME));
    }

    #[test]
    fn rje_variables_win_over_the_original_ones() {
        let inventory = Inventory::from_env(&env(&[
            ("RJE_SSH_HOST", "10.0.0.5"),
            ("EC2_HOST", "ignored"),
            ("RJE_SSH_PORT", "2222"),
            ("RJE_SSH_USER", "deploy"),
            ("EC2_USERNAME", "ignored"),
            ("RJE_SSH_KNOWN_HOSTS", "/etc/rje/known_hosts"),
            ("RJE_SSH_HOST_KEY_POLICY", "accept-new"),
            ("RJE_SSH_DURABLE", "false"),
            ("RJE_SSH_STATE_DIR", "/srv/rje"),
        ]))
        .unwrap();
        let host = inventory.get(ENV_HOST_NAME).unwrap();
        assert!(!host.durable);
        assert_eq!(host.state_dir, "/srv/rje");
        assert!(Inventory::from_env(&env(&[("RJE_SSH_DURABLE", "yes")])).is_err());
        assert_eq!((host.address.as_str(), host.port), ("10.0.0.5", 2222));
        assert_eq!(host.user, "deploy");
        assert_eq!(host.known_hosts, Path::new("/etc/rje/known_hosts"));
        assert_eq!(host.host_key_policy, HostKeyPolicy::AcceptNew);
        assert!(Inventory::from_env(&env(&[("RJE_SSH_PORT", "x")])).is_err());
        assert!(Inventory::from_env(&env(&[("RJE_SSH_HOST_KEY_POLICY", "yes")])).is_err());
    }

    #[test]
    fn nothing_configured_means_local_only() {
        let inventory = Inventory::from_env(&env(&[])).unwrap();
        assert!(inventory.hosts.is_empty());
        assert_eq!(inventory.default_host, None);
    }

    #[test]
    fn a_hosts_file_names_hosts_with_defaults() {
        let text = r#"
            default = "web-1"
            [defaults]
            user = "deploy"
            key = "~/.ssh/id_ed25519"
            max_concurrent_jobs = 8
            [hosts.web-1]
            address = "10.0.0.5"
            labels = ["web", "eu"]
            [hosts.db-1]
            address = "10.0.0.6"
            port = 2200
            user = "postgres"
            host_key_policy = "accept-new"
            key_passphrase_file = "/run/secrets/db-key-pass"
            max_concurrent_jobs = 2
            max_sessions = 4
            durable = false
            state_dir = "/var/lib/rje/jobs"
        "#;
        let inventory = Inventory::parse_file(text, &env(&[("HOME", "/home/op")])).unwrap();
        assert_eq!(inventory.default_host.as_deref(), Some("web-1"));
        let web = inventory.get("web-1").unwrap();
        assert_eq!((web.user.as_str(), web.port), ("deploy", 22));
        assert_eq!(
            web.key.as_deref(),
            Some(Path::new("/home/op/.ssh/id_ed25519"))
        );
        assert_eq!(web.labels, ["web", "eu"]);
        assert_eq!(web.max_concurrent_jobs, 8);
        let db = inventory.get("db-1").unwrap();
        assert_eq!((db.user.as_str(), db.port), ("postgres", 2200));
        assert_eq!(db.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(
            db.passphrase,
            Some(Passphrase::File("/run/secrets/db-key-pass".into()))
        );
        assert_eq!((db.max_concurrent_jobs, db.max_sessions), (2, 4));
        assert!(web.durable && !db.durable, "durable unless a host says not");
        assert_eq!(db.state_dir, "/var/lib/rje/jobs");
        assert_eq!(web.state_dir, DEFAULT_REMOTE_STATE_DIR);
    }

    #[test]
    fn passphrases_come_from_a_variable_or_a_file_never_the_file_itself() {
        let from_env = Inventory::from_env(&env(&[
            ("RJE_SSH_HOST", "h"),
            ("RJE_SSH_KEY_PASSPHRASE", "s3cret"),
        ]))
        .unwrap();
        let host = from_env.get(ENV_HOST_NAME).unwrap();
        assert_eq!(
            host.passphrase,
            Some(Passphrase::Value(Secret::new("s3cret")))
        );
        assert!(!format!("{host:?}").contains("s3cret"), "Debug hides it");

        let text = "[hosts.a]\naddress = \"x\"\nkey_passphrase_env = \"A_PASS\"";
        let inventory = Inventory::parse_file(text, &env(&[("A_PASS", "pw")])).unwrap();
        assert_eq!(
            inventory.get("a").unwrap().passphrase,
            Some(Passphrase::Value(Secret::new("pw")))
        );
        let err = Inventory::parse_file(text, &env(&[])).unwrap_err();
        assert!(err.contains("A_PASS is not set"), "{err}");
    }

    #[test]
    fn a_bad_hosts_file_says_what_is_wrong() {
        let none = env(&[]);
        let cases = [
            ("[hosts.local]\naddress = \"x\"", "not \"local\""),
            ("[hosts.\"a b\"]\naddress = \"x\"", "cannot name a host"),
            (
                "[hosts.a]\naddress = \"x\"\nmax_sessions = 0",
                "max_sessions",
            ),
            (
                "[hosts.a]\naddress = \"x\"\nhost_key_policy = \"yes\"",
                "host_key_policy",
            ),
            ("[hosts.a]\naddress = \"x\"\nadress = \"y\"", "adress"),
            (
                "default = \"b\"\n[hosts.a]\naddress = \"x\"",
                "names no configured host",
            ),
            ("[hosts.a]\naddress = \"\"", "address is missing or empty"),
            (
                "[hosts.a]\naddress = \"x\"\nstate_dir = \"\"",
                "hosts.a.state_dir must be a path",
            ),
            ("[hosts.a]\naddress = \"x\"\ndurable = 1", "durable"),
            ("[hosts.a]\nport = 22", "hosts.a.address is missing"),
            (
                "[defaults]\naddress = \"x\"",
                "defaults cannot have an address",
            ),
        ];
        for (text, expected) in cases {
            let err = Inventory::parse_file(text, &none).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
