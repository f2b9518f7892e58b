//! How results look: tables and colour on a terminal, plain text when
//! piped, JSON on request.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use comfy_table::presets::{NOTHING, UTF8_FULL_CONDENSED};
use comfy_table::{ContentArrangement, Table};
use console::style;
use indicatif::{ProgressBar, ProgressStyle};
use rje_domain::{AuditEntry, Scope, Status, Stream, Token, printable};
use rje_proto::{JobResponse, LastJob, RunResponse, ScheduleResponse};
use serde::Serialize;
use serde_json::Value;

use crate::ClientError;
use crate::runs::view::{
    counts_text, duration_text, host_state_text, job_duration, one_line as view_line,
};

/// What the terminals around the client can do, and what the user asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presenter {
    pub json: bool,
    pub stdout_tty: bool,
    pub stderr_tty: bool,
    pub stdin_tty: bool,
}

impl Presenter {
    pub(crate) fn new(json: bool) -> Self {
        let stdout_tty = std::io::stdout().is_terminal();
        if !stdout_tty || json {
            console::set_colors_enabled(false);
        }
        if !std::io::stderr().is_terminal() || json {
            console::set_colors_enabled_stderr(false);
        }
        Self {
            json,
            stdout_tty,
            stderr_tty: std::io::stderr().is_terminal(),
            stdin_tty: std::io::stdin().is_terminal(),
        }
    }

    /// Decoration (spinners, summaries) goes to stderr, and only when a
    /// person is watching it.
    pub(crate) fn decorate(&self) -> bool {
        self.stderr_tty && !self.json
    }

    /// Whether questions can be asked and answered.
    pub(crate) fn interactive(&self) -> bool {
        self.stdin_tty && self.stderr_tty
    }

    pub(crate) fn spinner(&self, message: String) -> Option<ProgressBar> {
        if !self.decorate() {
            return None;
        }
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(message);
        spinner.enable_steady_tick(Duration::from_millis(100));
        Some(spinner)
    }

