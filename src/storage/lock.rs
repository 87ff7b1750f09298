//! One bot per database: the running bot holds a PostgreSQL advisory lock on a connection of its
//! own. A second bot started with the same database stands by until the lock is free (the first
//! stopped or died: PostgreSQL frees the lock with its connection) and then takes over.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// The lock's key: "mbb-bot!" as a number, the same for every bot on the database.
const KEY: i64 = 0x6d62_622d_626f_7421;

/// How often a standby tries the lock, and the holder checks its connection.
const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock's connection was lost and another bot took the lock meanwhile: this one must
    /// stop acting.
    #[error("another mailbox-backup-bot took over this database while this one had lost its connection; stopping")]
    TakenOver,
}

/// The lock, held for as long as this value and its connection live.
pub struct BotLock {
    url: String,
    conn: PgConnection,
    /// The PostgreSQL backend holding the lock for this bot.
    backend: i32,
}

/// Who holds the lock, as PostgreSQL sees them: the backend, and `pid … from … since …`.
async fn holder(conn: &mut PgConnection) -> (Option<i32>, String) {
    let row: Option<(i32, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT a.pid, host(a.client_addr), to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted \
           AND l.classid = (($1::bigint >> 32) & 4294967295)::oid \
           AND l.objid = ($1::bigint & 4294967295)::oid AND l.objsubid = 1 AND l.database = \
             (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(KEY)
    .fetch_optional(&mut *conn)
    .await
    .ok()
    .flatten();
    match row {
        Some((pid, addr, since)) => (
            Some(pid),
            format!(
                "PostgreSQL backend {pid}, from {}, since {}",
                addr.unwrap_or_else(|| "a local socket (or hidden)".into()),
                since.unwrap_or_default()
            ),
        ),
        None => (None, "unknown".into()),
    }
}

/// The lock on a new connection, with its backend; or who holds it.
async fn try_lock(
    url: &str,
) -> Result<Result<(PgConnection, i32), (Option<i32>, String)>, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let (got, backend): (bool, i32) =
        sqlx::query_as("SELECT pg_try_advisory_lock($1), pg_backend_pid()")
            .bind(KEY)
            .fetch_one(&mut conn)
            .await?;
    if got {
        Ok(Ok((conn, backend)))
    } else {
        let who = holder(&mut conn).await;
        let _ = conn.close().await;
        Ok(Err(who))
    }
}

impl BotLock {
    /// Takes the lock, standing by (said once in the log) while another bot holds it, and
    /// waiting while PostgreSQL is away.
    pub async fn acquire(url: &str) -> BotLock {
        let mut said = false;
        loop {
            match try_lock(url).await {
                Ok(Ok((conn, backend))) => {
                    if said {
                        tracing::info!("the other bot is gone: this one takes over");
                    }
                    return BotLock {
                        url: url.to_owned(),
                        conn,
                        backend,
                    };
                }
                Ok(Err((_, who))) if !said => {
                    tracing::warn!(holder = %who, "another mailbox-backup-bot is running on this database; standing by until it stops");
                    said = true;
                }
                Ok(Err(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for PostgreSQL to take the bot's lock")
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    }

    /// Keeps the lock: checks its connection (an answer within 5 s), and after a lost one takes
    /// the lock again. Returns only when another bot took the lock meanwhile.
    pub async fn keep(mut self) -> LockError {
        loop {
            tokio::time::sleep(EVERY).await;
            let alive = tokio::time::timeout(
                Duration::from_secs(5),
                sqlx::query("SELECT 1").execute(&mut self.conn),
            )
            .await;
            if matches!(alive, Ok(Ok(_))) {
                continue;
            }
            tracing::warn!("the connection holding the bot's lock was lost; taking the lock again");
            loop {
                match try_lock(&self.url).await {
                    Ok(Ok((conn, backend))) => {
                        self.conn = conn;
                        self.backend = backend;
                        break;
                    }
                    // Our own old session, still alive on the server's side: ended, then again.
                    Ok(Err((Some(pid), _))) if pid == self.backend => {
                        if let Ok(mut c) = PgConnection::connect(&self.url).await {
                            let _ = sqlx::query("SELECT pg_terminate_backend($1)")
                                .bind(pid)
                                .execute(&mut c)
                                .await;
                            let _ = c.close().await;
                        }
                        tokio::time::sleep(EVERY).await;
                    }
                    Ok(Err(_)) => return LockError::TakenOver,
                    Err(_) => tokio::time::sleep(EVERY).await,
                }
            }
        }
    }
}
