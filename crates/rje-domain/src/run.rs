//! A run: one command sent to many hosts at once, one job per host, with
//! how many may run together and how many failures it tolerates; and how
//! each host's job ended, as an operator reads it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Collector, ValidationError};
use crate::hosts::HostNames;
use crate::job::{Job, JobId, Settlement, Status, is_timeout_error, string_enum, uuid_id};
use crate::limits::Limits;
use crate::new_job::{NewJob, as_object, optional, reject_foreign_fields};

uuid_id!(
    /// A run's identity.
    RunId
);

string_enum! {
    /// How one host's job ended, as an operator reads it: the job's final
    /// status told apart by what stopped it. `Skipped` never ran: its run
    /// had failed too often before its turn came.
    HostOutcome { Success, Failed, TimedOut, Unreachable, AuthFailed, Cancelled, Skipped }
}

impl HostOutcome {
    /// Counts towards a run's `max_failures`: the host was tried and did
    /// not do what was asked. A cancel or a skip is nobody's failure.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::TimedOut | Self::Unreachable | Self::AuthFailed
        )
    }

    /// The outcome of a final state with no more telling cause: a command
    /// that ran and failed, or timed out.
    pub fn of_status(status: Status, error: Option<&str>) -> Option<Self> {
        match status {
            Status::Queued | Status::Running => None,
            Status::Success => Some(Self::Success),
            Status::Cancelled => Some(Self::Cancelled),
            Status::Failed if error.is_some_and(is_timeout_error) => Some(Self::TimedOut),
            Status::Failed => Some(Self::Failed),
        }
    }
}

/// Why a command could not start on its host, as far as an outcome cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartCause {
    /// The host could not be reached: no connection, or a host key that
    /// does not match what rje knows.
    Unreachable,
    /// The host answered and refused rje's credentials.
    AuthFailed,
    /// Anything else (a store write, a channel refused).
    #[default]
    Other,
}

impl StartCause {
    /// The outcome of a job that ended because its command could not start.
    pub fn outcome(self) -> HostOutcome {
        match self {
            Self::Unreachable => HostOutcome::Unreachable,
            Self::AuthFailed => HostOutcome::AuthFailed,
            Self::Other => HostOutcome::Failed,
        }
    }
}

/// How many failed hosts a run tolerates before it skips the hosts whose
/// turn has not come: a count, or a share of the run's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureLimit {
    Count(u32),
    Percent(u8),
}

impl FailureLimit {
    /// The most failed hosts among `hosts` that do not yet stop the run:
    /// one more exceeds the limit. A share rounds down, as Ansible's
    /// `max_fail_percentage` does.
    pub fn allowed(self, hosts: usize) -> u32 {
        match self {
            Self::Count(count) => count,
            Self::Percent(percent) => {
                u32::try_from(hosts * usize::from(percent) / 100).unwrap_or(u32::MAX)
            }
        }
    }

    fn parse(value: &Value) -> Result<Self, String> {
        const RULE: &str = "must be a whole number of hosts (0 or more) or a percentage \
             such as \"10%\" (0% to 100%)";
        match value {
            Value::Number(number) => number
                .as_u64()
                .and_then(|count| u32::try_from(count).ok())
                .map(Self::Count)
                .ok_or_else(|| RULE.to_owned()),
            Value::String(text) => text.parse(),
            _ => Err(RULE.to_owned()),
        }
    }
}

impl FromStr for FailureLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const RULE: &str = "must be a whole number of hosts (0 or more) or a percentage \
             such as \"10%\" (0% to 100%)";
        let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let parsed = match text.strip_suffix('%') {
            Some(percent) if digits(percent) => percent
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .map(Self::Percent),
            None if digits(text) => text.parse::<u32>().ok().map(Self::Count),
            _ => None,
        };
        parsed.ok_or_else(|| RULE.to_owned())
    }
}

impl fmt::Display for FailureLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(count) => write!(f, "{count}"),
            Self::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// What a run is sent to: named hosts, or every host carrying all of the
/// given labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Hosts(Vec<String>),
    Labels(Vec<String>),
}

