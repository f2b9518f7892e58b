//! What a person watching a run reads: the live view of its hosts, their
//! output prefixed with their names, the recap once it ends, and the exit
//! code. Pure: text in, text out, so that it can be tested as it reads.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use console::style;
use rje_domain::{HostOutcome, JobId, RunId, Status, Stream};
use rje_proto::{JobResponse, RunCounts, RunMessage, RunResponse};

use crate::ExitCode;

/// The exit code of a followed run: 0 only if every host succeeded; 130
/// for a run cancelled (or left running, when the user detached), as for
/// a job; else [`ExitCode::HOSTS_FAILED`], whatever the hosts' own codes.
pub(crate) fn run_exit_code(status: Status, counts: &RunCounts) -> ExitCode {
    match status {
        Status::Success if counts.not_succeeded() == 0 => ExitCode::SUCCESS,
        Status::Cancelled | Status::Queued | Status::Running => ExitCode::CANCELLED,
        Status::Success | Status::Failed => ExitCode::HOSTS_FAILED,
    }
}

/// One host of a followed run, as the messages tell it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostRow {
    pub host: String,
    pub job: JobId,
    pub status: Status,
    pub outcome: Option<HostOutcome>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// When it last started running, on the server's clock.
    pub started: Option<DateTime<Utc>>,
    /// When it became final.
    pub ended: Option<DateTime<Utc>>,
}

impl HostRow {
    fn of(job: &JobResponse) -> Self {
        Self {
            host: job.host.clone().unwrap_or_default(),
            job: job.id,
            status: job.status,
            outcome: job.outcome,
            exit_code: job.exit_code,
            error: job.error.clone(),
            started: job.started_at,
            ended: job.completed_at,
        }
    }

    fn troubled(&self) -> bool {
        self.outcome
            .is_some_and(|outcome| outcome != HostOutcome::Success)
    }
}

/// A run as followed: the run as first read, with every message applied.
#[derive(Debug, Clone)]
pub(crate) struct RunState {
    pub id: RunId,
    pub status: Status,
    pub counts: RunCounts,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// In the run's host order.
    pub hosts: Vec<HostRow>,
    index: HashMap<JobId, usize>,
}

impl RunState {
    pub(crate) fn new(run: &RunResponse) -> Self {
        let hosts: Vec<HostRow> = run.jobs.iter().map(HostRow::of).collect();
        let index = hosts
            .iter()
            .enumerate()
            .map(|(place, row)| (row.job, place))
            .collect();
        Self {
            id: run.id,
            status: run.status,
            counts: run.counts.clone(),
            created_at: run.created_at,
            completed_at: run.completed_at,
            hosts,
            index,
        }
    }

    pub(crate) fn apply(&mut self, message: &RunMessage) {
        match message {
            RunMessage::Job {
                job_id,
                host,
                status,
                outcome,
                exit_code,
                error,
                timestamp,
            } => {
                let place = *self.index.entry(*job_id).or_insert_with(|| {
                    // A job the first read did not list (a run read
                    // without its jobs): appended as it comes.
                    self.hosts.push(HostRow {
                        host: host.clone(),
                        job: *job_id,
                        status: Status::Queued,
                        outcome: None,
                        exit_code: None,
                        error: None,
                        started: None,
                        ended: None,
                    });
                    self.hosts.len() - 1
                });
                // `index` holds only places in `hosts`: both grow together.
                let row = &mut self.hosts[place];
                if *status == Status::Running && row.status != Status::Running {
                    row.started = Some(*timestamp);
                }
                row.ended = status.is_final().then_some(*timestamp);
                row.status = *status;
                row.outcome = *outcome;
                row.exit_code = *exit_code;
                row.error.clone_from(error);
            }
            RunMessage::Run {
                status,
                counts,
                completed_at,
            } => {
                self.status = *status;
                self.counts = counts.clone();
                self.completed_at = *completed_at;
            }
            RunMessage::Output { .. } => {}
        }
    }

    /// The widest host name, within reason: a column for them.
    pub(crate) fn host_width(&self) -> usize {
        host_width(self.hosts.iter().map(|row| row.host.as_str()))
    }
}

