//! PostgreSQL: where every row is written. Orders, their SOP steps, the daily log, people, and
//! the outbox of messages ([`outbox`]). A move of the chain is one transaction ([`Store::apply_move`]).

mod drills;
pub mod lock;
mod outbox;
mod restores;
pub use drills::{DrillRow, DrillStatus, NewestBackup};
pub use outbox::Pending;
pub use restores::{BackupFacts, NewRestore, RestoreRow};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use crate::domain::{
    NewOrder, Order, OrderId, OrderStatus, SopStep, StepOutcome, StepRecord, UserId,
};
use crate::outbox::Outgoing;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The one-active-order rule, as enforced by the database.
    #[error("another order is already active")]
    AlreadyActive,
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// sqlx's own words (its cause follows in the error chain, not twice in one line).
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    /// PostgreSQL cannot be reached now (stopped, restarting, the network): worth waiting for,
    /// unlike a refused statement.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(e) => db_unavailable(e),
            _ => false,
        }
    }
}

/// Whether `e` means the database is not reachable now (as opposed to a statement it refused).
pub fn db_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P01–57P03: shutting down, starting up.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Whether an error anywhere in `e`'s chain means the database is not reachable now.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_unavailable)
            || c.downcast_ref::<sqlx::Error>().is_some_and(db_unavailable)
    })
}

/// Runs `op` until it succeeds or fails for a reason other than the database being away,
/// waiting 0.5, 1, 2 … 10 s between tries and logging each wait. For what must not be lost to a
/// database outage: a run's step records and its result.
pub async fn patiently<T, F, Fut>(what: &str, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        match op().await {
            Err(e) if is_unavailable(&e) => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "PostgreSQL is away; {what} waits for it");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(10));
            }
            done => return done,
        }
    }
}

/// What a move writes, in one transaction with the order it moves.
#[derive(Debug, Clone)]
pub struct Move {
    /// The order after the move (its steps included).
    pub next: Order,
    /// What the move says in the group, sent after the commit by the delivery worker.
    pub outgoing: Vec<Outgoing>,
    /// The run's result, when the move carries one.
    pub report: Option<serde_json::Value>,
    /// Step 8: the order's entry in the daily log.
    pub daily_log: Option<DailyLogRow>,
}

#[derive(Debug, Clone)]
pub struct DailyLogRow {
    pub date: NaiveDate,
    pub at: DateTime<Utc>,
    pub summary: String,
}

/// A person the bot knows by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: UserId,
    pub first_name: String,
    pub username: Option<String>,
}

/// One entry of the daily activity log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub order: Order,
    pub date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub outcome: String,
    /// The summary as written that day (in the language of that day).
    pub summary: String,
    /// How the order's run ended, to render its summary and failure in the reader's language.
    pub report: Option<serde_json::Value>,
}

/// What the run engine keeps with an order.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub local_folder: Option<String>,
    pub server_folder: Option<String>,
    pub progress_message_id: Option<i64>,
    pub report: Option<serde_json::Value>,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

const ORDER_COLUMNS: &str = "id, status, note, ordered_by, jfu, created_at, reason, closed_by";

