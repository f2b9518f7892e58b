//! The body of every error answer.

use rje_domain::FieldError;
use serde::{Deserialize, Serialize};

/// `{error, details}`: what went wrong, and for a rejected request one entry
/// per bad field.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub details: Vec<FieldError>,
}
