//! Sending to the group: HTML text, long texts split at Telegram's limit, edits that skip
//! unchanged text. Each message to the group waits its turn ([`super::turns`]), so one person's
//! commands do not hold up another's answer; then it goes through teloxide's `Throttle`, which
//! keeps to Telegram's rate limits and waits out a 429's `retry_after`.
//!
//! A group upgraded to a supergroup gets a new id. Telegram then answers a send to the old id
//! with `migrate_to_chat_id`, and the group gets a service message carrying it: either way the
//! bot follows the new id for the rest of the process and logs both ids (the admin puts the new
//! one in `GROUP_CHAT_ID`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;

use teloxide::adaptors::Throttle;
use teloxide::payloads::{EditMessageTextSetters, SendDocumentSetters, SendMessageSetters};
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardMarkup, InputFile, MessageId, ParseMode};
use teloxide::{ApiError, RequestError};

use super::turns::Gate;

pub type TgBot = Throttle<Bot>;

/// Telegram's limit on one message, in UTF-16 units; we split a little below it.
const MAX_TEXT: usize = 4000;

#[derive(Clone)]
pub struct GroupChat {
    pub bot: TgBot,
    /// The group's id now: `GROUP_CHAT_ID`, or the supergroup it was upgraded to.
    chat: Arc<AtomicI64>,
    /// Whose message goes to the group next.
    turns: Arc<Gate>,
}

impl GroupChat {
    /// The group `chat_id`, which takes `per_minute` messages a minute.
    pub fn new(bot: TgBot, chat_id: ChatId, per_minute: u32) -> GroupChat {
        GroupChat {
            bot,
            chat: Arc::new(AtomicI64::new(chat_id.0)),
            turns: Arc::new(Gate::new(per_minute)),
        }
    }

    /// Waits for a turn to send a message to `chat`, when that is the group. Other chats have
    /// limits of their own; edits, which `Throttle` does not count either, go at once.
    async fn turn(&self, chat: ChatId) {
        if self.is_ours(chat) {
            self.turns.wait().await;
        }
    }

    /// The group's id now.
    pub fn chat_id(&self) -> ChatId {
        ChatId(self.chat.load(Ordering::SeqCst))
    }

    /// Whether `chat` is the group the bot serves.
    pub fn is_ours(&self, chat: ChatId) -> bool {
        chat == self.chat_id()
    }

