//! An edit of a queued job.

use serde_json::Value;

use crate::error::{Collector, ValidationError};
use crate::job::{Job, Priority};
use crate::limits::Limits;
use crate::new_job::{
    as_object, optional, parse_command, parse_priority, parse_timeout, reject_foreign_fields,
};
use crate::parameters::JobParameters;

/// An edit of a queued job. Absent fields stay as they are; `parameters:
/// null` clears the parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPatch {
    command: Option<String>,
    timeout: Option<u32>,
    priority: Option<Priority>,
    /// `Some(None)` clears the parameters.
    parameters: Option<Option<JobParameters>>,
}

const EDITABLE_FIELDS: &[&str] = &["command", "timeout", "priority", "parameters"];

impl JobPatch {
    pub fn parse(body: &Value, limits: &Limits) -> Result<Self, ValidationError> {
        let fields = as_object(body)?;
        let mut errors = Collector::default();
        reject_foreign_fields(fields, EDITABLE_FIELDS, &mut errors);
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
        };
        errors.finish()?;
        Ok(patch)
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
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn editable_fields_parse() {
        let patch = JobPatch::parse(
            &json!({"command": "ls", "timeout": 5, "priority": "High", "parameters": null}),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(patch.command.as_deref(), Some("ls"));
        assert_eq!(patch.timeout, Some(5));
        assert_eq!(patch.priority, Some(Priority::High));
        assert_eq!(patch.parameters, Some(None));
    }

    #[test]
    fn read_only_fields_are_named() {
        let err = JobPatch::parse(
            &json!({"status": "Success", "stdout": "x", "host": "h"}),
            &Limits::default(),
        )
        .unwrap_err();
        let mut named: Vec<_> = err.details.iter().map(|d| d.field.as_str()).collect();
        named.sort();
        assert_eq!(named, ["host", "status", "stdout"]);
        assert!(err.details.iter().any(|d| d.message == "is read-only"));
    }

    #[test]
    fn null_command_is_refused() {
        assert!(JobPatch::parse(&json!({"command": null}), &Limits::default()).is_err());
    }

    #[test]
    fn empty_patch_is_empty() {
        assert!(
            JobPatch::parse(&json!({}), &Limits::default())
                .unwrap()
                .is_empty()
        );
    }
}
