//! The HTTP side of runs: one command on many hosts, one job per host.

use reqwest::Method;
use rje_proto::{RunListResponse, RunRequest, RunResponse};

use super::Api;
use crate::ClientError;
use crate::commands::query_string;

impl Api {
    /// Starts a run. Sent once, never again after a lost answer: the
    /// server takes no `Idempotency-Key` for runs, and a second try could
    /// start every host's command twice.
    pub(crate) async fn create_run(
        &self,
        request: &RunRequest,
    ) -> Result<RunResponse, ClientError> {
        let body = serde_json::to_value(request)
            .map_err(|err| ClientError::BadInput(format!("cannot encode the run: {err}")))?;
        Ok(self.call_json(Method::POST, "/runs/", Some(&body)).await?.1)
    }

    pub(crate) async fn runs(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<RunListResponse, ClientError> {
        let query = query_string(&[("limit", limit.to_string()), ("offset", offset.to_string())]);
        Ok(self
            .call_json(Method::GET, &format!("/runs/?{query}"), None)
            .await?
            .1)
    }

    /// `id` is checked by [`run_path_id`].
    pub(crate) async fn run(&self, id: &str) -> Result<RunResponse, ClientError> {
        Ok(self
            .call_json(Method::GET, &format!("/runs/{id}/"), None)
            .await?
            .1)
    }

    /// Cancels a run: its queued jobs end at once, its running ones are
    /// killed (the answer is 202 while they are; the run says so too, by
    /// its status).
    pub(crate) async fn cancel_run(&self, id: &str) -> Result<RunResponse, ClientError> {
        Ok(self
            .call_json(Method::POST, &format!("/runs/{id}/cancel/"), None)
            .await?
            .1)
    }

    /// A new run over the hosts of a final run that did not succeed. Not
    /// sent again when the answer is lost, as [`Self::create_run`].
    pub(crate) async fn retry_run(&self, id: &str) -> Result<RunResponse, ClientError> {
        Ok(self
            .call_json(Method::POST, &format!("/runs/{id}/retry/"), None)
            .await?
            .1)
    }
}

/// Makes a URL path segment of a run id typed by a person: anything but a
/// plain id would change the route, so it is refused here with the answer
/// the server would give.
pub(crate) fn run_path_id(id: &str) -> Result<&str, ClientError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        Ok(id)
    } else {
        Err(ClientError::NotFound(format!(
            "run not found: {id:?} is not a run id"
        )))
    }
}
