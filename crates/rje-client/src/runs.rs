//! `rje run` and `rje runs`: one command on many hosts, one job per host,
//! followed live and recapped; and the runs listed, shown, cancelled,
//! retried and watched.

mod follower;
pub(crate) mod view;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{ArgGroup, Args, Subcommand};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rje_domain::{FailureLimit, JobId, Priority, Stream};
use rje_proto::{RunMessage, RunRequest, RunResponse};
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;

use crate::api::{Api, run_path_id};
use crate::commands::{PriorityArg, ask_cancel, confirm};
use crate::present::{Presenter, print_json, print_json_line, status_text, write_output};
use crate::{ClientError, Connection, ExitCode};
use follower::RunFollower;
use view::{
    OutputLines, RunState, TAIL_LINES, host_width, live_lines, recap, run_exit_code, tail,
    wants_tail,
};

/// `rje run`: the options of a run, and how to follow it.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["hosts", "labels"])))]
pub struct RunArgs {
    /// The shell command to run on every host (`sh -c`). Quote it.
    pub command: String,
    /// The hosts to run on, by name: comma-separated, or the flag
    /// repeated.
    #[arg(long, alias = "host", value_delimiter = ',', value_name = "HOST,...")]
    pub hosts: Vec<String>,
    /// Every host carrying all of these labels (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LABEL,...")]
    pub labels: Vec<String>,
    /// Hosts running at once, 1 to 1000 [server's default: 10]
    #[arg(long, alias = "max-parallel", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub parallel: Option<u32>,
    /// Failed hosts tolerated: a count (3) or a share of the hosts (10%).
    /// One more, and the hosts not yet started are Skipped [default: no
    /// limit]
    #[arg(long, value_name = "N|P%", value_parser = parse_failure_limit)]
    pub max_failures: Option<FailureLimit>,
    /// Skip the hosts not yet started as soon as one fails (--max-failures
    /// 0).
    #[arg(long, conflicts_with = "max_failures")]
    pub stop_on_first_failure: bool,
    /// high, medium or low (any case).
    #[arg(long, short, value_enum, ignore_case = true)]
    pub priority: Option<PriorityArg>,
    /// Seconds before a host's command is killed.
    #[arg(long, short)]
    pub timeout: Option<u32>,
    /// Retries of a host that could not be reached, 0 to 10 [server's
    /// default for a run: 0]
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Print every host's output as it comes, each line after its host's
    /// name: `web-1 | line`, stderr `web-1 ! line`.
    #[arg(long)]
    pub output: bool,
    /// Print JSON lines: each change of the run, then the run (with
    /// --detach, the run alone).
    #[arg(long)]
    pub json: bool,
    /// Start the run and print its id, without following it.
    #[arg(long, conflicts_with = "output")]
    pub detach: bool,
}

/// `--max-failures`: `3` or `10%`, as the server reads it.
fn parse_failure_limit(text: &str) -> Result<FailureLimit, String> {
    text.parse()
}

