//! The SqliteStore's face for clients: jobs, their output and the workers.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{
    CancelDecision, Job, JobId, JobPatch, ListQuery, ListedJob, NewJob, Once, OrderField, Status,
    Stream,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::rows::{active_count, corrupt, status_counts, stream_code};
use crate::sql::{COUNT_ACTIVE_SQL, COUNT_BY_STATUS_SQL, ReadFrom, segments};
use crate::tx::{ONCE_TRIES, conclude, key_kept_vanishing, replay};
use crate::workers::{WorkerJobRow, group_workers};
use crate::{
    ActiveCount, CancelOutcome, Created, JobPage, Jobs, LeasedJob, OutputPage, StoreError,
    WorkerInfo,
};

use super::{
    ChunkRow, FilterIndexes, JobRow, LIVE_COLUMNS, META_COLUMNS, SqliteStore, end_unstarted,
    fetch_job, from_micros, listed_columns, micros, now, push_filters, push_filters_by,
    request_cancel,
};

/// Past this many matches a list's count is an estimate (a search's is
/// this many, a lower bound): a count reads every match, 20 ms a million.
const EXACT_COUNT_LIMIT: i64 = 10_000;
/// The newest jobs an estimate looks at.
const ESTIMATE_SAMPLE: i64 = 4_000;
/// Jobs a search indexes at most before it runs: bounds its wait.
const INDEX_BATCH: i64 = 100_000;

/// How many jobs match `query`'s filters, estimated from the newest
/// [`ESTIMATE_SAMPLE`] jobs: the share of them that match, times the span
/// of row keys. Deletions make it high by the holes they leave; a filter
/// matching mostly old or mostly new jobs skews it. The answer says it is
/// an estimate (`total_count_exact: false`).
async fn estimate(conn: &mut SqliteConnection, query: &ListQuery) -> Result<i64, StoreError> {
    let (low, high): (Option<i64>, Option<i64>) = sqlx::query_as(
        // Apart: SQLite reads MIN or MAX alone off the key's end, but
        // scans the table for both in one SELECT.
        "SELECT (SELECT MIN(pk) FROM jobs), (SELECT MAX(pk) FROM jobs)",
    )
    .fetch_one(&mut *conn)
    .await?;
    let (Some(low), Some(high)) = (low, high) else {
        return Ok(0);
    };
    let from = high.saturating_sub(ESTIMATE_SAMPLE).max(low - 1);
    // The sample read by its row keys: NOT INDEXED keeps SQLite from
    // reading it through a filter's index instead (200,000 entries for a
    // status, against 4,000 rows).
    let sampled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE pk > ?")
        .bind(from)
        .fetch_one(&mut *conn)
        .await?;
    let mut sample = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM jobs NOT INDEXED");
    push_filters(&mut sample, query);
    sample.push(" AND pk > ").push_bind(from);
    let matched: i64 = sample.build_query_scalar().fetch_one(&mut *conn).await?;
    if sampled == 0 {
        return Ok(0);
    }
    let span = high - low + 1;
    Ok(
        i64::try_from(i128::from(matched) * i128::from(span) / i128::from(sampled))
            .unwrap_or(i64::MAX),
    )
}

