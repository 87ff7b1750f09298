//! The running bot's shared context, built once by [`crate::startup`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use tokio::task::AbortHandle;

use crate::engine::{StopHandle, StopReason};

use crate::config::BotSettings;
use crate::domain::{OrderId, UserId};
use crate::engine::Engine;
use crate::messages::Catalog;
use crate::procedure::people::People;
use crate::storage::Store;

/// The group chat as the procedure speaks to it. The Telegram adapter implements it; the
/// procedure never sees the Telegram client. Moves speak through the outbox (stored with the
/// move); this is for what is said at once (a refusal, an answer, a live progress edit).
pub trait GroupPort: Send + Sync {
    /// The group's id now.
    fn chat_id(&self) -> i64;
    /// Sends `html`; returns the (first) message's id.
    fn say<'a>(&'a self, html: &'a str) -> BoxFuture<'a, anyhow::Result<i64>>;
    /// Like `say`, without a notification sound.
    fn say_quietly<'a>(&'a self, html: &'a str) -> BoxFuture<'a, anyhow::Result<i64>>;
    /// Replaces the text of message `id`.
    fn edit<'a>(&'a self, id: i64, html: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Removes the buttons under message `id`.
    fn remove_buttons(&self, id: i64) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Attaches a text file.
    fn attach<'a>(
        &'a self,
        file_name: &'a str,
        content: Vec<u8>,
        caption: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    /// What `/check` asks the chat service: the token, the group, the people of the roles.
    fn checks<'a>(
        &'a self,
        roster: &'a crate::domain::Roster,
    ) -> BoxFuture<'a, Vec<crate::preflight::CheckLine>>;
}

pub struct App {
    pub settings: BotSettings,
    /// Every setting as read at start, for `/check`, and the engine's settings (restores).
    pub settings_read: crate::config::SettingsReading,
    pub store: Store,
    pub catalog: Catalog,
    pub people: People,
    pub chat: Arc<dyn GroupPort>,
    /// Empty until the engine's settings are given: `/start` and `/restore` then say so, and
    /// nothing is faked.
    pub engine: Engine,
    /// Backups running now, by order, so a cancel can stop one and a second start is refused.
    pub runs: Mutex<HashMap<OrderId, RunHandle>>,
    /// The latest progress text of each running order, for `/status`.
    pub progress: Mutex<HashMap<OrderId, String>>,
    /// Wakes the delivery worker when a move has committed messages to the outbox.
    pub outbox_ready: tokio::sync::Notify,
    /// How many commands are answered, so a flood cannot silence the group.
    pub flood: Mutex<crate::domain::flood::FloodGuard>,
}

/// A backup running in the background.
pub struct RunHandle {
    pub stop: StopHandle,
    pub task: AbortHandle,
}

/// The answer to a button press, shown to the presser alone: a pop-up to acknowledge (`alert`)
/// or a passing note.
#[derive(Debug, Clone, PartialEq)]
pub struct ButtonAnswer {
    pub text: String,
    pub alert: bool,
}

impl ButtonAnswer {
    pub fn alert(text: String) -> Self {
        ButtonAnswer { text, alert: true }
    }

    pub fn toast(text: String) -> Self {
        ButtonAnswer { text, alert: false }
    }
}

impl App {
    /// Remembers the name of a person with a role from what they sent; stored when it changed.
    pub async fn learn(&self, person: crate::storage::Person) {
        if !self.settings.roster.has_any_role(person.id) {
            return;
        }
        if self.people.learn(person.clone()) {
            if let Err(e) = self.store.upsert_person(&person).await {
                tracing::warn!(error = %e, "could not store a name");
            }
        }
    }

    /// Today in the configured time zone.
    pub fn today(&self) -> NaiveDate {
        Utc::now()
            .with_timezone(&self.settings.timezone)
            .date_naive()
    }

    pub fn name_of(&self) -> impl Fn(UserId) -> String + Send + Sync + '_ {
        |id| self.people.name(id)
    }

    /// What a person is told when their command could not be carried out: that the database is
    /// away (try again shortly), or an internal error. Nothing was changed either way: a move is
    /// one transaction.
    pub fn failure_reply(&self, e: &anyhow::Error) -> String {
        if crate::storage::is_unavailable(e) {
            tracing::warn!(error = %e, "a command came while PostgreSQL is away");
            self.catalog.database_unavailable()
        } else {
            tracing::error!(error = ?e, "command failed");
            self.catalog.internal_error()
        }
    }

    /// Mentions of everyone holding `role`.
    pub fn mention_role(&self, role: crate::domain::Role) -> String {
        let holders = self.settings.roster.holders(role);
        holders
            .iter()
            .map(|id| self.people.mention(*id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Names (no notification) of everyone holding `role`.
    pub fn mention_role_names(&self, role: crate::domain::Role) -> String {
        let holders = self.settings.roster.holders(role);
        holders
            .iter()
            .map(|id| self.people.name(*id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Waits (at most `limit`) until the delivery worker has sent the outbox, so a message said
    /// at once comes after what was committed before it.
    pub async fn wait_until_sent(&self, limit: std::time::Duration) {
        let until = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < until {
            match self.store.pending_count().await {
                Ok(0) | Err(_) => return,
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    /// The latest progress of a running order.
    pub fn progress_of(&self, id: OrderId) -> Option<String> {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn is_running(&self, id: OrderId) -> bool {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .is_some_and(|h| !h.task.is_finished())
    }

    /// Whether a run of another order is still going (a cancelled one cleaning up).
    pub fn another_run_busy(&self, id: OrderId) -> bool {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(other, h)| *other != id && !h.task.is_finished())
    }

    /// Asks every running backup to stop and waits (at most `limit`) until they have cleaned up.
    pub async fn stop_runs(&self, reason: StopReason, limit: std::time::Duration) {
        let until = std::time::Instant::now() + limit;
        for run in self.runs.lock().unwrap_or_else(|p| p.into_inner()).values() {
            run.stop.stop(reason);
        }
        loop {
            let running = self
                .runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .any(|h| !h.task.is_finished());
            if !running || std::time::Instant::now() > until {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