/// The explicit limits of a run.
pub const MAX_RUN_HOSTS: usize = 1000;
pub const DEFAULT_MAX_PARALLEL: u32 = 10;
/// A run's jobs are not retried when they cannot start unless asked: an
/// unreachable host is reported at once, as `ansible -a` does.
pub const DEFAULT_RUN_MAX_RETRIES: u32 = 0;

const RUN_FIELDS: &[&str] = &[
    "hosts",
    "labels",
    "max_parallel",
    "max_failures",
    "stop_on_first_failure",
];
const TEMPLATE_FIELDS: &[&str] = &[
    "command",
    "priority",
    "timeout",
    "parameters",
    "max_retries",
];

/// A validated request for a run. Only [`NewRun::parse`] and
/// [`NewRun::retry`] make one.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    template: NewJob,
    target: Target,
    hosts: Vec<String>,
    /// For a retry, the job each host's new job runs again (same order).
    previous: Vec<JobId>,
    max_parallel: u32,
    max_failures: Option<FailureLimit>,
    retry_of: Option<RunId>,
    submitted_by: Option<String>,
}

impl NewRun {
    /// Validates a run request: the job fields as `POST /jobs/` takes them
    /// (no `host`: the target says where), the target, and the controls.
    pub fn parse(
        body: &Value,
        limits: &Limits,
        known: &HostNames,
    ) -> Result<Self, ValidationError> {
        let fields = as_object(body)?;
        let mut errors = Collector::default();
        const JOB_ONLY: [&str; 3] = ["host", "streaming", "retry_on_failure"];
        let allowed: Vec<&str> = RUN_FIELDS
            .iter()
            .chain(TEMPLATE_FIELDS)
            .chain(&JOB_ONLY)
            .copied()
            .collect();
        reject_foreign_fields(fields, &allowed, &mut errors);
        for name in JOB_ONLY {
            if fields.contains_key(name) {
                errors.push(name, "is not taken by a run (its target names the hosts)");
            }
        }
        let mut template_fields: Map<String, Value> = fields
            .iter()
            .filter(|(name, _)| TEMPLATE_FIELDS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if !template_fields.contains_key("max_retries") {
            template_fields.insert("max_retries".into(), DEFAULT_RUN_MAX_RETRIES.into());
        }
        let template = match NewJob::parse(&Value::Object(template_fields), limits, known) {
            Ok(template) => Some(template),
            Err(err) => {
                for detail in err.details {
                    errors.push(&detail.field, detail.message);
                }
                None
            }
        };

        let target = parse_target(fields, &mut errors);
        let hosts = target
            .as_ref()
            .and_then(|target| errors.take(target_field(target), resolve(target, known)));
        let max_parallel = optional(fields, "max_parallel", &mut errors, |v| {
            parse_count(v, 1, MAX_RUN_HOSTS as u32)
        })
        .unwrap_or(DEFAULT_MAX_PARALLEL);
        let max_failures = optional(fields, "max_failures", &mut errors, FailureLimit::parse);
        let stop_first = optional(fields, "stop_on_first_failure", &mut errors, |v| {
            v.as_bool()
                .ok_or_else(|| "must be true or false".to_owned())
        })
        .unwrap_or(false);
        if stop_first && max_failures.is_some() {
            errors.push(
                "stop_on_first_failure",
                "cannot be given with max_failures: it means max_failures 0",
            );
        }
        errors.finish()?;
        let (Some(template), Some(target), Some(hosts)) = (template, target, hosts) else {
            // `finish` returned Ok, so the template, target and hosts parsed.
            return Err(ValidationError::field("body", "is incomplete"));
        };
        Ok(Self {
            template,
            target,
            hosts,
            previous: Vec::new(),
            max_parallel,
            max_failures: if stop_first {
                Some(FailureLimit::Count(0))
            } else {
                max_failures
            },
            retry_of: None,
            submitted_by: None,
        })
    }

    /// A run over the hosts of `run` whose job did not succeed (Skipped
    /// ones included), in the first run's order, with the same command and
    /// controls, linked to it; each new job is linked to the job it runs
    /// again. Only for a run that ended (a job still queued or running has
    /// no outcome yet) with some host that did not succeed.
    pub fn retry(run: &Run, jobs: &[Job]) -> Result<Self, RunConflict> {
        let status = run.status();
        if !status.is_final() {
            return Err(RunConflict::NotEnded(status));
        }
        let again: Vec<&Job> = jobs
            .iter()
            .filter(|job| job.outcome.is_some_and(|o| o != HostOutcome::Success))
            .collect();
        let first = again.first().ok_or(RunConflict::NothingToRunAgain)?;
        let hosts: Vec<String> = again.iter().filter_map(|job| job.host.clone()).collect();
        Ok(Self {
            template: NewJob::again(first),
            target: Target::Hosts(hosts.clone()),
            hosts,
            previous: again.iter().map(|job| job.id).collect(),
            max_parallel: run.max_parallel,
            max_failures: run.max_failures,
            retry_of: Some(run.id),
            submitted_by: None,
        })
    }

    /// Every host of the run still configured: a host that left the
    /// inventory since would make a job no worker can run.
    pub fn hosts_still_known(&self, known: &HostNames) -> Result<(), ValidationError> {
        let gone: Vec<&str> = self
            .hosts
            .iter()
            .filter(|host| !known.is_known(host))
            .map(String::as_str)
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        Err(ValidationError::field(
            "hosts",
            format!(
                "the host {} is no longer configured; start a new run without it",
                quoted(&gone)
            ),
        ))
    }

    /// The same run, recorded as submitted by the token `name`.
    pub fn submitted_by(self, name: Option<String>) -> Self {
        Self {
            submitted_by: name,
            ..self
        }
    }

    pub fn submitter(&self) -> Option<&str> {
        self.submitted_by.as_deref()
    }

    pub fn command(&self) -> &str {
        self.template.command()
    }

    /// The hosts, in the order their jobs queue.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn max_parallel(&self) -> u32 {
        self.max_parallel
    }

