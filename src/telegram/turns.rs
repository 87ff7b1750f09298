//! Waiting for a turn to send to the group ([`crate::domain::turns`]). A message's lane is the
//! person whose command the sending task answers ([`answering`]), else the bot's own. The lane is
//! carried by the task rather than passed down, so the procedure's code, which only says things,
//! stays unaware of who is waiting for the group.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::domain::turns::{Lane, Ticket, Turn, Turns};
use crate::domain::UserId;

tokio::task_local! {
    static ANSWERING: UserId;
}

/// Runs `f` as the answer to `by`'s command: what it sends to the group goes in `by`'s lane.
pub async fn answering<F: Future>(by: UserId, f: F) -> F::Output {
    ANSWERING.scope(by, f).await
}

fn lane() -> Lane {
    ANSWERING
        .try_with(|by| Lane::Person(*by))
        .unwrap_or(Lane::Bot)
}

pub struct Gate {
    turns: Mutex<Turns>,
    /// Someone went or gave up: the next in line may be another.
    changed: Notify,
}

/// Gives the place up when the wait is cancelled (the sending task stopped).
struct Place<'a> {
    gate: &'a Gate,
    ticket: Option<Ticket>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.gate.turns().leave(t);
            self.gate.changed.notify_waiters();
        }
    }
}

impl Gate {
    /// A gate for a group that takes `per_minute` messages a minute.
    pub fn new(per_minute: u32) -> Gate {
        Gate {
            turns: Mutex::new(Turns::new(per_minute)),
            changed: Notify::new(),
        }
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until this task's lane may send one message to the group.
    pub async fn wait(&self) {
        let mut place = Place {
            gate: self,
            ticket: Some(self.turns().join(lane())),
        };
        loop {
            // Made before asking, so a change in between still wakes this wait.
            let changed = self.changed.notified();
            let turn = match &place.ticket {
                Some(t) => self.turns().ask(t, Instant::now()),
                None => return,
            };
            // Looking again every second costs nothing and bounds any missed wake-up.
            let until = match turn {
                Turn::Go => {
                    place.ticket = None;
                    self.changed.notify_waiters();
                    return;
                }
                Turn::NextAt(at) => at.min(Instant::now() + Duration::from_secs(1)),
                Turn::AfterOthers => Instant::now() + Duration::from_secs(1),
            };
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                () = changed => {}
            }
        }
    }
}
