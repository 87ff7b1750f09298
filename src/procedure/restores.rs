//! A restore asked in the chat: `/restore` by a Kasi records the request with its approval
//! buttons; a Kasubdit (not the asker) approves or refuses; the bot then runs the restore with a
//! progress message, posts the report and records it in the daily log. Each step of a request is
//! one transaction with what it says.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::domain::{
    can_be_decided, decide as decide_request, is_withdrawal, parse_restore_all, parse_restore_args,
    restore_button_data, withdraw as withdraw_request, DecisionRefused, Refusal, RestoreStatus,
    Role, UserId, EVERY_ACCOUNT,
};
use crate::engine::rebuild::RebuildSummary;
use crate::engine::restore::{self, RestoreError};
use crate::engine::Restores;
use crate::outbox::{Button, Outgoing};
use crate::procedure::app::{App, ButtonAnswer};
use crate::storage::{BackupFacts, NewRestore, RestoreRow, Store, StoreError};

/// `/restore FOLDER ACCOUNT [TARGET]` by a Kasi, or `/restore batal` (withdraw). Everything is
/// checked when asked, so the approver decides on facts: the folder is one the bot made and
/// verified, a backup order recorded the archive with this hash, the target account exists,
/// and someone other than the asker can decide.
pub async fn ask(app: &Arc<App>, by: UserId, arg: &str) -> Result<()> {
    let c = &app.catalog;
    if is_withdrawal(arg) {
        return withdraw(app, by).await;
    }
    let roster = &app.settings.roster;
    if !roster.has(by, Role::Kasi) {
        let refusal = Refusal::WrongRole {
            needed: vec![Role::Kasi],
        };
        app.chat.say(&c.refusal(&refusal, &app.name_of())).await?;
        return Ok(());
    }
    let every = parse_restore_all(arg);
    let Some((folder, account, into)) = parse_restore_args(arg) else {
        app.chat.say(&c.restore_usage()).await?;
        return Ok(());
    };
    if !can_be_decided(roster, by) {
        app.chat.say(&c.restore_undecidable()).await?;
        return Ok(());
    }
    let Some(engine) = app.engine.restores.clone() else {
        app.chat.say(&c.restore_no_engine()).await?;
        return Ok(());
    };
    if app.store.restore_open().await? {
        app.chat.say(&c.restore_busy()).await?;
        return Ok(());
    }
    // Reading a big archive and asking the mail server take a while: the group's other commands
    // are not held up meanwhile.
    let app = app.clone();
    tokio::spawn(async move {
        let checked = match every {
            Some(folder) => check_and_ask_all(&app, engine.as_ref(), by, folder).await,
            None => check_and_ask(&app, engine.as_ref(), by, folder, account, into).await,
        };
        if let Err(e) = checked {
            let _ = app.chat.say(&app.failure_reply(&e)).await;
        }
    });
    Ok(())
}

/// The checks of a restore request that take time, then the request with its buttons.
async fn check_and_ask(
    app: &Arc<App>,
    engine: &dyn Restores,
    by: UserId,
    folder: String,
    account: String,
    into: String,
) -> Result<()> {
    let c = &app.catalog;
    // The whole archive is read now, so a damaged or replaced one is refused before anyone is
    // asked to approve it.
    let archive = match engine.check_backup(&folder, &account).await {
        Ok(a) => a,
        Err(e) => {
            app.chat.say(&c.restore_refused_now(&e)).await?;
            return Ok(());
        }
    };
    let root = engine.backup_root();
    let recorded = recorded_backup(&app.store, &root, &folder, &account, &archive.sha256).await?;
    let backup = match recorded {
        Ok(backup) => backup,
        Err(e) => {
            app.chat.say(&c.restore_refused_now(&e)).await?;
            return Ok(());
        }
    };
    // An account the server no longer has is made again first, when the folder's account
    // directory holds it and a backup order recorded that directory.
    let creates = match engine.check_target(&into).await {
        Ok(()) => None,
        Err(e @ RestoreError::TargetMissing(_)) if into == account => {
            match rebuildable(app, engine, &folder, &account).await? {
                Some(found) => Some(found),
                None => {
                    app.chat.say(&c.restore_refused_now(&e)).await?;
                    return Ok(());
                }
            }
        }
        Err(e) => {
            app.chat.say(&c.restore_refused_now(&e)).await?;
            return Ok(());
        }
    };
    let asked = NewRestore {
        folder: &folder,
        account: &account,
        into: &into,
        by,
        backup: &backup,
        expires_at: expiry(app),
        creates: creates.as_ref().map(|(sha, _)| sha.as_str()),
    };
    let making: &[String] = creates.as_ref().map_or(&[], |(_, also)| also.as_slice());
    record_request(app, &asked, making).await
}