    fn table(&self) -> Table {
        let mut table = Table::new();
        if self.stdout_tty {
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic);
        } else {
            table.load_preset(NOTHING);
        }
        table
    }

    /// One job, field by field.
    pub(crate) fn job_table(&self, job: &JobResponse) -> String {
        let mut table = self.table();
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
        };
        let text = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".to_owned());
        let rows = [
            ("id", job.id.to_string()),
            ("status", status_text(job.status)),
            ("command", job.command.clone()),
            ("priority", job.priority.to_string()),
            ("host", text(&job.host)),
            ("timeout", format!("{} s", job.timeout)),
            (
                "exit code",
                job.exit_code.map_or("-".into(), |c| c.to_string()),
            ),
            ("error", text(&job.error)),
            (
                "attempts",
                format!("{} (max retries {})", job.attempts, job.max_retries),
            ),
            ("created", job.created_at.to_rfc3339()),
            ("started", time(job.started_at)),
            ("completed", time(job.completed_at)),
            ("process group", text(&job.remote_process_id)),
            ("submitted by", text(&job.submitted_by)),
        ];
        for (name, value) in rows {
            table.add_row(vec![name.to_owned(), value]);
        }
        if let Some(name) = &job.cancelled_by {
            table.add_row(vec!["cancelled by".to_owned(), name.clone()]);
        }
        for (name, value) in lineage_rows(job) {
            table.add_row(vec![name.to_owned(), value]);
        }
        table.to_string()
    }

    /// One schedule, field by field. Its next fire times are on the wall
    /// clock of its zone, the clock its cron expression reads, with UTC
    /// beside them.
    pub(crate) fn schedule_table(&self, schedule: &ScheduleResponse) -> String {
        let mut table = self.table();
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let next = if schedule.next_fire_times.is_empty() {
            "none".to_owned()
        } else {
            schedule
                .next_fire_times
                .iter()
                .map(|at| fire_time_with_utc(at, &schedule.timezone))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let rows = [
            ("id", schedule.id.to_string()),
            ("name", schedule.name.clone()),
            ("cron", schedule.cron.clone()),
            ("time zone", schedule.timezone.clone()),
            ("paused", yes_no(schedule.paused)),
            ("next fire times", next),
            ("last job", last_job_text(schedule.last_job.as_ref(), false)),
            ("command", schedule.command.clone()),
            ("priority", schedule.priority.to_string()),
            ("host", schedule.host.clone()),
            ("timeout", format!("{} s", schedule.timeout)),
            ("max retries", schedule.max_retries.to_string()),
            ("retry on failure", yes_no(schedule.retry_on_failure)),
            ("overlap", schedule.overlap.to_string()),
            ("misfire", schedule.misfire.to_string()),
            (
                "parameters",
                schedule
                    .parameters
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), Value::to_string),
            ),
            (
                "created by",
                schedule
                    .created_by
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            ("created", schedule.created_at.to_rfc3339()),
            ("modified", schedule.modified_at.to_rfc3339()),
        ];
        for (name, value) in rows {
            table.add_row(vec![name.to_owned(), value]);
        }
        table.to_string()
    }

    /// A page of schedules: one line each. On a terminal, short job ids
    /// keep it narrow; piped, whole ones can be used.
    pub(crate) fn schedules_table(&self, schedules: &[ScheduleResponse]) -> String {
        let mut table = self.table();
        table.set_header(vec![
            "NAME",
            "CRON",
            "TZ",
            "NEXT FIRE",
            "LAST JOB",
            "PAUSED",
            "OVERLAP",
        ]);
        for schedule in schedules {
            table.add_row(vec![
                schedule.name.clone(),
                schedule.cron.clone(),
                schedule.timezone.clone(),
                schedule.next_fire_times.first().map_or_else(
                    || "-".to_owned(),
                    |at| fire_time_text(at, &schedule.timezone),
                ),
                last_job_text(schedule.last_job.as_ref(), self.stdout_tty),
                if schedule.paused { "yes" } else { "no" }.to_owned(),
                schedule.overlap.to_string(),
            ]);
        }
        table.to_string()
    }

    /// The answer of `GET /tokens/`: never a secret, which the server
    /// does not keep.
    pub(crate) fn tokens_table(&self, tokens: &[Token]) -> String {
        let mut table = self.table();
        table.set_header(vec!["NAME", "ROLE", "SCOPE", "CREATED", "LAST USED"]);
        for token in tokens {
            table.add_row(vec![
                token.name.clone(),
                token.role.to_string(),
                scope_text(&token.scope),
                token.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                token.last_used_at.map_or_else(
                    || "never".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
                ),
            ]);
        }
        table.to_string()
    }

    /// A page of the audit trail, newest first. Its text is what clients
    /// sent: nothing in it reaches the terminal as a control character.
    pub(crate) fn audit_table(&self, entries: &[AuditEntry]) -> String {
        let mut table = self.table();
        table.set_header(vec![
            "AT", "TOKEN", "CLIENT", "METHOD", "ROUTE", "TARGET", "STATUS",
        ]);
        let text = |t: &Option<String>| t.as_deref().map_or_else(|| "-".to_owned(), printable);
        for entry in entries {
            table.add_row(vec![
                entry.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                text(&entry.token),
                printable(&entry.client),
                printable(&entry.method),
                printable(&entry.route),
                text(&entry.target),
                entry.status.to_string(),
            ]);
        }
        table.to_string()
    }

    /// The answer of `GET /hosts/`; `*` marks the default host.
    pub(crate) fn hosts_table(&self, listed: &Value) -> String {
        let mut table = self.table();
        table.set_header(vec![
            "NAME", "KIND", "TARGET", "DURABLE", "HEALTH", "RUNNING",
        ]);
        for host in listed["hosts"].as_array().into_iter().flatten() {
            table.add_row(host_row(host));
        }
        table.to_string()
    }

    /// A page of runs, one line each; their jobs are not in a list.
    pub(crate) fn runs_table(&self, runs: &[RunResponse]) -> String {
        let mut table = self.table();
        table.set_header(vec![
            "ID", "STATUS", "HOSTS", "OUTCOMES", "CREATED", "DURATION", "COMMAND",
        ]);
        for run in runs {
            table.add_row(vec![
                run.id.to_string(),
                status_text(run.status),
                run.hosts.len().to_string(),
                counts_text(&run.counts),
                run.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                duration_text(run.duration),
                one_line(&run.command, 40),
            ]);
        }
        table.to_string()
    }

    /// One run, field by field. Its hosts are counted here and listed by
    /// [`Self::run_hosts_table`]: a thousand names are no field.
    pub(crate) fn run_table(&self, run: &RunResponse) -> String {
        let mut table = self.table();
        let text = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".to_owned());
        let time = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
        let rows = [
            ("id", run.id.to_string()),
            ("status", status_text(run.status)),
            ("command", run.command.clone()),
            ("hosts", run.hosts.len().to_string()),
            (
                "labels",
                run.labels
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |labels| labels.join(", ")),
            ),
            ("outcomes", counts_text(&run.counts)),
            ("max parallel", run.max_parallel.to_string()),
            (
                "max failures",
                crate::runs::max_failures_text(run.max_failures.as_ref()),
            ),
            ("created", run.created_at.to_rfc3339()),
            ("completed", time(run.completed_at)),
            ("duration", duration_text(run.duration)),
            ("submitted by", text(&run.submitted_by)),
        ];
        for (name, value) in rows {
            table.add_row(vec![name.to_owned(), value]);
        }
        if run.cancel_requested {
            let by = run
                .cancelled_by
                .as_ref()
                .map(|name| format!(" by {name}"))
                .unwrap_or_default();
            table.add_row(vec!["cancelled".to_owned(), format!("yes{by}")]);
        }
        if let Some(old) = run.retry_of {
            table.add_row(vec!["retry of".to_owned(), old.to_string()]);
        }
        table.to_string()
    }

    /// A run's jobs, one line per host in the run's order.
    pub(crate) fn run_hosts_table(&self, jobs: &[JobResponse]) -> String {
        let mut table = self.table();
        table.set_header(vec!["HOST", "OUTCOME", "EXIT", "DURATION", "JOB", "ERROR"]);
        for job in jobs {
            table.add_row(vec![
                job.host.clone().unwrap_or_default(),
                host_state_text(job),
                job.exit_code
                    .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                job_duration(job).map_or_else(|| "-".to_owned(), duration_text),
                job.id.to_string(),
                job.error
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |e| one_line(&view_line(e), 60)),
            ]);
        }
        table.to_string()
    }

    pub(crate) fn jobs_table(&self, jobs: &[JobResponse]) -> String {
        let mut table = self.table();
        table.set_header(vec![
            "ID", "STATUS", "PRIORITY", "HOST", "CREATED", "COMMAND",
        ]);
        for job in jobs {
            table.add_row(vec![
                job.id.to_string(),
                status_text(job.status),
                job.priority.to_string(),
                job.host.clone().unwrap_or_default(),
                job.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                one_line(&job.command, 60),
            ]);
        }
        table.to_string()
    }
}

