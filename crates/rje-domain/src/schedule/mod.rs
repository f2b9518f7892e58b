//! A schedule: a job template run at the fire times of a [`Timetable`],
//! the request that creates or edits one, and its policies for a fire time
//! that comes while the last job still runs, or while no scheduler did.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Collector, ValidationError};
use crate::hosts::HostNames;
use crate::limits::Limits;
#[cfg(test)]
use crate::lineage::ScheduleId;
use crate::new_job::{NewJob, as_object, optional};

mod timetable;

pub use timetable::{Decision, MAX_COUNTED_MISSES, MAX_CRON_CHARS, Timetable};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        // The document's generator reads `rename_all`, not a rename per
        // variant inside a macro; each wire name is its variant's
        // snake_case (a unit test holds `as_str` to it).
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(format!("must be one of {}", [$($wire),+].join(", "))),
                }
            }
        }
    };
}

wire_enum! {
    /// What a fire time does while the schedule's last job is still queued
    /// or running.
    Overlap {
        /// Makes its job all the same.
        #[default]
        Allow = "allow",
        /// Makes no job: the fire time is skipped.
        Skip = "skip",
        /// Makes its job once the last one has ended.
        Queue = "queue",
    }
}

wire_enum! {
    /// What a fire time that passed while no scheduler ran does once one
    /// runs again (see [`Timetable::decide`]).
    Misfire {
        /// Nothing: it is recorded as missed.
        #[default]
        Skip = "skip",
        /// Runs late, once, however many passed.
        RunOnce = "run_once",
    }
}

/// A validated request to create a schedule, or the whole of one after an
/// edit. Only the parsers make one, so holding it means every rule held.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    name: String,
    timetable: Timetable,
    job: NewJob,
    overlap: Overlap,
    misfire: Misfire,
    paused: bool,
}

/// The schedule's own fields.
const SCHEDULE_FIELDS: &[&str] = &["name", "cron", "timezone", "overlap", "misfire", "paused"];

/// The fields of the job each fire time makes, checked as `POST /jobs/`
/// checks them.
const JOB_FIELDS: &[&str] = &[
    "command",
    "priority",
    "timeout",
    "host",
    "parameters",
    "max_retries",
    "retry_on_failure",
];

/// Fields the server owns, as `GET /schedules/{id}/` shows them.
const READ_ONLY_FIELDS: &[&str] = &[
    "id",
    "next_fire_times",
    "last_job",
    "created_at",
    "modified_at",
    "created_by",
];

const MAX_NAME_CHARS: usize = 100;

impl NewSchedule {
    /// Validates a create request, naming every bad field at once.
    pub fn parse(
        body: &Value,
        limits: &Limits,
        hosts: &HostNames,
    ) -> Result<Self, ValidationError> {
        Self::parse_fields(as_object(body)?, limits, hosts)
    }

    /// Validates a replacement (PUT): a create request in which the
    /// server's own fields are ignored, whatever their values, so that a
    /// schedule as `GET` answered it may be sent back with changes.
    pub fn parse_put(
        body: &Value,
        limits: &Limits,
        hosts: &HostNames,
    ) -> Result<Self, ValidationError> {
        let mut fields = as_object(body)?.clone();
        fields.retain(|name, _| !READ_ONLY_FIELDS.contains(&name.as_str()));
        Self::parse_fields(&fields, limits, hosts)
    }

    /// An edit (PATCH): the body's fields over `current`'s, checked again
    /// as a whole, so an edit can break no rule a create keeps. A field set
    /// to null is as if never given (its default, or "is required"), and
    /// `parameters` is replaced, not merged.
    pub fn patched(
        current: &NewSchedule,
        body: &Value,
        limits: &Limits,
        hosts: &HostNames,
    ) -> Result<Self, ValidationError> {
        Self::patched_stored(&current.to_body(), body, limits, hosts)
    }

    /// [`NewSchedule::patched`] over a definition as stored, not checked
    /// first: a schedule that today's rules refuse (its host left the
    /// inventory, a limit shrank) can be repaired by the edit that sets
    /// the field right.
    pub fn patched_stored(
        stored: &Value,
        body: &Value,
        limits: &Limits,
        hosts: &HostNames,
    ) -> Result<Self, ValidationError> {
        let mut fields = as_object(stored)?.clone();
        for (name, value) in as_object(body)? {
            fields.insert(name.clone(), value.clone());
        }
        Self::parse_fields(&fields, limits, hosts)
    }

