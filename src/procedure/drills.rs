//! The restore drill: `/drill` by the Kasubdit or a Kasi, and every `RESTORE_DRILL_DAYS` from
//! `RESTORE_DRILL_AT`. One mailbox of the newest verified backup (chosen by
//! [`crate::domain::choose_mailbox`]) is restored into a scratch copy no user reads, compared
//! with its archive and the count the backup recorded, and the copy removed; the verdict is said
//! in the group and kept in the daily log, one transaction.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::domain::{
    choose_mailbox, drill_due, DrillCandidate, DrillFacts, OrderStatus, Role, UserId,
};
use crate::outbox::Outgoing;
use crate::procedure::app::App;
use crate::storage::DrillStatus;

/// `/drill`: the Kasubdit or a Kasi runs a drill now.
pub async fn ask(app: &Arc<App>, by: UserId) -> Result<()> {
    let c = &app.catalog;
    let roster = &app.settings.roster;
    if !(roster.has(by, Role::Kasubdit) || roster.has(by, Role::Kasi)) {
        app.chat.say(&c.drill_usage_refused()).await?;
        return Ok(());
    }
    if app.engine.restores.is_none() {
        app.chat.say(&c.restore_no_engine()).await?;
        return Ok(());
    }
    if busy(app).await? {
        app.chat.say(&c.drill_busy()).await?;
        return Ok(());
    }
    // A drill takes as long as a restore: the group's other commands are not held up meanwhile.
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = drill(&app, Some(by)).await {
            let _ = app.chat.say(&app.failure_reply(&e)).await;
        }
    });
    Ok(())
}

/// A backup running, or a restore asked or running: the mail server is the drill's too.
async fn busy(app: &App) -> Result<bool> {
    let running = app
        .store
        .active_order()
        .await?
        .is_some_and(|o| o.status == OrderStatus::Started);
    Ok(running || app.store.restore_open().await?)
}