/// Where a job comes from and what ran it again, for the rows that apply.
fn lineage_rows(job: &JobResponse) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if job.retry_on_failure {
        rows.push((
            "retry on failure",
            format!("yes (retry {} of {})", job.retry_number, job.max_retries),
        ));
    }
    if let Some(old) = job.retry_of {
        rows.push(("retry of", old.to_string()));
    }
    if !job.retries.is_empty() {
        let ids: Vec<String> = job.retries.iter().map(ToString::to_string).collect();
        rows.push(("retried as", ids.join("\n")));
    }
    if let Some(schedule) = job.schedule {
        rows.push(("schedule", schedule.to_string()));
    }
    if let Some(at) = job.scheduled_for {
        rows.push(("scheduled for", at.to_rfc3339()));
    }
    rows
}

/// A fire time (RFC 3339, as the server gives it) on the wall clock of
/// `zone`, as the schedule's author reads its cron expression. Shown as
/// it came if either cannot be read here.
pub(crate) fn fire_time_text(at: &str, zone: &str) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(at) else {
        return at.to_owned();
    };
    match zone.parse::<chrono_tz::Tz>() {
        Ok(zone) => at
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => at
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    }
}

/// [`fire_time_text`], with the time in UTC beside it unless the zone's
/// clock is UTC's then.
fn fire_time_with_utc(at: &str, zone: &str) -> String {
    let local = fire_time_text(at, zone);
    match DateTime::parse_from_rfc3339(at) {
        Ok(parsed) if !local.ends_with("UTC") => {
            let utc = parsed.with_timezone(&Utc).format("%H:%M:%S UTC");
            format!("{local} ({utc})")
        }
        _ => local,
    }
}

/// A schedule's last job: its id (the first 8 characters when `short`, as
/// the dashboard writes them) and its status, uncoloured: comfy-table
/// counts colour codes as width, and would wrap the cell.
fn last_job_text(last: Option<&LastJob>, short: bool) -> String {
    let Some(last) = last else {
        return "-".to_owned();
    };
    let id = last.id.to_string();
    let id = if short {
        id.chars().take(8).collect()
    } else {
        id
    };
    format!("{id} {}", last.status)
}

/// A status, coloured when colour is on.
pub(crate) fn status_text(status: Status) -> String {
    let text = style(status.as_str());
    match status {
        Status::Success => text.green(),
        Status::Failed => text.red(),
        Status::Cancelled => text.yellow(),
        Status::Running => text.cyan(),
        Status::Queued => text.dim(),
    }
    .to_string()
}

