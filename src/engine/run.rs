//! One run of steps 3–6 over SSH: the dated folder (step 3), the login (4), the server backup
//! ([`super::export`], 5), the verified copy ([`super::copy`], 6), then server retention. A stop
//! (cancel or shutdown) drops the run where it is and cleans up on both sides.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;

use super::link::Link;
use super::local::{self, create_dated_folder, FolderState};
use super::manifest::{account_of, sha256sums, ServerFile};
use super::{
    export, tell, BackupEngine, BackupReport, EngineError, ErrorKind, MailboxResult, MailboxStatus,
    Progress, ProgressSender, RunFolders, RunRequest, StepTiming, StopReason,
};
use crate::config::EngineSettings;
use crate::domain::SopStep;

pub use super::link::control_dir;

pub struct SshEngine {
    settings: EngineSettings,
}

impl SshEngine {
    pub fn new(settings: EngineSettings) -> Self {
        SshEngine { settings }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }
}

impl BackupEngine for SshEngine {
    fn ready(&self) -> Result<(), String> {
        local::check_disk(&self.settings.local_root).map(|_| ())
    }

    fn run(
        &self,
        request: RunRequest,
        progress: ProgressSender,
    ) -> futures::future::BoxFuture<'_, Result<BackupReport, EngineError>> {
        Box::pin(run(&self.settings, request, progress))
    }
}

fn failed(
    step: SopStep,
    kind: ErrorKind,
    detail: impl Into<String>,
    folders: Option<&RunFolders>,
) -> EngineError {
    EngineError {
        folders: folders.cloned(),
        ..EngineError::new(step, kind, detail)
    }
}

/// Where the run is, for the clean-up after a stop.
#[derive(Default)]
struct Whereabouts {
    step: Option<SopStep>,
    folders: Option<RunFolders>,
}

type Shared = Arc<Mutex<Whereabouts>>;

struct Timer {
    steps: Vec<StepTiming>,
    shared: Shared,
}

impl Timer {
    fn start(&mut self, step: SopStep, progress: &ProgressSender) -> chrono::DateTime<Utc> {
        let at = Utc::now();
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).step = Some(step);
        tell(progress, Progress::StepStarted { step, at });
        at
    }
    fn finish(
        &mut self,
        step: SopStep,
        started_at: chrono::DateTime<Utc>,
        progress: &ProgressSender,
    ) {
        let at = Utc::now();
        self.steps.push(StepTiming {
            step,
            started_at,
            ended_at: at,
        });
        tell(progress, Progress::StepFinished { step, at });
    }
}

/// Runs steps 3–6 until done, failed, or stopped by `request.stop`.
pub async fn run(
    s: &EngineSettings,
    request: RunRequest,
    progress: ProgressSender,
) -> Result<BackupReport, EngineError> {
    let mut stop = request.stop.clone();
    let shared: Shared = Arc::default();
    let result = tokio::select! {
        r = steps(s, &request, progress.clone(), shared.clone()) => r,
        reason = stop.requested() => {
            // The steps' future is dropped here: its ssh clients are killed (their channels
            // close, the copy threads see the end of their pipes) and its session is closed.
            let (step, folders) = {
                let w = shared.lock().unwrap_or_else(|p| p.into_inner());
                (w.step.unwrap_or(SopStep::CreateFolder), w.folders.clone())
            };
            let cleaned = clean_up_after_stop(s, reason, folders.as_ref()).await;
            let kind = match reason {
                StopReason::Cancel => ErrorKind::Cancelled,
                StopReason::Shutdown => ErrorKind::Interrupted,
            };
            Err(failed(step, kind, format!("the run was stopped; {cleaned}"), folders.as_ref()))
        }
    };
    if let Err(e) = &result {
        if let Some(f) = &e.folders {
            if e.kind != ErrorKind::Interrupted {
                let _ = local::mark(&f.local, FolderState::Failed, None);
            }
        }
    }
    result
}

/// After a stop: the exports on the server are killed and the server's temporary files
/// removed; on a cancel, the local partial copies too (a shutdown keeps them for the resume).
/// Says what was done.
async fn clean_up_after_stop(
    s: &EngineSettings,
    reason: StopReason,
    folders: Option<&RunFolders>,
) -> String {
    if !super::copy::threads_done(Duration::from_secs(10)).await {
        tracing::warn!("copy threads still running 10 s after the stop");
    }
    let Some(folders) = folders else {
        return "nothing had been written".into();
    };
    if reason == StopReason::Cancel {
        local::remove_partials(&folders.local);
    }
    if folders.server.is_empty() {
        return "nothing had been started on the server".into();
    }
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let once = async {
            let mut link = Link::connect(s, tx).await?;
            let stopped = export::stop_writers(&mut link, &folders.server).await;
            link.close().await;
            stopped
        };
        match tokio::time::timeout(Duration::from_secs(20), once).await {
            Ok(Ok(n)) => {
                tracing::info!(stopped = n, server = %folders.server, "server exports stopped");
                return format!(
                    "{n} export{} stopped on the server, its temporary files removed",
                    if n == 1 { "" } else { "s" }
                );
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "the server did not answer in 20 s".into(),
        }
    }
    tracing::warn!(error = %last, "could not stop the exports on the server; the next run of this folder stops them");
    format!("the exports on the server could not be stopped ({last}); the next run of this folder stops them")
}

