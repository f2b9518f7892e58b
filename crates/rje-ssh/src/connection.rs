//! One authenticated SSH connection: TCP, key exchange with the host key
//! checked, then public-key authentication with the configured key and,
//! when `SSH_AUTH_SOCK` is set, the agent's keys.

use std::sync::{Arc, Mutex};

use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate, load_secret_key};

use crate::config::{HostConfig, Passphrase};
use crate::error::SshError;
use crate::known_hosts::{self, HostKeyError};

/// Unanswered keepalives after which a connection counts as dead.
const KEEPALIVE_MAX: usize = 3;

/// Checks the host key during key exchange and keeps the reason for a
/// refusal, which russh itself reduces to "unknown key".
pub struct Verifier {
    host: Arc<HostConfig>,
    refusal: Arc<Mutex<Option<HostKeyError>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // A host certificate is checked by the key it certifies; rje
            // does not trust certificate authorities.
            PublicKeyOrCertificate::Certificate(certificate) => {
                PublicKey::new(certificate.public_key().clone(), "")
            }
        };
        match known_hosts::verify(&self.host, &key) {
            Ok(_) => Ok(true),
            Err(refusal) => {
                *self
                    .refusal
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(refusal);
                Ok(false)
            }
        }
    }
}

pub type SshHandle = Handle<Verifier>;

fn client_config(host: &HostConfig) -> client::Config {
    client::Config {
        keepalive_interval: Some(host.keepalive),
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    }
}

/// Opens and authenticates a connection to `host`.
pub async fn connect(host: &Arc<HostConfig>) -> Result<SshHandle, SshError> {
    let refusal = Arc::new(Mutex::new(None));
    let verifier = Verifier {
        host: host.clone(),
        refusal: refusal.clone(),
    };
    let config = Arc::new(client_config(host));
    let target = (host.address.as_str(), host.port);
    let connected = tokio::time::timeout(
        host.connect_timeout,
        client::connect(config, target, verifier),
    )
    .await;
    let mut handle = match connected {
        Err(_) => {
            return Err(SshError::Connect {
                host: host.name.clone(),
                endpoint: format!("{}:{}", host.address, host.port),
                message: format!("no answer within {:?}", host.connect_timeout),
            });
        }
        Ok(Ok(handle)) => handle,
        Ok(Err(err)) => {
            let refused = refusal
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            return Err(match refused {
                Some(refusal) => SshError::HostKey(refusal),
                None => SshError::Connect {
                    host: host.name.clone(),
                    endpoint: format!("{}:{}", host.address, host.port),
                    message: describe_russh(&err),
                },
            });
        }
    };
    let authenticated = tokio::time::timeout(host.connect_timeout, authenticate(&mut handle, host))
        .await
        .unwrap_or_else(|_| {
            Err(SshError::Auth {
                host: host.name.clone(),
                user: host.user.clone(),
                message: format!("no answer within {:?}", host.connect_timeout),
            })
        });
    if let Err(err) = authenticated {
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        return Err(err);
    }
    Ok(handle)
}

/// russh's errors, in words an operator can act on.
pub fn describe_russh(err: &russh::Error) -> String {
    match err {
        russh::Error::IO(io) => io.to_string(),
        russh::Error::Disconnect | russh::Error::HUP => "the host closed the connection".into(),
        other => other.to_string(),
    }
}

async fn authenticate(handle: &mut SshHandle, host: &HostConfig) -> Result<(), SshError> {
    let auth_error = |message: String| SshError::Auth {
        host: host.name.clone(),
        user: host.user.clone(),
        message,
    };
    let session_error = |err: russh::Error| auth_error(describe_russh(&err));
    let mut tried = Vec::new();

    if let Some(path) = &host.key {
        let passphrase = read_passphrase(host)?;
        let key = load_secret_key(path, passphrase.as_deref()).map_err(|err| SshError::Key {
            path: path.clone(),
            message: match err {
                russh::keys::Error::KeyIsEncrypted => {
                    "the key is encrypted: give its passphrase (key_passphrase_env or \
                     key_passphrase_file, or RJE_SSH_KEY_PASSPHRASE)"
                        .into()
                }
                other => other.to_string(),
            },
        })?;
        let described = format!(
            "{} ({})",
            path.display(),
            known_hosts::describe_key(key.public_key())
        );
        let hash = rsa_hash(handle).await.map_err(session_error)?;
        let result = handle
            .authenticate_publickey(
                host.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(session_error)?;
        if matches!(result, AuthResult::Success) {
            return Ok(());
        }
        tried.push(described);
    }

    if let Some(socket) = &host.agent {
        match AgentClient::connect_uds(socket).await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for identity in identities {
                    let public = identity.public_key().into_owned();
                    let hash = rsa_hash(handle).await.map_err(session_error)?;
                    let result = handle
                        .authenticate_publickey_with(
                            host.user.clone(),
                            public.clone(),
                            hash,
                            &mut agent,
                        )
                        .await;
                    match result {
                        Ok(AuthResult::Success) => return Ok(()),
                        Ok(AuthResult::Failure { .. }) => {}
                        Err(err) => {
                            tracing::debug!(%err, "the agent could not sign");
                        }
                    }
                    tried.push(format!("agent {}", known_hosts::describe_key(&public)));
                }
            }
            Err(err) => {
                tracing::warn!(%err, socket = %socket.display(), "SSH_AUTH_SOCK is set but the agent cannot be reached");
            }
        }
    }

    Err(auth_error(if tried.is_empty() {
        "no key to offer: configure a key file (RJE_SSH_KEY, or key in the hosts file) or \
         run an ssh-agent (SSH_AUTH_SOCK)"
            .into()
    } else {
        format!("the host refused every key offered: {}", tried.join(", "))
    }))
}

/// The signature hash an RSA key should use with this server (ignored for
/// other keys).
async fn rsa_hash(handle: &SshHandle) -> Result<Option<russh::keys::HashAlg>, russh::Error> {
    Ok(handle.best_supported_rsa_hash().await?.flatten())
}

fn read_passphrase(host: &HostConfig) -> Result<Option<String>, SshError> {
    match &host.passphrase {
        None => Ok(None),
        Some(Passphrase::Value(secret)) => Ok(Some(secret.expose().to_owned())),
        Some(Passphrase::File(path)) => std::fs::read_to_string(path)
            .map(|text| Some(text.lines().next().unwrap_or_default().to_owned()))
            .map_err(|err| SshError::Key {
                path: host.key.clone().unwrap_or_default(),
                message: format!("cannot read the passphrase file {}: {err}", path.display()),
            }),
    }
}
