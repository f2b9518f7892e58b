//! The distributed store: PostgreSQL as store and queue. Claims take queued
//! rows with `FOR UPDATE SKIP LOCKED`, so any number of workers on any
//! number of machines claim without waiting on each other; every worker
//! write carries its attempt in the `WHERE` clause (fencing).

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{
    Chunk, Job, JobId, JobPatch, ListQuery, LostJob, NewJob, Outcome, Priority, Settlement, Status,
    Stream, WorkerId, tail_cut,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::common::{
    Dialect, REQUEUED_AFTER_LOSS, WorkerJobRow, assembled_sql, conclude, corrupt,
    fenced_unless_written, group_workers, order_by, output_view, output_view_sql, plan_prune,
    to_u32,
};
use crate::{
    CancelOutcome, ClaimedJob, JobPage, JobStore, ListedJob, OutputPage, Pruned, StoreError,
    WorkerInfo,
};

const META_COLUMNS: &str = "pk, id, command, timeout, priority, status, parameters, \
    created_at, modified_at, started_at, completed_at, task_id, remote_process_id, exit_code, \
    signal, error, host, attempts, max_retries, streaming, cancel_requested, run_at";

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
    max_retries: i32,
    streaming: bool,
    cancel_requested: bool,
    run_at: DateTime<Utc>,
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

    fn into_job(self) -> Result<Job, StoreError> {
        self.into_claimed().map(|claimed| claimed.job)
    }

    fn into_claimed(self) -> Result<ClaimedJob, StoreError> {
        let job = Job {
            id: JobId(self.id),
            command: self.command,
            timeout: to_u32("timeout", self.timeout.into())?,
            priority: Priority::from_rank(self.priority.into())
                .ok_or_else(|| corrupt("priority", self.priority))?,
            status: Status::from_str(&self.status).map_err(|_| corrupt("status", &self.status))?,
            parameters: self.parameters,
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
            max_retries: to_u32("max_retries", self.max_retries.into())?,
            streaming: self.streaming,
            cancel_requested: self.cancel_requested,
            run_at: self.run_at,
        };
        Ok(ClaimedJob {
            job,
            last_seq: self.last_seq.unwrap_or(0),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ChunkRow {
    seq: i64,
    stream: i16,
    text: String,
    ts: DateTime<Utc>,
    dropped_before: i64,
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
        })
    }
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

/// The assignments that end a job, numbered from `$1`: status, exit_code,
/// signal, error, completed_at and modified_at ($5), and the output.
static SETTLE_ASSIGNMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "status = $1, exit_code = $2, signal = $3, error = $4, completed_at = $5, \
         modified_at = $5, stdout = {}, stderr = {}",
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
}

async fn settle(
    conn: &mut PgConnection,
    pk: i64,
    settlement: &Settlement,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET {} WHERE pk = $6 RETURNING {}",
        *SETTLE_ASSIGNMENTS, META_COLUMNS
    );
    let row: JobRow = bind_settlement(sqlx::query_as(&sql), settlement)
        .bind(pk)
        .fetch_one(&mut *conn)
        .await?;
    row.into_job()
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
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let pk = row.pk;
    Ok((pk, row.into_job()?))
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
    .bind(id.0)
    .bind(attempt as i32)
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
        builder
            .push(" AND priority = ")
            .push_bind(priority.rank() as i32);
    }
    if let Some(host) = &query.host {
        builder.push(" AND host = ").push_bind(host.clone());
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create(&self, job: NewJob) -> Result<Job, StoreError> {
        let at = now();
        let sql = format!(
            "INSERT INTO jobs (id, command, timeout, priority, status, parameters, created_at, \
             modified_at, host, max_retries, streaming, run_at) \
             VALUES ($1, $2, $3, $4, 'Queued', $5, $6, $6, $7, $8, $9, $6) RETURNING {META_COLUMNS}"
        );
        let row: JobRow = sqlx::query_as(&sql)
            .bind(JobId::new().0)
            .bind(&job.command)
            .bind(job.timeout as i32)
            .bind(job.priority.rank() as i32)
            .bind(&job.parameters)
            .bind(at)
            .bind(&job.host)
            .bind(job.max_retries as i32)
            .bind(job.streaming)
            .fetch_one(&self.pool)
            .await?;
        row.into_job()
    }

    async fn get(&self, id: JobId) -> Result<Job, StoreError> {
        let sql = format!("SELECT {} FROM jobs WHERE id = $1", *LIVE_COLUMNS);
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_job()
    }

    async fn get_meta(&self, id: JobId) -> Result<Job, StoreError> {
        let sql = format!("SELECT {META_COLUMNS} FROM jobs WHERE id = $1");
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_job()
    }

    async fn get_listed(&self, id: JobId, tail_bytes: u32) -> Result<ListedJob, StoreError> {
        let sql = format!(
            "SELECT {} FROM jobs WHERE id = $1",
            listed_columns(tail_bytes)
        );
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_listed(tail_bytes)
    }

    async fn list(&self, query: &ListQuery, tail_bytes: u32) -> Result<JobPage, StoreError> {
        // Count up to a limit: past it, the planner's estimate stands in,
        // so a list never counts millions of rows.
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM (SELECT 1 FROM jobs");
        push_filters(&mut count, query);
        count
            .push(" LIMIT ")
            .push_bind(EXACT_COUNT_LIMIT + 1)
            .push(") AS capped");
        let capped: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let (total_count, total_exact) = if capped <= EXACT_COUNT_LIMIT {
            (capped, true)
        } else {
            (self.estimate(query).await?.max(capped), false)
        };

        let mut select = QueryBuilder::<Postgres>::new(format!(
            "SELECT {} FROM jobs",
            listed_columns(tail_bytes)
        ));
        push_filters(&mut select, query);
        select
            .push(format!(" ORDER BY {}", order_by(query)))
            .push(" LIMIT ")
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let rows: Vec<JobRow> = select.build_query_as().fetch_all(&self.pool).await?;
        Ok(JobPage {
            jobs: rows
                .into_iter()
                .map(|row| row.into_listed(tail_bytes))
                .collect::<Result<_, _>>()?,
            total_count: u64::try_from(total_count).unwrap_or(0),
            total_exact,
        })
    }

    async fn edit(&self, id: JobId, patch: &JobPatch) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let (pk, mut job) = fetch_for_update(&mut tx, id).await?;
            if !job.status.is_editable() {
                return Err(StoreError::Conflict { status: job.status });
            }
            patch.apply(&mut job);
            job.modified_at = now();
            sqlx::query(
                "UPDATE jobs SET command = $1, timeout = $2, priority = $3, parameters = $4, \
                 modified_at = $5 WHERE pk = $6",
            )
            .bind(&job.command)
            .bind(job.timeout as i32)
            .bind(job.priority.rank() as i32)
            .bind(&job.parameters)
            .bind(job.modified_at)
            .bind(pk)
            .execute(&mut *tx)
            .await?;
            Ok(job)
        }
        .await;
        conclude(tx, result).await
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let (pk, job) = fetch_for_update(&mut tx, id).await?;
            if !job.status.is_deletable() {
                return Err(StoreError::Conflict { status: job.status });
            }
            sqlx::query("DELETE FROM jobs WHERE pk = $1")
                .bind(pk)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }
        .await;
        conclude(tx, result).await
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let (pk, job) = fetch_for_update(&mut tx, id).await?;
            let outcome = match job.status {
                Status::Queued => {
                    let sql = format!(
                        "UPDATE jobs SET status = 'Cancelled', completed_at = $1, modified_at = $1 \
                     WHERE pk = $2 RETURNING {META_COLUMNS}"
                    );
                    let row: JobRow = sqlx::query_as(&sql)
                        .bind(now())
                        .bind(pk)
                        .fetch_one(&mut *tx)
                        .await?;
                    CancelOutcome::Cancelled(row.into_job()?)
                }
                Status::Running => {
                    let sql = format!(
                        "UPDATE jobs SET cancel_requested = TRUE, modified_at = $1 \
                     WHERE pk = $2 RETURNING {META_COLUMNS}"
                    );
                    let row: JobRow = sqlx::query_as(&sql)
                        .bind(now())
                        .bind(pk)
                        .fetch_one(&mut *tx)
                        .await?;
                    CancelOutcome::Requested(row.into_job()?)
                }
                status => return Err(StoreError::Conflict { status }),
            };
            Ok(outcome)
        }
        .await;
        conclude(tx, result).await
    }

    async fn claim(
        &self,
        worker: &WorkerId,
        max: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let at = now();
        // One statement: lock the first due jobs (skipping rows another
        // worker holds), mark them Running, and lease them.
        let sql = format!(
            "WITH claimed AS ( \
                UPDATE jobs SET status = 'Running', attempts = attempts + 1, modified_at = $1, \
                       task_id = $2 || '/' || (attempts + 1) \
                WHERE pk IN (SELECT pk FROM jobs WHERE status = 'Queued' AND run_at <= $1 \
                             ORDER BY priority DESC, pk LIMIT $3 FOR UPDATE SKIP LOCKED) \
                RETURNING {META_COLUMNS}, \
                    (SELECT COALESCE(MAX(seq), 0) FROM job_output o WHERE o.job_pk = jobs.pk) \
                    AS last_seq \
             ), leased AS ( \
                INSERT INTO leases (job_pk, worker_id, attempt, expires_at) \
                SELECT pk, $2, attempts, $4 FROM claimed \
                ON CONFLICT (job_pk) DO UPDATE SET worker_id = excluded.worker_id, \
                    attempt = excluded.attempt, expires_at = excluded.expires_at \
             ) \
             SELECT * FROM claimed ORDER BY priority DESC, pk"
        );
        let rows: Vec<JobRow> = sqlx::query_as(&sql)
            .bind(at)
            .bind(&worker.0)
            .bind(i64::from(max))
            .bind(at + lease)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(JobRow::into_claimed).collect()
    }

    async fn mark_started(&self, id: JobId, attempt: u32) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET started_at = $1, modified_at = $1 \
             WHERE id = $2 AND attempts = $3 AND status = 'Running'",
        )
        .bind(now())
        .bind(id.0)
        .bind(attempt as i32)
        .execute(&self.pool)
        .await?;
        fenced_unless_written(done.rows_affected())
    }

    async fn append_output(
        &self,
        id: JobId,
        attempt: u32,
        chunks: &[Chunk],
        process_id: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(process_id) = process_id {
            let done = sqlx::query(
                "UPDATE jobs SET remote_process_id = $1 \
                 WHERE id = $2 AND attempts = $3 AND status = 'Running'",
            )
            .bind(process_id)
            .bind(id.0)
            .bind(attempt as i32)
            .execute(&self.pool)
            .await?;
            fenced_unless_written(done.rows_affected())?;
        }
        if chunks.is_empty() {
            return Ok(());
        }
        // One statement for the batch, fenced in its WHERE clause; arrays
        // keep the number of bound values fixed however many chunks.
        let done = sqlx::query(
            "INSERT INTO job_output (job_pk, seq, stream, text, ts, dropped_before) \
             SELECT jobs.pk, c.seq, c.stream, c.text, c.ts, c.dropped \
             FROM jobs, UNNEST($1::BIGINT[], $2::SMALLINT[], $3::TEXT[], $4::TIMESTAMPTZ[], \
                               $5::BIGINT[]) AS c(seq, stream, text, ts, dropped) \
             WHERE jobs.id = $6 AND jobs.attempts = $7 AND jobs.status = 'Running'",
        )
        .bind(chunks.iter().map(|c| c.seq).collect::<Vec<_>>())
        .bind(
            chunks
                .iter()
                .map(|c| c.stream.index() as i16)
                .collect::<Vec<_>>(),
        )
        .bind(chunks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>())
        .bind(chunks.iter().map(|c| c.timestamp).collect::<Vec<_>>())
        .bind(
            chunks
                .iter()
                .map(|c| i64::try_from(c.dropped_before).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(id.0)
        .bind(attempt as i32)
        .execute(&self.pool)
        .await?;
        fenced_unless_written(done.rows_affected())
    }

    async fn prune_output(
        &self,
        id: JobId,
        attempt: u32,
        stream: Stream,
        after_seq: i64,
        keep_bytes: u64,
    ) -> Result<Pruned, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let pk = current_attempt_pk(&mut tx, id, attempt).await?;
            let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
                "SELECT seq, octet_length(text)::BIGINT, dropped_before FROM job_output \
             WHERE job_pk = $1 AND stream = $2 AND seq > $3 ORDER BY seq DESC",
            )
            .bind(pk)
            .bind(stream.index() as i16)
            .bind(after_seq)
            .fetch_all(&mut *tx)
            .await?;
            let plan = plan_prune(&rows, keep_bytes);
            let mut pruned = plan.result;
            if let Some(boundary) = plan.boundary {
                // The boundary chunk keeps the end that fits, cut on a line
                // where it can be, and carries the count of everything
                // dropped before it.
                let text: String = sqlx::query_scalar("SELECT text FROM job_output WHERE job_pk = $1 AND seq = $2")
                    .bind(pk)
                    .bind(boundary.seq)
                    .fetch_one(&mut *tx)
                    .await?;
                let cut = tail_cut(&text, boundary.room);
                pruned.kept += (text.len() - cut) as u64;
                sqlx::query("UPDATE job_output SET text = $1, dropped_before = $2 WHERE job_pk = $3 AND seq = $4")
                    .bind(&text[cut..])
                    .bind(i64::try_from(boundary.dropped + cut as u64).unwrap_or(i64::MAX))
                    .bind(pk)
                    .bind(boundary.seq)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some((from, until)) = plan.delete {
                sqlx::query("DELETE FROM job_output WHERE job_pk = $1 AND stream = $2 AND seq >= $3 AND seq < $4")
                    .bind(pk)
                    .bind(stream.index() as i16)
                    .bind(from)
                    .bind(until)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(pruned)
        }
        .await;
        conclude(tx, result).await
    }

    async fn finish(
        &self,
        id: JobId,
        attempt: u32,
        outcome: &Outcome,
        process_id: Option<&str>,
    ) -> Result<Job, StoreError> {
        let settlement = outcome.settle();
        let sql = format!(
            "UPDATE jobs SET {}, remote_process_id = COALESCE($6, remote_process_id) \
             WHERE id = $7 AND attempts = $8 AND status = 'Running' RETURNING {}",
            *SETTLE_ASSIGNMENTS, META_COLUMNS
        );
        let row: Option<JobRow> = bind_settlement(sqlx::query_as(&sql), &settlement)
            .bind(process_id)
            .bind(id.0)
            .bind(attempt as i32)
            .fetch_optional(&self.pool)
            .await?;
        row.ok_or(StoreError::Fenced)?.into_job()
    }

    async fn retry_later(
        &self,
        id: JobId,
        attempt: u32,
        run_at: DateTime<Utc>,
        error: &str,
    ) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let pk = current_attempt_pk(&mut tx, id, attempt).await?;
            let (_, job) = fetch_for_update(&mut tx, id).await?;
            let job = match job.when_start_failed(error) {
                LostJob::Requeue => requeue(&mut tx, pk, run_at, error).await?,
                LostJob::Settle(settlement) => settle(&mut tx, pk, &settlement).await?,
            };
            Ok(job)
        }
        .await;
        conclude(tx, result).await
    }

    async fn renew_leases(
        &self,
        worker: &WorkerId,
        lease: Duration,
    ) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "WITH renewed AS ( \
                UPDATE leases SET expires_at = $1 WHERE worker_id = $2 RETURNING job_pk \
             ) \
             SELECT j.id FROM jobs j JOIN renewed r ON r.job_pk = j.pk WHERE j.cancel_requested",
        )
        .bind(now() + lease)
        .bind(&worker.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    async fn reap_expired(&self, before: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            // Several reapers may run at once: each takes the rows no other
            // holds, and settles them once.
            let sql = format!(
                "SELECT {META_COLUMNS} FROM jobs j WHERE status = 'Running' AND \
             NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_pk = j.pk AND l.expires_at >= $1) \
             FOR UPDATE SKIP LOCKED"
            );
            let rows: Vec<JobRow> = sqlx::query_as(&sql)
                .bind(before)
                .fetch_all(&mut *tx)
                .await?;
            let mut reaped = Vec::with_capacity(rows.len());
            for row in rows {
                let pk = row.pk;
                let job = row.into_job()?;
                let job = match job.when_worker_lost() {
                    LostJob::Requeue => requeue(&mut tx, pk, now(), REQUEUED_AFTER_LOSS).await?,
                    LostJob::Settle(settlement) => settle(&mut tx, pk, &settlement).await?,
                };
                reaped.push(job);
            }
            Ok(reaped)
        }
        .await;
        conclude(tx, result).await
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        host: &str,
        concurrency: u32,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workers (id, host, concurrency, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&worker.0)
        .bind(host)
        .bind(concurrency as i32)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(&worker.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn workers(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>, StoreError> {
        type Row = (
            String,
            String,
            i32,
            DateTime<Utc>,
            DateTime<Utc>,
            Option<Uuid>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT w.id, w.host, w.concurrency, w.started_at, w.heartbeat_at, j.id \
             FROM workers w LEFT JOIN leases l ON l.worker_id = w.id \
             LEFT JOIN jobs j ON j.pk = l.job_pk \
             WHERE w.heartbeat_at > $1 ORDER BY w.started_at, w.id, j.pk",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        group_workers(rows.into_iter().map(
            |(id, host, concurrency, started_at, heartbeat_at, job)| WorkerJobRow {
                id,
                host,
                concurrency: concurrency.into(),
                started_at,
                heartbeat_at,
                job: job.map(JobId),
            },
        ))
    }

    async fn read_output(
        &self,
        id: JobId,
        since: i64,
        limit: u32,
        stream: Option<Stream>,
    ) -> Result<OutputPage, StoreError> {
        let pk: i64 = sqlx::query_scalar("SELECT pk FROM jobs WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let rows: Vec<ChunkRow> = sqlx::query_as(
            "SELECT seq, stream, text, ts, dropped_before FROM job_output \
             WHERE job_pk = $1 AND seq > $2 AND ($4::SMALLINT IS NULL OR stream = $4) \
             ORDER BY seq LIMIT $3",
        )
        .bind(pk)
        .bind(since)
        .bind(i64::from(limit))
        .bind(stream.map(|s| s.index() as i16))
        .fetch_all(&self.pool)
        .await?;
        Ok(OutputPage {
            chunks: rows
                .into_iter()
                .map(ChunkRow::into_chunk)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl PostgresStore {
    /// The planner's estimate of the rows matching a list's filters.
    async fn estimate(&self, query: &ListQuery) -> Result<i64, StoreError> {
        let mut explain = QueryBuilder::<Postgres>::new("EXPLAIN (FORMAT JSON) SELECT 1 FROM jobs");
        push_filters(&mut explain, query);
        let plan: serde_json::Value = explain.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0) as i64)
    }
}
