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
use crate::{backup_run, telegram};

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

pub async fn build(
    settings: BotSettings,
    store: Store,
    engine: Option<Arc<dyn BackupEngine>>,
) -> Result<Arc<App>> {
    let people = People::new(store.people().await?);
    let group = GroupChat {
        bot: bot(&settings)?,
        chat_id: ChatId(settings.group_chat_id),
    };
    Ok(Arc::new(App {
        catalog: Catalog::new(settings.lang, settings.timezone),
        settings,
        store,
        people,
        group,
        engine,
        runs: Mutex::new(Default::default()),
    }))
}

/// Asks Telegram for the names of everyone configured (kept as they change).
async fn learn_names(app: Arc<App>) {
    for id in app.settings.roster.everyone() {
        match app
            .group
            .bot
            .get_chat_member(app.group.chat_id, teloxide::types::UserId(id.0 as u64))
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

/// Resolves at the first SIGTERM or SIGINT.
async fn stop_signal() {
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
pub async fn run(app: Arc<App>) -> Result<()> {
    if let Err(e) = app
        .group
        .bot
        .set_my_commands(telegram::command_menu(app.catalog.lang))
        .await
    {
        tracing::warn!(error = %e, "could not register the command menu");
    }
    learn_names(app.clone()).await;
    backup_run::resume_unfinished(&app)
        .await
        .context("resuming an unfinished run")?;
    let mut dispatcher = Dispatcher::builder(app.group.bot.clone(), telegram::schema())
        .dependencies(dptree::deps![app.clone()])
        .default_handler(|_| async {})
        .build();
    let token = dispatcher.shutdown_token();
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
    tokio::select! {
        _ = dispatcher.dispatch() => {}
        _ = stop => {}
    }
    // A backup still running stops its exports on the server and keeps what it verified.
    // Bounded by the clean-up's own limits (copy threads 10 s, three tries of 20 s on the server).
    app.stop_runs(
        crate::engine::StopReason::Shutdown,
        std::time::Duration::from_secs(80),
    )
    .await;
    Ok(())
}
