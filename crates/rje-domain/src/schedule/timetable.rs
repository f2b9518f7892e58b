//! When a schedule fires: a cron expression read on the wall clock of an
//! IANA time zone, and the rule that turns the fire times a scheduler finds
//! due into one decision, so that each fire time is handled exactly once
//! and a scheduler that was down never fires a burst.
//!
//! # Daylight saving
//!
//! Fire times are wall clock times in the zone, found by croner, which
//! treats the times a change of clock skips or repeats in two ways (the
//! tests below pin both, in New York and Berlin):
//!
//! - A *fixed time*, whose seconds, minutes and hours are each one value
//!   (no `*`, step, list or range: `30 2 * * *`, `0 30 2 * * *`, `@daily`):
//!   - skipped by a spring-forward gap, it fires once, at the first instant
//!     after the gap: on 8 March 2026 in New York (02:00 EST becomes
//!     03:00 EDT) `30 2 * * *` fires at 03:00 EDT;
//!   - repeated by a fall-back, it fires once, at its first instant (still
//!     on summer time): on 1 November 2026 in New York (02:00 EDT becomes
//!     01:00 EST) `30 1 * * *` fires at 01:30 EDT and not at 01:30 EST.
//! - Any other expression (`0 * * * *`, `*/30 2 * * *`, `30 2,3 * * *`):
//!   - its times in a gap do not exist and are skipped: hourly goes from
//!     01:00 EST to 03:00 EDT, an hour apart, and `*/30 2 * * *` does not
//!     fire that day at all;
//!   - its times in a repeat fire at both instants: hourly fires at
//!     01:00 EDT and at 01:00 EST an hour later, and `*/30 1 * * *` four
//!     times.
//!
//! Either way each fire time is one instant, and they strictly increase,
//! so "the last fire time handled" names each of them exactly once.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::{Collector, ValidationError};
use crate::schedule::Misfire;

/// Longest cron expression accepted, in characters: far more than any
/// real one, and it keeps the error texts that quote it short.
pub const MAX_CRON_CHARS: usize = 200;

/// The most fire times [`Timetable::decide`] counts as missed; a count of
/// this many means at least this many. It bounds the work of one decision:
/// a per-second schedule after a year without a scheduler has 31 million.
pub const MAX_COUNTED_MISSES: u32 = 10_000;

/// No IANA name is this long; a longer text is not quoted back.
const MAX_ZONE_CHARS: usize = 64;

const CRON_HINT: &str = "use 5 fields (minute hour day month weekday), 6 with seconds first, \
     or @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually";

/// A cron expression and the time zone whose wall clock it is read on.
/// Only [`Timetable::parse`] makes one, so it fires at least once.
#[derive(Clone, PartialEq)]
pub struct Timetable {
    cron_text: String,
    cron: Cron,
    zone_text: String,
    zone: Tz,
}

/// The texts only: croner's own `Debug` prints thousands of bits.
impl fmt::Debug for Timetable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timetable")
            .field("cron", &self.cron_text)
            .field("timezone", &self.zone_text)
            .finish()
    }
}

/// What a scheduler does about a schedule now: the outcome of
/// [`Timetable::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due before this fire time, which is after `now`.
    Wait(DateTime<Utc>),
    /// The expression fires no more.
    Never,
    /// Run the job for the fire time `at`, and record `at` as handled.
    /// `catch_up`: `at` passed while no scheduler ran, and the schedule's
    /// misfire policy runs it once anyway. `missed`: the earlier fire times
    /// that are due too and are passed over.
    Fire {
        at: DateTime<Utc>,
        catch_up: bool,
        missed: u32,
    },
    /// Run nothing, and record `at` as handled: it passed while no
    /// scheduler ran. `missed` counts it and the due fire times before it.
    Miss { at: DateTime<Utc>, missed: u32 },
}

impl Timetable {
    /// Reads a cron expression and a time zone, naming each that is wrong.
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, ValidationError> {
        let cron_text = cron.trim();
        let zone_text = timezone.trim();
        let mut errors = Collector::default();
        let parsed = errors.take("cron", parse_cron(cron_text));
        let zone = errors.take("timezone", parse_zone(zone_text));
        if let (Some(cron), Some(zone)) = (parsed, zone) {
            let timetable = Timetable {
                cron_text: cron_text.to_owned(),
                cron,
                zone_text: zone_text.to_owned(),
                zone,
            };
            // Without a year field, an expression that fires at all fires
            // in every 400-year cycle of the calendar, so one search from
            // a fixed date tells.
            if timetable.next_after(reference_date()).is_some() {
                return Ok(timetable);
            }
            errors.push("cron", format!("{cron_text:?} never fires"));
        }
        errors.finish()?;
        unreachable!("a timetable that parsed returned above; errors were recorded otherwise")
    }

