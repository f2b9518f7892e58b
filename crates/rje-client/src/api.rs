//! The HTTP side of the public API.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rje_proto::{
    AuditResponse, ErrorBody, JobListResponse, JobResponse, TokenCreated, TokenListResponse,
    TokenRequest, WhoAmIResponse,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ClientError;
use crate::config::Endpoint;

mod runs;
mod schedules;

pub(crate) use runs::run_path_id;
pub(crate) use schedules::schedule_path_id;

#[derive(Clone)]
pub(crate) struct Api {
    pub endpoint: Endpoint,
    http: reqwest::Client,
}

/// What a cancel did.
pub(crate) enum Cancelled {
    /// The job is Cancelled.
    Done(JobResponse),
    /// The kill is still under way (202).
    Pending(JobResponse),
}

impl Api {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self { endpoint, http }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.base_url)
    }

    /// The WebSocket URL for `path`.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        let base = &self.endpoint.base_url;
        let base = base
            .strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
            .or_else(|| {
                base.strip_prefix("http://")
                    .map(|rest| format!("ws://{rest}"))
            })
            .unwrap_or_else(|| base.clone());
        format!("{base}{path}")
    }

    /// A WebSocket handshake request for `path`, with the token.
    pub(crate) fn ws_request(
        &self,
        path: &str,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = self.ws_url(path);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|err| ClientError::Config(format!("bad server URL {url}: {err}")))?;
        if let Some(token) = &self.endpoint.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Config("the token is not a valid header".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// One request; a 429 (which the server refused before doing anything)
    /// is sent again after its `Retry-After`, a bounded number of times.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        self.call_keyed(method, path, body, None).await
    }

    /// [`Self::call`], with an `Idempotency-Key` when `key` is given.
    async fn call_keyed(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let mut tries = 0;
        loop {
            match self.call_once(method.clone(), path, body, key).await? {
                Attempt::RateLimited { wait } if tries < RATE_LIMIT_RETRIES => {
                    tries += 1;
                    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                        eprintln!(
                            "rje: the server is rate limiting this client; retrying in {} s",
                            wait.as_secs()
                        );
                    }
                    tokio::time::sleep(wait).await;
                }
                Attempt::RateLimited { .. } => {
                    return Err(ClientError::Unavailable(format!(
                        "still rate limited after {RATE_LIMIT_RETRIES} retries"
                    )));
                }
                Attempt::Done(result) => return result,
            }
        }
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Attempt, ClientError> {
        let url = self.url(path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.endpoint.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| ClientError::Unreachable {
                url: self.endpoint.base_url.clone(),
                reason: root_cause(&err),
            })?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Ok(Attempt::RateLimited {
                wait: retry_after(response.headers()),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|err| ClientError::Unreachable {
                url: self.endpoint.base_url.clone(),
                reason: root_cause(&err),
            })?;
        Ok(Attempt::Done(if status.is_success() {
            Ok((status, bytes.to_vec()))
        } else {
            Err(error_for(status, &bytes))
        }))
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, T), ClientError> {
        let (status, bytes) = self.call(method, path, body).await?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|err| ClientError::Server(format!("unexpected answer from {path}: {err}")))?;
        Ok((status, value))
    }

    pub(crate) async fn create(&self, body: &Value) -> Result<JobResponse, ClientError> {
        Ok(self.call_json(Method::POST, "/jobs/", Some(body)).await?.1)
    }

    /// Submits a job under an `Idempotency-Key` of its own, and submits it
    /// again with that key when the connection failed, the answer unseen:
    /// the job is made once however many tries it takes.
    pub(crate) async fn create_once(&self, body: &Value) -> Result<JobResponse, ClientError> {
        let key = uuid::Uuid::new_v4().to_string();
        let mut pause = Duration::from_millis(250);
        for _ in 0..SUBMIT_RETRIES {
            match self
                .call_keyed(Method::POST, "/jobs/", Some(body), Some(&key))
                .await
            {
                Err(ClientError::Unreachable { .. }) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                answer => return parse_job(answer),
            }
        }
        parse_job(
            self.call_keyed(Method::POST, "/jobs/", Some(body), Some(&key))
                .await,
        )
    }

    pub(crate) async fn job(&self, id: &str) -> Result<JobResponse, ClientError> {
        Ok(self
            .call_json(Method::GET, &format!("/jobs/{id}/"), None)
            .await?
            .1)
    }

    pub(crate) async fn list(&self, query: &str) -> Result<JobListResponse, ClientError> {
        Ok(self
            .call_json(Method::GET, &format!("/jobs/list/?{query}"), None)
            .await?
            .1)
    }

    pub(crate) async fn cancel(&self, id: &str) -> Result<Cancelled, ClientError> {
        let (status, job) = self
            .call_json(Method::POST, &format!("/jobs/{id}/cancel/"), None)
            .await?;
        Ok(if status == StatusCode::ACCEPTED {
            Cancelled::Pending(job)
        } else {
            Cancelled::Done(job)
        })
    }

    pub(crate) async fn hosts(&self) -> Result<Value, ClientError> {
        Ok(self.call_json(Method::GET, "/hosts/", None).await?.1)
    }

    /// `name` must be a valid host name: it becomes a path segment.
    pub(crate) async fn check_host(&self, name: &str) -> Result<Value, ClientError> {
        Ok(self
            .call_json(Method::POST, &format!("/hosts/{name}/check/"), None)
            .await?
            .1)
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/jobs/{id}/"), None)
            .await
            .map(|_| ())
    }

    pub(crate) async fn whoami(&self) -> Result<WhoAmIResponse, ClientError> {
        Ok(self.call_json(Method::GET, "/whoami/", None).await?.1)
    }

    pub(crate) async fn create_token(
        &self,
        request: &TokenRequest,
    ) -> Result<TokenCreated, ClientError> {
        let body = serde_json::to_value(request)
            .map_err(|err| ClientError::BadInput(format!("cannot encode the token: {err}")))?;
        Ok(self
            .call_json(Method::POST, "/tokens/", Some(&body))
            .await?
            .1)
    }

    pub(crate) async fn tokens(&self) -> Result<TokenListResponse, ClientError> {
        Ok(self.call_json(Method::GET, "/tokens/", None).await?.1)
    }

    /// `name` must be a valid token name: it becomes a path segment.
    pub(crate) async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/tokens/{name}/"), None)
            .await
            .map(|_| ())
    }

    pub(crate) async fn audit(&self, query: &str) -> Result<AuditResponse, ClientError> {
        Ok(self
            .call_json(Method::GET, &format!("/audit/?{query}"), None)
            .await?
            .1)
    }
}

