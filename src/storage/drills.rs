//! Restore drills: which backup and mailbox each took, how it ended, and its day in the daily
//! log. A drill's end is one transaction with what it says (outbox rows).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{outbox, Store, StoreError};
use crate::domain::UserId;
use crate::outbox::Outgoing;

/// How a drill ended (or that it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillStatus {
    Running,
    Passed,
    Failed,
}

impl DrillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillStatus::Running => "running",
            DrillStatus::Passed => "passed",
            DrillStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<DrillStatus> {
        match s {
            "running" => Some(DrillStatus::Running),
            "passed" => Some(DrillStatus::Passed),
            "failed" => Some(DrillStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DrillRow {
    pub id: i64,
    pub folder: String,
    pub account: String,
    /// The backup order that recorded the archive drilled.
    pub order: i64,
    pub sha256: String,
    /// Who asked with `/drill`; none for a scheduled drill.
    pub asked_by: Option<UserId>,
    pub status: DrillStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Messages of the archive compared with the scratch copy.
    pub compared: Option<u64>,
    /// Messages the backup recorded in the archive when it was verified.
    pub recorded: Option<u64>,
    pub error: Option<String>,
}

/// The newest verified backup as a backup order recorded it: the order, the dated folder's
/// name, and each verified mailbox's account, archive SHA-256 and message count.
#[derive(Debug, Clone, PartialEq)]
pub struct NewestBackup {
    pub order: i64,
    pub folder: String,
    pub archives: Vec<(String, String, Option<u64>)>,
}

const COLUMNS: &str = "id, folder, account, order_id, sha256, asked_by, status, started_at, ended_at, compared, recorded, error";

fn count(r: &sqlx::postgres::PgRow, column: &str) -> Result<Option<u64>, StoreError> {
    Ok(r.try_get::<Option<i64>, _>(column)?
        .map(|n| u64::try_from(n).unwrap_or(0)))
}

fn row(r: sqlx::postgres::PgRow) -> Result<DrillRow, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(DrillRow {
        id: r.try_get("id")?,
        folder: r.try_get("folder")?,
        account: r.try_get("account")?,
        order: r.try_get("order_id")?,
        sha256: r.try_get("sha256")?,
        asked_by: r.try_get::<Option<i64>, _>("asked_by")?.map(UserId),
        status: DrillStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("drill status {status:?}")))?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        compared: count(&r, "compared")?,
        recorded: count(&r, "recorded")?,
        error: r.try_get("error")?,
    })
}

impl Store {
    /// The newest completed run under `root` with at least one verified mailbox.
    pub async fn newest_verified_backup(
        &self,
        root: &std::path::Path,
    ) -> Result<Option<NewestBackup>, StoreError> {
        type OrderRow = (i64, String, serde_json::Value);
        let rows: Vec<OrderRow> = sqlx::query_as(
            "SELECT id, local_folder, report FROM orders \
                 WHERE report IS NOT NULL AND local_folder IS NOT NULL ORDER BY id DESC LIMIT 50",
        )
        .fetch_all(&self.pool)
        .await?;
        let verified = crate::engine::MailboxStatus::Verified;
        for (order, local, report) in rows {
            let local = std::path::Path::new(&local);
            let under_root = super::restores::directly_under(local, root);
            let Some(folder) = local.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Ok(crate::run_outcome::RunOutcome::Completed(report)) =
                serde_json::from_value(report)
            else {
                continue;
            };
            let archives: Vec<(String, String, Option<u64>)> = report
                .mailboxes
                .iter()
                .filter(|m| m.status == verified)
                .map(|m| (m.account.clone(), m.sha256.clone(), m.messages))
                .collect();
            if under_root && !archives.is_empty() {
                return Ok(Some(NewestBackup {
                    order,
                    folder: folder.to_owned(),
                    archives,
                }));
            }
        }
        Ok(None)
    }

    /// When each account was last drilled (any backup), for the accounts drilled at all.
    pub async fn last_drilled(
        &self,
    ) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, DateTime<Utc>)> =
            sqlx::query_as("SELECT account, max(started_at) FROM restore_drills GROUP BY account")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// When the last drill started, if any.
    pub async fn last_drill_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT max(started_at) FROM restore_drills")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// A drill starts; `None` when another is running (at most one at a time).
    pub async fn start_drill(
        &self,
        backup: &NewestBackup,
        account: &str,
        sha256: &str,
        asked_by: Option<UserId>,
    ) -> Result<Option<DrillRow>, StoreError> {
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO restore_drills (folder, account, order_id, sha256, asked_by, status) \
                 VALUES ($1, $2, $3, $4, $5, 'running') RETURNING {COLUMNS}"
        )))
        .bind(&backup.folder)
        .bind(account)
        .bind(backup.order)
        .bind(sha256)
        .bind(asked_by.map(|u| u.0))
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(r) => Ok(Some(row(r)?)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A drill's end: its verdict, the counts, its day in the daily log, and what is said.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_drill(
        &self,
        id: i64,
        status: DrillStatus,
        counts: (Option<u64>, Option<u64>),
        report: Option<&serde_json::Value>,
        error: Option<&str>,
        log_date: NaiveDate,
        say: &[Outgoing],
    ) -> Result<(), StoreError> {
        let as_db = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE restore_drills SET status = $2, compared = $3, recorded = $4, report = $5, \
                 error = $6, ended_at = now(), log_date = $7 WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(as_db(counts.0))
        .bind(as_db(counts.1))
        .bind(report)
        .bind(error)
        .bind(log_date)
        .execute(&mut *tx)
        .await?;
        outbox::insert(&mut tx, None, say).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drills that were running when the bot stopped.
    pub async fn running_drills(&self) -> Result<Vec<DrillRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restore_drills WHERE status = 'running' ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(row)
        .collect()
    }

    /// The drills that ended on the days from `from` up to (not including) `until`.
    pub async fn drills_logged_between(
        &self,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<DrillRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM restore_drills WHERE log_date >= $1 AND log_date < $2 ORDER BY ended_at, id"
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
