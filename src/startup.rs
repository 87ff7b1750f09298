//! Builds the running bot from settings, the same way for the binary and for the tests.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::config::{BotSettings, Settings};
use crate::engine::Engine;
use crate::messages::Catalog;
use crate::procedure::app::App;
use crate::procedure::chain;
use crate::procedure::people::People;
use crate::storage::lock::BotLock;
use crate::storage::Store;
use crate::telegram;
use crate::telegram::chat::GroupChat;
use crate::telegram::service::{self, InvalidToken};

/// The running bot's parts: the procedure's context, and the Telegram adapter's group client
/// (which the procedure sees only as [`crate::procedure::app::GroupPort`]).
pub struct Running {
    pub app: Arc<App>,
    pub group: GroupChat,
}

/// The engine the settings configure: none without `MAIL_SSH_HOST` (`/start` then answers
/// that the backup engine is not configured).
pub fn engine_of(settings: &Settings) -> Result<Engine> {
    match settings.engine()? {
        Some(e) => Ok(Engine::both(Arc::new(crate::engine::SshEngine::new(
            e.clone(),
        )))),
        None => {
            tracing::warn!(
                "MAIL_SSH_HOST is not set: /start will answer that the backup engine is not configured"
            );
            Ok(Engine::default())
        }
    }
}

/// The running bot with the database's bot lock it holds.
pub struct Started {
    pub running: Running,
    lock: BotLock,
}

/// The running bot from `settings` and `engine`: secrets no one else may read or change
/// checked, Telegram and PostgreSQL waited for, the database's bot lock taken (a second bot on
/// the same database stands by here until the first stops), the migrations applied, the parts
/// built. `None` when SIGTERM or SIGINT came while waiting. The binary and the tests start the
/// bot through this one function.
pub async fn start(settings: &Settings, engine: Engine) -> Result<Option<Started>> {
    let bot = settings.bot()?.clone();
    // Secrets anyone on this computer could read or change: refused before anything runs.
    if let Some(open) = crate::preflight::file_modes(&settings.reading)
        .into_iter()
        .find(|l| !l.ok)
    {
        return Err(crate::config::ConfigError {
            var: open.item.setting(),
            problem: open.detail,
        }
        .into());
    }
    // Telegram first (a refused token stops here, before the database is needed), then
    // PostgreSQL, then the lock; SIGTERM while waiting stops at once.
    let waited = async {
        service::wait_for_telegram(&service::bot(&bot)?).await?;
        let url = settings.database_url()?;
        let store = wait_for_database(url.expose()).await?;
        let lock = BotLock::acquire(url.expose()).await;
        store.migrate().await.context("applying migrations")?;
        anyhow::Ok((store, lock))
    };
    let (store, lock) = tokio::select! {
        waited = waited => waited?,
        _ = stop_signal() => return Ok(None),
    };
    let running = build(bot, settings.reading.clone(), store, engine).await?;
    Ok(Some(Started { running, lock }))
}

/// Runs a started bot until SIGINT or SIGTERM, or until it loses the database's bot lock.
pub async fn serve(started: Started) -> Result<()> {
    let Started { running, lock } = started;
    tokio::select! {
        r = run(running) => r,
        lost = lock.keep() => Err(lost.into()),
    }
}

/// The parts, from settings, a migrated database and the engine.
pub async fn build(
    settings: BotSettings,
    settings_read: crate::config::SettingsReading,
    store: Store,
    engine: Engine,
) -> Result<Running> {
    let people = People::new(store.people().await?);
    let group = service::group_chat(&settings)?;
    let app = Arc::new(App {
        catalog: Catalog::new(settings.lang, settings.timezone),
        settings,
        settings_read,
        store,
        people,
        chat: Arc::new(group.clone()),
        engine,
        runs: Mutex::new(Default::default()),
        progress: Mutex::new(Default::default()),
        outbox_ready: Default::default(),
        flood: Default::default(),
    });
    Ok(Running { app, group })
}

/// The exit status for a setting that cannot work (a missing or malformed variable, a token
/// Telegram refuses, a database login refused): `EX_CONFIG`. The shipped systemd unit does not
/// restart on it (`RestartPreventExitStatus=78`): restarting cannot fix it.
pub const EXIT_CONFIG: i32 = 78;

/// PostgreSQL refused the login or has no such database.
#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL: PostgreSQL refused it: {0}")]
pub struct DatabaseRefused(String);

/// Connects to PostgreSQL until it answers; a refused login or a missing database is final.
pub async fn wait_for_database(url: &str) -> Result<Store> {
    let mut attempt = 0;
    loop {
        match Store::connect(url).await {
            Ok(store) => {
                if attempt > 0 {
                    tracing::info!("PostgreSQL answers");
                }
                return Ok(store);
            }
            Err(crate::storage::StoreError::Db(sqlx::Error::Database(e)))
                if e.code()
                    .is_some_and(|c| c.starts_with("28") || c == "3D000") =>
            {
                return Err(DatabaseRefused(e.message().to_owned()).into());
            }
            Err(e) => {
                let wait = service::backoff(attempt);
                tracing::warn!(error = %e, retry_in_secs = wait.as_secs(), "waiting for PostgreSQL");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Runs the bot until SIGINT or SIGTERM.
pub async fn run(running: Running) -> Result<()> {
    let Running { app, group } = running;
    service::prepare(&app, &group).await;
    crate::procedure::restores::fail_interrupted(&app)
        .await
        .context("closing an interrupted restore")?;
    crate::procedure::drills::fail_interrupted(&app)
        .await
        .context("closing an interrupted restore drill")?;
    chain::resume_unfinished(&app)
        .await
        .context("resuming an unfinished run")?;
    let (dispatch, stop_updates) = service::dispatch(app.clone(), group.clone());
    // Stop on SIGTERM (systemd, docker) or SIGINT (Ctrl-C): finish handling the current update,
    // but do not wait out Telegram's long poll. A backup still running is picked up again by
    // `resume_unfinished` at the next start.
    let stop = async move {
        stop_signal().await;
        tracing::info!("stopping");
        stop_updates().await;
    };
    tracing::info!(group = app.settings.group_chat_id, "bot running");
    // The delivery worker runs inside this future (not spawned), so it stops with the bot.
    let result: Result<(), InvalidToken> = tokio::select! {
        r = dispatch => r,
        _ = stop => Ok(()),
        () = telegram::delivery::run(app.clone(), group.clone()) => Ok(()),
        () = crate::procedure::reminders::run(app.clone()) => Ok(()),
        () = crate::procedure::drills::run(app.clone()) => Ok(()),
        () = crate::procedure::restores::expire(app.clone()) => Ok(()),
    };
    // A backup still running stops its exports on the server and keeps what it verified.
    // Bounded by the clean-up's own limits (copy threads 10 s, three tries of 20 s on the server).
    app.stop_runs(
        crate::engine::StopReason::Shutdown,
        std::time::Duration::from_secs(80),
    )
    .await;
    telegram::delivery::drain(&app, &group, std::time::Duration::from_secs(5)).await;
    Ok(result?)
}
