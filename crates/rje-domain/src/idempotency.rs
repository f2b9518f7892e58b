//! Submissions that are safe to retry: a client names a submission with
//! an `Idempotency-Key`, and a repeat of it answers the job it made.

use chrono::{DateTime, Utc};

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

#[cfg(test)]
mod tests {
    use super::*;

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