    fn parse_fields(
        fields: &Map<String, Value>,
        limits: &Limits,
        hosts: &HostNames,
    ) -> Result<Self, ValidationError> {
        let mut errors = Collector::default();
        for name in fields.keys() {
            if READ_ONLY_FIELDS.contains(&name.as_str()) {
                errors.push(name, "is read-only");
            } else if !SCHEDULE_FIELDS.contains(&name.as_str())
                && !JOB_FIELDS.contains(&name.as_str())
            {
                errors.push(name, "is not a known field");
            }
        }

        let name = match fields.get("name") {
            None | Some(Value::Null) => {
                errors.push("name", "is required");
                None
            }
            Some(value) => errors.take("name", parse_name(value)),
        };
        let cron = match fields.get("cron") {
            None | Some(Value::Null) => {
                errors.push("cron", "is required");
                None
            }
            Some(value) => errors.take("cron", as_text(value)),
        };
        let zone = optional(fields, "timezone", &mut errors, |v| {
            as_text(v).map(str::to_owned)
        })
        .unwrap_or_else(|| "UTC".to_owned());
        let timetable = match cron {
            Some(cron) => match Timetable::parse(cron, &zone) {
                Ok(timetable) => Some(timetable),
                Err(err) => {
                    absorb(&mut errors, err);
                    None
                }
            },
            None => {
                errors.take("timezone", timetable::parse_zone(zone.trim()));
                None
            }
        };
        let overlap = optional(fields, "overlap", &mut errors, parse_choice).unwrap_or_default();
        let misfire = optional(fields, "misfire", &mut errors, parse_choice).unwrap_or_default();
        let paused = optional(fields, "paused", &mut errors, |v| {
            v.as_bool()
                .ok_or_else(|| "must be true or false".to_owned())
        })
        .unwrap_or(false);

        // The job's fields keep their names, so a client fixes a schedule's
        // command as it fixes a job's.
        let job_fields: Map<String, Value> = fields
            .iter()
            .filter(|(name, _)| JOB_FIELDS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let job = match NewJob::parse(&Value::Object(job_fields), limits, hosts) {
            Ok(job) => Some(job),
            Err(err) => {
                absorb(&mut errors, err);
                None
            }
        };

        errors.finish()?;
        match (name, timetable, job) {
            (Some(name), Some(timetable), Some(job)) => Ok(NewSchedule {
                name,
                timetable,
                job,
                overlap,
                misfire,
                paused,
            }),
            // `finish` returned Ok, so every required field parsed.
            _ => unreachable!("a required field failed without an error"),
        }
    }

    /// The schedule as a create request would give it, every default
    /// filled in: what an edit is merged over.
    pub fn to_body(&self) -> Value {
        Value::Object(self.body_fields())
    }

    fn body_fields(&self) -> Map<String, Value> {
        let job = &self.job;
        let mut fields = Map::new();
        let mut put = |name: &str, value: Value| {
            fields.insert(name.to_owned(), value);
        };
        put("name", self.name.clone().into());
        put("cron", self.timetable.cron().into());
        put("timezone", self.timetable.timezone().into());
        put("command", job.command().into());
        put("priority", job.priority().as_str().into());
        put("timeout", job.timeout().into());
        put("host", job.host().into());
        put(
            "parameters",
            job.parameters().map_or(Value::Null, |p| p.json().clone()),
        );
        put("max_retries", job.max_retries().into());
        put("retry_on_failure", job.lineage().retry_on_failure.into());
        put("overlap", self.overlap.as_str().into());
        put("misfire", self.misfire.as_str().into());
        put("paused", self.paused.into());
        fields
    }

    /// Unique among schedules, and never a UUID, so `/schedules/{id}/`
    /// takes either.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn timetable(&self) -> &Timetable {
        &self.timetable
    }

    /// The job each fire time makes.
    pub fn job(&self) -> &NewJob {
        &self.job
    }

    pub fn overlap(&self) -> Overlap {
        self.overlap
    }

    pub fn misfire(&self) -> Misfire {
        self.misfire
    }

    /// A paused schedule makes no jobs; its fire times pass unhandled.
    pub fn paused(&self) -> bool {
        self.paused
    }
}

fn as_text(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| "must be a string".to_owned())
}

/// A non-string is answered with the choices too, as a priority is.
fn parse_choice<T: FromStr<Err = String>>(value: &Value) -> Result<T, String> {
    value.as_str().unwrap_or_default().parse()
}

fn parse_name(value: &Value) -> Result<String, String> {
    let name = as_text(value)?;
    let rule = || {
        format!(
            "must be 1 to {MAX_NAME_CHARS} ASCII letters, digits, '.', '_' or '-', \
             starting with a letter or digit"
        )
    };
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_well = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !starts_well || !rest_well || name.len() > MAX_NAME_CHARS {
        return Err(rule());
    }
    if Uuid::parse_str(name).is_ok() {
        return Err("must not be a UUID: /schedules/{id}/ takes an id or a name".into());
    }
    Ok(name.to_owned())
}