/// When a request asked now expires undecided (`RESTORE_REQUEST_EXPIRY_SECS`).
fn expiry(app: &App) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::TimeDelta::seconds(app.settings.restore_expiry_secs as i64)
}

/// The request recorded with its message (one transaction), or "busy" when another restore is
/// waiting or running.
async fn record_request(app: &Arc<App>, asked: &NewRestore<'_>, making: &[String]) -> Result<()> {
    let recorded = app
        .store
        .ask_restore(asked, |id| request_message(app, id, asked, making))
        .await;
    match recorded {
        Ok(_) => app.outbox_ready.notify_one(),
        Err(StoreError::AlreadyActive) => {
            app.chat.say(&app.catalog.restore_busy()).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// `/restore FOLDER semua`: the folder's account directory read whole, the backup order that
/// recorded it, then the request saying what the directory holds.
async fn check_and_ask_all(
    app: &Arc<App>,
    engine: &dyn Restores,
    by: UserId,
    folder: String,
) -> Result<()> {
    let c = &app.catalog;
    let (sha256, counts) = match engine.check_directory(&folder).await {
        Ok(found) => found,
        Err(e) => {
            app.chat.say(&c.restore_refused_now(&e)).await?;
            return Ok(());
        }
    };
    let recorded = app
        .store
        .directory_facts(&engine.backup_root(), &folder, &sha256)
        .await?;
    let Some((backup, _)) = recorded else {
        let e = RestoreError::NotRecorded {
            folder: folder.clone(),
            account: crate::engine::files::DIRECTORY_FILE.into(),
        };
        app.chat.say(&c.restore_refused_now(&e)).await?;
        return Ok(());
    };
    let asked = NewRestore {
        folder: &folder,
        account: EVERY_ACCOUNT,
        into: EVERY_ACCOUNT,
        by,
        backup: &backup,
        expires_at: expiry(app),
        creates: Some(&sha256),
    };
    record_request(app, &asked, &[c.counts_text(&counts)]).await
}

/// The one rule for what may be restored, at the terminal and in the chat: the archive of
/// `account` in `folder` (under `root`) with content `sha256` is restored only when a backup
/// order recorded it so. The folder's own files are not enough: whoever can write the disk can
/// write them too.
pub async fn recorded_backup(
    store: &Store,
    root: &std::path::Path,
    folder: &str,
    account: &str,
    sha256: &str,
) -> Result<Result<BackupFacts, RestoreError>, StoreError> {
    Ok(store
        .backup_facts(root, folder, account, sha256)
        .await?
        .ok_or_else(|| RestoreError::NotRecorded {
            folder: folder.to_owned(),
            account: account.to_owned(),
        }))
}

/// The same rule for the account directory of `folder`: accounts are made again from it only
/// when a backup order recorded it with content `sha256`.
pub async fn directory_recorded(
    store: &Store,
    root: &std::path::Path,
    folder: &str,
    sha256: &str,
) -> Result<bool, StoreError> {
    Ok(store
        .directory_recorded(root, folder, sha256)
        .await?
        .is_some())
}

/// The account directory's SHA-256 and what else rebuilding `account` makes, when backup `folder`
/// can make the account again: its directory holds it, the server lacks it, and a backup order
/// recorded that directory. `None` otherwise.
async fn rebuildable(
    app: &Arc<App>,
    engine: &dyn Restores,
    folder: &str,
    account: &str,
) -> Result<Option<(String, Vec<String>)>> {
    let Ok((sha256, plan)) = engine.check_rebuild(folder, account).await else {
        return Ok(None);
    };
    let root = engine.backup_root();
    if plan.exists || !directory_recorded(&app.store, &root, folder, &sha256).await? {
        return Ok(None);
    }
    let mut making: Vec<String> = plan
        .filters
        .iter()
        .map(|(f, _)| format!("filter {f}"))
        .collect();
    making.extend(plan.also);
    Ok(Some((sha256, making)))
}

/// The request as the group reads it, with the approve and refuse buttons; `making`: what else
/// is made with an account made again.
fn request_message(app: &App, id: i64, asked: &NewRestore<'_>, making: &[String]) -> Outgoing {
    let c = &app.catalog;
    let row = RestoreRow {
        id,
        folder: asked.folder.to_owned(),
        account: asked.account.to_owned(),
        into: asked.into.to_owned(),
        status: RestoreStatus::Asked,
        asked_by: asked.by,
        asked_at: chrono::Utc::now(),
        decided_by: None,
        decided_at: None,
        ended_at: None,
        report: None,
        error: None,
        backup: Some(asked.backup.clone()),
        expires_at: Some(asked.expires_at),
        creates: asked.creates.map(str::to_owned),
    };
    let ran_by = asked.backup.ran_by.map(|u| app.people.name(u));
    let (yes, no) = c.restore_buttons();
    Outgoing::Say {
        html: c.restore_asked(
            &row,
            &app.people.mention(asked.by),
            &app.mention_role(Role::Kasubdit),
            ran_by.as_deref(),
            making,
        ),
        quiet: false,
        buttons: vec![
            Button {
                text: yes,
                data: restore_button_data(id, true),
            },
            Button {
                text: no,
                data: restore_button_data(id, false),
            },
        ],
        remember: None,
        reply_to: None,
    }
}

/// `/restore batal`: the asker or a Kasubdit takes back the request waiting for a decision.
async fn withdraw(app: &Arc<App>, by: UserId) -> Result<()> {
    let c = &app.catalog;
    let Some(waiting) = app.store.waiting_restore().await? else {
        app.chat.say(&c.restore_nothing_to_withdraw()).await?;
        return Ok(());
    };
    let who = app.people.mention(by);
    let moved = app
        .store
        .move_restore(
            waiting.id,
            |r| {
                let status = withdraw_request(&app.settings.roster, r.status, r.asked_by, by)?;
                Ok((status, vec![Outgoing::say(c.restore_withdrawn(r, &who))]))
            },
            Some(by),
        )
        .await?;
    match moved {
        Ok(_) => app.outbox_ready.notify_one(),
        Err(why) => {
            app.chat.say(&c.restore_decision_refused(why)).await?;
        }
    }
    Ok(())
}

/// Ends the requests nobody decided in time, each with a message; checked every few seconds
/// until the bot stops.
pub async fn expire(app: Arc<App>) {
    let every = std::time::Duration::from_secs((app.settings.restore_expiry_secs / 4).clamp(1, 30));
    loop {
        if let Err(e) = expire_due(&app).await {
            tracing::warn!(error = %e, "could not end the restore requests that expired");
        }
        tokio::time::sleep(every).await;
    }
}

async fn expire_due(app: &Arc<App>) -> Result<()> {
    let mut ended = false;
    for id in app.store.expired_restores().await? {
        let moved = app
            .store
            .move_restore(
                id,
                |r| {
                    let due = r.expires_at.is_some_and(|t| t <= chrono::Utc::now());
                    if r.status != RestoreStatus::Asked || !due {
                        return Err(());
                    }
                    let kasi = app.people.mention(r.asked_by);
                    Ok((
                        RestoreStatus::Expired,
                        vec![Outgoing::say(app.catalog.restore_expired(r, &kasi))],
                    ))
                },
                None,
            )
            .await?;
        ended |= moved.is_ok();
    }
    if ended {
        app.outbox_ready.notify_one();
    }
    Ok(())
}

/// A press of "approve" or "refuse" on request `id`; returns the answer to show the presser (a
/// pop-up to anyone but a Kasubdit, who decides).
pub async fn decide(
    app: &Arc<App>,
    by: UserId,
    id: i64,
    approve: bool,
    message_id: Option<i64>,
) -> ButtonAnswer {
    let text = decision(app, by, id, approve, message_id)
        .await
        .unwrap_or_else(|e| app.failure_reply(&e));
    ButtonAnswer {
        text,
        alert: !app.settings.roster.has(by, Role::Kasubdit),
    }
}

async fn decision(
    app: &Arc<App>,
    by: UserId,
    id: i64,
    approve: bool,
    message_id: Option<i64>,
) -> Result<String> {
    let c = &app.catalog;
    if app.store.restore(id).await?.is_none() {
        return Ok(c.button_stale());
    }
    let who = app.people.mention(by);
    let moved = app
        .store
        .move_restore(
            id,
            |r| {
                // Expired is expired, even before the sweep has noticed.
                if r.status == RestoreStatus::Asked
                    && r.expires_at.is_some_and(|t| t <= chrono::Utc::now())
                {
                    return Err(DecisionRefused::NotWaiting(RestoreStatus::Expired));
                }
                let status =
                    decide_request(&app.settings.roster, r.status, r.asked_by, by, approve)?;
                let text = if approve {
                    c.restore_approved(r, &who)
                } else {
                    c.restore_refused(r, &who)
                };
                Ok((status, vec![Outgoing::say(text)]))
            },
            Some(by),
        )
        .await?;
    let row = match moved {
        Ok(row) => row,
        Err(why) => {
            // Buttons of a request that ended (decided, withdrawn, expired) go.
            if let (DecisionRefused::NotWaiting(_), Some(m)) = (why, message_id) {
                let _ = app.chat.remove_buttons(m).await;
            }
            return Ok(c.restore_decision_refused(why));
        }
    };
    // The buttons are spent either way.
    if let Some(m) = message_id {
        let _ = app.chat.remove_buttons(m).await;
    }
    app.outbox_ready.notify_one();
    if row.status == RestoreStatus::Running {
        spawn(app.clone(), row);
    }
    Ok(c.restore_decided_answer(approve))
}

fn spawn(app: Arc<App>, row: RestoreRow) {
    tokio::spawn(async move {
        if let Err(e) = run(&app, &row).await {
            tracing::error!(restore = row.id, error = ?e, "the restore could not be finished");
        }
    });
}

/// Edits the restore's progress `message` with what is sent on the returned channel, at most
/// every `PROGRESS_INTERVAL_SECS` (best effort); ends when the sender is dropped.
fn progress_editor(
    app: &Arc<App>,
    id: i64,
    message: Option<i64>,
) -> (
    tokio::sync::watch::Sender<Option<restore::RestoreProgress>>,
    tokio::task::JoinHandle<()>,
) {
    let every = Duration::from_secs(app.settings.progress_interval_secs.max(1));
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let app = app.clone();
    let editor = tokio::spawn(async move {
        let mut last = Instant::now() - every;
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            if let (Some(m), Some(p)) = (message, p) {
                if last.elapsed() >= every {
                    let _ = app
                        .chat
                        .edit(m, &app.catalog.restore_progress(id, &p))
                        .await;
                    last = Instant::now();
                }
            }
        }
    });
    (tx, editor)
}

/// What an approved request came to.
enum Restored {
    Mailbox(restore::RestoreReport),
    Every(RebuildSummary),
}

impl Restored {
    fn complete(&self) -> bool {
        match self {
            Restored::Mailbox(r) => r.complete(),
            Restored::Every(s) => s.complete(),
        }
    }

    /// Why it is not complete, kept with the request in the log.
    fn why_incomplete(&self) -> Option<String> {
        match self {
            Restored::Mailbox(r) => r.why_incomplete(),
            Restored::Every(s) => (!s.complete()).then(|| {
                s.failed
                    .iter()
                    .map(|(what, why)| format!("{what}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        }
    }

    fn json(&self) -> Option<serde_json::Value> {
        match self {
            Restored::Mailbox(r) => serde_json::to_value(r).ok(),
            Restored::Every(s) => serde_json::to_value(s).ok(),
        }
    }
}

type ProgressTx = tokio::sync::watch::Sender<Option<restore::RestoreProgress>>;

async fn run(app: &Arc<App>, row: &RestoreRow) -> Result<()> {
    let c = &app.catalog;
    let kasi = app.people.mention(row.asked_by);
    let result = match app.engine.restores.clone() {
        None => Err(RestoreError::Unsupported("-".into())),
        Some(engine) => {
            // Live progress: one quiet message, edited at most every few seconds (best effort),
            // after the approval that is still in the outbox.
            app.wait_until_sent(Duration::from_secs(10)).await;
            let message = app
                .chat
                .say_quietly(&c.restore_progress(row.id, &restore::RestoreProgress::Checking))
                .await
                .ok();
            let (tx, editor) = progress_editor(app, row.id, message);
            let done = if row.account == EVERY_ACCOUNT {
                restore_every(app, engine.as_ref(), row, &tx)
                    .await
                    .map(Restored::Every)
            } else {
                restore_mailbox(engine.as_ref(), row, &tx)
                    .await
                    .map(Restored::Mailbox)
            };
            drop(tx);
            let _ = editor.await;
            if let Some(m) = message {
                let ok = done.as_ref().is_ok_and(Restored::complete);
                let _ = app.chat.edit(m, &c.restore_progress_end(row.id, ok)).await;
            }
            done
        }
    };
    let today = app.today();
    let (status, report, error, text) = match &result {
        Ok(r) => (
            if r.complete() {
                RestoreStatus::Done
            } else {
                RestoreStatus::Failed
            },
            r.json(),
            r.why_incomplete(),
            match r {
                Restored::Mailbox(r) => c.restore_done(row.id, r, &kasi, row.creates.is_some()),
                Restored::Every(s) => c.restore_all_done(row.id, &row.folder, s, &kasi),
            },
        ),
        Err(e) => (
            RestoreStatus::Failed,
            None,
            Some(e.to_string()),
            c.restore_failed(row.id, e, &kasi),
        ),
    };
    crate::storage::patiently("the restore's result", || async {
        Ok(app
            .store
            .finish_restore(
                row.id,
                status,
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

/// One mailbox, its account made again first when the request said so, only from the content
/// the request was checked against.
async fn restore_mailbox(
    engine: &dyn Restores,
    row: &RestoreRow,
    tx: &ProgressTx,
) -> Result<restore::RestoreReport, RestoreError> {
    if let Some(sha256) = &row.creates {
        engine.rebuild(&row.folder, &row.account, sha256).await?;
    }
    // A request with no record of what it was checked against (from an older bot) restores
    // nothing.
    let Some(sha256) = row.backup.as_ref().map(|b| b.sha256.as_str()) else {
        return Err(RestoreError::NotRecorded {
            folder: row.folder.clone(),
            account: row.account.clone(),
        });
    };
    let request = restore::RestoreRequest {
        folder: &row.folder,
        account: &row.account,
        into: &row.into,
        sha256: Some(sha256),
    };
    engine
        .restore(
            request,
            Box::new(move |p| {
                let _ = tx.send(Some(p));
            }),
        )
        .await
}

/// Every account of the folder's directory: made again when missing, then its mail, each from
/// the archive the backup order recorded.
async fn restore_every(
    app: &Arc<App>,
    engine: &dyn Restores,
    row: &RestoreRow,
    tx: &ProgressTx,
) -> Result<RebuildSummary, RestoreError> {
    let not_recorded = || RestoreError::NotRecorded {
        folder: row.folder.clone(),
        account: crate::engine::files::DIRECTORY_FILE.into(),
    };
    let Some(sha256) = row.creates.as_deref() else {
        return Err(not_recorded());
    };
    let root = engine.backup_root();
    let (_, archives) = app
        .store
        .directory_facts(&root, &row.folder, sha256)
        .await
        .map_err(|e| RestoreError::Unreadable(format!("the database: {e}")))?
        .ok_or_else(not_recorded)?;
    let progress = move |done: usize, total: usize, account: &str| {
        let _ = tx.send(Some(restore::RestoreProgress::Rebuilding {
            account: account.to_owned(),
            done,
            total,
        }));
    };
    engine
        .rebuild_all(&row.folder, sha256, &archives, Box::new(progress))
        .await
}

/// At start: a restore that was running when the bot stopped is recorded as failed, with what
/// to do (a second restore duplicates nothing).
pub async fn fail_interrupted(app: &Arc<App>) -> Result<()> {
    for row in app.store.running_restores().await? {
        let e = app.catalog.restore_interrupted();
        let kasi = app.people.mention(row.asked_by);
        app.store
            .finish_restore(
                row.id,
                RestoreStatus::Failed,
                None,
                Some(&e.to_string()),
                app.today(),
                &[Outgoing::say(app.catalog.restore_failed(row.id, &e, &kasi))],
            )
            .await?;
    }
    app.outbox_ready.notify_one();
    Ok(())
}
