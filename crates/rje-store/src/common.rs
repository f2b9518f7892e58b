//! What the SQL stores share: the parts of their queries that do not depend
//! on the dialect, and the pruning plan.

use chrono::{DateTime, Utc};
use rje_domain::{
    Chunk, Job, JobId, JobParameters, ListQuery, ListedJob, OrderField, Priority, Status, Stream,
    WorkerId,
};

use crate::{ActiveCount, OutputPage, Pruned, StoreError, WorkerInfo};

/// Ends a transaction by its result: commit on success, an explicit
/// rollback on error. A transaction merely dropped keeps its locks until its
/// connection is next used; in PostgreSQL, `SKIP LOCKED` claims would skip
/// those rows meanwhile.
pub(crate) async fn conclude<DB: sqlx::Database, T>(
    tx: sqlx::Transaction<'_, DB>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(%rollback, "rollback failed");
            }
            Err(err)
        }
    }
}

/// A fenced write (its WHERE names the attempt) that changed no row came
/// from an attempt that is no longer current.
pub(crate) fn fenced_unless_written(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::Fenced)
    } else {
        Ok(())
    }
}

pub(crate) fn corrupt(what: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::Internal(format!("stored {what} is invalid: {value:?}"))
}

pub(crate) fn to_u32(what: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(what, value))
}

/// A number on its way into a narrower column. The domain's limits keep
/// every value in range, so a miss is a bug, reported rather than wrapped.
pub(crate) fn fit<T, U>(what: &str, value: U) -> Result<T, StoreError>
where
    T: TryFrom<U>,
    U: Copy + std::fmt::Debug,
{
    T::try_from(value)
        .map_err(|_| StoreError::Internal(format!("{what} {value:?} does not fit its column")))
}

/// How both stores write a stream: 0 for stdout, 1 for stderr.
pub(crate) fn stream_code(stream: Stream) -> i16 {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// The statement behind [`crate::Jobs::count_active`], the same in both
/// dialects.
pub(crate) const COUNT_ACTIVE_SQL: &str = "SELECT status, priority, COUNT(*) AS jobs FROM jobs \
     WHERE status IN ('Queued', 'Running') GROUP BY status, priority";

/// One row of [`COUNT_ACTIVE_SQL`].
pub(crate) fn active_count(
    status: &str,
    priority: i64,
    jobs: i64,
) -> Result<ActiveCount, StoreError> {
    Ok(ActiveCount {
        status: status.parse().map_err(|_| corrupt("status", status))?,
        priority: Priority::from_rank(priority).ok_or_else(|| corrupt("priority", priority))?,
        jobs: u64::try_from(jobs).map_err(|_| corrupt("count", jobs))?,
    })
}

/// The statement behind [`crate::Jobs::count_by_status`]: one pass over
/// the status index, whatever the number of jobs.
pub(crate) const COUNT_BY_STATUS_SQL: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";

/// Every status with its count from [`COUNT_BY_STATUS_SQL`]'s rows.
pub(crate) fn status_counts(rows: Vec<(String, i64)>) -> Result<Vec<(Status, u64)>, StoreError> {
    let mut counts: Vec<(Status, u64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, jobs) in rows {
        let status: Status = status.parse().map_err(|_| corrupt("status", &status))?;
        let jobs = u64::try_from(jobs).map_err(|_| corrupt("count", jobs))?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = jobs;
        }
    }
    Ok(counts)
}

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

/// Where a taken-up job's output goes on, and what of it is stored: see
/// [`crate::Reattached`].
pub(crate) type StoredOutput = ([u64; 2], Vec<(i64, Stream, u64, u64)>);

/// A taken-up job's stored output from its rows `(seq, stream, bytes,
/// dropped_before, source_end)` in seq order: per stream the offset to
/// read on from (the largest `source_end`), and the layout the new pump
/// rebuilds its output budget from.
pub(crate) fn stored_output(
    rows: Vec<(i64, i64, i64, i64, Option<i64>)>,
) -> Result<StoredOutput, StoreError> {
    let mut offsets = [0u64; 2];
    let mut stored = Vec::with_capacity(rows.len());
    for (seq, stream, bytes, dropped, end) in rows {
        let stream = Stream::from_index(stream).ok_or_else(|| corrupt("stream", stream))?;
        if let Some(end) = end {
            let end = u64::try_from(end).map_err(|_| corrupt("source_end", end))?;
            offsets[stream.index()] = offsets[stream.index()].max(end);
        }
        stored.push((
            seq,
            stream,
            u64::try_from(bytes).map_err(|_| corrupt("length", bytes))?,
            u64::try_from(dropped).map_err(|_| corrupt("dropped_before", dropped))?,
        ));
    }
    Ok((offsets, stored))
}

/// Where a job stands from its status in the store and whether a lease on
/// it is live: see [`crate::Standing`].
pub(crate) fn standing(status: &str, lease_live: bool) -> crate::Standing {
    match (status == rje_domain::Status::Running.as_str(), lease_live) {
        (true, true) => crate::Standing::Held,
        (true, false) => crate::Standing::Orphaned,
        (false, _) => crate::Standing::Over,
    }
}

/// Why a job was not taken up, from its status in the store (`None`: no
/// such job): see [`crate::TakeUp`].
pub(crate) fn not_taken_up(status: Option<&str>) -> crate::TakeUp {
    match status.map(|status| standing(status, true)) {
        Some(crate::Standing::Held | crate::Standing::Orphaned) => crate::TakeUp::Held,
        Some(crate::Standing::Over) => crate::TakeUp::Over,
        None => crate::TakeUp::Unknown,
    }
}