/// An ORDER BY whose terms SQLite cannot read off an index (`+column`):
/// it sorts what the filters' index gives instead.
fn unindexed_order(order_by: &str) -> String {
    order_by
        .split(", ")
        .map(|term| format!("+{term}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl Jobs for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create(&self, job: NewJob) -> Result<Job, StoreError> {
        insert_job(&self.writer, &job).await
    }

    async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(micros(before))
            .execute(&self.writer)
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn create_once(&self, job: NewJob, once: &Once) -> Result<Created, StoreError> {
        for _ in 0..ONCE_TRIES {
            if let Some(created) = self.try_create_once(&job, once).await? {
                return Ok(created);
            }
        }
        Err(key_kept_vanishing())
    }
    async fn get(&self, id: JobId) -> Result<Job, StoreError> {
        // One statement, so one snapshot: the job and every chunk of its
        // output as stored at one instant, however the worker appends and
        // prunes meanwhile. Keep it one statement.
        let sql = format!("SELECT {} FROM jobs WHERE id = ?", *LIVE_COLUMNS);
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_job()
    }

    async fn get_meta(&self, id: JobId) -> Result<Job, StoreError> {
        let mut conn = self.reader.acquire().await?;
        Ok(fetch_job(&mut conn, id).await?.1)
    }

    async fn get_listed(&self, id: JobId, tail_bytes: u32) -> Result<ListedJob, StoreError> {
        // One statement, so one snapshot: the tail and the sizes agree.
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
        if query.search.is_some() {
            self.index_commands().await?;
        }
        // One read transaction: in WAL mode it reads one snapshot from its
        // first statement to its end, so the count and the page agree.
        let mut tx = self.reader.begin().await?;
        // Counted up to a limit, as PostgreSQL's list does: past it, an
        // estimate stands in, so a list never reads a million matches.
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM (SELECT 1 FROM jobs");
        push_filters(&mut count, query);
        count
            .push(" LIMIT ")
            .push_bind(EXACT_COUNT_LIMIT + 1)
            .push(")");
        let counted: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;
        let (total, total_exact) = if counted <= EXACT_COUNT_LIMIT {
            (counted, true)
        } else if query.search.is_some() {
            (EXACT_COUNT_LIMIT, false)
        } else {
            (estimate(&mut tx, query).await?.max(counted), false)
        };

        // SQLite has no statistics to choose by (rje runs no ANALYZE): for
        // an ordering other than created_at (whose indexes lead with each
        // filter), the count says which way a page is found fast. Few
        // matches: through the filter's index, sorted (at most 10,000).
        // Many: along the ordering's index, each row checked (a page of
        // 10 is found within a few thousand rows).
        let (indexes, sort_matches) = match query.ordering.field {
            OrderField::CreatedAt => (FilterIndexes::Use, false),
            _ if counted <= EXACT_COUNT_LIMIT => (FilterIndexes::Use, true),
            _ => (FilterIndexes::Skip, false),
        };
        let mut keyed = Vec::new();
        for mut segment in segments(query) {
            if sort_matches {
                segment.order_by = unindexed_order(&segment.order_by);
            }
            // One row past the page tells whether there is a next one.
            let wanted = i64::from(query.limit) + 1 - keyed.len() as i64;
            if wanted <= 0 {
                break;
            }
            let mut select = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {} FROM jobs",
                listed_columns(tail_bytes)
            ));
            push_filters_by(&mut select, query, indexes);
            segment.push_to(&mut select, |micros| micros, wanted, query.offset);
            let rows: Vec<JobRow> = select.build_query_as().fetch_all(&mut *tx).await?;
            for row in rows {
                let pk = row.pk;
                keyed.push((pk, row.into_listed(tail_bytes)?));
            }
        }
        tx.commit().await?;
        Ok(JobPage::from_rows(
            keyed,
            query,
            u64::try_from(total).unwrap_or(0),
            total_exact,
        ))
    }

    async fn edit(&self, id: JobId, patch: &JobPatch) -> Result<Job, StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let (pk, mut job) = fetch_job(&mut tx, id).await?;
            job.when_edited()?;
            patch.apply(&mut job);
            job.modified_at = now();
            sqlx::query(
                "UPDATE jobs SET command = ?, timeout = ?, priority = ?, parameters = ?, \
                 host = ?, modified_at = ? WHERE pk = ?",
            )
            .bind(&job.command)
            .bind(i64::from(job.timeout))
            .bind(job.priority.rank())
            .bind(job.parameters.as_ref().map(|p| p.json().to_string()))
            .bind(&job.host)
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
            job.when_deleted()?;
            sqlx::query("DELETE FROM jobs WHERE pk = ?")
                .bind(pk)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }
        .await;
        conclude(tx, result).await
    }

    async fn cancel(&self, id: JobId, by: Option<&str>) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let (pk, job) = fetch_job(&mut tx, id).await?;
            cancel_job(&mut tx, pk, &job, by).await
        }
        .await;
        conclude(tx, result).await
    }

    async fn count_active(&self) -> Result<Vec<ActiveCount>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(COUNT_ACTIVE_SQL)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(|(status, priority, jobs)| active_count(&status, priority, jobs))
            .collect()
    }

    async fn count_within(&self, hosts: &[String]) -> Result<Vec<ActiveCount>, StoreError> {
        let hosts =
            serde_json::to_string(hosts).map_err(|err| StoreError::Internal(err.to_string()))?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT status, priority, COUNT(*) FROM jobs \
             WHERE host IN (SELECT value FROM json_each(?)) GROUP BY status, priority",
        )
        .bind(hosts)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(status, priority, jobs)| active_count(&status, priority, jobs))
            .collect()
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let rows = sqlx::query_as(COUNT_BY_STATUS_SQL)
            .fetch_all(&self.reader)
            .await?;
        status_counts(rows)
    }

    async fn workers(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>, StoreError> {
        type Row = (
            String,
            String,
            i64,
            i64,
            i64,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT w.id, w.host, w.concurrency, w.started_at, w.heartbeat_at, j.id, j.host \
             FROM workers w LEFT JOIN leases l ON l.worker_id = w.id \
             LEFT JOIN jobs j ON j.pk = l.job_pk \
             WHERE w.heartbeat_at > ? ORDER BY w.started_at, w.id, j.pk",
        )
        .bind(micros(since))
        .fetch_all(&self.reader)
        .await?;
        let rows = rows
            .into_iter()
            .map(
                |(id, host, concurrency, started_at, heartbeat_at, job, job_host)| {
                    Ok(WorkerJobRow {
                        id,
                        host,
                        concurrency,
                        started_at: from_micros(started_at)?,
                        heartbeat_at: from_micros(heartbeat_at)?,
                        job: job
                            .map(|job| JobId::parse(&job).ok_or_else(|| corrupt("id", &job)))
                            .transpose()?
                            .map(|id| LeasedJob { id, host: job_host }),
                    })
                },
            )
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
        self.read_chunks(id, since, limit, stream, ReadFrom::Start)
            .await
    }

    async fn read_output_last(
        &self,
        id: JobId,
        since: i64,
        last: u32,
        stream: Option<Stream>,
    ) -> Result<OutputPage, StoreError> {
        self.read_chunks(id, since, last, stream, ReadFrom::End)
            .await
    }
}

