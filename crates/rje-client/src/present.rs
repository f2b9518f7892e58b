//! How results look: tables and colour on a terminal, plain text when
//! piped, JSON on request.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use comfy_table::presets::{NOTHING, UTF8_FULL_CONDENSED};
use comfy_table::{ContentArrangement, Table};
use console::style;
use indicatif::{ProgressBar, ProgressStyle};
use rje_domain::{AuditEntry, Scope, Status, Stream, Token, printable};
use rje_proto::JobResponse;
use serde::Serialize;
use serde_json::Value;

use crate::ClientError;

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