/// The width of a column of `hosts`, at most 24: past that a long name
/// pushes its line out rather than every line.
pub(crate) fn host_width<'a>(hosts: impl Iterator<Item = &'a str>) -> usize {
    hosts
        .map(|host| host.chars().count())
        .max()
        .unwrap_or(0)
        .min(24)
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The live view, one line each: a summary, then as many hosts as `rows`
/// allows. When every host fits, all of them in order; when not, the
/// running ones, then those that did not succeed (latest first), then how
/// many more there are: a run of 1000 hosts takes no more of the terminal
/// than one of 20, and what needs an eye is in it. Each line is cut to
/// `cols`, as a wrapped line would throw the redraw off.
pub(crate) fn live_lines(
    state: &RunState,
    now: DateTime<Utc>,
    frame: usize,
    rows: usize,
    cols: usize,
    live: bool,
) -> Vec<String> {
    let spinner = SPINNER[frame % SPINNER.len()];
    let mut lines = vec![summary_line(state, now, spinner, live)];
    if rows > 0 {
        let width = state.host_width();
        let line = |row: &HostRow| host_line(row, width, now, spinner);
        if state.hosts.len() <= rows {
            lines.extend(state.hosts.iter().map(line));
        } else {
            let mut troubled: Vec<&HostRow> = state.hosts.iter().filter(|r| r.troubled()).collect();
            troubled.sort_by_key(|row| std::cmp::Reverse(row.ended));
            let watched: Vec<&HostRow> = state
                .hosts
                .iter()
                .filter(|row| row.status == Status::Running)
                .chain(troubled)
                .collect();
            let fits = if watched.len() <= rows {
                watched.len()
            } else {
                rows - 1
            };
            lines.extend(watched[..fits].iter().copied().map(line));
            if fits < watched.len() {
                lines.push(format!(
                    "  … and {} more running or not succeeded",
                    watched.len() - fits
                ));
            }
        }
    }
    lines
        .into_iter()
        .map(|line| console::truncate_str(&line, cols, "…").into_owned())
        .collect()
}

fn summary_line(state: &RunState, now: DateTime<Utc>, spinner: char, live: bool) -> String {
    let total = state.hosts.len().max(total_of(&state.counts) as usize);
    let done = total.saturating_sub((state.counts.queued + state.counts.running) as usize);
    let end = state.completed_at.unwrap_or(now);
    let elapsed = (end - state.created_at).as_seconds_f64().max(0.0);
    let id: String = state.id.to_string().chars().take(8).collect();
    let mut line = format!(
        "{} run {id}: {done}/{total} done · {} · {}",
        style(spinner).cyan().for_stderr(),
        counts_text(&state.counts),
        duration_text(elapsed)
    );
    if !live {
        line.push_str(" · connection lost, polling");
    }
    line
}

fn host_line(row: &HostRow, width: usize, now: DateTime<Utc>, spinner: char) -> String {
    let host = format!("{:<width$}", row.host);
    match (row.status, row.outcome) {
        (Status::Queued, _) => format!(
            "{} {host} {}",
            style('·').dim().for_stderr(),
            style("queued").dim().for_stderr()
        ),
        (Status::Running, _) => {
            let elapsed = row
                .started
                .map(|started| duration_text((now - started).as_seconds_f64().max(0.0)))
                .unwrap_or_default();
            format!(
                "{} {host} {} {elapsed}",
                style(spinner).cyan().for_stderr(),
                style(format!("{:<OUTCOME_WIDTH$}", "running"))
                    .cyan()
                    .for_stderr()
            )
        }
        (_, outcome) => {
            let outcome = outcome
                .or_else(|| HostOutcome::of_status(row.status, row.error.as_deref()))
                .unwrap_or(HostOutcome::Failed);
            let mark = if outcome == HostOutcome::Success {
                style('✔').green().for_stderr()
            } else {
                style('✘').red().for_stderr()
            };
            let took = match (row.started, row.ended) {
                (Some(started), Some(ended)) => {
                    format!(
                        " {}",
                        duration_text((ended - started).as_seconds_f64().max(0.0))
                    )
                }
                _ => String::new(),
            };
            let error = match &row.error {
                Some(error) if outcome != HostOutcome::Success => format!("  {}", one_line(error)),
                _ => String::new(),
            };
            let name = format!("{:<OUTCOME_WIDTH$}", outcome.as_str());
            format!(
                "{mark} {host} {}{}{took}{error}",
                outcome_colour(outcome).for_stderr().apply_to(name),
                exit_text(row.exit_code),
            )
        }
    }
}

/// The longest outcome's name (`Unreachable`): a column for them.
const OUTCOME_WIDTH: usize = 11;

/// ` exit N`, for a command that exited.
fn exit_text(code: Option<i32>) -> String {
    code.map(|code| format!(" exit {code}")).unwrap_or_default()
}

/// An outcome's name, coloured for how it reads.
fn outcome_style(outcome: HostOutcome) -> console::StyledObject<&'static str> {
    outcome_colour(outcome).apply_to(outcome.as_str())
}

