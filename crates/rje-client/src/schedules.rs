//! `rje schedules`: jobs fired on a timetable, and how they are made,
//! shown, changed, paused and deleted.

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use rje_domain::{Misfire, Overlap, Priority, ScheduleId};
use rje_proto::{ScheduleRequest, ScheduleResponse};
use serde_json::{Map, Value, json};

use crate::api::{Api, schedule_path_id};
use crate::commands::{JobOptions, PriorityArg};
use crate::present::{Presenter, fire_time_text, print_json};
use crate::{ClientError, Connection, ExitCode};

#[derive(Debug, Clone, Args)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    pub action: SchedulesAction,
    /// Print the server's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SchedulesAction {
    /// The schedules: timetable, next fire time, last job.
    List(ListSchedulesArgs),
    /// Create a schedule, and show its next five fire times.
    Create(CreateScheduleArgs),
    /// Every field of a schedule, its next five fire times and its last
    /// job.
    Show(ScheduleRef),
    /// Change some of a schedule's fields; the others stay as they are.
    Edit(EditScheduleArgs),
    /// Stop firing: no job until `resume`.
    Pause(ScheduleRef),
    /// Fire again, from the next fire time on.
    Resume(ScheduleRef),
    /// Delete a schedule: it fires no more.
    Delete(ScheduleRef),
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleRef {
    /// The schedule's name or id.
    #[arg(value_name = "NAME|ID")]
    pub schedule: String,
}

#[derive(Debug, Clone, Args)]
pub struct ListSchedulesArgs {
    /// Schedules per page (1 to 100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

/// What a fire time does while the schedule's last job is still queued or
/// running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverlapArg {
    /// Fire all the same (the default).
    Allow,
    /// Fire nothing; the skip is recorded.
    Skip,
    /// Fire a job that waits for the last one: one at a time, in order.
    Queue,
}

/// What a fire time missed while no rje ran does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MisfireArg {
    /// Nothing: the schedule fires at its next fire time (the default).
    Skip,
    /// One catch-up job for the latest missed fire time, never one per
    /// missed fire.
    #[value(name = "run_once", alias = "run-once")]
    RunOnce,
}

impl From<OverlapArg> for Overlap {
    fn from(arg: OverlapArg) -> Self {
        match arg {
            OverlapArg::Allow => Overlap::Allow,
            OverlapArg::Skip => Overlap::Skip,
            OverlapArg::Queue => Overlap::Queue,
        }
    }
}

