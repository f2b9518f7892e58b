//! Schedules, fires and retention in the embedded store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{JobId, PruneFilter, ScheduleId, Status};
use sqlx::{QueryBuilder, Sqlite};

use crate::StoreError;
use crate::error::name_taken;
use crate::rows::corrupt;
use crate::schedules::{
    Fire, FireOutcome, Recorded, Retention, ScheduleRecord, ScheduleWrite, Schedules,
};
use crate::sql::{SCHEDULE_COLUMNS, final_statuses};
use crate::tx::conclude;

use super::jobs::insert_job;
use super::{SqliteStore, from_micros, micros, now};

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    id: String,
    name: String,
    definition: String,
    host: String,
    paused: bool,
    since: i64,
    created_by: Option<String>,
    created_at: i64,
    modified_at: i64,
    last_job_id: Option<String>,
    last_job_status: Option<String>,
}

impl ScheduleRow {
    fn into_record(self) -> Result<ScheduleRecord, StoreError> {
        let last_job = match (self.last_job_id, self.last_job_status) {
            (Some(id), Some(status)) => Some((
                JobId::parse(&id).ok_or_else(|| corrupt("last job", &id))?,
                status
                    .parse::<Status>()
                    .map_err(|_| corrupt("last job status", &status))?,
            )),
            _ => None,
        };
        Ok(ScheduleRecord {
            id: ScheduleId::parse(&self.id).ok_or_else(|| corrupt("schedule id", &self.id))?,
            name: self.name,
            definition: serde_json::from_str(&self.definition)
                .map_err(|_| corrupt("schedule definition", &self.definition))?,
            host: self.host,
            paused: self.paused,
            since: from_micros(self.since)?,
            created_by: self.created_by,
            created_at: from_micros(self.created_at)?,
            modified_at: from_micros(self.modified_at)?,
            last_job,
        })
    }
}

impl SqliteStore {
    async fn schedule_by_id(&self, id: ScheduleId) -> Result<ScheduleRecord, StoreError> {
        self.schedule(&id.to_string()).await
    }
}

#[async_trait]
impl Schedules for SqliteStore {
    async fn create_schedule(
        &self,
        schedule: &ScheduleWrite<'_>,
        created_by: Option<&str>,
    ) -> Result<ScheduleRecord, StoreError> {
        let id = ScheduleId::new();
        let at = micros(now());
        sqlx::query(
            "INSERT INTO schedules (id, name, definition, host, paused, since, created_by, \
             created_at, modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(schedule.name)
        .bind(schedule.definition.to_string())
        .bind(schedule.host)
        .bind(schedule.paused)
        .bind(at)
        .bind(created_by)
        .bind(at)
        .bind(at)
        .execute(&self.writer)
        .await
        .map_err(|err| name_taken(err, schedule.name))?;
        self.schedule_by_id(id).await
    }

    async fn schedule(&self, id_or_name: &str) -> Result<ScheduleRecord, StoreError> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ? OR name = ?");
        let row: ScheduleRow = sqlx::query_as(&sql)
            .bind(
                ScheduleId::parse(id_or_name)
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
            )
            .bind(id_or_name)
            .fetch_optional(&self.writer)
            .await?
            .ok_or(StoreError::NotFound)?;
        row.into_record()
    }

