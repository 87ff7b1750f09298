//! A Telegram Bot API server for loopback, so the bot's real HTTP client can be exercised where
//! Telegram cannot be reached (tests, the demo).
//!
//! It answers the methods the bot uses the way Telegram does (same JSON shapes, same error
//! envelopes, long-polled `getUpdates` with `offset`/`timeout`, "message is not modified" on an
//! unchanged edit, 429 with `retry_after` when asked to) and lets a test or a script play the
//! people: [`Stub::say`] posts a user's message, [`Stub::press`] presses an inline button, and
//! [`Stub::messages`] / [`Stub::transcript`] read back what the bot sent. The same controls are
//! served over HTTP under `/control/…` for scripts.

mod api;
mod control;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use state::{CallbackAnswer, ChatEntry, SentDocument, SentMessage};

/// A person in a chat, as the stub presents them to the bot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Person {
    pub id: i64,
    pub first_name: String,
    #[serde(default)]
    pub username: Option<String>,
}

impl Person {
    pub fn new(id: i64, first_name: &str, username: &str) -> Self {
        Person {
            id,
            first_name: first_name.to_owned(),
            username: Some(username.to_owned()),
        }
    }
}

/// A chat (group or private) the updates come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Chat {
    pub id: i64,
    /// `group`, `supergroup` or `private`.
    #[serde(default = "default_chat_kind")]
    pub kind: String,
    #[serde(default)]
    pub title: Option<String>,
}

fn default_chat_kind() -> String {
    "supergroup".to_owned()
}

impl Chat {
    pub fn group(id: i64, title: &str) -> Self {
        Chat {
            id,
            kind: "supergroup".to_owned(),
            title: Some(title.to_owned()),
        }
    }
    pub fn private(person: &Person) -> Self {
        Chat {
            id: person.id,
            kind: "private".to_owned(),
            title: None,
        }
    }
}

/// A handle on a running stub server. Cloning shares the same server.
#[derive(Clone)]
pub struct Stub {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<state::State>,
    /// Bumped whenever the state changes, so long polls and waiters wake up.
    pub(crate) changed: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

impl Stub {
    /// Starts the server on `addr` (use port 0 for any free port) for a bot with `token`.
    pub async fn start(addr: SocketAddr, token: &str, bot: Person) -> std::io::Result<Stub> {
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(token.to_owned(), bot)),
            changed,
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = api::router(shared.clone()).merge(control::router(shared.clone()));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("bot-api-stub: server stopped: {e}");
            }
        });
        Ok(Stub { shared, addr })
    }

    /// The base URL to give the bot (`TELEGRAM_API_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn with<T>(&self, f: impl FnOnce(&mut state::State) -> T) -> T {
        let out = {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut st)
        };
        self.shared.bump();
        out
    }

    fn read<T>(&self, f: impl FnOnce(&state::State) -> T) -> T {
        let st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&st)
    }

    /// Makes `person` known as a member of `chat` (answers `getChatMember`).
    pub fn add_member(&self, chat: &Chat, person: &Person) {
        self.with(|st| {
            st.chats.entry(chat.id).or_insert_with(|| chat.clone());
            st.add_member(chat.id, person.clone())
        });
    }

    /// `person` writes `text` in `chat`. Returns the new message's id.
    pub fn say(&self, chat: &Chat, person: &Person, text: &str) -> i64 {
        self.with(|st| st.user_message(chat, person, text))
    }

    /// The group `old` is upgraded to the supergroup `new` (by `person`): the bot's sends to `old`
    /// are refused with `migrate_to_chat_id`; with `announce`, the service messages carrying
    /// `migrate_to_chat_id` and `migrate_from_chat_id` are delivered as updates.
    pub fn migrate_group(&self, old: &Chat, new: &Chat, person: &Person, announce: bool) {
        self.with(|st| st.migrate(old, new, person, announce));
    }

    /// `person` presses the button with `data` under the bot's message `message_id`.
    /// Returns the callback query id, or `None` when there is no such message.
    pub fn press(
        &self,
        chat: &Chat,
        person: &Person,
        message_id: i64,
        data: &str,
    ) -> Option<String> {
        self.with(|st| st.press(chat, person, message_id, data))
    }

    /// Every message the bot sent to `chat`, oldest first, as it stands now (after edits).
    pub fn messages(&self, chat_id: i64) -> Vec<SentMessage> {
        self.read(|st| st.bot_messages(chat_id))
    }

    /// Every answer the bot gave to a button press.
    pub fn callback_answers(&self) -> Vec<CallbackAnswer> {
        self.read(|st| st.callback_answers.clone())
    }

    /// The command menu last registered with `setMyCommands`.
    pub fn commands(&self) -> Option<serde_json::Value> {
        self.read(|st| st.commands.clone())
    }

    /// How many times the bot called `method` (any case, as Telegram takes it).
    pub fn calls(&self, method: &str) -> usize {
        self.read(|st| {
            st.calls
                .get(&method.to_ascii_lowercase())
                .copied()
                .unwrap_or(0)
        })
    }

    /// The next call of `method` is answered with HTTP 429 and `retry_after` seconds.
    pub fn fail_next_with_429(&self, method: &str, retry_after: u32) {
        self.with(|st| {
            st.injected
                .push((method.to_owned(), state::Injected::TooMany(retry_after)))
        });
    }

    /// The next `times` calls of `method` are answered with HTTP 500 (the call is not done).
    pub fn fail_next_with_500(&self, method: &str, times: usize) {
        self.with(|st| {
            for _ in 0..times {
                st.injected
                    .push((method.to_owned(), state::Injected::ServerError));
            }
        });
    }

    /// Forgets the failures injected and not yet answered.
    pub fn clear_failures(&self) {
        self.with(|st| st.injected.clear());
    }

    /// The chat as its members would read it: people's messages and the bot's, in order.
    pub fn transcript(&self, chat_id: i64) -> String {
        self.read(|st| st.transcript(chat_id))
    }

    /// Waits until `pred` holds over the bot's messages in `chat_id`, up to `timeout`.
    /// Returns the messages that satisfied it, or the last seen ones in the error.
    pub async fn wait_for(
        &self,
        chat_id: i64,
        timeout: Duration,
        pred: impl Fn(&[SentMessage]) -> bool,
    ) -> Result<Vec<SentMessage>, Vec<SentMessage>> {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            let msgs = self.messages(chat_id);
            if pred(&msgs) {
                return Ok(msgs);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(self.messages(chat_id)),
            }
        }
    }

    /// Waits until the bot sent a message to `chat_id` whose text contains `needle`, after the
    /// first `skip` messages. Returns that message.
    pub async fn wait_for_text(
        &self,
        chat_id: i64,
        skip: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<SentMessage, String> {
        let found = |msgs: &[SentMessage]| msgs.iter().skip(skip).any(|m| m.text.contains(needle));
        match self.wait_for(chat_id, timeout, found).await {
            Ok(msgs) => Ok(msgs.into_iter().skip(skip).find(|m| m.text.contains(needle)).expect("checked")),
            Err(msgs) => Err(format!(
                "no message containing {needle:?} in chat {chat_id} within {timeout:?}; the bot sent:\n{}",
                msgs.iter().skip(skip).map(|m| format!("  - {}", m.text)).collect::<Vec<_>>().join("\n")
            )),
        }
    }
}
