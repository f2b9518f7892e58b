//! A job list's query: filters, ordering and paging, parsed from the
//! query string with the same rules for every store.

use crate::cursor::{ListCursor, SortKey};
use crate::error::{Collector, ValidationError};
use crate::hosts::HostNames;
use crate::job::{Priority, Status};

/// How much of each job's output a list carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOutput {
    /// The last few KiB of each stream (`RJE_LIST_OUTPUT_BYTES`), marked
    /// when cut: a list must cost the same whatever the jobs printed.
    #[default]
    Tail,
    /// None at all (`?output=none`): `stdout` and `stderr` are null.
    None,
}

impl std::str::FromStr for ListOutput {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "tail" => Ok(ListOutput::Tail),
            "none" => Ok(ListOutput::None),
            _ => Err("must be tail or none".to_owned()),
        }
    }
}

/// The columns a job list may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    CreatedAt,
    Priority,
    StartedAt,
    CompletedAt,
}

/// A sort order: a field and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ordering {
    pub field: OrderField,
    pub descending: bool,
}

impl Ordering {
    /// Newest first, as the original API listed by default.
    pub const DEFAULT: Ordering = Ordering {
        field: OrderField::CreatedAt,
        descending: true,
    };

    /// The ordering as the `ordering` parameter spells it.
    pub fn as_text(&self) -> String {
        let name = match self.field {
            OrderField::CreatedAt => "created_at",
            OrderField::Priority => "priority",
            OrderField::StartedAt => "started_at",
            OrderField::CompletedAt => "completed_at",
        };
        let sign = if self.descending { "-" } else { "" };
        format!("{sign}{name}")
    }

    /// Whether this ordering's column may be empty (a job not started or
    /// not ended yet): such jobs come last, whichever the direction.
    pub fn nullable(&self) -> bool {
        matches!(self.field, OrderField::StartedAt | OrderField::CompletedAt)
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (descending, name) = match text.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, text),
        };
        let field = match name {
            "created_at" => OrderField::CreatedAt,
            "priority" => OrderField::Priority,
            "started_at" => OrderField::StartedAt,
            "completed_at" => OrderField::CompletedAt,
            _ => {
                return Err(
                    "must be one of created_at, priority, started_at, completed_at, \
                     optionally prefixed with -"
                        .into(),
                );
            }
        };
        Ok(Ordering { field, descending })
    }
}

/// A validated request for a page of jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: u32,
    pub offset: u64,
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub host: Option<String>,
    /// Only jobs submitted by this token.
    pub submitted_by: Option<String>,
    /// Only jobs fired by this schedule.
    pub schedule: Option<crate::ScheduleId>,
    /// Only jobs on these hosts (a token's scope); `None`: every host.
    pub hosts_within: Option<Vec<String>>,
    /// Only jobs whose command contains this text, ignoring ASCII case.
    pub search: Option<String>,
    pub ordering: Ordering,
    /// Keyset paging: the page starts just past this place in `ordering`
    /// (the `cursor` parameter, an earlier page's `next`).
    pub after: Option<SortKey>,
    pub output: ListOutput,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
            status: None,
            priority: None,
            host: None,
            submitted_by: None,
            schedule: None,
            hosts_within: None,
            search: None,
            ordering: Ordering::DEFAULT,
            after: None,
            output: ListOutput::Tail,
        }
    }
}

/// A page's size: a whole number from 1 to `max`.
pub(crate) fn page_limit(value: &str, max: u32) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("must be a whole number from 1 to {max}"))
}

/// How many to skip: a store's OFFSET is a signed 64-bit number.
pub(crate) fn page_offset(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| format!("must be a whole number from 0 to {}", i64::MAX))
}

/// A page of a list that takes only `limit` and `offset` (schedules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

impl Page {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 100;

    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ValidationError> {
        let mut errors = Collector::default();
        let mut page = Page {
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
        };
        for (key, value) in pairs {
            match key {
                "limit" => {
                    if let Some(limit) = errors.take("limit", page_limit(value, Self::MAX_LIMIT)) {
                        page.limit = limit;
                    }
                }
                "offset" => {
                    if let Some(offset) = errors.take("offset", page_offset(value)) {
                        page.offset = offset;
                    }
                }
                other => errors.push(other, "is not a known parameter (limit, offset)"),
            }
        }
        errors.finish()?;
        Ok(page)
    }
}

