//! The SqliteStore's face for workers: claims, leases and what a running
//! command records.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{
    Chunk, Job, JobId, NewJob, Outcome, REQUEUED_AFTER_LOSS, StartCause, Stream, WorkerId,
    tail_cut, task_id,
};
use sqlx::{QueryBuilder, Sqlite};

use crate::prune::plan_prune;
use crate::rows::{corrupt, not_taken_up, standing, stored_output, stream_code};
use crate::runs::RUN_TURN;
use crate::sql::SERIAL_TURN;
use crate::tx::{conclude, fenced_unless_written};
use crate::{ClaimedJob, Finished, Pruned, Queue, Reattached, Standing, StoreError, TakeUp};

use super::jobs::insert_job_due;

use super::{
    JobRow, META_COLUMNS, SETTLE_ASSIGNMENTS, SqliteStore, bind_settlement, carry_out_lost,
    current_attempt_pk, fetch_job, micros, now, skip_rest_of_run,
};

#[async_trait]
impl Queue for SqliteStore {
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
        // Jobs waiting for their turn (a run at its max_parallel, a serial
        // schedule) are not due: they would make every claim a write.
        let due: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM jobs q WHERE q.status = 'Queued' AND q.run_at <= ? \
             AND {SERIAL_TURN} AND {RUN_TURN} LIMIT 1"
        ))
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
             WHERE pk IN (SELECT q.pk FROM jobs q WHERE q.status = 'Queued' AND q.run_at <= ?1 \
                          AND {SERIAL_TURN} AND {RUN_TURN} ORDER BY q.priority DESC, q.pk LIMIT ?3) \
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
            .map(JobRow::into_keyed_claimed)
            .collect::<Result<_, _>>()?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        debug_assert!(claimed.iter().all(|(_, c)| {
            c.job.task_id.as_deref() == Some(task_id(worker, c.job.attempts).as_str())
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

    async fn mark_started(
        &self,
        id: JobId,
        attempt: u32,
        supervised: bool,
    ) -> Result<(), StoreError> {
        let at = micros(now());
        let done = sqlx::query(
            "UPDATE jobs SET started_at = ?, modified_at = ?, supervised = ? \
             WHERE id = ? AND attempts = ? AND status = 'Running'",
        )
        .bind(at)
        .bind(at)
        .bind(supervised)
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
        // SQLite allows 32766 bound values; 6 per chunk.
        for batch in chunks.chunks(5000) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO job_output (job_pk, seq, stream, text, ts, dropped_before, source_end) \
                 SELECT jobs.pk, v.column1, v.column2, v.column3, v.column4, v.column5, v.column6 \
                 FROM jobs, (",
            );
            insert.push_values(batch, |mut row, chunk| {
                row.push_bind(chunk.seq)
                    .push_bind(i64::from(stream_code(chunk.stream)))
                    .push_bind(chunk.text.as_str())
                    .push_bind(micros(chunk.timestamp))
                    .push_bind(i64::try_from(chunk.dropped_before).unwrap_or(i64::MAX))
                    .push_bind(
                        chunk
                            .source_end
                            .map(|end| i64::try_from(end).unwrap_or(i64::MAX)),
                    );
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
            .bind(i64::from(stream_code(stream)))
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
                    .bind(i64::from(stream_code(stream)))
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
        // One statement: fence, final state, process id and output; and
        // in the same transaction, the follow-up a failure calls for.
        let settlement = outcome.settle();
        let sql = format!(
            "UPDATE jobs SET {}, remote_process_id = COALESCE(?, remote_process_id) \
             WHERE id = ? AND attempts = ? AND status = 'Running' RETURNING {META_COLUMNS}",
            *SETTLE_ASSIGNMENTS
        );
        let mut tx = self.writer.begin().await?;
        let result = async {
            let row: Option<JobRow> = bind_settlement(sqlx::query_as(&sql), &settlement)
                .bind(process_id)
                .bind(id.to_string())
                .bind(i64::from(attempt))
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
        let mut tx = self.writer.begin().await?;
        let result = async {
            let pk = current_attempt_pk(&mut tx, id, attempt).await?;
            let (_, job) = fetch_job(&mut tx, id).await?;
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
        let mut tx = self.writer.begin().await?;
        let result = async {
            let pk = current_attempt_pk(&mut tx, id, attempt).await?;
            let live: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM leases WHERE job_pk = ? AND expires_at >= ?")
                    .bind(pk)
                    .bind(micros(expired_before))
                    .fetch_optional(&mut *tx)
                    .await?;
            if live.is_some() {
                // Its worker is alive: it is that worker's to report.
                return Err(StoreError::Fenced);
            }
            // The next attempt is claimed, not yet started under a
            // supervisor: a lost claim is reaped after one lease, not five.
            sqlx::query("UPDATE jobs SET supervised = ? WHERE pk = ?")
                .bind(false)
                .bind(pk)
                .execute(&mut *tx)
                .await?;
            let (_, job) = fetch_job(&mut tx, id).await?;
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
        let jobs: Vec<String> = jobs.iter().map(ToString::to_string).collect();
        let jobs =
            serde_json::to_string(&jobs).map_err(|err| StoreError::Internal(err.to_string()))?;
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE leases SET expires_at = ? WHERE worker_id = ? AND job_pk IN \
             (SELECT pk FROM jobs WHERE id IN (SELECT value FROM json_each(?)))",
        )
        .bind(micros(now() + lease))
        .bind(&worker.0)
        .bind(&jobs)
        .execute(&mut *tx)
        .await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT j.id FROM leases l JOIN jobs j ON j.pk = l.job_pk \
             WHERE l.worker_id = ? AND j.cancel_requested = 1 \
             AND j.id IN (SELECT value FROM json_each(?))",
        )
        .bind(&worker.0)
        .bind(&jobs)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        ids.iter()
            .map(|id| JobId::parse(id).ok_or_else(|| corrupt("id", id)))
            .collect()
    }

    async fn reap_expired(
        &self,
        before: DateTime<Utc>,
        supervised_before: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let sql = format!(
                "SELECT {META_COLUMNS} FROM jobs WHERE status = 'Running' AND \
                 NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_pk = jobs.pk AND l.expires_at >= \
                 CASE WHEN jobs.supervised THEN ? ELSE ? END)"
            );
            let rows: Vec<JobRow> = sqlx::query_as(&sql)
                .bind(micros(supervised_before))
                .bind(micros(before))
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
        let mut tx = self.writer.begin().await?;
        let result = async {
            let sql = format!(
                "UPDATE jobs SET attempts = attempts + 1, reattached = reattached + 1, \
                 modified_at = ?1, task_id = ?2 || '/' || (attempts + 1) \
                 WHERE id = ?3 AND status = 'Running' AND NOT EXISTS \
                     (SELECT 1 FROM leases l WHERE l.job_pk = jobs.pk AND l.expires_at >= ?4) \
                 RETURNING {META_COLUMNS}, \
                 (SELECT COALESCE(MAX(seq), 0) FROM job_output WHERE job_pk = jobs.pk) AS last_seq"
            );
            let row: Option<JobRow> = sqlx::query_as(&sql)
                .bind(micros(at))
                .bind(&worker.0)
                .bind(id.to_string())
                .bind(micros(expired_before))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?")
                        .bind(id.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                return Ok(not_taken_up(status.as_deref()));
            };
            let (pk, claimed) = row.into_keyed_claimed()?;
            sqlx::query(
                "INSERT OR REPLACE INTO leases (job_pk, worker_id, attempt, expires_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(pk)
            .bind(&worker.0)
            .bind(i64::from(claimed.job.attempts))
            .bind(micros(at + lease))
            .execute(&mut *tx)
            .await?;
            let rows: Vec<(i64, i64, i64, i64, Option<i64>)> = sqlx::query_as(
                "SELECT seq, stream, length(CAST(text AS BLOB)), dropped_before, source_end \
                 FROM job_output WHERE job_pk = ? ORDER BY seq",
            )
            .bind(pk)
            .fetch_all(&mut *tx)
            .await?;
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
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let ids =
            serde_json::to_string(&ids).map_err(|err| StoreError::Internal(err.to_string()))?;
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT id, status, EXISTS (SELECT 1 FROM leases l WHERE l.job_pk = j.pk \
             AND l.expires_at >= ?) FROM jobs j WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(micros(expired_before))
        .bind(ids)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(id, status, lease_live)| {
                let id = JobId::parse(&id).ok_or_else(|| corrupt("id", &id))?;
                Ok((id, standing(&status, lease_live)))
            })
            .collect()
    }

    async fn orphaned_supervised(
        &self,
        hosts: &[String],
        expired_before: DateTime<Utc>,
    ) -> Result<Vec<(JobId, String)>, StoreError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let hosts =
            serde_json::to_string(hosts).map_err(|err| StoreError::Internal(err.to_string()))?;
        // `host IN` leaves out the jobs without a host: never NULL here.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, host FROM jobs WHERE status = 'Running' AND supervised \
             AND host IN (SELECT value FROM json_each(?)) AND NOT EXISTS \
             (SELECT 1 FROM leases l WHERE l.job_pk = jobs.pk AND l.expires_at >= ?)",
        )
        .bind(hosts)
        .bind(micros(expired_before))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(id, host)| {
                JobId::parse(&id)
                    .map(|id| (id, host))
                    .ok_or_else(|| StoreError::Internal(format!("a job id {id:?}")))
            })
            .collect()
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
}