/// Parameters as a store kept them; see [`JobParameters::from_stored`].
pub(crate) fn stored_parameters(json: serde_json::Value) -> Result<JobParameters, StoreError> {
    JobParameters::from_stored(json).map_err(|err| corrupt("parameters", err))
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

/// The output view of a job row: its tails cut to `tail_bytes` and the
/// size of each stream's whole output.
pub(crate) fn output_view(
    mut job: Job,
    tail_bytes: u32,
    sizes: [Option<i64>; 2],
) -> Result<ListedJob, StoreError> {
    let size = |n: Option<i64>| {
        n.map(|n| u64::try_from(n).map_err(|_| corrupt("output size", n)))
            .transpose()
    };
    let output_bytes = [size(sizes[0])?, size(sizes[1])?];
    let limit = usize::try_from(tail_bytes).unwrap_or(usize::MAX);
    for (text, bytes) in [
        (&mut job.stdout, output_bytes[0]),
        (&mut job.stderr, output_bytes[1]),
    ] {
        if bytes.is_none() || tail_bytes == 0 {
            *text = None;
        } else if let Some(text) = text {
            let cut = text.len().saturating_sub(limit);
            let cut = (cut..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            text.drain(..cut);
        }
    }
    Ok(ListedJob { job, output_bytes })
}

/// One row of workers joined to the jobs they lease, ordered by worker.
pub(crate) struct WorkerJobRow {
    pub id: String,
    pub host: String,
    pub concurrency: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub job: Option<JobId>,
}

/// Folds worker rows (one per leased job, or one with no job) into workers.
pub(crate) fn group_workers(
    rows: impl IntoIterator<Item = WorkerJobRow>,
) -> Result<Vec<WorkerInfo>, StoreError> {
    let mut workers: Vec<WorkerInfo> = Vec::new();
    for row in rows {
        if workers.last().is_none_or(|w| w.id.0 != row.id) {
            workers.push(WorkerInfo {
                id: WorkerId(row.id),
                host: row.host,
                concurrency: to_u32("concurrency", row.concurrency)?,
                started_at: row.started_at,
                heartbeat_at: row.heartbeat_at,
                jobs: Vec::new(),
            });
        }
        if let (Some(job), Some(worker)) = (row.job, workers.last_mut()) {
            worker.jobs.push(job);
        }
    }
    Ok(workers)
}

/// What to do to keep at most `keep` bytes of a stream's tail.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PrunePlan {
    /// Chunks to delete whole: seq from the first up to (not including)
    /// the second.
    pub delete: Option<(i64, i64)>,
    /// The oldest chunk kept, when older ones go: its front is cut to fit.
    pub boundary: Option<Boundary>,
    /// What the prune leaves; the boundary's cut adds what it keeps.
    pub result: Pruned,
}

/// The chunk where a pruned tail now begins.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Boundary {
    pub seq: i64,
    /// Bytes of its text that may stay.
    pub room: usize,
    /// Bytes dropped before it so far, not counting its own cut; it records
    /// them in `dropped_before`.
    pub dropped: u64,
}

/// Plans a prune of a stream's tail chunks, given newest first as (seq,
/// bytes, dropped_before), down to `keep` bytes. With `keep` 0 every chunk
/// goes, and the count of what they held (and recorded as dropped before
/// them) is the caller's to record.
pub(crate) fn plan_prune(rows: &[(i64, i64, i64)], keep: u64) -> PrunePlan {
    let size = |n: i64| u64::try_from(n).unwrap_or(0);
    let weight = |rows: &[(i64, i64, i64)]| -> u64 {
        rows.iter()
            .map(|&(_, len, dropped)| size(len) + size(dropped))
            .sum()
    };
    let whole =
        |oldest: &[(i64, i64, i64)], until: i64| oldest.last().map(|&(seq, _, _)| (seq, until));
    if keep == 0 {
        return PrunePlan {
            delete: rows
                .first()
                .and_then(|&(newest, _, _)| whole(rows, newest + 1)),
            boundary: None,
            result: Pruned {
                kept: 0,
                unrecorded: weight(rows),
            },
        };
    }
    let mut kept = 0u64;
    let boundary = rows.iter().position(|&(_, len, _)| {
        let fits = kept + size(len) <= keep;
        if fits {
            kept += size(len);
        }
        !fits
    });
    let result = Pruned {
        kept,
        unrecorded: 0,
    };
    let Some(boundary) = boundary else {
        return PrunePlan {
            delete: None,
            boundary: None,
            result,
        };
    };
    let (seq, _, already_dropped) = rows[boundary];
    let older = &rows[boundary + 1..];
    PrunePlan {
        delete: whole(older, seq),
        boundary: Some(Boundary {
            seq,
            room: usize::try_from(keep - kept).unwrap_or(usize::MAX),
            dropped: weight(older) + size(already_dropped),
        }),
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prune_keeps_the_newest_chunks_that_fit() {
        // Newest first: 5 (10 bytes), 4 (10), 3 (10, 7 dropped before it).
        let rows = [(5, 10, 0), (4, 10, 0), (3, 10, 7)];
        let nothing = plan_prune(&rows, 100);
        assert_eq!((nothing.delete, nothing.boundary), (None, None));
        assert_eq!(nothing.result.kept, 30);

        let all = plan_prune(&rows, 0);
        assert_eq!(all.delete, Some((3, 6)));
        assert_eq!(all.boundary, None);
        assert_eq!(
            all.result,
            Pruned {
                kept: 0,
                unrecorded: 37
            }
        );

        let cut = plan_prune(&rows, 15);
        assert_eq!(cut.delete, Some((3, 4)));
        assert_eq!(
            cut.boundary,
            Some(Boundary {
                seq: 4,
                room: 5,
                dropped: 17
            })
        );
        assert_eq!(
            cut.result,
            Pruned {
                kept: 10,
                unrecorded: 0
            }
        );
    }
}