/// The colour of an outcome: green for a success, yellow for what nobody
/// failed (a cancel, a skip), red for a failure.
fn outcome_colour(outcome: HostOutcome) -> console::Style {
    let plain = console::Style::new();
    match outcome {
        HostOutcome::Success => plain.green(),
        HostOutcome::Cancelled | HostOutcome::Skipped => plain.yellow(),
        HostOutcome::Failed
        | HostOutcome::TimedOut
        | HostOutcome::Unreachable
        | HostOutcome::AuthFailed => plain.red(),
    }
}

/// A host's state for a table: its outcome once final, else its status;
/// coloured.
pub(crate) fn host_state_text(job: &JobResponse) -> String {
    match job.outcome {
        Some(outcome) => outcome_style(outcome).to_string(),
        None => crate::present::status_text(job.status),
    }
}

fn total_of(counts: &RunCounts) -> u64 {
    HostOutcome::ALL
        .iter()
        .map(|outcome| counts.get(*outcome))
        .sum::<u64>()
        + counts.queued
        + counts.running
}

/// `48 ok, 1 failed, 1 unreachable, 2 running`: the counts that are not
/// zero, in the order of the outcomes, then those still to come; `-` for
/// none.
pub(crate) fn counts_text(counts: &RunCounts) -> String {
    let word = |outcome| match outcome {
        HostOutcome::Success => "ok",
        HostOutcome::Failed => "failed",
        HostOutcome::TimedOut => "timed out",
        HostOutcome::Unreachable => "unreachable",
        HostOutcome::AuthFailed => "auth failed",
        HostOutcome::Cancelled => "cancelled",
        HostOutcome::Skipped => "skipped",
    };
    let parts: Vec<String> = HostOutcome::ALL
        .iter()
        .map(|outcome| (counts.get(*outcome), word(*outcome)))
        .chain([(counts.running, "running"), (counts.queued, "queued")])
        .filter(|(count, _)| *count > 0)
        .map(|(count, word)| format!("{count} {word}"))
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `0.8s`, `12.3s`, `4m05s`, `2h03m`.
pub(crate) fn duration_text(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds as u64;
    if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, whole % 3600 / 60)
    }
}

/// The seconds a job ran, when it did.
pub(crate) fn job_duration(job: &JobResponse) -> Option<f64> {
    let (started, completed) = (job.started_at?, job.completed_at?);
    Some((completed - started).as_seconds_f64().max(0.0))
}

/// Text from the server on one line, nothing in it able to move the
/// cursor: line breaks and tabs become spaces, other control characters
/// are written out (`\u{1b}`).
pub(crate) fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.trim_end().chars() {
        match c {
            '\n' | '\r' | '\t' => line.push(' '),
            c if c.is_control() => line.extend(c.escape_unicode()),
            c => line.push(c),
        }
    }
    line
}

/// Lines of a job's stderr the recap shows.
pub(crate) const TAIL_LINES: usize = 3;

/// The last `lines` lines of `text` that are not blank, made inert.
pub(crate) fn tail(text: &str, lines: usize) -> Vec<String> {
    let mut last: Vec<String> = text
        .lines()
        .rev()
        .filter(|line| !line.trim().is_empty())
        .take(lines)
        .map(one_line)
        .collect();
    last.reverse();
    last
}

/// Whether the recap shows the end of this job's stderr: it ran and did
/// not succeed. An unreachable host, or one skipped, ran nothing; its
/// error says it all.
pub(crate) fn wants_tail(job: &JobResponse) -> bool {
    matches!(
        job.outcome,
        Some(HostOutcome::Failed | HostOutcome::TimedOut | HostOutcome::Cancelled)
    ) && job.started_at.is_some()
}