/// A token's scope in a few words: `every host`, or the hosts it names
/// and the labels whose hosts it covers (`web-1, web-2; labels eu`).
pub(crate) fn scope_text(scope: &Scope) -> String {
    if scope.is_everything() {
        return "every host".to_owned();
    }
    let hosts = scope.hosts.join(", ");
    let labels = scope.labels.join(", ");
    match (hosts.is_empty(), labels.is_empty()) {
        (false, true) => hosts,
        (true, false) => format!("labels {labels}"),
        _ => format!("{hosts}; labels {labels}"),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut short: String = line.chars().take(max).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

pub(crate) fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("rje: cannot encode JSON: {err}"),
    }
}

/// One value as a line of JSON on stdout.
pub(crate) fn print_json_line(value: &impl Serialize) -> Result<(), ClientError> {
    let text = serde_json::to_string(value)
        .map_err(|err| ClientError::Server(format!("cannot encode JSON: {err}")))?;
    write_output(Stream::Stdout, &format!("{text}\n"))
}

/// Writes job output to the stream it came from. A closed pipe (`| head`)
/// is the reader's choice, not an error: [`ClientError::OutputClosed`], so
/// that the client stops following and ends quietly instead of reading
/// the rest of the job for nobody.
pub(crate) fn write_output(stream: Stream, text: &str) -> Result<(), ClientError> {
    let written = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
        Stream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes()).and_then(|()| err.flush())
        }
    };
    match written {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(ClientError::OutputClosed),
        // Any other failure to write is the terminal's, and the job's
        // output stays on the server: following goes on.
        _ => Ok(()),
    }
}

/// One host's row: name, where, health, and whether jobs go there by default.
fn host_row(host: &Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let target = match host["kind"].as_str() {
        Some("ssh") => format!(
            "{}@{}:{}",
            text(&host["user"]),
            text(&host["address"]),
            text(&host["port"])
        ),
        _ => "this machine".to_owned(),
    };
    let health = &host["health"];
    let state = match health["last_error"].as_str() {
        Some(error) if health["state"] == "down" => format!("down: {error}"),
        _ => text(&health["state"]),
    };
    vec![
        format!(
            "{}{}",
            text(&host["name"]),
            if host["default"] == true { " *" } else { "" }
        ),
        text(&host["kind"]),
        target,
        if host["durable"] == true { "yes" } else { "no" }.to_owned(),
        state,
        text(&health["jobs_running"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_reaches_the_terminal_inert() {
        assert_eq!(printable("web-1"), "web-1");
        assert_eq!(printable("a\u{1b}[2K\r\nb"), "a\\u{1b}[2K\\u{d}\\u{a}b");
        assert_eq!(printable("\u{202e}\u{61c}é"), "\\u{202e}\\u{61c}\\u{e9}");
    }

    #[test]
    fn fire_times_read_on_the_schedules_clock() {
        let at = "2026-01-05T02:00:00Z";
        assert_eq!(
            fire_time_text(at, "Europe/Berlin"),
            "2026-01-05 03:00:00 CET"
        );
        assert_eq!(
            fire_time_with_utc(at, "Europe/Berlin"),
            "2026-01-05 03:00:00 CET (02:00:00 UTC)"
        );
        assert_eq!(
            fire_time_with_utc("2026-07-05T02:00:00Z", "America/New_York"),
            "2026-07-04 22:00:00 EDT (02:00:00 UTC)"
        );
        assert_eq!(fire_time_with_utc(at, "UTC"), "2026-01-05 02:00:00 UTC");
        // What cannot be read here is shown as the server gave it.
        assert_eq!(
            fire_time_text(at, "Mars/Olympus"),
            "2026-01-05 02:00:00 UTC"
        );
        assert_eq!(fire_time_text("soon", "UTC"), "soon");
    }

    #[test]
    fn a_scope_reads_in_a_few_words() {
        fn scope(hosts: &[&str], labels: &[&str]) -> Scope {
            Scope {
                hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            }
        }
        assert_eq!(scope_text(&scope(&[], &[])), "every host");
        assert_eq!(scope_text(&scope(&["web-1", "web-2"], &[])), "web-1, web-2");
        assert_eq!(scope_text(&scope(&[], &["eu"])), "labels eu");
        assert_eq!(
            scope_text(&scope(&["web-1"], &["eu", "us"])),
            "web-1; labels eu, us"
        );
    }
}
