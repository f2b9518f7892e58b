//! Who a token is (`GET /whoami/`), and the tokens themselves: made,
//! listed and revoked by an admin, kept in the store for every process.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rje_domain::{NewToken, is_valid_host_name};
use rje_proto::{ErrorBody, TokenCreated, TokenListResponse, TokenRequest, WhoAmIResponse};
use rje_store::{StoreError, hash_secret, new_secret};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditTarget;
use crate::extract::{Caller, JsonObject};
use crate::openapi::{Guarded, WithBody};
use crate::{ApiError, AppState};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

/// Who the request's token makes it: its name, role and scope.
#[utoipa::path(
    get,
    path = "/whoami",
    operation_id = "whoami",
    tag = "access",
    responses((status = 200, description = "The token's principal", body = WhoAmIResponse), Guarded),
    security(("bearer" = []))
)]
async fn whoami(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<WhoAmIResponse>, ApiError> {
    let auth = !state.authentication.is_open(&*state.access).await?;
    Ok(Json(WhoAmIResponse {
        name: caller.name,
        role: caller.role,
        hosts: caller.scope.hosts,
        labels: caller.scope.labels,
        auth,
    }))
}

/// Makes a token. Its secret is in this answer only: the store keeps its
/// SHA-256.
#[utoipa::path(
    post,
    path = "/tokens",
    operation_id = "create_token",
    tag = "access",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Made; `secret` is shown this once", body = TokenCreated),
        (status = 409, description = "The name is taken", body = ErrorBody),
        Guarded,
        WithBody,
    ),
    security(("bearer" = []))
)]
async fn create_token(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let new_token = NewToken::parse(&body, &state.settings.hosts)?;
    let secret = new_secret();
    let token = state
        .access
        .create_token(&new_token, &hash_secret(&secret))
        .await?;
    state.authentication.require_tokens();
    let mut response = (
        StatusCode::CREATED,
        Json(TokenCreated {
            token: token.clone(),
            secret,
        }),
    )
        .into_response();
    response.extensions_mut().insert(AuditTarget(token.name));
    Ok(response)
}

/// Every token: names, roles, scopes and when each was made and last
/// used; never a secret.
#[utoipa::path(
    get,
    path = "/tokens",
    operation_id = "list_tokens",
    tag = "access",
    responses((status = 200, description = "The tokens", body = TokenListResponse), Guarded),
    security(("bearer" = []))
)]
async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenListResponse>, ApiError> {
    Ok(Json(TokenListResponse {
        tokens: state.access.tokens().await?,
    }))
}

/// A token's name in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by the document; the handler takes the string.
struct TokenNameParam {
    /// The token's name.
    name: String,
}

/// Revokes a token: every process refuses it from the next request.
#[utoipa::path(
    delete,
    path = "/tokens/{name}",
    operation_id = "revoke_token",
    tag = "access",
    params(TokenNameParam),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = ErrorBody),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn revoke_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !is_valid_host_name(&name) {
        return Err(ApiError::TokenNotFound(name));
    }
    match state.access.revoke_token(&name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::TokenNotFound(name)),
        Err(err) => Err(err.into()),
    }
}
