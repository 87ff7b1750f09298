//! Runs the engine for an order (steps 3–6) in the background: live progress edited in one group
//! message, each step's times saved with a short message, and how the run ended handed back to
//! the chain (`chain.rs`), which spawns it and makes that ending its next move — imports
//! point one way. A database outage does not stop the run: step records wait, in order, until
//! PostgreSQL is back; live edits that Telegram does not take are skipped, not fatal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch};

use crate::domain::{Event, OrderId, OrderStatus, SopStep};
use crate::engine::{BackupReport, EngineError, ErrorKind, Progress, RunFolders, RunRequest, Stop};
use crate::messages::{RunEnd, RunView};
use crate::outbox::Slot;
use crate::procedure::app::App;
pub use crate::run_outcome::RunOutcome;
use crate::storage::patiently;

/// How a run ended, for the chain's last move of it.
#[derive(Debug, Clone)]
pub struct RunEnding {
    pub event: Event,
    pub outcome: RunOutcome,
    /// What the progress message ends with.
    pub end: RunEnd,
}

/// What the run records in the database as it goes, in order.
enum RunRecordEvent {
    Step(Event),
    Folders(RunFolders),
}

/// Runs the engine for order `id` (or, with `resume`, continues its run) until it ends, and
/// returns how it ended, for the chain to apply (`None`: nothing to apply — cancelled meanwhile,
/// or the bot is shutting down and resumes it at the next start).
pub async fn execute(
    app: Arc<App>,
    id: OrderId,
    resume: bool,
    stop: Stop,
) -> Result<Option<RunEnding>> {
    let ended = run(app.clone(), id, resume, stop).await;
    app.progress
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    ended
}

async fn run(app: Arc<App>, id: OrderId, resume: bool, stop: Stop) -> Result<Option<RunEnding>> {
    let engine = app.engine.backups.clone().context("no backup engine")?;
    let record = patiently("the run's folders", || async {
        Ok(app.store.run_record(id).await?)
    })
    .await?;
    let resume_from = match (resume, record.local_folder, record.server_folder) {
        (true, Some(local), Some(server)) => Some(RunFolders {
            local: local.into(),
            server,
        }),
        _ => None,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (record_tx, record_rx) = mpsc::unbounded_channel();
    let (text_tx, text_rx) = watch::channel(String::new());
    let request = RunRequest {
        date: app.today(),
        resume: resume_from,
        owner: format!("order {id}"),
        stop,
    };
    let watcher = watch_progress(app.clone(), id, rx, record_tx, text_tx);
    let editor = tokio::spawn(edit_progress(
        app.clone(),
        id,
        record.progress_message_id,
        text_rx,
    ));
    let (result, (), recorded) = tokio::join!(
        engine.run(request, tx),
        watcher,
        record_as_it_goes(&app, id, record_rx)
    );
    // The watcher is done, so the editor's channel is closed: it ends after its last edit.
    if let Err(e) = editor.await {
        tracing::warn!(order = %id, error = %e, "the progress editor stopped");
    }
    recorded?;
    let interrupted = matches!(&result, Err(e) if e.kind == ErrorKind::Interrupted);
    if !still_started(&app, id, interrupted).await? {
        return Ok(None);
    }
    Ok(Some(ending(result)))
}

/// Whether the run's end is the order's to record: not when the bot is shutting down (the order
/// stays in step 3–6 and is resumed at the next start), nor when the order was cancelled
/// meanwhile. Either way the progress message gets its end.
async fn still_started(app: &Arc<App>, id: OrderId, interrupted: bool) -> Result<bool> {
    let end_edit = |end: RunEnd| [crate::procedure::moves::progress_end(app, end)];
    if interrupted {
        if let Err(e) = app
            .store
            .enqueue(Some(id), &end_edit(RunEnd::Interrupted))
            .await
        {
            tracing::warn!(order = %id, error = %e, "could not queue the progress message's end");
        }
        return Ok(false);
    }
    let order = patiently("the order's state", || async {
        app.store.order(id).await?.context("order vanished")
    })
    .await?;
    if order.status == OrderStatus::Cancelled {
        patiently("the progress message's end", || async {
            Ok(app
                .store
                .enqueue(Some(id), &end_edit(RunEnd::Cancelled))
                .await?)
        })
        .await?;
        app.outbox_ready.notify_one();
    }
    Ok(order.status == OrderStatus::Started)
}

/// What the engine's result makes of the order: reported when every mailbox is verified,
/// failed otherwise.
fn ending(result: Result<BackupReport, EngineError>) -> RunEnding {
    let (outcome, event, end) = match result {
        Ok(report) if report.all_verified() => (
            RunOutcome::Completed(report),
            Event::Reported,
            RunEnd::Completed,
        ),
        // The order keeps the failure's evidence (plain English); the chat renders the outcome
        // in the reader's language whenever it is read. What was not copied and verified fails
        // the copy (step 6); a stopped run fails in the step it stopped in.
        failed => {
            let (step, outcome) = match failed {
                Ok(report) => (SopStep::CopyAndReport, RunOutcome::Completed(report)),
                Err(e) => (e.step, RunOutcome::Stopped(e)),
            };
            let reason = outcome.evidence().unwrap_or_default();
            (
                outcome,
                Event::Failed {
                    step: Some(step),
                    reason,
                },
                RunEnd::Failed(step),
            )
        }
    };
    RunEnding {
        event,
        outcome,
        end,
    }
}

/// Turns the engine's progress into the live text (for the editor and `/status`) and passes the
/// events worth recording on, in order. Never waits on Telegram or PostgreSQL.
async fn watch_progress(
    app: Arc<App>,
    id: OrderId,
    mut rx: mpsc::UnboundedReceiver<Progress>,
    record: mpsc::UnboundedSender<RunRecordEvent>,
    text: watch::Sender<String>,
) {
    let mut view = RunView::default();
    let mut started = std::collections::HashMap::new();
    while let Some(event) = rx.recv().await {
        match event {
            Progress::StepStarted { step, at } => {
                if !view.running.contains(&step) {
                    view.running.push(step);
                    view.running.sort();
                }
                started.insert(step, at);
                let _ = record.send(RunRecordEvent::Step(Event::StepStarted { step, at }));
            }
            Progress::StepFinished { step, at } => {
                let took = started
                    .get(&step)
                    .map(|s| (at - *s).max(chrono::TimeDelta::zero()))
                    .unwrap_or_default();
                view.running.retain(|s| *s != step);
                view.finished.retain(|(s, _)| *s != step);
                view.finished.push((step, took));
                let _ = record.send(RunRecordEvent::Step(Event::StepFinished { step, at }));
            }
            Progress::Folders(f) => {
                let _ = record.send(RunRecordEvent::Folders(f));
            }
            Progress::Exported { done, total, .. } => view.exported = Some((done, total)),
            Progress::Copy {
                files_done,
                files_total,
                bytes_done,
                bytes_total,
                rate,
                eta_secs,
            } => {
                view.copy = Some((
                    files_done,
                    files_total,
                    bytes_done,
                    bytes_total,
                    rate,
                    eta_secs,
                ))
            }
            Progress::ReadBack { done, total } => view.read_back = Some((done, total)),
            Progress::Reconnecting { attempt, of, .. } => view.reconnecting = Some((attempt, of)),
            Progress::Reconnected { .. } => {
                view.reconnecting = None;
                view.reconnects += 1;
            }
            Progress::ServerSpace { free, need, .. } => view.server_space = Some((free, need)),
        }
        let now = app.catalog.progress(&view);
        app.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, now.clone());
        text.send_if_modified(|t| {
            let changed = *t != now;
            *t = now;
            changed
        });
    }
}

