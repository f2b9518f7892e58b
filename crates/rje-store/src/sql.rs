//! The SQL both stores share: statements and fragments that do not depend
//! on the dialect, or that take the dialect's few words as a [`Dialect`].

use rje_domain::{Chunk, ListQuery, OrderField, SortKey, Status, Stream};

use crate::{OutputPage, StoreError};

/// The statement behind [`crate::Jobs::count_active`], the same in both
/// dialects.
pub(crate) const COUNT_ACTIVE_SQL: &str = "SELECT status, priority, COUNT(*) AS jobs FROM jobs \
     WHERE status IN ('Queued', 'Running') GROUP BY status, priority";

/// The statement behind [`crate::Jobs::count_by_status`]: one pass over
/// the status index, whatever the number of jobs.
pub(crate) const COUNT_BY_STATUS_SQL: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";

/// Which end of a job's output a read starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFrom {
    /// The first chunks after `since`.
    Start,
    /// The last chunks after `since`.
    End,
}

impl ReadFrom {
    /// The ORDER BY that puts the wanted chunks first.
    pub(crate) fn order_by(self) -> &'static str {
        match self {
            ReadFrom::Start => "ORDER BY seq",
            ReadFrom::End => "ORDER BY seq DESC",
        }
    }

    /// The rows read in [`ReadFrom::order_by`]'s order as a page, oldest
    /// first whichever end they were read from.
    pub(crate) fn page<R>(
        self,
        mut rows: Vec<R>,
        into_chunk: impl Fn(R) -> Result<Chunk, StoreError>,
    ) -> Result<OutputPage, StoreError> {
        if self == ReadFrom::End {
            rows.reverse();
        }
        Ok(OutputPage {
            chunks: rows.into_iter().map(into_chunk).collect::<Result<_, _>>()?,
        })
    }
}

/// The ORDER BY of a job list. Ties break on the row key, so that pages
/// never overlap or skip.
pub(crate) fn order_by(query: &ListQuery) -> String {
    let dir = if query.ordering.descending {
        "DESC"
    } else {
        "ASC"
    };
    match query.ordering.field {
        OrderField::CreatedAt => format!("created_at {dir}, pk {dir}"),
        // Within a priority, queue order: first come first.
        OrderField::Priority => format!("priority {dir}, pk ASC"),
        OrderField::StartedAt => format!("started_at {dir} NULLS LAST, pk {dir}"),
        OrderField::CompletedAt => format!("completed_at {dir} NULLS LAST, pk {dir}"),
    }
}

/// One piece of a list's condition: SQL text, or a value to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Sql(String),
    /// A time in microseconds, as the ordering's column keeps it.
    Time(i64),
    /// A number compared as it is: a priority's rank, a row key.
    Number(i64),
}

/// One index range of a list page: the jobs past a cursor that one
/// ordered index scan gives, in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Appended to the filters (it starts with ` AND`); empty for none.
    pub condition: Vec<Piece>,
    pub order_by: String,
}

impl Segment {
    fn new(condition: Vec<Piece>, order_by: String) -> Self {
        Segment {
            condition,
            order_by,
        }
    }
}

