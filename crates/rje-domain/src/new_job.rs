//! A request to run a command, validated field by field, and the parsing
//! rules an edit shares with it.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{Collector, ValidationError};
use crate::hosts::HostNames;
use crate::job::{Job, Priority};
use crate::limits::Limits;
use crate::lineage::{Lineage, ScheduleId};
use crate::parameters::JobParameters;

/// A validated request to run a command. Only [`NewJob::parse`] makes one,
/// so holding a `NewJob` means every rule was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    command: String,
    priority: Priority,
    timeout: u32,
    parameters: Option<JobParameters>,
    streaming: bool,
    host: String,
    max_retries: u32,
    submitted_by: Option<String>,
    lineage: Lineage,
    /// For one host's job of a run: how many of the run's jobs may run at
    /// once.
    run_parallel: Option<u32>,
}

/// Fields the server owns. Naming one in a request is a mistake worth
/// telling the client about rather than ignoring.
const READ_ONLY_FIELDS: &[&str] = &[
    "id",
    "status",
    "stdout",
    "stderr",
    "created_at",
    "modified_at",
    "started_at",
    "completed_at",
    "task_id",
    "remote_process_id",
    "exit_code",
    "signal",
    "error",
    "attempts",
    "cancel_requested",
    "submitted_by",
    "cancelled_by",
    "retry_of",
    "retries",
    "retry_number",
    "schedule",
    "scheduled_for",
    "run",
    "outcome",
];

const CREATE_FIELDS: &[&str] = &[
    "command",
    "priority",
    "timeout",
    "parameters",
    "streaming",
    "host",
    "max_retries",
    "retry_on_failure",
];

impl NewJob {
    /// Validates a create request against the limits and the hosts there
    /// are.
    pub fn parse(
        body: &Value,
        limits: &Limits,
        hosts: &HostNames,
    ) -> Result<Self, ValidationError> {
        let fields = as_object(body)?;
        let mut errors = Collector::default();
        reject_foreign_fields(fields, CREATE_FIELDS, &mut errors);

        let command = match fields.get("command") {
            None | Some(Value::Null) => {
                errors.push("command", "is required");
                None
            }
            Some(value) => errors.take("command", parse_command(value, limits)),
        };
        let priority =
            optional(fields, "priority", &mut errors, parse_priority).unwrap_or(Priority::Medium);
        let timeout = optional(fields, "timeout", &mut errors, |v| parse_timeout(v, limits))
            .unwrap_or(Limits::DEFAULT_TIMEOUT_SECS);
        let parameters = optional(fields, "parameters", &mut errors, |v| {
            JobParameters::parse(v, limits)
        });
        let streaming = optional(fields, "streaming", &mut errors, |v| {
            v.as_bool()
                .ok_or_else(|| "must be true or false".to_owned())
        })
        .unwrap_or(false);
        let host = optional(fields, "host", &mut errors, |v| parse_host(v, hosts))
            .unwrap_or_else(|| hosts.default_host().to_owned());
        let max_retries = optional(fields, "max_retries", &mut errors, |v| {
            parse_bounded_int(v, 0, limits.max_retries)
        })
        .unwrap_or(Limits::DEFAULT_MAX_RETRIES);
        let retry_on_failure = optional(fields, "retry_on_failure", &mut errors, |v| {
            v.as_bool()
                .ok_or_else(|| "must be true or false".to_owned())
        })
        .unwrap_or(false);

        errors.finish()?;
        Ok(NewJob {
            // `finish` returned Ok, so every required field parsed.
            command: command.unwrap_or_default(),
            priority,
            timeout,
            parameters,
            streaming,
            host,
            max_retries,
            submitted_by: None,
            lineage: Lineage {
                retry_on_failure,
                ..Lineage::default()
            },
            run_parallel: None,
        })
    }

    /// `job` run again, as asked for by hand: the same command, priority,
    /// timeout, host, parameters and retry choices, linked to it by
    /// `retry_of`, with a chain of automatic retries of its own.
    pub fn again(job: &Job) -> Self {
        Self {
            command: job.command.clone(),
            priority: job.priority,
            timeout: job.timeout,
            parameters: job.parameters.clone(),
            streaming: job.streaming,
            host: job.host.clone().unwrap_or_default(),
            max_retries: job.max_retries,
            submitted_by: None,
            lineage: Lineage {
                retry_of: Some(job.id),
                retry_on_failure: job.lineage.retry_on_failure,
                ..Lineage::default()
            },
            run_parallel: None,
        }
    }

    /// The same job on `host`, running `previous` again if given (a run's
    /// retry).
    pub(crate) fn on_host(self, host: &str, previous: Option<crate::JobId>) -> Self {
        Self {
            host: host.to_owned(),
            lineage: Lineage {
                retry_of: previous,
                ..self.lineage
            },
            ..self
        }
    }

