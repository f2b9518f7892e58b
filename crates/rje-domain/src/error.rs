//! Validation errors: every rejected field named, all at once.

use serde::{Deserialize, Serialize};

/// One rejected field: the API answers with one of these per bad field, so a
/// client can point at exactly what to fix.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Input that breaks a rule. Always carries at least one [`FieldError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {}", summary(.details))]
pub struct ValidationError {
    pub details: Vec<FieldError>,
}

fn summary(details: &[FieldError]) -> String {
    details
        .iter()
        .map(|d| format!("{}: {}", d.field, d.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            details: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        }
    }
}

/// Collects field errors so that a request learns about all its mistakes at
/// once instead of one per round trip.
#[derive(Default)]
pub(crate) struct Collector {
    details: Vec<FieldError>,
}

impl Collector {
    pub(crate) fn push(&mut self, field: &str, message: impl Into<String>) {
        self.details.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Keeps the value of a field check, or records its error.
    pub(crate) fn take<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }

    /// Whether `field` has an error already.
    pub(crate) fn has(&self, field: &str) -> bool {
        self.details.iter().any(|d| d.field == field)
    }

    pub(crate) fn finish(self) -> Result<(), ValidationError> {
        if self.details.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                details: self.details,
            })
        }
    }
}
