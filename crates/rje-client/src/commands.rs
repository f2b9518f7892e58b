//! The client commands. Each resolves the connection, talks to the server,
//! presents the answer, and returns the exit code.

use std::time::Instant;

use clap::{Args, ValueEnum};
use rje_domain::{Priority, Status, is_timeout_error};
use rje_proto::JobResponse;
use serde_json::{Map, Value, json};

use crate::api::{Api, Cancelled, job_path_id};
use crate::follow::{Event, JobFollower};
use crate::present::{Presenter, print_json, status_text, write_output};
use crate::{ClientError, Connection, ExitCode};

/// The client commands, as `rje` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Submit a job.
    Submit(SubmitArgs),
    /// Show a job.
    View(ViewArgs),
    /// Stream a job's output.
    Stream(StreamArgs),
    /// Cancel a job.
    Cancel(CancelArgs),
    /// List jobs.
    List(ListArgs),
    /// Delete a finished or queued job.
    Delete(DeleteArgs),
    /// The hosts jobs can run on and their health; `hosts check NAME`
    /// tests one.
    Hosts(crate::hosts::HostsArgs),
    /// Measure a running server: throughput, latencies, log throughput.
    Bench(crate::bench::BenchArgs),
    /// Who the token is: its name, role and the hosts it may use.
    Whoami(crate::access::WhoamiArgs),
    /// The server's API tokens: create, list, revoke (admin).
    Tokens(crate::access::TokensArgs),
    /// The audit trail: every change made through the API (admin).
    Audit(crate::access::AuditArgs),
}

impl ClientCommand {
    /// Runs the command; `ssh` measures SSH hosts raw for `bench
    /// --baseline`, `local` creates tokens in a database for `tokens
    /// create --local`.
    pub async fn run(
        self,
        connection: &Connection,
        ssh: &impl crate::bench::SshBaseline,
        local: &impl crate::access::LocalTokens,
    ) -> Result<ExitCode, ClientError> {
        match self {
            ClientCommand::Submit(args) => submit(connection, args).await,
            ClientCommand::View(args) => view(connection, args).await,
            ClientCommand::Stream(args) => stream(connection, args).await,
            ClientCommand::Cancel(args) => cancel(connection, args).await,
            ClientCommand::List(args) => list(connection, args).await,
            ClientCommand::Delete(args) => delete(connection, args).await,
            ClientCommand::Hosts(args) => crate::hosts::hosts(connection, args).await,
            ClientCommand::Bench(args) => crate::bench::bench(connection, args, ssh).await,
            ClientCommand::Whoami(args) => crate::access::whoami(connection, args).await,
            ClientCommand::Tokens(args) => crate::access::tokens(connection, args, local).await,
            ClientCommand::Audit(args) => crate::access::audit(connection, args).await,
        }
    }
}

/// A priority on the command line: `high`, `medium` or `low`, in any case
/// (`High` as the API writes it, too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    High,
    Medium,
    Low,
}

/// A status on the command line, in any case (`Failed` as the API writes
/// it, `failed`, `FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Queued,
    Running,
    Success,
    Failed,
    Cancelled,
}

impl From<StatusArg> for Status {
    fn from(arg: StatusArg) -> Self {
        match arg {
            StatusArg::Queued => Status::Queued,
            StatusArg::Running => Status::Running,
            StatusArg::Success => Status::Success,
            StatusArg::Failed => Status::Failed,
            StatusArg::Cancelled => Status::Cancelled,
        }
    }
}