/// The index ranges a page of `query` is read from, in order: read the
/// first, and the next only while the page is not full.
///
/// Each is a range one index gives in order (a row-value comparison on
/// `(column, pk)`, or a column's `IS NULL` part), never an `OR`, which
/// makes a planner gather and sort every match before it can stop. A
/// time not reached yet sorts last in either direction; a priority sorts
/// its jobs first come first whichever the direction. With an `offset`
/// the page is one range under [`order_by`] (the store skips the rows).
pub(crate) fn segments(query: &ListQuery) -> Vec<Segment> {
    use Piece::{Number, Sql, Time};
    let ordering = query.ordering;
    let (dir, op) = if ordering.descending {
        ("DESC", "<")
    } else {
        ("ASC", ">")
    };
    if query.offset > 0 {
        return vec![Segment::new(Vec::new(), order_by(query))];
    }
    let column = match ordering.field {
        OrderField::CreatedAt => "created_at",
        OrderField::Priority => "priority",
        OrderField::StartedAt => "started_at",
        OrderField::CompletedAt => "completed_at",
    };
    let past = |value: i64, pk: i64, time: bool| {
        let value = if time { Time(value) } else { Number(value) };
        vec![
            Sql(format!(" AND ({column}, pk) {op} (")),
            value,
            Sql(", ".into()),
            Number(pk),
            Sql(")".into()),
        ]
    };
    let by_column = format!("{column} {dir}, pk {dir}");
    match (ordering.field, query.after) {
        (OrderField::CreatedAt, None) => vec![Segment::new(Vec::new(), by_column)],
        (OrderField::CreatedAt, Some(SortKey { value, pk })) => {
            // A created_at is never missing (a cursor without one is refused).
            vec![Segment::new(past(value.unwrap_or(0), pk, true), by_column)]
        }
        (OrderField::Priority, None) => vec![Segment::new(Vec::new(), order_by(query))],
        (OrderField::Priority, Some(SortKey { value, pk })) => {
            let rank = value.unwrap_or(0);
            vec![
                Segment::new(
                    vec![
                        Sql(" AND priority = ".into()),
                        Number(rank),
                        Sql(" AND pk > ".into()),
                        Number(pk),
                    ],
                    "pk ASC".into(),
                ),
                Segment::new(
                    vec![Sql(format!(" AND priority {op} ")), Number(rank)],
                    order_by(query),
                ),
            ]
        }
        (_, None) => vec![
            Segment::new(vec![Sql(format!(" AND {column} IS NOT NULL"))], by_column),
            Segment::new(
                vec![Sql(format!(" AND {column} IS NULL"))],
                format!("pk {dir}"),
            ),
        ],
        (
            _,
            Some(SortKey {
                value: Some(value),
                pk,
            }),
        ) => {
            let mut condition = vec![Sql(format!(" AND {column} IS NOT NULL"))];
            condition.extend(past(value, pk, true));
            vec![
                Segment::new(condition, by_column),
                Segment::new(
                    vec![Sql(format!(" AND {column} IS NULL"))],
                    format!("pk {dir}"),
                ),
            ]
        }
        (_, Some(SortKey { value: None, pk })) => vec![Segment::new(
            vec![
                Sql(format!(" AND {column} IS NULL AND pk {op} ")),
                Number(pk),
            ],
            format!("pk {dir}"),
        )],
    }
}

impl Segment {
    /// Appends the segment to a list's query whose filters are pushed:
    /// its condition, its order and the page's `wanted` rows past
    /// `offset`. `time` binds a time as the store keeps it.
    pub(crate) fn push_to<'a, DB, T>(
        self,
        select: &mut sqlx::QueryBuilder<'a, DB>,
        time: impl Fn(i64) -> T,
        wanted: i64,
        offset: u64,
    ) where
        DB: sqlx::Database,
        i64: sqlx::Encode<'a, DB> + sqlx::Type<DB> + 'a,
        T: sqlx::Encode<'a, DB> + sqlx::Type<DB> + 'a,
    {
        for piece in self.condition {
            match piece {
                Piece::Sql(sql) => select.push(sql),
                Piece::Time(micros) => select.push_bind(time(micros)),
                Piece::Number(number) => select.push_bind(number),
            };
        }
        select
            .push(format!(" ORDER BY {}", self.order_by))
            .push(" LIMIT ")
            .push_bind(wanted)
            .push(" OFFSET ")
            .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
    }
}

/// SQL for one stream of a job's output (the job row is `jobs`), assembled
/// from its chunks in seq order, with the marker of
/// [`rje_domain::drop_marker`] wherever output was dropped. The dialect
/// gives its ordered string aggregate (`group_concat`, `string_agg`) and
/// its newline (`char(10)`, `chr(10)`).
pub(crate) fn assembled_sql(stream: Stream, aggregate: &str, newline: &str) -> String {
    format!(
        "(SELECT COALESCE({aggregate}(\
            CASE WHEN o.dropped_before > 0 \
                 THEN '[rje: ' || o.dropped_before || ' bytes of {name} dropped]' || {newline} \
                 ELSE '' END || o.text, '' ORDER BY o.seq), '') \
          FROM job_output o WHERE o.job_pk = jobs.pk AND o.stream = {index})",
        name = stream.as_str(),
        index = stream.index()
    )
}

/// How a SQL dialect spells what the output views need.
pub(crate) struct Dialect {
    /// The ordered string aggregate: `group_concat`, `string_agg`.
    pub aggregate: &'static str,
    /// A newline: `char(10)`, `chr(10)`.
    pub newline: &'static str,
    /// The last N characters of a text: `substr(X, -N)`, `right(X, N)`.
    pub last_chars: fn(&str, u32) -> String,
    /// Makes an integer expression 64-bit: `""`, `"::BIGINT"`.
    pub bigint: &'static str,
    /// A NULL of type text.
    pub null_text: &'static str,
}

/// How many of a stream's newest chunks a tail is taken from: enough for a
/// few KiB of lines, and a bound on what one list may read per job.
const TAIL_CHUNKS: u32 = 16;