    pub fn max_failures(&self) -> Option<FailureLimit> {
        self.max_failures
    }

    /// The most failed hosts before the rest are skipped; `None`: no limit.
    pub fn failures_allowed(&self) -> Option<u32> {
        self.max_failures
            .map(|limit| limit.allowed(self.hosts.len()))
    }

    pub fn retry_of(&self) -> Option<RunId> {
        self.retry_of
    }

    /// One job per host, in order, each recording its run (and, in a
    /// retry, the job it runs again).
    pub fn jobs(&self, run: RunId) -> Vec<NewJob> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(place, host)| {
                self.template
                    .clone()
                    .on_host(host, self.previous.get(place).copied())
                    .in_run(run, self.max_parallel)
                    .submitted_by(self.submitted_by.clone())
            })
            .collect()
    }
}

fn target_field(target: &Target) -> &'static str {
    match target {
        Target::Hosts(_) => "hosts",
        Target::Labels(_) => "labels",
    }
}

fn parse_target(fields: &Map<String, Value>, errors: &mut Collector) -> Option<Target> {
    let names = |field: &str, errors: &mut Collector| {
        optional(fields, field, errors, |value| {
            let list = value.as_array().ok_or("must be a list of names")?;
            if list.is_empty() {
                return Err("must name at least one".to_owned());
            }
            if list.len() > MAX_RUN_HOSTS {
                return Err(format!(
                    "names {} ; the limit is {MAX_RUN_HOSTS}",
                    list.len()
                ));
            }
            let mut names: Vec<String> = Vec::with_capacity(list.len());
            for item in list {
                let name = item.as_str().ok_or("must be a list of names")?;
                if !names.iter().any(|seen| seen == name) {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        })
    };
    let hosts = names("hosts", errors);
    let labels = names("labels", errors);
    match (hosts, labels) {
        (Some(_), Some(_)) => {
            errors.push("labels", "cannot be given with hosts: name one target");
            None
        }
        (Some(hosts), None) => Some(Target::Hosts(hosts)),
        (None, Some(labels)) => Some(Target::Labels(labels)),
        (None, None) => {
            if !errors.has("hosts") && !errors.has("labels") {
                errors.push("hosts", "is required (or labels): the hosts to run on");
            }
            None
        }
    }
}

/// The hosts a target names, in a stable order: as listed, or by name for
/// labels. Every host must be known, every label carried by some host,
/// and the target must come to at least one host.
fn resolve(target: &Target, known: &HostNames) -> Result<Vec<String>, String> {
    match target {
        Target::Hosts(hosts) => {
            let unknown: Vec<&str> = hosts
                .iter()
                .filter(|host| !known.is_known(host))
                .map(String::as_str)
                .collect();
            if unknown.is_empty() {
                Ok(hosts.clone())
            } else {
                Err(format!("unknown host {}", quoted(&unknown)))
            }
        }
        Target::Labels(labels) => {
            let unknown: Vec<&str> = labels
                .iter()
                .filter(|label| !known.names().any(|host| carries(known, host, label)))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(format!("no host carries the label {}", quoted(&unknown)));
            }
            let hosts: Vec<String> = known
                .names()
                .filter(|host| labels.iter().all(|label| carries(known, host, label)))
                .map(str::to_owned)
                .collect();
            if hosts.is_empty() {
                return Err(format!(
                    "no host carries every one of the labels {}",
                    quoted(&labels.iter().map(String::as_str).collect::<Vec<_>>())
                ));
            }
            if hosts.len() > MAX_RUN_HOSTS {
                return Err(format!(
                    "come to {} hosts; the limit is {MAX_RUN_HOSTS}",
                    hosts.len()
                ));
            }
            Ok(hosts)
        }
    }
}

fn carries(known: &HostNames, host: &str, label: &str) -> bool {
    known.labels_of(host).iter().any(|l| l == label)
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("{name:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_count(value: &Value, min: u32, max: u32) -> Result<u32, String> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
}

/// A step a run's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunConflict {
    #[error("the run is {0}: nothing is left to cancel")]
    Ended(Status),
    #[error("the run is {0}: run it again once it has ended")]
    NotEnded(Status),
    #[error("every host succeeded: there is nothing to run again")]
    NothingToRunAgain,
    #[error("the run was run again already: retry that run instead")]
    RunAgainAlready,
}

/// A run as stored, with its tally of its jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: RunId,
    pub command: String,
    pub target: Target,
    pub hosts: Vec<String>,
    pub max_parallel: u32,
    pub max_failures: Option<FailureLimit>,
    pub cancel_requested: bool,
    pub submitted_by: Option<String>,
    pub cancelled_by: Option<String>,
    pub retry_of: Option<RunId>,
    pub created_at: DateTime<Utc>,
    pub tally: RunTally,
}