impl From<MisfireArg> for Misfire {
    fn from(arg: MisfireArg) -> Self {
        match arg {
            MisfireArg::Skip => Misfire::Skip,
            MisfireArg::RunOnce => Misfire::RunOnce,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CreateScheduleArgs {
    /// Unique: 1 to 100 letters, digits, `.`, `_` or `-`, starting with a
    /// letter or digit.
    pub name: String,
    #[command(flatten)]
    pub job: JobOptions,
    /// When it fires: 5 fields (minute hour day month weekday), 6 with
    /// seconds first, or @hourly, @daily, @weekly, @monthly, @yearly.
    /// Quote it.
    #[arg(long, value_name = "EXPR")]
    pub cron: String,
    /// The IANA time zone whose wall clock the cron expression reads
    /// (Europe/Berlin, America/New_York) [default: UTC]
    #[arg(long = "tz", value_name = "ZONE")]
    pub timezone: Option<String>,
    /// While the last job is still queued or running [default: allow]
    #[arg(long, value_enum, ignore_case = true)]
    pub overlap: Option<OverlapArg>,
    /// For fire times missed while no rje ran [default: skip]
    #[arg(long, value_enum, ignore_case = true)]
    pub misfire: Option<MisfireArg>,
    /// Create it paused: it fires nothing until `rje schedules resume`.
    #[arg(long)]
    pub paused: bool,
}

impl CreateScheduleArgs {
    /// The body of `POST /schedules/`: what was not given is left to the
    /// server's defaults.
    fn request(&self) -> ScheduleRequest {
        let job = self.job.submit_request();
        ScheduleRequest {
            name: self.name.clone(),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            command: job.command,
            priority: job.priority,
            timeout: job.timeout,
            host: job.host,
            parameters: None,
            max_retries: job.max_retries,
            retry_on_failure: job.retry_on_failure,
            overlap: self.overlap.map(Overlap::from),
            misfire: self.misfire.map(Misfire::from),
            paused: self.paused.then_some(true),
        }
    }
}

/// At least one change is needed: an edit without one would only ask the
/// server for what `show` gives.
#[derive(Debug, Clone, Args)]
#[command(
    group(ArgGroup::new("change").required(true).multiple(true)),
    override_usage = "rje schedules edit <NAME|ID> <OPTION>... (one or more of those below)"
)]
pub struct EditScheduleArgs {
    /// The schedule's name or id.
    #[arg(value_name = "NAME|ID")]
    pub schedule: String,
    /// A new cron expression (as for `create`).
    #[arg(long, value_name = "EXPR", group = "change")]
    pub cron: Option<String>,
    /// A new time zone for the cron expression.
    #[arg(long = "tz", value_name = "ZONE", group = "change")]
    pub timezone: Option<String>,
    /// A new shell command for its jobs.
    #[arg(long, group = "change")]
    pub command: Option<String>,
    /// high, medium or low (any case).
    #[arg(long, short, value_enum, ignore_case = true, group = "change")]
    pub priority: Option<PriorityArg>,
    /// Seconds before a job is killed.
    #[arg(long, short, group = "change")]
    pub timeout: Option<u32>,
    /// The host its jobs run on.
    #[arg(long = "host", group = "change")]
    pub host: Option<String>,
    /// While the last job is still queued or running.
    #[arg(long, value_enum, ignore_case = true, group = "change")]
    pub overlap: Option<OverlapArg>,
    /// For fire times missed while no rje ran.
    #[arg(long, value_enum, ignore_case = true, group = "change")]
    pub misfire: Option<MisfireArg>,
    /// How many times a job may run again (0 to 10).
    #[arg(long, value_name = "N", group = "change")]
    pub max_retries: Option<u32>,
    /// Whether a failed job runs again, as a new job.
    #[arg(long, value_name = "BOOL", group = "change")]
    pub retry_on_failure: Option<bool>,
}

impl EditScheduleArgs {
    /// The body of `PATCH /schedules/{id}/`: the fields given on the
    /// command line and no others, so that the server keeps the rest as
    /// they are.
    fn patch(&self) -> Value {
        let text = |value: &Option<String>| value.as_deref().map(|text| json!(text));
        let fields = [
            ("cron", text(&self.cron)),
            ("timezone", text(&self.timezone)),
            ("command", text(&self.command)),
            (
                "priority",
                self.priority.map(|p| json!(Priority::from(p).as_str())),
            ),
            ("timeout", self.timeout.map(|t| json!(t))),
            ("host", text(&self.host)),
            (
                "overlap",
                self.overlap.map(|o| json!(Overlap::from(o).as_str())),
            ),
            (
                "misfire",
                self.misfire.map(|m| json!(Misfire::from(m).as_str())),
            ),
            ("max_retries", self.max_retries.map(|n| json!(n))),
            ("retry_on_failure", self.retry_on_failure.map(|b| json!(b))),
        ];
        let body: Map<String, Value> = fields
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?)))
            .collect();
        Value::Object(body)
    }
}

