use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// Liveness: the process answers. Open without a token, so that load
/// balancers and probes need no secret; it reveals nothing.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
