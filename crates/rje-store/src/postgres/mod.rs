//! The distributed store: PostgreSQL as store and queue. Claims take queued
//! rows with `FOR UPDATE SKIP LOCKED`, so any number of workers on any
//! number of machines claim without waiting on each other; every worker
//! write carries its attempt in the `WHERE` clause (fencing).

mod access;
mod jobs;
mod queue;
mod runs;
mod schedules;

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rje_domain::{
    Chunk, Job, JobId, Lineage, ListQuery, ListedJob, LostJob, Priority, RunId, ScheduleId,
    Settlement, Status, Stream, skipped_error,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::rows::{
    corrupt, fit, output_view, retry_ids, stored_outcome, stored_parameters, to_u32,
};
use crate::runs::{failure_outcomes, may_exceed_limit};
use crate::sql::{Dialect, assembled_sql, output_view_sql};
use crate::{ClaimedJob, Finished, StoreError};

const META_COLUMNS: &str = "pk, id, command, timeout, priority, status, parameters, \
    created_at, modified_at, started_at, completed_at, task_id, remote_process_id, exit_code, \
    signal, error, host, attempts, reattached, max_retries, streaming, cancel_requested, run_at, \
    submitted_by, cancelled_by, retry_of, retry_number, retry_on_failure, schedule_id, \
    scheduled_for, serial_key IS NOT NULL AS serial, run_id, outcome, \
    (SELECT string_agg(r.id::text, ',' ORDER BY r.pk) FROM jobs r WHERE r.retry_of = jobs.id) AS retries";

/// Past this many matching jobs, `total_count` is the planner's estimate
/// instead of an exact count, so that a list never counts millions of rows.
pub const EXACT_COUNT_LIMIT: i64 = 10_000;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`). Migrations are applied by
    /// [`PostgresStore::migrate`] (`rje migrate`), or here when `migrate`.
    pub async fn open(url: &str, migrate: bool) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| StoreError::Unavailable(format!("bad PostgreSQL URL: {err}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let store = Self { pool };
        if migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies the schema migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    pk: i64,
    id: Uuid,
    command: String,
    timeout: i32,
    priority: i32,
    status: String,
    parameters: Option<serde_json::Value>,
    created_at: DateTime<Utc>,
    modified_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    task_id: Option<String>,
    remote_process_id: Option<String>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    error: Option<String>,
    host: Option<String>,
    attempts: i32,
    #[sqlx(default)]
    reattached: i32,
    max_retries: i32,
    streaming: bool,
    cancel_requested: bool,
    #[sqlx(default)]
    submitted_by: Option<String>,
    #[sqlx(default)]
    cancelled_by: Option<String>,
    run_at: DateTime<Utc>,
    #[sqlx(default)]
    retry_of: Option<Uuid>,
    #[sqlx(default)]
    retry_number: i32,
    #[sqlx(default)]
    retry_on_failure: bool,
    #[sqlx(default)]
    schedule_id: Option<Uuid>,
    #[sqlx(default)]
    scheduled_for: Option<DateTime<Utc>>,
    #[sqlx(default)]
    serial: bool,
    #[sqlx(default)]
    run_id: Option<Uuid>,
    #[sqlx(default)]
    outcome: Option<String>,
    /// The ids of the jobs that run this one again, comma-separated.
    #[sqlx(default)]
    retries: Option<String>,
    #[sqlx(default)]
    last_seq: Option<i64>,
    #[sqlx(default)]
    stdout: Option<String>,
    #[sqlx(default)]
    stderr: Option<String>,
    /// Only output views ask for these: the size of each stream's output.
    #[sqlx(default)]
    stdout_bytes: Option<i64>,
    #[sqlx(default)]
    stderr_bytes: Option<i64>,
}

impl JobRow {
    fn into_listed(self, tail_bytes: u32) -> Result<ListedJob, StoreError> {
        let sizes = [self.stdout_bytes, self.stderr_bytes];
        output_view(self.into_job()?, tail_bytes, sizes)
    }

    /// The job the row holds.
    fn into_job(self) -> Result<Job, StoreError> {
        self.into_keyed_job().map(|(_, job)| job)
    }

    /// The job the row holds, with its row key.
    fn into_keyed_job(self) -> Result<(i64, Job), StoreError> {
        self.into_keyed_claimed()
            .map(|(pk, claimed)| (pk, claimed.job))
    }

    /// The job as a claim hands it out, with its row key.
    fn into_keyed_claimed(self) -> Result<(i64, ClaimedJob), StoreError> {
        let job = Job {
            id: JobId::from(self.id),
            command: self.command,
            timeout: to_u32("timeout", self.timeout.into())?,
            priority: Priority::from_rank(self.priority.into())
                .ok_or_else(|| corrupt("priority", self.priority))?,
            status: Status::from_str(&self.status).map_err(|_| corrupt("status", &self.status))?,
            parameters: self.parameters.map(stored_parameters).transpose()?,
            stdout: self.stdout,
            stderr: self.stderr,
            created_at: self.created_at,
            modified_at: self.modified_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            task_id: self.task_id,
            remote_process_id: self.remote_process_id,
            exit_code: self.exit_code,
            signal: self.signal,
            error: self.error,
            host: self.host,
            attempts: to_u32("attempts", self.attempts.into())?,
            reattached: to_u32("reattached", self.reattached.into())?,
            max_retries: to_u32("max_retries", self.max_retries.into())?,
            streaming: self.streaming,
            cancel_requested: self.cancel_requested,
            submitted_by: self.submitted_by,
            cancelled_by: self.cancelled_by,
            run_at: self.run_at,
            lineage: Lineage {
                retry_of: self.retry_of.map(JobId::from),
                retry_number: to_u32("retry_number", self.retry_number.into())?,
                retry_on_failure: self.retry_on_failure,
                schedule: self.schedule_id.map(ScheduleId::from),
                scheduled_for: self.scheduled_for,
                serial: self.serial,
                retries: retry_ids(self.retries.as_deref())?,
                run: self.run_id.map(RunId::from),
            },
            outcome: stored_outcome(self.outcome)?,
        };
        Ok((
            self.pk,
            ClaimedJob {
                job,
                last_seq: self.last_seq.unwrap_or(0),
            },
        ))
    }
}

#[derive(sqlx::FromRow)]
struct ChunkRow {
    seq: i64,
    stream: i16,
    text: String,
    ts: DateTime<Utc>,
    dropped_before: i64,
    #[sqlx(default)]
    source_end: Option<i64>,
}

impl ChunkRow {
    fn into_chunk(self) -> Result<Chunk, StoreError> {
        Ok(Chunk {
            seq: self.seq,
            stream: Stream::from_index(self.stream.into())
                .ok_or_else(|| corrupt("stream", self.stream))?,
            text: self.text,
            timestamp: self.ts,
            dropped_before: u64::try_from(self.dropped_before)
                .map_err(|_| corrupt("dropped_before", self.dropped_before))?,
            source_end: self
                .source_end
                .map(|end| u64::try_from(end).map_err(|_| corrupt("source_end", end)))
                .transpose()?,
        })
    }
}

/// A time given in microseconds, as a list cursor holds it. The cursor
/// holds only times from year 1 to 9999, which every store keeps.
fn time_of(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Now, at the precision PostgreSQL keeps (microseconds).
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn assembled(stream: Stream) -> String {
    assembled_sql(stream, "string_agg", "chr(10)")
}

/// The job columns, with the output of a running job assembled from its
/// chunks (a finished job's output is in its row).
static LIVE_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{META_COLUMNS}, \
         CASE WHEN status = 'Running' THEN {} ELSE stdout END AS stdout, \
         CASE WHEN status = 'Running' THEN {} ELSE stderr END AS stderr",
        assembled(Stream::Stdout),
        assembled(Stream::Stderr)
    )
});

/// The assignments of a job's final state, its output aside, numbered
/// from `$1`: status, exit_code, signal, error, completed_at and
/// modified_at ($5), outcome ($6).
const END_ASSIGNMENTS: &str = "status = $1, exit_code = $2, signal = $3, error = $4, \
    completed_at = $5, modified_at = $5, outcome = $6";

/// The assignments that end a job, numbered from `$1`: status, exit_code,
/// signal, error, completed_at and modified_at ($5), outcome ($6), and
/// the output.
static SETTLE_ASSIGNMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{END_ASSIGNMENTS}, stdout = {}, stderr = {}",
        assembled(Stream::Stdout),
        assembled(Stream::Stderr)
    )
});

const DIALECT: Dialect = Dialect {
    aggregate: "string_agg",
    newline: "chr(10)",
    last_chars: |text, n| format!("right({text}, {n})"),
    bigint: "::BIGINT",
    null_text: "NULL::TEXT",
};

/// The columns of a job as lists show it.
fn listed_columns(tail_bytes: u32) -> String {
    format!("{META_COLUMNS}, {}", output_view_sql(&DIALECT, tail_bytes))
}

type PgQueryAs<'q, O> = sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>;

fn bind_settlement<'q, O>(query: PgQueryAs<'q, O>, settlement: &'q Settlement) -> PgQueryAs<'q, O> {
    query
        .bind(settlement.status.as_str())
        .bind(settlement.exit_code)
        .bind(settlement.signal)
        .bind(settlement.error.as_deref())
        .bind(now())
        .bind(settlement.outcome.as_str())
}

async fn settle(
    conn: &mut PgConnection,
    pk: i64,
    settlement: &Settlement,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET {} WHERE pk = $7 RETURNING {}",
        *SETTLE_ASSIGNMENTS, META_COLUMNS
    );
    let row: JobRow = bind_settlement(sqlx::query_as(&sql), settlement)
        .bind(pk)
        .fetch_one(&mut *conn)
        .await?;
    row.into_job()
}

/// Ends a job that never ran (see [`rje_domain::CancelDecision`]): its
/// final state, with no output to copy, and `by` as who cancelled it.
async fn end_unstarted(
    conn: &mut PgConnection,
    pk: i64,
    settlement: &Settlement,
    by: Option<&str>,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET {END_ASSIGNMENTS}, cancelled_by = COALESCE(cancelled_by, $8) \
         WHERE pk = $7 RETURNING {META_COLUMNS}"
    );
    let row: JobRow = bind_settlement(sqlx::query_as(&sql), settlement)
        .bind(pk)
        .bind(by)
        .fetch_one(&mut *conn)
        .await?;
    row.into_job()
}

/// Records a cancel of a running job, for its worker to carry out, and
/// `by` as who cancelled it: the first to ask.
async fn request_cancel(
    conn: &mut PgConnection,
    pk: i64,
    by: Option<&str>,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET cancel_requested = TRUE, cancelled_by = COALESCE(cancelled_by, $3), \
         modified_at = $1 WHERE pk = $2 RETURNING {META_COLUMNS}"
    );
    let row: JobRow = sqlx::query_as(&sql)
        .bind(now())
        .bind(pk)
        .bind(by)
        .fetch_one(&mut *conn)
        .await?;
    row.into_job()
}

/// Carries out the lifecycle's answer for an attempt that ended without an
/// outcome of its command: queued again, not before `run_at` and with
/// `reason` as its error, or settled.
async fn carry_out_lost(
    conn: &mut PgConnection,
    pk: i64,
    lost: LostJob,
    run_at: DateTime<Utc>,
    reason: &str,
) -> Result<Finished, StoreError> {
    match lost {
        LostJob::Requeue => Ok(Finished::new(
            requeue(conn, pk, run_at, reason).await?,
            None,
        )),
        LostJob::Settle(settlement) => {
            let job = settle(conn, pk, &settlement).await?;
            let skipped = skip_rest_of_run(conn, &job).await?;
            Ok(Finished::new(job, None).with_skipped(skipped))
        }
    }
}

/// Skips the queued jobs of the run of `job`, which just ended, if its
/// failure took the run past its failure limit: in the transaction that
/// ended it. The run's row is locked first, so that two failures ending
/// at once both count each other.
async fn skip_rest_of_run(conn: &mut PgConnection, job: &Job) -> Result<Vec<Job>, StoreError> {
    let Some(run) = may_exceed_limit(job) else {
        return Ok(Vec::new());
    };
    let allowed: Option<i32> =
        sqlx::query_scalar("SELECT failures_allowed FROM runs WHERE id = $1 FOR UPDATE")
            .bind(run.as_uuid())
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    let Some(allowed) = allowed else {
        return Ok(Vec::new());
    };
    let failures: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM jobs WHERE run_id = $1 AND outcome IN {}",
        failure_outcomes()
    ))
    .bind(run.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    if failures <= i64::from(allowed) {
        return Ok(Vec::new());
    }
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "UPDATE jobs SET status = 'Cancelled', outcome = 'Skipped', error = $1, \
         completed_at = $2, modified_at = $2 WHERE run_id = $3 AND status = 'Queued' \
         RETURNING {META_COLUMNS}"
    ))
    .bind(skipped_error(u32::try_from(allowed).unwrap_or(u32::MAX)))
    .bind(now())
    .bind(run.as_uuid())
    .fetch_all(&mut *conn)
    .await?;
    let mut skipped: Vec<Job> = rows
        .into_iter()
        .map(JobRow::into_job)
        .collect::<Result<_, _>>()?;
    skipped.sort_by_key(|job| job.created_at);
    Ok(skipped)
}

async fn requeue(
    conn: &mut PgConnection,
    pk: i64,
    run_at: DateTime<Utc>,
    reason: &str,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET status = 'Queued', run_at = $1, error = $2, modified_at = $3, \
         task_id = NULL, started_at = NULL, remote_process_id = NULL \
         WHERE pk = $4 RETURNING {META_COLUMNS}"
    );
    let row: JobRow = sqlx::query_as(&sql)
        .bind(run_at)
        .bind(reason)
        .bind(now())
        .bind(pk)
        .fetch_one(&mut *conn)
        .await?;
    row.into_job()
}

async fn fetch_for_update(conn: &mut PgConnection, id: JobId) -> Result<(i64, Job), StoreError> {
    let sql = format!("SELECT {META_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE");
    let row: JobRow = sqlx::query_as(&sql)
        .bind(id.as_uuid())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    row.into_keyed_job()
}

/// Makes the transaction just begun read everything from one snapshot
/// (REPEATABLE READ), and read-only: what a reader composes from several
/// statements is then what was stored at one instant, however the worker
/// appends and prunes meanwhile. (A single statement is one snapshot
/// already, even at READ COMMITTED.) Must be the transaction's first
/// statement.
async fn read_snapshot(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The job row of the current attempt, locked, or [`StoreError::Fenced`].
async fn current_attempt_pk(
    conn: &mut PgConnection,
    id: JobId,
    attempt: u32,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT pk FROM jobs WHERE id = $1 AND attempts = $2 AND status = 'Running' FOR UPDATE",
    )
    .bind(id.as_uuid())
    .bind(fit::<i32, _>("attempt", attempt)?)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::Fenced)
}

fn push_filters(builder: &mut QueryBuilder<'_, Postgres>, query: &ListQuery) {
    builder.push(" WHERE TRUE");
    if let Some(status) = query.status {
        builder.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(priority) = query.priority {
        // Cast in SQL, where a value out of range is an error, not a wrap.
        builder
            .push(" AND priority = ")
            .push_bind(priority.rank())
            .push("::integer");
    }
    if let Some(host) = &query.host {
        builder.push(" AND host = ").push_bind(host.clone());
    }
    if let Some(name) = &query.submitted_by {
        builder.push(" AND submitted_by = ").push_bind(name.clone());
    }
    if let Some(id) = query.schedule {
        builder.push(" AND schedule_id = ").push_bind(id.as_uuid());
    }
    if let Some(hosts) = &query.hosts_within {
        builder
            .push(" AND host = ANY(")
            .push_bind(hosts.clone())
            .push(")");
    }
    // ILIKE: case ignored, as in the SQLite store (which folds only ASCII).
    if let Some(pattern) = query.search_pattern() {
        builder
            .push(" AND command ILIKE ")
            .push_bind(pattern)
            .push(" ESCAPE '\\'");
    }
}