    /// The expression as given, trimmed.
    pub fn cron(&self) -> &str {
        &self.cron_text
    }

    /// The time zone's name as given, trimmed.
    pub fn timezone(&self) -> &str {
        &self.zone_text
    }

    /// The first fire time strictly after `t`; `None` once the expression
    /// fires no more.
    ///
    /// Fire times strictly increase from one call to the next (each
    /// answer, passed back in, gives a later one): the exactly-once rule
    /// stands on it. Croner's answers do (the tests check them across
    /// changes of clock); should one ever not be after `t`, the search goes
    /// on past it, and gives up (`None`) rather than answer one that is not.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Croner searches in whole seconds and answers whole seconds.
        let mut from = t.trunc_subsecs(0);
        for _ in 0..3 {
            let next = self
                .cron
                .find_next_occurrence(&from.with_timezone(&self.zone), false)
                .ok()?
                .with_timezone(&Utc);
            if next > t {
                return Some(next);
            }
            from = from.max(next) + TimeDelta::seconds(1);
        }
        None
    }

    /// The next `n` fire times strictly after `after`, fewer if the
    /// expression stops firing.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(n.min(64));
        let mut cursor = after;
        while times.len() < n {
            let Some(next) = self.next_after(cursor) else {
                break;
            };
            times.push(next);
            cursor = next;
        }
        times
    }

    /// The scheduler's exactly-once and misfire rule.
    ///
    /// - `since` is the last fire time already handled (fired or missed),
    ///   or when the schedule was created, resumed or edited. Fire times at
    ///   or before it are never considered again.
    /// - `alive_since` is when this scheduler started watching: a fire time
    ///   at or after it passed while a scheduler was running, so it is
    ///   merely late; one before it passed while none was.
    /// - The fire times due are those in (`since`, `now`]. None due:
    ///   [`Decision::Wait`] for the next one (or [`Decision::Never`]).
    /// - Otherwise only the latest due fire time can run; the earlier ones
    ///   are counted in `missed` and never run, so a scheduler that was
    ///   down runs at most one job per schedule, never a burst.
    /// - The latest runs ([`Decision::Fire`], `catch_up: false`) if it is
    ///   at or after `alive_since`. Before it, the misfire policy decides:
    ///   [`Misfire::Skip`] gives [`Decision::Miss`] (it counts in `missed`
    ///   too), [`Misfire::RunOnce`] runs it (`catch_up: true`).
    ///
    /// Either way the caller records the decision's `at` as its new
    /// `since`, in the same write that creates the job if any.
    ///
    /// Counts stop at [`MAX_COUNTED_MISSES`], and so does the work: the
    /// latest due fire time past the cap is found by searching backwards
    /// from `now`, not by walking every one.
    pub fn decide(
        &self,
        since: DateTime<Utc>,
        alive_since: DateTime<Utc>,
        now: DateTime<Utc>,
        misfire: Misfire,
    ) -> Decision {
        let Some(first) = self.next_after(since) else {
            return Decision::Never;
        };
        if first > now {
            return Decision::Wait(first);
        }
        let mut latest = first;
        let mut missed = 0;
        while let Some(next) = self.next_after(latest).filter(|next| *next <= now) {
            if missed == MAX_COUNTED_MISSES {
                latest = self.last_at_or_before(now).unwrap_or(next).max(next);
                break;
            }
            missed += 1;
            latest = next;
        }
        if latest >= alive_since {
            return Decision::Fire {
                at: latest,
                catch_up: false,
                missed,
            };
        }
        match misfire {
            Misfire::Skip => Decision::Miss {
                at: latest,
                missed: (missed + 1).min(MAX_COUNTED_MISSES),
            },
            Misfire::RunOnce => Decision::Fire {
                at: latest,
                catch_up: true,
                missed,
            },
        }
    }

    /// The last fire time at or before `t`.
    fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.trunc_subsecs(0).with_timezone(&self.zone), true)
            .ok()
            .map(|at| at.with_timezone(&Utc))
            .filter(|at| *at <= t)
    }
}