impl SqliteStore {
    /// One try of [`Jobs::create_once`]: `None` when the key's job was
    /// deleted between the insert that found the key taken and the read of
    /// it, so that the key is free again and the submit is tried anew.
    async fn try_create_once(
        &self,
        job: &NewJob,
        once: &Once,
    ) -> Result<Option<Created>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let made = async {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? AND created_at < ?",
            )
            .bind(&once.owner)
            .bind(once.key.as_str())
            .bind(micros(once.since))
            .execute(&mut *tx)
            .await?;
            let created = insert_job(&mut *tx, job).await?;
            let kept = sqlx::query(
                "INSERT INTO idempotency_keys (owner, key, fingerprint, job_id, created_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, key) DO NOTHING",
            )
            .bind(&once.owner)
            .bind(once.key.as_str())
            .bind(&once.fingerprint)
            .bind(created.id.to_string())
            .bind(micros(created.created_at))
            .execute(&mut *tx)
            .await?;
            Ok(if kept.rows_affected() == 1 {
                Some(created)
            } else {
                None
            })
        }
        .await;
        match made {
            Ok(Some(created)) => {
                tx.commit().await?;
                Ok(Some(Created::New(created)))
            }
            // The key made a job already: this one was never made.
            Ok(None) => {
                tx.rollback().await?;
                let made: Option<(String, String)> = sqlx::query_as(
                    "SELECT fingerprint, job_id FROM idempotency_keys WHERE owner = ? AND key = ?",
                )
                .bind(&once.owner)
                .bind(once.key.as_str())
                .fetch_optional(&self.writer)
                .await?;
                let earlier = made
                    .map(|(fingerprint, id)| {
                        JobId::parse(&id)
                            .map(|id| (fingerprint, id))
                            .ok_or_else(|| corrupt("id", &id))
                    })
                    .transpose()?;
                let Some(id) = replay(once, earlier)? else {
                    return Ok(None);
                };
                match self.get_meta(id).await {
                    Ok(job) => Ok(Some(Created::Replayed(job))),
                    Err(StoreError::NotFound) => Ok(None),
                    Err(err) => Err(err),
                }
            }
            Err(err) => {
                let _ = tx.rollback().await;
                Err(err)
            }
        }
    }

    /// Indexes the commands of jobs submitted since the last search, in
    /// one batch of at most [`INDEX_BATCH`]: far cheaper than a write to
    /// the index with every submit. What a batch leaves is still found,
    /// by the scan of the unindexed range.
    async fn index_commands(&self) -> Result<(), StoreError> {
        let (upto, newest): (i64, Option<i64>) =
            sqlx::query_as("SELECT (SELECT pk FROM jobs_search_upto), (SELECT MAX(pk) FROM jobs)")
                .fetch_one(&self.reader)
                .await?;
        if newest.is_none_or(|newest| newest <= upto) {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        let result = async {
            // The mark is read again inside the write: another search may
            // have indexed the same jobs meanwhile.
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(pk) FROM (SELECT pk FROM jobs \
                 WHERE pk > (SELECT pk FROM jobs_search_upto) ORDER BY pk LIMIT ?)",
            )
            .bind(INDEX_BATCH)
            .fetch_one(&mut *tx)
            .await?;
            let Some(last) = last else {
                return Ok(());
            };
            sqlx::query(
                "INSERT INTO jobs_search (rowid, command) SELECT pk, command FROM jobs \
                 WHERE pk > (SELECT pk FROM jobs_search_upto) AND pk <= ?",
            )
            .bind(last)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE jobs_search_upto SET pk = ?")
                .bind(last)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }
        .await;
        conclude(tx, result).await
    }

    /// Up to `limit` chunks with `seq > since`, from either end.
    async fn read_chunks(
        &self,
        id: JobId,
        since: i64,
        limit: u32,
        stream: Option<Stream>,
        from: ReadFrom,
    ) -> Result<OutputPage, StoreError> {
        // One read transaction (one WAL snapshot) for the job and its page.
        let mut tx = self.reader.begin().await?;
        let pk: i64 = sqlx::query_scalar("SELECT pk FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let sql = format!(
            "SELECT seq, stream, text, ts, dropped_before, source_end FROM job_output \
             WHERE job_pk = ?1 AND seq > ?2 AND (?4 IS NULL OR stream = ?4) {} LIMIT ?3",
            from.order_by()
        );
        let rows: Vec<ChunkRow> = sqlx::query_as(&sql)
            .bind(pk)
            .bind(since)
            .bind(i64::from(limit))
            .bind(stream.map(|s| i64::from(stream_code(s))))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        from.page(rows, ChunkRow::into_chunk)
    }
}

