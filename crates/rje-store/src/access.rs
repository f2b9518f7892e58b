//! The store's face for access control: API tokens (kept by the hash of
//! their secret, never the secret) and the audit trail of every change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{AuditEntry, NewToken, Token};
use sha2::{Digest, Sha256};

use crate::StoreError;

pub use rje_domain::{AuditQuery, MAX_AUDIT_PAGE};

/// The most audit entries one append may hold: one statement's binds stay
/// well within SQLite's and PostgreSQL's limits.
pub const MAX_AUDIT_BATCH: usize = 256;

/// A page of the audit trail, and how many entries match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub total_count: u64,
}

/// Tokens and the audit trail, shared by every API process of a
/// deployment through the store.
#[async_trait]
pub trait Access: Send + Sync + 'static {
    /// Keeps `token` by `secret_hash` (see [`hash_secret`]);
    /// [`StoreError::NameTaken`] when its name is, by a live token or a
    /// revoked one: a name names one token for ever, so that the jobs and
    /// the audit entries of a revoked token never pass to a new one.
    async fn create_token(&self, token: &NewToken, secret_hash: &str) -> Result<Token, StoreError>;

    /// Whether a token was ever made here, revoked ones included: once one
    /// was, the API asks for tokens.
    async fn has_tokens(&self) -> Result<bool, StoreError>;

    /// Every token not revoked, by name.
    async fn tokens(&self) -> Result<Vec<Token>, StoreError>;

    /// The token whose secret hashes to `secret_hash`, if any; its use is
    /// recorded (`last_used_at`, at most once a minute, so that a busy
    /// client costs no write per request).
    async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<Token>, StoreError>;

    /// Revokes the token `name` at once; [`StoreError::NotFound`] when
    /// there is none, or it is revoked already. The token is kept, unusable,
    /// so that its name stays its own.
    async fn revoke_token(&self, name: &str) -> Result<(), StoreError>;

    /// Appends entries to the audit trail, in their order, in one write:
    /// all or none. At most [`MAX_AUDIT_BATCH`] at once.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;

    /// A page of the audit trail, newest first.
    async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// Removes the entries older than `before`; how many.
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// A new token's secret: 256 random bits, hex, after a prefix that says
/// what it is (and that secret scanners can look for).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("rje_{}", hex(&bytes))
}

/// Whether `presented` could be a secret [`new_secret`] made: only such a
/// one is worth looking up, so that a flood of made-up tokens costs the
/// store nothing.
pub fn is_secret_shaped(presented: &str) -> bool {
    presented.strip_prefix("rje_").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// What the store keeps of a secret: its SHA-256. The secret has 256
/// random bits, so no stretching is needed, and a lookup by the hash
/// compares in the database, never a secret in memory.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `last_used_at` is written again only after this long.
const USE_RECORDED_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Whether a token last used at `last_used_at` is worth a write for its
/// use at `at`: at most once a minute, so that a busy client costs no write
/// per request.
pub(crate) fn use_worth_recording(last_used_at: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    last_used_at.is_none_or(|used| at - used >= USE_RECORDED_EVERY)
}

/// An audit row, as both stores read it, as the trail's entry.
pub(crate) struct AuditRow {
    pub at: DateTime<Utc>,
    pub token: Option<String>,
    pub client: String,
    pub method: String,
    pub route: String,
    pub target: Option<String>,
    pub status: i64,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            status: u16::try_from(row.status)
                .map_err(|_| crate::rows::corrupt("audit status", row.status))?,
            at: row.at,
            token: row.token,
            client: row.client,
            method: row.method,
            route: row.route,
            target: row.target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_only_their_hash_is_kept() {
        let (one, two) = (new_secret(), new_secret());
        assert_ne!(one, two);
        assert!(one.starts_with("rje_") && one.len() == 4 + 64);
        assert!(is_secret_shaped(&one));
        assert!(!is_secret_shaped(&one[..one.len() - 1]));
        assert!(!is_secret_shaped(&one.to_uppercase()));
        assert!(!is_secret_shaped("root-secret"));
        assert_eq!(hash_secret(&one), hash_secret(&one));
        assert_ne!(hash_secret(&one), hash_secret(&two));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!hash_secret(&one).contains(&one[4..]));
    }
}