fn parse_cron(text: &str) -> Result<Cron, String> {
    if text.is_empty() {
        return Err(format!("must not be empty; {CRON_HINT}"));
    }
    let chars = text.chars().count();
    if chars > MAX_CRON_CHARS {
        return Err(format!(
            "is {chars} characters; the limit is {MAX_CRON_CHARS}"
        ));
    }
    const ALIASES: &[&str] = &[
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ];
    // Croner knows every other alias cron has, but not this one.
    let text = if text.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        text
    };
    // Croner's own words for these speak of its options.
    if text.starts_with('@') {
        if !ALIASES.iter().any(|alias| text.eq_ignore_ascii_case(alias)) {
            return Err(format!("{text:?} is not an alias; {CRON_HINT}"));
        }
    } else {
        let fields = text.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!("has {fields} fields; {CRON_HINT}"));
        }
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        // A year field would make "never fires" depend on the date.
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|err| format!("{err} ({CRON_HINT})"))
}

pub(super) fn parse_zone(name: &str) -> Result<Tz, String> {
    const HINT: &str = "use an IANA name such as Europe/Paris or UTC";
    if name.chars().count() > MAX_ZONE_CHARS {
        return Err(format!("is not a time zone name; {HINT}"));
    }
    Tz::from_str(name).map_err(|_| format!("unknown time zone {name:?}; {HINT}"))
}

