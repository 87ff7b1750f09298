//! The delivery worker: sends the outbox ([`crate::outbox`]) to the group, oldest first, one at a
//! time so the chat reads in the order the moves were made. Telegram away (network errors, 5xx,
//! 429) is waited out with growing pauses and the same message tried again; a message Telegram
//! refuses for good (chat not found, message to edit gone) is given up, kept with its error, and
//! the next one sent. Each message is marked sent as soon as Telegram took it, so a restart
//! does not send it again (a crash in between that very moment can repeat one message).

use std::sync::Arc;
use std::time::Duration;

use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use teloxide::{ApiError, RequestError};

use super::chat::GroupChat;
use crate::domain::OrderId;
use crate::outbox::{Outgoing, Slot};
use crate::procedure::app::App;
use crate::storage::{patiently, Pending};

/// How a try went wrong.
enum Failure {
    /// Too many requests: try again after the pause Telegram asked for.
    RetryAfter(Duration, String),
    /// Telegram away or in trouble: try again after a growing pause.
    Retry(String),
    /// Telegram refused it for good.
    GiveUp(String),
}

/// Growing pauses between tries of one message: 1, 2, 4 … 30 s.
fn pause(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 5)).min(Duration::from_secs(30))
}

/// Answers that do not parse are tried this many times (about ten minutes) before giving up.
const INVALID_ANSWER_TRIES: i32 = 25;

/// Other unknown API errors are tried this many times before giving up.
const API_ERROR_TRIES: i32 = 5;

/// What to do after error `e` on a message tried `attempts` times before.
fn classify(e: RequestError, attempts: i32) -> Failure {
    let text = e.to_string();
    match e {
        RequestError::RetryAfter(s) => Failure::RetryAfter(s.duration(), text),
        RequestError::Network(_) | RequestError::Io(_) => Failure::Retry(text),
        // An answer that does not parse: a proxy's error page while Telegram is away, or an
        // answer this client cannot read — not tried forever (that would hold the outbox).
        RequestError::InvalidJson { .. } if attempts + 1 < INVALID_ANSWER_TRIES => {
            Failure::Retry(text)
        }
        // Telegram's own trouble (a 5xx) passes, however long it takes.
        RequestError::Api(ApiError::Unknown(d)) if server_trouble(&d) => Failure::Retry(text),
        RequestError::Api(ApiError::Unknown(_)) if attempts + 1 < API_ERROR_TRIES => {
            Failure::Retry(text)
        }
        _ => Failure::GiveUp(text),
    }
}

/// Whether an API error's description is one of the HTTP 5xx texts.
fn server_trouble(description: &str) -> bool {
    let d = description.to_ascii_lowercase();
    [
        "internal server error",
        "bad gateway",
        "service unavailable",
        "gateway timeout",
    ]
    .iter()
    .any(|t| d.contains(t))
}

/// Sends one message; returns the id to keep in the order's slot, if any.
async fn send(
    app: &App,
    group: &GroupChat,
    pending: &Pending,
) -> Result<Option<(OrderId, Slot, i64)>, RequestError> {
    let Ok(message) = &pending.message else {
        return Ok(None);
    };
    let slot_id = |slot: Slot| async move {
        match pending.order {
            Some(order) => app.store.slot_message(order, slot).await.ok().flatten(),
            None => None,
        }
    };
    match message {
        Outgoing::Say {
            html,
            quiet,
            buttons,
            remember,
            reply_to,
        } => {
            let markup = (!buttons.is_empty()).then(|| {
                InlineKeyboardMarkup::new(buttons.iter().map(|b| {
                    vec![InlineKeyboardButton::callback(
                        b.text.clone(),
                        b.data.clone(),
                    )]
                }))
            });
            let reply = match reply_to {
                Some(slot) => slot_id(*slot).await,
                None => None,
            };
            let id = group
                .send_reply(group.chat_id(), html, *quiet, markup, reply)
                .await?;
            Ok(remember
                .zip(pending.order)
                .map(|(slot, order)| (order, slot, id)))
        }
        Outgoing::Edit { slot, html } => {
            if let Some(id) = slot_id(*slot).await {
                group.edit(id, html).await?;
            }
            Ok(None)
        }
        Outgoing::RemoveButtons { slot } => {
            if let Some(id) = slot_id(*slot).await {
                group.remove_buttons(id).await?;
            }
            Ok(None)
        }
        Outgoing::Document {
            file_name,
            content,
            caption,
        } => {
            group
                .attach(file_name, content.clone().into_bytes(), caption)
                .await?;
            Ok(None)
        }
    }
}

