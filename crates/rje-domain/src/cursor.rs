//! Keyset paging of the job list: a cursor names the last job of a page
//! by its place in the list's ordering, so the next page starts just past
//! it through an index, whatever the page's depth. An `offset` makes the
//! store step over every row before the page.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::job::Job;
use crate::list::{OrderField, Ordering};

/// A job's place in a list's ordering: the value of the sorted column
/// (microseconds for a time, the rank for a priority; `None` for a time
/// not reached yet, which sorts last) and the store's row key, which
/// breaks ties so that pages never overlap or skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub value: Option<i64>,
    pub pk: i64,
}

impl SortKey {
    /// Where `job`, stored under `pk`, sorts by `field`.
    pub fn of(job: &Job, pk: i64, field: OrderField) -> Self {
        let value = match field {
            OrderField::CreatedAt => Some(job.created_at.timestamp_micros()),
            OrderField::Priority => Some(job.priority.rank()),
            OrderField::StartedAt => job.started_at.map(|at| at.timestamp_micros()),
            OrderField::CompletedAt => job.completed_at.map(|at| at.timestamp_micros()),
        };
        SortKey { value, pk }
    }
}

/// Where the next page of a list starts, for one ordering. Opaque to
/// clients: its text is versioned so that a later form can refuse an
/// older one clearly instead of misreading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub ordering: Ordering,
    pub after: SortKey,
}

/// The version mark at the start of a cursor's text.
const VERSION: &str = "1";

impl ListCursor {
    /// The cursor's text, safe in a URL as it is.
    pub fn encode(&self) -> String {
        let value = self
            .after
            .value
            .map_or_else(String::new, |value| value.to_string());
        let text = format!(
            "{VERSION}:{}:{value}:{}",
            self.ordering.as_text(),
            self.after.pk
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    /// Reads a cursor given back by a client; anything this server did not
    /// write is refused, with one message for every way it can be wrong.
    pub fn decode(text: &str) -> Result<Self, String> {
        const BAD: &str = "must be the `next` of an earlier page of this list";
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| BAD.to_owned())?;
        let text = String::from_utf8(bytes).map_err(|_| BAD.to_owned())?;
        let mut parts = text.split(':');
        let (Some(VERSION), Some(ordering), Some(value), Some(pk), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(BAD.to_owned());
        };
        let ordering = Ordering::parse(ordering).map_err(|_| BAD.to_owned())?;
        let value = match value {
            "" => None,
            number => Some(strict_i64(number).ok_or_else(|| BAD.to_owned())?),
        };
        match (ordering.field, value) {
            // A created_at or a priority is never missing.
            (OrderField::CreatedAt | OrderField::Priority, None) => return Err(BAD.to_owned()),
            // A time is one every store can hold: from year 1 to 9999.
            (OrderField::Priority, Some(_)) | (_, None) => {}
            (_, Some(micros)) => {
                if !is_storable_time(micros) {
                    return Err(BAD.to_owned());
                }
            }
        }
        let pk = strict_i64(pk).ok_or_else(|| BAD.to_owned())?;
        Ok(ListCursor {
            ordering,
            after: SortKey { value, pk },
        })
    }
}

fn is_storable_time(micros: i64) -> bool {
    use chrono::Datelike as _;
    chrono::DateTime::from_timestamp_micros(micros)
        .is_some_and(|time| (1..=9999).contains(&time.year()))
}

/// A number as this module writes one: digits, an optional leading `-`,
/// no `+`, no spaces, so that each cursor has exactly one text.
fn strict_i64(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: i64 = text.parse().ok()?;
    (number.to_string() == text).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(text: &str, value: Option<i64>, pk: i64) -> ListCursor {
        ListCursor {
            ordering: Ordering::parse(text).unwrap(),
            after: SortKey { value, pk },
        }
    }

    #[test]
    fn every_ordering_round_trips() {
        for (ordering, value) in [
            ("-created_at", Some(1_764_950_400_123_456)),
            ("created_at", Some(0)),
            ("-priority", Some(2)),
            ("priority", Some(0)),
            ("-started_at", None),
            ("started_at", Some(-5)),
            ("-completed_at", Some(17)),
            ("completed_at", None),
        ] {
            let cursor = cursor(ordering, value, 42);
            let text = cursor.encode();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text} is URL-safe"
            );
            assert_eq!(ListCursor::decode(&text), Ok(cursor), "{ordering}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let encoded = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for text in [
            String::new(),
            "not base64!".to_owned(),
            encoded("2:-created_at:1:2"),
            encoded("1:-created_at:1"),
            encoded("1:-created_at:1:2:3"),
            encoded("1:name:1:2"),
            encoded("1:-created_at::2"),
            encoded("1:priority::2"),
            encoded("1:-created_at:+1:2"),
            encoded("1:-created_at:01:2"),
            encoded("1:-created_at:1: 2"),
            encoded("1:-created_at:1:99999999999999999999"),
            encoded("1:-created_at:1:-"),
            encoded("1:-created_at:-9223372036854775808:1"),
            encoded("1:started_at:9223372036854775807:1"),
        ] {
            assert!(ListCursor::decode(&text).is_err(), "{text:?}");
        }
    }
}
