use crate::error::{Collector, ValidationError};
use crate::job::{Priority, Status};

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

    fn parse(text: &str) -> Result<Self, String> {
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
    pub ordering: Ordering,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
            status: None,
            priority: None,
            host: None,
            ordering: Ordering::DEFAULT,
        }
    }
}

impl ListQuery {
    pub const DEFAULT_LIMIT: u32 = 10;
    pub const MAX_LIMIT: u32 = 100;

    /// Validates query parameters. Parameters it does not know are ignored,
    /// as web APIs conventionally do (cache busters, tokens).
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ValidationError> {
        let mut query = ListQuery::default();
        let mut errors = Collector::default();
        for (name, value) in pairs {
            match name {
                "limit" => {
                    let limit = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=Self::MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!("must be a whole number from 1 to {}", Self::MAX_LIMIT)
                        });
                    if let Some(limit) = errors.take("limit", limit) {
                        query.limit = limit;
                    }
                }
                "offset" => {
                    let offset = value
                        .parse::<u64>()
                        .map_err(|_| "must be a whole number, 0 or more".to_owned());
                    if let Some(offset) = errors.take("offset", offset) {
                        query.offset = offset;
                    }
                }
                "status" => query.status = errors.take("status", value.parse()),
                "priority" => query.priority = errors.take("priority", value.parse()),
                "host" => {
                    let host = if value.contains('\0') {
                        Err("must not contain a NUL byte".to_owned())
                    } else {
                        Ok(value.to_owned())
                    };
                    query.host = errors.take("host", host);
                }
                "ordering" => {
                    if let Some(ordering) = errors.take("ordering", Ordering::parse(value)) {
                        query.ordering = ordering;
                    }
                }
                _ => {}
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
        let query = ListQuery::parse([]).unwrap();
        assert_eq!(query.limit, 10);
        assert_eq!(query.offset, 0);
        assert_eq!(query.ordering, Ordering::DEFAULT);
    }

    #[test]
    fn parses_every_parameter() {
        let query = ListQuery::parse([
            ("limit", "100"),
            ("offset", "20"),
            ("status", "Running"),
            ("priority", "High"),
            ("host", "local"),
            ("ordering", "-started_at"),
            ("_", "123"),
        ])
        .unwrap();
        assert_eq!(query.limit, 100);
        assert_eq!(query.offset, 20);
        assert_eq!(query.status, Some(Status::Running));
        assert_eq!(query.priority, Some(Priority::High));
        assert_eq!(query.host.as_deref(), Some("local"));
        assert_eq!(
            query.ordering,
            Ordering {
                field: OrderField::StartedAt,
                descending: true
            }
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
        ] {
            let err = ListQuery::parse([(name, value)]).unwrap_err();
            assert_eq!(err.details[0].field, name, "{name}={value}");
        }
    }
}