/// Where the never-fires check searches from: a fixed date keeps the
/// domain free of clocks.
fn reference_date() -> DateTime<Utc> {
    // 2026-01-01T00:00:00Z, in range, so the fallback is never taken.
    DateTime::from_timestamp(1_767_225_600, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn timetable(cron: &str, zone: &str) -> Timetable {
        Timetable::parse(cron, zone).unwrap()
    }

    fn fields(err: ValidationError) -> Vec<String> {
        err.details.into_iter().map(|d| d.field).collect()
    }

    /// The fire times after `from`, in UTC, as RFC 3339 text.
    fn fires(cron: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        timetable(cron, zone)
            .upcoming(at(from), n)
            .iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn five_and_six_fields_and_aliases_are_read() {
        let from = "2026-01-01T00:07:30Z";
        assert_eq!(
            fires("*/15 * * * *", "UTC", from, 2),
            ["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"]
        );
        assert_eq!(
            fires("10,40 * * * * *", "UTC", from, 2),
            ["2026-01-01T00:07:40Z", "2026-01-01T00:08:10Z"]
        );
        for (alias, first) in [
            ("@hourly", "2026-01-01T01:00:00Z"),
            ("@daily", "2026-01-02T00:00:00Z"),
            ("@MIDNIGHT", "2026-01-02T00:00:00Z"),
            ("@weekly", "2026-01-04T00:00:00Z"),
            ("@monthly", "2026-02-01T00:00:00Z"),
            ("@yearly", "2027-01-01T00:00:00Z"),
            ("@annually", "2027-01-01T00:00:00Z"),
        ] {
            assert_eq!(fires(alias, "UTC", from, 1), [first], "{alias}");
        }
        let trimmed = timetable("  @daily ", " Europe/Paris\n");
        assert_eq!(
            (trimmed.cron(), trimmed.timezone()),
            ("@daily", "Europe/Paris")
        );
    }

    #[test]
    fn a_bad_expression_and_a_bad_zone_are_named_together() {
        let err = Timetable::parse("61 * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(fields(err.clone()), ["cron", "timezone"]);
        assert!(
            err.details[0]
                .message
                .contains("5 fields (minute hour day month weekday)")
        );
        assert_eq!(
            err.details[1].message,
            "unknown time zone \"Mars/Olympus\"; use an IANA name such as Europe/Paris or UTC"
        );
        let message = |cron| {
            Timetable::parse(cron, "UTC").unwrap_err().details[0]
                .message
                .clone()
        };
        assert!(message("0 0 0 1 1 * 2030").starts_with("has 7 fields; use 5 fields"));
        assert!(message("@reboot").starts_with("\"@reboot\" is not an alias; use 5 fields"));
        assert!(message("61 * * * *").starts_with("Component error: Number out of bounds."));
        for bad in [
            "",
            "* * * *",
            "0 0 0 1 1 * 2030",
            "@reboot",
            "0/10 * * * *",
            "* * * * MON-FUN",
        ] {
            assert_eq!(
                fields(Timetable::parse(bad, "UTC").unwrap_err()),
                ["cron"],
                "{bad:?}"
            );
        }
        let long = format!("0 0 * * {}", ",1".repeat(100));
        let err = Timetable::parse(&long, "UTC").unwrap_err();
        assert!(err.details[0].message.contains("the limit is 200"));
        assert_eq!(
            fields(Timetable::parse("@daily", &"x".repeat(65)).unwrap_err()),
            ["timezone"]
        );
    }

    #[test]
    fn an_expression_that_never_fires_is_refused() {
        let err = Timetable::parse("0 0 30 2 *", "UTC").unwrap_err();
        assert_eq!(err.details[0].message, "\"0 0 30 2 *\" never fires");
        assert!(
            Timetable::parse("0 0 29 2 *", "UTC").is_ok(),
            "leap days come"
        );
    }

    #[test]
    fn upcoming_gives_the_next_fire_times_strictly_after() {
        // Friday 2 January 2026; weekdays at 9 in Paris (UTC+1 in winter).
        assert_eq!(
            fires("0 9 * * 1-5", "Europe/Paris", "2026-01-02T08:00:00Z", 5),
            [
                "2026-01-05T08:00:00Z",
                "2026-01-06T08:00:00Z",
                "2026-01-07T08:00:00Z",
                "2026-01-08T08:00:00Z",
                "2026-01-09T08:00:00Z",
            ]
        );
        let hourly = timetable("@hourly", "UTC");
        assert_eq!(
            hourly.next_after(at("2026-01-01T01:00:00Z")),
            Some(at("2026-01-01T02:00:00Z"))
        );
        assert_eq!(
            hourly.next_after(at("2026-01-01T00:59:59.999Z")),
            Some(at("2026-01-01T01:00:00Z"))
        );
        assert!(hourly.upcoming(at("2026-01-01T00:00:00Z"), 0).is_empty());
    }

    const SINCE: &str = "2026-01-01T00:00:00Z";

    fn decide(alive_since: &str, now: &str, misfire: Misfire) -> Decision {
        timetable("@hourly", "UTC").decide(at(SINCE), at(alive_since), at(now), misfire)
    }

    #[test]
    fn nothing_due_waits_for_the_next_fire_time() {
        assert_eq!(
            decide(SINCE, "2026-01-01T00:59:59Z", Misfire::Skip),
            Decision::Wait(at("2026-01-01T01:00:00Z"))
        );
        // The fire time at `since` itself was handled already.
        assert_eq!(
            decide(SINCE, SINCE, Misfire::RunOnce),
            Decision::Wait(at("2026-01-01T01:00:00Z"))
        );
        // Croner searches no further than the year 5000.
        let past_the_end = at("5000-01-01T00:00:00Z");
        assert_eq!(
            timetable("@yearly", "UTC").decide(
                past_the_end,
                past_the_end,
                past_the_end,
                Misfire::Skip
            ),
            Decision::Never
        );
    }

    #[test]
    fn a_fire_time_passed_while_alive_fires_late_and_once() {
        let fire = |at_, missed| Decision::Fire {
            at: at(at_),
            catch_up: false,
            missed,
        };
        assert_eq!(
            decide(SINCE, "2026-01-01T01:00:00Z", Misfire::Skip),
            fire("2026-01-01T01:00:00Z", 0)
        );
        assert_eq!(
            decide(SINCE, "2026-01-01T01:00:40Z", Misfire::Skip),
            fire("2026-01-01T01:00:00Z", 0)
        );
        // Three due at once (a stalled store, say): only the latest runs.
        assert_eq!(
            decide(SINCE, "2026-01-01T03:20:00Z", Misfire::Skip),
            fire("2026-01-01T03:00:00Z", 2)
        );
    }

    #[test]
    fn a_fire_time_passed_while_down_follows_the_misfire_policy() {
        let (alive, now) = ("2026-01-01T03:10:00Z", "2026-01-01T03:20:00Z");
        assert_eq!(
            decide(alive, now, Misfire::Skip),
            Decision::Miss {
                at: at("2026-01-01T03:00:00Z"),
                missed: 3
            }
        );
        assert_eq!(
            decide(alive, now, Misfire::RunOnce),
            Decision::Fire {
                at: at("2026-01-01T03:00:00Z"),
                catch_up: true,
                missed: 2
            }
        );
        // Down at 01:00 and 02:00, up again before 03:00: merely late.
        assert_eq!(
            decide("2026-01-01T02:30:00Z", now, Misfire::Skip),
            Decision::Fire {
                at: at("2026-01-01T03:00:00Z"),
                catch_up: false,
                missed: 2
            }
        );
    }

    #[test]
    fn a_year_down_on_a_per_second_schedule_counts_to_the_cap() {
        let every_second = timetable("* * * * * *", "UTC");
        let (since, now) = (at("2025-01-01T00:00:00Z"), at("2026-01-01T00:00:00.250Z"));
        let started = std::time::Instant::now();
        assert_eq!(
            every_second.decide(since, now, now, Misfire::Skip),
            Decision::Miss {
                at: at("2026-01-01T00:00:00Z"),
                missed: MAX_COUNTED_MISSES
            }
        );
        assert_eq!(
            every_second.decide(since, now, now, Misfire::RunOnce),
            Decision::Fire {
                at: at("2026-01-01T00:00:00Z"),
                catch_up: true,
                missed: MAX_COUNTED_MISSES
            }
        );
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }

    #[test]
    fn a_fixed_time_in_a_spring_forward_gap_fires_once_when_the_gap_ends() {
        // New York, 8 March 2026: 02:00 EST becomes 03:00 EDT.
        assert_eq!(
            fires("30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT, the first instant after the gap
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ]
        );
        // Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
    }

    #[test]
    fn a_fixed_time_repeated_by_a_fall_back_fires_once_at_its_first_instant() {
        // New York, 1 November 2026: 02:00 EDT becomes 01:00 EST.
        assert_eq!(
            fires("30 1 * * *", "America/New_York", "2026-10-31T00:00:00Z", 3),
            [
                "2026-10-31T05:30:00Z", // 01:30 EDT
                "2026-11-01T05:30:00Z", // 01:30 EDT; not 01:30 EST an hour later
                "2026-11-02T06:30:00Z", // 01:30 EST
            ]
        );
        // Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-24T00:00:00Z", 3),
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z"
            ]
        );
    }

    #[test]
    fn an_interval_skips_the_gap_and_repeats_in_the_fall_back() {
        // Hourly: no 02:00 on the spring day; 01:00 twice in the autumn.
        assert_eq!(
            fires("0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", 3),
            [
                "2026-03-08T06:00:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z"
            ]
        );
        assert_eq!(
            fires("0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", 3),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
        assert_eq!(
            fires("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 3),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z"
            ]
        );
        // Not fixed (a step on the minutes): the gap's times do not exist,
        // so the spring day has none, and the repeated hour has them twice.
        assert_eq!(
            fires(
                "*/30 2 * * *",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                2
            ),
            ["2026-03-09T06:00:00Z", "2026-03-09T06:30:00Z"]
        );
        assert_eq!(
            fires(
                "*/30 1 * * *",
                "America/New_York",
                "2026-11-01T00:00:00Z",
                5
            ),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-02T06:00:00Z",
            ]
        );
    }

    /// Exactly once across the changes of clock: from any instant, the
    /// next fire time is the first of the chain past it, and the chain
    /// strictly increases.
    #[test]
    fn fire_times_strictly_increase_from_any_instant_across_changes_of_clock() {
        for (cron, zone, day) in [
            ("30 1 * * *", "America/New_York", "2026-11-01T00:00:00Z"),
            ("30 2 * * *", "America/New_York", "2026-03-08T00:00:00Z"),
            ("*/20 * * * *", "America/New_York", "2026-11-01T00:00:00Z"),
            ("*/20 * * * *", "America/New_York", "2026-03-08T00:00:00Z"),
            ("0 * * * *", "Europe/Berlin", "2026-10-24T20:00:00Z"),
            ("0 2 * * *", "Europe/Berlin", "2026-10-24T20:00:00Z"),
            ("0 2 * * *", "Europe/Berlin", "2026-03-28T20:00:00Z"),
        ] {
            let table = timetable(cron, zone);
            let start = at(day);
            let chain = table.upcoming(start, 200);
            assert!(chain.windows(2).all(|w| w[0] < w[1]), "{cron} {zone}");
            let mut t = start;
            let end = (start + TimeDelta::days(2)).min(chain[chain.len() - 2]);
            while t < end {
                let expected = chain.iter().find(|c| **c > t).copied();
                assert_eq!(table.next_after(t), expected, "{cron} {zone} after {t}");
                t += TimeDelta::seconds(97);
            }
        }
    }
}