/// The recap of a final run, as Ansible's PLAY RECAP: the count of every
/// outcome; every host that did not succeed with its outcome, exit code or
/// error, and the last lines of its stderr where `tails` has them; then
/// the run's end and duration. `untold` counts the hosts whose stderr was
/// not fetched.
pub(crate) fn recap(
    run: &RunResponse,
    tails: &HashMap<JobId, Vec<String>>,
    untold: usize,
) -> String {
    let mut out = String::new();
    out.push_str(&format!("{}\n", style("RUN RECAP").bold()));
    let counts: Vec<String> = HostOutcome::ALL
        .iter()
        .map(|outcome| {
            let count = run.counts.get(*outcome);
            let text = format!("{}={count}", outcome.as_str());
            if count == 0 {
                style(text).dim().to_string()
            } else {
                outcome_colour(*outcome).apply_to(text).to_string()
            }
        })
        .collect();
    out.push_str(&format!("{}\n", counts.join("  ")));
    let troubled: Vec<&JobResponse> = run
        .jobs
        .iter()
        .filter(|job| {
            job.outcome.is_some_and(|o| o != HostOutcome::Success) || !job.status.is_final()
        })
        .collect();
    if !troubled.is_empty() {
        out.push('\n');
        let width = host_width(troubled.iter().map(|job| job.host.as_deref().unwrap_or("")));
        let state_width = OUTCOME_WIDTH;
        for job in troubled {
            let host = job.host.as_deref().unwrap_or("");
            let state = match job.outcome {
                Some(outcome) => {
                    outcome_colour(outcome).apply_to(format!("{:<state_width$}", outcome.as_str()))
                }
                None => style(format!("{:<state_width$}", job.status.as_str())).cyan(),
            };
            let mut detail = Vec::new();
            if let Some(code) = job.exit_code {
                detail.push(format!("exit {code}"));
            }
            if let Some(error) = &job.error {
                detail.push(one_line(error));
            }
            let line = format!("{host:<width$}  {state}  {}", detail.join(": "));
            out.push_str(line.trim_end());
            out.push('\n');
            for line in tails.get(&job.id).into_iter().flatten() {
                out.push_str(&format!("{:width$}  {} {line}\n", "", style("|").dim()));
            }
        }
        if untold > 0 {
            out.push_str(&format!(
                "(the stderr of {untold} more hosts is not shown: `rje runs show {}` lists \
                 their jobs, `rje view JOB-ID` shows one)\n",
                run.id
            ));
        }
    }
    let failed = run.counts.not_succeeded();
    let hosts = run.hosts.len().max(run.jobs.len());
    let verdict = match run.status {
        Status::Success => format!("all {hosts} hosts succeeded"),
        _ if failed == 0 => format!("{hosts} hosts"),
        _ => format!("{failed} of {hosts} hosts did not succeed"),
    };
    out.push_str(&format!(
        "\nrun {} {}: {verdict}, in {}\n",
        run.id,
        crate::present::status_text(run.status),
        duration_text(run.duration)
    ));
    out
}

/// The longest piece of a line printed under one prefix, in bytes. A host
/// writing without newlines would otherwise have its line held whole until
/// it ends, growing without bound; past this, the line is printed in
/// pieces, each but the last ending with [`CUT_MARK`].
const LINE_CAP: usize = 64 * 1024;

/// The end of a piece of a line longer than [`LINE_CAP`]: the rest follows
/// under the host's next prefix.
const CUT_MARK: &str = " [line cut]";

/// Output lines as `ansible -a` and `pdsh` show them: each prefixed with
/// its host's name, in a column, stderr's marked with `!` instead of `|`.
/// A chunk that ends in the middle of a line keeps that part until the
/// rest comes, so that no line is cut in two under two prefixes; but at
/// most [`LINE_CAP`] of it per job and stream, so that memory stays
/// bounded.
#[derive(Debug, Default)]
pub(crate) struct OutputLines {
    partial: HashMap<(JobId, Stream), (String, String)>,
    width: usize,
}

impl OutputLines {
    /// For hosts named within `width` characters.
    pub(crate) fn new(width: usize) -> Self {
        Self {
            partial: HashMap::new(),
            width,
        }
    }

    /// The whole lines `text` completes, prefixed, each with its newline;
    /// and the pieces of [`LINE_CAP`] of a line longer than that, cut.
    pub(crate) fn push(&mut self, job: JobId, host: &str, stream: Stream, text: &str) -> String {
        let width = self.width;
        let (_, held) = self
            .partial
            .entry((job, stream))
            .or_insert_with(|| (host.to_owned(), String::new()));
        held.push_str(text);
        let mut out = String::new();
        if let Some(end) = held.rfind('\n') {
            let rest = held.split_off(end + 1);
            let whole = std::mem::replace(held, rest);
            for line in whole.lines() {
                out.push_str(&cut_line(host, width, stream, line));
            }
        }
        // What is held past the cap goes out now, cut from the front as a
        // whole line is (see `pieces`), so that a long line is cut at the
        // same places whether it came in one chunk or many.
        while held.len() > LINE_CAP {
            let rest = held.split_off(cut_at(held));
            let piece = std::mem::replace(held, rest);
            out.push_str(&prefixed(
                host,
                width,
                stream,
                &format!("{piece}{CUT_MARK}"),
            ));
        }
        out
    }

