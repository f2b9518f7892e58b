//! The embedded store: one SQLite file in WAL mode. All writes go through a
//! single connection, which is how SQLite wants to be written to; reads use
//! a small pool of their own so they never wait behind a write.

mod access;
mod jobs;
mod queue;
mod runs;
mod schedules;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rje_domain::{
    Chunk, Job, JobId, Lineage, ListQuery, ListedJob, LostJob, Priority, RunId, ScheduleId,
    Settlement, Status, Stream, skipped_error,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::rows::{corrupt, output_view, retry_ids, stored_outcome, stored_parameters, to_u32};
use crate::runs::{failure_outcomes, may_exceed_limit};
use crate::sql::{Dialect, assembled_sql, output_view_sql};
use crate::{ClaimedJob, Finished, StoreError};

/// Columns of a job row in [`JobRow`] order; output columns are separate
/// so cheap reads can leave them out.
const META_COLUMNS: &str = "pk, id, command, timeout, priority, status, parameters, \
    created_at, modified_at, started_at, completed_at, task_id, remote_process_id, exit_code, \
    signal, error, host, attempts, reattached, max_retries, streaming, cancel_requested, run_at, \
    submitted_by, cancelled_by, retry_of, retry_number, retry_on_failure, schedule_id, \
    scheduled_for, serial_key IS NOT NULL AS serial, run_id, outcome, \
    (SELECT group_concat(r.id) FROM (SELECT r.id FROM jobs r WHERE r.retry_of = jobs.id ORDER BY r.pk) r) AS retries";

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

/// Where an embedded store lives. Read from its URL by
/// [`SqliteLocation::parse`] alone, and handed as is both to SQLite and to
/// whoever locks the file, so that the two can never disagree on which
/// file a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    /// `sqlite::memory:`: a database of this process only.
    Memory,
    /// The database file, as SQLite opens it (relative to the working
    /// directory when relative).
    File(PathBuf),
}

