//! Submissions that are safe to retry: a client names a submission with
//! an `Idempotency-Key`, and a repeat of it answers the job it made.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ValidationError;

/// A client's name for one submission: 1 to 255 printable ASCII
/// characters (a header value that survives every proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 255;
    /// The header that carries it.
    pub const HEADER: &'static str = "Idempotency-Key";

    pub fn parse(value: &[u8]) -> Result<Self, ValidationError> {
        let printable = value.iter().all(|byte| (0x20..=0x7e).contains(byte));
        match std::str::from_utf8(value) {
            Ok(text) if printable && (1..=Self::MAX_CHARS).contains(&text.len()) => {
                Ok(Self(text.to_owned()))
            }
            _ => Err(ValidationError::field(
                Self::HEADER,
                format!(
                    "must be 1 to {} printable ASCII characters",
                    Self::MAX_CHARS
                ),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A submission to make at most once: its key, whose key it is (a
/// token's name; empty without tokens: keys are per token), the
/// fingerprint of what was asked, and how old a key may be and still hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Once {
    pub key: IdempotencyKey,
    pub owner: String,
    /// Tells a repeat of the same request from another under the same key.
    pub fingerprint: String,
    /// Keys made before this have expired: the key makes a new job.
    pub since: DateTime<Utc>,
}

impl Once {
    /// The submit of `body` under `key` by `owner` (a token's name; `None`
    /// without tokens), made `at`, with keys holding for `window`. The same
    /// request is the same JSON body, the order of its keys aside: its
    /// fingerprint is the SHA-256 of the body written with sorted keys.
    pub fn of(
        key: IdempotencyKey,
        owner: Option<&str>,
        body: &Value,
        at: DateTime<Utc>,
        window: Duration,
    ) -> Self {
        // A `Value`'s objects are sorted maps: one body, one text.
        let canonical = body.to_string();
        let digest = Sha256::digest(canonical.as_bytes());
        let since = TimeDelta::from_std(window)
            .ok()
            .and_then(|window| at.checked_sub_signed(window))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        Self {
            key,
            owner: owner.unwrap_or_default().to_owned(),
            fingerprint: digest.iter().map(|byte| format!("{byte:02x}")).collect(),
            since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_is_the_same_body_whatever_its_keys_order() {
        let key = || IdempotencyKey::parse(b"k").unwrap();
        let at = Utc::now();
        let day = Duration::from_secs(24 * 3600);
        let one: Value =
            serde_json::from_str(r#"{"command": "true", "priority": "High"}"#).unwrap();
        let other: Value =
            serde_json::from_str(r#"{"priority": "High", "command": "true"}"#).unwrap();
        let first = Once::of(key(), Some("ci"), &one, at, day);
        assert_eq!(first, Once::of(key(), Some("ci"), &other, at, day));
        assert_ne!(
            first.fingerprint,
            Once::of(
                key(),
                Some("ci"),
                &serde_json::json!({"command": "false"}),
                at,
                day
            )
            .fingerprint
        );
        assert_eq!(first.since, at - TimeDelta::hours(24));
        assert_eq!(Once::of(key(), None, &one, at, day).owner, "");
        // A window past any date keeps every key, and never panics.
        let forever = Once::of(key(), None, &one, at, Duration::MAX);
        assert_eq!(forever.since, DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn a_key_is_a_short_printable_header_value() {
        assert_eq!(
            IdempotencyKey::parse(b"abc-123 x").unwrap().as_str(),
            "abc-123 x"
        );
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        for bad in [
            &b""[..],
            &[b'k'; 256],
            b"a\tb",
            b"a\nb",
            "é".as_bytes(),
            b"\x7f",
        ] {
            let err = IdempotencyKey::parse(bad).unwrap_err();
            assert_eq!(err.details[0].field, "Idempotency-Key", "{bad:?}");
        }
    }
}