/// Sends the outbox until the process stops. Woken by `app.outbox_ready` after each commit, and
/// looks every few seconds anyway (rows committed by another process, or before a restart).
pub async fn run(app: Arc<App>, group: GroupChat) {
    deliver(&app, &group, false).await
}

/// Sends what is in the outbox (at most for `limit`): at shutdown, what was just committed still
/// goes out when Telegram answers; what does not is sent at the next start.
pub async fn drain(app: &App, group: &GroupChat, limit: Duration) {
    let _ = tokio::time::timeout(limit, deliver(app, group, true)).await;
}

async fn deliver(app: &App, group: &GroupChat, until_empty: bool) {
    let mut db_wait = Duration::from_millis(500);
    // Failed tries of the message at hand, 429s aside (they carry their own pause).
    let mut streak = 0;
    loop {
        let pending = match app.store.next_pending().await {
            Ok(Some(p)) => {
                db_wait = Duration::from_millis(500);
                p
            }
            Ok(None) if until_empty => return,
            Ok(None) => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), app.outbox_ready.notified()).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the outbox cannot be read; trying again");
                tokio::time::sleep(db_wait).await;
                db_wait = (db_wait * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(why) = &pending.message {
            tracing::error!(outbox = pending.id, error = %why, "an outbox row is not a message; given up");
            let _ = app.store.mark_failed(pending.id, why, true).await;
            continue;
        }
        match send(app, group, &pending).await {
            Ok(remember) => {
                streak = 0;
                if pending.attempts > 0 {
                    tracing::info!(
                        outbox = pending.id,
                        tries = pending.attempts + 1,
                        "delivered after waiting for Telegram"
                    );
                }
                let marked = patiently("marking a message sent", || async {
                    Ok(app.store.mark_sent(pending.id, remember).await?)
                })
                .await;
                if let Err(e) = marked {
                    tracing::error!(outbox = pending.id, error = %e, "could not mark a message sent");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) => match classify(e, pending.attempts) {
                failure @ (Failure::RetryAfter(..) | Failure::Retry(_)) => {
                    let (wait, why) = match failure {
                        Failure::RetryAfter(wait, why) => (wait, why),
                        Failure::Retry(why) => {
                            streak += 1;
                            (pause(streak - 1), why)
                        }
                        Failure::GiveUp(why) => (Duration::ZERO, why),
                    };
                    tracing::warn!(outbox = pending.id, attempt = pending.attempts + 1, retry_in_secs = wait.as_secs_f32(), error = %why, "Telegram did not take a message; trying again");
                    let _ = app.store.mark_failed(pending.id, &why, false).await;
                    tokio::time::sleep(wait).await;
                }
                Failure::GiveUp(why) => {
                    streak = 0;
                    tracing::error!(outbox = pending.id, error = %why, "Telegram refused a message; given up, the next one goes on");
                    let _ = app.store.mark_failed(pending.id, &why, true).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_half_a_minute() {
        let secs: Vec<u64> = (0..8).map(|a| pause(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn telegram_being_away_is_retried_and_a_refusal_given_up() {
        let retry = |e| matches!(classify(e, 0), Failure::Retry(..) | Failure::RetryAfter(..));
        assert!(retry(RequestError::RetryAfter(
            teloxide::types::Seconds::from_seconds(3)
        )));
        assert!(retry(RequestError::Io(Arc::new(std::io::Error::other(
            "reset"
        )))));
        assert!(retry(RequestError::Api(ApiError::Unknown(
            "Internal Server Error".into()
        ))));
        assert!(!retry(RequestError::Api(ApiError::ChatNotFound)));
        assert!(!retry(RequestError::Api(ApiError::MessageToEditNotFound)));
        // An unknown API error is not tried forever.
        assert!(matches!(
            classify(
                RequestError::Api(ApiError::Unknown("x".into())),
                API_ERROR_TRIES
            ),
            Failure::GiveUp(_)
        ));
    }
}
