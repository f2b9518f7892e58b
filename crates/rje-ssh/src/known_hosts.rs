//! Host key verification against an OpenSSH known_hosts file. A key the
//! file does not hold is refused unless the host opted in to `accept-new`;
//! a changed key is always refused. There is no accept-all.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::io::Write;

use russh::keys::known_hosts::check_known_hosts_path;
use russh::keys::{HashAlg, PublicKey};

use crate::config::{HostConfig, HostKeyPolicy};

/// Serialises check-then-record, so that two connections to a new host do
/// not both append its key.
static RECORDING: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    #[error(
        "host key of {host} ({endpoint}) is unknown: it offered {fingerprint}, which is not in \
         {path}; add the host's key there (for example with ssh-keyscan), or set \
         host_key_policy = \"accept-new\" for this host to trust it on first use"
    )]
    Unknown {
        host: String,
        endpoint: String,
        fingerprint: String,
        path: PathBuf,
    },
    #[error(
        "HOST KEY CHANGED for {host} ({endpoint}): it offered {fingerprint}, which does not \
         match line {line} of {path}; refused, as this may be a man-in-the-middle. If the \
         host was reinstalled, remove that line and connect again"
    )]
    Changed {
        host: String,
        endpoint: String,
        fingerprint: String,
        path: PathBuf,
        line: usize,
    },
    #[error("cannot check the host key of {host} against {path}: {message}")]
    Unreadable {
        host: String,
        path: PathBuf,
        message: String,
    },
}

/// How a key was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Known,
    /// Unknown until now; recorded under `accept-new`.
    Recorded,
}

/// `ED25519 key SHA256:…`, as `ssh` prints it.
pub fn describe_key(key: &PublicKey) -> String {
    use russh::keys::Algorithm;
    let kind = match key.algorithm() {
        Algorithm::Ed25519 => "ED25519".to_owned(),
        Algorithm::Ecdsa { .. } => "ECDSA".to_owned(),
        Algorithm::Rsa { .. } => "RSA".to_owned(),
        other => other.as_str().to_uppercase(),
    };
    format!("{kind} key {}", key.fingerprint(HashAlg::Sha256))
}

/// The name under which known_hosts records an endpoint.
pub fn endpoint(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    }
}

/// Checks `key`, offered by `host`, and records it when the host's policy
/// allows trusting a new key.
pub fn verify(host: &HostConfig, key: &PublicKey) -> Result<Verdict, HostKeyError> {
    verify_in(host, key, &host.known_hosts)
}

fn verify_in(host: &HostConfig, key: &PublicKey, path: &Path) -> Result<Verdict, HostKeyError> {
    let _recording = RECORDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let unreadable = |message: String| HostKeyError::Unreadable {
        host: host.name.clone(),
        path: path.to_owned(),
        message,
    };
    match check_known_hosts_path(&host.address, host.port, key, path) {
        Ok(true) => Ok(Verdict::Known),
        Ok(false) if host.host_key_policy == HostKeyPolicy::AcceptNew => {
            record(&endpoint(&host.address, host.port), key, path)
                .map_err(|err| unreadable(format!("recording the new key failed: {err}")))?;
            tracing::warn!(
                host = %host.name,
                key = %describe_key(key),
                path = %path.display(),
                "trusted a new host key on first use (accept-new) and recorded it"
            );
            Ok(Verdict::Recorded)
        }
        Ok(false) => Err(HostKeyError::Unknown {
            host: host.name.clone(),
            endpoint: endpoint(&host.address, host.port),
            fingerprint: describe_key(key),
            path: path.to_owned(),
        }),
        Err(russh::keys::Error::KeyChanged { line }) => Err(HostKeyError::Changed {
            host: host.name.clone(),
            endpoint: endpoint(&host.address, host.port),
            fingerprint: describe_key(key),
            path: path.to_owned(),
            line,
        }),
        Err(err) => Err(unreadable(err.to_string())),
    }
}

/// Appends `endpoint key` as one line, as `ssh` does for a new host.
fn record(endpoint: &str, key: &PublicKey, path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let existing = std::fs::read(path).unwrap_or_default();
    let openssh = key
        .to_openssh()
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    let mut line = String::new();
    if existing.last().is_some_and(|&b| b != b'\n') {
        line.push('\n');
    }
    line.push_str(&format!("{endpoint} {openssh}\n"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn host(path: &Path, policy: HostKeyPolicy) -> HostConfig {
        HostConfig {
            name: "web-1".into(),
            address: "10.0.0.5".into(),
            port: 2222,
            user: "deploy".into(),
            key: None,
            passphrase: None,
            agent: None,
            known_hosts: path.to_owned(),
            host_key_policy: policy,
            max_concurrent_jobs: 1,
            max_sessions: 1,
            labels: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            keepalive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            durable: true,
            state_dir: crate::config::DEFAULT_REMOTE_STATE_DIR.into(),
        }
    }

    const KEYS: [&str; 2] = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRiNNXQtAwcGgXmrJYDR5Nky6v89gJlTWSWs6HbkoCL",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAKSDeewByciF4gBfjYg0MG82B9dL9v2UkEv7NOxTHSI",
    ];

    fn key(n: usize) -> PublicKey {
        PublicKey::from_openssh(KEYS[n]).unwrap()
    }

    #[test]
    fn strict_refuses_an_unknown_key_naming_host_and_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let key = key(0);
        let err = verify(&host(&path, HostKeyPolicy::Strict), &key).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("web-1"), "{message}");
        assert!(message.contains("[10.0.0.5]:2222"), "{message}");
        assert!(
            message.contains(&key.fingerprint(HashAlg::Sha256).to_string()),
            "{message}"
        );
        assert!(message.contains("ED25519 key SHA256:"), "{message}");
        assert!(!path.exists(), "strict must not write known_hosts");
    }

    #[test]
    fn accept_new_records_once_then_refuses_a_changed_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh").join("known_hosts");
        let config = host(&path, HostKeyPolicy::AcceptNew);
        let key = key(0);
        assert_eq!(verify(&config, &key), Ok(Verdict::Recorded));
        assert_eq!(verify(&config, &key), Ok(Verdict::Known));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("[10.0.0.5]:2222 ssh-ed25519 "), "{text}");

        let other = self::key(1);
        let err = verify(&config, &other).unwrap_err();
        assert!(
            matches!(err, HostKeyError::Changed { line: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("HOST KEY CHANGED for web-1"));
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(after, text, "a changed key is never recorded");
    }
}
