//! The restores asked in the chat: each change of a request is one transaction with what it says
//! (outbox rows).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{outbox, Store, StoreError};
use crate::domain::{RestoreStatus, UserId};
use crate::outbox::Outgoing;

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreRow {
    pub id: i64,
    pub folder: String,
    pub account: String,
    pub into: String,
    pub status: RestoreStatus,
    pub asked_by: UserId,
    pub asked_at: DateTime<Utc>,
    pub decided_by: Option<UserId>,
    pub decided_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub report: Option<serde_json::Value>,
    pub error: Option<String>,
}

const COLUMNS: &str = "id, folder, account, into_account, status, asked_by, asked_at, decided_by, decided_at, ended_at, report, error";

fn row(r: sqlx::postgres::PgRow) -> Result<RestoreRow, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(RestoreRow {
        id: r.try_get("id")?,
        folder: r.try_get("folder")?,
        account: r.try_get("account")?,
        into: r.try_get("into_account")?,
        status: RestoreStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("restore status {status:?}")))?,
        asked_by: UserId(r.try_get("asked_by")?),
        asked_at: r.try_get("asked_at")?,
        decided_by: r.try_get::<Option<i64>, _>("decided_by")?.map(UserId),
        decided_at: r.try_get("decided_at")?,
        ended_at: r.try_get("ended_at")?,
        report: r.try_get("report")?,
        error: r.try_get("error")?,
    })
}

impl Store {
    /// Records a request with the message asking for approval; `AlreadyActive` when another
    /// restore is waiting or running.
    pub async fn ask_restore(
        &self,
        folder: &str,
        account: &str,
        into: &str,
        by: UserId,
        message: impl FnOnce(i64) -> Outgoing,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO restores (folder, account, into_account, status, asked_by, asked_at) VALUES ($1, $2, $3, 'asked', $4, now()) RETURNING id",
        )
        .bind(folder)
        .bind(account)
        .bind(into)
        .bind(by.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyActive,
            _ => StoreError::Db(e),
        })?;
        outbox::insert(&mut tx, None, &[message(id)]).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn restore(&self, id: i64) -> Result<Option<RestoreRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restores WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(row)
        .transpose()
    }

    /// Moves request `id` under a row lock: `decide` gets it as it stands and returns the new
    /// status and what to say, or a refusal (nothing written).
    pub async fn move_restore<R>(
        &self,
        id: i64,
        decide: impl FnOnce(&RestoreRow) -> Result<(RestoreStatus, Vec<Outgoing>), R>,
        by: Option<UserId>,
    ) -> Result<Result<RestoreRow, R>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let current = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restores WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(row)
        .transpose()?
        .ok_or_else(|| StoreError::Corrupt(format!("restore {id} does not exist")))?;
        let (status, say) = match decide(&current) {
            Ok(d) => d,
            Err(r) => return Ok(Err(r)),
        };
        let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE restores SET status = $2, decided_by = COALESCE($3, decided_by), decided_at = COALESCE(decided_at, CASE WHEN $3::bigint IS NOT NULL THEN now() END) WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(status.as_str())
        .bind(by.map(|u| u.0))
        .fetch_one(&mut *tx)
        .await?;
        outbox::insert(&mut tx, None, &say).await?;
        tx.commit().await?;
        Ok(Ok(row(moved)?))
    }

    /// The end of a running restore: its result, its day in the daily log, and its report.
    pub async fn finish_restore(
        &self,
        id: i64,
        status: RestoreStatus,
        report: Option<&serde_json::Value>,
        error: Option<&str>,
        log_date: NaiveDate,
        say: &[Outgoing],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE restores SET status = $2, report = $3, error = $4, ended_at = now(), log_date = $5 WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(report)
        .bind(error)
        .bind(log_date)
        .execute(&mut *tx)
        .await?;
        outbox::insert(&mut tx, None, say).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Restores that were running when the bot stopped.
    pub async fn running_restores(&self) -> Result<Vec<RestoreRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restores WHERE status = 'running' ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(row)
        .collect()
    }

    /// The restores that ended on the days from `from` up to (not including) `until`.
    pub async fn restores_logged_between(
        &self,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<RestoreRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restores WHERE log_date >= $1 AND log_date < $2 ORDER BY ended_at, id"
        )))
        .bind(from)
        .bind(until)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(row)
        .collect()
    }
}