impl From<PriorityArg> for Priority {
    fn from(arg: PriorityArg) -> Self {
        match arg {
            PriorityArg::High => Priority::High,
            PriorityArg::Medium => Priority::Medium,
            PriorityArg::Low => Priority::Low,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// The shell command to run (`sh -c`). Quote it.
    pub command: String,
    /// high, medium or low (any case).
    #[arg(long, short, value_enum, ignore_case = true)]
    pub priority: Option<PriorityArg>,
    /// Seconds before the job is killed.
    #[arg(long, short)]
    pub timeout: Option<u32>,
    /// Host to run on (as the server names it).
    #[arg(long = "host")]
    pub host: Option<String>,
    /// Show the output live, then exit with the job's exit code.
    #[arg(long, conflicts_with = "wait")]
    pub stream: bool,
    /// Wait for the job, show its output, exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON: the job (or, with --stream, one message per line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ViewArgs {
    pub id: String,
    #[arg(long, value_enum, default_value = "table", ignore_case = true)]
    pub format: Format,
    /// Show status changes live until the job finishes.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    pub id: String,
    /// Start after this output chunk (a `seq` from an earlier stream).
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// Print each message as a JSON line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    pub id: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only jobs in this status (any case: `failed`, `Failed`).
    #[arg(long, value_enum, ignore_case = true)]
    pub status: Option<StatusArg>,
    /// Only jobs of this priority (any case: `high`, `High`).
    #[arg(long, value_enum, ignore_case = true)]
    pub priority: Option<PriorityArg>,
    #[arg(long = "host")]
    pub host: Option<String>,
    /// Only jobs submitted with this token (its name, as `rje whoami`
    /// says it).
    #[arg(long)]
    pub submitted_by: Option<String>,
    /// Jobs per page (1 to 100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// created_at, priority, started_at or completed_at; `-` first for
    /// descending.
    #[arg(long, default_value = "-created_at", allow_hyphen_values = true)]
    pub ordering: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

/// The exit code a finished job stands for, like `ssh` does: its own exit
/// code, 124 for a timeout, 130 for a cancel, 128+N for signal N.
pub(crate) fn job_exit_code(job: &JobResponse) -> ExitCode {
    match job.status {
        Status::Success => ExitCode::SUCCESS,
        Status::Cancelled => ExitCode::CANCELLED,
        Status::Failed if job.error.as_deref().is_some_and(is_timeout_error) => ExitCode::TIMED_OUT,
        Status::Failed => match (job.exit_code, job.signal) {
            (Some(code), _) if (1..=255).contains(&code) => ExitCode(code),
            (Some(_), _) => ExitCode(1),
            (None, Some(signal)) => ExitCode(128 + signal),
            (None, None) => ExitCode::JOB_ERROR,
        },
        // Not finished: the caller detached.
        Status::Queued | Status::Running => ExitCode::CANCELLED,
    }
}

pub async fn submit(connection: &Connection, args: SubmitArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let presenter = Presenter::new(args.json);
    let mut body = Map::new();
    body.insert("command".into(), json!(args.command));
    if let Some(priority) = args.priority {
        body.insert("priority".into(), json!(Priority::from(priority).as_str()));
    }
    if let Some(timeout) = args.timeout {
        body.insert("timeout".into(), json!(timeout));
    }
    if let Some(host) = &args.host {
        body.insert("host".into(), json!(host));
    }
    let job = api.create_once(&Value::Object(body)).await?;
    let id = job.id.to_string();

    if args.stream {
        if presenter.decorate() {
            eprintln!("{} job {id}", console::style("submitted").dim());
        }
        return follow_output(&api, &id, 0, presenter).await;
    }
    if args.wait {
        return wait_and_show(&api, &id, presenter).await;
    }
    if presenter.json {
        print_json(&job);
    } else if presenter.stdout_tty {
        println!(
            "Submitted job {id} ({}, {})",
            status_text(job.status),
            job.priority
        );
    } else {
        // Piped: just the id, for `ID=$(rje submit …)`.
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How following a job ended.
enum Followed {
    Finished,
    /// The user pressed Ctrl-C and chose to leave the job running.
    Detached,
}

/// Follows a job until it finishes, handling Ctrl-C: on a terminal the user
/// chooses between cancelling the job and detaching; elsewhere Ctrl-C
/// detaches.
async fn follow_job(
    api: &Api,
    id: &str,
    since: i64,
    presenter: Presenter,
    mut on_event: impl FnMut(Event) -> Result<(), ClientError>,
) -> Result<Followed, ClientError> {
    let mut follower = JobFollower::new(api.clone(), id, since);
    let mut cancel_sent = false;
    loop {
        tokio::select! {
            event = follower.next() => match event? {
                Some(event) => on_event(event)?,
                None => return Ok(Followed::Finished),
            },
            _ = tokio::signal::ctrl_c() => {
                if cancel_sent || !presenter.interactive() || !ask_cancel(id).await {
                    if presenter.decorate() {
                        eprintln!("detached; job {id} goes on (rje stream {id} to follow it again)");
                    }
                    return Ok(Followed::Detached);
                }
                match api.cancel(id).await {
                    Ok(_) | Err(ClientError::Conflict(_)) => cancel_sent = true,
                    Err(err) => return Err(err),
                }
            }
        }
    }
}

async fn ask_cancel(id: &str) -> bool {
    eprint!("\nCancel job {id}? [y = cancel it, anything else = detach] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    matches!(answer, Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("y") || line.trim().eq_ignore_ascii_case("yes"))
}

/// Prints output live, stdout to stdout and stderr to stderr, then exits
/// with the job's code.
async fn follow_output(
    api: &Api,
    id: &str,
    since: i64,
    presenter: Presenter,
) -> Result<ExitCode, ClientError> {
    let started = Instant::now();
    let followed = follow_job(api, id, since, presenter, |event| match event {
        Event::Output { stream, text } if !presenter.json => write_output(stream, &text),
        Event::Output { stream, text } => {
            println!(
                "{}",
                json!({"type": "output", "stream": stream, "log": text})
            );
            Ok(())
        }
        Event::Status { status } if presenter.json => {
            println!("{}", json!({"type": "status", "status": status}));
            Ok(())
        }
        Event::Status { .. } => Ok(()),
    })
    .await?;
    if let Followed::Detached = followed {
        return Ok(ExitCode::CANCELLED);
    }
    let job = api.job(id).await?;
    if presenter.decorate() {
        eprintln!("{}", summary(&job, started));
    }
    Ok(job_exit_code(&job))
}

fn summary(job: &JobResponse, started: Instant) -> String {
    let elapsed = format!("{:.1}s", started.elapsed().as_secs_f64());
    let detail = match (job.exit_code, &job.error) {
        (_, Some(error)) => format!(" ({error})"),
        (Some(code), None) if code != 0 => format!(" (exit {code})"),
        _ => String::new(),
    };
    format!(
        "{} {}{detail} in {elapsed}",
        status_text(job.status),
        job.id
    )
}

async fn wait_and_show(api: &Api, id: &str, presenter: Presenter) -> Result<ExitCode, ClientError> {
    let started = Instant::now();
    let spinner = presenter.spinner(format!("waiting for job {id}"));
    let followed = follow_job(api, id, 0, presenter, |event| {
        if let (Some(spinner), Event::Status { status }) = (&spinner, &event) {
            spinner.set_message(format!("job {id} is {status}"));
        }
        Ok(())
    })
    .await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    if let Followed::Detached = followed? {
        return Ok(ExitCode::CANCELLED);
    }
    let job = api.job(id).await?;
    if presenter.json {
        print_json(&job);
    } else {
        write_output(
            rje_domain::Stream::Stdout,
            job.stdout.as_deref().unwrap_or(""),
        )?;
        write_output(
            rje_domain::Stream::Stderr,
            job.stderr.as_deref().unwrap_or(""),
        )?;
        if presenter.decorate() {
            eprintln!("{}", summary(&job, started));
        }
    }
    Ok(job_exit_code(&job))
}

pub async fn view(connection: &Connection, args: ViewArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let id = job_path_id(&args.id)?;
    let presenter = Presenter::new(args.format == Format::Json);
    if args.follow {
        let job = api.job(id).await?;
        if !presenter.json {
            println!(
                "{} {}",
                job.modified_at.format("%H:%M:%S%.3f"),
                status_text(job.status)
            );
        }
        let followed = follow_job(&api, id, 0, presenter, |event| {
            if let Event::Status { status } = event {
                if presenter.json {
                    println!("{}", json!({"type": "status", "status": status}));
                } else {
                    println!(
                        "{} {}",
                        chrono::Utc::now().format("%H:%M:%S%.3f"),
                        status_text(status)
                    );
                }
            }
            Ok(())
        })
        .await?;
        if let Followed::Detached = followed {
            return Ok(ExitCode::CANCELLED);
        }
    }
    let job = api.job(id).await?;
    if presenter.json {
        print_json(&job);
    } else {
        println!("{}", presenter.job_table(&job));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn stream(connection: &Connection, args: StreamArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let id = job_path_id(&args.id)?;
    let since = i64::try_from(args.since).unwrap_or(i64::MAX);
    follow_output(&api, id, since, Presenter::new(args.json)).await
}

pub async fn cancel(connection: &Connection, args: CancelArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let id = job_path_id(&args.id)?;
    let presenter = Presenter::new(args.json);
    if !args.force && presenter.interactive() {
        let job = api.job(id).await?;
        eprint!("Cancel job {id} ({}, {})? [y/N] ", job.command, job.status);
        let answer = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await;
        if !matches!(answer, Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("y")) {
            eprintln!("not cancelled");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let (job, pending) = match api.cancel(id).await? {
        Cancelled::Done(job) => (job, false),
        Cancelled::Pending(job) => (job, true),
    };
    if presenter.json {
        print_json(&job);
    } else if pending {
        println!("cancel requested; job {id} is still stopping");
    } else {
        println!("job {id} is {}", status_text(job.status));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(connection: &Connection, args: ListArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let presenter = Presenter::new(args.json);
    let mut query = vec![
        ("limit", args.limit.to_string()),
        ("offset", args.offset.to_string()),
        ("ordering", args.ordering.clone()),
    ];
    if let Some(status) = args.status {
        query.push(("status", Status::from(status).to_string()));
    }
    if let Some(priority) = args.priority {
        query.push(("priority", Priority::from(priority).to_string()));
    }
    if let Some(host) = &args.host {
        query.push(("host", host.clone()));
    }
    if let Some(name) = &args.submitted_by {
        query.push(("submitted_by", name.clone()));
    }
    let page = api.list(&query_string(&query)).await?;
    if presenter.json {
        print_json(&page);
        return Ok(ExitCode::SUCCESS);
    }
    if page.jobs.is_empty() {
        println!("no jobs (of {} matching)", page.total_count);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", presenter.jobs_table(&page.jobs));
    if presenter.stdout_tty {
        let first = args.offset + 1;
        let last = args.offset + page.jobs.len() as u64;
        println!("{first}–{last} of {}", page.total_count);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(connection: &Connection, args: DeleteArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let id = job_path_id(&args.id)?;
    api.delete(id).await?;
    if args.json {
        print_json(&json!({ "deleted": id }));
    } else {
        println!("deleted job {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `k=v&…`, each value percent-encoded.
pub(crate) fn query_string(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        status: Status,
        exit_code: Option<i32>,
        signal: Option<i32>,
        error: Option<&str>,
    ) -> JobResponse {
        serde_json::from_value(json!({
            "id": "0195f5a4-1a2b-7c3d-8e4f-0123456789ab", "command": "x", "timeout": 5,
            "priority": "Medium", "status": status, "parameters": null, "stdout": null,
            "stderr": null, "created_at": "2026-01-01T00:00:00Z",
            "modified_at": "2026-01-01T00:00:00Z", "started_at": null, "completed_at": null,
            "task_id": null, "remote_process_id": null, "exit_code": exit_code,
            "signal": signal, "error": error, "host": "local", "attempts": 1,
            "max_retries": 3, "streaming": false, "cancel_requested": false
        }))
        .unwrap()
    }

    #[test]
    fn exit_codes_follow_the_job() {
        assert_eq!(
            job_exit_code(&job(Status::Success, Some(0), None, None)),
            ExitCode(0)
        );
        assert_eq!(
            job_exit_code(&job(Status::Failed, Some(3), None, None)),
            ExitCode(3)
        );
        assert_eq!(
            job_exit_code(&job(Status::Failed, Some(300), None, None)),
            ExitCode(1)
        );
        assert_eq!(
            job_exit_code(&job(
                Status::Failed,
                None,
                Some(9),
                Some("killed by signal 9")
            )),
            ExitCode(137)
        );
        assert_eq!(
            job_exit_code(&job(
                Status::Failed,
                None,
                None,
                Some("timed out after 5 s")
            )),
            ExitCode::TIMED_OUT
        );
        assert_eq!(
            job_exit_code(&job(Status::Failed, None, None, Some("worker lost"))),
            ExitCode::JOB_ERROR
        );
        assert_eq!(
            job_exit_code(&job(Status::Cancelled, None, None, None)),
            ExitCode::CANCELLED
        );
    }

    /// `rje ARGS…` as the binary parses it.
    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: ClientCommand,
        }
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("rje").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn list_filters_take_any_case() {
        for (status, priority) in [
            ("Failed", "High"),
            ("failed", "high"),
            ("FAILED", "HIGH"),
            ("fAiLeD", "hIgH"),
        ] {
            let command = parse(&["list", "--status", status, "--priority", priority])
                .unwrap_or_else(|err| panic!("{status} {priority}: {err}"));
            let ClientCommand::List(args) = command else {
                panic!("not a list");
            };
            assert_eq!(args.status, Some(StatusArg::Failed), "{status}");
            assert_eq!(args.priority, Some(PriorityArg::High), "{priority}");
            // The API gets its own spelling whatever the user typed.
            assert_eq!(Status::from(args.status.unwrap()).as_str(), "Failed");
            assert_eq!(Priority::from(args.priority.unwrap()).as_str(), "High");
        }
        for status in ["queued", "Running", "SUCCESS", "Cancelled"] {
            assert!(parse(&["list", "--status", status]).is_ok(), "{status}");
        }
        assert!(parse(&["list", "--status", "done"]).is_err());
        assert!(parse(&["list", "--priority", "urgent"]).is_err());
    }

    #[test]
    fn submit_and_view_take_any_case() {
        for priority in ["High", "high", "HIGH"] {
            let ClientCommand::Submit(args) =
                parse(&["submit", "true", "--priority", priority]).unwrap()
            else {
                panic!("not a submit");
            };
            assert_eq!(args.priority, Some(PriorityArg::High), "{priority}");
        }
        for format in ["json", "JSON", "Json"] {
            let ClientCommand::View(args) = parse(&[
                "view",
                "0195f5a4-1a2b-7c3d-8e4f-0123456789ab",
                "--format",
                format,
            ])
            .unwrap() else {
                panic!("not a view");
            };
            assert_eq!(args.format, Format::Json, "{format}");
        }
    }

    #[test]
    fn token_and_audit_flags_parse() {
        use crate::access::{RoleArg, TokensAction};
        let ClientCommand::Tokens(args) = parse(&[
            "tokens", "create", "ci", "--role", "RUN", "--host", "web-1", "--host", "web-2",
            "--label", "eu",
        ])
        .unwrap() else {
            panic!("not tokens");
        };
        let TokensAction::Create(create) = args.action else {
            panic!("not a create");
        };
        assert_eq!(create.name, "ci");
        assert_eq!(create.role, RoleArg::Run);
        assert_eq!(rje_domain::Role::from(create.role), rje_domain::Role::Run);
        assert_eq!(create.hosts, ["web-1", "web-2"]);
        assert_eq!(create.labels, ["eu"]);
        assert!(!create.local);
        assert!(
            parse(&["tokens", "create", "x"]).is_err(),
            "a role is needed"
        );
        assert!(parse(&["tokens", "create", "x", "--role", "root"]).is_err());
        let ClientCommand::Tokens(args) = parse(&["tokens", "list", "--json"]).unwrap() else {
            panic!("not tokens");
        };
        assert!(args.json && matches!(args.action, TokensAction::List));
        assert!(parse(&["tokens", "revoke", "ci"]).is_ok());

        let ClientCommand::Audit(audit) = parse(&[
            "audit",
            "--token-name",
            "ci",
            "--route",
            "/jobs/",
            "--limit",
            "1000",
        ])
        .unwrap() else {
            panic!("not an audit");
        };
        assert_eq!(audit.token_name.as_deref(), Some("ci"));
        assert_eq!(audit.route.as_deref(), Some("/jobs/"));
        assert!(parse(&["audit", "--limit", "1001"]).is_err());
        let ClientCommand::List(list) = parse(&["list", "--submitted-by", "ci"]).unwrap() else {
            panic!("not a list");
        };
        assert_eq!(list.submitted_by.as_deref(), Some("ci"));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("-created_at"), "-created_at");
        assert_eq!(encode("a b&c"), "a%20b%26c");
        assert_eq!(
            query_string(&[("route", "/jobs/{id}/".into()), ("limit", "5".into())]),
            "route=%2Fjobs%2F%7Bid%7D%2F&limit=5"
        );
    }
}