/// How many times a rate-limited request is sent again.
const RATE_LIMIT_RETRIES: u32 = 5;
/// Times a submit is sent again after a failed connection, before the
/// last try.
const SUBMIT_RETRIES: usize = 3;

/// A job from an answer's bytes.
fn parse_job(
    answer: Result<(StatusCode, Vec<u8>), ClientError>,
) -> Result<JobResponse, ClientError> {
    let (_, bytes) = answer?;
    serde_json::from_slice(&bytes)
        .map_err(|err| ClientError::Server(format!("unexpected answer from /jobs/: {err}")))
}
/// The longest wait a `Retry-After` is taken for.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(60);

enum Attempt {
    Done(Result<(StatusCode, Vec<u8>), ClientError>),
    RateLimited { wait: Duration },
}

/// `Retry-After` in seconds (at least 1, at most a minute); 1 s when it is
/// missing or a date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    let seconds = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    Duration::from_secs(seconds).min(LONGEST_RETRY_WAIT)
}

/// The innermost cause of a transport error, which is the useful part
/// ("Connection refused").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn error_for(status: StatusCode, body: &[u8]) -> ClientError {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) if body.details.is_empty() => body.error,
        Ok(body) => {
            let details: Vec<_> = body
                .details
                .iter()
                .map(|d| format!("{} {}", d.field, d.message))
                .collect();
            format!("{}: {}", body.error, details.join("; "))
        }
        Err(_) => format!("HTTP {status}"),
    };
    match status {
        StatusCode::UNAUTHORIZED => ClientError::Unauthorized(message),
        StatusCode::NOT_FOUND => ClientError::NotFound(message),
        StatusCode::CONFLICT => ClientError::Conflict(message),
        StatusCode::SERVICE_UNAVAILABLE => ClientError::Unavailable(message),
        s if s.is_client_error() => ClientError::BadInput(message),
        _ => ClientError::Server(message),
    }
}

/// Makes a URL path segment of a job id typed by a person: anything but a
/// plain id would change the route, so it is refused here with the same
/// answer the server would give.
pub(crate) fn job_path_id(id: &str) -> Result<&str, ClientError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        Ok(id)
    } else {
        Err(ClientError::NotFound(format!(
            "job not found: {id:?} is not a job id"
        )))
    }
}
