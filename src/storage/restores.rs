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
    /// What the request was checked against when asked (none in requests of older bots).
    pub backup: Option<BackupFacts>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The account is made again first, from the folder's account directory with this SHA-256
    /// (none: the account exists).
    pub creates: Option<String>,
}

/// A restore request as asked: what, from which backup, into which account, by whom, until when.
#[derive(Debug, Clone, Copy)]
pub struct NewRestore<'a> {
    pub folder: &'a str,
    pub account: &'a str,
    pub into: &'a str,
    pub by: UserId,
    pub backup: &'a BackupFacts,
    pub expires_at: DateTime<Utc>,
    /// The account directory's SHA-256, when the account is made again first.
    pub creates: Option<&'a str>,
}

/// A verified archive as the bot recorded it: the backup order that made it, when it was
/// ordered and who ran it, and the archive's SHA-256, size and message count.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupFacts {
    pub order: i64,
    pub ordered_at: Option<DateTime<Utc>>,
    pub ran_by: Option<UserId>,
    pub sha256: String,
    pub bytes: u64,
    pub messages: Option<u64>,
}

const COLUMNS: &str = "r.id, r.folder, r.account, r.into_account, r.status, r.asked_by, r.asked_at, r.decided_by, r.decided_at, r.ended_at, r.report, r.error, r.backup_order, r.sha256, r.bytes, r.messages, r.expires_at, r.directory_sha256, o.created_at AS ordered_at, o.jfu AS ran_by";

/// The restores with their backup order.
const FROM: &str = "restores r LEFT JOIN orders o ON o.id = r.backup_order";

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
        backup: match (
            r.try_get::<Option<i64>, _>("backup_order")?,
            r.try_get::<Option<String>, _>("sha256")?,
        ) {
            (Some(order), Some(sha256)) => Some(BackupFacts {
                order,
                ordered_at: r.try_get("ordered_at")?,
                ran_by: r.try_get::<Option<i64>, _>("ran_by")?.map(UserId),
                sha256,
                bytes: r.try_get::<Option<i64>, _>("bytes")?.unwrap_or(0).max(0) as u64,
                messages: r
                    .try_get::<Option<i64>, _>("messages")?
                    .map(|n| n.max(0) as u64),
            }),
            _ => None,
        },
        expires_at: r.try_get("expires_at")?,
        creates: r.try_get("directory_sha256")?,
    })
}

/// Whether the recorded folder `local` is directly inside `root` (the same folder, however the
/// path was spelled when it was recorded).
pub(super) fn directly_under(local: &std::path::Path, root: &std::path::Path) -> bool {
    local.parent().is_some_and(|p| {
        p == root || matches!((p.canonicalize(), root.canonicalize()), (Ok(x), Ok(y)) if x == y)
    })
}

impl Store {
    /// Records a request with the message asking for approval; `AlreadyActive` when another
    /// restore is waiting or running.
    pub async fn ask_restore(
        &self,
        asked: &NewRestore<'_>,
        message: impl FnOnce(i64) -> Outgoing,
    ) -> Result<i64, StoreError> {
        let NewRestore {
            folder,
            account,
            into,
            by,
            backup,
            expires_at,
            creates,
        } = *asked;
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO restores (folder, account, into_account, status, asked_by, asked_at, backup_order, sha256, bytes, messages, expires_at, directory_sha256) VALUES ($1, $2, $3, 'asked', $4, now(), $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(folder)
        .bind(account)
        .bind(into)
        .bind(by.0)
        .bind(backup.order)
        .bind(&backup.sha256)
        .bind(backup.bytes as i64)
        .bind(backup.messages.map(|n| n as i64))
        .bind(expires_at)
        .bind(creates)
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
            "SELECT {COLUMNS} FROM {FROM} WHERE r.id = $1"
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
            "SELECT {COLUMNS} FROM {FROM} WHERE r.id = $1 FOR UPDATE OF r"
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
        sqlx::query(
            "UPDATE restores SET status = $2, decided_by = COALESCE($3, decided_by), decided_at = COALESCE(decided_at, CASE WHEN $3::bigint IS NOT NULL THEN now() END) WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(by.map(|u| u.0))
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE r.id = $1"
        )))
        .bind(id)
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