    /// The same job as one host's part of `run`, of which at most
    /// `parallel` jobs run at once.
    pub(crate) fn in_run(self, run: crate::RunId, parallel: u32) -> Self {
        Self {
            lineage: Lineage {
                run: Some(run),
                ..self.lineage
            },
            run_parallel: Some(parallel),
            ..self
        }
    }

    /// How many jobs of its run may run at once, for a run's job.
    pub fn run_parallel(&self) -> Option<u32> {
        self.run_parallel
    }

    /// The automatic retry of `job`, if it ended by a failure that calls
    /// for one (see [`Job::reruns_after_failure`]): [`NewJob::again`],
    /// one further down the chain, still the submitter's and its
    /// schedule's (so that a schedule that skips overlaps waits for its
    /// retries too).
    pub fn follow_up(job: &Job) -> Option<Self> {
        if !job.reruns_after_failure() {
            return None;
        }
        let again = Self::again(job);
        Some(Self {
            submitted_by: job.submitted_by.clone(),
            lineage: Lineage {
                retry_number: job.lineage.retry_number + 1,
                schedule: job.lineage.schedule,
                scheduled_for: job.lineage.scheduled_for,
                serial: job.lineage.serial,
                ..again.lineage
            },
            ..again
        })
    }

    /// The same job, fired by `schedule` for the fire time `at`; `serial`
    /// when the schedule's jobs run one at a time.
    pub fn fired_by(self, schedule: ScheduleId, at: DateTime<Utc>, serial: bool) -> Self {
        Self {
            lineage: Lineage {
                schedule: Some(schedule),
                scheduled_for: Some(at),
                serial,
                ..self.lineage
            },
            ..self
        }
    }

    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// The same job, recorded as submitted by the token `name`.
    pub fn submitted_by(self, name: Option<String>) -> Self {
        Self {
            submitted_by: name,
            ..self
        }
    }

    /// The name of the token that submitted it.
    pub fn submitter(&self) -> Option<&str> {
        self.submitted_by.as_deref()
    }