    async fn schedules(
        &self,
        limit: u32,
        offset: u64,
        hosts_within: Option<&[String]>,
    ) -> Result<(Vec<ScheduleRecord>, u64), StoreError> {
        let within = |builder: &mut QueryBuilder<'_, Sqlite>| {
            if let Some(hosts) = hosts_within {
                // A list of names serialises; were it ever not to, nothing shows.
                let hosts = serde_json::to_string(hosts).unwrap_or_else(|_| "[]".to_owned());
                builder
                    .push(" WHERE host IN (SELECT value FROM json_each(")
                    .push_bind(hosts)
                    .push("))");
            }
        };
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM schedules");
        within(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&self.reader).await?;
        let mut page =
            QueryBuilder::<Sqlite>::new(format!("SELECT {SCHEDULE_COLUMNS} FROM schedules"));
        within(&mut page);
        page.push(" ORDER BY name LIMIT ")
            .push_bind(i64::from(limit))
            .push(" OFFSET ")
            .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
        let rows: Vec<ScheduleRow> = page.build_query_as().fetch_all(&self.reader).await?;
        let records = rows
            .into_iter()
            .map(ScheduleRow::into_record)
            .collect::<Result<_, _>>()?;
        Ok((records, u64::try_from(total).unwrap_or(0)))
    }

    async fn active_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE NOT paused");
        let rows: Vec<ScheduleRow> = sqlx::query_as(&sql).fetch_all(&self.reader).await?;
        rows.into_iter().map(ScheduleRow::into_record).collect()
    }

    async fn update_schedule(
        &self,
        id: ScheduleId,
        schedule: &ScheduleWrite<'_>,
        since: Option<DateTime<Utc>>,
    ) -> Result<ScheduleRecord, StoreError> {
        let at = now();
        // modified_at always moves on, so that a scheduler that read the
        // schedule before never fires from that reading.
        let updated = sqlx::query(
            "UPDATE schedules SET name = ?, definition = ?, host = ?, paused = ?, \
             since = COALESCE(?, since), modified_at = MAX(modified_at + 1, ?) WHERE id = ?",
        )
        .bind(schedule.name)
        .bind(schedule.definition.to_string())
        .bind(schedule.host)
        .bind(schedule.paused)
        .bind(since.map(micros))
        .bind(micros(at))
        .bind(id.to_string())
        .execute(&self.writer)
        .await
        .map_err(|err| name_taken(err, schedule.name))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.schedule_by_id(id).await
    }

    async fn set_paused(
        &self,
        id: ScheduleId,
        paused: bool,
        since: Option<DateTime<Utc>>,
    ) -> Result<ScheduleRecord, StoreError> {
        let updated = sqlx::query(
            "UPDATE schedules SET paused = ?, since = COALESCE(?, since), \
             modified_at = MAX(modified_at + 1, ?) WHERE id = ?",
        )
        .bind(paused)
        .bind(since.map(micros))
        .bind(micros(now()))
        .bind(id.to_string())
        .execute(&self.writer)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.schedule_by_id(id).await
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError> {
        let deleted = sqlx::query("DELETE FROM schedules WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn fire(&self, fire: &Fire) -> Result<FireOutcome, StoreError> {
        let schedule = fire.schedule.to_string();
        let mut tx = self.writer.begin().await?;
        let result = async {
            // The reading still holds, and the fire time is after every
            // one handled: a late process never fires a time a later fire
            // (or a recorded miss) passed over.
            let since: Option<i64> = sqlx::query_scalar(
                "SELECT since FROM schedules WHERE id = ? AND modified_at = ? AND NOT paused",
            )
            .bind(&schedule)
            .bind(micros(fire.read_at))
            .fetch_optional(&mut *tx)
            .await?;
            match since {
                None => return Ok(FireOutcome::Stale),
                Some(since) if since >= micros(fire.at) => return Ok(FireOutcome::Taken),
                Some(_) => {}
            }
            sqlx::query("UPDATE schedules SET since = ? WHERE id = ?")
                .bind(micros(fire.at))
                .bind(&schedule)
                .execute(&mut *tx)
                .await?;
            let busy = match fire.busy_statuses() {
                None => false,
                Some(statuses) => sqlx::query_scalar::<_, i64>(&format!(
                    "SELECT 1 FROM jobs WHERE schedule_id = ? AND status IN {statuses} LIMIT 1"
                ))
                .bind(&schedule)
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
            };
            let recorded = fire.recorded(busy);
            let won = sqlx::query(
                "INSERT INTO schedule_fires (schedule_id, fire_time, outcome, missed, recorded_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&schedule)
            .bind(micros(fire.at))
            .bind(recorded.as_str())
            .bind(i64::try_from(fire.missed).unwrap_or(i64::MAX))
            .bind(micros(now()))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            match (won, recorded) {
                (false, _) => Ok(FireOutcome::Taken),
                (true, Recorded::Missed) => Ok(FireOutcome::Missed),
                (true, Recorded::Skipped) => Ok(FireOutcome::Skipped),
                (true, Recorded::Fired(job)) => {
                    let job = insert_job(&mut *tx, job).await?;
                    sqlx::query(
                        "UPDATE schedule_fires SET job_id = ? WHERE schedule_id = ? AND fire_time = ?",
                    )
                    .bind(job.id.to_string())
                    .bind(&schedule)
                    .bind(micros(fire.at))
                    .execute(&mut *tx)
                    .await?;
                    Ok(FireOutcome::Fired(Box::new(job)))
                }
            }
        }
        .await;
        conclude(tx, result).await
    }

    async fn prune_fires(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM schedule_fires WHERE recorded_at < ?")
            .bind(micros(before))
            .execute(&self.writer)
            .await?;
        Ok(deleted.rows_affected())
    }
}

#[async_trait]
impl Retention for SqliteStore {
    async fn prune_finished(&self, filter: &PruneFilter, batch: u32) -> Result<u64, StoreError> {
        let mut delete = QueryBuilder::<Sqlite>::new(
            "DELETE FROM jobs WHERE pk IN (SELECT pk FROM jobs j WHERE j.completed_at < ",
        );
        delete.push_bind(micros(filter.before)).push(format!(
            " AND j.status IN {}",
            final_statuses(&filter.statuses)
        ));
        // A run's jobs go only once the whole run ended before the cutoff,
        // so that a run still going never loses a job's outcome.
        delete
            .push(
                " AND (j.run_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs r \
                 WHERE r.run_id = j.run_id AND (r.status IN ('Queued', 'Running') \
                 OR r.completed_at >= ",
            )
            .push_bind(micros(filter.before))
            .push(")))");
        delete
            .push(" ORDER BY j.completed_at LIMIT ")
            .push_bind(i64::from(batch))
            .push(")");
        let deleted = delete.build().execute(&self.writer).await?.rows_affected();
        // A run whose jobs are all gone is history no one can read whole:
        // it goes with the last of them.
        sqlx::query(
            "DELETE FROM runs WHERE created_at < ? AND NOT EXISTS \
             (SELECT 1 FROM jobs WHERE jobs.run_id = runs.id)",
        )
        .bind(micros(filter.before))
        .execute(&self.writer)
        .await?;
        Ok(deleted)
    }

    async fn finished_cutoff(&self, keep: u64) -> Result<Option<DateTime<Utc>>, StoreError> {
        let finals = final_statuses(&[]);
        let sql = format!(
            "SELECT completed_at FROM jobs WHERE completed_at IS NOT NULL \
             AND status IN {finals} ORDER BY completed_at DESC LIMIT 1 OFFSET ?"
        );
        let at: Option<i64> = sqlx::query_scalar(&sql)
            .bind(i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX))
            .fetch_optional(&self.reader)
            .await?;
        at.map(from_micros).transpose()
    }

    async fn hold_chore(
        &self,
        name: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO chores (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = ?2, expires_at = ?3 \
             WHERE chores.holder = ?2 OR chores.expires_at < ?4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(micros(until))
        .bind(micros(now()))
        .fetch_optional(&self.writer)
        .await?;
        Ok(held.is_some())
    }

    async fn release_chore(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM chores WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
