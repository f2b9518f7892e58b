//! The HTTP side of schedules, of running a job again and of pruning
//! finished jobs.

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use rje_domain::Status;
use rje_proto::{
    JobResponse, PruneResponse, ScheduleListResponse, ScheduleRequest, ScheduleResponse,
};
use serde_json::Value;

use super::Api;
use crate::ClientError;
use crate::commands::query_string;

impl Api {
    pub(crate) async fn create_schedule(
        &self,
        request: &ScheduleRequest,
    ) -> Result<ScheduleResponse, ClientError> {
        let body = serde_json::to_value(request)
            .map_err(|err| ClientError::BadInput(format!("cannot encode the schedule: {err}")))?;
        Ok(self
            .call_json(Method::POST, "/schedules/", Some(&body))
            .await?
            .1)
    }

    pub(crate) async fn schedules(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<ScheduleListResponse, ClientError> {
        let query = query_string(&[("limit", limit.to_string()), ("offset", offset.to_string())]);
        Ok(self
            .call_json(Method::GET, &format!("/schedules/?{query}"), None)
            .await?
            .1)
    }

    /// `id` is a schedule's id or name, checked by [`schedule_path_id`].
    pub(crate) async fn schedule(&self, id: &str) -> Result<ScheduleResponse, ClientError> {
        Ok(self
            .call_json(Method::GET, &format!("/schedules/{id}/"), None)
            .await?
            .1)
    }

    /// Changes the fields `patch` holds and leaves the others as they are.
    pub(crate) async fn edit_schedule(
        &self,
        id: &str,
        patch: &Value,
    ) -> Result<ScheduleResponse, ClientError> {
        Ok(self
            .call_json(Method::PATCH, &format!("/schedules/{id}/"), Some(patch))
            .await?
            .1)
    }

    pub(crate) async fn delete_schedule(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/schedules/{id}/"), None)
            .await
            .map(|_| ())
    }

    pub(crate) async fn pause_schedule(&self, id: &str) -> Result<ScheduleResponse, ClientError> {
        Ok(self
            .call_json(Method::POST, &format!("/schedules/{id}/pause/"), None)
            .await?
            .1)
    }

    pub(crate) async fn resume_schedule(&self, id: &str) -> Result<ScheduleResponse, ClientError> {
        Ok(self
            .call_json(Method::POST, &format!("/schedules/{id}/resume/"), None)
            .await?
            .1)
    }

    /// Runs a finished job again as a new job, which the answer is. Not
    /// sent again when the answer is lost: unlike a submit, it has no
    /// `Idempotency-Key` to make a second try harmless.
    pub(crate) async fn retry_job(&self, id: &str) -> Result<JobResponse, ClientError> {
        Ok(self
            .call_json(Method::POST, &format!("/jobs/{id}/retry/"), None)
            .await?
            .1)
    }

    /// Deletes the finished jobs completed before `before`, only those in
    /// `statuses` unless it is empty.
    pub(crate) async fn prune_jobs(
        &self,
        before: DateTime<Utc>,
        statuses: &[Status],
    ) -> Result<PruneResponse, ClientError> {
        let mut query = vec![("before", before.to_rfc3339_opts(SecondsFormat::Secs, true))];
        if !statuses.is_empty() {
            let names: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
            query.push(("status", names.join(",")));
        }
        let path = format!("/jobs/prune/?{}", query_string(&query));
        Ok(self.call_json(Method::POST, &path, None).await?.1)
    }
}

/// Makes a URL path segment of a schedule's id or name typed by a person.
/// Both are letters, digits, `.`, `_` and `-`, starting with a letter or a
/// digit (an id is a UUID); anything else could change the route, and is
/// no schedule's, so it is refused here as the server would.
pub(crate) fn schedule_path_id(id: &str) -> Result<&str, ClientError> {
    let mut chars = id.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if starts_well && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        Ok(id)
    } else {
        Err(ClientError::NotFound(format!(
            "schedule not found: {id:?} is not a schedule's id or name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_path_is_a_name_or_an_id() {
        for good in [
            "nightly",
            "db.backup_2",
            "0195f5a4-1a2b-7c3d-8e4f-0123456789ab",
        ] {
            assert_eq!(schedule_path_id(good).unwrap(), good);
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a?b",
            "a b",
            "nightly/../x",
            "é",
        ] {
            assert!(
                matches!(schedule_path_id(bad), Err(ClientError::NotFound(_))),
                "{bad:?}"
            );
        }
    }
}
