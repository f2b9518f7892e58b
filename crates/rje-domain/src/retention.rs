//! Which finished jobs go: the rules of a prune asked for by a client,
//! and of the retention rje keeps by itself.

use chrono::{DateTime, Utc};

use crate::error::{Collector, ValidationError};
use crate::job::Status;

/// Which finished jobs a prune removes. A Queued or Running job never
/// matches: only final statuses can be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneFilter {
    /// Jobs completed before this instant.
    pub before: DateTime<Utc>,
    /// Only jobs in these final statuses; every final one when empty.
    pub statuses: Vec<Status>,
}

impl PruneFilter {
    /// Every finished job completed before `before`.
    pub fn before(before: DateTime<Utc>) -> Self {
        Self {
            before,
            statuses: Vec::new(),
        }
    }

    /// The query of `POST /jobs/prune/`: `before` (RFC 3339, required: a
    /// prune never defaults to everything) and `status` (final statuses,
    /// comma-separated or repeated).
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ValidationError> {
        let mut errors = Collector::default();
        let mut before = None;
        let mut statuses = Vec::new();
        for (key, value) in pairs {
            match key {
                "before" => {
                    let at = DateTime::parse_from_rfc3339(value)
                        .map(|at| at.with_timezone(&Utc))
                        .map_err(|_| {
                            "must be an RFC 3339 time, such as 2026-01-31T00:00:00Z".to_owned()
                        });
                    before = errors.take("before", at);
                }
                "status" if value.is_empty() => {
                    // An empty variable in a script must not widen a prune
                    // to every status.
                    errors.push("status", "must name at least one final status");
                }
                "status" => {
                    for name in value.split(',').filter(|name| !name.is_empty()) {
                        let status = name
                            .parse::<Status>()
                            .ok()
                            .filter(|status| status.is_final())
                            .ok_or_else(|| {
                                format!(
                                    "{name:?} is not a final status: Success, Failed or Cancelled"
                                )
                            });
                        if let Some(status) = errors.take("status", status)
                            && !statuses.contains(&status)
                        {
                            statuses.push(status);
                        }
                    }
                }
                other => errors.push(other, "is not a known parameter (before, status)"),
            }
        }
        if before.is_none() && !errors.has("before") {
            errors.push("before", "is required");
        }
        errors.finish()?;
        Ok(Self {
            // `finish` returned Ok, so `before` parsed.
            before: before.unwrap_or_default(),
            statuses,
        })
    }
}

/// The instant before which finished jobs are past a retention of `days`
/// (`None`: 0 keeps everything, and a span past any date keeps
/// everything too).
pub fn retention_cutoff(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    if days == 0 {
        return None;
    }
    now.checked_sub_signed(chrono::Duration::days(i64::from(days)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(err: ValidationError) -> Vec<String> {
        err.details.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn before_is_required_and_statuses_must_be_final() {
        assert_eq!(fields(PruneFilter::parse([]).unwrap_err()), ["before"]);
        let err = PruneFilter::parse([("before", "yesterday"), ("status", "Running")]).unwrap_err();
        assert_eq!(fields(err), ["before", "status"]);
        let filter = PruneFilter::parse([
            ("before", "2026-01-31T00:00:00+01:00"),
            ("status", "Success,Failed"),
            ("status", "Failed"),
        ])
        .unwrap();
        assert_eq!(filter.before.to_rfc3339(), "2026-01-30T23:00:00+00:00");
        assert_eq!(filter.statuses, [Status::Success, Status::Failed]);
        assert_eq!(
            fields(
                PruneFilter::parse([("before", "2026-01-31T00:00:00Z"), ("all", "1")]).unwrap_err()
            ),
            ["all"]
        );
    }

    #[test]
    fn zero_days_keeps_everything() {
        let now = Utc::now();
        assert_eq!(retention_cutoff(now, 0), None);
        assert_eq!(
            retention_cutoff(now, 30),
            Some(now - chrono::Duration::days(30))
        );
    }
}