/// The drop marker of [`rje_domain::drop_marker`] in SQL, for chunk `o`.
fn marker_sql(stream: Stream, dialect: &Dialect) -> String {
    format!(
        "CASE WHEN o.dropped_before > 0 \
              THEN '[rje: ' || o.dropped_before || ' bytes of {name} dropped]' || {newline} \
              ELSE '' END",
        name = stream.as_str(),
        newline = dialect.newline
    )
}

/// Columns that show a job's output as lists do: `stdout` and `stderr`
/// hold at most the last `tail_chars` characters of each stream (the
/// caller cuts them to bytes), `stdout_bytes` and `stderr_bytes` the size
/// of all that is stored of each (drop marker included), NULL where a job
/// has no output (it never ran). Both are
/// read from the output chunks, by index, whatever the size of the output.
pub(crate) fn output_view_sql(dialect: &Dialect, tail_chars: u32) -> String {
    let mut columns = Vec::new();
    for stream in Stream::BOTH {
        let name = stream.as_str();
        let index = stream.index();
        let marker = marker_sql(stream, dialect);
        let bytes = format!(
            "(CASE WHEN status = 'Running' THEN \
                (SELECT COALESCE(SUM(octet_length(o.text) + \
                    CASE WHEN o.dropped_before > 0 THEN octet_length({marker}) ELSE 0 END), 0) \
                 FROM job_output o WHERE o.job_pk = jobs.pk AND o.stream = {index}) \
              ELSE octet_length({name}) END){bigint}",
            bigint = dialect.bigint
        );
        let tail = if tail_chars == 0 {
            dialect.null_text.to_owned()
        } else {
            format!(
                "(SELECT COALESCE({aggregate}(t.piece, '' ORDER BY t.seq), '') FROM \
                   (SELECT o.seq, {last} AS piece FROM job_output o \
                    WHERE o.job_pk = jobs.pk AND o.stream = {index} \
                    ORDER BY o.seq DESC LIMIT {TAIL_CHUNKS}) t)",
                aggregate = dialect.aggregate,
                last = (dialect.last_chars)(&format!("({marker}) || o.text"), tail_chars),
            )
        };
        columns.push(format!("{tail} AS {name}"));
        columns.push(format!("{bytes} AS {name}_bytes"));
    }
    columns.join(", ")
}

/// An SQL list of the final ones among `statuses` (every final status
/// when none is named): the jobs a prune may delete. Written as literals,
/// which is safe: they are the enum's own names. A list naming only
/// statuses that are not final matches nothing (`(NULL)`), never a
/// Queued or Running job.
pub(crate) fn final_statuses(statuses: &[Status]) -> String {
    let named: Vec<String> = Status::ALL
        .iter()
        .filter(|status| status.is_final())
        .filter(|status| statuses.is_empty() || statuses.contains(status))
        .map(|status| format!("'{}'", status.as_str()))
        .collect();
    if named.is_empty() {
        "(NULL)".to_owned()
    } else {
        format!("({})", named.join(", "))
    }
}

/// The columns of a schedule row, with its newest job and that job's
/// status (the partial index on jobs (schedule_id, pk) finds it).
pub(crate) const SCHEDULE_COLUMNS: &str = "id, name, definition, host, paused, since, created_by, \
    created_at, modified_at, \
    (SELECT j.id FROM jobs j WHERE j.schedule_id = schedules.id ORDER BY j.pk DESC LIMIT 1) \
    AS last_job_id, \
    (SELECT j.status FROM jobs j WHERE j.schedule_id = schedules.id ORDER BY j.pk DESC LIMIT 1) \
    AS last_job_status";

/// The claim's condition on a queued job `q` with a serial key (a
/// schedule whose overlap is `queue`): its turn has come when no other
/// job of its key runs or waits ahead of it. Jobs without a key pass at
/// once, and cost nothing more.
///
/// `e.status IN ('Queued', 'Running')` is what lets the partial index
/// `jobs_serial` answer, whatever the length of the key's history.
pub(crate) const SERIAL_TURN: &str = "(q.serial_key IS NULL OR NOT EXISTS (\
    SELECT 1 FROM jobs e WHERE e.serial_key = q.serial_key \
    AND e.status IN ('Queued', 'Running') AND e.pk <> q.pk \
    AND (e.status = 'Running' OR e.pk < q.pk)))";

#[cfg(test)]
mod final_statuses_tests {
    use super::*;

    #[test]
    fn only_final_statuses_are_ever_listed() {
        assert_eq!(final_statuses(&[]), "('Success', 'Failed', 'Cancelled')");
        assert_eq!(
            final_statuses(&[Status::Failed, Status::Running]),
            "('Failed')"
        );
        assert_eq!(final_statuses(&[Status::Queued, Status::Running]), "(NULL)");
    }
}
