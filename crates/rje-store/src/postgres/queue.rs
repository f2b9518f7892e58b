//! The PostgresStore's face for workers: claims, leases and what a running
//! command records.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{
    Chunk, Job, JobId, NewJob, Outcome, REQUEUED_AFTER_LOSS, StartCause, Stream, WorkerId, tail_cut,
};
use uuid::Uuid;

use crate::prune::plan_prune;
use crate::rows::{fit, not_taken_up, standing, stored_output, stream_code};
use crate::runs::RUN_TURN;
use crate::sql::SERIAL_TURN;
use crate::tx::{conclude, fenced_unless_written};
use crate::{ClaimedJob, Finished, Pruned, Queue, Reattached, Standing, StoreError, TakeUp};

use super::jobs::insert_job_due;

use super::{
    JobRow, META_COLUMNS, PostgresStore, SETTLE_ASSIGNMENTS, bind_settlement, carry_out_lost,
    current_attempt_pk, fetch_for_update, now, skip_rest_of_run,
};

#[async_trait]
impl Queue for PostgresStore {
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
                WHERE pk IN (SELECT q.pk FROM jobs q WHERE q.status = 'Queued' \
                             AND q.run_at <= $1 AND {SERIAL_TURN} AND {RUN_TURN} \
                             ORDER BY q.priority DESC, q.pk LIMIT $3 FOR UPDATE SKIP LOCKED) \
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
        rows.into_iter()
            .map(|row| row.into_keyed_claimed().map(|(_, claimed)| claimed))
            .collect()
    }

    async fn mark_started(
        &self,
        id: JobId,
        attempt: u32,
        supervised: bool,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET started_at = $1, modified_at = $1, supervised = $4 \
             WHERE id = $2 AND attempts = $3 AND status = 'Running'",
        )
        .bind(now())
        .bind(id.as_uuid())
        .bind(fit::<i32, _>("attempt", attempt)?)
        .bind(supervised)
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
            .bind(id.as_uuid())
            .bind(fit::<i32, _>("attempt", attempt)?)
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
            "INSERT INTO job_output (job_pk, seq, stream, text, ts, dropped_before, source_end) \
             SELECT jobs.pk, c.seq, c.stream, c.text, c.ts, c.dropped, c.source_end \
             FROM jobs, UNNEST($1::BIGINT[], $2::SMALLINT[], $3::TEXT[], $4::TIMESTAMPTZ[], \
                               $5::BIGINT[], $8::BIGINT[]) \
                 AS c(seq, stream, text, ts, dropped, source_end) \
             WHERE jobs.id = $6 AND jobs.attempts = $7 AND jobs.status = 'Running'",
        )
        .bind(chunks.iter().map(|c| c.seq).collect::<Vec<_>>())
        .bind(
            chunks
                .iter()
                .map(|c| stream_code(c.stream))
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
        .bind(id.as_uuid())
        .bind(fit::<i32, _>("attempt", attempt)?)
        .bind(
            chunks
                .iter()
                .map(|c| {
                    c.source_end
                        .map(|end| i64::try_from(end).unwrap_or(i64::MAX))
                })
                .collect::<Vec<_>>(),
        )
        .bind(
            chunks
                .iter()
                .map(|c| {
                    c.source_end
                        .map(|end| i64::try_from(end).unwrap_or(i64::MAX))
                })
                .collect::<Vec<_>>(),
        )
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
            .bind(stream_code(stream))
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
                    .bind(stream_code(stream))
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
        rerun_at: DateTime<Utc>,
    ) -> Result<Finished, StoreError> {
        let settlement = outcome.settle();
        let sql = format!(
            "UPDATE jobs SET {}, remote_process_id = COALESCE($7, remote_process_id) \
             WHERE id = $8 AND attempts = $9 AND status = 'Running' RETURNING {}",
            *SETTLE_ASSIGNMENTS, META_COLUMNS
        );
        let mut tx = self.pool.begin().await?;
        let result = async {
            let row: Option<JobRow> = bind_settlement(sqlx::query_as(&sql), &settlement)
                .bind(process_id)
                .bind(id.as_uuid())
                .bind(fit::<i32, _>("attempt", attempt)?)
                .fetch_optional(&mut *tx)
                .await?;
            let job = row.ok_or(StoreError::Fenced)?.into_job()?;
            let follow_up = match NewJob::follow_up(&job) {
                Some(next) => Some(insert_job_due(&mut *tx, &next, rerun_at).await?),
                None => None,
            };
            let skipped = skip_rest_of_run(&mut tx, &job).await?;
            Ok(Finished::new(job, follow_up).with_skipped(skipped))
        }
        .await;
        conclude(tx, result).await
    }

    async fn retry_later(
        &self,
        id: JobId,
        attempt: u32,
        run_at: DateTime<Utc>,
        error: &str,
        cause: StartCause,
    ) -> Result<Finished, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let pk = current_attempt_pk(&mut tx, id, attempt).await?;
            let (_, job) = fetch_for_update(&mut tx, id).await?;
            carry_out_lost(
                &mut tx,
                pk,
                job.when_start_failed(error, cause),
                run_at,
                error,
            )
            .await
        }
        .await;
        conclude(tx, result).await
    }

    async fn requeue_unstarted(
        &self,
        id: JobId,
        attempt: u32,
        expired_before: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            // Locks the row: a reaper or a take-up waits for this to end.
            let pk = current_attempt_pk(&mut tx, id, attempt).await?;
            let live: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM leases WHERE job_pk = $1 AND expires_at >= $2")
                    .bind(pk)
                    .bind(expired_before)
                    .fetch_optional(&mut *tx)
                    .await?;
            if live.is_some() {
                // Its worker is alive: it is that worker's to report.
                return Err(StoreError::Fenced);
            }
            // The next attempt is claimed, not yet started under a
            // supervisor: a lost claim is reaped after one lease, not five.
            sqlx::query("UPDATE jobs SET supervised = $1 WHERE pk = $2")
                .bind(false)
                .bind(pk)
                .execute(&mut *tx)
                .await?;
            let (_, job) = fetch_for_update(&mut tx, id).await?;
            let lost = job.when_never_started();
            Ok(
                carry_out_lost(&mut tx, pk, lost, now(), REQUEUED_AFTER_LOSS)
                    .await?
                    .job,
            )
        }
        .await;
        conclude(tx, result).await
    }

    async fn renew_leases(
        &self,
        worker: &WorkerId,
        jobs: &[JobId],
        lease: Duration,
    ) -> Result<Vec<JobId>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<Uuid> = jobs.iter().map(JobId::as_uuid).collect();
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "WITH renewed AS ( \
                UPDATE leases SET expires_at = $1 WHERE worker_id = $2 \
                AND job_pk IN (SELECT pk FROM jobs WHERE id = ANY($3)) RETURNING job_pk \
             ) \
             SELECT j.id FROM jobs j JOIN renewed r ON r.job_pk = j.pk WHERE j.cancel_requested",
        )
        .bind(now() + lease)
        .bind(&worker.0)
        .bind(jobs)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(JobId::from).collect())
    }

    async fn reap_expired(
        &self,
        before: DateTime<Utc>,
        supervised_before: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            // Several reapers may run at once: each takes the rows no other
            // holds, and settles them once.
            let sql = format!(
                "SELECT {META_COLUMNS} FROM jobs WHERE status = 'Running' AND \
             NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_pk = jobs.pk AND l.expires_at >= \
                 CASE WHEN jobs.supervised THEN $2 ELSE $1 END) \
             FOR UPDATE SKIP LOCKED"
            );
            let rows: Vec<JobRow> = sqlx::query_as(&sql)
                .bind(before)
                .bind(supervised_before)
                .fetch_all(&mut *tx)
                .await?;
            let mut reaped = Vec::with_capacity(rows.len());
            for row in rows {
                let (pk, job) = row.into_keyed_job()?;
                let lost = job.when_worker_lost();
                let ended = carry_out_lost(&mut tx, pk, lost, now(), REQUEUED_AFTER_LOSS).await?;
                reaped.push(ended.job);
                reaped.extend(ended.skipped);
            }
            Ok(reaped)
        }
        .await;
        conclude(tx, result).await
    }

    async fn reattach(
        &self,
        id: JobId,
        worker: &WorkerId,
        lease: Duration,
        expired_before: DateTime<Utc>,
    ) -> Result<TakeUp, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let result = async {
            let sql = format!(
                "UPDATE jobs SET attempts = attempts + 1, reattached = reattached + 1, \
                 modified_at = $1, task_id = $2 || '/' || (attempts + 1) \
                 WHERE id = $3 AND status = 'Running' AND NOT EXISTS \
                     (SELECT 1 FROM leases l WHERE l.job_pk = jobs.pk AND l.expires_at >= $4) \
                 RETURNING {META_COLUMNS}, \
                 (SELECT COALESCE(MAX(seq), 0) FROM job_output o WHERE o.job_pk = jobs.pk) \
                     AS last_seq"
            );
            let row: Option<JobRow> = sqlx::query_as(&sql)
                .bind(at)
                .bind(&worker.0)
                .bind(id.as_uuid())
                .bind(expired_before)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
                        .bind(id.as_uuid())
                        .fetch_optional(&mut *tx)
                        .await?;
                return Ok(not_taken_up(status.as_deref()));
            };
            let (pk, claimed) = row.into_keyed_claimed()?;
            sqlx::query(
                "INSERT INTO leases (job_pk, worker_id, attempt, expires_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (job_pk) DO UPDATE SET worker_id = excluded.worker_id, \
                     attempt = excluded.attempt, expires_at = excluded.expires_at",
            )
            .bind(pk)
            .bind(&worker.0)
            .bind(fit::<i32, _>("attempt", claimed.job.attempts)?)
            .bind(at + lease)
            .execute(&mut *tx)
            .await?;
            let rows: Vec<(i64, i16, i32, i64, Option<i64>)> = sqlx::query_as(
                "SELECT seq, stream, octet_length(text), dropped_before, source_end \
                 FROM job_output WHERE job_pk = $1 ORDER BY seq",
            )
            .bind(pk)
            .fetch_all(&mut *tx)
            .await?;
            let rows = rows
                .into_iter()
                .map(|(seq, stream, len, dropped, end)| {
                    (seq, i64::from(stream), i64::from(len), dropped, end)
                })
                .collect();
            let (offsets, stored) = stored_output(rows)?;
            Ok(TakeUp::Taken(Box::new(Reattached {
                claimed,
                offsets,
                stored,
            })))
        }
        .await;
        conclude(tx, result).await
    }

    async fn standings(
        &self,
        ids: &[JobId],
        expired_before: DateTime<Utc>,
    ) -> Result<Vec<(JobId, Standing)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(JobId::as_uuid).collect();
        let rows: Vec<(Uuid, String, bool)> = sqlx::query_as(
            "SELECT id, status, EXISTS (SELECT 1 FROM leases l WHERE l.job_pk = j.pk \
             AND l.expires_at >= $2) FROM jobs j WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(expired_before)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, status, lease_live)| (JobId::from(id), standing(&status, lease_live)))
            .collect())
    }

    async fn orphaned_supervised(
        &self,
        hosts: &[String],
        expired_before: DateTime<Utc>,
    ) -> Result<Vec<(JobId, String)>, StoreError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        // `host = ANY` leaves out the jobs without a host: never NULL here.
        let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as(
            "SELECT id, host FROM jobs WHERE status = 'Running' AND supervised \
             AND host = ANY($1) AND NOT EXISTS \
             (SELECT 1 FROM leases l WHERE l.job_pk = jobs.pk AND l.expires_at >= $2)",
        )
        .bind(hosts)
        .bind(expired_before)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, host)| (JobId::from(id), host))
            .collect())
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
        .bind(fit::<i32, _>("concurrency", concurrency)?)
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
}