/// Edits the progress message with the latest text, at most once per interval, until the
/// watcher is done. A failed edit is logged and tried again: Telegram being away does not stop
/// the run or its progress. The message is sent by the delivery worker; until its id is known
/// the latest text waits.
async fn edit_progress(
    app: Arc<App>,
    id: OrderId,
    mut message: Option<i64>,
    mut text: watch::Receiver<String>,
) {
    let interval = Duration::from_secs(app.settings.progress_interval_secs);
    let mut shown = String::new();
    let mut failing = false;
    let mut open = true;
    while open {
        let started = Instant::now();
        // A change, or the interval passing with a text not yet shown.
        match tokio::time::timeout(interval, text.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(_)) => open = false,
        }
        let now = text.borrow_and_update().clone();
        if now.is_empty() || now == shown {
            continue;
        }
        if message.is_none() {
            message = app
                .store
                .slot_message(id, Slot::ProgressMessage)
                .await
                .ok()
                .flatten();
        }
        let Some(m) = message else { continue };
        match app.chat.edit(m, &now).await {
            Ok(()) => {
                if failing {
                    tracing::info!(order = %id, "the progress message is edited again");
                }
                failing = false;
                shown = now;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(order = %id, error = %e, "could not edit the progress message; trying again");
                }
                failing = true;
            }
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

/// Saves the run's step times (each end with its short message) and folders, in order, waiting
/// out a database outage.
async fn record_as_it_goes(
    app: &Arc<App>,
    id: OrderId,
    mut rx: mpsc::UnboundedReceiver<RunRecordEvent>,
) -> Result<()> {
    while let Some(event) = rx.recv().await {
        match event {
            RunRecordEvent::Step(event) => {
                patiently("a step's record", || record(app, id, event.clone())).await?
            }
            RunRecordEvent::Folders(f) => {
                patiently("the run's folders", || async {
                    Ok(app
                        .store
                        .set_run_folders(id, &f.local.to_string_lossy(), &f.server)
                        .await?)
                })
                .await?
            }
        }
    }
    Ok(())
}

/// One step's start or end, as a move of the order. A finished step is shown in the progress
/// message, not in a message of its own: the group gets one message to watch per run.
async fn record(app: &Arc<App>, id: OrderId, event: Event) -> Result<()> {
    let moved = crate::procedure::moves::commit(app, id, vec![event], None, |_| Vec::new()).await?;
    if let Err(refusal) = moved.map(|_| ()) {
        // The order left steps 3–6 (cancelled): nothing to record.
        tracing::debug!(order = %id, %refusal, "step not recorded");
    }
    Ok(())
}