impl Run {
    /// Running until every job is final; then Success only if every host
    /// succeeded, Cancelled if the run was cancelled, else Failed. A host
    /// whose job is gone (a prune by status) did not succeed.
    pub fn status(&self) -> Status {
        let counted = self.tally.total();
        match self.tally.status(self.cancel_requested) {
            Status::Success if counted < self.hosts.len() as u64 => Status::Failed,
            status => status,
        }
    }

    /// A run that ended has nothing left to cancel.
    pub fn when_cancelled(&self) -> Result<(), RunConflict> {
        match self.status() {
            status if status.is_final() => Err(RunConflict::Ended(status)),
            _ => Ok(()),
        }
    }

    /// When the last job ended, once the run is final.
    pub fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.status()
            .is_final()
            .then_some(self.tally.last_completed_at)
            .flatten()
    }
}

/// How a run's jobs stand: how many have each outcome, how many are
/// queued or running, and when the last one ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTally {
    pub outcomes: BTreeMap<HostOutcome, u64>,
    pub queued: u64,
    pub running: u64,
    pub last_completed_at: Option<DateTime<Utc>>,
}

impl PartialOrd for HostOutcome {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HostOutcome {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let place = |o: &Self| Self::ALL.iter().position(|x| x == o);
        place(self).cmp(&place(other))
    }
}