impl RunArgs {
    /// The body of `POST /runs/`: only the options given, so that the
    /// server's defaults stand for the others.
    fn request(&self) -> RunRequest {
        let names = |names: &Vec<String>| (!names.is_empty()).then(|| names.clone());
        RunRequest {
            command: self.command.clone(),
            hosts: names(&self.hosts),
            labels: names(&self.labels),
            max_parallel: self.parallel,
            max_failures: self.max_failures.map(|limit| match limit {
                FailureLimit::Count(count) => json!(count),
                FailureLimit::Percent(_) => json!(limit.to_string()),
            }),
            stop_on_first_failure: self.stop_on_first_failure.then_some(true),
            priority: self.priority.map(Priority::from),
            timeout: self.timeout,
            parameters: None,
            max_retries: self.max_retries,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub action: RunsAction,
    /// Print JSON: the server's answer (following a run: JSON lines, as
    /// `rje run --json`).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RunsAction {
    /// The runs, newest first: status, hosts, outcomes, duration.
    List(ListRunsArgs),
    /// A run, and each host's outcome, exit code, duration and error.
    Show(RunRef),
    /// Cancel a run: hosts not yet started never are, running ones are
    /// killed.
    Cancel(CancelRunArgs),
    /// Run again, as a new run, on the hosts of a finished run that did
    /// not succeed.
    Retry(RetryRunArgs),
    /// Follow a run as `rje run` does: live, then its recap; exits as it
    /// does.
    Watch(WatchRunArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ListRunsArgs {
    /// Runs per page (1 to 100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RunRef {
    /// The run's id.
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct CancelRunArgs {
    /// The run's id.
    pub id: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RetryRunArgs {
    /// The finished run whose hosts that did not succeed run again.
    pub id: String,
    /// Follow the new run as `rje run` does, and exit as it does.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: print every host's output as it comes.
    #[arg(long, requires = "follow")]
    pub output: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WatchRunArgs {
    /// The run's id.
    pub id: String,
    /// Print every host's output as it comes (from its first line).
    #[arg(long)]
    pub output: bool,
}

/// `rje run`: starts the run and, unless `--detach`, follows it.
pub async fn run(connection: &Connection, args: RunArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let presenter = Presenter::new(args.json);
    let run = api.create_run(&args.request()).await?;
    if args.detach {
        print_new_run(&run, presenter);
        return Ok(ExitCode::SUCCESS);
    }
    if presenter.decorate() {
        eprintln!(
            "{} run {} on {} hosts",
            console::style("started").dim().for_stderr(),
            run.id,
            run.hosts.len()
        );
    }
    follow_run(&api, run, args.output, presenter).await
}

pub async fn runs(connection: &Connection, args: RunsArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let presenter = Presenter::new(args.json);
    match args.action {
        RunsAction::List(list) => list_runs(&api, list, presenter).await,
        RunsAction::Show(target) => {
            let run = api.run(run_path_id(&target.id)?).await?;
            if presenter.json {
                print_json(&run);
            } else {
                println!("{}", presenter.run_table(&run));
                println!("{}", presenter.run_hosts_table(&run.jobs));
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsAction::Cancel(cancel) => cancel_run(&api, cancel, presenter).await,
        RunsAction::Retry(retry) => {
            let old = run_path_id(&retry.id)?;
            let run = api.retry_run(old).await?;
            if !retry.follow {
                print_new_run(&run, presenter);
                return Ok(ExitCode::SUCCESS);
            }
            if presenter.decorate() {
                eprintln!(
                    "{} run {old} as {} on {} hosts",
                    console::style("retrying").dim().for_stderr(),
                    run.id,
                    run.hosts.len()
                );
            }
            follow_run(&api, run, retry.output, presenter).await
        }
        RunsAction::Watch(watch) => {
            let run = api.run(run_path_id(&watch.id)?).await?;
            follow_run(&api, run, watch.output, presenter).await
        }
    }
}

async fn list_runs(
    api: &Api,
    args: ListRunsArgs,
    presenter: Presenter,
) -> Result<ExitCode, ClientError> {
    let page = api.runs(args.limit, args.offset).await?;
    if presenter.json {
        print_json(&page);
        return Ok(ExitCode::SUCCESS);
    }
    if page.runs.is_empty() {
        println!("no runs (of {})", page.total_count);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", presenter.runs_table(&page.runs));
    if presenter.stdout_tty {
        let first = args.offset + 1;
        let last = args.offset + page.runs.len() as u64;
        println!("{first}–{last} of {}", page.total_count);
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks first on a terminal, as `rje cancel` does.
async fn cancel_run(
    api: &Api,
    args: CancelRunArgs,
    presenter: Presenter,
) -> Result<ExitCode, ClientError> {
    let id = run_path_id(&args.id)?;
    if !args.force && presenter.interactive() {
        let run = api.run(id).await?;
        let question = format!(
            "Cancel run {id} ({}, {} hosts, {})?",
            run.command,
            run.hosts.len(),
            run.status
        );
        if !confirm(&question).await {
            eprintln!("not cancelled");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let run = api.cancel_run(id).await?;
    if presenter.json {
        print_json(&run);
    } else if run.status.is_final() {
        println!("run {id} is {}", status_text(run.status));
    } else {
        println!(
            "cancel requested; run {id} is stopping ({} hosts still running)",
            run.counts.running
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Tells of a run just started: JSON with --json, a sentence on a
/// terminal, and piped, just the id, for `ID=$(rje run … --detach)`.
fn print_new_run(run: &RunResponse, presenter: Presenter) {
    if presenter.json {
        print_json(run);
    } else if presenter.stdout_tty {
        let again = run
            .retry_of
            .map(|old| format!(", running run {old} again"))
            .unwrap_or_default();
        println!(
            "Started run {} on {} hosts{again}; `rje runs watch {}` follows it",
            run.id,
            run.hosts.len(),
            run.id
        );
    } else {
        println!("{}", run.id);
    }
}

/// Host lines the live view shows at most, whatever the terminal's height:
/// past that it would redraw more than anyone reads.
const MAX_HOST_LINES: usize = 30;

/// The live view on stderr: a summary line and the hosts that fit (the
/// summary alone when the output is printed too, so that the lines have
/// the terminal). Redrawn by the caller's clock, not indicatif's, so that
/// nothing moves while a question is asked. Absent when no person watches
/// stderr.
struct LiveView {
    bar: Option<ProgressBar>,
    enabled: bool,
    compact: bool,
    started: Instant,
}

impl LiveView {
    fn new(enabled: bool, compact: bool) -> Self {
        let mut view = Self {
            bar: None,
            enabled,
            compact,
            started: Instant::now(),
        };
        view.show();
        view
    }

    fn show(&mut self) {
        if self.enabled && self.bar.is_none() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            self.bar = Some(bar);
        }
    }

    /// Takes the view off the terminal, until [`Self::show`].
    fn hide(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn shown(&self) -> bool {
        self.bar.is_some()
    }

    fn draw(&self, state: &RunState, live: bool) {
        let Some(bar) = &self.bar else {
            return;
        };
        let (rows, cols) = console::Term::stderr().size();
        // Room for the summary, the shell's prompt and a line of output.
        let rows = if self.compact {
            0
        } else {
            usize::from(rows).saturating_sub(4).min(MAX_HOST_LINES)
        };
        // The last column left free: a line that fills it wraps on some
        // terminals, and throws the redraw off.
        let cols = usize::from(cols).saturating_sub(1).max(20);
        let frame = (self.started.elapsed().as_millis() / 100) as usize;
        let lines = live_lines(state, Utc::now(), frame, rows, cols, live);
        bar.set_message(lines.join("\n"));
    }

    /// Runs `write` with the view off the terminal, so that what it writes
    /// lands above the view rather than through it.
    fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.hide();
    }
}

/// Follows a run until it is final and tells how it ended, then exits as
/// [`run_exit_code`] says. For a person (stdout a terminal, no --json):
/// the live view on stderr, the output with --output, then the recap.
/// Otherwise JSON lines: each message as the follower passes it on, then
/// the run as `GET /runs/{id}/` gives it.
///
/// Ctrl-C never cancels the run by itself: as for `rje submit --stream`,
/// on a terminal it asks whether to cancel the run or to detach (anything
/// but `y` detaches), elsewhere it detaches. Detached, the run goes on
/// and the exit code is 130.
async fn follow_run(
    api: &Api,
    run: RunResponse,
    output: bool,
    presenter: Presenter,
) -> Result<ExitCode, ClientError> {
    let id = run.id.to_string();
    let human = presenter.stdout_tty && !presenter.json;
    let telling = telling(human, output);
    let mut state = RunState::new(&run);
    let mut lines = OutputLines::new(host_width(run.hosts.iter().map(String::as_str)));
    let mut view = LiveView::new(presenter.decorate(), output);
    let follower = RunFollower::new(api.clone(), &id, output);
    let watch = follower.watch();
    let messages = follower.messages();
    let mut messages = std::pin::pin!(messages);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut cancel_sent = false;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message.transpose()? else {
                    break;
                };
                state.apply(&message);
                match telling {
                    Telling::View => {}
                    Telling::ViewAndOutput => show_output(&message, &mut lines, &view)?,
                    Telling::JsonLines => print_json_line(&message)?,
                }
            }
            _ = tick.tick(), if view.shown() => view.draw(&state, watch.live()),
            _ = tokio::signal::ctrl_c() => {
                let cancel = !cancel_sent && presenter.interactive() && {
                    view.hide();
                    let unfinished = state.counts.queued + state.counts.running;
                    let what = format!("run {id} ({unfinished} hosts not finished)");
                    let cancel = ask_cancel(&what).await;
                    view.show();
                    cancel
                };
                if !cancel {
                    view.hide();
                    if presenter.decorate() {
                        eprintln!(
                            "detached; run {id} goes on (rje runs watch {id} to follow it again)"
                        );
                    }
                    return Ok(ExitCode::CANCELLED);
                }
                match api.cancel_run(&id).await {
                    // Final meanwhile: its last message is on its way.
                    Ok(_) | Err(ClientError::Conflict(_)) => cancel_sent = true,
                    Err(err) => return Err(err),
                }
            }
        }
    }
    view.hide();
    if watch.output_missing() {
        eprintln!(
            "warning: the connection to the server was lost and could not be had again \
             before run {id} ended: some of its hosts' output may be missing here \
             (`rje runs show {id}` lists their jobs, `rje stream JOB-ID` prints one's output)"
        );
    }
    let last = api.run(&id).await?;
    if human {
        for (stream, text) in lines.flush_all() {
            write_output(stream, &text)?;
        }
        let (tails, untold) = stderr_tails(api, &last).await;
        let gap = if output { "\n" } else { "" };
        write_output(
            Stream::Stdout,
            &format!("{gap}{}", recap(&last, &tails, untold)),
        )?;
    } else {
        print_json_line(&last)?;
    }
    Ok(run_exit_code(last.status, &last.counts))
}

/// How the messages of a followed run are told as they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telling {
    /// A person without --output: the live view (and, at the end, the
    /// recap) tells it all; nothing on stdout meanwhile.
    View,
    /// A person with --output: the view, and the output lines, prefixed.
    ViewAndOutput,
    /// Piped or --json: every message, as a line of JSON, for a program.
    JsonLines,
}

/// How a run is told: JSON lines only when no person reads stdout (piped,
/// or --json); a person never gets them mixed into the view.
fn telling(human: bool, output: bool) -> Telling {
    match (human, output) {
        (true, false) => Telling::View,
        (true, true) => Telling::ViewAndOutput,
        (false, _) => Telling::JsonLines,
    }
}

/// What a person reads of a message as it comes: output lines, prefixed;
/// a job's last unfinished line once it ends. The rest is the live view's.
fn show_output(
    message: &RunMessage,
    lines: &mut OutputLines,
    view: &LiveView,
) -> Result<(), ClientError> {
    match message {
        RunMessage::Output {
            job_id,
            host,
            stream,
            log,
            ..
        } => {
            let text = lines.push(*job_id, host, *stream, log);
            if text.is_empty() {
                return Ok(());
            }
            view.suspend(|| write_output(*stream, &text))
        }
        RunMessage::Job { job_id, status, .. } if status.is_final() => {
            for (stream, text) in lines.flush(*job_id) {
                view.suspend(|| write_output(stream, &text))?;
            }
            Ok(())
        }
        RunMessage::Job { .. } | RunMessage::Run { .. } => Ok(()),
    }
}

/// Hosts whose stderr the recap reads at most: past that, the recap would
/// be a wall, and fetching it a load on the server.
const RECAP_TAILS: usize = 50;
/// Jobs read at once for the recap.
const TAIL_FETCHES: usize = 8;

/// The end of the stderr of each host that ran and did not succeed (the
/// first [`RECAP_TAILS`] of them), and how many more there are. Best
/// effort: a job that cannot be read goes without.
async fn stderr_tails(api: &Api, run: &RunResponse) -> (HashMap<JobId, Vec<String>>, usize) {
    let wanted: Vec<JobId> = run
        .jobs
        .iter()
        .filter(|job| wants_tail(job))
        .map(|job| job.id)
        .collect();
    let untold = wanted.len().saturating_sub(RECAP_TAILS);
    let read: Vec<(JobId, Result<rje_proto::JobResponse, ClientError>)> =
        futures_util::stream::iter(wanted.into_iter().take(RECAP_TAILS))
            .map(|id| async move { (id, api.job(&id.to_string()).await) })
            .buffer_unordered(TAIL_FETCHES)
            .collect()
            .await;
    let tails = read
        .into_iter()
        .filter_map(|(id, job)| match job {
            Ok(job) => Some((id, tail(job.stderr.as_deref().unwrap_or(""), TAIL_LINES))),
            Err(err) => {
                tracing::debug!(job = %id, %err, "no stderr for the recap");
                None
            }
        })
        .filter(|(_, tail)| !tail.is_empty())
        .collect();
    (tails, untold)
}

/// `max_failures` as the server gave it: a count, a share, or none.
pub(crate) fn max_failures_text(limit: Option<&Value>) -> String {
    match limit {
        None | Some(Value::Null) => "no limit".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientCommand;

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

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let words: Vec<&str> = std::iter::once("run").chain(args.iter().copied()).collect();
        parse(&words).map(|command| match command {
            ClientCommand::Run(args) => args,
            other => panic!("not a run: {other:?}"),
        })
    }

    fn body(args: &[&str]) -> Value {
        let args = run_args(args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
        serde_json::to_value(args.request()).unwrap()
    }

    #[test]
    fn a_run_sends_only_the_options_given() {
        assert_eq!(
            body(&["uptime", "--hosts", "web-1,web-2", "--hosts", "db-1"]),
            json!({"command": "uptime", "hosts": ["web-1", "web-2", "db-1"]})
        );
        assert_eq!(
            body(&[
                "make deploy",
                "--labels",
                "web,eu",
                "--parallel",
                "5",
                "--max-failures",
                "10%",
                "-p",
                "HIGH",
                "-t",
                "600",
                "--max-retries",
                "2",
            ]),
            json!({
                "command": "make deploy", "labels": ["web", "eu"], "max_parallel": 5,
                "max_failures": "10%", "priority": "High", "timeout": 600, "max_retries": 2,
            })
        );
        assert_eq!(
            body(&["true", "--host", "web-1", "--max-failures", "3"]),
            json!({"command": "true", "hosts": ["web-1"], "max_failures": 3}),
            "a count is sent as a number, --host is --hosts"
        );
        assert_eq!(
            body(&["true", "--hosts", "web-1", "--stop-on-first-failure"]),
            json!({"command": "true", "hosts": ["web-1"], "stop_on_first_failure": true})
        );
    }

    #[test]
    fn max_failures_is_a_count_or_a_share() {
        assert_eq!(parse_failure_limit("0"), Ok(FailureLimit::Count(0)));
        assert_eq!(parse_failure_limit("3"), Ok(FailureLimit::Count(3)));
        assert_eq!(parse_failure_limit("10%"), Ok(FailureLimit::Percent(10)));
        assert_eq!(parse_failure_limit("100%"), Ok(FailureLimit::Percent(100)));
        for bad in ["-1", "101%", "ten", "10 %", "%", "1.5"] {
            assert!(parse_failure_limit(bad).is_err(), "{bad}");
            assert!(
                run_args(&["x", "--hosts", "a", "--max-failures", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_run_names_one_target_and_consistent_controls() {
        assert!(run_args(&["uptime"]).is_err(), "hosts or labels");
        assert!(run_args(&["uptime", "--hosts", "a", "--labels", "web"]).is_err());
        assert!(
            run_args(&[
                "x",
                "--hosts",
                "a",
                "--max-failures",
                "1",
                "--stop-on-first-failure"
            ])
            .is_err()
        );
        assert!(run_args(&["x", "--hosts", "a", "--parallel", "0"]).is_err());
        assert!(run_args(&["x", "--hosts", "a", "--parallel", "1001"]).is_err());
        assert!(run_args(&["x", "--hosts", "a", "--detach", "--output"]).is_err());
        let args = run_args(&["x", "--hosts", "a", "--detach", "--json"]).unwrap();
        assert!(args.detach && args.json && !args.output);
    }

    fn runs_action(args: &[&str]) -> Result<RunsArgs, clap::Error> {
        let words: Vec<&str> = std::iter::once("runs")
            .chain(args.iter().copied())
            .collect();
        parse(&words).map(|command| match command {
            ClientCommand::Runs(args) => args,
            other => panic!("not runs: {other:?}"),
        })
    }

    #[test]
    fn the_runs_subcommands_parse() {
        const ID: &str = "0195f5a4-1a2b-7c3d-8e4f-0123456789ab";
        let args = runs_action(&["list", "--limit", "5", "--offset", "10", "--json"]).unwrap();
        assert!(args.json);
        assert!(matches!(
            args.action,
            RunsAction::List(ListRunsArgs {
                limit: 5,
                offset: 10
            })
        ));
        assert!(runs_action(&["list", "--limit", "101"]).is_err());
        assert!(matches!(
            runs_action(&["show", ID]).unwrap().action,
            RunsAction::Show(_)
        ));
        let RunsAction::Cancel(cancel) = runs_action(&["cancel", ID, "-f"]).unwrap().action else {
            panic!("not a cancel");
        };
        assert!(cancel.force);
        let RunsAction::Retry(retry) = runs_action(&["retry", ID, "--follow", "--output"])
            .unwrap()
            .action
        else {
            panic!("not a retry");
        };
        assert!(retry.follow && retry.output);
        assert!(
            runs_action(&["retry", ID, "--output"]).is_err(),
            "--output follows"
        );
        let args = runs_action(&["watch", ID, "--output", "--json"]).unwrap();
        assert!(args.json);
        assert!(matches!(
            args.action,
            RunsAction::Watch(WatchRunArgs { output: true, .. })
        ));
        assert!(runs_action(&["watch"]).is_err(), "an id");
    }

    #[test]
    fn run_ids_are_checked_before_they_reach_a_route() {
        assert!(run_path_id("0195f5a4-1a2b-7c3d-8e4f-0123456789ab").is_ok());
        for bad in ["", "../jobs", "abc/def", "x"] {
            assert!(
                matches!(run_path_id(bad), Err(ClientError::NotFound(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_lines_only_when_no_person_reads_stdout() {
        assert_eq!(
            telling(true, false),
            Telling::View,
            "no JSON under the view"
        );
        assert_eq!(telling(true, true), Telling::ViewAndOutput);
        assert_eq!(telling(false, false), Telling::JsonLines);
        assert_eq!(telling(false, true), Telling::JsonLines);
    }

    #[test]
    fn limits_read_as_given() {
        assert_eq!(max_failures_text(None), "no limit");
        assert_eq!(max_failures_text(Some(&json!("10%"))), "10%");
        assert_eq!(max_failures_text(Some(&json!(3))), "3");
    }
}
