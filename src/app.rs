//! The running bot's shared context, built once by [`crate::startup`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, Utc};
use tokio::task::AbortHandle;

use crate::engine::{StopHandle, StopReason};

use crate::config::BotSettings;
use crate::domain::{OrderId, UserId};
use crate::engine::BackupEngine;
use crate::messages::Catalog;
use crate::people::People;
use crate::storage::Store;
use crate::telegram::chat::GroupChat;

pub struct App {
    pub settings: BotSettings,
    /// The variables the settings were read from, for `/check`.
    pub settings_env: HashMap<String, String>,
    pub store: Store,
    pub catalog: Catalog,
    pub people: People,
    pub group: GroupChat,
    /// `None` until the engine's settings are given: `/start` then says so, and nothing is faked.
    pub engine: Option<Arc<dyn BackupEngine>>,
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

impl App {
    /// Today in the configured time zone.
    pub fn today(&self) -> NaiveDate {
        Utc::now()
            .with_timezone(&self.settings.timezone)
            .date_naive()
    }

    pub fn name_of(&self) -> impl Fn(UserId) -> String + Send + Sync + '_ {
        |id| self.people.name(id)
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