impl RunTally {
    /// Counts `jobs` of one kind: their status, outcome and latest end.
    pub fn add(
        &mut self,
        status: Status,
        outcome: Option<HostOutcome>,
        jobs: u64,
        completed_at: Option<DateTime<Utc>>,
    ) {
        match (status, outcome) {
            (Status::Queued, _) => self.queued += jobs,
            (Status::Running, _) => self.running += jobs,
            (status, outcome) => {
                let outcome = outcome
                    .or_else(|| HostOutcome::of_status(status, None))
                    .unwrap_or(HostOutcome::Failed);
                *self.outcomes.entry(outcome).or_default() += jobs;
            }
        }
        if completed_at > self.last_completed_at {
            self.last_completed_at = completed_at;
        }
    }

    /// The tally of `jobs`.
    pub fn of(jobs: &[Job]) -> Self {
        let mut tally = Self::default();
        for job in jobs {
            tally.add(job.status, job.outcome, 1, job.completed_at);
        }
        tally
    }

    pub fn count(&self, outcome: HostOutcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    pub fn failures(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(outcome, _)| outcome.is_failure())
            .map(|(_, jobs)| jobs)
            .sum()
    }

    /// Every job counted, ended or not.
    pub fn total(&self) -> u64 {
        self.outcomes.values().sum::<u64>() + self.queued + self.running
    }

    /// The run's status from its jobs: Running while any has not ended;
    /// Success when every one succeeded; Cancelled when the run was
    /// cancelled, or when its jobs were cancelled one by one and none
    /// failed; else Failed.
    pub fn status(&self, cancel_requested: bool) -> Status {
        let finished: u64 = self.outcomes.values().sum();
        let cancelled = self.count(HostOutcome::Cancelled);
        if self.queued + self.running > 0 {
            Status::Running
        } else if finished > 0 && self.count(HostOutcome::Success) == finished {
            Status::Success
        } else if cancel_requested || (cancelled > 0 && self.failures() == 0) {
            Status::Cancelled
        } else {
            Status::Failed
        }
    }
}

/// The error of a job skipped because its run failed too often.
pub fn skipped_error(allowed: u32) -> String {
    format!("skipped: more than {allowed} of the run's hosts failed before this one's turn came")
}

