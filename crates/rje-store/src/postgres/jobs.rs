//! The PostgresStore's face for clients: jobs, their output and the workers.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{
    CancelDecision, Job, JobId, JobParameters, JobPatch, ListQuery, ListedJob, NewJob, Once,
    Status, Stream,
};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::rows::{active_count, fit, status_counts, stream_code};
use crate::sql::{COUNT_ACTIVE_SQL, COUNT_BY_STATUS_SQL, ReadFrom, segments};
use crate::tx::{ONCE_TRIES, conclude, key_kept_vanishing, replay};
use crate::workers::{WorkerJobRow, group_workers};
use crate::{
    ActiveCount, CancelOutcome, Created, JobPage, Jobs, LeasedJob, OutputPage, StoreError,
    WorkerInfo,
};

use super::{
    ChunkRow, EXACT_COUNT_LIMIT, JobRow, LIVE_COLUMNS, META_COLUMNS, PostgresStore, end_unstarted,
    fetch_for_update, listed_columns, now, push_filters, read_snapshot, request_cancel, time_of,
};

#[async_trait]
impl Jobs for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create(&self, job: NewJob) -> Result<Job, StoreError> {
        insert_job(&self.pool, &job).await
    }

    async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
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
        let sql = format!("SELECT {} FROM jobs WHERE id = $1", *LIVE_COLUMNS);
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_job()
    }

    async fn get_meta(&self, id: JobId) -> Result<Job, StoreError> {
        let sql = format!("SELECT {META_COLUMNS} FROM jobs WHERE id = $1");
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_job()
    }

    async fn get_listed(&self, id: JobId, tail_bytes: u32) -> Result<ListedJob, StoreError> {
        // One statement, so one snapshot: the tail and the sizes agree.
        let sql = format!(
            "SELECT {} FROM jobs WHERE id = $1",
            listed_columns(tail_bytes)
        );
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_listed(tail_bytes)
    }

    async fn list(&self, query: &ListQuery, tail_bytes: u32) -> Result<JobPage, StoreError> {
        // One snapshot for the count and the page, so that they agree.
        let mut tx = self.pool.begin().await?;
        let result = async {
            read_snapshot(&mut tx).await?;
            // Count up to a limit: past it, the planner's estimate stands
            // in, so a list never counts millions of rows.
            let mut count =
                QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM (SELECT 1 FROM jobs");
            push_filters(&mut count, query);
            count
                .push(" LIMIT ")
                .push_bind(EXACT_COUNT_LIMIT + 1)
                .push(") AS capped");
            let capped: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;
            let (total_count, total_exact) = if capped <= EXACT_COUNT_LIMIT {
                (capped, true)
            } else {
                (estimate(&mut tx, query).await?.max(capped), false)
            };

            let mut keyed = Vec::new();
            for segment in segments(query) {
                // One row past the page tells whether there is a next one.
                let wanted = i64::from(query.limit) + 1 - keyed.len() as i64;
                if wanted <= 0 {
                    break;
                }
                let mut select = QueryBuilder::<Postgres>::new(format!(
                    "SELECT {} FROM jobs",
                    listed_columns(tail_bytes)
                ));
                push_filters(&mut select, query);
                segment.push_to(&mut select, time_of, wanted, query.offset);
                let rows: Vec<JobRow> = select.build_query_as().fetch_all(&mut *tx).await?;
                for row in rows {
                    let pk = row.pk;
                    keyed.push((pk, row.into_listed(tail_bytes)?));
                }
            }
            Ok((keyed, total_count, total_exact))
        }
        .await;
        let (keyed, total_count, total_exact) = conclude(tx, result).await?;
        Ok(JobPage::from_rows(
            keyed,
            query,
            u64::try_from(total_count).unwrap_or(0),
            total_exact,
        ))
    }

    async fn edit(&self, id: JobId, patch: &JobPatch) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let (pk, mut job) = fetch_for_update(&mut tx, id).await?;
            job.when_edited()?;
            patch.apply(&mut job);
            job.modified_at = now();
            sqlx::query(
                "UPDATE jobs SET command = $1, timeout = $2, priority = $3, parameters = $4, \
                 host = $5, modified_at = $6 WHERE pk = $7",
            )
            .bind(&job.command)
            .bind(fit::<i32, _>("timeout", job.timeout)?)
            .bind(fit::<i32, _>("priority", job.priority.rank())?)
            .bind(job.parameters.as_ref().map(JobParameters::json))
            .bind(&job.host)
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
            job.when_deleted()?;
            sqlx::query("DELETE FROM jobs WHERE pk = $1")
                .bind(pk)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }
        .await;
        conclude(tx, result).await
    }

    async fn cancel(&self, id: JobId, by: Option<&str>) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let (pk, job) = fetch_for_update(&mut tx, id).await?;
            cancel_job(&mut tx, pk, &job, by).await
        }
        .await;
        conclude(tx, result).await
    }

    async fn count_active(&self) -> Result<Vec<ActiveCount>, StoreError> {
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(COUNT_ACTIVE_SQL)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(status, priority, jobs)| active_count(&status, priority.into(), jobs))
            .collect()
    }

    async fn count_within(&self, hosts: &[String]) -> Result<Vec<ActiveCount>, StoreError> {
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT status, priority, COUNT(*) FROM jobs \
             WHERE host = ANY($1) GROUP BY status, priority",
        )
        .bind(hosts)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(status, priority, jobs)| active_count(&status, priority.into(), jobs))
            .collect()
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let rows = sqlx::query_as(COUNT_BY_STATUS_SQL)
            .fetch_all(&self.pool)
            .await?;
        status_counts(rows)
    }

    async fn workers(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>, StoreError> {
        type Row = (
            String,
            String,
            i32,
            DateTime<Utc>,
            DateTime<Utc>,
            Option<Uuid>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT w.id, w.host, w.concurrency, w.started_at, w.heartbeat_at, j.id, j.host \
             FROM workers w LEFT JOIN leases l ON l.worker_id = w.id \
             LEFT JOIN jobs j ON j.pk = l.job_pk \
             WHERE w.heartbeat_at > $1 ORDER BY w.started_at, w.id, j.pk",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        group_workers(rows.into_iter().map(
            |(id, host, concurrency, started_at, heartbeat_at, job, job_host)| WorkerJobRow {
                id,
                host,
                concurrency: concurrency.into(),
                started_at,
                heartbeat_at,
                job: job.map(|id| LeasedJob {
                    id: JobId::from(id),
                    host: job_host,
                }),
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

impl PostgresStore {
    /// One try of [`Jobs::create_once`]: `None` when the key's job was
    /// deleted between the insert that found the key taken and the read of
    /// it, so that the key is free again and the submit is tried anew.
    async fn try_create_once(
        &self,
        job: &NewJob,
        once: &Once,
    ) -> Result<Option<Created>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let made = async {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 AND created_at < $3",
            )
            .bind(&once.owner)
            .bind(once.key.as_str())
            .bind(once.since)
            .execute(&mut *tx)
            .await?;
            let created = insert_job(&mut *tx, job).await?;
            // A concurrent request with the key waits here for the first
            // to end, then finds the key taken.
            let kept = sqlx::query(
                "INSERT INTO idempotency_keys (owner, key, fingerprint, job_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner, key) DO NOTHING",
            )
            .bind(&once.owner)
            .bind(once.key.as_str())
            .bind(&once.fingerprint)
            .bind(created.id.as_uuid())
            .bind(created.created_at)
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
                let made: Option<(String, Uuid)> = sqlx::query_as(
                    "SELECT fingerprint, job_id FROM idempotency_keys WHERE owner = $1 AND key = $2",
                )
                .bind(&once.owner)
                .bind(once.key.as_str())
                .fetch_optional(&self.pool)
                .await?;
                let earlier = made.map(|(fingerprint, id)| (fingerprint, JobId::from(id)));
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

    /// Up to `limit` chunks with `seq > since`, from either end: the job
    /// and its chunks from one snapshot.
    async fn read_chunks(
        &self,
        id: JobId,
        since: i64,
        limit: u32,
        stream: Option<Stream>,
        from: ReadFrom,
    ) -> Result<OutputPage, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            read_snapshot(&mut tx).await?;
            let pk: i64 = sqlx::query_scalar("SELECT pk FROM jobs WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let sql = format!(
                "SELECT seq, stream, text, ts, dropped_before, source_end FROM job_output \
                 WHERE job_pk = $1 AND seq > $2 AND ($4::SMALLINT IS NULL OR stream = $4) {} \
                 LIMIT $3",
                from.order_by()
            );
            let rows: Vec<ChunkRow> = sqlx::query_as(&sql)
                .bind(pk)
                .bind(since)
                .bind(i64::from(limit))
                .bind(stream.map(stream_code))
                .fetch_all(&mut *tx)
                .await?;
            Ok(rows)
        }
        .await;
        from.page(conclude(tx, result).await?, ChunkRow::into_chunk)
    }
}

/// The planner's estimate of the rows matching a list's filters.
async fn estimate(conn: &mut PgConnection, query: &ListQuery) -> Result<i64, StoreError> {
    let mut explain = QueryBuilder::<Postgres>::new("EXPLAIN (FORMAT JSON) SELECT 1 FROM jobs");
    push_filters(&mut explain, query);
    let plan: serde_json::Value = explain.build_query_scalar().fetch_one(&mut *conn).await?;
    Ok(plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0) as i64)
}

/// Carries out the cancel rule on the job `job` (row `pk`): ends it if
/// it never ran, or records the request for its worker.
pub(super) async fn cancel_job(
    conn: &mut sqlx::PgConnection,
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
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    job: &NewJob,
) -> Result<Job, StoreError> {
    insert_job_due(executor, job, now()).await
}

/// Inserts a queued job not to be claimed before `run_at`.
pub(super) async fn insert_job_due<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    job: &NewJob,
    run_at: DateTime<Utc>,
) -> Result<Job, StoreError> {
    let at = now();
    let lineage = job.lineage();
    let schedule = lineage.schedule.map(|id| id.as_uuid());
    let sql = format!(
        "INSERT INTO jobs (id, command, timeout, priority, status, parameters, created_at, \
         modified_at, host, max_retries, streaming, run_at, submitted_by, retry_of, \
         retry_number, retry_on_failure, schedule_id, scheduled_for, serial_key, run_id, \
         run_parallel) \
         VALUES ($1, $2, $3, $4, 'Queued', $5, $6, $6, $7, $8, $9, GREATEST($6, $10), $11, $12, \
                 $13, $14, $15, $16, $17, $18, $19) \
         RETURNING {META_COLUMNS}"
    );
    let row: JobRow = sqlx::query_as(&sql)
        .bind(JobId::new().as_uuid())
        .bind(job.command())
        .bind(fit::<i32, _>("timeout", job.timeout())?)
        .bind(fit::<i32, _>("priority", job.priority().rank())?)
        .bind(job.parameters().map(JobParameters::json))
        .bind(at)
        .bind(job.host())
        .bind(fit::<i32, _>("max_retries", job.max_retries())?)
        .bind(job.streaming())
        .bind(run_at)
        .bind(job.submitter())
        .bind(lineage.retry_of.map(|id| id.as_uuid()))
        .bind(fit::<i32, _>("retry_number", lineage.retry_number)?)
        .bind(lineage.retry_on_failure)
        .bind(schedule)
        .bind(lineage.scheduled_for)
        .bind(schedule.filter(|_| lineage.serial).map(|id| id.to_string()))
        .bind(lineage.run.map(|id| id.as_uuid()))
        .bind(
            job.run_parallel()
                .map(|n| fit::<i32, _>("run_parallel", n))
                .transpose()?,
        )
        .fetch_one(executor)
        .await?;
    row.into_job()
}
