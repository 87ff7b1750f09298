//! Builds the running bot from settings, the same way for the binary and for the tests.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use teloxide::adaptors::throttle::Limits;
use teloxide::prelude::*;

use crate::app::App;
use crate::config::BotSettings;
use crate::engine::BackupEngine;
use crate::messages::Catalog;
use crate::people::People;
use crate::storage::{Person, Store};
use crate::telegram::chat::{GroupChat, TgBot};
use crate::{chain, telegram};

/// The bot client: the configured API server, and Telegram's rate limits kept by `Throttle`.
pub fn bot(settings: &BotSettings) -> Result<TgBot> {
    let mut bot = Bot::new(settings.token.expose());
    if let Some(url) = &settings.api_url {
        bot = bot.set_api_url(url.parse().context("TELEGRAM_API_URL: not a valid URL")?);
    }
    let per_minute = settings.messages_per_minute.max(1);
    let limits = Limits {
        messages_per_sec_chat: (per_minute / 60).max(1),
        messages_per_min_chat: per_minute,
        messages_per_min_channel_or_supergroup: per_minute,
        messages_per_sec_overall: 30.max(per_minute / 60),
    };
    Ok(bot.throttle(limits))
}

/// The running bot's parts: the procedure's context, and the Telegram adapter's group client
/// (which the procedure sees only as [`crate::app::GroupPort`]).
pub struct Running {
    pub app: Arc<App>,
    pub group: GroupChat,
}

pub async fn build(
    settings: BotSettings,
    settings_read: crate::config::SettingsReading,
    store: Store,
    engine: Option<Arc<dyn BackupEngine>>,
) -> Result<Running> {
    let people = People::new(store.people().await?);
    let group = GroupChat::new(bot(&settings)?, ChatId(settings.group_chat_id));
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

/// Asks Telegram for the names of everyone configured (kept as they change).
async fn learn_names(app: &App, group: &GroupChat) {
    for id in app.settings.roster.everyone() {
        match group
            .bot
            .get_chat_member(group.chat_id(), teloxide::types::UserId(id.0 as u64))
            .await
        {
            Ok(member) => {
                let person = Person {
                    id,
                    first_name: member.user.first_name.clone(),
                    username: member.user.username.clone(),
                };
                if app.people.learn(person.clone()) {
                    if let Err(e) = app.store.upsert_person(&person).await {
                        tracing::warn!(error = %e, "could not store a name");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(user = %id, error = %e, "could not look up a configured user in the group")
            }
        }
    }
}

/// The exit status for a setting that cannot work (a missing or malformed variable, a token
/// Telegram refuses, a database login refused): `EX_CONFIG`. The shipped systemd unit does not
/// restart on it (`RestartPreventExitStatus=78`): restarting cannot fix it.
pub const EXIT_CONFIG: i32 = 78;

/// Telegram refused the token (401 Unauthorized; 404 Not Found for a malformed one).
#[derive(Debug, thiserror::Error)]
#[error("TELOXIDE_TOKEN: Telegram refused the bot token (401 Unauthorized or 404 Not Found); put the token from @BotFather in .env")]
pub struct InvalidToken;

/// PostgreSQL refused the login or has no such database.
#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL: PostgreSQL refused it: {0}")]
pub struct DatabaseRefused(String);

/// Waits 1, 2, 4 … 60 s between tries.
fn backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_secs(1u64 << attempt.min(6)).min(std::time::Duration::from_secs(60))
}

/// Asks Telegram who the bot is (`getMe`) until it answers; a refused token is final. Network
/// errors and Telegram's own troubles are waited out, logged at each try.
pub async fn wait_for_telegram(bot: &TgBot) -> Result<teloxide::types::Me, InvalidToken> {
    use teloxide::{ApiError, RequestError};
    let mut attempt = 0;
    loop {
        match bot.get_me().await {
            Ok(me) => {
                if attempt > 0 {
                    tracing::info!(bot = %me.username(), "Telegram answers");
                }
                return Ok(me);
            }
            Err(RequestError::Api(ApiError::InvalidToken)) => return Err(InvalidToken),
            Err(e) => {
                let wait = backoff(attempt);
                tracing::warn!(error = %e, retry_in_secs = wait.as_secs(), "waiting for Telegram (getMe)");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

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
                let wait = backoff(attempt);
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
    if let Err(e) = group
        .bot
        .set_my_commands(telegram::command_menu(app.catalog.lang))
        .await
    {
        tracing::warn!(error = %e, "could not register the command menu");
    }
    learn_names(&app, &group).await;
    crate::restores::fail_interrupted(&app)
        .await
        .context("closing an interrupted restore")?;
    chain::resume_unfinished(&app)
        .await
        .context("resuming an unfinished run")?;
    let mut dispatcher = Dispatcher::builder(group.bot.clone(), telegram::schema())
        .dependencies(dptree::deps![app.clone(), group.clone()])
        .default_handler(|_| async {})
        .build();
    let token = dispatcher.shutdown_token();
    // The dispatcher asks getMe again at start and `dispatch` panics when that fails: use the
    // fallible entry and wait for Telegram again instead.
    let bot = group.bot.clone();
    let dispatch = async move {
        loop {
            let listener = teloxide::update_listeners::polling_default(bot.clone()).await;
            let errors = teloxide::error_handlers::LoggingErrorHandler::with_custom_text(
                "An error from the update listener",
            );
            match dispatcher
                .try_dispatch_with_listener(listener, errors)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "Telegram did not answer at the dispatcher's start");
                    wait_for_telegram(&bot).await?;
                }
            }
        }
    };
    // Stop on SIGTERM (systemd, docker) or SIGINT (Ctrl-C): finish handling the current update,
    // but do not wait out Telegram's long poll. A backup still running is picked up again by
    // `resume_unfinished` at the next start.
    let stop = async move {
        stop_signal().await;
        tracing::info!("stopping");
        if let Ok(done) = token.shutdown() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), done).await;
        }
    };
    tracing::info!(group = app.settings.group_chat_id, "bot running");
    // The delivery worker runs inside this future (not spawned), so it stops with the bot.
    let result: Result<(), InvalidToken> = tokio::select! {
        r = dispatch => r,
        _ = stop => Ok(()),
        () = telegram::delivery::run(app.clone(), group.clone()) => Ok(()),
        () = crate::reminders::run(app.clone()) => Ok(()),
        () = crate::restores::expire(app.clone()) => Ok(()),
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