impl SqliteLocation {
    /// The location a `sqlite://PATH` (or `sqlite:PATH`) URL names.
    ///
    /// The URL is read here once, as sqlx documents it: percent-escapes
    /// are decoded (once), and of the query only what changes nothing for
    /// rje is taken (`mode=rwc` and `mode=rw`: rje creates the file anyway;
    /// `cache=shared`); any other parameter is refused by name, and so is a
    /// nested scheme (`sqlite://sqlite:///x.db`, which sqlx would strip
    /// again; `file:…`, which SQLite reads as a URI). The path that comes
    /// out is opened as a plain file name, never parsed again, so the lock
    /// and SQLite meet on one file: a server once locked `jobs%2Edb` while
    /// SQLite opened `jobs.db`, and settled the running jobs of the server
    /// that owned it.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Unavailable(format!("bad SQLite URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| bad("it does not start with sqlite://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.contains('#') || query.contains('#') {
            return Err(bad("a fragment is not supported; write sqlite://PATH"));
        }
        for parameter in query.split('&').filter(|p| !p.is_empty()) {
            if !matches!(parameter, "mode=rwc" | "mode=rw" | "cache=shared") {
                return Err(bad(&format!(
                    "the parameter {parameter:?} is not supported (only mode=rwc, mode=rw and \
                     cache=shared, which change nothing)"
                )));
            }
        }
        if path == ":memory:" {
            return Ok(Self::Memory);
        }
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| bad("its percent-escapes do not make UTF-8 text"))?;
        if path.is_empty() {
            return Err(bad("it names no file; write sqlite://PATH"));
        }
        if path.trim() != path {
            return Err(bad(
                "the path begins or ends with blanks; a blank is a character of a file name",
            ));
        }
        if path.contains('\0') {
            return Err(bad("a path cannot hold a NUL"));
        }
        let lower = path.to_ascii_lowercase();
        if lower.starts_with("sqlite:") || lower.starts_with("file:") || path.contains("://") {
            return Err(bad("a nested scheme is not supported; write sqlite://PATH"));
        }
        Ok(Self::File(PathBuf::from(path.into_owned())))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH` or
    /// `sqlite::memory:`; see [`SqliteLocation::parse`]) and applies
    /// migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_at(&SqliteLocation::parse(url)?).await
    }

    /// Opens (creating if needed) the database at `location` and applies
    /// migrations. A file is made private to this user (see
    /// [`make_private`]).
    pub async fn open_at(location: &SqliteLocation) -> Result<Self, StoreError> {
        let base = match location {
            // sqlx names each in-memory database apart (with a shared
            // cache, so that the pool's connections see the same one).
            SqliteLocation::Memory => SqliteConnectOptions::from_str("sqlite::memory:")
                .map_err(|err| StoreError::Internal(format!("in-memory SQLite: {err}")))?,
            SqliteLocation::File(path) => {
                make_private(path)?;
                SqliteConnectOptions::new().filename(path)
            }
        };
        let options = base
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // The one writer walks every index of a row it deletes or
            // changes: a page cache of 64 MiB (SQLite's default is 2)
            // keeps a large table's indexes in memory instead of reading
            // them again from the OS for each row of a batch.
            .connect_with(options.clone().pragma("cache_size", "-65536"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = match location {
            // A second pool would open a second, empty database.
            SqliteLocation::Memory => writer.clone(),
            SqliteLocation::File(_) => {
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options.read_only(true))
                    .await?
            }
        };
        Ok(Self { writer, reader })
    }
}

/// The database holds every job's command, parameters and output, so its
/// file is for this user only (0600), whatever the umask: a new one is
/// made here with that mode (SQLite would make it 0644 less the umask),
/// and an existing one, or its `-wal` and `-shm`, open to others is
/// narrowed. SQLite gives the `-wal` and `-shm` it creates the database
/// file's mode, so they follow. SQLite takes an empty file as a new
/// database.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let private = std::fs::Permissions::from_mode(0o600);
    let failed = |err: std::io::Error| {
        StoreError::Unavailable(format!("cannot create {}: {err}", path.display()))
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // The umask may have taken bits from 0600 too: set it exactly.
        Ok(file) => file.set_permissions(private.clone()).map_err(failed)?,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(failed(err)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0
            && let Err(err) = std::fs::set_permissions(&file, private.clone())
        {
            // Not ours to change (another user's file): say so, and go on
            // as before rather than refuse a store that worked.
            tracing::warn!(file = %file.display(), %err, "the database file is open to other users and could not be made private");
        }
    }
    Ok(())
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
    #[sqlx(default)]
    reattached: i64,
    max_retries: i64,
    streaming: bool,
    cancel_requested: bool,
    #[sqlx(default)]
    submitted_by: Option<String>,
    #[sqlx(default)]
    cancelled_by: Option<String>,
    run_at: i64,
    #[sqlx(default)]
    retry_of: Option<String>,
    #[sqlx(default)]
    retry_number: i64,
    #[sqlx(default)]
    retry_on_failure: bool,
    #[sqlx(default)]
    schedule_id: Option<String>,
    #[sqlx(default)]
    scheduled_for: Option<i64>,
    #[sqlx(default)]
    serial: bool,
    #[sqlx(default)]
    run_id: Option<String>,
    #[sqlx(default)]
    outcome: Option<String>,
    /// The ids of the jobs that run this one again, comma-separated.
    #[sqlx(default)]
    retries: Option<String>,
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
                .transpose()?
                .map(stored_parameters)
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
            reattached: to_u32("reattached", self.reattached)?,
            max_retries: to_u32("max_retries", self.max_retries)?,
            streaming: self.streaming,
            cancel_requested: self.cancel_requested,
            submitted_by: self.submitted_by,
            cancelled_by: self.cancelled_by,
            run_at: from_micros(self.run_at)?,
            lineage: Lineage {
                retry_of: self
                    .retry_of
                    .map(|id| JobId::parse(&id).ok_or_else(|| corrupt("retry_of", id)))
                    .transpose()?,
                retry_number: to_u32("retry_number", self.retry_number)?,
                retry_on_failure: self.retry_on_failure,
                schedule: self
                    .schedule_id
                    .map(|id| ScheduleId::parse(&id).ok_or_else(|| corrupt("schedule_id", id)))
                    .transpose()?,
                scheduled_for: opt_from_micros(self.scheduled_for)?,
                serial: self.serial,
                retries: retry_ids(self.retries.as_deref())?,
                run: self
                    .run_id
                    .map(|id| RunId::parse(&id).ok_or_else(|| corrupt("run_id", id)))
                    .transpose()?,
            },
            outcome: stored_outcome(self.outcome)?,
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
    #[sqlx(default)]
    source_end: Option<i64>,
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
            source_end: self
                .source_end
                .map(|end| u64::try_from(end).map_err(|_| corrupt("source_end", end)))
                .transpose()?,
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
        .into_keyed_job()
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

/// The assignments of a job's final state, its output aside. Binds:
/// status, exit_code, signal, error, completed_at, modified_at, outcome.
const END_ASSIGNMENTS: &str = "status = ?, exit_code = ?, signal = ?, error = ?, \
    completed_at = ?, modified_at = ?, outcome = ?";

/// The assignments that end a job: its final state, and its whole output
/// copied from its chunks into its row. Binds: status, exit_code, signal,
/// error, completed_at, modified_at.
static SETTLE_ASSIGNMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{END_ASSIGNMENTS}, stdout = {}, stderr = {}",
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
        .bind(settlement.outcome.as_str())
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
    row.into_job()
}

/// Ends a job that never ran (see [`rje_domain::CancelDecision`]): its
/// final state, with no output to copy, and `by` as who cancelled it.
async fn end_unstarted(
    conn: &mut SqliteConnection,
    pk: i64,
    settlement: &Settlement,
    by: Option<&str>,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET {END_ASSIGNMENTS}, cancelled_by = COALESCE(cancelled_by, ?) \
         WHERE pk = ? RETURNING {META_COLUMNS}"
    );
    let row: JobRow = bind_settlement(sqlx::query_as(&sql), settlement)
        .bind(by)
        .bind(pk)
        .fetch_one(&mut *conn)
        .await?;
    row.into_job()
}

/// Records a cancel of a running job, for its worker to carry out, and
/// `by` as who cancelled it: the first to ask.
async fn request_cancel(
    conn: &mut SqliteConnection,
    pk: i64,
    by: Option<&str>,
) -> Result<Job, StoreError> {
    let sql = format!(
        "UPDATE jobs SET cancel_requested = 1, cancelled_by = COALESCE(cancelled_by, ?), \
         modified_at = ? WHERE pk = ? RETURNING {META_COLUMNS}"
    );
    let row: JobRow = sqlx::query_as(&sql)
        .bind(by)
        .bind(micros(now()))
        .bind(pk)
        .fetch_one(&mut *conn)
        .await?;
    row.into_job()
}

/// Carries out the lifecycle's answer for an attempt that ended without an
/// outcome of its command: queued again, not before `run_at` and with
/// `reason` as its error, or settled.
async fn carry_out_lost(
    conn: &mut SqliteConnection,
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
/// ended it, so that no claim starts another of them first.
async fn skip_rest_of_run(conn: &mut SqliteConnection, job: &Job) -> Result<Vec<Job>, StoreError> {
    let Some(run) = may_exceed_limit(job) else {
        return Ok(Vec::new());
    };
    let allowed: Option<i64> = sqlx::query_scalar("SELECT failures_allowed FROM runs WHERE id = ?")
        .bind(run.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    let Some(allowed) = allowed else {
        return Ok(Vec::new());
    };
    let failures: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM jobs WHERE run_id = ? AND outcome IN {}",
        failure_outcomes()
    ))
    .bind(run.to_string())
    .fetch_one(&mut *conn)
    .await?;
    if failures <= allowed {
        return Ok(Vec::new());
    }
    let at = micros(now());
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "UPDATE jobs SET status = 'Cancelled', outcome = 'Skipped', error = ?, \
         completed_at = ?, modified_at = ? WHERE run_id = ? AND status = 'Queued' \
         RETURNING {META_COLUMNS}"
    ))
    .bind(skipped_error(u32::try_from(allowed).unwrap_or(u32::MAX)))
    .bind(at)
    .bind(at)
    .bind(run.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut skipped: Vec<Job> = rows
        .into_iter()
        .map(JobRow::into_job)
        .collect::<Result<_, _>>()?;
    skipped.sort_by_key(|job| job.created_at);
    Ok(skipped)
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
    row.into_job()
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
    push_filters_by(builder, query, FilterIndexes::Use);
}

/// Whether SQLite may read a list's filters through their indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterIndexes {
    Use,
    /// Written `+column`, which SQLite cannot look up by index: it walks
    /// the ordering's index instead and checks each row. For filters that
    /// match many jobs, where that finds a page after a few rows while
    /// the filter's index gives every match to sort.
    Skip,
}

pub(crate) fn push_filters_by(
    builder: &mut QueryBuilder<'_, Sqlite>,
    query: &ListQuery,
    indexes: FilterIndexes,
) {
    let plus = if indexes == FilterIndexes::Skip {
        "+"
    } else {
        ""
    };
    builder.push(" WHERE 1 = 1");
    if let Some(status) = query.status {
        builder
            .push(format!(" AND {plus}status = "))
            .push_bind(status.as_str());
    }
    if let Some(priority) = query.priority {
        builder
            .push(format!(" AND {plus}priority = "))
            .push_bind(priority.rank());
    }
    if let Some(host) = &query.host {
        builder
            .push(format!(" AND {plus}host = "))
            .push_bind(host.clone());
    }
    if let Some(name) = &query.submitted_by {
        builder
            .push(format!(" AND {plus}submitted_by = "))
            .push_bind(name.clone());
    }
    if let Some(id) = query.schedule {
        builder
            .push(format!(" AND {plus}schedule_id = "))
            .push_bind(id.to_string());
    }
    if let Some(hosts) = &query.hosts_within {
        // A list of names serialises; were it ever not to, nothing shows.
        let hosts = serde_json::to_string(hosts).unwrap_or_else(|_| "[]".to_owned());
        builder
            .push(format!(" AND {plus}host IN (SELECT value FROM json_each("))
            .push_bind(hosts)
            .push("))");
    }
    // The trigram index finds the candidates among the jobs it holds, the
    // range of keys above its mark the rest (see 0005_command_search.sql);
    // LIKE, which ignores ASCII case only, has the last word. One IN over
    // both, not an OR: with an OR SQLite scans the whole table.
    if let Some(phrase) = query.search_phrase() {
        builder
            .push(" AND pk IN (SELECT rowid FROM jobs_search WHERE jobs_search MATCH ")
            .push_bind(phrase)
            .push(" UNION ALL SELECT pk FROM jobs WHERE pk > (SELECT pk FROM jobs_search_upto))");
    }
    if let Some(pattern) = query.search_pattern() {
        builder
            .push(" AND command LIKE ")
            .push_bind(pattern)
            .push(" ESCAPE '\\'");
    }
}
