//! Runs the engine for an order (steps 3–6) in the background: live progress edited in one group
//! message, a short message per finished step, each step's times saved, then the report (or the
//! failure report) to the Kasi. It returns how the run ended; the chain ([`crate::chain`])
//! spawns it and applies that ending, so imports point one way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use tokio::sync::mpsc;

use crate::app::App;
use crate::domain::{Event, Order, OrderId, OrderStatus, Role, SopStep};
use crate::engine::{BackupReport, ErrorKind, Progress, RunFolders, RunRequest, Stop};
use crate::messages::{RunEnd, RunView};
pub use crate::run_outcome::RunOutcome;

/// Runs the engine for order `id` (or, with `resume`, continues its run) until it ends, and
/// returns the order with the event its ending brings, for the chain to apply (`None`: nothing to
/// apply — cancelled meanwhile, or the bot is shutting down and resumes it at the next start).
pub async fn execute(
    app: Arc<App>,
    id: OrderId,
    resume: bool,
    stop: Stop,
) -> Result<Option<(Order, Event)>> {
    let ended = run(app.clone(), id, resume, stop).await;
    app.progress
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    ended
}

async fn run(
    app: Arc<App>,
    id: OrderId,
    resume: bool,
    stop: Stop,
) -> Result<Option<(Order, Event)>> {
    let engine = app.engine.clone().context("no backup engine")?;
    let record = app.store.run_record(id).await?;
    let resume_from = match (resume, record.local_folder, record.server_folder) {
        (true, Some(local), Some(server)) => Some(RunFolders {
            local: local.into(),
            server,
        }),
        _ => None,
    };
    // A resumed run's message still says how the last one ended: its first edit replaces that.
    let (progress_id, shown) = match record.progress_message_id.filter(|_| resume) {
        Some(m) => (m, String::new()),
        None => {
            let text = app.catalog.progress(&RunView::default());
            let m = app.group.say_quietly(&text).await?;
            app.store.set_progress_message(id, m).await?;
            (m, text)
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let request = RunRequest {
        date: app.today(),
        resume: resume_from,
        owner: format!("order {id}"),
        stop,
    };
    let watcher = watch_progress(app.clone(), id, progress_id, shown, rx);
    let (result, watched) = tokio::join!(engine.run(request, tx), watcher);
    if let Err(e) = watched {
        tracing::warn!(order = %id, error = ?e, "progress could not be shown");
    }
    let say_end = |end: RunEnd| {
        let app = app.clone();
        async move {
            let text = app.catalog.progress(&RunView {
                end: Some(end),
                ..RunView::default()
            });
            if let Err(e) = app.group.edit(progress_id, &text).await {
                tracing::warn!(order = %id, error = ?e, "the progress message could not be ended");
            }
        }
    };
    if matches!(&result, Err(e) if e.kind == ErrorKind::Interrupted) {
        // The bot is shutting down: the order stays in step 3–6 and is resumed at the next start.
        say_end(RunEnd::Interrupted).await;
        return Ok(None);
    }
    let order = app.store.order(id).await?.context("order vanished")?;
    if order.status != OrderStatus::Started {
        if order.status == OrderStatus::Cancelled {
            say_end(RunEnd::Cancelled).await;
        }
        return Ok(None);
    }
    let c = &app.catalog;
    let (outcome, event, end) = match result {
        Ok(report) if report.all_verified() => (
            RunOutcome::Completed(report),
            Event::Reported,
            RunEnd::Completed,
        ),
        Ok(report) => {
            let failed: Vec<String> = report.failed().map(|m| m.account.clone()).collect();
            let reason = c.mailboxes_failed(&failed, report.mailboxes.len());
            // What was not copied and verified fails the copy (step 6).
            let step = SopStep::CopyAndReport;
            (
                RunOutcome::Completed(report),
                Event::Failed {
                    step: Some(step),
                    reason,
                },
                RunEnd::Failed(step),
            )
        }
        Err(e) => {
            let reason = c.failure_reason(&e);
            let step = e.step;
            (
                RunOutcome::Stopped(e),
                Event::Failed {
                    step: Some(step),
                    reason,
                },
                RunEnd::Failed(step),
            )
        }
    };
    app.store
        .set_report(id, &serde_json::to_value(&outcome)?)
        .await?;
    say_end(end).await;
    Ok(Some((order, event)))
}

/// Turns progress events into saved step times, step messages and throttled edits.
async fn watch_progress(
    app: Arc<App>,
    id: OrderId,
    message_id: i64,
    mut shown: String,
    mut rx: mpsc::UnboundedReceiver<Progress>,
) -> Result<()> {
    let interval = Duration::from_secs(app.settings.progress_interval_secs);
    let mut view = RunView::default();
    let mut last_edit = Instant::now() - interval;
    loop {
        let event = tokio::time::timeout(interval, rx.recv()).await;
        match event {
            Ok(None) => break,
            Ok(Some(event)) => match &event {
                Progress::StepStarted { step, at } => {
                    view.step = Some(*step);
                    record(
                        &app,
                        id,
                        Event::StepStarted {
                            step: *step,
                            at: *at,
                        },
                    )
                    .await?;
                }
                Progress::StepFinished { step, at } => {
                    record(
                        &app,
                        id,
                        Event::StepFinished {
                            step: *step,
                            at: *at,
                        },
                    )
                    .await?;
                    if let Some(order) = app.store.order(id).await? {
                        app.group
                            .say_quietly(&app.catalog.step_done(&order, *step, Utc::now()))
                            .await?;
                    }
                }
                Progress::Folders(f) => {
                    app.store
                        .set_run_folders(id, &f.local.to_string_lossy(), &f.server)
                        .await?;
                }
                Progress::Exported { done, total, .. } => view.exported = Some((*done, *total)),
                Progress::Copy {
                    files_done,
                    files_total,
                    bytes_done,
                    bytes_total,
                    rate,
                    eta_secs,
                } => {
                    view.copy = Some((
                        *files_done,
                        *files_total,
                        *bytes_done,
                        *bytes_total,
                        *rate,
                        *eta_secs,
                    ))
                }
                Progress::ReadBack { done, total } => view.read_back = Some((*done, *total)),
                Progress::Reconnecting { attempt, of, .. } => {
                    view.reconnecting = Some((*attempt, *of))
                }
                Progress::Reconnected { .. } => {
                    view.reconnecting = None;
                    view.reconnects += 1;
                }
                Progress::ServerSpace { free, need, .. } => {
                    view.server_space = Some((*free, *need))
                }
            },
            Err(_) => {} // quiet for a while: show what we have
        }
        let text = app.catalog.progress(&view);
        app.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, text.clone());
        if text != shown && last_edit.elapsed() >= interval {
            app.group.edit(message_id, &text).await?;
            shown = text;
            last_edit = Instant::now();
        }
    }
    Ok(())
}

async fn record(app: &Arc<App>, id: OrderId, event: Event) -> Result<()> {
    let order = app.store.order(id).await?.context("order vanished")?;
    if order.status != OrderStatus::Started {
        return Ok(());
    }
    let (next, _) = order
        .apply(&app.settings.roster, event, Utc::now())
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    app.store.save(&order, &next).await?;
    Ok(())
}

pub async fn stored_outcome(app: &App, id: OrderId) -> Result<Option<RunOutcome>> {
    let record = app.store.run_record(id).await?;
    Ok(record.report.map(serde_json::from_value).transpose()?)
}

/// The report to the Kasi (end of step 6), or the failure report.
pub fn report_text(app: &App, order: &Order, outcome: Option<&RunOutcome>) -> String {
    let kept_verified = match outcome {
        Some(RunOutcome::Stopped(e)) => e
            .folders
            .as_ref()
            .is_some_and(|f| holds_verified_files(&f.local)),
        _ => false,
    };
    app.catalog.report(
        order,
        outcome,
        &app.mention_role(Role::Kasi),
        kept_verified,
        Utc::now(),
        &app.name_of(),
    )
}

/// Whether a local folder holds files verified by a run (its index lists at least one).
fn holds_verified_files(folder: &std::path::Path) -> bool {
    std::fs::metadata(folder.join(crate::engine::local::VERIFIED_INDEX)).is_ok_and(|m| m.len() > 0)
}

/// The one-line summary kept in the daily log.
pub fn summary_line(app: &App, order: &Order, outcome: Option<&RunOutcome>) -> String {
    app.catalog.summary(order, outcome, &app.name_of())
}

/// Attaches `SHA256SUMS` of the run to the chat, so the report carries its proof.
pub async fn attach_manifest(app: &App, report: &BackupReport) {
    let path = report.folders.local.join("SHA256SUMS");
    match tokio::fs::read(&path).await {
        Ok(content) => {
            if let Err(e) = app
                .group
                .attach("SHA256SUMS.txt", content, "SHA256SUMS")
                .await
            {
                tracing::warn!(error = %e, "could not attach the manifest");
            }
        }
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "no manifest to attach"),
    }
}
