//! JSON parsing that refuses a duplicated key and an integer it cannot keep.
//! serde_json keeps the last of two equal keys without a word; a client
//! that sends `"priority"` twice has a bug, and which value it meant is a
//! guess. It also rounds an integer past 64 bits to the nearest double,
//! so `18446744073709551617` would be stored as another number.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not acceptable JSON.
#[derive(Debug)]
pub(crate) enum StrictJsonError {
    /// A key appears twice in one object; its path from the top
    /// (`parameters.env.HOME`).
    Duplicate(String),
    /// An integer outside the 64-bit range, which could only be kept
    /// rounded; its path.
    Inexact(String),
    Syntax(serde_json::Error),
}

/// Parses `bytes` as JSON, refusing an object with a key twice.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let refused = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let seed = Strict {
        path: String::new(),
        refused: &refused,
    };
    let result = seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match (result, refused.into_inner()) {
        (_, Some(refusal)) => Err(refusal),
        (Ok(value), None) => Ok(value),
        (Err(err), None) => Err(StrictJsonError::Syntax(err)),
    }
}

struct Strict<'a> {
    /// Where this value sits, for naming a refusal.
    path: String,
    /// Why the document is refused, beyond its syntax.
    refused: &'a RefCell<Option<StrictJsonError>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json hands over an integer past u64 or below i64 as a
        // double: rounded. A double that large is always integral, so a
        // written `1e30` is refused too: nothing rje takes needs one, and
        // which of the two a client meant cannot be told apart here.
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        const MINUS_TWO_POW_63: f64 = -9_223_372_036_854_775_808.0;
        // -2^63 itself arrives as an i64; as a double it is a rounding.
        let kept_exactly = v > MINUS_TWO_POW_63 && v < TWO_POW_64;
        if v.fract() == 0.0 && !kept_exactly {
            *self.refused.borrow_mut() = Some(StrictJsonError::Inexact(self.path));
            return Err(E::custom("integer out of range"));
        }
        // JSON has no NaN or infinity, so every parsed float is finite.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, items.len()),
            refused: self.refused,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if object.contains_key(&key) {
                *self.refused.borrow_mut() = Some(StrictJsonError::Duplicate(path));
                return Err(A::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(Strict {
                path,
                refused: self.refused,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_serde_json_parses() {
        let text = br#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        let strict = parse(text).unwrap();
        assert_eq!(strict, serde_json::from_slice::<Value>(text).unwrap());
    }

    #[test]
    fn a_duplicate_is_named_by_its_path() {
        for (text, path) in [
            (r#"{"command": "a", "command": "b"}"#, "command"),
            (
                r#"{"parameters": {"env": {"A": "1", "A": "2"}}}"#,
                "parameters.env.A",
            ),
            (r#"{"x": [{"k": 1}, {"k": 1, "k": 2}]}"#, "x[1].k"),
        ] {
            match parse(text.as_bytes()) {
                Err(StrictJsonError::Duplicate(found)) => assert_eq!(found, path, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_integer_past_64_bits_is_refused_by_its_path() {
        for (text, path) in [
            (
                r#"{"parameters": {"n": 18446744073709551616}}"#,
                "parameters.n",
            ),
            (r#"{"x": [1, -9223372036854775809]}"#, "x[1]"),
            (r#"{"big": 1e30}"#, "big"),
            (r#"{"big": 1.5e300}"#, "big"),
        ] {
            match parse(text.as_bytes()) {
                Err(StrictJsonError::Inexact(found)) => assert_eq!(found, path, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in [
            r#"{"n": 18446744073709551615}"#,
            r#"{"n": -9223372036854775808}"#,
            r#"{"n": 1e-300}"#,
            r#"{"n": 0.25}"#,
        ] {
            assert!(parse(text.as_bytes()).is_ok(), "{text}");
        }
    }

    #[test]
    fn syntax_errors_and_trailing_bytes_are_refused() {
        for text in ["{", "{} {}", "[1,]", ""] {
            assert!(
                matches!(parse(text.as_bytes()), Err(StrictJsonError::Syntax(_))),
                "{text}"
            );
        }
    }
}
