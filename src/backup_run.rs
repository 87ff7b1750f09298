//! Runs the engine for an order (steps 3–6) in the background: live progress edited in one group
//! message, a short message per finished step, each step's times saved, then the report (or the
//! failure report) to the Kasi. On start-up, an interrupted run is found and resumed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::app::App;
use crate::chain;
use crate::domain::{Event, Order, OrderId, OrderStatus, Role, SopStep};
use crate::engine::{
    BackupReport, EngineError, ErrorKind, MailboxStatus, Progress, RunFolders, RunRequest, Stop,
};
use crate::messages::{bytes, duration, esc, Lang};

/// What a run ended with, as stored with the order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Completed(BackupReport),
    Stopped(EngineError),
    /// The bot could not run or resume it (no engine after a restart, say).
    Abandoned(String),
}

/// The latest progress of each running order, for `/status`.
fn live() -> &'static Mutex<HashMap<OrderId, String>> {
    static LIVE: OnceLock<Mutex<HashMap<OrderId, String>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

pub fn live_status(_app: &App, id: OrderId) -> Option<String> {
    live()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()
}

/// Starts (or, with `resume`, continues) the run of order `id` in the background.
pub fn spawn(app: Arc<App>, id: OrderId, resume: bool) {
    let task_app = app.clone();
    let (stop_handle, stop) = Stop::pair();
    let handle = tokio::spawn(async move {
        if let Err(e) = run(task_app.clone(), id, resume, stop).await {
            tracing::error!(order = %id, error = ?e, "the backup run could not be finished");
        }
        task_app
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        live().lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    });
    app.runs.lock().unwrap_or_else(|p| p.into_inner()).insert(
        id,
        crate::app::RunHandle {
            stop: stop_handle,
            task: handle.abort_handle(),
        },
    );
}

/// On start-up: an order left in steps 3–6 is resumed, or failed with the reason when it cannot be.
pub async fn resume_unfinished(app: &Arc<App>) -> Result<()> {
    let Some(order) = app.store.active_order().await? else {
        return Ok(());
    };
    if order.status != OrderStatus::Started {
        return Ok(());
    }
    if app.engine.is_none() {
        let reason = "the bot restarted without a configured backup engine".to_owned();
        app.store
            .set_report(
                order.id,
                &serde_json::to_value(RunOutcome::Abandoned(reason.clone()))?,
            )
            .await?;
        chain::advance(app, &order, Event::Failed { reason }).await?;
        return Ok(());
    }
    app.group
        .say(&app.catalog.restarted_during_run(&order))
        .await?;
    spawn(app.clone(), order.id, true);
    Ok(())
}

