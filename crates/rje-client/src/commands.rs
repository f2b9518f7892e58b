//! The client commands. Each resolves the connection, talks to the server,
//! presents the answer, and returns the exit code.

use std::time::Instant;

use clap::{Args, ValueEnum};
use rje_domain::{Priority, Status, is_timeout_error};
use rje_proto::{JobResponse, SubmitRequest};
use serde_json::json;

use crate::api::{Api, Cancelled, job_path_id};
use crate::follow::{Event, JobFollower};
use crate::present::{Presenter, print_json, print_json_line, status_text, write_output};
use crate::{ClientError, Connection, ExitCode};

/// The client commands, as `rje` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Submit a job.
    Submit(SubmitArgs),
    /// Run a command on many hosts at once, one job per host; follow it
    /// live, then recap every host's outcome.
    Run(crate::runs::RunArgs),
    /// Runs: list, show, cancel, retry, watch.
    Runs(crate::runs::RunsArgs),
    /// Show a job.
    View(ViewArgs),
    /// Stream a job's output.
    Stream(StreamArgs),
    /// Cancel a job.
    Cancel(CancelArgs),
    /// Run a finished job again, as a new job.
    Retry(RetryArgs),
    /// List jobs.
    List(ListArgs),
    /// Delete a finished or queued job.
    Delete(DeleteArgs),
    /// Delete the finished jobs completed before a time, with their output
    /// (admin).
    Prune(crate::prune::PruneArgs),
    /// Jobs fired on a timetable (cron): list, create, show, edit, pause,
    /// resume, delete.
    Schedules(crate::schedules::SchedulesArgs),
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
            ClientCommand::Run(args) => crate::runs::run(connection, args).await,
            ClientCommand::Runs(args) => crate::runs::runs(connection, args).await,
            ClientCommand::View(args) => view(connection, args).await,
            ClientCommand::Stream(args) => stream(connection, args).await,
            ClientCommand::Cancel(args) => cancel(connection, args).await,
            ClientCommand::Retry(args) => retry(connection, args).await,
            ClientCommand::List(args) => list(connection, args).await,
            ClientCommand::Delete(args) => delete(connection, args).await,
            ClientCommand::Prune(args) => crate::prune::prune(connection, args).await,
            ClientCommand::Schedules(args) => crate::schedules::schedules(connection, args).await,
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

/// What a job is and how it runs: the options of `rje submit`, shared
/// with `rje schedules create` because a schedule's jobs take the same
/// fields as a submit.
#[derive(Debug, Clone, Args)]
pub struct JobOptions {
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
    /// How many times the job may run again: when its command could not
    /// start and, with --retry-on-failure, when it failed (0 to 10; the
    /// server's default is 3).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Run the job again, as a new job, when its command fails (a non-zero
    /// exit, a signal, the timeout), up to --max-retries times, after a
    /// backoff; never after a cancel.
    #[arg(long)]
    pub retry_on_failure: bool,
}