impl Store {
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        // A command waits at most 5 s for a connection before it is told the database is away.
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Store { pool })
    }

    pub fn from_pool(pool: PgPool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Compares the database's applied migrations with the ones this binary carries, changing
    /// nothing: the versions applied that this binary does not know (a newer bot migrated it),
    /// and how many of this binary's are still to apply.
    pub async fn migration_state(&self) -> Result<(Vec<i64>, usize), StoreError> {
        let known: Vec<i64> = sqlx::migrate!("./migrations")
            .iter()
            .map(|m| m.version)
            .collect();
        let applied: Vec<i64> =
            match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
            {
                Ok(v) => v,
                // No table yet: a fresh database, everything is still to apply.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        let unknown = applied
            .iter()
            .copied()
            .filter(|v| !known.contains(v))
            .collect();
        let pending = known.iter().filter(|v| !applied.contains(v)).count();
        Ok((unknown, pending))
    }

    /// Applies the migrations in `migrations/` (embedded at build time).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Db(e.into()))
    }

    /// Reads the order of `row` and its steps, on `conn` (in the caller's transaction).
    async fn load(conn: &mut sqlx::PgConnection, row: PgRow) -> Result<Order, StoreError> {
        let id: i64 = row.try_get("id")?;
        let status: String = row.try_get("status")?;
        let status = OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("order {id} has status {status:?}")))?;
        let steps = sqlx::query("SELECT step, actor_id, started_at, ended_at, outcome FROM order_steps WHERE order_id = $1 ORDER BY step")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| {
                let n: i16 = r.try_get("step")?;
                let step = u8::try_from(n).ok().and_then(SopStep::from_number).ok_or_else(|| StoreError::Corrupt(format!("step {n}")))?;
                let outcome = match r.try_get::<Option<String>, _>("outcome")? {
                    Some(o) => Some(StepOutcome::parse(&o).ok_or_else(|| StoreError::Corrupt(format!("step outcome {o:?}")))?),
                    None => None,
                };
                Ok(StepRecord::restore(
                    step,
                    r.try_get::<Option<i64>, _>("actor_id")?.map(UserId),
                    r.try_get("started_at")?,
                    r.try_get("ended_at")?,
                    outcome,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Order {
            id: OrderId(id),
            status,
            note: row.try_get("note")?,
            ordered_by: UserId(row.try_get("ordered_by")?),
            jfu: row.try_get::<Option<i64>, _>("jfu")?.map(UserId),
            created_at: row.try_get("created_at")?,
            steps,
            reason: row.try_get("reason")?,
            closed_by: row.try_get::<Option<i64>, _>("closed_by")?.map(UserId),
        })
    }

    /// The active order, if any (at most one exists).
    pub async fn active_order(&self) -> Result<Option<Order>, StoreError> {
        // The active statuses come from the domain; the partial unique index of the first
        // migration lists the same ones (checked by a test in this module).
        self.read_order(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE status = ANY($1)"),
            |q| q.bind(active_statuses()),
        )
        .await
    }

    pub async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.read_order(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"),
            |q| q.bind(id.0),
        )
        .await
    }

    /// An order and its steps as of one snapshot.
    async fn read_order<'q>(
        &self,
        sql: &str,
        bind: impl FnOnce(
            sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        )
            -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Option<Order>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let row = bind(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())))
            .fetch_optional(&mut *tx)
            .await?;
        let order = match row {
            Some(row) => Some(Self::load(&mut tx, row).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(order)
    }

    /// Records a new order (step 1) with what it says in the group. The database refuses a
    /// second active one.
    pub async fn insert_order(
        &self,
        new: NewOrder,
        group_chat_id: i64,
        outgoing: impl FnOnce(&Order) -> Vec<Outgoing>,
    ) -> Result<Order, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO orders (status, note, ordered_by, group_chat_id, created_at, updated_at) VALUES ('ordered', $1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(&new.note)
        .bind(new.ordered_by.0)
        .bind(group_chat_id)
        .bind(new.at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyActive,
            _ => StoreError::Db(e),
        })?;
        let order = Order::from_new(OrderId(id), new);
        write_steps(&mut tx, &order).await?;
        outbox::insert(&mut tx, Some(order.id), &outgoing(&order)).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// One move of order `id`, as one transaction: the order is read under a row lock (so the
    /// run's step records and a command never overwrite each other), `decide` computes the move
    /// from it and its stored run result, and the new state, its steps, the run result, the
    /// daily-log entry and the outbox rows are written together. `Ok(Err(_))`: `decide` refused,
    /// nothing was written.
    pub async fn apply_move<R>(
        &self,
        id: OrderId,
        decide: impl FnOnce(&Order, Option<&serde_json::Value>) -> Result<Move, R>,
    ) -> Result<Result<Order, R>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS}, report FROM orders WHERE id = $1 FOR UPDATE"
        )))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("order {id} does not exist")))?;
        let report: Option<serde_json::Value> = row.try_get("report")?;
        let order = Self::load(&mut tx, row).await?;
        let m = match decide(&order, report.as_ref()) {
            Ok(m) => m,
            Err(refused) => return Ok(Err(refused)),
        };
        let next = &m.next;
        sqlx::query(
            "UPDATE orders SET status = $2, jfu = $3, reason = $4, closed_by = $5, report = COALESCE($6, report), updated_at = now() WHERE id = $1",
        )
        .bind(next.id.0)
        .bind(next.status.as_str())
        .bind(next.jfu.map(|u| u.0))
        .bind(&next.reason)
        .bind(next.closed_by.map(|u| u.0))
        .bind(&m.report)
        .execute(&mut *tx)
        .await?;
        // Steps dropped by a re-direction are dropped here too.
        let kept: Vec<i16> = next
            .steps
            .iter()
            .map(|s| i16::from(s.step.number()))
            .collect();
        sqlx::query("DELETE FROM order_steps WHERE order_id = $1 AND NOT (step = ANY($2))")
            .bind(next.id.0)
            .bind(&kept)
            .execute(&mut *tx)
            .await?;
        write_steps(&mut tx, next).await?;
        if let Some(log) = &m.daily_log {
            sqlx::query(
                "INSERT INTO daily_log (log_date, order_id, recorded_at, outcome, summary) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(log.date)
            .bind(next.id.0)
            .bind(log.at)
            .bind(next.status.as_str())
            .bind(&log.summary)
            .execute(&mut *tx)
            .await?;
        }
        outbox::insert(&mut tx, Some(next.id), &m.outgoing).await?;
        tx.commit().await?;
        Ok(Ok(m.next))
    }

    pub async fn run_record(&self, id: OrderId) -> Result<RunRecord, StoreError> {
        let row = sqlx::query("SELECT local_folder, server_folder, progress_message_id, report FROM orders WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(RunRecord::default());
        };
        Ok(RunRecord {
            local_folder: row.try_get("local_folder")?,
            server_folder: row.try_get("server_folder")?,
            progress_message_id: row.try_get("progress_message_id")?,
            report: row.try_get("report")?,
        })
    }

    pub async fn set_run_folders(
        &self,
        id: OrderId,
        local: &str,
        server: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE orders SET local_folder = $2, server_folder = $3 WHERE id = $1")
            .bind(id.0)
            .bind(local)
            .bind(server)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn daily_log(&self, date: NaiveDate) -> Result<Vec<LogEntry>, StoreError> {
        self.daily_log_between(date, date.succ_opt().unwrap_or(date))
            .await
    }

    /// The log entries of the days from `from` up to (not including) `until`, oldest first.
    pub async fn daily_log_between(
        &self,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let rows = sqlx::query("SELECT d.order_id, d.log_date, d.recorded_at, d.outcome, d.summary, o.report FROM daily_log d JOIN orders o ON o.id = d.order_id WHERE d.log_date >= $1 AND d.log_date < $2 ORDER BY d.log_date, d.recorded_at, d.id")
            .bind(from)
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let id = OrderId(row.try_get("order_id")?);
            let order = self
                .order(id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("log entry for missing order {id}")))?;
            entries.push(LogEntry {
                order,
                date: row.try_get("log_date")?,
                recorded_at: row.try_get("recorded_at")?,
                outcome: row.try_get("outcome")?,
                summary: row.try_get("summary")?,
                report: row.try_get("report")?,
            });
        }
        Ok(entries)
    }

    /// The orders placed from `from` up to (not including) `until`, oldest first, with their
    /// run results.
    pub async fn orders_placed_between(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(Order, Option<serde_json::Value>)>, StoreError> {
        let ids: Vec<(i64, Option<serde_json::Value>)> = sqlx::query_as(
            "SELECT id, report FROM orders WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at, id",
        )
        .bind(from)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, report) in ids {
            if let Some(order) = self.order(OrderId(id)).await? {
                out.push((order, report));
            }
        }
        Ok(out)
    }

    /// When the last backup was received (step 7 done), and when the bot's database was set up.
    pub async fn reminder_facts(
        &self,
    ) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>, bool), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT max(ended_at) FROM order_steps WHERE step = 7 AND outcome = 'done') AS last_received,
                    (SELECT min(installed_on) FROM _sqlx_migrations) AS since,
                    EXISTS (SELECT 1 FROM orders WHERE status = ANY($1)) AS active",
        )
        .bind(active_statuses())
        .fetch_one(&self.pool)
        .await?;
        Ok((
            row.try_get("last_received")?,
            row.try_get::<Option<DateTime<Utc>>, _>("since")?
                .unwrap_or_else(Utc::now),
            row.try_get("active")?,
        ))
    }

    pub async fn reminder_sent_on(&self, day: NaiveDate) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM reminders WHERE day = $1)")
                .bind(day)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Records the reminder of `day` with its message, once: `false` when that day's was already
    /// recorded (by this process before a restart, say).
    pub async fn record_reminder(
        &self,
        day: NaiveDate,
        days_since: u32,
        message: &Outgoing,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO reminders (day, days_since) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING",
        )
        .bind(day)
        .bind(i32::try_from(days_since).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            outbox::insert(&mut tx, None, std::slice::from_ref(message)).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn upsert_person(&self, person: &Person) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO people (user_id, first_name, username, updated_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (user_id) DO UPDATE SET first_name = EXCLUDED.first_name, username = EXCLUDED.username, updated_at = now()
             WHERE people.first_name IS DISTINCT FROM EXCLUDED.first_name OR people.username IS DISTINCT FROM EXCLUDED.username",
        )
        .bind(person.id.0)
        .bind(&person.first_name)
        .bind(&person.username)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn people(&self) -> Result<Vec<Person>, StoreError> {
        let rows = sqlx::query("SELECT user_id, first_name, username FROM people")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Person {
                    id: UserId(r.try_get("user_id")?),
                    first_name: r.try_get("first_name")?,
                    username: r.try_get("username")?,
                })
            })
            .collect()
    }
}

async fn write_steps(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    order: &Order,
) -> Result<(), StoreError> {
    for s in &order.steps {
        sqlx::query(
            "INSERT INTO order_steps (order_id, step, actor_id, started_at, ended_at, outcome) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (order_id, step) DO UPDATE SET actor_id = EXCLUDED.actor_id, started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, outcome = EXCLUDED.outcome",
        )
        .bind(order.id.0)
        .bind(i16::from(s.step.number()))
        .bind(s.actor.map(|u| u.0))
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(s.outcome.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The active statuses as stored ([`OrderStatus::ACTIVE`]).
fn active_statuses() -> Vec<&'static str> {
    OrderStatus::ACTIVE.iter().map(|s| s.as_str()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_unique_index_of_active_orders_lists_the_domains_active_statuses() {
        let migration = include_str!("../../migrations/20261124000001_order_chain.sql");
        let index = &migration[migration
            .find("WHERE status IN")
            .expect("the partial index")..];
        let list = &index[index.find('(').expect("(") + 1..index.find(')').expect(")")];
        let listed: Vec<&str> = list
            .split(',')
            .map(|s| s.trim().trim_matches('\''))
            .collect();
        assert_eq!(listed, super::active_statuses());
    }
}
