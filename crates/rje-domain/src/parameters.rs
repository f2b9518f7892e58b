//! A job's `parameters`: the client's own JSON object, of which a few keys
//! change how the command runs. Read once, when a job is submitted or
//! edited, and carried from there to the executor.

use serde_json::Value;

use crate::limits::Limits;

/// The `parameters` of a job: the JSON object as the client sent it, and
/// the [`ExecParameters`] read from it. Only [`JobParameters::parse`] (at
/// submit and edit) and [`JobParameters::from_stored`] make one.
#[derive(Debug, Clone, PartialEq)]
pub struct JobParameters {
    json: Value,
    exec: ExecParameters,
}

impl JobParameters {
    /// Checks parameters a client sent against the limits.
    pub(crate) fn parse(value: &Value, limits: &Limits) -> Result<Self, String> {
        if !value.is_object() {
            return Err("must be a JSON object".into());
        }
        let size = value.to_string().len();
        if size > limits.max_parameters_bytes {
            return Err(format!(
                "is {size} bytes of JSON; the limit is {} bytes",
                limits.max_parameters_bytes
            ));
        }
        if contains_nul(value) {
            // Stores keep parameters as JSON text; PostgreSQL refuses NUL there.
            return Err("must not contain a NUL character".into());
        }
        Ok(Self {
            exec: ExecParameters::from_parameters(value)?,
            json: value.clone(),
        })
    }

    /// Parameters as a store kept them. They passed [`JobParameters::parse`]
    /// when they were written; the size limit of the day is not applied
    /// again, so a lowered limit never makes a stored job unreadable.
    pub fn from_stored(json: Value) -> Result<Self, String> {
        Ok(Self {
            exec: ExecParameters::from_parameters(&json)?,
            json,
        })
    }

    /// The object as the client sent it.
    pub fn json(&self) -> &Value {
        &self.json
    }

    pub fn into_json(self) -> Value {
        self.json
    }

    /// What changes how the command runs.
    pub fn exec(&self) -> &ExecParameters {
        &self.exec
    }
}

/// The parts of `parameters` that change how the command runs. Every other
/// key of `parameters` is the client's own and is kept as it came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecParameters {
    /// Extra environment variables for the command.
    pub env: Vec<(String, String)>,
    /// The directory the command starts in.
    pub cwd: Option<String>,
    /// Processes the command leaves running in a session or process group
    /// of their own (daemons, `setsid`) may outlive its normal end. By
    /// default every descendant of a job is killed when it ends; cancel and
    /// timeout kill them all either way.
    pub allow_daemons: bool,
}

impl ExecParameters {
    fn from_parameters(parameters: &Value) -> Result<Self, String> {
        let mut exec = ExecParameters::default();
        // Null is absent, as for the request's own fields.
        let field = |name: &str| parameters.get(name).filter(|value| !value.is_null());
        if let Some(env) = field("env") {
            let env = env
                .as_object()
                .ok_or("parameters.env must be an object of strings")?;
            for (name, value) in env {
                if !is_env_name(name) {
                    return Err(format!(
                        "parameters.env: {name:?} is not a valid variable name"
                    ));
                }
                let value = value
                    .as_str()
                    .ok_or_else(|| format!("parameters.env.{name} must be a string"))?;
                if value.contains('\0') {
                    return Err(format!("parameters.env.{name} must not contain a NUL byte"));
                }
                exec.env.push((name.clone(), value.to_owned()));
            }
        }
        if let Some(cwd) = field("cwd") {
            let cwd = cwd.as_str().ok_or("parameters.cwd must be a string")?;
            if !cwd.starts_with('/') || cwd.contains('\0') {
                return Err("parameters.cwd must be an absolute path".into());
            }
            exec.cwd = Some(cwd.to_owned());
        }
        if let Some(allow) = field("allow_daemons") {
            exec.allow_daemons = allow
                .as_bool()
                .ok_or("parameters.allow_daemons must be true or false")?;
        }
        Ok(exec)
    }
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        _ => false,
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<JobParameters, String> {
        JobParameters::parse(&value, &Limits::default())
    }

    #[test]
    fn exec_keys_are_read_and_the_rest_kept() {
        let parameters =
            parse(json!({"env": {"GREETING": "hi"}, "cwd": "/tmp", "ticket": 42})).unwrap();
        assert_eq!(
            parameters.exec().env,
            vec![("GREETING".to_owned(), "hi".to_owned())]
        );
        assert_eq!(parameters.exec().cwd.as_deref(), Some("/tmp"));
        assert!(!parameters.exec().allow_daemons);
        assert_eq!(parameters.json()["ticket"], 42);
    }

    #[test]
    fn stored_parameters_skip_the_size_limit_but_not_the_rules() {
        let big = json!({"note": "x".repeat(Limits::default().max_parameters_bytes)});
        assert!(parse(big.clone()).is_err());
        assert!(JobParameters::from_stored(big).is_ok());
        assert!(JobParameters::from_stored(json!({"cwd": "relative"})).is_err());
    }
}