impl ListQuery {
    pub const DEFAULT_LIMIT: u32 = 10;
    pub const MAX_LIMIT: u32 = 100;
    /// A search is a few words typed into a box, not a document.
    pub const MAX_SEARCH_CHARS: usize = 200;
    /// The shortest search: what a trigram index can look up.
    pub const MIN_SEARCH_CHARS: usize = 3;

    /// The search as an FTS5 phrase (`"text"`, quotes doubled) for a
    /// trigram index.
    pub fn search_phrase(&self) -> Option<String> {
        self.search
            .as_deref()
            .map(|text| format!("\"{}\"", text.replace('"', "\"\"")))
    }

    /// The search as a SQL `LIKE` pattern with `\\` as its escape: the
    /// text's own `%`, `_` and `\\` match only themselves.
    pub fn search_pattern(&self) -> Option<String> {
        self.search.as_deref().map(|text| {
            let mut pattern = String::with_capacity(text.len() + 2);
            pattern.push('%');
            for c in text.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            pattern
        })
    }

    /// Validates query parameters. Parameters it does not know are ignored,
    /// as web APIs conventionally do (cache busters, tokens). A `host`
    /// must be one of `hosts`: a typo would otherwise list nothing and look
    /// like an answer.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        hosts: &HostNames,
    ) -> Result<Self, ValidationError> {
        let mut query = ListQuery::default();
        let mut errors = Collector::default();
        let mut ordering_given = false;
        let mut cursor = None;
        for (name, value) in pairs {
            match name {
                "limit" => {
                    if let Some(limit) = errors.take("limit", page_limit(value, Self::MAX_LIMIT)) {
                        query.limit = limit;
                    }
                }
                "offset" => {
                    if let Some(offset) = errors.take("offset", page_offset(value)) {
                        query.offset = offset;
                    }
                }
                "status" => query.status = errors.take("status", value.parse()),
                "priority" => query.priority = errors.take("priority", value.parse()),
                "host" => {
                    let host = if hosts.is_known(value) {
                        Ok(value.to_owned())
                    } else {
                        Err(format!(
                            "no host named {value:?}; known: {}",
                            hosts.names().collect::<Vec<_>>().join(", ")
                        ))
                    };
                    query.host = errors.take("host", host);
                }
                "submitted_by" => {
                    let name = if crate::is_valid_host_name(value) {
                        Ok(value.to_owned())
                    } else {
                        Err("must be a token's name".to_owned())
                    };
                    query.submitted_by = errors.take("submitted_by", name);
                }
                "schedule" => {
                    let id = crate::ScheduleId::parse(value)
                        .ok_or_else(|| "must be a schedule's id".to_owned());
                    query.schedule = errors.take("schedule", id);
                }
                "search" => {
                    let chars = value.chars().count();
                    let search = if value.contains('\0') {
                        Err("must not contain a NUL byte".to_owned())
                    } else if chars > Self::MAX_SEARCH_CHARS {
                        Err(format!(
                            "must be at most {} characters",
                            Self::MAX_SEARCH_CHARS
                        ))
                    } else if (1..Self::MIN_SEARCH_CHARS).contains(&chars) {
                        Err(format!(
                            "must be at least {} characters: shorter text is in nearly \
                             every command",
                            Self::MIN_SEARCH_CHARS
                        ))
                    } else {
                        Ok(value)
                    };
                    // An emptied search box searches for nothing.
                    query.search = errors
                        .take("search", search)
                        .filter(|text| !text.is_empty())
                        .map(str::to_owned);
                }
                "output" => {
                    if let Some(output) = errors.take("output", value.parse()) {
                        query.output = output;
                    }
                }
                "ordering" => {
                    ordering_given = true;
                    if let Some(ordering) = errors.take("ordering", Ordering::parse(value)) {
                        query.ordering = ordering;
                    }
                }
                "cursor" => cursor = errors.take("cursor", ListCursor::decode(value)),
                _ => {}
            }
        }
        if let Some(cursor) = cursor {
            // The cursor knows its ordering; naming another one, or an
            // offset beside it, asks for two places at once.
            if ordering_given && cursor.ordering != query.ordering {
                errors.push(
                    "cursor",
                    format!(
                        "was made for ordering={}, not ordering={}",
                        cursor.ordering.as_text(),
                        query.ordering.as_text()
                    ),
                );
            } else if query.offset > 0 {
                errors.push("cursor", "cannot be used with an offset");
            } else {
                query.ordering = cursor.ordering;
                query.after = Some(cursor.after);
            }
        }
        errors.finish()?;
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let query = ListQuery::parse([], &HostNames::local_only()).unwrap();
        assert_eq!(query.limit, 10);
        assert_eq!(query.offset, 0);
        assert_eq!(query.ordering, Ordering::DEFAULT);
    }

    #[test]
    fn parses_every_parameter() {
        let query = ListQuery::parse(
            [
                ("limit", "100"),
                ("offset", "20"),
                ("status", "Running"),
                ("priority", "High"),
                ("host", "local"),
                ("ordering", "-started_at"),
                ("output", "none"),
                ("search", "deploy"),
                ("_", "123"),
            ],
            &HostNames::local_only(),
        )
        .unwrap();
        assert_eq!(query.limit, 100);
        assert_eq!(query.offset, 20);
        assert_eq!(query.status, Some(Status::Running));
        assert_eq!(query.priority, Some(Priority::High));
        assert_eq!(query.host.as_deref(), Some("local"));
        assert_eq!(query.output, ListOutput::None);
        assert_eq!(query.search.as_deref(), Some("deploy"));
        assert_eq!(
            query.ordering,
            Ordering {
                field: OrderField::StartedAt,
                descending: true
            }
        );
    }

    #[test]
    fn a_cursor_brings_its_ordering() {
        let hosts = HostNames::local_only();
        let cursor = ListCursor {
            ordering: Ordering::parse("completed_at").unwrap(),
            after: SortKey { value: None, pk: 7 },
        }
        .encode();
        let query = ListQuery::parse([("cursor", cursor.as_str())], &hosts).unwrap();
        assert_eq!(query.ordering.as_text(), "completed_at");
        assert_eq!(query.after, Some(SortKey { value: None, pk: 7 }));
        let same = [("ordering", "completed_at"), ("cursor", cursor.as_str())];
        assert!(ListQuery::parse(same, &hosts).is_ok());
        for pairs in [
            vec![("ordering", "-completed_at"), ("cursor", cursor.as_str())],
            vec![("offset", "10"), ("cursor", cursor.as_str())],
            vec![("cursor", "garbage")],
        ] {
            let err = ListQuery::parse(pairs.clone(), &hosts).unwrap_err();
            assert_eq!(err.details[0].field, "cursor", "{pairs:?}");
        }
    }

    #[test]
    fn long_searches_are_index_phrases() {
        let parse = |text| ListQuery::parse([("search", text)], &HostNames::local_only()).unwrap();
        assert_eq!(
            parse("say \"hi\"").search_phrase().as_deref(),
            Some("\"say \"\"hi\"\"\"")
        );
    }

    #[test]
    fn search_is_a_literal_pattern() {
        let parse = |text| ListQuery::parse([("search", text)], &HostNames::local_only()).unwrap();
        assert_eq!(parse("").search, None);
        assert_eq!(
            parse("   ").search.as_deref(),
            Some("   "),
            "spaces are text"
        );
        assert_eq!(
            parse("50%_a\\b").search_pattern().as_deref(),
            Some("%50\\%\\_a\\\\b%")
        );
    }

    #[test]
    fn out_of_range_values_are_named() {
        for (name, value) in [
            ("limit", "0"),
            ("limit", "101"),
            ("limit", "ten"),
            ("offset", "-1"),
            ("status", "Done"),
            ("priority", "urgent"),
            ("ordering", "name"),
            ("host", "a\0b"),
            ("host", "nope"),
            ("output", "all"),
            ("search", "a\0b"),
            ("search", &"x".repeat(201)),
            ("search", "ab"),
        ] {
            let err = ListQuery::parse([(name, value)], &HostNames::local_only()).unwrap_err();
            assert_eq!(err.details[0].field, name, "{name}={value}");
        }
    }
}