/// Checks once a minute whether a scheduled drill is due, until the bot stops.
pub async fn run(app: Arc<App>) {
    loop {
        if let Err(e) = drill_if_due(&app, Utc::now()).await {
            tracing::warn!(error = %e, "could not check whether a restore drill is due");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Runs the scheduled drill if one is due at `now`; returns whether it ran.
pub async fn drill_if_due(app: &Arc<App>, now: DateTime<Utc>) -> Result<bool> {
    let s = &app.settings;
    let Some(engine) = app.engine.restores.as_ref() else {
        return Ok(false);
    };
    if s.drill_every_days == 0 {
        return Ok(false);
    }
    let has_backup = app
        .store
        .newest_verified_backup(&engine.backup_root())
        .await?
        .is_some();
    let facts = DrillFacts {
        last_drill: app
            .store
            .last_drill_at()
            .await?
            .map(|t| t.with_timezone(&s.timezone).date_naive()),
        has_backup,
        busy: busy(app).await?,
    };
    let local = now.with_timezone(&s.timezone).naive_local();
    if !drill_due(local, s.drill_at, s.drill_every_days, facts) {
        return Ok(false);
    }
    drill(app, None).await?;
    Ok(true)
}

/// One drill: the mailbox chosen, the drill recorded as running, the engine's restore into a
/// scratch copy, and the verdict with its message in one transaction.
async fn drill(app: &Arc<App>, asked_by: Option<UserId>) -> Result<()> {
    let c = &app.catalog;
    let Some(engine) = app.engine.restores.clone() else {
        return Ok(());
    };
    let newest = app
        .store
        .newest_verified_backup(&engine.backup_root())
        .await?;
    let Some(newest) = newest else {
        if asked_by.is_some() {
            app.chat.say(&c.drill_no_backup()).await?;
        }
        return Ok(());
    };
    let last = app.store.last_drilled().await?;
    let tz = app.settings.timezone;
    // Zimbra's scratch account is backed up like any other (empty): it is never drilled.
    let scratch = app
        .settings_read
        .engine()
        .and_then(|e| e.drill_account.clone());
    let mut candidates: Vec<DrillCandidate> = newest
        .archives
        .iter()
        .filter(|(account, _, _)| Some(account) != scratch.as_ref())
        .map(|(account, _, _)| DrillCandidate {
            account: account.clone(),
            last_drilled: last.get(account).map(|t| t.with_timezone(&tz).date_naive()),
        })
        .collect();
    // A mailbox whose account the server no longer has is not drilled (a Dovecot scratch copy
    // is written as the account's user): another is chosen.
    let chosen = loop {
        let Some(chosen) = choose_mailbox(&candidates, app.today(), random()).cloned() else {
            if asked_by.is_some() {
                app.chat.say(&c.drill_no_backup()).await?;
            }
            return Ok(());
        };
        match engine.check_target(&chosen.account).await {
            Err(crate::engine::restore::RestoreError::TargetMissing(_)) => {
                candidates.retain(|c| c.account != chosen.account);
            }
            _ => break chosen,
        }
    };
    let Some((account, sha256, ordered_count)) = newest
        .archives
        .iter()
        .find(|(a, _, _)| *a == chosen.account)
    else {
        return Ok(());
    };
    let Some(row) = app
        .store
        .start_drill(&newest, account, sha256, asked_by)
        .await?
    else {
        if asked_by.is_some() {
            app.chat.say(&c.drill_busy()).await?;
        }
        return Ok(());
    };
    let asker = asked_by.map(|u| app.people.name(u));
    // Said at once, best effort: the drill, once recorded as running, always gets its verdict
    // (which goes through the outbox and waits for Telegram).
    if let Err(e) = app
        .chat
        .say_quietly(&c.drill_started(&row, asker.as_deref()))
        .await
    {
        tracing::warn!(error = %e, "could not say that a drill starts");
    }
    tracing::info!(drill = row.id, account = %row.account, folder = %row.folder, "restore drill");
    let started = Utc::now();
    let result = engine
        .drill(&row.folder, &row.account, &row.sha256, Box::new(|_| {}))
        .await
        .and_then(|r| with_the_orders_count(r, *ordered_count));
    let took = Utc::now() - started;
    let passed = result.as_ref().is_ok_and(|r| r.complete());
    let text = c.drill_done(&row, &result, took, &answerable(app));
    let (compared, recorded, report, error) = match &result {
        Ok(r) => (
            Some(r.in_backup() as u64),
            r.recorded,
            serde_json::to_value(r).ok(),
            r.why_incomplete(),
        ),
        Err(e) => (None, None, None, Some(e.to_string())),
    };
    let status = if passed {
        DrillStatus::Passed
    } else {
        DrillStatus::Failed
    };
    let today = app.today();
    crate::storage::patiently("the drill's result", || async {
        Ok(app
            .store
            .finish_drill(
                row.id,
                status,
                (compared, recorded),
                report.as_ref(),
                error.as_deref(),
                today,
                &[Outgoing::say(text.clone())],
            )
            .await?)
    })
    .await?;
    app.outbox_ready.notify_one();
    Ok(())
}

/// Who a failed drill is said to: the Kasubdit and the Kasi, mentioned.
fn answerable(app: &App) -> String {
    format!(
        "{}, {}",
        app.mention_role(Role::Kasubdit),
        app.mention_role(Role::Kasi)
    )
}

/// The drill's report judged against the count the backup order recorded in the database too:
/// the folder's own record, when it is missing, is the order's; when it differs, the drill fails.
fn with_the_orders_count(
    mut r: crate::engine::restore::RestoreReport,
    ordered: Option<u64>,
) -> Result<crate::engine::restore::RestoreReport, crate::engine::restore::RestoreError> {
    match (ordered, r.recorded) {
        (Some(db), Some(folder)) if db != folder => {
            Err(crate::engine::restore::RestoreError::Server(format!(
                "the folder's summary.json records {folder} messages in {}, the backup order recorded {db}",
                r.file
            )))
        }
        (Some(db), None) => {
            r.recorded = Some(db);
            Ok(r)
        }
        _ => Ok(r),
    }
}

/// Drills that were running when the bot stopped end as failed, said in the group (their
/// scratch copy is removed with the next restore's stale stages).
pub async fn fail_interrupted(app: &App) -> Result<()> {
    for row in app.store.running_drills().await? {
        let why = app.catalog.drill_interrupted();
        let e = crate::engine::restore::RestoreError::Server(why.clone());
        let text =
            app.catalog
                .drill_done(&row, &Err(e), Utc::now() - row.started_at, &answerable(app));
        app.store
            .finish_drill(
                row.id,
                DrillStatus::Failed,
                (None, None),
                None,
                Some(&why),
                app.today(),
                &[Outgoing::say(text)],
            )
            .await?;
    }
    Ok(())
}

/// A random number for the choice of mailbox: std's per-process random hash keys, so no crate
/// is added for it.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