async fn run(app: Arc<App>, id: OrderId, resume: bool, stop: Stop) -> Result<()> {
    let engine = app.engine.clone().context("no backup engine")?;
    let record = app.store.run_record(id).await?;
    let resume_from = match (resume, record.local_folder, record.server_folder) {
        (true, Some(local), Some(server)) => Some(RunFolders {
            local: local.into(),
            server,
        }),
        _ => None,
    };
    let progress_id = match record.progress_message_id.filter(|_| resume) {
        Some(m) => m,
        None => {
            let m = app
                .group
                .say_quietly(&progress_text(app.catalog.lang, &View::default()))
                .await?;
            app.store.set_progress_message(id, m).await?;
            m
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let request = RunRequest {
        date: app.today(),
        resume: resume_from,
        owner: format!("order {id}"),
        stop,
    };
    let watcher = watch_progress(app.clone(), id, progress_id, rx);
    let (result, watched) = tokio::join!(engine.run(request, tx), watcher);
    if let Err(e) = watched {
        tracing::warn!(order = %id, error = ?e, "progress could not be shown");
    }
    if matches!(&result, Err(e) if e.kind == ErrorKind::Interrupted) {
        // The bot is shutting down: the order stays in step 3–6 and is resumed at the next start.
        return Ok(());
    }
    let order = app.store.order(id).await?.context("order vanished")?;
    if order.status != OrderStatus::Started {
        return Ok(()); // cancelled meanwhile
    }
    let (outcome, event) = match result {
        Ok(report) if report.all_verified() => (RunOutcome::Completed(report), Event::Reported),
        Ok(report) => {
            let failed: Vec<String> = report.failed().map(|m| m.account.clone()).collect();
            let reason = format!(
                "{} of {} mailboxes failed: {}",
                failed.len(),
                report.mailboxes.len(),
                failed.join(", ")
            );
            (RunOutcome::Completed(report), Event::Failed { reason })
        }
        Err(e) => {
            let reason = e.to_string();
            (RunOutcome::Stopped(e), Event::Failed { reason })
        }
    };
    app.store
        .set_report(id, &serde_json::to_value(&outcome)?)
        .await?;
    let _ = app
        .group
        .edit(
            progress_id,
            &progress_text(
                app.catalog.lang,
                &View {
                    finished: true,
                    ..View::default()
                },
            ),
        )
        .await;
    chain::advance(&app, &order, event).await?;
    Ok(())
}

/// What the progress message shows.
#[derive(Default, Clone, PartialEq)]
struct View {
    step: Option<SopStep>,
    exported: Option<(usize, usize)>,
    copy: Option<(usize, usize, u64, u64, f64, Option<u64>)>,
    read_back: Option<(usize, usize)>,
    /// Reconnecting now: try `.0` of `.1`.
    reconnecting: Option<(u32, u32)>,
    reconnects: u32,
    /// Free bytes on the server and the export's expected need.
    server_space: Option<(u64, Option<u64>)>,
    finished: bool,
}

fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let done = done.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "[{}{}] {percent}%",
        "█".repeat(filled as usize),
        "░".repeat((WIDTH - filled) as usize),
    )
}

fn progress_text(lang: Lang, v: &View) -> String {
    let t = |id: &'static str, en: &'static str| if lang == Lang::Id { id } else { en };
    if v.finished {
        return format!(
            "⏹ {}",
            t(
                "Proses backup selesai; lihat laporan di bawah.",
                "The backup run has ended; see the report below."
            )
        );
    }
    let catalog = crate::messages::Catalog::new(lang, chrono_tz::UTC);
    let mut lines = vec![format!(
        "⏳ <b>{}</b>",
        t("Kemajuan backup", "Backup progress")
    )];
    match v.step {
        Some(step) => lines.push(format!(
            "{} {}: {}",
            t("Langkah", "Step"),
            step.number(),
            catalog.step_name(step)
        )),
        None => lines.push(t("Menyiapkan…", "Preparing…").to_owned()),
    }
    if let Some((free, need)) = v.server_space {
        let need = need
            .map(|n| {
                format!(
                    " ({} {})",
                    t("perkiraan kebutuhan", "expected need"),
                    bytes(n)
                )
            })
            .unwrap_or_default();
        lines.push(format!(
            "{}: {}{need}",
            t("Ruang kosong di server", "Free on the server"),
            bytes(free)
        ));
    }
    if let Some((done, total)) = v.exported {
        lines.push(format!(
            "{}: {done}/{total}",
            t("Mailbox diekspor", "Mailboxes exported")
        ));
    }
    if let Some((fd, ft, bd, bt, rate, eta)) = v.copy {
        lines.push(format!(
            "{}: {fd}/{ft} {}",
            t("Berkas", "Files"),
            t("terverifikasi", "verified")
        ));
        lines.push(format!("{} {} / {}", bar(bd, bt), bytes(bd), bytes(bt)));
        let eta = eta
            .map(|s| duration(lang, chrono::TimeDelta::seconds(s as i64)))
            .unwrap_or_else(|| "–".into());
        lines.push(format!(
            "{}: {}/s, {}: {eta}",
            t("Kecepatan", "Rate"),
            bytes(rate as u64),
            t("perkiraan sisa", "ETA")
        ));
    }
    if let Some((done, total)) = v.read_back {
        lines.push(format!(
            "{}: {done}/{total}",
            t("Arsip dibaca ulang", "Archives read back")
        ));
    }
    if let Some((attempt, of)) = v.reconnecting {
        lines.push(match lang {
            Lang::Id => format!("🔌 Koneksi ke server mail terputus; menyambung ulang (percobaan {attempt} dari {of})…"),
            Lang::En => format!("🔌 The connection to the mail server was lost; reconnecting (try {attempt} of {of})…"),
        });
    } else if v.reconnects > 0 {
        lines.push(match lang {
            Lang::Id => format!(
                "🔌 Tersambung kembali ({} kali); proses dilanjutkan.",
                v.reconnects
            ),
            Lang::En => format!("🔌 Reconnected ({} times); the run goes on.", v.reconnects),
        });
    }
    lines.join("\n")
}

