//! The embedded store: one SQLite file in WAL mode. All writes go through a
//! single connection, which is how SQLite wants to be written to; reads use
//! a small pool of their own so they never wait behind a write.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{
    Chunk, Job, JobId, JobPatch, ListQuery, LostJob, NewJob, Outcome, Priority, Settlement, Status,
    Stream, TaskId, WorkerId, tail_cut,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::common::{
    Dialect, REQUEUED_AFTER_LOSS, WorkerJobRow, assembled_sql, conclude, corrupt,
    fenced_unless_written, group_workers, order_by, output_view, output_view_sql, plan_prune,
    to_u32,
};
use crate::{
    CancelOutcome, ClaimedJob, JobPage, JobStore, ListedJob, OutputPage, Pruned, StoreError,
    WorkerInfo,
};

/// Columns of a job row in [`JobRow`] order; output columns are separate
/// so cheap reads can leave them out.
const META_COLUMNS: &str = "pk, id, command, timeout, priority, status, parameters, \
    created_at, modified_at, started_at, completed_at, task_id, remote_process_id, exit_code, \
    signal, error, host, attempts, max_retries, streaming, cancel_requested, run_at";

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH` or
    /// `sqlite::memory:`) and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| StoreError::Unavailable(format!("bad SQLite URL {url:?}: {err}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let in_memory = url.contains(":memory:");
        let reader = if in_memory {
            // A second pool would open a second, empty database.
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.read_only(true))
                .await?
        };
        Ok(Self { writer, reader })
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    pk: i64,
    id: String,
    command: String,
    timeout: i64,
    priority: i64,
    status: String,
    parameters: Option<String>,
    created_at: i64,
    modified_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    task_id: Option<String>,
    remote_process_id: Option<String>,
    exit_code: Option<i64>,
    signal: Option<i64>,
    error: Option<String>,
    host: Option<String>,
    attempts: i64,
    max_retries: i64,
    streaming: bool,
    cancel_requested: bool,
    run_at: i64,
    /// Only claims ask for it: the last output seq already stored.
    #[sqlx(default)]
    last_seq: i64,
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

fn from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt("time", micros))
}

fn opt_from_micros(micros: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    micros.map(from_micros).transpose()
}

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// Now, at the precision the store keeps, so that what a write returns
/// equals what a later read returns.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn to_i32(what: &str, value: Option<i64>) -> Result<Option<i32>, StoreError> {
    value
        .map(|v| i32::try_from(v).map_err(|_| corrupt(what, v)))
        .transpose()
}

impl JobRow {
    fn into_listed(self, tail_bytes: u32) -> Result<ListedJob, StoreError> {
        let sizes = [self.stdout_bytes, self.stderr_bytes];
        output_view(self.into_job()?.1, tail_bytes, sizes)
    }

    fn into_job(self) -> Result<(i64, Job), StoreError> {
        self.into_claimed().map(|(pk, claimed)| (pk, claimed.job))
    }

    fn into_claimed(self) -> Result<(i64, ClaimedJob), StoreError> {
        let last_seq = self.last_seq;
        let job = Job {
            id: JobId::parse(&self.id).ok_or_else(|| corrupt("id", &self.id))?,
            command: self.command,
            timeout: to_u32("timeout", self.timeout)?,
            priority: Priority::from_rank(self.priority)
                .ok_or_else(|| corrupt("priority", self.priority))?,
            status: Status::from_str(&self.status).map_err(|_| corrupt("status", &self.status))?,
            parameters: self
                .parameters
                .map(|text| serde_json::from_str(&text).map_err(|_| corrupt("parameters", text)))
                .transpose()?,
            stdout: self.stdout,
            stderr: self.stderr,
            created_at: from_micros(self.created_at)?,
            modified_at: from_micros(self.modified_at)?,
            started_at: opt_from_micros(self.started_at)?,
            completed_at: opt_from_micros(self.completed_at)?,
            task_id: self.task_id,
            remote_process_id: self.remote_process_id,
            exit_code: to_i32("exit_code", self.exit_code)?,
            signal: to_i32("signal", self.signal)?,
            error: self.error,
            host: self.host,
            attempts: to_u32("attempts", self.attempts)?,
            max_retries: to_u32("max_retries", self.max_retries)?,
            streaming: self.streaming,
            cancel_requested: self.cancel_requested,
            run_at: from_micros(self.run_at)?,
        };
        Ok((self.pk, ClaimedJob { job, last_seq }))
    }
}

#[derive(sqlx::FromRow)]
struct ChunkRow {
    seq: i64,
    stream: i64,
    text: String,
    ts: i64,
    dropped_before: i64,
}

impl ChunkRow {
    fn into_chunk(self) -> Result<Chunk, StoreError> {
        Ok(Chunk {
            seq: self.seq,
            stream: Stream::from_index(self.stream)
                .ok_or_else(|| corrupt("stream", self.stream))?,
            text: self.text,
            timestamp: from_micros(self.ts)?,
            dropped_before: u64::try_from(self.dropped_before)
                .map_err(|_| corrupt("dropped_before", self.dropped_before))?,
        })
    }
}

async fn fetch_job(conn: &mut SqliteConnection, id: JobId) -> Result<(i64, Job), StoreError> {
    let sql = format!("SELECT {META_COLUMNS} FROM jobs WHERE id = ?");
    sqlx::query_as::<_, JobRow>(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?
        .into_job()
}

/// The job columns, with the output of a running job assembled from its
/// chunks (a finished job's output is in its row).
static LIVE_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{META_COLUMNS}, \
         CASE WHEN status = 'Running' THEN {} ELSE stdout END AS stdout, \
         CASE WHEN status = 'Running' THEN {} ELSE stderr END AS stderr",
        assembled_sql(Stream::Stdout, "group_concat", "char(10)"),
        assembled_sql(Stream::Stderr, "group_concat", "char(10)")
    )
});

/// The assignments that end a job: its final state, and its whole output
/// copied from its chunks into its row. Binds: status, exit_code, signal,
/// error, completed_at, modified_at.
static SETTLE_ASSIGNMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "status = ?, exit_code = ?, signal = ?, error = ?, completed_at = ?, modified_at = ?, \
         stdout = {}, stderr = {}",
        assembled_sql(Stream::Stdout, "group_concat", "char(10)"),
        assembled_sql(Stream::Stderr, "group_concat", "char(10)")
    )
});

fn bind_settlement<'q, O>(
    query: sqlx::query::QueryAs<'q, Sqlite, O, sqlx::sqlite::SqliteArguments<'q>>,
    settlement: &'q Settlement,
) -> sqlx::query::QueryAs<'q, Sqlite, O, sqlx::sqlite::SqliteArguments<'q>> {
    let at = micros(now());
    query
        .bind(settlement.status.as_str())
        .bind(settlement.exit_code)
        .bind(settlement.signal)
        .bind(settlement.error.as_deref())
        .bind(at)
        .bind(at)
}

/// The job row of the current attempt, or [`StoreError::Fenced`].
async fn current_attempt_pk(
    conn: &mut SqliteConnection,
    id: JobId,
    attempt: u32,
) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT pk FROM jobs WHERE id = ? AND attempts = ? AND status = 'Running'")
        .bind(id.to_string())
        .bind(i64::from(attempt))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::Fenced)
}

/// Writes a final state, with the whole output copied into the job row.
async fn settle(
    conn: &mut SqliteConnection,
    pk: i64,
    settlement: &Settlement,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET {} WHERE pk = ? RETURNING {META_COLUMNS}",
        *SETTLE_ASSIGNMENTS
    );
    let row: JobRow = bind_settlement(sqlx::query_as(&sql), settlement)
        .bind(pk)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.into_job()?.1)
}

/// Puts a job back in the queue for a new attempt, not before `run_at`,
/// clearing what belonged to the attempt that ended.
async fn requeue(
    conn: &mut SqliteConnection,
    pk: i64,
    run_at: DateTime<Utc>,
    reason: &str,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET status = 'Queued', run_at = ?, error = ?, modified_at = ?, \
         task_id = NULL, started_at = NULL, remote_process_id = NULL \
         WHERE pk = ? RETURNING {META_COLUMNS}"
    );
    let row: JobRow = sqlx::query_as(&sql)
        .bind(micros(run_at))
        .bind(reason)
        .bind(micros(now()))
        .bind(pk)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.into_job()?.1)
}

const DIALECT: Dialect = Dialect {
    aggregate: "group_concat",
    newline: "char(10)",
    last_chars: |text, n| format!("substr({text}, -{n})"),
    bigint: "",
    null_text: "NULL",
};

/// The columns of a job as lists show it.
fn listed_columns(tail_bytes: u32) -> String {
    format!("{META_COLUMNS}, {}", output_view_sql(&DIALECT, tail_bytes))
}

fn push_filters(builder: &mut QueryBuilder<'_, Sqlite>, query: &ListQuery) {
    builder.push(" WHERE 1 = 1");
    if let Some(status) = query.status {
        builder.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(priority) = query.priority {
        builder.push(" AND priority = ").push_bind(priority.rank());
    }
    if let Some(host) = &query.host {
        builder.push(" AND host = ").push_bind(host.clone());
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create(&self, job: NewJob) -> Result<Job, StoreError> {
        let at = micros(now());
        let sql = format!(
            "INSERT INTO jobs (id, command, timeout, priority, status, parameters, created_at, \
             modified_at, host, max_retries, streaming, run_at) \
             VALUES (?, ?, ?, ?, 'Queued', ?, ?, ?, ?, ?, ?, ?) RETURNING {META_COLUMNS}"
        );
        let row: JobRow = sqlx::query_as(&sql)
            .bind(JobId::new().to_string())
            .bind(&job.command)
            .bind(i64::from(job.timeout))
            .bind(job.priority.rank())
            .bind(job.parameters.as_ref().map(|p| p.to_string()))
            .bind(at)
            .bind(at)
            .bind(&job.host)
            .bind(i64::from(job.max_retries))
            .bind(job.streaming)
            .bind(at)
            .fetch_one(&self.writer)
            .await?;
        Ok(row.into_job()?.1)
    }

    async fn get(&self, id: JobId) -> Result<Job, StoreError> {
        let sql = format!("SELECT {} FROM jobs WHERE id = ?", *LIVE_COLUMNS);
        Ok(sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_job()?
            .1)
    }

    async fn get_meta(&self, id: JobId) -> Result<Job, StoreError> {
        let mut conn = self.reader.acquire().await?;
        Ok(fetch_job(&mut conn, id).await?.1)
    }

    async fn get_listed(&self, id: JobId, tail_bytes: u32) -> Result<ListedJob, StoreError> {
        let sql = format!(
            "SELECT {} FROM jobs WHERE id = ?",
            listed_columns(tail_bytes)
        );
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_listed(tail_bytes)
    }

    async fn list(&self, query: &ListQuery, tail_bytes: u32) -> Result<JobPage, StoreError> {
        let mut tx = self.reader.begin().await?;
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM jobs");
        push_filters(&mut count, query);
        let total: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;

        let mut select =
            QueryBuilder::<Sqlite>::new(format!("SELECT {} FROM jobs", listed_columns(tail_bytes)));
        push_filters(&mut select, query);
        select
            .push(format!(" ORDER BY {}", order_by(query)))
            .push(" LIMIT ")
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let rows: Vec<JobRow> = select.build_query_as().fetch_all(&mut *tx).await?;
        let jobs = rows
            .into_iter()
            .map(|row| row.into_listed(tail_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(JobPage {
            jobs,
            total_count: u64::try_from(total).unwrap_or(0),
            total_exact: true,
        })
    }

    async fn edit(&self, id: JobId, patch: &JobPatch) -> Result<Job, StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let (pk, mut job) = fetch_job(&mut tx, id).await?;
            if !job.status.is_editable() {
                return Err(StoreError::Conflict { status: job.status });
            }
            patch.apply(&mut job);
            job.modified_at = now();
            sqlx::query(
                "UPDATE jobs SET command = ?, timeout = ?, priority = ?, parameters = ?, \
             modified_at = ? WHERE pk = ?",
            )
            .bind(&job.command)
            .bind(i64::from(job.timeout))
            .bind(job.priority.rank())
            .bind(job.parameters.as_ref().map(|p| p.to_string()))
            .bind(micros(job.modified_at))
            .bind(pk)
            .execute(&mut *tx)
            .await?;
            Ok(job)
        }
        .await;
        conclude(tx, result).await
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let (pk, job) = fetch_job(&mut tx, id).await?;
            if !job.status.is_deletable() {
                return Err(StoreError::Conflict { status: job.status });
            }
            sqlx::query("DELETE FROM jobs WHERE pk = ?")
                .bind(pk)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }
        .await;
        conclude(tx, result).await
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let (pk, job) = fetch_job(&mut tx, id).await?;
            let at = micros(now());
            let outcome = match job.status {
                Status::Queued => {
                    let sql = format!(
                        "UPDATE jobs SET status = 'Cancelled', completed_at = ?, modified_at = ? \
                     WHERE pk = ? RETURNING {META_COLUMNS}"
                    );
                    let row: JobRow = sqlx::query_as(&sql)
                        .bind(at)
                        .bind(at)
                        .bind(pk)
                        .fetch_one(&mut *tx)
                        .await?;
                    CancelOutcome::Cancelled(row.into_job()?.1)
                }
                Status::Running => {
                    let sql = format!(
                        "UPDATE jobs SET cancel_requested = 1, modified_at = ? \
                     WHERE pk = ? RETURNING {META_COLUMNS}"
                    );
                    let row: JobRow = sqlx::query_as(&sql)
                        .bind(at)
                        .bind(pk)
                        .fetch_one(&mut *tx)
                        .await?;
                    CancelOutcome::Requested(row.into_job()?.1)
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
        let expires = at + lease;
        // Most claims find nothing (a worker asks whenever a slot frees):
        // a read on the reader pool answers that without queueing behind
        // the single writer.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE status = 'Queued' AND run_at <= ? LIMIT 1",
        )
        .bind(micros(at))
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.writer.begin().await?;
        let sql = format!(
            "UPDATE jobs SET status = 'Running', attempts = attempts + 1, modified_at = ?1, \
             task_id = ?2 || '/' || (attempts + 1) \
             WHERE pk IN (SELECT pk FROM jobs WHERE status = 'Queued' AND run_at <= ?1 \
                          ORDER BY priority DESC, pk LIMIT ?3) \
             RETURNING {META_COLUMNS}, \
             (SELECT COALESCE(MAX(seq), 0) FROM job_output WHERE job_pk = jobs.pk) AS last_seq"
        );
        let rows: Vec<JobRow> = sqlx::query_as(&sql)
            .bind(micros(at))
            .bind(&worker.0)
            .bind(i64::from(max))
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed: Vec<(i64, ClaimedJob)> = rows
            .into_iter()
            .map(JobRow::into_claimed)
            .collect::<Result<_, _>>()?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        debug_assert!(claimed.iter().all(|(_, c)| {
            c.job.task_id.as_deref() == Some(TaskId::format(worker, c.job.attempts).as_str())
        }));
        let mut leases = QueryBuilder::<Sqlite>::new(
            "INSERT OR REPLACE INTO leases (job_pk, worker_id, attempt, expires_at) ",
        );
        leases.push_values(&claimed, |mut row, (pk, c)| {
            row.push_bind(*pk)
                .push_bind(&worker.0)
                .push_bind(i64::from(c.job.attempts))
                .push_bind(micros(expires));
        });
        leases.build().execute(&mut *tx).await?;
        tx.commit().await?;
        // RETURNING gives no order; hand jobs out in queue order.
        claimed.sort_by_key(|(pk, c)| (std::cmp::Reverse(c.job.priority.rank()), *pk));
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    async fn mark_started(&self, id: JobId, attempt: u32) -> Result<(), StoreError> {
        let at = micros(now());
        let done = sqlx::query(
            "UPDATE jobs SET started_at = ?, modified_at = ? \
             WHERE id = ? AND attempts = ? AND status = 'Running'",
        )
        .bind(at)
        .bind(at)
        .bind(id.to_string())
        .bind(i64::from(attempt))
        .execute(&self.writer)
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
        // Each statement carries the fence in its WHERE clause, so that no
        // transaction has to hold the single writer across round trips.
        if let Some(process_id) = process_id {
            let done = sqlx::query(
                "UPDATE jobs SET remote_process_id = ? \
                 WHERE id = ? AND attempts = ? AND status = 'Running'",
            )
            .bind(process_id)
            .bind(id.to_string())
            .bind(i64::from(attempt))
            .execute(&self.writer)
            .await?;
            fenced_unless_written(done.rows_affected())?;
        }
        // SQLite allows 32766 bound values; 5 per chunk.
        for batch in chunks.chunks(5000) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO job_output (job_pk, seq, stream, text, ts, dropped_before) \
                 SELECT jobs.pk, v.column1, v.column2, v.column3, v.column4, v.column5 \
                 FROM jobs, (",
            );
            insert.push_values(batch, |mut row, chunk| {
                row.push_bind(chunk.seq)
                    .push_bind(chunk.stream.index() as i64)
                    .push_bind(chunk.text.as_str())
                    .push_bind(micros(chunk.timestamp))
                    .push_bind(i64::try_from(chunk.dropped_before).unwrap_or(i64::MAX));
            });
            insert
                .push(") AS v WHERE jobs.id = ")
                .push_bind(id.to_string())
                .push(" AND jobs.attempts = ")
                .push_bind(i64::from(attempt))
                .push(" AND jobs.status = 'Running'");
            let done = insert.build().execute(&self.writer).await?;
            fenced_unless_written(done.rows_affected())?;
        }
        Ok(())
    }

    async fn prune_output(
        &self,
        id: JobId,
        attempt: u32,
        stream: Stream,
        after_seq: i64,
        keep_bytes: u64,
    ) -> Result<Pruned, StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let pk = current_attempt_pk(&mut tx, id, attempt).await?;
            let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
                "SELECT seq, octet_length(text), dropped_before FROM job_output \
             WHERE job_pk = ? AND stream = ? AND seq > ? ORDER BY seq DESC",
            )
            .bind(pk)
            .bind(stream.index() as i64)
            .bind(after_seq)
            .fetch_all(&mut *tx)
            .await?;
            let plan = plan_prune(&rows, keep_bytes);
            let mut pruned = plan.result;
            if let Some(boundary) = plan.boundary {
                // The boundary chunk keeps the end that fits, cut on a line
                // where it can be, and carries the count of everything
                // dropped before it.
                let text: String = sqlx::query_scalar("SELECT text FROM job_output WHERE job_pk = ? AND seq = ?")
                    .bind(pk)
                    .bind(boundary.seq)
                    .fetch_one(&mut *tx)
                    .await?;
                let cut = tail_cut(&text, boundary.room);
                pruned.kept += (text.len() - cut) as u64;
                sqlx::query("UPDATE job_output SET text = ?, dropped_before = ? WHERE job_pk = ? AND seq = ?")
                    .bind(&text[cut..])
                    .bind(i64::try_from(boundary.dropped + cut as u64).unwrap_or(i64::MAX))
                    .bind(pk)
                    .bind(boundary.seq)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some((from, until)) = plan.delete {
                sqlx::query("DELETE FROM job_output WHERE job_pk = ? AND stream = ? AND seq >= ? AND seq < ?")
                    .bind(pk)
                    .bind(stream.index() as i64)
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
        // One statement: fence, final state, process id and output.
        let settlement = outcome.settle();
        let sql = format!(
            "UPDATE jobs SET {}, remote_process_id = COALESCE(?, remote_process_id) \
             WHERE id = ? AND attempts = ? AND status = 'Running' RETURNING {META_COLUMNS}",
            *SETTLE_ASSIGNMENTS
        );
        let row: Option<JobRow> = bind_settlement(sqlx::query_as(&sql), &settlement)
            .bind(process_id)
            .bind(id.to_string())
            .bind(i64::from(attempt))
            .fetch_optional(&self.writer)
            .await?;
        Ok(row.ok_or(StoreError::Fenced)?.into_job()?.1)
    }

    async fn retry_later(
        &self,
        id: JobId,
        attempt: u32,
        run_at: DateTime<Utc>,
        error: &str,
    ) -> Result<Job, StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let pk = current_attempt_pk(&mut tx, id, attempt).await?;
            let (_, job) = fetch_job(&mut tx, id).await?;
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
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE leases SET expires_at = ? WHERE worker_id = ?")
            .bind(micros(now() + lease))
            .bind(&worker.0)
            .execute(&mut *tx)
            .await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT j.id FROM leases l JOIN jobs j ON j.pk = l.job_pk \
             WHERE l.worker_id = ? AND j.cancel_requested = 1",
        )
        .bind(&worker.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        ids.iter()
            .map(|id| JobId::parse(id).ok_or_else(|| corrupt("id", id)))
            .collect()
    }

    async fn reap_expired(&self, before: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let sql = format!(
            "SELECT {META_COLUMNS} FROM jobs j WHERE status = 'Running' AND \
             NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_pk = j.pk AND l.expires_at >= ?)"
        );
        let rows: Vec<JobRow> = sqlx::query_as(&sql)
            .bind(micros(before))
            .fetch_all(&mut *tx)
            .await?;
        let mut reaped = Vec::with_capacity(rows.len());
        for row in rows {
            let (pk, job) = row.into_job()?;
            let job = match job.when_worker_lost() {
                LostJob::Requeue => requeue(&mut tx, pk, now(), REQUEUED_AFTER_LOSS).await?,
                LostJob::Settle(settlement) => settle(&mut tx, pk, &settlement).await?,
            };
            reaped.push(job);
        }
        tx.commit().await?;
        Ok(reaped)
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        host: &str,
        concurrency: u32,
    ) -> Result<(), StoreError> {
        let at = micros(now());
        sqlx::query(
            "INSERT INTO workers (id, host, concurrency, started_at, heartbeat_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&worker.0)
        .bind(host)
        .bind(i64::from(concurrency))
        .bind(at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn remove_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM workers WHERE id = ?")
            .bind(&worker.0)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn workers(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT w.id, w.host, w.concurrency, w.started_at, w.heartbeat_at, j.id \
             FROM workers w LEFT JOIN leases l ON l.worker_id = w.id \
             LEFT JOIN jobs j ON j.pk = l.job_pk \
             WHERE w.heartbeat_at > ? ORDER BY w.started_at, w.id, j.pk",
        )
        .bind(micros(since))
        .fetch_all(&self.reader)
        .await?;
        let rows = rows
            .into_iter()
            .map(|(id, host, concurrency, started_at, heartbeat_at, job)| {
                Ok(WorkerJobRow {
                    id,
                    host,
                    concurrency,
                    started_at: from_micros(started_at)?,
                    heartbeat_at: from_micros(heartbeat_at)?,
                    job: job
                        .map(|job| JobId::parse(&job).ok_or_else(|| corrupt("id", &job)))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        group_workers(rows)
    }

    async fn read_output(
        &self,
        id: JobId,
        since: i64,
        limit: u32,
        stream: Option<Stream>,
    ) -> Result<OutputPage, StoreError> {
        let mut tx = self.reader.begin().await?;
        let pk: i64 = sqlx::query_scalar("SELECT pk FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let rows: Vec<ChunkRow> = sqlx::query_as(
            "SELECT seq, stream, text, ts, dropped_before FROM job_output \
             WHERE job_pk = ?1 AND seq > ?2 AND (?4 IS NULL OR stream = ?4) \
             ORDER BY seq LIMIT ?3",
        )
        .bind(pk)
        .bind(since)
        .bind(i64::from(limit))
        .bind(stream.map(|s| s.index() as i64))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(OutputPage {
            chunks: rows
                .into_iter()
                .map(ChunkRow::into_chunk)
                .collect::<Result<_, _>>()?,
        })
    }
}
