//! Each person's commands in the group are answered in order, in a task of their own, beside
//! everyone else's. The group's updates are handled one by one, so an answer waiting for its
//! turn there would hold every later command of everyone; [`crate::domain::flood`] keeps each
//! person's backlog short.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::turns::answering;
use crate::domain::UserId;
use crate::procedure::app::App;

/// Per person, the last command queued: its number, and what resolves when it is done.
type Last = HashMap<UserId, (u64, oneshot::Receiver<()>)>;

#[derive(Clone, Default)]
pub struct Queues {
    last: Arc<Mutex<Last>>,
    numbers: Arc<AtomicU64>,
}

/// Tells the flood guard a command is done, however its task ends.
struct Done {
    app: Arc<App>,
    by: UserId,
}

impl Drop for Done {
    fn drop(&mut self) {
        let mut flood = self.app.flood.lock().unwrap_or_else(|p| p.into_inner());
        flood.done(self.by);
    }
}

impl Queues {
    fn last(&self) -> std::sync::MutexGuard<'_, Last> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers a command of `by` that the flood guard admitted: `job` runs after `by`'s earlier
    /// commands, and what it sends to the group goes in `by`'s lane.
    pub fn answer<F>(&self, app: Arc<App>, by: UserId, job: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (finished, after_me) = oneshot::channel::<()>();
        let number = self.numbers.fetch_add(1, Ordering::Relaxed);
        // Taken here, not in the task, so the order is the order the commands came in.
        let before = self.last().insert(by, (number, after_me)).map(|(_, rx)| rx);
        let queues = self.clone();
        tokio::spawn(async move {
            let _done = Done { app, by };
            if let Some(before) = before {
                // Done, or its task is gone: either way it is this one's turn.
                let _ = before.await;
            }
            if let Err(e) = answering(by, job).await {
                tracing::warn!(user = by.0, error = %e, "could not answer a command");
            }
            drop(finished);
            let mut last = queues.last();
            if last.get(&by).is_some_and(|(n, _)| *n == number) {
                last.remove(&by);
            }
        });
    }
}
