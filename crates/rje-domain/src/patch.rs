//! An edit of a queued job, including the round trip of a client that
//! GETs a job, changes a field and PUTs the whole object back.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::{Collector, ValidationError};
use crate::hosts::HostNames;
use crate::job::{Job, Priority};
use crate::limits::Limits;
use crate::new_job::{
    as_object, optional, parse_command, parse_host, parse_priority, parse_timeout,
};
use crate::parameters::JobParameters;
use crate::wire_time;

/// An edit of a queued job. Absent fields stay as they are; `parameters:
/// null` clears the parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPatch {
    command: Option<String>,
    timeout: Option<u32>,
    priority: Option<Priority>,
    /// `Some(None)` clears the parameters.
    parameters: Option<Option<JobParameters>>,
    host: Option<String>,
}

const EDITABLE_FIELDS: &[&str] = &["command", "timeout", "priority", "parameters", "host"];

impl JobPatch {
    /// Validates an edit of `current`. A field the edit cannot change may
    /// be sent back with the value the job shows (a GET, changed, then PUT
    /// whole); with any other value it is refused, by name.
    pub fn parse(
        body: &Value,
        limits: &Limits,
        hosts: &HostNames,
        current: &Job,
    ) -> Result<Self, ValidationError> {
        let fields = as_object(body)?;
        let mut errors = Collector::default();
        check_fixed_fields(fields, current, &mut errors);
        if fields.get("command").is_some_and(Value::is_null) {
            errors.push("command", "must not be null");
        }
        let patch = JobPatch {
            command: optional(fields, "command", &mut errors, |v| parse_command(v, limits)),
            timeout: optional(fields, "timeout", &mut errors, |v| parse_timeout(v, limits)),
            priority: optional(fields, "priority", &mut errors, parse_priority),
            parameters: match fields.get("parameters") {
                None => None,
                Some(Value::Null) => Some(None),
                Some(value) => errors
                    .take("parameters", JobParameters::parse(value, limits))
                    .map(Some),
            },
            host: optional(fields, "host", &mut errors, |v| parse_host(v, hosts)),
        };
        errors.finish()?;
        Ok(patch)
    }

    /// The new host, when the edit changes it.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The new priority, when the edit changes it.
    pub fn priority(&self) -> Option<Priority> {
        self.priority
    }

    pub fn is_empty(&self) -> bool {
        *self == JobPatch::default()
    }

    /// Applies the edit to a job in memory; the store writes the result.
    pub fn apply(&self, job: &mut Job) {
        if let Some(command) = &self.command {
            job.command.clone_from(command);
        }
        if let Some(timeout) = self.timeout {
            job.timeout = timeout;
        }
        if let Some(priority) = self.priority {
            job.priority = priority;
        }
        if let Some(parameters) = &self.parameters {
            job.parameters.clone_from(parameters);
        }
        if let Some(host) = &self.host {
            job.host = Some(host.clone());
        }
    }
}

/// Refuses every field the edit may not change, unless it holds the value
/// the job shows now.
fn check_fixed_fields(fields: &Map<String, Value>, current: &Job, errors: &mut Collector) {
    for (name, sent) in fields {
        if EDITABLE_FIELDS.contains(&name.as_str()) {
            continue;
        }
        match shown_value(current, name) {
            None => errors.push(name, "is not a known field"),
            Some(shown) if same_value(sent, &shown) => {}
            Some(_) => errors.push(
                name,
                "cannot be changed by an edit (send it unchanged, or leave it out)",
            ),
        }
    }
}

/// What a job shows for a field an edit cannot change, as the API writes
/// it: the server's own fields, those fixed at submit and those rje adds
/// to answers; `None` for a field a job does not have. Only queued jobs
/// can be edited: they have no output yet.
fn shown_value(job: &Job, field: &str) -> Option<Value> {
    let time = |at: &Option<DateTime<Utc>>| match at {
        Some(at) => json!(wire_time::format(at)),
        None => Value::Null,
    };
    Some(match field {
        "id" => json!(job.id),
        "status" => json!(job.status),
        "stdout" => json!(job.stdout),
        "stderr" => json!(job.stderr),
        "created_at" => json!(wire_time::format(&job.created_at)),
        "modified_at" => json!(wire_time::format(&job.modified_at)),
        "started_at" => time(&job.started_at),
        "completed_at" => time(&job.completed_at),
        "task_id" => json!(job.task_id),
        "remote_process_id" => json!(job.remote_process_id),
        "exit_code" => json!(job.exit_code),
        "signal" => json!(job.signal),
        "error" => json!(job.error),
        "attempts" => json!(job.attempts),
        "reattached" => json!(job.reattached),
        "cancel_requested" => json!(job.cancel_requested),
        "submitted_by" => json!(job.submitted_by),
        "cancelled_by" => json!(job.cancelled_by),
        "max_retries" => json!(job.max_retries),
        "streaming" => json!(job.streaming),
        "retry_of" => json!(job.lineage.retry_of),
        "retries" => json!(job.lineage.retries),
        "retry_number" => json!(job.lineage.retry_number),
        "retry_on_failure" => json!(job.lineage.retry_on_failure),
        "schedule" => json!(job.lineage.schedule),
        "scheduled_for" => time(&job.lineage.scheduled_for),
        "run" => json!(job.lineage.run),
        "outcome" => json!(job.outcome),
        "stdout_truncated" | "stderr_truncated" => json!(false),
        "stdout_bytes" | "stderr_bytes" => Value::Null,
        _ => return None,
    })
}