impl Settlement {
    /// The outcome of this final state when nothing more telling is known.
    pub fn plain_outcome(&self) -> Option<HostOutcome> {
        HostOutcome::of_status(self.status, self.error.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn known() -> HostNames {
        HostNames::new("local", ["web-1", "web-2", "db-1"])
            .with_labels("web-1", &["web".into(), "eu".into()])
            .with_labels("web-2", &["web".into(), "us".into()])
            .with_labels("db-1", &["db".into(), "eu".into()])
    }

    fn parse(body: Value) -> Result<NewRun, ValidationError> {
        NewRun::parse(&body, &Limits::default(), &known())
    }

    fn fields(err: ValidationError) -> Vec<String> {
        err.details.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn a_run_over_hosts_keeps_their_order_and_drops_repeats() {
        let run =
            parse(json!({"command": "uptime", "hosts": ["web-2", "web-1", "web-2"]})).unwrap();
        assert_eq!(run.hosts(), ["web-2", "web-1"]);
        assert_eq!(run.max_parallel(), DEFAULT_MAX_PARALLEL);
        assert_eq!(run.failures_allowed(), None);
        let jobs = run.jobs(RunId::new());
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].host(), "web-2");
        assert_eq!(jobs[0].max_retries(), DEFAULT_RUN_MAX_RETRIES);
    }

    #[test]
    fn labels_take_every_host_carrying_all_of_them() {
        let run = parse(json!({"command": "uptime", "labels": ["eu"]})).unwrap();
        assert_eq!(run.hosts(), ["db-1", "web-1"]);
        let run = parse(json!({"command": "uptime", "labels": ["web", "eu"]})).unwrap();
        assert_eq!(run.hosts(), ["web-1"]);
        let err = parse(json!({"command": "uptime", "labels": ["web", "db"]})).unwrap_err();
        assert!(err.details[0].message.contains("every one"), "{err}");
    }

    #[test]
    fn an_unknown_host_or_label_or_empty_target_is_named() {
        let err = parse(json!({"command": "x", "hosts": ["web-1", "nope"]})).unwrap_err();
        assert_eq!(fields(err.clone()), ["hosts"]);
        assert!(err.details[0].message.contains("\"nope\""));
        let err = parse(json!({"command": "x", "labels": ["gpu"]})).unwrap_err();
        assert!(err.details[0].message.contains("\"gpu\""));
        assert_eq!(
            fields(parse(json!({"command": "x", "hosts": []})).unwrap_err()),
            ["hosts"]
        );
        assert_eq!(
            fields(parse(json!({"command": "x"})).unwrap_err()),
            ["hosts"]
        );
        assert_eq!(
            fields(
                parse(json!({"command": "x", "hosts": ["web-1"], "labels": ["web"]})).unwrap_err()
            ),
            ["labels"]
        );
    }

    #[test]
    fn every_mistake_is_named_at_once() {
        let err = parse(json!({
            "command": "", "hosts": ["web-1"], "max_parallel": 0, "max_failures": "200%",
            "host": "web-1", "priority": "Urgent"
        }))
        .unwrap_err();
        let mut named = fields(err);
        named.sort();
        assert_eq!(
            named,
            [
                "command",
                "host",
                "max_failures",
                "max_parallel",
                "priority"
            ]
        );
    }

    #[test]
    fn failure_limits_are_counts_or_shares() {
        let run = parse(
            json!({"command": "x", "hosts": ["web-1", "web-2", "db-1"], "max_failures": "50%"}),
        )
        .unwrap();
        assert_eq!(run.failures_allowed(), Some(1));
        let run = parse(json!({"command": "x", "hosts": ["web-1"], "stop_on_first_failure": true}))
            .unwrap();
        assert_eq!(run.failures_allowed(), Some(0));
        assert_eq!(FailureLimit::Percent(10).allowed(50), 5);
        assert_eq!(FailureLimit::Percent(10).allowed(5), 0);
        assert_eq!("3".parse::<FailureLimit>(), Ok(FailureLimit::Count(3)));
        assert!("-1".parse::<FailureLimit>().is_err());
        assert!("101%".parse::<FailureLimit>().is_err());
        for sloppy in ["+5", "+10%", " 10%", "10 %", "%", ""] {
            assert!(sloppy.parse::<FailureLimit>().is_err(), "{sloppy:?}");
        }
        assert_eq!(FailureLimit::Percent(10).to_string(), "10%");
        let err = parse(json!({"command": "x", "hosts": ["web-1"], "stop_on_first_failure": true, "max_failures": 1}))
            .unwrap_err();
        assert_eq!(fields(err), ["stop_on_first_failure"]);
    }

    #[test]
    fn a_run_is_running_until_every_job_is_final() {
        let mut tally = RunTally::default();
        tally.add(Status::Success, Some(HostOutcome::Success), 2, None);
        tally.add(Status::Running, None, 1, None);
        assert_eq!(tally.status(false), Status::Running);
        let mut done = RunTally::default();
        done.add(Status::Success, Some(HostOutcome::Success), 3, None);
        assert_eq!(done.status(false), Status::Success);
        done.add(Status::Cancelled, Some(HostOutcome::Skipped), 1, None);
        assert_eq!(done.status(false), Status::Failed);
        assert_eq!(done.status(true), Status::Cancelled);
        assert_eq!(done.failures(), 0);
        done.add(Status::Failed, Some(HostOutcome::Unreachable), 1, None);
        assert_eq!(done.failures(), 1);
        let mut cancelled_one_by_one = RunTally::default();
        cancelled_one_by_one.add(Status::Success, Some(HostOutcome::Success), 1, None);
        cancelled_one_by_one.add(Status::Cancelled, Some(HostOutcome::Cancelled), 2, None);
        assert_eq!(cancelled_one_by_one.status(false), Status::Cancelled);
    }

    #[test]
    fn outcomes_tell_a_timeout_from_a_failure() {
        assert_eq!(
            HostOutcome::of_status(Status::Failed, Some("timed out after 3 s")),
            Some(HostOutcome::TimedOut)
        );
        assert_eq!(
            HostOutcome::of_status(Status::Failed, None),
            Some(HostOutcome::Failed)
        );
        assert_eq!(HostOutcome::of_status(Status::Running, None), None);
        assert_eq!(StartCause::AuthFailed.outcome(), HostOutcome::AuthFailed);
    }
}