/// Turns progress events into saved step times, step messages and throttled edits.
async fn watch_progress(
    app: Arc<App>,
    id: OrderId,
    message_id: i64,
    mut rx: mpsc::UnboundedReceiver<Progress>,
) -> Result<()> {
    let lang = app.catalog.lang;
    let interval = Duration::from_secs(app.settings.progress_interval_secs);
    let mut view = View::default();
    let mut shown = progress_text(lang, &view);
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
                            .say_quietly(&step_done_text(&app, &order, *step))
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
        let text = progress_text(lang, &view);
        live()
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

fn step_done_text(app: &App, order: &Order, step: SopStep) -> String {
    let c = &app.catalog;
    let took = order
        .step(step)
        .map(|s| s.took(Utc::now()))
        .unwrap_or_default();
    let mark = if step.within_standard(took) {
        "✅"
    } else {
        "⚠️"
    };
    format!(
        "{mark} {} {}: {} — {} ({} {})",
        if c.lang == Lang::Id {
            "Langkah"
        } else {
            "Step"
        },
        step.number(),
        c.step_name(step),
        duration(c.lang, took),
        if c.lang == Lang::Id {
            "baku"
        } else {
            "standard"
        },
        duration(c.lang, step.standard_time())
    )
}

pub async fn stored_outcome(app: &App, id: OrderId) -> Result<Option<RunOutcome>> {
    let record = app.store.run_record(id).await?;
    Ok(record.report.map(serde_json::from_value).transpose()?)
}

/// The report to the Kasi (end of step 6), or the failure report.
pub fn report_text(app: &App, order: &Order, outcome: Option<&RunOutcome>) -> String {
    let c = &app.catalog;
    let id = c.lang == Lang::Id;
    let t = |a: &'static str, b: &'static str| if id { a } else { b };
    let kasi = app.mention_role(Role::Kasi);
    let now = Utc::now();
    let table = c.sop_table(order, now, &app.name_of());
    match outcome {
        Some(RunOutcome::Completed(r))
            if r.all_verified() && order.status != OrderStatus::Failed =>
        {
            let mut rows = String::new();
            for m in &r.mailboxes {
                let msgs = m
                    .messages
                    .map(|n| format!(", {n} {}", t("pesan", "messages")))
                    .unwrap_or_default();
                rows.push_str(&format!(
                    "✅ <code>{}</code> — {}{msgs}\n",
                    esc(&m.account),
                    bytes(m.size)
                ));
            }
            format!(
                "📦 <b>{} {}</b> — {kasi}\n{}\n\n{rows}\n{}: {} {}, {}\n{}: <code>{}</code>\n{}: {}, {}/s\n\n<b>{}</b>\n{table}",
                t("Laporan backup", "Backup report"),
                order.id,
                t("Semua mailbox tersalin dan terverifikasi (SHA-256 sama dengan server, arsip terbaca utuh).", "Every mailbox copied and verified (SHA-256 equal to the server's, archive read back whole)."),
                t("Total", "Total"),
                r.mailboxes.len(),
                t("mailbox", "mailboxes"),
                bytes(r.bytes_total),
                t("Folder", "Folder"),
                esc(&r.folders.local.to_string_lossy()),
                t("Waktu salin", "Copy time"),
                duration(c.lang, chrono::TimeDelta::milliseconds((r.copy_secs * 1000.0) as i64)),
                bytes(r.rate() as u64),
                t("Tabel SOP", "SOP table"),
            ) + &run_notes(c.lang, r) + &if order.status == OrderStatus::Reported {
                format!("\n{} /receive", t("Kasi, terima laporan dengan", "Kasi, receive the report with"))
            } else {
                String::new()
            }
        }
        other => {
            let (what, kept) = match other {
                Some(RunOutcome::Completed(r)) => {
                    let mut rows = String::new();
                    for m in &r.mailboxes {
                        match &m.status {
                            MailboxStatus::Verified => rows.push_str(&format!(
                                "✅ <code>{}</code> — {}\n",
                                esc(&m.account),
                                bytes(m.size)
                            )),
                            MailboxStatus::Failed { error } => rows.push_str(&format!(
                                "❌ <code>{}</code> — {}\n",
                                esc(&m.account),
                                esc(error)
                            )),
                        }
                    }
                    (
                        rows,
                        format!(
                            "{}: <code>{}</code>",
                            t("Yang berhasil disimpan di", "What succeeded is kept in"),
                            esc(&r.folders.local.to_string_lossy())
                        ),
                    )
                }
                Some(RunOutcome::Stopped(e)) => (
                    format!(
                        "❌ {} {}: {}\n{}\n",
                        t("Langkah", "Step"),
                        e.step.number(),
                        esc(c.failure_kind(e.kind)),
                        // The figures in the reader's language; otherwise the raw error, quoted.
                        match &e.space {
                            Some(sp) => space_text(c.lang, sp),
                            None => format!("<code>{}</code>", esc(&e.detail)),
                        }
                    ),
                    e.folders
                        .as_ref()
                        .filter(|f| holds_verified_files(&f.local))
                        .map(|f| {
                            format!(
                                "{}: <code>{}</code>",
                                t(
                                    "Berkas terverifikasi tetap di",
                                    "Verified files are kept in"
                                ),
                                esc(&f.local.to_string_lossy())
                            )
                        })
                        .unwrap_or_else(|| {
                            t("Tidak ada berkas yang ditulis.", "No files were written.").to_owned()
                        }),
                ),
                Some(RunOutcome::Abandoned(reason)) => {
                    (format!("❌ {}\n", esc(reason)), String::new())
                }
                None => (
                    format!("❌ {}\n", esc(order.reason.as_deref().unwrap_or("-"))),
                    String::new(),
                ),
            };
            format!(
                "🚨 <b>{} {}</b> — {kasi}\n\n{what}\n{kept}\n{}\n\n<b>{}</b>\n{table}",
                t("Backup GAGAL", "Backup FAILED"),
                order.id,
                t(
                    "Periksa penyebab di atas (jalankan `mailbox-backup-bot check` di komputer admin), lalu Kasubdit dapat memerintahkan ulang dengan /order_backup.",
                    "Fix the cause above (run `mailbox-backup-bot check` on the admin computer), then the Kasubdit can order again with /order_backup.",
                ),
                t("Tabel SOP", "SOP table"),
            )
        }
    }
}

/// Whether a local folder holds files verified by a run (its index lists at least one).
fn holds_verified_files(folder: &std::path::Path) -> bool {
    std::fs::metadata(folder.join(crate::engine::local::VERIFIED_INDEX)).is_ok_and(|m| m.len() > 0)
}

/// Reconnects and server retention, when there were any.
fn run_notes(lang: Lang, r: &BackupReport) -> String {
    let mut out = String::new();
    if r.reconnects > 0 {
        out.push_str(&match lang {
            Lang::Id => format!("\n🔌 Koneksi ke server terputus dan tersambung kembali {} kali; setiap berkas tetap diverifikasi.", r.reconnects),
            Lang::En => format!("\n🔌 The connection to the server was lost and made again {} times; every file was still verified.", r.reconnects),
        });
    }
    if r.bytes_reused > 0 {
        out.push_str(&match lang {
            Lang::Id => format!(
                "\n♻️ {} diambil dari salinan terverifikasi sebelumnya, tidak disalin ulang.",
                bytes(r.bytes_reused)
            ),
            Lang::En => format!(
                "\n♻️ {} taken from an earlier verified copy, not copied again.",
                bytes(r.bytes_reused)
            ),
        });
    }
    if !r.server_folders_removed.is_empty() {
        let names = r
            .server_folders_removed
            .iter()
            .map(|n| format!("<code>{}</code>", esc(n)))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&match lang {
            Lang::Id => format!("\n🧹 Folder backup lama di server dihapus: {names}"),
            Lang::En => format!("\n🧹 Old backup folders removed from the server: {names}"),
        });
    }
    out
}

