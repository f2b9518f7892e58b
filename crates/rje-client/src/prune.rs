//! `rje prune`: deleting the finished jobs completed before a time, with
//! their output.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::{Args, ValueEnum};
use rje_domain::Status;

use crate::api::Api;
use crate::commands::confirm;
use crate::present::{Presenter, print_json};
use crate::{ClientError, Connection, ExitCode};

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Delete the jobs completed before WHEN: an RFC 3339 time
    /// (2026-01-31T00:00:00Z) or an age counted back from now on this
    /// machine's clock: 2w, 30d, 12h, 90m (weeks, days, hours, minutes).
    #[arg(long, value_name = "WHEN", value_parser = parse_before_now)]
    pub before: DateTime<Utc>,
    /// Only the jobs in these final statuses, comma-separated: success,
    /// failed, cancelled (any case) [default: all three]
    #[arg(
        long = "status",
        value_name = "STATUS,…",
        value_enum,
        value_delimiter = ',',
        ignore_case = true
    )]
    pub statuses: Vec<FinalStatusArg>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub force: bool,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A status a job ends in: the only ones a prune deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FinalStatusArg {
    Success,
    Failed,
    Cancelled,
}

impl From<FinalStatusArg> for Status {
    fn from(arg: FinalStatusArg) -> Self {
        match arg {
            FinalStatusArg::Success => Status::Success,
            FinalStatusArg::Failed => Status::Failed,
            FinalStatusArg::Cancelled => Status::Cancelled,
        }
    }
}

/// Asks first on a terminal, as `rje cancel` does: what a prune deletes
/// cannot be had back, and `30m` is one letter from `30d`.
pub async fn prune(connection: &Connection, args: PruneArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let presenter = Presenter::new(args.json);
    let statuses: Vec<Status> = args.statuses.iter().copied().map(Status::from).collect();
    let before = args.before.to_rfc3339_opts(SecondsFormat::Secs, true);
    if !args.force && presenter.interactive() {
        let question = format!(
            "Delete the {} jobs completed before {before}, with their output?",
            statuses_text(&statuses)
        );
        if !confirm(&question).await {
            eprintln!("nothing deleted");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let pruned = api.prune_jobs(args.before, &statuses).await?;
    if presenter.json {
        print_json(&pruned);
    } else {
        let jobs = if pruned.deleted == 1 { "job" } else { "jobs" };
        println!("deleted {} {jobs}", pruned.deleted);
    }
    Ok(ExitCode::SUCCESS)
}

/// `Success, Failed`, or `finished` for every final status.
fn statuses_text(statuses: &[Status]) -> String {
    if statuses.is_empty() {
        return "finished".to_owned();
    }
    let names: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
    names.join(", ")
}

fn parse_before_now(text: &str) -> Result<DateTime<Utc>, String> {
    parse_before(text, Utc::now())
}

/// The instant `text` names: an RFC 3339 time, or an age before `now`.
fn parse_before(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let age = parse_age(text).ok_or_else(|| {
        format!(
            "{text:?} is neither an RFC 3339 time (2026-01-31T00:00:00Z) nor an age such as \
             2w, 30d, 12h or 90m (weeks, days, hours, minutes)"
        )
    })?;
    now.checked_sub_signed(age)
        .ok_or_else(|| format!("{text:?} is further back than any time"))
}

/// `30d` and the like: a whole number, then `w`, `d`, `h` or `m`. Only
/// these, and in lower case: `m` is minutes, never months.
fn parse_age(text: &str) -> Option<TimeDelta> {
    let unit = text.chars().last()?;
    let count = &text[..text.len() - unit.len_utf8()];
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: i64 = count.parse().ok()?;
    match unit {
        'w' => TimeDelta::try_weeks(count),
        'd' => TimeDelta::try_days(count),
        'h' => TimeDelta::try_hours(count),
        'm' => TimeDelta::try_minutes(count),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_age_counts_back_from_now() {
        assert_eq!(parse_before("30d", now()), Ok(at("2026-01-30T12:00:00Z")));
        assert_eq!(parse_before("12h", now()), Ok(at("2026-03-01T00:00:00Z")));
        assert_eq!(parse_before("90m", now()), Ok(at("2026-03-01T10:30:00Z")));
        assert_eq!(parse_before("2w", now()), Ok(at("2026-02-15T12:00:00Z")));
        assert_eq!(parse_before("0d", now()), Ok(now()));
    }

    #[test]
    fn a_time_is_taken_as_written() {
        assert_eq!(
            parse_before("2026-01-31T00:00:00Z", now()),
            Ok(at("2026-01-31T00:00:00Z"))
        );
        assert_eq!(
            parse_before("2026-01-31T01:00:00+01:00", now()),
            Ok(at("2026-01-31T00:00:00Z"))
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_named() {
        for bad in [
            "",
            "d",
            "30",
            "30D",
            "30M",
            "30s",
            "1y",
            "-5d",
            "+5d",
            "1.5d",
            " 30d",
            "30 d",
            "30dd",
            "2026-01-31",
            "yesterday",
            "３０d",
        ] {
            let err = parse_before(bad, now()).expect_err(bad);
            assert!(
                err.contains("RFC 3339") && err.contains("30d"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn an_age_past_any_time_is_refused() {
        assert!(parse_age("99999999999999999999d").is_none(), "past i64");
        assert!(parse_age("9999999999999d").is_none(), "past TimeDelta");
        let err = parse_before("999999999999m", now()).expect_err("past DateTime");
        assert!(err.contains("further back"), "{err}");
    }

    #[test]
    fn statuses_are_named_or_all_finished() {
        assert_eq!(statuses_text(&[]), "finished");
        assert_eq!(
            statuses_text(&[Status::Success, Status::Failed]),
            "Success, Failed"
        );
    }
}
