//! The reminder to the Kasubdit when no backup has been received for `REMINDER_AFTER_DAYS`:
//! checked every minute; the day's reminder is recorded with its message in one transaction, so
//! a restart neither repeats nor skips it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::domain::{reminder_due, ReminderFacts, Role};
use crate::outbox::Outgoing;
use crate::procedure::app::App;

/// Checks once a minute until the bot stops.
pub async fn run(app: Arc<App>) {
    loop {
        if let Err(e) = remind_if_due(&app, Utc::now()).await {
            tracing::warn!(error = %e, "could not check whether a reminder is due");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Sends today's reminder if it is due at `now` (and was not sent yet); returns whether it did.
pub async fn remind_if_due(app: &App, now: DateTime<Utc>) -> Result<bool> {
    let s = &app.settings;
    if s.reminder_after_days == 0 {
        return Ok(false);
    }
    let local = now.with_timezone(&s.timezone);
    let today = local.date_naive();
    let (last, since, order_active) = app.store.reminder_facts().await?;
    let day_of = |t: DateTime<Utc>| t.with_timezone(&s.timezone).date_naive();
    let facts = ReminderFacts {
        last_received: last.map(day_of),
        since: day_of(since),
        order_active,
        sent_today: app.store.reminder_sent_on(today).await?,
    };
    let Some(days) = reminder_due(
        local.naive_local(),
        s.reminder_at,
        s.reminder_after_days,
        facts,
    ) else {
        return Ok(false);
    };
    let text = app
        .catalog
        .reminder(&app.mention_role(Role::Kasubdit), days, facts.last_received);
    let sent = app
        .store
        .record_reminder(today, days, &Outgoing::say(text))
        .await?;
    if sent {
        tracing::info!(days, "reminded the Kasubdit that no backup was received");
        app.outbox_ready.notify_one();
    }
    Ok(sent)
}