    /// Whether a restore is waiting for a decision or running, or a restore drill is running
    /// (they share the server's stages, and one restore at a time writes there).
    pub async fn restore_open(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM restores WHERE status IN ('asked', 'running')) \
                 OR EXISTS (SELECT 1 FROM restore_drills WHERE status = 'running')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The request waiting for a decision, if any (at most one is open).
    pub async fn waiting_restore(&self) -> Result<Option<RestoreRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE r.status = 'asked' ORDER BY r.id DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?
        .map(row)
        .transpose()
    }

    /// The requests still waiting whose time ran out.
    pub async fn expired_restores(&self) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM restores WHERE status = 'asked' AND expires_at <= now() ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The verified archive of `account` with SHA-256 `sha256` in the dated folder `folder`
    /// under `root`, as a backup order recorded it (the newest such order), or `None`.
    pub async fn backup_facts(
        &self,
        root: &std::path::Path,
        folder: &str,
        account: &str,
        sha256: &str,
    ) -> Result<Option<BackupFacts>, StoreError> {
        for (order, ordered_at, jfu, report) in self.reports_of_folder(root, folder).await? {
            let found = report.mailboxes.iter().find(|m| {
                m.account == account
                    && m.sha256 == sha256
                    && m.status == crate::engine::MailboxStatus::Verified
            });
            if let Some(m) = found {
                return Ok(Some(BackupFacts {
                    order,
                    ordered_at: Some(ordered_at),
                    ran_by: jfu.map(UserId),
                    sha256: m.sha256.clone(),
                    bytes: m.size,
                    messages: m.messages,
                }));
            }
        }
        Ok(None)
    }

    /// The order whose report recorded the verified directory capture with SHA-256 `sha256` in
    /// the dated folder `folder` under `root` (the newest), or `None`.
    pub async fn directory_recorded(
        &self,
        root: &std::path::Path,
        folder: &str,
        sha256: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .directory_facts(root, folder, sha256)
            .await?
            .map(|(facts, _)| facts.order))
    }

    /// The backup order that recorded the verified directory capture with SHA-256 `sha256` in
    /// `folder` (its facts: the directory's hash and size), with the SHA-256 of each mailbox's
    /// archive that order verified, by account.
    pub async fn directory_facts(
        &self,
        root: &std::path::Path,
        folder: &str,
        sha256: &str,
    ) -> Result<Option<(BackupFacts, std::collections::BTreeMap<String, String>)>, StoreError> {
        let verified = crate::engine::MailboxStatus::Verified;
        for (order, ordered_at, jfu, report) in self.reports_of_folder(root, folder).await? {
            let Some(d) = report.directory.as_ref() else {
                continue;
            };
            if d.sha256 != sha256 || d.status != verified {
                continue;
            }
            let archives = report
                .mailboxes
                .iter()
                .filter(|m| m.status == verified)
                .map(|m| (m.account.clone(), m.sha256.clone()))
                .collect();
            let facts = BackupFacts {
                order,
                ordered_at: Some(ordered_at),
                ran_by: jfu.map(UserId),
                sha256: d.sha256.clone(),
                bytes: d.size,
                messages: Some(report.mailboxes.iter().filter_map(|m| m.messages).sum()),
            };
            return Ok(Some((facts, archives)));
        }
        Ok(None)
    }

    /// The completed runs' reports of the dated folder `folder` directly under `root`, newest
    /// order first.
    async fn reports_of_folder(
        &self,
        root: &std::path::Path,
        folder: &str,
    ) -> Result<Vec<(i64, DateTime<Utc>, Option<i64>, crate::engine::BackupReport)>, StoreError>
    {
        type OrderRow = (i64, String, DateTime<Utc>, Option<i64>, serde_json::Value);
        let rows: Vec<OrderRow> = sqlx::query_as(
            "SELECT id, local_folder, created_at, jfu, report FROM orders \
                 WHERE report IS NOT NULL AND local_folder IS NOT NULL \
                   AND right(local_folder, length($1) + 1) = '/' || $1 \
                 ORDER BY id DESC",
        )
        .bind(folder)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for (order, local, ordered_at, jfu, report) in rows {
            let local = std::path::Path::new(&local);
            if !directly_under(local, root) {
                continue;
            }
            if let Ok(crate::run_outcome::RunOutcome::Completed(report)) =
                serde_json::from_value(report)
            {
                out.push((order, ordered_at, jfu, report));
            }
        }
        Ok(out)
    }

    /// Restores that were running when the bot stopped.
    pub async fn running_restores(&self) -> Result<Vec<RestoreRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE r.status = 'running' ORDER BY r.id"
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
            "SELECT {COLUMNS} FROM {FROM} WHERE r.log_date >= $1 AND r.log_date < $2 ORDER BY r.ended_at, r.id"
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
