//! The one way times go on the wire: RFC 3339 in UTC with exactly six
//! fractional digits (microseconds, the precision the stores keep), so
//! that a time reads the same in every answer and message, and a value a
//! client sends back compares equal to the stored one.
//!
//! Use as `#[serde(with = "rje_domain::wire_time")]`, or
//! `wire_time::option` for an `Option`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// A time as the API writes it: `2026-11-29T01:13:40.879467Z`.
pub fn format(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A time with the precision it has on the wire.
pub fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(at))
}

/// Any RFC 3339 time: clients need not write six digits.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    DateTime::<Utc>::deserialize(deserializer)
}

pub mod option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Times {
        #[serde(with = "super")]
        at: DateTime<Utc>,
        #[serde(with = "option")]
        maybe: Option<DateTime<Utc>>,
    }

    #[test]
    fn always_six_digits() {
        let whole = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let nanos = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        let json = serde_json::to_value(Times {
            at: whole,
            maybe: Some(nanos),
        })
        .unwrap();
        assert_eq!(json["at"], "2027-01-15T08:00:00.000000Z");
        assert_eq!(json["maybe"], "2027-01-15T08:00:00.123456Z");
        let none = serde_json::to_value(Times {
            at: whole,
            maybe: None,
        })
        .unwrap();
        assert!(none["maybe"].is_null());
    }
}