async fn steps(
    s: &EngineSettings,
    request: &RunRequest,
    progress: ProgressSender,
    shared: Shared,
) -> Result<BackupReport, EngineError> {
    let mut timer = Timer {
        steps: Vec::new(),
        shared: shared.clone(),
    };

    // Step 3: the dated folder, on a disk that is really there. A run of the same day that
    // failed or was cut off is continued rather than started over.
    let t3 = timer.start(SopStep::CreateFolder, &progress);
    local::check_disk(&s.local_root)
        .map_err(|e| failed(SopStep::CreateFolder, ErrorKind::DiskNotReady, e, None))?;
    let now = Utc::now().with_timezone(&s.timezone).naive_local();
    let when = request.date.and_time(now.time());
    let (mut folders, continuing) = match &request.resume {
        Some(f) if f.local.is_dir() => (f.clone(), true),
        _ => match local::unfinished_folder(&s.local_root, &s.folder_format, when) {
            Some((local, marker)) => (
                RunFolders {
                    local,
                    server: marker.server.unwrap_or_default(),
                },
                true,
            ),
            None => {
                let local =
                    create_dated_folder(&s.local_root, &s.folder_format, when, &request.owner)
                        .map_err(|e| {
                            failed(
                                SopStep::CreateFolder,
                                ErrorKind::LocalFolder,
                                e.to_string(),
                                None,
                            )
                        })?;
                (
                    RunFolders {
                        local,
                        server: String::new(),
                    },
                    false,
                )
            }
        },
    };
    let _ = local::mark(&folders.local, FolderState::Running, None);
    remember(&shared, &folders, &progress);
    timer.finish(SopStep::CreateFolder, t3, &progress);

    // Step 4: login.
    let t4 = timer.start(SopStep::RemoteLogin, &progress);
    let mut link = Link::connect(s, progress.clone())
        .await
        .map_err(|e| EngineError {
            folders: Some(folders.clone()),
            ..e
        })?;
    timer.finish(SopStep::RemoteLogin, t4, &progress);

    let result = server_backup_and_copy(
        s,
        &mut link,
        &mut folders,
        continuing,
        &mut timer,
        &progress,
        &shared,
    )
    .await;
    let reconnects = link.reconnects;
    let result = match result {
        Ok(mut done) if all_verified(&done.mailboxes) => {
            // The copy is verified: older server folders can go (never the current one before
            // this point, never one without the marker).
            match export::retention(s, &mut link, &folders.server).await {
                Ok(removed) => done.server_folders_removed = removed,
                Err(e) => tracing::warn!(error = %e, "server retention failed"),
            }
            Ok(done)
        }
        other => other,
    };
    link.close().await;
    let done = result.map_err(|e| EngineError {
        folders: e.folders.clone().or_else(|| Some(folders.clone())),
        ..e
    })?;
    let verified = all_verified(&done.mailboxes);
    let state = if verified {
        local::remove_stale_partials(&s.local_root, &folders.local);
        FolderState::Complete
    } else {
        FolderState::Failed
    };
    let _ = local::mark(&folders.local, state, None);
    // Only after this run is complete on disk do older ones go.
    let local_folders_removed = if verified {
        local::retention(&s.local_root, &folders.local, s.local_keep)
    } else {
        Vec::new()
    };
    Ok(BackupReport {
        folders,
        mailboxes: done.mailboxes,
        steps: timer.steps,
        bytes_total: done.bytes_total,
        bytes_copied: done.copied.transferred,
        copy_secs: done.copy_secs,
        reconnects,
        server_folders_removed: done.server_folders_removed,
        bytes_reused: done.copied.reused,
        local_folders_removed,
        disk_free: local::free_space(&s.local_root).ok(),
    })
}

/// At least one mailbox, and every one verified (an empty run verifies nothing).
fn all_verified(mailboxes: &[MailboxResult]) -> bool {
    !mailboxes.is_empty()
        && mailboxes
            .iter()
            .all(|m| m.status == MailboxStatus::Verified)
}

fn remember(shared: &Shared, folders: &RunFolders, progress: &ProgressSender) {
    shared.lock().unwrap_or_else(|p| p.into_inner()).folders = Some(folders.clone());
    tell(progress, Progress::Folders(folders.clone()));
}

struct Done {
    mailboxes: Vec<MailboxResult>,
    bytes_total: u64,
    copied: super::copy::Copied,
    copy_secs: f64,
    server_folders_removed: Vec<String>,
}