fn absorb(errors: &mut Collector, err: ValidationError) {
    for detail in err.details {
        errors.push(&detail.field, detail.message);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::job::Priority;

    fn parse(body: Value) -> Result<NewSchedule, ValidationError> {
        NewSchedule::parse(&body, &Limits::default(), &HostNames::local_only())
    }

    fn fields(err: ValidationError) -> Vec<String> {
        let mut named: Vec<String> = err.details.into_iter().map(|d| d.field).collect();
        named.sort();
        named
    }

    fn nightly() -> Value {
        json!({"name": "nightly", "cron": "30 2 * * *", "command": "backup"})
    }

    #[test]
    fn wire_names_are_what_serde_writes() {
        for overlap in Overlap::ALL {
            assert_eq!(serde_json::to_value(overlap).unwrap(), overlap.as_str());
        }
        for misfire in Misfire::ALL {
            assert_eq!(serde_json::to_value(misfire).unwrap(), misfire.as_str());
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let schedule = parse(nightly()).unwrap();
        assert_eq!(schedule.name(), "nightly");
        assert_eq!(schedule.timetable().timezone(), "UTC");
        assert_eq!(schedule.overlap(), Overlap::Allow);
        assert_eq!(schedule.misfire(), Misfire::Skip);
        assert!(!schedule.paused());
        let job = schedule.job();
        assert_eq!(
            (job.command(), job.priority(), job.host()),
            ("backup", Priority::Medium, "local")
        );
        assert_eq!(
            schedule.to_body(),
            json!({
                "name": "nightly", "cron": "30 2 * * *", "timezone": "UTC",
                "command": "backup", "priority": "Medium", "timeout": 60, "host": "local",
                "parameters": null, "max_retries": 3, "retry_on_failure": false,
                "overlap": "allow", "misfire": "skip", "paused": false
            })
        );
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let err = parse(json!({
            "name": "-nightly",
            "cron": "* * *",
            "timezone": "Europe/Pariss",
            "overlap": "sometimes",
            "misfire": "never",
            "paused": "no",
            "command": "",
            "priority": "Urgent",
            "host": "nowhere",
            "streaming": true,
            "id": "5d1f…",
            "next_fire_times": [],
            "colour": "red"
        }))
        .unwrap_err();
        assert_eq!(
            fields(err.clone()),
            [
                "colour",
                "command",
                "cron",
                "host",
                "id",
                "misfire",
                "name",
                "next_fire_times",
                "overlap",
                "paused",
                "priority",
                "streaming",
                "timezone"
            ]
        );
        let message = |field: &str| {
            err.details
                .iter()
                .find(|d| d.field == field)
                .unwrap()
                .message
                .clone()
        };
        assert_eq!(message("id"), "is read-only");
        assert_eq!(message("streaming"), "is not a known field");
        assert_eq!(message("misfire"), "must be one of skip, run_once");
        assert!(message("timezone").starts_with("unknown time zone \"Europe/Pariss\""));
        // Required fields, and the zone checked without an expression.
        assert_eq!(
            fields(parse(json!({"timezone": "Nowhere"})).unwrap_err()),
            ["command", "cron", "name", "timezone"]
        );
        assert_eq!(fields(parse(json!([])).unwrap_err()), ["body"]);
    }

    #[test]
    fn names_are_short_plain_and_never_uuids() {
        let with_name =
            |name: Value| parse(json!({"name": name, "cron": "@daily", "command": "x"}));
        for good in ["a", "Nightly-backup_2.v1", "9", &"x".repeat(100)] {
            assert!(with_name(json!(good)).is_ok(), "{good:?}");
        }
        let uuid = ScheduleId::new().to_string();
        let simple = uuid.replace('-', "");
        for bad in [
            "",
            "-a",
            ".a",
            "a b",
            "é",
            "a/b",
            &"x".repeat(101),
            &uuid,
            &simple,
        ] {
            assert_eq!(
                fields(with_name(json!(bad)).unwrap_err()),
                ["name"],
                "{bad:?}"
            );
        }
        let err = with_name(json!(uuid)).unwrap_err();
        assert!(err.details[0].message.contains("UUID"));
        assert!(with_name(json!(5)).is_err());
    }

    #[test]
    fn the_job_fields_are_checked_as_a_submit_checks_them() {
        let schedule = parse(json!({
            "name": "report", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris",
            "command": "make report", "priority": "High", "timeout": 600,
            "parameters": {"env": {"LANG": "C"}}, "max_retries": 0,
            "overlap": "queue", "misfire": "run_once", "paused": true
        }))
        .unwrap();
        assert_eq!(schedule.job().priority(), Priority::High);
        assert_eq!(schedule.job().timeout(), 600);
        assert_eq!(schedule.job().parameters().unwrap().exec().env.len(), 1);
        assert_eq!(
            (schedule.overlap(), schedule.misfire()),
            (Overlap::Queue, Misfire::RunOnce)
        );
        assert!(schedule.paused());
        // What to_body gives is a create request for the same schedule.
        assert_eq!(parse(schedule.to_body()).unwrap(), schedule);
        let err = parse(json!({
            "name": "r", "cron": "@daily", "command": "x", "timeout": 0, "parameters": [1]
        }))
        .unwrap_err();
        assert_eq!(fields(err), ["parameters", "timeout"]);
    }

    #[test]
    fn an_edit_is_merged_over_the_schedule_and_checked_whole() {
        let (limits, hosts) = (Limits::default(), HostNames::local_only());
        let current = parse(json!({
            "name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
            "command": "backup", "parameters": {"ticket": 7}, "overlap": "skip"
        }))
        .unwrap();
        let patch = |body: Value| NewSchedule::patched(&current, &body, &limits, &hosts);

        let edited = patch(json!({"cron": "0 3 * * *", "paused": true})).unwrap();
        assert_eq!(edited.timetable().cron(), "0 3 * * *");
        assert_eq!(edited.timetable().timezone(), "Europe/Berlin", "kept");
        assert_eq!(edited.overlap(), Overlap::Skip, "kept");
        assert!(edited.paused());
        assert_eq!(
            edited.job().parameters().unwrap().json(),
            &json!({"ticket": 7})
        );

        // Null goes back to the default; parameters are replaced whole.
        let reset = patch(json!({"overlap": null, "parameters": null})).unwrap();
        assert_eq!(reset.overlap(), Overlap::Allow);
        assert!(reset.job().parameters().is_none());
        let replaced = patch(json!({"parameters": {"cwd": "/srv"}})).unwrap();
        assert_eq!(
            replaced.job().parameters().unwrap().json(),
            &json!({"cwd": "/srv"})
        );

        assert_eq!(patch(json!({})).unwrap(), current);
        assert_eq!(
            fields(patch(json!({"cron": "0 0 30 2 *", "id": "x", "colour": 1})).unwrap_err()),
            ["colour", "cron", "id"]
        );
        assert_eq!(fields(patch(json!({"name": null})).unwrap_err()), ["name"]);
        assert_eq!(fields(patch(json!("cron")).unwrap_err()), ["body"]);
    }

    #[test]
    fn a_replacement_ignores_what_get_added() {
        let (limits, hosts) = (Limits::default(), HostNames::local_only());
        let mut fetched = nightly();
        let extra = json!({
            "id": ScheduleId::new(), "next_fire_times": ["2026-01-01T02:30:00Z"],
            "last_job": null, "created_at": "2026-01-01T00:00:00Z", "modified_at": 5
        });
        for (name, value) in extra.as_object().unwrap() {
            fetched[name] = value.clone();
        }
        let put = NewSchedule::parse_put(&fetched, &limits, &hosts).unwrap();
        assert_eq!(put, parse(nightly()).unwrap());
        assert_eq!(
            fields(parse(fetched).unwrap_err()),
            [
                "created_at",
                "id",
                "last_job",
                "modified_at",
                "next_fire_times"
            ]
        );
        let mut unknown = nightly();
        unknown["colour"] = json!("red");
        assert!(NewSchedule::parse_put(&unknown, &limits, &hosts).is_err());
    }

    #[test]
    fn policies_and_ids_have_their_wire_names() {
        assert_eq!(
            serde_json::to_value(Misfire::RunOnce).unwrap(),
            json!("run_once")
        );
        assert_eq!(
            serde_json::from_value::<Overlap>(json!("queue")).unwrap(),
            Overlap::Queue
        );
        for overlap in Overlap::ALL {
            assert_eq!(overlap.as_str().parse::<Overlap>(), Ok(*overlap));
            assert_eq!(
                serde_json::to_value(overlap).unwrap(),
                json!(overlap.as_str())
            );
        }
        for misfire in Misfire::ALL {
            assert_eq!(misfire.to_string().parse::<Misfire>(), Ok(*misfire));
        }
        assert_eq!(
            (Overlap::default(), Misfire::default()),
            (Overlap::Allow, Misfire::Skip)
        );
        assert!("Allow".parse::<Overlap>().is_err());
        let err = parse(json!({"name": "n", "cron": "@daily", "command": "x", "overlap": 1}));
        assert_eq!(
            err.unwrap_err().details[0].message,
            "must be one of allow, skip, queue"
        );

        let id = ScheduleId::new();
        assert_eq!(ScheduleId::parse(&id.to_string()), Some(id));
        assert_eq!(ScheduleId::parse("nightly"), None);
        assert_eq!(serde_json::to_value(id).unwrap(), json!(id.to_string()));
        assert_eq!(ScheduleId::from(id.as_uuid()), id);
    }
}