/// Equal as JSON, or the same instant written another way.
fn same_value(sent: &Value, shown: &Value) -> bool {
    if sent == shown {
        return true;
    }
    let instant = |v: &Value| {
        v.as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|at| wire_time::truncate(at.with_timezone(&Utc)))
    };
    matches!((instant(sent), instant(shown)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::job::{JobId, Status};

    fn queued() -> Job {
        let at = wire_time::truncate(Utc::now());
        Job {
            id: JobId::new(),
            command: "true".into(),
            timeout: 60,
            priority: Priority::Medium,
            status: Status::Queued,
            parameters: None,
            stdout: None,
            stderr: None,
            created_at: at,
            modified_at: at,
            started_at: None,
            completed_at: None,
            task_id: None,
            remote_process_id: None,
            exit_code: None,
            signal: None,
            error: None,
            host: Some("local".into()),
            attempts: 0,
            reattached: 0,
            max_retries: 3,
            streaming: false,
            cancel_requested: false,
            submitted_by: None,
            cancelled_by: None,
            run_at: at,
            lineage: crate::Lineage::default(),
            outcome: None,
        }
    }

    fn parse(body: Value) -> Result<JobPatch, ValidationError> {
        let hosts = HostNames::new("local", ["other"]);
        JobPatch::parse(&body, &Limits::default(), &hosts, &queued())
    }

    fn named(err: ValidationError) -> Vec<String> {
        let mut named: Vec<_> = err.details.into_iter().map(|d| d.field).collect();
        named.sort();
        named
    }

    #[test]
    fn editable_fields_parse() {
        let patch = parse(json!({
            "command": "ls", "timeout": 5, "priority": "High", "parameters": null, "host": "other"
        }))
        .unwrap();
        assert_eq!(patch.command.as_deref(), Some("ls"));
        assert_eq!(patch.timeout, Some(5));
        assert_eq!(patch.priority, Some(Priority::High));
        assert_eq!(patch.parameters, Some(None));
        assert_eq!(patch.host.as_deref(), Some("other"));
    }

    #[test]
    fn changed_read_only_fields_are_named() {
        let err = parse(json!({"status": "Success", "stdout": "x", "attempts": 4, "nope": 1}))
            .unwrap_err();
        assert_eq!(named(err.clone()), ["attempts", "nope", "status", "stdout"]);
        let nope = err.details.iter().find(|d| d.field == "nope").unwrap();
        assert_eq!(nope.message, "is not a known field");
    }

    #[test]
    fn a_whole_job_sent_back_unchanged_but_for_its_priority_is_an_edit() {
        let job = queued();
        let shown = json!({
            "id": job.id, "command": "true", "timeout": 60, "priority": "High",
            "status": "Queued", "parameters": null, "stdout": null, "stderr": null,
            "created_at": wire_time::format(&job.created_at),
            // Another way to write the same instant.
            "modified_at": job.modified_at.to_rfc3339(),
            "started_at": null, "completed_at": null, "task_id": null,
            "remote_process_id": null, "exit_code": null, "signal": null, "error": null,
            "host": "local", "attempts": 0, "reattached": 0, "max_retries": 3, "streaming": false,
            "cancel_requested": false, "stdout_truncated": false, "stderr_truncated": false,
        });
        let hosts = HostNames::local_only();
        let patch = JobPatch::parse(&shown, &Limits::default(), &hosts, &job).unwrap();
        assert_eq!(patch.priority(), Some(Priority::High));

        let mut other_id = shown.clone();
        other_id["id"] = json!(JobId::new());
        let err = JobPatch::parse(&other_id, &Limits::default(), &hosts, &job).unwrap_err();
        assert_eq!(named(err), ["id"]);
    }

    #[test]
    fn unknown_hosts_and_null_commands_are_refused() {
        assert_eq!(
            named(parse(json!({"host": "nowhere"})).unwrap_err()),
            ["host"]
        );
        assert_eq!(
            named(parse(json!({"command": null})).unwrap_err()),
            ["command"]
        );
    }

    #[test]
    fn empty_patch_is_empty() {
        assert!(parse(json!({})).unwrap().is_empty());
    }
}