/// A refused server disk, with its figures, in the reader's language.
fn space_text(lang: Lang, sp: &crate::engine::SpaceShortfall) -> String {
    let left = sp.need.map(|n| sp.free.saturating_sub(n));
    match (lang, sp.need, left) {
        (Lang::Id, Some(need), Some(left)) => format!(
            "Ruang disk server mail tidak cukup: ekspor perlu sekitar {}, tersedia {} di <code>{}</code> (folder <code>{}</code>); sisanya {} akan di bawah batas aman {} (MAIL_SERVER_MIN_FREE={}). Backup tidak dijalankan agar server mail tetap berfungsi.",
            bytes(need), bytes(sp.free), esc(&sp.mount), esc(&sp.dir), bytes(left), bytes(sp.floor), esc(&sp.setting)
        ),
        (Lang::Id, _, _) => format!(
            "Ruang disk server mail tinggal {} di <code>{}</code> (folder <code>{}</code>), di bawah batas aman {} (MAIL_SERVER_MIN_FREE={}). Backup tidak dijalankan agar server mail tetap berfungsi.",
            bytes(sp.free), esc(&sp.mount), esc(&sp.dir), bytes(sp.floor), esc(&sp.setting)
        ),
        (Lang::En, Some(need), Some(left)) => format!(
            "Not enough room on the mail server: the export needs about {}, {} is free on <code>{}</code> (folder <code>{}</code>); the {} left would be below the safety floor of {} (MAIL_SERVER_MIN_FREE={}). Nothing was exported, so the mail service keeps running.",
            bytes(need), bytes(sp.free), esc(&sp.mount), esc(&sp.dir), bytes(left), bytes(sp.floor), esc(&sp.setting)
        ),
        (Lang::En, _, _) => format!(
            "The mail server has only {} free on <code>{}</code> (folder <code>{}</code>), below the safety floor of {} (MAIL_SERVER_MIN_FREE={}). Nothing was exported, so the mail service keeps running.",
            bytes(sp.free), esc(&sp.mount), esc(&sp.dir), bytes(sp.floor), esc(&sp.setting)
        ),
    }
}

