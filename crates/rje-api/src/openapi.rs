//! The OpenAPI 3.1 document, made from the handlers' own annotations and
//! the wire types (`GET /openapi.json`), and the interactive page that
//! reads it (`GET /docs/`), served from assets built into the binary.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rje_proto::{ErrorBody, JobResponse};
use serde_json::{Value, json};
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::Config;

use rje_domain::Principal;

use crate::auth::presented_token;
use crate::{ApiSettings, AppState};

/// What every route that takes a token may answer besides its own.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Read by the document only.
pub(crate) enum Guarded {
    /// A query parameter or the body breaks a rule; `details` names each
    /// bad field. Also two `Authorization` headers.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Tokens are on and none valid was presented (`WWW-Authenticate:
    /// Bearer`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Past the rate limit; `Retry-After` says when to try again.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    TooManyRequests(ErrorBody),
    /// The token's role or scope does not cover the request, or (for a
    /// run token) the job is another's: `details` names what is missing
    /// (`role`, `host` or `submitted_by`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The store cannot be reached; try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What a route with a JSON body may answer besides [`Guarded`].
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Read by the document only.
pub(crate) enum WithBody {
    /// The body did not arrive within `RJE_BODY_TIMEOUT_SECONDS`.
    #[response(status = 408)]
    RequestTimeout(ErrorBody),
    /// The body is larger than `RJE_MAX_BODY_BYTES`.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
}

/// What an edit answers (PUT and PATCH alike) besides [`Guarded`] and
/// [`WithBody`].
#[derive(utoipa::IntoResponses)]
// Never built, so its variants' sizes do not matter.
#[allow(dead_code, clippy::large_enum_variant)] // Read by the document only.
pub(crate) enum EditAnswers {
    /// The edited job.
    #[response(status = 200)]
    Edited(JobResponse),
    /// No such job.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The job is not Queued (the detail names its status).
    #[response(status = 409)]
    NotQueued(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rje",
        description = "Remote Job Executor: queue shell commands, run them here or over SSH, \
            stream their output.\n\nEvery path also answers with a trailing slash (`/jobs/`, as \
            the original API wrote them). Times are RFC 3339 UTC with six fractional digits.\n\n\
            **WebSockets** (OpenAPI cannot describe their messages): `GET /ws/jobs/{id}/` \
            upgrades to a stream of a job's output and status messages (`WsMessage`): the \
            stored output from `?since=SEQ` first, then live output, then the final status, \
            then a normal close. `GET /ws/jobs/` streams every job's status changes \
            (`EventMessage`): `ready` once subscribed, then `status` events, and `gap` when \
            the client fell behind. `GET /ws/runs/{id}/` streams a run (`RunMessage`): a `job` \
            message per job and a `run` message first, then each job's status changes, its \
            output tagged with its host with `?output=true`, and a `run` message whenever the \
            counts change; the last is the run's final status, then a normal close. Browsers \
            pass the token as `?token=`.\n\n\
            **Access**: a token has a role (`read`: GET routes and WebSockets; `run`: also \
            submit, and edit and cancel its own jobs; `admin`: everything, tokens and the \
            audit trail too) and may be limited to some hosts. A request outside them is a 403 \
            whose `details` name what is missing. `RJE_API_TOKENS` tokens are admins.",
        license(name = "MIT")
    ),
    modifiers(&BearerAuth),
    components(schemas(
        rje_proto::WsMessage,
        rje_proto::EventMessage,
        rje_proto::RunMessage,
        rje_proto::SubmitRequest,
        rje_proto::EditRequest
    )),
    tags(
        (name = "jobs", description = "Submit, list, edit, cancel, run again, delete and prune jobs; read their output"),
        (name = "schedules", description = "Jobs fired by a cron expression: made, read, edited, paused, resumed, deleted"),
        (name = "runs", description = "One command on many hosts at once, one job per host: started, read, cancelled, run again over the hosts that did not succeed"),
        (name = "service", description = "Probes, workers, hosts and metrics"),
        (name = "live", description = "WebSocket streams (see the description above)"),
        (name = "access", description = "Who a token is, the tokens (admin), the audit trail (admin)")
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /openapi.json` and the docs page, for `document` as this server
/// runs it: its hosts and limits.
pub(crate) fn router(document: Document, settings: &ApiSettings) -> Router<AppState> {
    let described = |name_hosts| {
        let mut json = serde_json::to_value(&document).unwrap_or_default();
        fit_to_server(&mut json, settings, name_hosts);
        Arc::new(json)
    };
    // With tokens on, the document anyone may read names no host: host
    // names tell an attacker where to go next. A token's holder gets them.
    let (full, public) = (described(true), described(false));
    let config = Arc::new(Config::from("/openapi.json"));
    Router::new()
        .route(
            "/openapi.json",
            get(move |State(state): State<AppState>, request: Request| {
                let (full, public) = (full.clone(), public.clone());
                // What the answer depends on, read before any wait: a
                // request's body cannot be held across one.
                let authenticated = request.extensions().get::<Principal>().is_some();
                let presented = presented_token(&request).ok().flatten();
                async move {
                    let json = if authenticated || entitled(&state, presented).await {
                        full
                    } else {
                        public
                    };
                    Json(json.as_ref().clone())
                }
            }),
        )
        .route(
            "/docs",
            get({
                let config = config.clone();
                move || docs_file(String::new(), config.clone())
            }),
        )
        .route(
            "/docs/{*file}",
            get(move |Path(file): Path<String>| docs_file(file, config.clone())),
        )
}

/// Whether a request that did not come through authentication (public
/// docs) may read the document with the hosts in it: one that presents a
/// valid token, or any while the server runs without tokens.
async fn entitled(state: &AppState, presented: Option<String>) -> bool {
    let auth = &state.authentication;
    let access = &*state.access;
    if let Some(secret) = presented
        && matches!(auth.principal_of(&secret, access).await, Ok(Some(_)))
    {
        return true;
    }
    matches!(auth.is_open(access).await, Ok(true))
}

/// What only the running server knows: which hosts a job may name and the
/// limits it was started with; and the links from a created job to what
/// can be done with it, which stateful clients (and fuzzers) follow.
fn fit_to_server(document: &mut Value, settings: &ApiSettings, name_hosts: bool) {
    let hosts: Vec<Value> = settings.hosts.names().map(Value::from).collect();
    let limits = &settings.limits;
    for request in [
        "SubmitRequest",
        "EditRequest",
        "ScheduleRequest",
        "ScheduleEdit",
    ] {
        let Some(properties) =
            document.pointer_mut(&format!("/components/schemas/{request}/properties"))
        else {
            continue;
        };
        if name_hosts {
            // `null` asks for the default host.
            let mut allowed = hosts.clone();
            allowed.push(Value::Null);
            properties["host"]["enum"] = Value::from(allowed);
        }
        properties["timeout"]["minimum"] = json!(limits.min_timeout_secs);
        properties["timeout"]["maximum"] = json!(limits.max_timeout_secs);
        properties["command"]["maxLength"] = json!(limits.max_command_bytes);
    }
    for request in ["SubmitRequest", "ScheduleRequest", "ScheduleEdit"] {
        if let Some(properties) =
            document.pointer_mut(&format!("/components/schemas/{request}/properties"))
        {
            properties["max_retries"]["maximum"] = json!(limits.max_retries);
        }
    }
    // A run names configured hosts, and labels some host carries.
    if let Some(properties) = document.pointer_mut("/components/schemas/RunRequest/properties") {
        properties["timeout"]["minimum"] = json!(limits.min_timeout_secs);
        properties["timeout"]["maximum"] = json!(limits.max_timeout_secs);
        properties["command"]["maxLength"] = json!(limits.max_command_bytes);
        properties["max_retries"]["maximum"] = json!(limits.max_retries);
        properties["labels"]["items"]["pattern"] = json!(r"^[A-Za-z0-9._-]{1,64}$");
        if name_hosts {
            properties["hosts"]["items"]["enum"] = Value::from(hosts.clone());
        }
    }
    // A token's name is a host's kind of name, `env-…` reserved; its
    // scope names configured hosts, and labels of a host's kind.
    if let Some(properties) = document.pointer_mut("/components/schemas/TokenRequest/properties") {
        let name = r"^[A-Za-z0-9._-]{1,64}$";
        properties["name"]["pattern"] =
            json!(r"^(?![Ee][Nn][Vv]-)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$");
        properties["labels"]["items"]["pattern"] = json!(name);
        properties["hosts"]["items"]["pattern"] = json!(name);
        for list in ["hosts", "labels"] {
            properties[list]["maxItems"] = json!(rje_domain::MAX_SCOPE_ENTRIES);
        }
        if name_hosts {
            properties["hosts"]["items"]["enum"] = Value::from(hosts.clone());
        }
    }
    for list in ["/jobs", "/jobs/list"] {
        let pointer = format!("/paths/{}/get/parameters", list.replace('/', "~1"));
        if let Some(Value::Array(parameters)) = document.pointer_mut(&pointer) {
            for parameter in parameters.iter_mut().filter(|p| p["name"] == "host") {
                if name_hosts {
                    parameter["schema"]["enum"] = Value::from(hosts.clone());
                }
            }
        }
    }
    // What a type cannot say: which names an environment variable may have.
    if let Some(env) = document.pointer_mut("/components/schemas/Parameters/properties/env") {
        let names = json!({"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"});
        let values = json!({"type": "string", "pattern": "^[^\\u0000]*$"});
        match env.get_mut("oneOf").and_then(Value::as_array_mut) {
            // `Option<map>`: the map is the non-null branch.
            Some(branches) => {
                for branch in branches.iter_mut().filter(|b| b["type"] == "object") {
                    branch["propertyNames"] = names.clone();
                    branch["additionalProperties"] = values.clone();
                }
            }
            None => {
                env["propertyNames"] = names;
                env["additionalProperties"] = values;
            }
        }
    }
    // Stores keep parameters as JSON text without NUL (PostgreSQL refuses
    // it), so no key or string anywhere in them may hold one. The client's
    // own keys hold any JSON, described as such: a recursive "any JSON
    // without NUL" schema breaks the clients people generate from this
    // document (openapi-python-client drops `Parameters`, openapi-typescript
    // types fail `tsc --strict`; finding 17 of #19), so the rule at depth
    // is the description's, and the server's 400.
    if let Some(parameters) = document.pointer_mut("/components/schemas/Parameters") {
        parameters["propertyNames"] = json!({"pattern": "^[^\\u0000]*$"});
        parameters["additionalProperties"] = json!({});
    }
    let id = json!({"id": "$response.body#/id"});
    let link = |operation: &str| json!({"operationId": operation, "parameters": id});
    if let Some(created) = document.pointer_mut("/paths/~1jobs/post/responses/201") {
        created["links"] = json!({
            "GetJob": link("get_job"),
            "EditJob": link("edit_job"),
            "PatchJob": link("patch_job"),
            "CancelJob": link("cancel_job"),
            "JobLogs": link("job_logs"),
            "DeleteJob": link("delete_job"),
        });
    }
}

/// The page's scripts and styles come from rje itself; nothing else runs.
const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'";

async fn docs_file(file: String, config: Arc<Config<'static>>) -> Response {
    let served = match utoipa_swagger_ui::serve(&file, config) {
        Ok(Some(served)) => served,
        Ok(None) => return crate::ApiError::RouteNotFound.into_response(),
        Err(err) => return crate::ApiError::Internal(err.to_string()).into_response(),
    };
    let mut body = served.bytes.into_owned();
    if file.is_empty() {
        // `/docs` and `/docs/` are one path here (trailing slashes are
        // trimmed), so the page says where its assets are.
        body = String::from_utf8_lossy(&body)
            .replacen("<head>", "<head><base href=\"/docs/\">", 1)
            .into_bytes();
    }
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    if let Ok(kind) = HeaderValue::from_str(&served.content_type) {
        headers.insert(header::CONTENT_TYPE, kind);
    }
    if served.gzpipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_POLICY),
    );
    response
}
