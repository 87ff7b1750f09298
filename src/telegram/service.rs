//! The Telegram side of starting and running: the client with Telegram's rate limits, waiting
//! for Telegram at start, the command menu and the names of the people, and the dispatcher that
//! polls for updates.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use teloxide::adaptors::throttle::Limits;
use teloxide::prelude::*;

use super::chat::{GroupChat, TgBot};
use crate::config::BotSettings;
use crate::procedure::app::App;
use crate::storage::Person;

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

/// The group client for `settings`.
pub fn group_chat(settings: &BotSettings) -> Result<GroupChat> {
    Ok(GroupChat::new(
        bot(settings)?,
        ChatId(settings.group_chat_id),
        settings.messages_per_minute,
    ))
}

/// Telegram refused the token (401 Unauthorized; 404 Not Found for a malformed one).
#[derive(Debug, thiserror::Error)]
#[error("TELOXIDE_TOKEN: Telegram refused the bot token (401 Unauthorized or 404 Not Found); put the token from @BotFather in .env")]
pub struct InvalidToken;

/// Waits 1, 2, 4 … 60 s between tries.
pub fn backoff(attempt: u32) -> std::time::Duration {
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

/// Before serving: the command menu, and the names of everyone configured.
pub async fn prepare(app: &App, group: &GroupChat) {
    if let Err(e) = group
        .bot
        .set_my_commands(super::command_menu(app.catalog.lang))
        .await
    {
        tracing::warn!(error = %e, "could not register the command menu");
    }
    learn_names(app, group).await;
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

/// Polling for updates; it ends only when Telegram refuses the token, or when stopped.
pub type Polling = BoxFuture<'static, Result<(), InvalidToken>>;

/// Stops the polling: the update and the commands being handled are finished (for a few
/// seconds), the long poll not waited out.
pub type StopPolling = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Polls Telegram for updates and hands them to the handlers, until stopped. Returns the
/// polling (it ends only when Telegram refuses the token, or when stopped) and what stops it:
/// the update and the commands being handled are finished, Telegram's long poll is not waited
/// out.
pub fn dispatch(app: Arc<App>, group: GroupChat) -> (Polling, StopPolling) {
    let bot = group.bot.clone();
    let commands = super::queues::Queues::default();
    let mut dispatcher = Dispatcher::builder(bot.clone(), super::schema())
        .dependencies(dptree::deps![app.clone(), group, commands])
        .default_handler(|_| async {})
        .build();
    let token = dispatcher.shutdown_token();
    // The dispatcher asks getMe again at start and `dispatch` panics when that fails: use the
    // fallible entry and wait for Telegram again instead.
    let polling = Box::pin(async move {
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
    });
    let stop: StopPolling = Box::new(move || {
        Box::pin(async move {
            if let Ok(done) = token.shutdown() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(3), done).await;
            }
            // Commands are answered in tasks of their own: let those begun finish too.
            let until = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
            while app.flood.lock().unwrap_or_else(|p| p.into_inner()).open() > 0
                && tokio::time::Instant::now() < until
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    });
    (polling, stop)
}
