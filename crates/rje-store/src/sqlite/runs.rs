//! Runs in the embedded store.

use std::collections::HashMap;

use async_trait::async_trait;
use rje_domain::{Job, NewRun, RunId, RunTally};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::StoreError;
use crate::rows::corrupt;
use crate::runs::{
    RUN_COLUMNS, RunCancel, RunFields, RunPage, RunQuery, RunWithJobs, Runs, TALLY_COLUMNS,
    add_tally_row, encoded_request,
};
use crate::tx::conclude;

use super::jobs::{cancel_job, insert_job};
use super::{JobRow, META_COLUMNS, SqliteStore, fetch_job, from_micros, micros, now};

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    command: String,
    target: String,
    hosts: String,
    max_parallel: i64,
    max_failures: Option<String>,
    cancel_requested: bool,
    submitted_by: Option<String>,
    cancelled_by: Option<String>,
    retry_of: Option<String>,
    created_at: i64,
}

impl RunRow {
    fn fields(self) -> Result<RunFields, StoreError> {
        let run_id = |text: String| RunId::parse(&text).ok_or_else(|| corrupt("run id", text));
        Ok(RunFields {
            id: run_id(self.id)?,
            command: self.command,
            target: self.target,
            hosts: self.hosts,
            max_parallel: self.max_parallel,
            max_failures: self.max_failures,
            cancel_requested: self.cancel_requested,
            submitted_by: self.submitted_by,
            cancelled_by: self.cancelled_by,
            retry_of: self.retry_of.map(run_id).transpose()?,
            created_at: from_micros(self.created_at)?,
        })
    }
}

async fn read_run(conn: &mut SqliteConnection, id: RunId) -> Result<RunWithJobs, StoreError> {
    let row: RunRow = sqlx::query_as(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let jobs: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {META_COLUMNS} FROM jobs WHERE run_id = ? ORDER BY pk"
    ))
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let jobs: Vec<Job> = jobs
        .into_iter()
        .map(JobRow::into_job)
        .collect::<Result<_, _>>()?;
    let run = row.fields()?.into_run(RunTally::of(&jobs))?;
    Ok(RunWithJobs { run, jobs })
}

#[async_trait]
impl Runs for SqliteStore {
    async fn create_run(&self, run: &NewRun) -> Result<RunWithJobs, StoreError> {
        let id = RunId::new();
        let (target, hosts) = encoded_request(run)?;
        let mut tx = self.writer.begin().await?;
        let result = async {
            sqlx::query(
                "INSERT INTO runs (id, command, target, hosts, max_parallel, max_failures, \
                 failures_allowed, submitted_by, retry_of, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id.to_string())
            .bind(run.command())
            .bind(target)
            .bind(hosts)
            .bind(i64::from(run.max_parallel()))
            .bind(run.max_failures().map(|limit| limit.to_string()))
            .bind(run.failures_allowed().map(i64::from))
            .bind(run.submitter())
            .bind(run.retry_of().map(|id| id.to_string()))
            .bind(micros(now()))
            .execute(&mut *tx)
            .await
            .map_err(|err| crate::error::name_taken(err, "retry_of"))?;
            for job in run.jobs(id) {
                insert_job(&mut *tx, &job).await?;
            }
            read_run(&mut tx, id).await
        }
        .await;
        conclude(tx, result).await
    }

    async fn get_run(&self, id: RunId) -> Result<RunWithJobs, StoreError> {
        let mut conn = self.reader.acquire().await?;
        read_run(&mut conn, id).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let filter = |builder: &mut QueryBuilder<'_, Sqlite>| {
            if let Some(hosts) = &query.hosts_within {
                // A list of names serialises; were it ever not to, nothing
                // shows.
                let hosts = serde_json::to_string(hosts).unwrap_or_else(|_| "[]".to_owned());
                builder
                    .push(" WHERE NOT EXISTS (SELECT 1 FROM json_each(runs.hosts) h WHERE h.value NOT IN (SELECT value FROM json_each(")
                    .push_bind(hosts)
                    .push(")))");
            }
        };
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM runs");
        filter(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
        let mut page = QueryBuilder::<Sqlite>::new(format!("SELECT {RUN_COLUMNS} FROM runs"));
        filter(&mut page);
        page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let rows: Vec<RunRow> = page.build_query_as().fetch_all(&mut *conn).await?;
        let fields: Vec<RunFields> = rows
            .into_iter()
            .map(RunRow::fields)
            .collect::<Result<_, _>>()?;
        // One read tallies the whole page, not one per run.
        let mut tallies: HashMap<RunId, RunTally> = HashMap::new();
        if !fields.is_empty() {
            let mut read = QueryBuilder::<Sqlite>::new(format!(
                "SELECT run_id, {TALLY_COLUMNS} FROM jobs WHERE run_id IN ("
            ));
            let mut ids = read.separated(", ");
            for run in &fields {
                ids.push_bind(run.id.to_string());
            }
            read.push(") GROUP BY run_id, status, outcome");
            let rows: Vec<(String, String, Option<String>, i64, Option<i64>)> =
                read.build_query_as().fetch_all(&mut *conn).await?;
            for (run, status, outcome, jobs, last) in rows {
                let run = RunId::parse(&run).ok_or_else(|| corrupt("run_id", &run))?;
                let last = last.map(from_micros).transpose()?;
                let tally = tallies.entry(run).or_default();
                add_tally_row(tally, &status, outcome.as_deref(), jobs, last)?;
            }
        }
        let runs = crate::runs::with_tallies(fields, tallies)?;
        Ok(RunPage {
            runs,
            total_count: u64::try_from(total).unwrap_or_default(),
        })
    }

    async fn cancel_run(&self, id: RunId, by: Option<&str>) -> Result<RunCancel, StoreError> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let before = read_run(&mut tx, id).await?;
            let mut cancels = Vec::new();
            if before.run.when_cancelled().is_ok() {
                sqlx::query(
                    "UPDATE runs SET cancel_requested = 1, \
                     cancelled_by = COALESCE(cancelled_by, ?) WHERE id = ?",
                )
                .bind(by)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                for job in before.jobs.iter().filter(|job| !job.status.is_final()) {
                    let (pk, job) = fetch_job(&mut tx, job.id).await?;
                    cancels.push(cancel_job(&mut tx, pk, &job, by).await?);
                }
            }
            Ok(RunCancel {
                run: read_run(&mut tx, id).await?,
                cancels,
            })
        }
        .await;
        conclude(tx, result).await
    }
}