    /// What is held of `job`'s output (a last line without its newline),
    /// once the job has ended, per stream.
    pub(crate) fn flush(&mut self, job: JobId) -> Vec<(Stream, String)> {
        let mut flushed = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some((host, held)) = self.partial.remove(&(job, stream))
                && !held.is_empty()
            {
                flushed.push((stream, prefixed(&host, self.width, stream, &held)));
            }
        }
        flushed
    }

    /// Everything held, for every job (the run ended).
    pub(crate) fn flush_all(&mut self) -> Vec<(Stream, String)> {
        let mut jobs: Vec<JobId> = self.partial.keys().map(|(job, _)| *job).collect();
        jobs.sort_by_key(|job| job.to_string());
        jobs.dedup();
        jobs.into_iter().flat_map(|job| self.flush(job)).collect()
    }
}

/// `line`, prefixed: in pieces of [`LINE_CAP`] when longer, each but
/// the last marked as cut.
fn cut_line(host: &str, width: usize, stream: Stream, line: &str) -> String {
    let pieces = pieces(line);
    let last = pieces.len().saturating_sub(1);
    pieces
        .iter()
        .enumerate()
        .map(|(n, piece)| {
            let mark = if n < last { CUT_MARK } else { "" };
            prefixed(host, width, stream, &format!("{piece}{mark}"))
        })
        .collect()
}

/// Where the first piece of `text`, longer than [`LINE_CAP`], ends: at the
/// cap, or just before it so as not to split a character.
fn cut_at(text: &str) -> usize {
    // A UTF-8 character is at most 4 bytes: a boundary is within 3 bytes
    // below the cap, and the cap is far above 3.
    (LINE_CAP - 3..=LINE_CAP)
        .rev()
        .find(|at| text.is_char_boundary(*at))
        .unwrap_or(LINE_CAP)
}

/// `line` in pieces of at most [`LINE_CAP`] bytes, from the front.
fn pieces(line: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = line;
    while rest.len() > LINE_CAP {
        let (piece, after) = rest.split_at(cut_at(rest));
        pieces.push(piece);
        rest = after;
    }
    pieces.push(rest);
    pieces
}

