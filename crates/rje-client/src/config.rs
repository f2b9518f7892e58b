//! Where the server is and how to authenticate: flags, then `RJE_URL` and
//! `RJE_TOKEN`, then a config file, then the default local server.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use crate::ClientError;

const DEFAULT_URL: &str = "http://127.0.0.1:8000";

/// Connection options shared by every client command.
#[derive(Debug, Clone, Default, Args)]
pub struct Connection {
    /// The server's URL [default: http://127.0.0.1:8000]
    #[arg(long, env = "RJE_URL", global = true)]
    pub url: Option<String>,

    /// Bearer token for a server with RJE_API_TOKENS set.
    #[arg(long, env = "RJE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// Config file with `url` and `token` [default:
    /// $XDG_CONFIG_HOME/rje/config.toml, or ~/.config/rje/config.toml]
    #[arg(long, env = "RJE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    url: Option<String>,
    token: Option<String>,
}

/// A resolved server address and token.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base_url: String,
    pub token: Option<String>,
}

impl Connection {
    pub fn resolve(&self) -> Result<Endpoint, ClientError> {
        let file = self.read_config_file()?;
        let url = self
            .url
            .clone()
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let token = self.token.clone().or(file.token).filter(|t| !t.is_empty());
        let base_url = url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "the server URL {url:?} must start with http:// or https://"
            )));
        }
        Ok(Endpoint { base_url, token })
    }

    fn read_config_file(&self) -> Result<ConfigFile, ClientError> {
        let (path, explicit) = match &self.config {
            Some(path) => (path.clone(), true),
            None => match default_config_path() {
                Some(path) => (path, false),
                None => return Ok(ConfigFile::default()),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|err| {
                ClientError::Config(format!("cannot read {}: {err}", path.display()))
            }),
            Err(err) if !explicit && err.kind() == std::io::ErrorKind::NotFound => {
                Ok(ConfigFile::default())
            }
            Err(err) => Err(ClientError::Config(format!(
                "cannot read {}: {err}",
                path.display()
            ))),
        }
    }
}

fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("rje").join("config.toml"))
}
