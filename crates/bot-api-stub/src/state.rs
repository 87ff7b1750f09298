//! What the stub remembers: the chats, their messages, the pending updates.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

use crate::{Chat, Person};

/// A message the bot sent, as it stands after any edits.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SentMessage {
    pub chat_id: i64,
    pub message_id: i64,
    /// The text as sent (with its HTML markup when `parse_mode` is HTML).
    pub text: String,
    pub parse_mode: Option<String>,
    pub disable_notification: bool,
    /// The inline keyboard, when there is one.
    pub reply_markup: Option<Value>,
    /// Earlier texts, oldest first, one per `editMessageText`.
    pub edits: Vec<String>,
    pub document: Option<SentDocument>,
    /// The message this one replies to.
    pub reply_to: Option<i64>,
}

impl SentMessage {
    /// The `callback_data` of every inline button under the message.
    pub fn button_data(&self) -> Vec<String> {
        let rows = self
            .reply_markup
            .as_ref()
            .and_then(|m| m.get("inline_keyboard"))
            .and_then(Value::as_array);
        rows.into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|b| {
                b.get("callback_data")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    }

    /// The text as a person reads it: markup removed, entities decoded.
    pub fn plain_text(&self) -> String {
        if self
            .parse_mode
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("html"))
        {
            html_to_text(&self.text)
        } else {
            self.text.clone()
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SentDocument {
    pub file_name: String,
    pub size: usize,
    pub caption: Option<String>,
    /// The content, when it is text.
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallbackAnswer {
    pub callback_query_id: String,
    pub text: Option<String>,
    pub show_alert: bool,
}

/// One line of a chat, in the order it happened.
#[derive(Debug, Clone, Serialize)]
pub enum ChatEntry {
    User {
        chat_id: i64,
        from: Person,
        text: String,
    },
    Press {
        chat_id: i64,
        from: Person,
        data: String,
    },
    Bot {
        chat_id: i64,
        message_id: i64,
    },
}

pub(crate) struct State {
    pub(crate) token: String,
    pub(crate) bot: Person,
    next_update_id: i64,
    next_message_id: i64,
    next_callback_id: u64,
    /// Updates not yet confirmed by an `offset`, oldest first.
    pub(crate) pending: Vec<Value>,
    /// Messages the bot sent, by (chat, message id).
    pub(crate) sent: BTreeMap<(i64, i64), SentMessage>,
    pub(crate) log: Vec<ChatEntry>,
    pub(crate) chats: HashMap<i64, Chat>,
    members: HashMap<(i64, i64), Person>,
    pub(crate) open_callbacks: HashMap<String, ()>,
    pub(crate) callback_answers: Vec<CallbackAnswer>,
    pub(crate) commands: Option<Value>,
    pub(crate) calls: HashMap<String, usize>,
    /// Failures to answer the next calls of a method with, in order.
    pub(crate) injected: Vec<(String, Injected)>,
    /// Groups upgraded to supergroups: old id → new id. Sends to the old id are refused with
    /// `migrate_to_chat_id`, as Telegram does.
    pub(crate) migrated: HashMap<i64, i64>,
}

/// A failure the stub answers a call with instead of doing it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Injected {
    /// HTTP 429 with `retry_after` seconds.
    TooMany(u32),
    /// HTTP 500, as Telegram answers when it has trouble of its own.
    ServerError,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl State {
    pub(crate) fn new(token: String, bot: Person) -> Self {
        State {
            token,
            bot,
            next_update_id: 1,
            next_message_id: 1,
            next_callback_id: 1,
            pending: Vec::new(),
            sent: BTreeMap::new(),
            log: Vec::new(),
            chats: HashMap::new(),
            members: HashMap::new(),
            open_callbacks: HashMap::new(),
            callback_answers: Vec::new(),
            commands: None,
            calls: HashMap::new(),
            injected: Vec::new(),
            migrated: HashMap::new(),
        }
    }

    pub(crate) fn add_member(&mut self, chat_id: i64, person: Person) {
        self.members.insert((chat_id, person.id), person);
    }

    pub(crate) fn member(&self, chat_id: i64, user_id: i64) -> Option<&Person> {
        self.members.get(&(chat_id, user_id))
    }

    fn next_message_id(&mut self) -> i64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        id
    }

    fn push_update(&mut self, kind: &str, body: Value) {
        let id = self.next_update_id;
        self.next_update_id += 1;
        self.pending.push(json!({ "update_id": id, kind: body }));
    }

    pub(crate) fn user_message(&mut self, chat: &Chat, from: &Person, text: &str) -> i64 {
        self.chats.insert(chat.id, chat.clone());
        let id = self.next_message_id();
        let mut msg = json!({
            "message_id": id,
            "from": user_json(from, false),
            "chat": chat_json(chat),
            "date": now_unix(),
            "text": text,
        });
        if let Some(entity) = command_entity(text) {
            msg["entities"] = json!([entity]);
        }
        self.push_update("message", msg);
        self.log.push(ChatEntry::User {
            chat_id: chat.id,
            from: from.clone(),
            text: text.to_owned(),
        });
        id
    }

    pub(crate) fn press(
        &mut self,
        chat: &Chat,
        from: &Person,
        message_id: i64,
        data: &str,
    ) -> Option<String> {
        let message = self.message_json(chat.id, message_id)?;
        let id = format!("cbq-{}", self.next_callback_id);
        self.next_callback_id += 1;
        self.open_callbacks.insert(id.clone(), ());
        self.push_update(
            "callback_query",
            json!({
                "id": id,
                "from": user_json(from, false),
                "message": message,
                "chat_instance": format!("ci{}", chat.id),
                "data": data,
            }),
        );
        self.log.push(ChatEntry::Press {
            chat_id: chat.id,
            from: from.clone(),
            data: data.to_owned(),
        });
        Some(id)
    }

    /// `old` becomes the supergroup `new`: members move along, sends to `old` are refused with
    /// `migrate_to_chat_id`; with `announce`, the service messages of both chats are delivered
    /// (`migrate_to_chat_id` in the old one, `migrate_from_chat_id` in the new one).
    pub(crate) fn migrate(&mut self, old: &Chat, new: &Chat, by: &Person, announce: bool) {
        self.migrated.insert(old.id, new.id);
        self.chats.insert(new.id, new.clone());
        let moving: Vec<Person> = self
            .members
            .iter()
            .filter(|((chat, _), _)| *chat == old.id)
            .map(|(_, p)| p.clone())
            .collect();
        for p in moving {
            self.members.insert((new.id, p.id), p);
        }
        if announce {
            let id = self.next_message_id();
            self.push_update(
                "message",
                json!({"message_id": id, "from": user_json(by, false), "chat": chat_json(old),
                       "date": now_unix(), "migrate_to_chat_id": new.id}),
            );
            let id = self.next_message_id();
            self.push_update(
                "message",
                json!({"message_id": id, "from": user_json(by, false), "chat": chat_json(new),
                       "date": now_unix(), "migrate_from_chat_id": old.id}),
            );
        }
    }

    /// Records a message sent by the bot and returns it as Telegram would.
    pub(crate) fn bot_sends(&mut self, mut msg: SentMessage) -> Value {
        msg.message_id = self.next_message_id();
        let key = (msg.chat_id, msg.message_id);
        self.log.push(ChatEntry::Bot {
            chat_id: msg.chat_id,
            message_id: msg.message_id,
        });
        self.sent.insert(key, msg);
        self.message_json(key.0, key.1).unwrap_or(Value::Null)
    }

    /// The JSON of a message the bot sent.
    pub(crate) fn message_json(&self, chat_id: i64, message_id: i64) -> Option<Value> {
        let m = self.sent.get(&(chat_id, message_id))?;
        let chat = self.chats.get(&chat_id).cloned().unwrap_or(Chat {
            id: chat_id,
            kind: if chat_id > 0 {
                "private".into()
            } else {
                "supergroup".into()
            },
            title: (chat_id <= 0).then(|| "group".to_owned()),
        });
        let mut v = json!({
            "message_id": m.message_id,
            "from": user_json(&self.bot, true),
            "chat": chat_json(&chat),
            "date": now_unix(),
        });
        match &m.document {
            Some(d) => {
                v["document"] = json!({
                    "file_id": format!("doc{}", m.message_id),
                    "file_unique_id": format!("udoc{}", m.message_id),
                    "file_name": d.file_name,
                    "file_size": d.size,
                });
                if let Some(c) = &d.caption {
                    v["caption"] = json!(c);
                }
            }
            None => v["text"] = json!(m.text),
        }
        if !m.edits.is_empty() {
            v["edit_date"] = json!(now_unix());
        }
        if let Some(markup) = &m.reply_markup {
            v["reply_markup"] = markup.clone();
        }
        Some(v)
    }

    pub(crate) fn bot_messages(&self, chat_id: i64) -> Vec<SentMessage> {
        self.sent
            .range((chat_id, i64::MIN)..=(chat_id, i64::MAX))
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub(crate) fn transcript(&self, chat_id: i64) -> String {
        let mut out = String::new();
        for entry in &self.log {
            match entry {
                ChatEntry::User {
                    chat_id: c,
                    from,
                    text,
                } if *c == chat_id => {
                    out.push_str(&format!("[{}] {}\n\n", display_name(from), text));
                }
                ChatEntry::Press {
                    chat_id: c,
                    from,
                    data,
                } if *c == chat_id => {
                    out.push_str(&format!(
                        "[{}] (presses the button {data})\n\n",
                        display_name(from)
                    ));
                }
                ChatEntry::Bot {
                    chat_id: c,
                    message_id,
                } if *c == chat_id => {
                    let Some(m) = self.sent.get(&(*c, *message_id)) else {
                        continue;
                    };
                    let mut text = m.plain_text();
                    if let Some(d) = &m.document {
                        text = format!(
                            "📎 {} ({} bytes){}",
                            d.file_name,
                            d.size,
                            d.caption
                                .as_deref()
                                .map(|c| format!("\n{c}"))
                                .unwrap_or_default()
                        );
                    }
                    let edited = if m.edits.is_empty() {
                        String::new()
                    } else {
                        format!(" (edited {}×)", m.edits.len())
                    };
                    let silent = if m.disable_notification {
                        " (silent)"
                    } else {
                        ""
                    };
                    out.push_str(&format!(
                        "[{}{edited}{silent}]\n{}\n",
                        display_name(&self.bot),
                        text
                    ));
                    for data in m.button_data() {
                        out.push_str(&format!("  [button: {data}]\n"));
                    }
                    out.push('\n');
                }
                _ => {}
            }
        }
        out
    }
}

fn display_name(p: &Person) -> String {
    match &p.username {
        Some(u) => format!("{} @{u}", p.first_name),
        None => p.first_name.clone(),
    }
}

pub(crate) fn user_json(p: &Person, is_bot: bool) -> Value {
    let mut v = json!({ "id": p.id, "is_bot": is_bot, "first_name": p.first_name });
    if let Some(u) = &p.username {
        v["username"] = json!(u);
    }
    v
}

/// `getChat`'s answer: the chat with the fields a full chat info always has.
pub(crate) fn full_chat_json(c: &Chat) -> Value {
    let mut v = chat_json(c);
    v["accent_color_id"] = json!(0);
    v["max_reaction_count"] = json!(11);
    v["accepted_gift_types"] = json!({"unlimited_gifts": false, "limited_gifts": false, "unique_gifts": false, "premium_subscription": false});
    v
}

fn chat_json(c: &Chat) -> Value {
    let mut v = json!({ "id": c.id, "type": c.kind });
    if let Some(t) = &c.title {
        v["title"] = json!(t);
    }
    v
}

/// Telegram marks a leading `/command` (with an optional `@bot`) as a `bot_command` entity.
fn command_entity(text: &str) -> Option<Value> {
    if !text.starts_with('/') {
        return None;
    }
    let len: usize = text.split_whitespace().next()?.encode_utf16().count();
    Some(json!({ "type": "bot_command", "offset": 0, "length": len }))
}

/// Removes HTML tags and decodes the entities Telegram's HTML mode allows.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