/// `web-1 | line` (stdout) or `web-1 ! line` (stderr), with its newline.
pub(crate) fn prefixed(host: &str, width: usize, stream: Stream, line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mark = match stream {
        Stream::Stdout => style("|").dim(),
        Stream::Stderr => style("!").red(),
    };
    format!("{host:<width$} {mark} {line}\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    fn job_id(n: u8) -> JobId {
        JobId::parse(&format!("0195f5a4-1a2b-7c3d-8e4f-0000000000{n:02}")).unwrap()
    }

    pub(crate) fn job_message(
        n: u8,
        host: &str,
        status: Status,
        outcome: Option<HostOutcome>,
    ) -> RunMessage {
        RunMessage::Job {
            job_id: job_id(n),
            host: host.to_owned(),
            status,
            outcome,
            exit_code: None,
            error: None,
            timestamp: "2026-01-01T00:00:01Z".parse().unwrap(),
        }
    }

    pub(crate) fn output_message(n: u8, host: &str, seq: i64, log: &str) -> RunMessage {
        RunMessage::Output {
            job_id: job_id(n),
            host: host.to_owned(),
            stream: Stream::Stdout,
            log: log.to_owned(),
            seq,
            dropped_before: 0,
            timestamp: "2026-01-01T00:00:01Z".parse().unwrap(),
        }
    }

    /// A job of a run: queued, on `host`, the `n`th.
    pub(crate) fn job(n: u8, host: &str) -> JobResponse {
        serde_json::from_value(json!({
            "id": job_id(n), "command": "uptime", "timeout": 5,
            "priority": "Medium", "status": "Queued", "parameters": null, "stdout": null,
            "stderr": null, "created_at": "2026-01-01T00:00:00Z",
            "modified_at": "2026-01-01T00:00:00Z", "started_at": null, "completed_at": null,
            "task_id": null, "remote_process_id": null, "exit_code": null,
            "signal": null, "error": null, "host": host, "attempts": 0,
            "max_retries": 0, "streaming": true, "cancel_requested": false
        }))
        .unwrap()
    }

    /// A run just started on `hosts`, every job queued.
    pub(crate) fn run_response(hosts: &[&str]) -> RunResponse {
        let jobs: Vec<JobResponse> = hosts
            .iter()
            .enumerate()
            .map(|(n, host)| job(n as u8 + 1, host))
            .collect();
        RunResponse {
            id: RunId::parse("0195f5a4-1a2b-7c3d-8e4f-0123456789ab").unwrap(),
            command: "uptime".into(),
            status: Status::Running,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            labels: None,
            counts: RunCounts {
                queued: hosts.len() as u64,
                ..RunCounts::default()
            },
            jobs,
            max_parallel: 10,
            max_failures: None,
            created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            completed_at: None,
            duration: 0.0,
            retry_of: None,
            cancel_requested: false,
            submitted_by: None,
            cancelled_by: None,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::seconds(seconds)
    }

    /// Ends job `n` of `run` with `outcome`, after running from 1 s to
    /// `end` s.
    fn end(
        run: &mut RunResponse,
        n: usize,
        outcome: HostOutcome,
        exit: Option<i32>,
        error: Option<&str>,
    ) {
        let job = &mut run.jobs[n];
        job.status = match outcome {
            HostOutcome::Success => Status::Success,
            HostOutcome::Cancelled | HostOutcome::Skipped => Status::Cancelled,
            _ => Status::Failed,
        };
        job.outcome = Some(outcome);
        job.exit_code = exit;
        job.error = error.map(str::to_owned);
        if outcome != HostOutcome::Skipped {
            job.started_at = Some(at(1));
            job.completed_at = Some(at(3));
        }
    }

    fn plain(text: &str) -> String {
        console::strip_ansi_codes(text).into_owned()
    }

    #[test]
    fn the_exit_code_is_zero_only_when_every_host_succeeded() {
        let all_ok = RunCounts {
            success: 3,
            ..RunCounts::default()
        };
        assert_eq!(run_exit_code(Status::Success, &all_ok), ExitCode::SUCCESS);
        let one_failed = RunCounts {
            success: 2,
            failed: 1,
            ..RunCounts::default()
        };
        assert_eq!(
            run_exit_code(Status::Failed, &one_failed),
            ExitCode::HOSTS_FAILED
        );
        assert_eq!(
            run_exit_code(Status::Success, &one_failed),
            ExitCode::HOSTS_FAILED,
            "the counts are believed over a status that disagrees"
        );
        let skipped = RunCounts {
            success: 2,
            skipped: 1,
            ..RunCounts::default()
        };
        assert_eq!(
            run_exit_code(Status::Failed, &skipped),
            ExitCode::HOSTS_FAILED
        );
        assert_eq!(
            run_exit_code(Status::Cancelled, &one_failed),
            ExitCode::CANCELLED
        );
        assert_eq!(
            run_exit_code(Status::Running, &all_ok),
            ExitCode::CANCELLED,
            "detached"
        );
        assert_eq!(ExitCode::HOSTS_FAILED, ExitCode(3));
    }

    #[test]
    fn counts_read_in_a_few_words() {
        let counts = RunCounts {
            success: 48,
            failed: 1,
            unreachable: 1,
            running: 2,
            ..RunCounts::default()
        };
        assert_eq!(
            counts_text(&counts),
            "48 ok, 1 failed, 1 unreachable, 2 running"
        );
        assert_eq!(counts_text(&RunCounts::default()), "-");
        let counts = RunCounts {
            timed_out: 1,
            auth_failed: 2,
            cancelled: 3,
            skipped: 4,
            queued: 5,
            ..RunCounts::default()
        };
        assert_eq!(
            counts_text(&counts),
            "1 timed out, 2 auth failed, 3 cancelled, 4 skipped, 5 queued"
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration_text(0.84), "0.8s");
        assert_eq!(duration_text(59.94), "59.9s");
        assert_eq!(duration_text(245.0), "4m05s");
        assert_eq!(duration_text(7380.0), "2h03m");
    }

    #[test]
    fn output_lines_carry_their_host() {
        let mut lines = OutputLines::new(6);
        let (one, two) = (job_id(1), job_id(2));
        assert_eq!(
            plain(&lines.push(one, "web-1", Stream::Stdout, "up 3 days\nload 0.1\n")),
            "web-1  | up 3 days\nweb-1  | load 0.1\n"
        );
        assert_eq!(
            plain(&lines.push(two, "db-10", Stream::Stderr, "no such file\r\n")),
            "db-10  ! no such file\n",
            "stderr is marked, a CRLF is one line end"
        );
        // Half a line waits for the rest; the other streams do not wait.
        assert_eq!(lines.push(one, "web-1", Stream::Stdout, "par"), "");
        assert_eq!(
            plain(&lines.push(one, "web-1", Stream::Stderr, "warn\n")),
            "web-1  ! warn\n"
        );
        assert_eq!(
            plain(&lines.push(one, "web-1", Stream::Stdout, "tial\nnext")),
            "web-1  | partial\n"
        );
        // At the job's end, what is held comes out as a line.
        let flushed: Vec<_> = lines
            .flush(one)
            .into_iter()
            .map(|(stream, line)| (stream, plain(&line)))
            .collect();
        assert_eq!(flushed, [(Stream::Stdout, "web-1  | next\n".to_owned())]);
        assert!(lines.flush(one).is_empty());
        assert!(lines.flush_all().is_empty());
    }

    #[test]
    fn a_line_without_end_is_held_up_to_a_cap_then_cut() {
        let mut lines = OutputLines::new(5);
        let one = job_id(1);
        let chunk = "a".repeat(40 * 1024);
        assert_eq!(lines.push(one, "web-1", Stream::Stdout, &chunk), "");
        // Past the cap, the first LINE_CAP bytes go out, marked; the rest
        // is held.
        let out = plain(&lines.push(one, "web-1", Stream::Stdout, &chunk));
        assert_eq!(out, format!("web-1 | {}{CUT_MARK}\n", "a".repeat(LINE_CAP)));
        // However much comes without a newline, no more than the cap is
        // held.
        for _ in 0..100 {
            let out = lines.push(one, "web-1", Stream::Stdout, &chunk);
            assert!(out.is_empty() || out.ends_with(&format!("{CUT_MARK}\n")));
            let held = &lines.partial[&(one, Stream::Stdout)].1;
            assert!(held.len() <= LINE_CAP, "{}", held.len());
        }
        // The line's end comes out unmarked.
        let out = plain(&lines.push(one, "web-1", Stream::Stdout, "end\n"));
        assert!(
            out.ends_with("aend\n") && !out.contains(CUT_MARK),
            "{out:?}"
        );
        assert!(lines.flush(one).is_empty());

        // A line as long, in one chunk, is cut at the same places.
        let long = "a".repeat(LINE_CAP * 2 + 10);
        let out = plain(&lines.push(one, "web-1", Stream::Stdout, &format!("{long}\n")));
        let printed: Vec<&str> = out.lines().collect();
        assert_eq!(printed.len(), 3);
        assert_eq!(
            printed[0],
            format!("web-1 | {}{CUT_MARK}", "a".repeat(LINE_CAP))
        );
        assert_eq!(printed[1], printed[0]);
        assert_eq!(printed[2], format!("web-1 | {}", "a".repeat(10)));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut lines = OutputLines::new(5);
        let one = job_id(1);
        // `é` is 2 bytes: one straddles the cap.
        let text = format!("{}é{}", "a".repeat(LINE_CAP - 1), "b".repeat(10));
        let out = plain(&lines.push(one, "web-1", Stream::Stderr, &text));
        assert_eq!(
            out,
            format!("web-1 ! {}{CUT_MARK}\n", "a".repeat(LINE_CAP - 1))
        );
        let flushed = lines.flush(one);
        assert_eq!(flushed.len(), 1);
        assert_eq!(
            plain(&flushed[0].1),
            format!("web-1 ! é{}\n", "b".repeat(10))
        );
    }

    #[test]
    fn the_recap_names_every_host_that_did_not_succeed() {
        let mut run = run_response(&["web-1", "web-2", "db-1", "db-2", "web-3"]);
        end(&mut run, 0, HostOutcome::Success, Some(0), None);
        end(&mut run, 1, HostOutcome::Failed, Some(2), None);
        end(
            &mut run,
            2,
            HostOutcome::Unreachable,
            None,
            Some("connection refused"),
        );
        end(
            &mut run,
            3,
            HostOutcome::TimedOut,
            None,
            Some("timed out after 5 s"),
        );
        end(
            &mut run,
            4,
            HostOutcome::Skipped,
            None,
            Some("skipped: too many failures"),
        );
        run.status = Status::Failed;
        run.counts = RunCounts {
            success: 1,
            failed: 1,
            unreachable: 1,
            timed_out: 1,
            skipped: 1,
            ..RunCounts::default()
        };
        run.duration = 12.34;
        assert!(wants_tail(&run.jobs[1]) && wants_tail(&run.jobs[3]));
        assert!(!wants_tail(&run.jobs[0]) && !wants_tail(&run.jobs[4]));
        let tails = HashMap::from([(
            run.jobs[1].id,
            tail(
                "ls: cannot access 'x'\n\nls: cannot access 'y'\n\x1b[2Kls: z\n",
                TAIL_LINES,
            ),
        )]);
        let expected = "\
RUN RECAP
Success=1  Failed=1  TimedOut=1  Unreachable=1  AuthFailed=0  Cancelled=0  Skipped=1

web-2  Failed       exit 2
       | ls: cannot access 'x'
       | ls: cannot access 'y'
       | \\u{1b}[2Kls: z
db-1   Unreachable  connection refused
db-2   TimedOut     timed out after 5 s
web-3  Skipped      skipped: too many failures

run 0195f5a4-1a2b-7c3d-8e4f-0123456789ab Failed: 4 of 5 hosts did not succeed, in 12.3s
";
        assert_eq!(plain(&recap(&run, &tails, 0)), expected);
        assert!(plain(&recap(&run, &tails, 7)).contains("the stderr of 7 more hosts is not shown"));
    }

    #[test]
    fn a_run_that_succeeded_recaps_in_three_lines() {
        let mut run = run_response(&["web-1", "web-2"]);
        end(&mut run, 0, HostOutcome::Success, Some(0), None);
        end(&mut run, 1, HostOutcome::Success, Some(0), None);
        run.status = Status::Success;
        run.counts = RunCounts {
            success: 2,
            ..RunCounts::default()
        };
        run.duration = 1.0;
        assert_eq!(
            plain(&recap(&run, &HashMap::new(), 0)),
            "RUN RECAP\nSuccess=2  Failed=0  TimedOut=0  Unreachable=0  AuthFailed=0  Cancelled=0  Skipped=0\n\n\
             run 0195f5a4-1a2b-7c3d-8e4f-0123456789ab Success: all 2 hosts succeeded, in 1.0s\n"
        );
    }

    #[test]
    fn the_live_view_follows_the_messages() {
        let run = run_response(&["web-1", "web-2", "db-1"]);
        let mut state = RunState::new(&run);
        state.apply(&job_message(1, "web-1", Status::Running, None));
        state.apply(&RunMessage::Job {
            job_id: job_id(2),
            host: "web-2".into(),
            status: Status::Failed,
            outcome: Some(HostOutcome::Failed),
            exit_code: Some(1),
            error: None,
            timestamp: at(3),
        });
        state.apply(&RunMessage::Run {
            status: Status::Running,
            counts: RunCounts {
                failed: 1,
                running: 1,
                queued: 1,
                ..RunCounts::default()
            },
            completed_at: None,
        });
        let lines: Vec<String> = live_lines(&state, at(4), 0, 10, 200, true)
            .iter()
            .map(|line| plain(line))
            .collect();
        assert_eq!(
            lines,
            [
                "⠋ run 0195f5a4: 1/3 done · 1 failed, 1 running, 1 queued · 4.0s",
                "⠋ web-1 running     3.0s",
                "✘ web-2 Failed      exit 1",
                "· db-1  queued",
            ]
        );
        let cut = live_lines(&state, at(4), 1, 10, 12, false);
        assert_eq!(plain(&cut[0]), "⠙ run 0195f…");
        assert!(
            live_lines(&state, at(4), 0, 10, 500, false)[0].ends_with("connection lost, polling")
        );
    }

    #[test]
    fn a_large_run_shows_what_needs_an_eye_within_the_rows() {
        let hosts: Vec<String> = (1..=60).map(|n| format!("web-{n}")).collect();
        let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let mut run = run_response(&names);
        for n in 0..5 {
            run.jobs[n].status = Status::Running;
        }
        for n in 5..10 {
            end(
                &mut run,
                n,
                HostOutcome::Unreachable,
                None,
                Some("no route to host"),
            );
        }
        for n in 10..30 {
            end(&mut run, n, HostOutcome::Success, Some(0), None);
        }
        let state = RunState::new(&run);
        let lines = live_lines(&state, at(4), 0, 8, 200, true);
        assert_eq!(lines.len(), 1 + 8, "the summary and the rows given");
        let body: Vec<String> = lines[1..].iter().map(|line| plain(line)).collect();
        assert!(
            body[..5].iter().all(|line| line.contains("running")),
            "{body:?}"
        );
        assert!(
            body[5..7].iter().all(|line| line.contains("Unreachable")),
            "{body:?}"
        );
        assert_eq!(body[7], "  … and 3 more running or not succeeded");
        // Exactly enough rows: no line for more.
        let lines = live_lines(&state, at(4), 0, 10, 200, true);
        assert_eq!(lines.len(), 11);
        assert!(!plain(&lines[10]).contains("more"));
        // No rows: the summary alone.
        assert_eq!(live_lines(&state, at(4), 0, 0, 200, true).len(), 1);
    }

    #[test]
    fn outcome_names_fit_their_column() {
        let widest = HostOutcome::ALL.iter().map(|o| o.as_str().len()).max();
        assert_eq!(widest, Some(OUTCOME_WIDTH));
    }

    #[test]
    fn server_text_stays_on_its_line() {
        assert_eq!(one_line("a\nb\tc\u{1b}[2J\n"), "a b c\\u{1b}[2J");
        assert_eq!(tail("1\n2\n\n3\n4\n", 3), ["2", "3", "4"]);
        assert!(tail("", 3).is_empty());
    }
}