/// The one-line summary kept in the daily log.
pub fn summary_line(app: &App, order: &Order, outcome: Option<&RunOutcome>) -> String {
    let id = app.catalog.lang == Lang::Id;
    match (order.status, outcome) {
        (OrderStatus::Cancelled, _) => {
            if id {
                "Dibatalkan.".into()
            } else {
                "Cancelled.".into()
            }
        }
        (_, Some(RunOutcome::Completed(r))) => {
            let ok = r
                .mailboxes
                .iter()
                .filter(|m| m.status == MailboxStatus::Verified)
                .count();
            let messages: u64 = r.mailboxes.iter().filter_map(|m| m.messages).sum();
            if id {
                format!(
                    "{ok}/{} mailbox terverifikasi, {messages} pesan, {}; folder {}",
                    r.mailboxes.len(),
                    bytes(r.bytes_total),
                    r.folders.local.display()
                )
            } else {
                format!(
                    "{ok}/{} mailboxes verified, {messages} messages, {}; folder {}",
                    r.mailboxes.len(),
                    bytes(r.bytes_total),
                    r.folders.local.display()
                )
            }
        }
        (_, Some(RunOutcome::Stopped(e))) => e.to_string(),
        (_, Some(RunOutcome::Abandoned(reason))) => reason.clone(),
        (_, None) => order.reason.clone().unwrap_or_default(),
    }
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