impl JobOptions {
    /// The body of `POST /jobs/`. Options not given are left out, not sent
    /// as defaults, so that a server that predates a field (the original
    /// API refuses unknown ones) still takes a submit that does not use it.
    pub(crate) fn submit_request(&self) -> SubmitRequest {
        SubmitRequest {
            command: self.command.clone(),
            priority: self.priority.map(Priority::from),
            timeout: self.timeout,
            parameters: None,
            streaming: None,
            host: self.host.clone(),
            max_retries: self.max_retries,
            retry_on_failure: self.retry_on_failure.then_some(true),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub job: JobOptions,
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
pub struct RetryArgs {
    /// The finished job to run again (Success, Failed or Cancelled).
    pub id: String,
    /// Show the new job's output live, then exit with its exit code.
    #[arg(long)]
    pub stream: bool,
    /// Print JSON: the new job (or, with --stream, one message per line).
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
    /// Only the jobs this schedule fired (its name or id).
    #[arg(long, value_name = "NAME|ID")]
    pub schedule: Option<String>,
    /// Jobs per page (1 to 100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// Jobs to skip. `--cursor` costs the same at any depth.
    #[arg(long, default_value_t = 0, conflicts_with_all = ["cursor", "all"])]
    pub offset: u64,
    /// Start where an earlier listing stopped (the `next` it printed).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Every matching job, page after page (`--limit` a page's size); with
    /// `--json`, one job per line.
    #[arg(long)]
    pub all: bool,
    /// created_at, priority, started_at or completed_at; `-` first for
    /// descending (default: -created_at, or the cursor's own).
    #[arg(long, allow_hyphen_values = true)]
    pub ordering: Option<String>,
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
    let body = serde_json::to_value(args.job.submit_request())
        .map_err(|err| ClientError::BadInput(format!("cannot encode the job: {err}")))?;
    let job = api.create_once(&body).await?;
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
    print_new_job(&job, presenter);
    Ok(ExitCode::SUCCESS)
}

/// `POST /jobs/{id}/retry/`: the new job is told as `rje submit` tells
/// one, and `--stream` follows it the same way.
pub async fn retry(connection: &Connection, args: RetryArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let old = job_path_id(&args.id)?;
    let presenter = Presenter::new(args.json);
    let job = api.retry_job(old).await?;
    let id = job.id.to_string();
    if args.stream {
        if presenter.decorate() {
            eprintln!("{} job {old} as {id}", console::style("retrying").dim());
        }
        return follow_output(&api, &id, 0, presenter).await;
    }
    print_new_job(&job, presenter);
    Ok(ExitCode::SUCCESS)
}

/// Tells of a job just made: JSON with --json, a sentence on a terminal,
/// and piped, just the id, for `ID=$(rje submit …)`.
fn print_new_job(job: &JobResponse, presenter: Presenter) {
    let id = job.id;
    if presenter.json {
        print_json(job);
    } else if presenter.stdout_tty {
        let again = job
            .retry_of
            .map(|old| format!(", running job {old} again"))
            .unwrap_or_default();
        println!(
            "Submitted job {id} ({}, {}){again}",
            status_text(job.status),
            job.priority
        );
    } else {
        println!("{id}");
    }
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
                let detach = cancel_sent
                    || !presenter.interactive()
                    || !ask_cancel(&format!("job {id}")).await;
                if detach {
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

/// Asks whether to cancel `what` (`job ID`) or detach from it; anything
/// but `y` detaches: a Ctrl-C alone never cancels.
pub(crate) async fn ask_cancel(what: &str) -> bool {
    eprint!("\nCancel {what}? [y = cancel it, anything else = detach] ");
    read_answer()
        .await
        .is_some_and(|line| line.eq_ignore_ascii_case("y") || line.eq_ignore_ascii_case("yes"))
}

/// Asks `question` on stderr; whether the answer was `y`.
pub(crate) async fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    read_answer()
        .await
        .is_some_and(|line| line.eq_ignore_ascii_case("y"))
}

/// A line of stdin, trimmed, read off the async runtime's threads.
async fn read_answer() -> Option<String> {
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    match answer {
        Ok(Ok(line)) => Some(line.trim().to_owned()),
        _ => None,
    }
}

/// A job and the automatic retries that run it again after a failure,
/// followed one after the other: what a person who submitted a job with
/// `--retry-on-failure` is waiting for is the last attempt.
struct RetryChain {
    /// The first job's `max_retries`: however many retries the server
    /// lists, no more than that many are followed.
    limit: Option<u32>,
}

impl RetryChain {
    fn new() -> Self {
        Self { limit: None }
    }

    /// The automatic retry of `finished`, as the server has it, if there
    /// is one to follow next.
    async fn next(
        &mut self,
        api: &Api,
        finished: &JobResponse,
    ) -> Result<Option<JobResponse>, ClientError> {
        let limit = *self.limit.get_or_insert(finished.max_retries);
        let Some(candidate) = retry_candidate(finished, limit) else {
            return Ok(None);
        };
        match api.job(&candidate.to_string()).await {
            Ok(retry) => Ok(continues_chain(finished, &retry).then_some(retry)),
            // Deleted meanwhile: there is nothing more to follow.
            Err(ClientError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// The job that may be `finished`'s automatic retry. The server writes
/// that retry with the failure, in the same transaction, so the failed
/// job's final state already lists it; and first, since a retry asked for
/// by hand needs the job finished. `limit` bounds the chain.
fn retry_candidate(finished: &JobResponse, limit: u32) -> Option<rje_domain::JobId> {
    let may_rerun = finished.status == Status::Failed
        && finished.retry_on_failure
        && finished.retry_number < limit;
    may_rerun
        .then(|| finished.retries.first().copied())
        .flatten()
}

/// Whether `retry` is the automatic retry of `failed`: one further down
/// its chain. A retry by hand starts a chain of its own, at 0, and is
/// someone else's new job, not this one's next attempt.
fn continues_chain(failed: &JobResponse, retry: &JobResponse) -> bool {
    retry.retry_of == Some(failed.id) && retry.retry_number == failed.retry_number + 1
}

/// What a person watching is told when an attempt failed and another runs
/// it again. When it starts is the server's backoff, which its answers do
/// not say.
fn retry_notice(failed: &JobResponse, retry: &JobResponse) -> String {
    let how = outcome_detail(failed).unwrap_or_default();
    format!(
        "attempt failed{how}; retrying as {} (retry {} of {})",
        retry.id, retry.retry_number, retry.max_retries
    )
}

/// Prints output live, stdout to stdout and stderr to stderr, following
/// the job's automatic retries, then exits with the last attempt's code.
async fn follow_output(
    api: &Api,
    id: &str,
    since: i64,
    presenter: Presenter,
) -> Result<ExitCode, ClientError> {
    let mut chain = RetryChain::new();
    let mut id = id.to_owned();
    let mut since = since;
    loop {
        let started = Instant::now();
        let followed = follow_job(api, &id, since, presenter, |event| {
            print_event(event, presenter)
        })
        .await?;
        if let Followed::Detached = followed {
            return Ok(ExitCode::CANCELLED);
        }
        let job = api.job(&id).await?;
        let Some(retry) = chain.next(api, &job).await? else {
            if presenter.decorate() {
                eprintln!("{}", summary(&job, started));
            }
            return Ok(job_exit_code(&job));
        };
        if presenter.json {
            println!(
                "{}",
                json!({"type": "retry", "id": retry.id, "retry_of": job.id})
            );
        } else if presenter.decorate() {
            eprintln!("{}", retry_notice(&job, &retry));
        }
        id = retry.id.to_string();
        // `since` was a chunk of the first job's output; the retry's is
        // all new.
        since = 0;
    }
}

/// One event of a followed job: its output as it came, or with --json,
/// every event as a line of JSON.
fn print_event(event: Event, presenter: Presenter) -> Result<(), ClientError> {
    match event {
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
    }
}

/// ` (what went wrong)`, when the job says.
fn outcome_detail(job: &JobResponse) -> Option<String> {
    match (job.exit_code, &job.error) {
        (_, Some(error)) => Some(format!(" ({error})")),
        (Some(code), None) if code != 0 => Some(format!(" (exit {code})")),
        _ => None,
    }
}

fn summary(job: &JobResponse, started: Instant) -> String {
    let elapsed = format!("{:.1}s", started.elapsed().as_secs_f64());
    let detail = outcome_detail(job).unwrap_or_default();
    format!(
        "{} {}{detail} in {elapsed}",
        status_text(job.status),
        job.id
    )
}

/// Waits for the job and its automatic retries, showing each attempt's
/// output as it ends, then exits with the last attempt's code; with
/// --json, prints the last attempt alone.
async fn wait_and_show(api: &Api, id: &str, presenter: Presenter) -> Result<ExitCode, ClientError> {
    let mut chain = RetryChain::new();
    let mut id = id.to_owned();
    loop {
        let started = Instant::now();
        let Some(job) = wait_for(api, &id, presenter).await? else {
            return Ok(ExitCode::CANCELLED);
        };
        if !presenter.json {
            write_job_output(&job)?;
        }
        let Some(retry) = chain.next(api, &job).await? else {
            if presenter.json {
                print_json(&job);
            } else if presenter.decorate() {
                eprintln!("{}", summary(&job, started));
            }
            return Ok(job_exit_code(&job));
        };
        if presenter.decorate() {
            eprintln!("{}", retry_notice(&job, &retry));
        }
        id = retry.id.to_string();
    }
}

/// The job once it finished, waited for behind a spinner; `None` when the
/// user detached.
async fn wait_for(
    api: &Api,
    id: &str,
    presenter: Presenter,
) -> Result<Option<JobResponse>, ClientError> {
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
    match followed? {
        Followed::Detached => Ok(None),
        Followed::Finished => api.job(id).await.map(Some),
    }
}

/// A finished job's stored output, each stream to its own.
fn write_job_output(job: &JobResponse) -> Result<(), ClientError> {
    write_output(
        rje_domain::Stream::Stdout,
        job.stdout.as_deref().unwrap_or(""),
    )?;
    write_output(
        rje_domain::Stream::Stderr,
        job.stderr.as_deref().unwrap_or(""),
    )
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
        if !confirm(&format!(
            "Cancel job {id} ({}, {})?",
            job.command, job.status
        ))
        .await
        {
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
    let mut query = vec![("limit", args.limit.to_string())];
    if args.offset > 0 {
        query.push(("offset", args.offset.to_string()));
    }
    if let Some(ordering) = &args.ordering {
        query.push(("ordering", ordering.clone()));
    }
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
    if let Some(schedule) = &args.schedule {
        query.push((
            "schedule",
            crate::schedules::schedule_id(&api, schedule).await?,
        ));
    }
    let mut cursor = args.cursor.clone();
    loop {
        let mut pairs = query.clone();
        pairs.extend(cursor.iter().map(|cursor| ("cursor", cursor.clone())));
        let page = api.list(&query_string(&pairs)).await?;
        if args.all {
            if presenter.json {
                for job in &page.jobs {
                    print_json_line(job)?;
                }
            } else if !page.jobs.is_empty() {
                println!("{}", presenter.jobs_table(&page.jobs));
            } else if cursor.is_none() {
                println!("no jobs (of {} matching)", page.total_count);
            }
            match page.next {
                Some(next) => {
                    cursor = Some(next);
                    continue;
                }
                None => return Ok(ExitCode::SUCCESS),
            }
        }
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
            println!("{}", page_footer(&args, &page));
        }
        return Ok(ExitCode::SUCCESS);
    }
}

/// Where a page of a listing stands, and how to get the next one.
fn page_footer(args: &ListArgs, page: &rje_proto::JobListResponse) -> String {
    let shown = page.jobs.len() as u64;
    let total = if page.total_count_exact {
        page.total_count.to_string()
    } else {
        format!("about {}", page.total_count)
    };
    let place = if args.cursor.is_some() {
        format!("{shown} of {total}")
    } else {
        format!("{}–{} of {total}", args.offset + 1, args.offset + shown)
    };
    match &page.next {
        Some(next) => format!("{place}; next page: --cursor {next}"),
        None => place,
    }
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
            assert_eq!(args.job.priority, Some(PriorityArg::High), "{priority}");
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

    /// A Failed job of a chain: `number` automatic retries before it,
    /// `retries` after it.
    fn attempt(id: &str, number: u32, retry_of: Option<&str>, retries: &[&str]) -> JobResponse {
        let mut job = job(Status::Failed, Some(3), None, None);
        let id_of = |text: &str| rje_domain::JobId::parse(text).unwrap();
        job.id = id_of(id);
        job.retry_on_failure = true;
        job.retry_number = number;
        job.retry_of = retry_of.map(id_of);
        job.retries = retries.iter().map(|id| id_of(id)).collect();
        job
    }

    const FIRST: &str = "0195f5a4-1a2b-7c3d-8e4f-000000000001";
    const SECOND: &str = "0195f5a4-1a2b-7c3d-8e4f-000000000002";
    const BY_HAND: &str = "0195f5a4-1a2b-7c3d-8e4f-000000000003";

    #[test]
    fn a_failed_attempt_is_followed_by_its_automatic_retry() {
        let failed = attempt(FIRST, 0, None, &[SECOND, BY_HAND]);
        assert_eq!(
            retry_candidate(&failed, 3).map(|id| id.to_string()),
            Some(SECOND.to_owned()),
            "the first listed: the one written with the failure"
        );
        let automatic = attempt(SECOND, 1, Some(FIRST), &[]);
        assert!(continues_chain(&failed, &automatic));
        assert_eq!(
            retry_notice(&failed, &automatic),
            format!("attempt failed (exit 3); retrying as {SECOND} (retry 1 of 3)")
        );
        // A run again by hand starts a chain of its own.
        let by_hand = attempt(BY_HAND, 0, Some(FIRST), &[]);
        assert!(!continues_chain(&failed, &by_hand));
        let elsewhere = attempt(BY_HAND, 1, Some(SECOND), &[]);
        assert!(!continues_chain(&failed, &elsewhere));
    }

    #[test]
    fn only_a_failure_that_asked_for_retries_is_followed_further() {
        let failed = attempt(FIRST, 0, None, &[SECOND]);
        let mut succeeded = failed.clone();
        succeeded.status = Status::Success;
        assert_eq!(retry_candidate(&succeeded, 3), None);
        let mut cancelled = failed.clone();
        cancelled.status = Status::Cancelled;
        assert_eq!(retry_candidate(&cancelled, 3), None);
        let mut not_asked = failed.clone();
        not_asked.retry_on_failure = false;
        assert_eq!(
            retry_candidate(&not_asked, 3),
            None,
            "its retries are by hand"
        );
        assert_eq!(retry_candidate(&attempt(FIRST, 0, None, &[]), 3), None);
        // The chain stops at the first job's max_retries, whatever the
        // server lists.
        assert_eq!(
            retry_candidate(&attempt(FIRST, 3, None, &[SECOND]), 3),
            None
        );
        assert!(retry_candidate(&attempt(FIRST, 2, None, &[SECOND]), 3).is_some());
    }

    #[test]
    fn a_submit_sends_only_the_options_given() {
        let ClientCommand::Submit(args) = parse(&["submit", "make"]).unwrap() else {
            panic!("not a submit");
        };
        assert_eq!(
            serde_json::to_value(args.job.submit_request()).unwrap(),
            json!({"command": "make"}),
            "a server that predates a field still takes the submit"
        );
        let ClientCommand::Submit(args) = parse(&[
            "submit",
            "make",
            "--retry-on-failure",
            "--max-retries",
            "2",
            "--stream",
        ])
        .unwrap() else {
            panic!("not a submit");
        };
        assert!(args.stream);
        assert_eq!(
            serde_json::to_value(args.job.submit_request()).unwrap(),
            json!({"command": "make", "max_retries": 2, "retry_on_failure": true})
        );
    }

    #[test]
    fn retry_prune_and_list_flags_parse() {
        let ClientCommand::Retry(args) = parse(&["retry", FIRST, "--stream"]).unwrap() else {
            panic!("not a retry");
        };
        assert_eq!(
            (args.id.as_str(), args.stream, args.json),
            (FIRST, true, false)
        );

        let ClientCommand::Prune(args) = parse(&[
            "prune",
            "--before",
            "2026-01-31T00:00:00Z",
            "--status",
            "success,FAILED",
        ])
        .unwrap() else {
            panic!("not a prune");
        };
        use crate::prune::FinalStatusArg;
        assert_eq!(
            args.statuses,
            [FinalStatusArg::Success, FinalStatusArg::Failed]
        );
        assert_eq!(args.before.to_rfc3339(), "2026-01-31T00:00:00+00:00");
        assert!(parse(&["prune", "--before", "30d"]).is_ok());
        assert!(parse(&["prune"]).is_err(), "--before is needed");
        assert!(parse(&["prune", "--before", "30"]).is_err());
        assert!(
            parse(&["prune", "--before", "30d", "--status", "running"]).is_err(),
            "only final statuses"
        );

        let ClientCommand::List(list) = parse(&["list", "--schedule", "nightly"]).unwrap() else {
            panic!("not a list");
        };
        assert_eq!(list.schedule.as_deref(), Some("nightly"));
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
