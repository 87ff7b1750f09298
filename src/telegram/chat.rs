//! Sending to the group: HTML text, long texts split at Telegram's limit, edits that skip
//! unchanged text. Sends go through teloxide's `Throttle`, which keeps to Telegram's rate limits
//! and waits out a 429's `retry_after`.

use teloxide::adaptors::Throttle;
use teloxide::payloads::{EditMessageTextSetters, SendDocumentSetters, SendMessageSetters};
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardMarkup, InputFile, MessageId, ParseMode};
use teloxide::{ApiError, RequestError};

pub type TgBot = Throttle<Bot>;

/// Telegram's limit on one message, in UTF-16 units; we split a little below it.
const MAX_TEXT: usize = 4000;

#[derive(Clone)]
pub struct GroupChat {
    pub bot: TgBot,
    pub chat_id: ChatId,
}

impl GroupChat {
    /// Sends `html` (split into several messages when too long); returns the first message's id.
    pub async fn say(&self, html: &str) -> Result<i64, RequestError> {
        self.send_to(self.chat_id, html, false, None).await
    }

    /// Like [`say`](Self::say), without a notification sound.
    pub async fn say_quietly(&self, html: &str) -> Result<i64, RequestError> {
        self.send_to(self.chat_id, html, true, None).await
    }

    pub async fn say_with_buttons(
        &self,
        html: &str,
        buttons: InlineKeyboardMarkup,
    ) -> Result<i64, RequestError> {
        self.send_to(self.chat_id, html, false, Some(buttons)).await
    }

    pub async fn send_to(
        &self,
        chat: ChatId,
        html: &str,
        quiet: bool,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Result<i64, RequestError> {
        let parts = split(html);
        let last = parts.len().saturating_sub(1);
        let mut first = None;
        for (i, part) in parts.into_iter().enumerate() {
            let mut req = self
                .bot
                .send_message(chat, part)
                .parse_mode(ParseMode::Html)
                .disable_notification(quiet);
            if i == last {
                if let Some(b) = buttons.clone() {
                    req = req.reply_markup(b);
                }
            }
            let msg = req.await?;
            first.get_or_insert(i64::from(msg.id.0));
        }
        Ok(first.unwrap_or_default())
    }

    /// Replaces the text of message `id`; an unchanged text is not an error.
    pub async fn edit(&self, id: i64, html: &str) -> Result<(), RequestError> {
        let text: String = split(html).into_iter().next().unwrap_or_default();
        match self
            .bot
            .edit_message_text(self.chat_id, MessageId(id as i32), text)
            .parse_mode(ParseMode::Html)
            .await
        {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the buttons under message `id` (already gone is fine).
    pub async fn remove_buttons(&self, id: i64) -> Result<(), RequestError> {
        match self
            .bot
            .edit_message_reply_markup(self.chat_id, MessageId(id as i32))
            .await
        {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Attaches a text file (the manifest, the run summary) to the chat.
    pub async fn attach(
        &self,
        file_name: &str,
        content: Vec<u8>,
        caption: &str,
    ) -> Result<(), RequestError> {
        self.bot
            .send_document(
                self.chat_id,
                InputFile::memory(content).file_name(file_name.to_owned()),
            )
            .caption(caption.to_owned())
            .disable_notification(true)
            .await?;
        Ok(())
    }
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
