//! The audit trail: every request that changes something, once it got
//! past authentication, is appended to the store with who asked, from
//! where, what it touched and how it ended (refusals included). And
//! `GET /audit/`, an admin's page of it.

use axum::Json;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use rje_domain::{AuditEntry, AuditQuery, Principal};
use rje_proto::AuditResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::QueryPairs;
use crate::openapi::Guarded;
use crate::rate_limit::ClientKeys;
use crate::{ApiError, AppState};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit))
}

/// What a handler touched that its path does not name (a new job's id, a
/// new token's name), put in its response for the trail.
#[derive(Clone)]
pub(crate) struct AuditTarget(pub String);

/// Records a change once it is answered: its entry is written before the
/// answer leaves, so that a client that saw its answer finds the entry.
/// A write that fails is logged and counted, and does not undo the change.
pub(crate) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let changes = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let principal = request.extensions().get::<Principal>().cloned();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let (Some(principal), Some(route), true) = (principal, route, changes) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let named = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| params.iter().next().map(|(_, value)| value.to_owned()));
    let request = Request::from_parts(parts, body);
    let client = ClientKeys::new(&[], &state.settings.trusted_proxies)
        .client_address(&request)
        .to_string();
    let method = request.method().to_string();
    let response = next.run(request).await;
    let target = response
        .extensions()
        .get::<AuditTarget>()
        .map(|target| target.0.clone())
        .or(named);
    let entry = AuditEntry {
        at: Utc::now(),
        token: principal.name,
        client,
        method,
        route: route.as_str().to_owned(),
        target,
        status: response.status().as_u16(),
    };
    let written = state.access.append_audit(&entry).await;
    if let Err(err) = &written {
        tracing::error!(%err, route = %entry.route, "could not record a change in the audit trail");
    }
    crate::metrics::audit_written(written.is_ok());
    response
}

/// The audit trail's query parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document; the handler parses the pairs.
struct AuditParams {
    /// Entries per page.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Entries to skip.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    offset: Option<u64>,
    /// Only this token's entries (its name).
    #[param(max_length = 200, pattern = "^[^\\x00]*$")]
    token: Option<String>,
    /// Only this route's (its pattern, as entries show it: `/jobs/{id}/cancel`).
    #[param(max_length = 200, pattern = "^[^\\x00]*$")]
    route: Option<String>,
}

/// The audit trail, newest first: every change asked of the API, who
/// asked and how it ended.
#[utoipa::path(
    get,
    path = "/audit",
    operation_id = "audit_trail",
    tag = "access",
    params(AuditParams),
    responses((status = 200, description = "A page of the trail", body = AuditResponse), Guarded),
    security(("bearer" = []))
)]
async fn audit(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Json<AuditResponse>, ApiError> {
    let query = AuditQuery::parse(query.iter())?;
    let page = state.access.audit(&query).await?;
    Ok(Json(AuditResponse {
        entries: page.entries,
        total_count: page.total_count,
    }))
}