    /// The group `from` became the supergroup `to`: follow it, once. Returns whether it was ours.
    pub fn follow_migration(&self, from: ChatId, to: ChatId) -> bool {
        if from == to {
            return false;
        }
        let moved = self
            .chat
            .compare_exchange(from.0, to.0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if moved {
            tracing::warn!(
                old_chat_id = from.0,
                new_chat_id = to.0,
                "the group was upgraded to a supergroup and has a new id; following it until the \
                 bot stops: set GROUP_CHAT_ID={} in .env",
                to.0
            );
        }
        moved
    }

    /// Follows a migration Telegram answered with; returns the id to retry with, if any.
    fn migrated(&self, chat: ChatId, e: &RequestError) -> Option<ChatId> {
        match e {
            RequestError::MigrateToChatId(to) => {
                (self.follow_migration(chat, *to) || self.is_ours(*to)).then_some(*to)
            }
            _ => None,
        }
    }

    /// Sends `html` (split into several messages when too long); returns the first message's id.
    pub async fn say(&self, html: &str) -> Result<i64, RequestError> {
        self.send_to(self.chat_id(), html, false, None).await
    }

    /// Like [`say`](Self::say), without a notification sound.
    pub async fn say_quietly(&self, html: &str) -> Result<i64, RequestError> {
        self.send_to(self.chat_id(), html, true, None).await
    }

    pub async fn say_with_buttons(
        &self,
        html: &str,
        buttons: InlineKeyboardMarkup,
    ) -> Result<i64, RequestError> {
        self.send_to(self.chat_id(), html, false, Some(buttons))
            .await
    }

    pub async fn send_to(
        &self,
        chat: ChatId,
        html: &str,
        quiet: bool,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Result<i64, RequestError> {
        self.send_reply(chat, html, quiet, buttons, None).await
    }

    /// Like [`send_to`](Self::send_to), the first part replying to message `reply_to` (sent
    /// anyway when that message is gone).
    pub async fn send_reply(
        &self,
        chat: ChatId,
        html: &str,
        quiet: bool,
        buttons: Option<InlineKeyboardMarkup>,
        reply_to: Option<i64>,
    ) -> Result<i64, RequestError> {
        let parts = split(html);
        let last = parts.len().saturating_sub(1);
        let mut first = None;
        let mut chat = chat;
        for (i, part) in parts.into_iter().enumerate() {
            let send = |chat: ChatId| {
                let mut req = self
                    .bot
                    .send_message(chat, part.clone())
                    .parse_mode(ParseMode::Html)
                    .disable_notification(quiet);
                if i == last {
                    if let Some(b) = buttons.clone() {
                        req = req.reply_markup(b);
                    }
                }
                if let Some(to) = reply_to.filter(|_| i == 0) {
                    req = req.reply_parameters(
                        teloxide::types::ReplyParameters::new(MessageId(to as i32))
                            .allow_sending_without_reply(),
                    );
                }
                req
            };
            self.turn(chat).await;
            let msg = match send(chat).await {
                Ok(msg) => msg,
                Err(e) => match self.migrated(chat, &e) {
                    Some(to) => {
                        chat = to;
                        self.turn(chat).await;
                        send(chat).await?
                    }
                    None => return Err(e),
                },
            };
            first.get_or_insert(i64::from(msg.id.0));
        }
        Ok(first.unwrap_or_default())
    }

    /// Replaces the text of message `id`; an unchanged text is not an error.
    pub async fn edit(&self, id: i64, html: &str) -> Result<(), RequestError> {
        let text: String = split(html).into_iter().next().unwrap_or_default();
        let chat = self.chat_id();
        match self
            .bot
            .edit_message_text(chat, MessageId(id as i32), text)
            .parse_mode(ParseMode::Html)
            .await
        {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
            Err(e) => {
                // A message of the old group cannot be edited in the new one: only follow.
                self.migrated(chat, &e);
                Err(e)
            }
        }
    }

    /// Removes the buttons under message `id` (already gone is fine).
    pub async fn remove_buttons(&self, id: i64) -> Result<(), RequestError> {
        let chat = self.chat_id();
        match self
            .bot
            .edit_message_reply_markup(chat, MessageId(id as i32))
            .await
        {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
            Err(e) => {
                self.migrated(chat, &e);
                Err(e)
            }
        }
    }

    /// Attaches a text file (the manifest, the run summary) to the chat.
    pub async fn attach(
        &self,
        file_name: &str,
        content: Vec<u8>,
        caption: &str,
    ) -> Result<(), RequestError> {
        let send = |chat: ChatId| {
            self.bot
                .send_document(
                    chat,
                    InputFile::memory(content.clone()).file_name(file_name.to_owned()),
                )
                .caption(caption.to_owned())
                .disable_notification(true)
        };
        let chat = self.chat_id();
        self.turn(chat).await;
        match send(chat).await {
            Ok(_) => Ok(()),
            Err(e) => match self.migrated(chat, &e) {
                Some(to) => {
                    self.turn(to).await;
                    send(to).await.map(|_| ())
                }
                None => Err(e),
            },
        }
    }
}

impl crate::procedure::app::GroupPort for GroupChat {
    fn chat_id(&self) -> i64 {
        GroupChat::chat_id(self).0
    }

    fn say<'a>(&'a self, html: &'a str) -> BoxFuture<'a, anyhow::Result<i64>> {
        Box::pin(async move { Ok(GroupChat::say(self, html).await?) })
    }

    fn say_quietly<'a>(&'a self, html: &'a str) -> BoxFuture<'a, anyhow::Result<i64>> {
        Box::pin(async move { Ok(GroupChat::say_quietly(self, html).await?) })
    }

    fn edit<'a>(&'a self, id: i64, html: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { Ok(GroupChat::edit(self, id, html).await?) })
    }