pub async fn schedules(
    connection: &Connection,
    args: SchedulesArgs,
) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let presenter = Presenter::new(args.json);
    match args.action {
        SchedulesAction::List(list) => list_schedules(&api, list, presenter).await,
        SchedulesAction::Create(create) => {
            let schedule = api.create_schedule(&create.request()).await?;
            show(&schedule, Some("created"), presenter);
            Ok(ExitCode::SUCCESS)
        }
        SchedulesAction::Show(target) => {
            let schedule = api.schedule(schedule_path_id(&target.schedule)?).await?;
            show(&schedule, None, presenter);
            Ok(ExitCode::SUCCESS)
        }
        SchedulesAction::Edit(edit) => {
            let id = schedule_path_id(&edit.schedule)?;
            let schedule = api.edit_schedule(id, &edit.patch()).await?;
            show(&schedule, Some("changed"), presenter);
            Ok(ExitCode::SUCCESS)
        }
        SchedulesAction::Pause(target) => {
            let schedule = api
                .pause_schedule(schedule_path_id(&target.schedule)?)
                .await?;
            say(&schedule, presenter, || {
                format!(
                    "paused {0}; it fires nothing until `rje schedules resume {0}`",
                    schedule.name
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        SchedulesAction::Resume(target) => {
            let schedule = api
                .resume_schedule(schedule_path_id(&target.schedule)?)
                .await?;
            say(&schedule, presenter, || {
                let next = schedule.next_fire_times.first().map_or_else(
                    || "no fire time ahead".to_owned(),
                    |at| format!("next fire {}", fire_time_text(at, &schedule.timezone)),
                );
                format!("resumed {}; {next}", schedule.name)
            });
            Ok(ExitCode::SUCCESS)
        }
        SchedulesAction::Delete(target) => {
            let id = schedule_path_id(&target.schedule)?;
            api.delete_schedule(id).await?;
            if presenter.json {
                print_json(&json!({ "deleted": id }));
            } else {
                println!("deleted schedule {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list_schedules(
    api: &Api,
    args: ListSchedulesArgs,
    presenter: Presenter,
) -> Result<ExitCode, ClientError> {
    let page = api.schedules(args.limit, args.offset).await?;
    if presenter.json {
        print_json(&page);
        return Ok(ExitCode::SUCCESS);
    }
    if page.schedules.is_empty() {
        println!("no schedules (of {})", page.total_count);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", presenter.schedules_table(&page.schedules));
    if presenter.stdout_tty {
        let first = args.offset + 1;
        let last = args.offset + page.schedules.len() as u64;
        println!("{first}–{last} of {}", page.total_count);
    }
    Ok(ExitCode::SUCCESS)
}

/// A schedule, field by field (its next fire times among them, so that a
/// cron expression or a zone that means something else than was meant
/// shows at once); after what was `done` to it (`created`, `changed`).
fn show(schedule: &ScheduleResponse, done: Option<&str>, presenter: Presenter) {
    if presenter.json {
        print_json(schedule);
        return;
    }
    if let Some(done) = done {
        println!("{done} schedule {}", schedule.name);
    }
    println!("{}", presenter.schedule_table(schedule));
}

/// The schedule as JSON, or a sentence about it.
fn say(schedule: &ScheduleResponse, presenter: Presenter, sentence: impl FnOnce() -> String) {
    if presenter.json {
        print_json(schedule);
    } else {
        println!("{}", sentence());
    }
}

/// A schedule's id from its id or its name, for `rje list --schedule`:
/// the list of jobs filters by id, so a name is looked up.
pub(crate) async fn schedule_id(api: &Api, schedule: &str) -> Result<String, ClientError> {
    if let Some(id) = ScheduleId::parse(schedule) {
        return Ok(id.to_string());
    }
    let found = api.schedule(schedule_path_id(schedule)?).await?;
    Ok(found.id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientCommand;

    /// `rje schedules ARGS…` as the binary parses it.
    fn parse_all(args: &[&str]) -> Result<SchedulesArgs, clap::Error> {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: ClientCommand,
        }
        use clap::Parser;
        let words = ["rje", "schedules"].into_iter().chain(args.iter().copied());
        match Cli::try_parse_from(words)?.command {
            ClientCommand::Schedules(schedules) => Ok(schedules),
            other => panic!("not schedules: {other:?}"),
        }
    }

    fn parse(args: &[&str]) -> Result<SchedulesAction, clap::Error> {
        parse_all(args).map(|schedules| schedules.action)
    }

    fn edit(args: &[&str]) -> EditScheduleArgs {
        let words: Vec<&str> = ["edit", "nightly"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        match parse(&words) {
            Ok(SchedulesAction::Edit(edit)) => edit,
            other => panic!("not an edit: {other:?}"),
        }
    }

    #[test]
    fn an_edit_sends_only_the_fields_given() {
        assert_eq!(
            edit(&["--cron", "0 4 * * *"]).patch(),
            json!({"cron": "0 4 * * *"})
        );
        assert_eq!(
            edit(&["--retry-on-failure", "false", "--max-retries", "0"]).patch(),
            json!({"retry_on_failure": false, "max_retries": 0})
        );
        assert_eq!(
            edit(&[
                "--tz",
                "Europe/Berlin",
                "--command",
                "backup.sh --full",
                "--priority",
                "HIGH",
                "--timeout",
                "600",
                "--host",
                "web-1",
                "--overlap",
                "queue",
                "--misfire",
                "run_once",
                "--retry-on-failure",
                "true",
            ])
            .patch(),
            json!({
                "timezone": "Europe/Berlin", "command": "backup.sh --full",
                "priority": "High", "timeout": 600, "host": "web-1",
                "overlap": "queue", "misfire": "run_once", "retry_on_failure": true,
            })
        );
    }

    #[test]
    fn an_edit_needs_a_change() {
        assert!(parse(&["edit", "nightly"]).is_err());
        assert!(parse(&["edit", "nightly", "--retry-on-failure", "maybe"]).is_err());
        assert!(parse(&["edit", "--cron", "@daily"]).is_err(), "a schedule");
    }

    #[test]
    fn a_create_takes_the_options_of_a_submit() {
        let Ok(SchedulesAction::Create(create)) = parse(&[
            "create",
            "nightly",
            "backup.sh",
            "--cron",
            "0 3 * * *",
            "--tz",
            "Europe/Berlin",
            "--overlap",
            "SKIP",
            "--misfire",
            "run-once",
            "--paused",
            "-p",
            "low",
            "-t",
            "600",
            "--host",
            "db-1",
            "--max-retries",
            "2",
            "--retry-on-failure",
        ]) else {
            panic!("not a create");
        };
        assert_eq!(
            serde_json::to_value(create.request()).unwrap(),
            json!({
                "name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                "command": "backup.sh", "priority": "Low", "timeout": 600, "host": "db-1",
                "max_retries": 2, "retry_on_failure": true, "overlap": "skip",
                "misfire": "run_once", "paused": true,
            })
        );
        // The server's defaults stand for what was not given.
        let Ok(SchedulesAction::Create(create)) =
            parse(&["create", "hourly", "true", "--cron", "@hourly"])
        else {
            panic!("not a create");
        };
        assert_eq!(
            serde_json::to_value(create.request()).unwrap(),
            json!({"name": "hourly", "cron": "@hourly", "command": "true"})
        );
        assert!(
            parse(&["create", "x", "true"]).is_err(),
            "a cron expression"
        );
        assert!(
            parse(&[
                "create",
                "x",
                "true",
                "--cron",
                "@daily",
                "--overlap",
                "wait"
            ])
            .is_err()
        );
    }

    #[test]
    fn every_action_takes_json() {
        for args in [
            &["list", "--json"][..],
            &["show", "nightly", "--json"],
            &["--json", "pause", "nightly"],
            &["resume", "nightly", "--json"],
            &["delete", "0195f5a4-1a2b-7c3d-8e4f-0123456789ab", "--json"],
        ] {
            let parsed = parse_all(args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
            assert!(parsed.json, "{args:?}");
        }
        assert!(parse(&["list", "--limit", "101"]).is_err());
    }
}
