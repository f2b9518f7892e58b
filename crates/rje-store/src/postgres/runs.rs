//! Runs in the PostgreSQL store.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{Job, NewRun, RunId, RunTally};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::StoreError;
use crate::rows::fit;
use crate::runs::{
    RUN_COLUMNS, RunCancel, RunFields, RunPage, RunQuery, RunWithJobs, Runs, TALLY_COLUMNS,
    add_tally_row, encoded_request,
};
use crate::tx::conclude;

use super::jobs::{cancel_job, insert_job};
use super::{JobRow, META_COLUMNS, PostgresStore, now};

#[derive(sqlx::FromRow)]
struct RunRow {
    id: Uuid,
    command: String,
    target: String,
    hosts: String,
    max_parallel: i32,
    max_failures: Option<String>,
    cancel_requested: bool,
    submitted_by: Option<String>,
    cancelled_by: Option<String>,
    retry_of: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl RunRow {
    fn fields(self) -> RunFields {
        RunFields {
            id: RunId::from(self.id),
            command: self.command,
            target: self.target,
            hosts: self.hosts,
            max_parallel: i64::from(self.max_parallel),
            max_failures: self.max_failures,
            cancel_requested: self.cancel_requested,
            submitted_by: self.submitted_by,
            cancelled_by: self.cancelled_by,
            retry_of: self.retry_of.map(RunId::from),
            created_at: self.created_at,
        }
    }
}

/// Reads a run and its jobs; `lock` takes the run's row for the rest of
/// the transaction (a cancel).
async fn read_run(
    conn: &mut PgConnection,
    id: RunId,
    lock: bool,
) -> Result<RunWithJobs, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row: RunRow = sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1{lock}"
    ))
    .bind(id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    let jobs: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {META_COLUMNS} FROM jobs WHERE run_id = $1 ORDER BY pk"
    ))
    .bind(id.as_uuid())
    .fetch_all(&mut *conn)
    .await?;
    let jobs: Vec<Job> = jobs
        .into_iter()
        .map(JobRow::into_job)
        .collect::<Result<_, _>>()?;
    let run = row.fields().into_run(RunTally::of(&jobs))?;
    Ok(RunWithJobs { run, jobs })
}

#[async_trait]
impl Runs for PostgresStore {
    async fn create_run(&self, run: &NewRun) -> Result<RunWithJobs, StoreError> {
        let id = RunId::new();
        let (target, hosts) = encoded_request(run)?;
        let mut tx = self.pool.begin().await?;
        let result = async {
            sqlx::query(
                "INSERT INTO runs (id, command, target, hosts, max_parallel, max_failures, \
                 failures_allowed, submitted_by, retry_of, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id.as_uuid())
            .bind(run.command())
            .bind(target)
            .bind(hosts)
            .bind(fit::<i32, _>("max_parallel", run.max_parallel())?)
            .bind(run.max_failures().map(|limit| limit.to_string()))
            .bind(
                run.failures_allowed()
                    .map(|n| fit::<i32, _>("failures_allowed", n))
                    .transpose()?,
            )
            .bind(run.submitter())
            .bind(run.retry_of().map(|id| id.as_uuid()))
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(|err| crate::error::name_taken(err, "retry_of"))?;
            for job in run.jobs(id) {
                insert_job(&mut *tx, &job).await?;
            }
            read_run(&mut tx, id, false).await
        }
        .await;
        conclude(tx, result).await
    }

    async fn get_run(&self, id: RunId) -> Result<RunWithJobs, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_run(&mut conn, id, false).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let filter = |builder: &mut QueryBuilder<'_, Postgres>| {
            if let Some(hosts) = &query.hosts_within {
                builder
                    .push(" WHERE NOT EXISTS (SELECT 1 FROM json_array_elements_text(runs.hosts::json) h WHERE NOT h = ANY(")
                    .push_bind(hosts.clone())
                    .push("))");
            }
        };
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM runs");
        filter(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
        let mut page = QueryBuilder::<Postgres>::new(format!("SELECT {RUN_COLUMNS} FROM runs"));
        filter(&mut page);
        page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let rows: Vec<RunRow> = page.build_query_as().fetch_all(&mut *conn).await?;
        let fields: Vec<RunFields> = rows.into_iter().map(RunRow::fields).collect();
        // One read tallies the whole page, not one per run.
        let ids: Vec<Uuid> = fields.iter().map(|run| run.id.as_uuid()).collect();
        let rows: Vec<(Uuid, String, Option<String>, i64, Option<DateTime<Utc>>)> =
            sqlx::query_as(&format!(
                "SELECT run_id, {TALLY_COLUMNS} FROM jobs WHERE run_id = ANY($1) \
                 GROUP BY run_id, status, outcome"
            ))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
        let mut tallies: HashMap<RunId, RunTally> = HashMap::new();
        for (run, status, outcome, jobs, last) in rows {
            let tally = tallies.entry(RunId::from(run)).or_default();
            add_tally_row(tally, &status, outcome.as_deref(), jobs, last)?;
        }
        let runs = crate::runs::with_tallies(fields, tallies)?;
        Ok(RunPage {
            runs,
            total_count: u64::try_from(total).unwrap_or_default(),
        })
    }

    async fn cancel_run(&self, id: RunId, by: Option<&str>) -> Result<RunCancel, StoreError> {
        // A job of the run failing meanwhile holds its row and then asks for
        // the run's (to skip the rest): PostgreSQL may end one of the two
        // as a deadlock. The cancel is then simply made again.
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_cancel_run(id, by).await {
                Err(StoreError::Unavailable(why)) if tries < 3 => {
                    tracing::debug!(run = %id, %why, "a run's cancel met a concurrent write; again");
                }
                other => return other,
            }
        }
    }
}

impl PostgresStore {
    async fn try_cancel_run(&self, id: RunId, by: Option<&str>) -> Result<RunCancel, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = async {
            let before = read_run(&mut tx, id, true).await?;
            let mut cancels = Vec::new();
            if before.run.when_cancelled().is_ok() {
                sqlx::query(
                    "UPDATE runs SET cancel_requested = TRUE, \
                     cancelled_by = COALESCE(cancelled_by, $1) WHERE id = $2",
                )
                .bind(by)
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
                for job in before.jobs.iter().filter(|job| !job.status.is_final()) {
                    // Locks the job: a claim or a finish waits, and this
                    // reads it as they left it.
                    let (pk, job) = super::fetch_for_update(&mut tx, job.id).await?;
                    if !job.status.is_final() {
                        cancels.push(cancel_job(&mut tx, pk, &job, by).await?);
                    }
                }
            }
            Ok(RunCancel {
                run: read_run(&mut tx, id, false).await?,
                cancels,
            })
        }
        .await;
        conclude(tx, result).await
    }
}