    fn remove_buttons(&self, id: i64) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move { Ok(GroupChat::remove_buttons(self, id).await?) })
    }

    fn attach<'a>(
        &'a self,
        file_name: &'a str,
        content: Vec<u8>,
        caption: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { Ok(GroupChat::attach(self, file_name, content, caption).await?) })
    }

    fn checks<'a>(
        &'a self,
        roster: &'a crate::domain::Roster,
    ) -> BoxFuture<'a, Vec<crate::preflight::CheckLine>> {
        Box::pin(checks(self, roster))
    }
}

/// What `/check` asks Telegram: the token, the group, and whether each person of a role is in it.
async fn checks(
    group: &GroupChat,
    roster: &crate::domain::Roster,
) -> Vec<crate::preflight::CheckLine> {
    use crate::preflight::{CheckItem, CheckLine};
    use teloxide::types::ChatMemberKind;
    let bot = &group.bot;
    let line = |item, ok, detail: String| CheckLine { item, ok, detail };
    let mut out = vec![match bot.get_me().await {
        Ok(me) => line(CheckItem::Token, true, format!("@{}", me.username())),
        Err(e) => line(CheckItem::Token, false, e.to_string()),
    }];
    let group = group.chat_id();
    out.push(match bot.get_chat(group).await {
        Ok(chat) => line(
            CheckItem::Group,
            true,
            format!("{} ({})", chat.title().unwrap_or_default(), group.0),
        ),
        Err(e) => line(CheckItem::Group, false, format!("{}: {e}", group.0)),
    });
    for role in [
        crate::domain::Role::Kasubdit,
        crate::domain::Role::Kasi,
        crate::domain::Role::Jfu,
    ] {
        for &id in roster.holders(role).iter() {
            let member = bot
                .get_chat_member(group, teloxide::types::UserId(id.0 as u64))
                .await;
            out.push(match member {
                Ok(m) if !matches!(m.kind, ChatMemberKind::Left | ChatMemberKind::Banned(_)) => {
                    line(CheckItem::Member(role, id), true, m.user.first_name.clone())
                }
                Ok(_) => line(
                    CheckItem::Member(role, id),
                    false,
                    "not in the group".into(),
                ),
                Err(e) => line(CheckItem::Member(role, id), false, e.to_string()),
            });
        }
    }
    out
}

/// Splits at line ends so no part exceeds the limit and no HTML tag spans two parts (our texts
/// never open a tag across lines).
fn split(html: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    for line in html.split_inclusive('\n') {
        if cur.encode_utf16().count() + line.encode_utf16().count() > MAX_TEXT && !cur.is_empty() {
            parts.push(std::mem::take(&mut cur));
        }
        if line.encode_utf16().count() > MAX_TEXT {
            let mut chunk = String::new();
            for c in line.chars() {
                if chunk.len() >= MAX_TEXT {
                    parts.push(std::mem::take(&mut chunk));
                }
                chunk.push(c);
            }
            cur = chunk;
        } else {
            cur.push_str(line);
        }
    }
    if !cur.trim().is_empty() || parts.is_empty() {
        parts.push(cur);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn long_texts_split_at_line_ends_under_the_limit() {
        let line = format!("{}\n", "x".repeat(100));
        let text = line.repeat(100);
        let parts = split(&text);
        assert_eq!(parts.len(), 3);
        assert!(parts
            .iter()
            .all(|p| p.len() <= super::MAX_TEXT && p.ends_with('\n')));
        assert_eq!(parts.concat(), text);
        assert_eq!(split("short"), vec!["short".to_owned()]);
    }
}