/// Carries out the cancel rule on the job `job` (row `pk`): ends it if
/// it never ran, or records the request for its worker.
pub(super) async fn cancel_job(
    conn: &mut sqlx::SqliteConnection,
    pk: i64,
    job: &Job,
    by: Option<&str>,
) -> Result<CancelOutcome, StoreError> {
    Ok(match job.when_cancelled()? {
        CancelDecision::CancelNow(settlement) => {
            CancelOutcome::Cancelled(end_unstarted(conn, pk, &settlement, by).await?)
        }
        CancelDecision::Request => CancelOutcome::Requested(request_cancel(conn, pk, by).await?),
    })
}

/// Inserts a queued job.
pub(super) async fn insert_job<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    job: &NewJob,
) -> Result<Job, StoreError> {
    insert_job_due(executor, job, now()).await
}

/// Inserts a queued job not to be claimed before `run_at`.
pub(super) async fn insert_job_due<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    job: &NewJob,
    run_at: DateTime<Utc>,
) -> Result<Job, StoreError> {
    let at = micros(now());
    let lineage = job.lineage();
    let schedule = lineage.schedule.map(|id| id.to_string());
    let sql = format!(
        "INSERT INTO jobs (id, command, timeout, priority, status, parameters, created_at, \
         modified_at, host, max_retries, streaming, run_at, submitted_by, retry_of, \
         retry_number, retry_on_failure, schedule_id, scheduled_for, serial_key, run_id, \
         run_parallel) \
         VALUES (?, ?, ?, ?, 'Queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         RETURNING {META_COLUMNS}"
    );
    let row: JobRow = sqlx::query_as(&sql)
        .bind(JobId::new().to_string())
        .bind(job.command())
        .bind(i64::from(job.timeout()))
        .bind(job.priority().rank())
        .bind(job.parameters().map(|p| p.json().to_string()))
        .bind(at)
        .bind(at)
        .bind(job.host())
        .bind(i64::from(job.max_retries()))
        .bind(job.streaming())
        .bind(micros(run_at).max(at))
        .bind(job.submitter())
        .bind(lineage.retry_of.map(|id| id.to_string()))
        .bind(i64::from(lineage.retry_number))
        .bind(lineage.retry_on_failure)
        .bind(schedule.clone())
        .bind(lineage.scheduled_for.map(micros))
        .bind(schedule.filter(|_| lineage.serial))
        .bind(lineage.run.map(|id| id.to_string()))
        .bind(job.run_parallel().map(i64::from))
        .fetch_one(executor)
        .await?;
    row.into_job()
}
