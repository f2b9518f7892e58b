//! The PostgresStore's face for access control: tokens and the audit
//! trail.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rje_domain::{AuditEntry, NewToken, Role, Scope, Token};

use crate::access::{AuditRow, use_worth_recording};
use crate::error::name_taken;
use crate::rows::corrupt;
use crate::{Access, AuditPage, AuditQuery, MAX_AUDIT_PAGE, StoreError};

use super::{PostgresStore, now};

type TokenRow = (
    String,
    String,
    Vec<String>,
    Vec<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const TOKEN_COLUMNS: &str = "name, role, hosts, labels, created_at, last_used_at";

fn into_token(
    (name, role, hosts, labels, created_at, last_used_at): TokenRow,
) -> Result<Token, StoreError> {
    Ok(Token {
        role: Role::parse(&role).ok_or_else(|| corrupt("token role", &role))?,
        scope: Scope { hosts, labels },
        created_at,
        last_used_at,
        name,
    })
}

#[async_trait]
impl Access for PostgresStore {
    async fn create_token(&self, token: &NewToken, secret_hash: &str) -> Result<Token, StoreError> {
        let sql = format!(
            "INSERT INTO tokens (name, role, hosts, labels, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLUMNS}"
        );
        let row: TokenRow = sqlx::query_as(&sql)
            .bind(token.name())
            .bind(token.role().as_str())
            .bind(&token.scope().hosts)
            .bind(&token.scope().labels)
            .bind(secret_hash)
            .bind(now())
            .fetch_one(&self.pool)
            .await
            .map_err(|err| name_taken(err, token.name()))?;
        into_token(row)
    }

    async fn has_tokens(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tokens)")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL ORDER BY name");
        let rows: Vec<TokenRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        rows.into_iter().map(into_token).collect()
    }

    async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<Token>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1 AND revoked_at IS NULL"
        );
        let Some(row): Option<TokenRow> = sqlx::query_as(&sql)
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut token = into_token(row)?;
        let at = now();
        if use_worth_recording(token.last_used_at, at) {
            sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE secret_hash = $2")
                .bind(at)
                .bind(secret_hash)
                .execute(&self.pool)
                .await?;
            token.last_used_at = Some(at);
        }
        Ok(Some(token))
    }

    async fn revoke_token(&self, name: &str) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let result = async {
            let revoked = sqlx::query(
                "UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if revoked.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            // Its schedules stop with it: nothing fires in a revoked name.
            sqlx::query(
                "UPDATE schedules SET paused = TRUE, \
                 modified_at = GREATEST(modified_at + interval '1 microsecond', $1) \
                 WHERE created_by = $2 AND NOT paused",
            )
            .bind(at)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            Ok(())
        }
        .await;
        crate::tx::conclude(tx, result).await
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO audit_log (at, token, client, method, route, target, status) ",
        );
        insert.push_values(entries, |mut row, entry| {
            row.push_bind(entry.at)
                .push_bind(&entry.token)
                .push_bind(&entry.client)
                .push_bind(&entry.method)
                .push_bind(&entry.route)
                .push_bind(&entry.target)
                .push_bind(i32::from(entry.status));
        });
        insert.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = i64::from(query.limit.min(MAX_AUDIT_PAGE));
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        // `$1 IS NULL OR …`: one statement whatever the filters.
        let filter = "($1::text IS NULL OR token = $1) AND ($2::text IS NULL OR route = $2)";
        let rows: Vec<(
            DateTime<Utc>,
            Option<String>,
            String,
            String,
            String,
            Option<String>,
            i32,
        )> = sqlx::query_as(&format!(
            "SELECT at, token, client, method, route, target, status FROM audit_log \
             WHERE {filter} ORDER BY id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(&query.token)
        .bind(&query.route)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE {filter}"))
                .bind(&query.token)
                .bind(&query.route)
                .fetch_one(&self.pool)
                .await?;
        let entries = rows
            .into_iter()
            .map(|(at, token, client, method, route, target, status)| {
                AuditEntry::try_from(AuditRow {
                    at,
                    token,
                    client,
                    method,
                    route,
                    target,
                    status: i64::from(status),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(AuditPage {
            entries,
            total_count: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }
}