    pub fn command(&self) -> &str {
        &self.command
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Seconds.
    pub fn timeout(&self) -> u32 {
        self.timeout
    }

    pub fn parameters(&self) -> Option<&JobParameters> {
        self.parameters.as_ref()
    }

    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// Where it runs: the host the request named, or the default host.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }
}

pub(crate) fn as_object(body: &Value) -> Result<&Map<String, Value>, ValidationError> {
    body.as_object()
        .ok_or_else(|| ValidationError::field("body", "must be a JSON object"))
}

pub(crate) fn reject_foreign_fields(
    fields: &Map<String, Value>,
    allowed: &[&str],
    errors: &mut Collector,
) {
    for name in fields.keys() {
        if allowed.contains(&name.as_str()) {
            continue;
        }
        if READ_ONLY_FIELDS.contains(&name.as_str()) {
            errors.push(name, "is read-only");
        } else {
            errors.push(name, "is not a known field");
        }
    }
}

/// Parses a field that may be absent or null, recording its error if any.
pub(crate) fn optional<T>(
    fields: &Map<String, Value>,
    name: &str,
    errors: &mut Collector,
    parse: impl FnOnce(&Value) -> Result<T, String>,
) -> Option<T> {
    match fields.get(name) {
        None | Some(Value::Null) => None,
        Some(value) => errors.take(name, parse(value)),
    }
}

pub(crate) fn parse_command(value: &Value, limits: &Limits) -> Result<String, String> {
    let text = value.as_str().ok_or("must be a string")?;
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if text.len() > limits.max_command_bytes {
        return Err(format!(
            "is {} bytes; the limit is {} bytes",
            text.len(),
            limits.max_command_bytes
        ));
    }
    if text.contains('\0') {
        return Err("must not contain a NUL byte".into());
    }
    Ok(text.to_owned())
}

pub(crate) fn parse_priority(value: &Value) -> Result<Priority, String> {
    value
        .as_str()
        .ok_or_else(|| "must be one of Low, Medium, High".to_owned())?
        .parse()
}

pub(crate) fn parse_timeout(value: &Value, limits: &Limits) -> Result<u32, String> {
    parse_bounded_int(value, limits.min_timeout_secs, limits.max_timeout_secs)
        .map_err(|message| format!("{message} (seconds)"))
}

fn parse_bounded_int(value: &Value, min: u32, max: u32) -> Result<u32, String> {
    let out_of_range = || format!("must be a whole number from {min} to {max}");
    // JSON does not tell 1 from 1.0, and JSON Schema's `integer` takes
    // both: a whole number written with a fraction is still whole.
    let whole = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(out_of_range)
}

pub(crate) fn parse_host(value: &Value, hosts: &HostNames) -> Result<String, String> {
    let name = value.as_str().ok_or("must be a string")?;
    if hosts.is_known(name) {
        Ok(name.to_owned())
    } else {
        Err(format!("unknown host {name:?}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<NewJob, ValidationError> {
        NewJob::parse(&body, &Limits::default(), &HostNames::local_only())
    }

    fn fields(err: ValidationError) -> Vec<String> {
        err.details.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn defaults_follow_the_original_api() {
        let job = parse(json!({"command": "echo hi"})).unwrap();
        assert_eq!(job.priority, Priority::Medium);
        assert_eq!(job.timeout, 60);
        assert_eq!(job.max_retries, 3);
        assert!(!job.streaming);
        assert_eq!(job.host, "local", "the default host");
        assert_eq!(job.parameters, None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = parse(json!({
            "command": "",
            "priority": "Urgent",
            "timeout": 0,
            "streaming": "yes",
            "host": "nowhere",
            "max_retries": -1,
            "parameters": [1],
            "status": "Success",
            "colour": "red"
        }))
        .unwrap_err();
        let mut named = fields(err);
        named.sort();
        assert_eq!(
            named,
            [
                "colour",
                "command",
                "host",
                "max_retries",
                "parameters",
                "priority",
                "status",
                "streaming",
                "timeout"
            ]
        );
    }

    #[test]
    fn command_is_required_and_bounded() {
        assert_eq!(fields(parse(json!({})).unwrap_err()), ["command"]);
        assert_eq!(
            fields(parse(json!({"command": 5})).unwrap_err()),
            ["command"]
        );
        let long = "x".repeat(Limits::default().max_command_bytes + 1);
        let err = parse(json!({ "command": long })).unwrap_err();
        assert!(err.details[0].message.contains("limit"));
        assert!(parse(json!({"command": "a\u{0}b"})).is_err());
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_fraction() {
        let job = parse(json!({"command": "x", "timeout": 5.0, "max_retries": 0.0})).unwrap();
        assert_eq!((job.timeout(), job.max_retries()), (5, 0));
        assert!(parse(json!({"command": "x", "timeout": 5.5})).is_err());
        assert!(parse(json!({"command": "x", "timeout": -1.0})).is_err());
    }

    #[test]
    fn timeout_range_is_inclusive() {
        let limits = Limits::default();
        assert!(parse(json!({"command": "x", "timeout": 1})).is_ok());
        assert!(parse(json!({"command": "x", "timeout": limits.max_timeout_secs})).is_ok());
        assert!(parse(json!({"command": "x", "timeout": limits.max_timeout_secs + 1})).is_err());
        assert!(parse(json!({"command": "x", "timeout": 1.5})).is_err());
        assert!(parse(json!({"command": "x", "timeout": "60"})).is_err());
    }

    #[test]
    fn body_must_be_an_object() {
        assert_eq!(fields(parse(json!([1, 2])).unwrap_err()), ["body"]);
    }

    #[test]
    fn exec_parameters_are_checked_and_others_kept() {
        let job = parse(json!({
            "command": "env",
            "parameters": {"env": {"GREETING": "hi"}, "cwd": "/tmp", "ticket": 42}
        }))
        .unwrap();
        let exec = job.parameters().unwrap().exec();
        assert_eq!(exec.env, [("GREETING".to_owned(), "hi".to_owned())]);
        assert_eq!(exec.cwd.as_deref(), Some("/tmp"));
        assert!(
            !exec.allow_daemons,
            "daemons are killed unless the job opts out"
        );
        let daemons =
            parse(json!({"command": "x", "parameters": {"allow_daemons": true}})).unwrap();
        assert!(daemons.parameters().unwrap().exec().allow_daemons);

        for bad in [
            json!({"allow_daemons": "yes"}),
            json!({"env": {"1BAD": "x"}}),
            json!({"env": {"OK": 1}}),
            json!({"env": "A=B"}),
            json!({"cwd": "relative"}),
            json!({"note": ["a\u{0}b"]}),
            json!({"a\u{0}": 1}),
        ] {
            assert!(
                parse(json!({"command": "x", "parameters": bad})).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn known_hosts_are_accepted() {
        let hosts = HostNames::new("web-1", ["db-1"]);
        let on = |body| NewJob::parse(&body, &Limits::default(), &hosts).map(|job| job.host);
        assert_eq!(on(json!({"command": "x", "host": "db-1"})).unwrap(), "db-1");
        assert_eq!(on(json!({"command": "x"})).unwrap(), "web-1");
        assert!(on(json!({"command": "x", "host": "local"})).is_err());
    }
}