async fn server_backup_and_copy(
    s: &EngineSettings,
    link: &mut Link<'_>,
    folders: &mut RunFolders,
    continuing: bool,
    timer: &mut Timer,
    progress: &ProgressSender,
    shared: &Shared,
) -> Result<Done, EngineError> {
    // Step 5: the server folder (the earlier one when continuing and it is still the bot's),
    // then the exports.
    let t5 = timer.start(SopStep::ServerBackup, progress);
    let keep_server =
        continuing && !folders.server.is_empty() && export::is_ours(link, &folders.server).await?;
    if !keep_server {
        let name = folders
            .local
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("backup")
            .to_owned();
        let owner = local::read_marker(&folders.local)
            .map(|m| m.owner)
            .unwrap_or_else(|| "mailbox-backup-bot".into());
        folders.server = export::claim(link, s, &name, &owner)
            .await
            .map_err(|e| EngineError {
                folders: Some(folders.clone()),
                ..e
            })?;
        let _ = local::mark(&folders.local, FolderState::Running, Some(&folders.server));
        remember(shared, folders, progress);
    }
    let exported = export::run(s, link, &folders.server, keep_server, progress)
        .await
        .map_err(|e| EngineError {
            folders: Some(folders.clone()),
            ..e
        })?;
    timer.finish(SopStep::ServerBackup, t5, progress);

    // Step 6: copy down, verify, read back.
    let t6 = timer.start(SopStep::CopyAndReport, progress);
    let files = exported.files;
    let bytes_total: u64 = files.iter().map(|x| x.size).sum();
    let started = Instant::now();
    let copied = copy_with_reconnects(s, link, folders, &files, progress).await?;
    let copy_secs = started.elapsed().as_secs_f64();
    let f = Some(&*folders);
    local::write_durably(
        &folders.local.join("SHA256SUMS"),
        sha256sums(&files).as_bytes(),
    )
    .map_err(|e| failed(SopStep::CopyAndReport, ErrorKind::Copy, e.to_string(), f))?;

    let mut results = read_back(folders, &files, progress).await;
    for (account, error) in exported.failures {
        results.push(MailboxResult {
            account,
            file: String::new(),
            size: 0,
            sha256: String::new(),
            messages: None,
            status: MailboxStatus::Failed { error },
        });
    }
    results.sort_by(|a, b| a.account.cmp(&b.account));
    write_summary(&folders.local, &results)
        .map_err(|e| failed(SopStep::CopyAndReport, ErrorKind::Copy, e.to_string(), f))?;
    timer.finish(SopStep::CopyAndReport, t6, progress);
    Ok(Done {
        mailboxes: results,
        bytes_total,
        copied,
        copy_secs,
        server_folders_removed: Vec::new(),
    })
}

/// Step 6's copy; a dropped or stalled connection is made again and the copy goes on from
/// what is verified (and a big file's partial copy).
async fn copy_with_reconnects(
    s: &EngineSettings,
    link: &mut Link<'_>,
    folders: &RunFolders,
    files: &[ServerFile],
    progress: &ProgressSender,
) -> Result<super::copy::Copied, EngineError> {
    let mut total = super::copy::Copied::default();
    let stall = Duration::from_secs(s.stall_secs);
    loop {
        match super::copy::copy_all(link.remote(), folders, files, progress, stall, &mut total)
            .await
        {
            Ok(()) => return Ok(total),
            Err(e) if e.kind == ErrorKind::Stalled || !link.alive().await => {
                link.reconnect(SopStep::CopyAndReport, &e.detail)
                    .await
                    .map_err(|r| EngineError {
                        folders: Some(folders.clone()),
                        ..r
                    })?;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn read_back(
    folders: &RunFolders,
    files: &[ServerFile],
    progress: &ProgressSender,
) -> Vec<MailboxResult> {
    let mut results = Vec::new();
    let total = files.len();
    let reads = futures::stream::iter(files.iter().cloned().map(|file| {
        let path = folders.local.join(file.name.as_str());
        async move {
            (
                file,
                tokio::task::spawn_blocking(move || super::archive::read_back(&path)).await,
            )
        }
    }))
    .buffered(2);
    futures::pin_mut!(reads);
    let mut done = 0;
    while let Some((file, read)) = reads.next().await {
        done += 1;
        tell(progress, Progress::ReadBack { done, total });
        let (messages, status) = match read {
            Ok(Ok(n)) => (Some(n), MailboxStatus::Verified),
            Ok(Err(e)) => (
                None,
                MailboxStatus::Failed {
                    error: format!("the copy cannot be read back: {e}"),
                },
            ),
            Err(e) => (
                None,
                MailboxStatus::Failed {
                    error: format!("read-back stopped: {e}"),
                },
            ),
        };
        results.push(MailboxResult {
            account: account_of(file.name.as_str()),
            file: file.name.to_string(),
            size: file.size,
            sha256: file.sha256.clone(),
            messages,
            status,
        });
    }
    results
}

fn write_summary(dir: &Path, results: &[MailboxResult]) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(&serde_json::json!({ "mailboxes": results }))
        .map_err(std::io::Error::other)?;
    local::write_durably(&dir.join("summary.json"), &json)
}
