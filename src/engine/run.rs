//! One run of steps 3–6 over SSH: the dated folder (step 3), the login (4), the server backup
//! ([`super::export`], 5), the verified copy ([`super::copy`], 6), then server retention. A stop
//! (cancel or shutdown) drops the run where it is and cleans up on both sides.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;

use super::archive::ReadBackError;
use super::directory::{self, DirectoryResult};
use super::encryption::Recipients;
use super::kind::{MailKind, MailboxScripts, Script};
use super::link::Link;
use super::local::{self, create_dated_folder, FolderState};
use super::manifest::{account_of, sha256sums, ServerCount, ServerFile, ServerName};
use super::piece::Export;
use super::timer::{Shared, Timer};
use super::{
    export, pipeline, server, tell, BackupReport, Backups, EngineError, ErrorKind, MailboxResult,
    MailboxStatus, Progress, ProgressSender, Restores, RunFolders, RunRequest, StopReason,
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

impl Backups for SshEngine {
    fn ready(&self) -> Result<(), local::DiskNotReady> {
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

impl Restores for SshEngine {
    fn backup_root(&self) -> std::path::PathBuf {
        self.settings.local_root.clone()
    }

    fn check_backup<'a>(
        &'a self,
        folder: &'a str,
        account: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<super::restore::VerifiedArchive, super::restore::RestoreError>,
    > {
        let (root, folder, account) = (
            self.settings.local_root.clone(),
            folder.to_owned(),
            account.to_owned(),
        );
        let identity = self.settings.age_identity.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let archive = super::restore::locate(&root, &folder, &account)?;
                archive.check_content()?;
                // An encrypted backup is offered for approval only when it can be opened here.
                archive.check_readable(identity.as_deref())?;
                Ok(archive.facts())
            })
            .await
            .map_err(|e| super::restore::RestoreError::Unreadable(e.to_string()))?
        })
    }

    fn check_target<'a>(
        &'a self,
        into: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), super::restore::RestoreError>> {
        Box::pin(super::restore::check_target(&self.settings, into))
    }

    fn check_rebuild<'a>(
        &'a self,
        folder: &'a str,
        account: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<(String, super::rebuild::AccountPlan), super::restore::RestoreError>,
    > {
        Box::pin(async move {
            let (capture, sha256) = super::rebuild::read_capture(&self.settings, folder)?;
            let plan = super::rebuild::plan(&self.settings, &capture, folder, account).await?;
            Ok((sha256, plan))
        })
    }

    fn rebuild<'a>(
        &'a self,
        folder: &'a str,
        account: &'a str,
        directory_sha256: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<super::rebuild::Rebuilt, super::restore::RestoreError>>
    {
        Box::pin(async move {
            let (capture, sha256) = super::rebuild::read_capture(&self.settings, folder)?;
            if sha256 != directory_sha256 {
                return Err(super::restore::RestoreError::Corrupt {
                    file: super::files::DIRECTORY_FILE.to_owned(),
                });
            }
            let (_, done) =
                super::rebuild::rebuild(&self.settings, &capture, folder, account).await?;
            Ok(done)
        })
    }

    fn check_directory<'a>(
        &'a self,
        folder: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<(String, directory::DirectoryCounts), super::restore::RestoreError>,
    > {
        Box::pin(async move {
            let (capture, sha256) = super::rebuild::read_capture(&self.settings, folder)?;
            Ok((sha256, capture.counts()))
        })
    }

    fn rebuild_all<'a>(
        &'a self,
        folder: &'a str,
        directory_sha256: &'a str,
        archives: &'a std::collections::BTreeMap<String, String>,
        progress: super::rebuild::AccountProgress<'a>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<super::rebuild::RebuildSummary, super::restore::RestoreError>,
    > {
        Box::pin(super::rebuild::rebuild_all(
            &self.settings,
            folder,
            directory_sha256,
            archives,
            progress,
        ))
    }

    fn restore<'a>(
        &'a self,
        request: super::restore::RestoreRequest<'a>,
        progress: Box<dyn FnMut(super::restore::RestoreProgress) + Send + 'a>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<super::restore::RestoreReport, super::restore::RestoreError>,
    > {
        Box::pin(super::restore::restore(
            &self.settings,
            request.folder,
            request.account,
            Some(request.into),
            request.sha256,
            progress,
        ))
    }

    fn drill<'a>(
        &'a self,
        folder: &'a str,
        account: &'a str,
        sha256: &'a str,
        progress: Box<dyn FnMut(super::restore::RestoreProgress) + Send + 'a>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<super::restore::RestoreReport, super::restore::RestoreError>,
    > {
        Box::pin(super::restore::drill(
            &self.settings,
            folder,
            account,
            Some(sha256),
            progress,
        ))
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
    let timer = Timer {
        steps: Mutex::default(),
        open: Mutex::default(),
        shared: shared.clone(),
    };

    // Step 3: the dated folder, on a disk that is really there; nothing is written before the
    // recipients every file is encrypted to are known good.
    timer.start(SopStep::CreateFolder, &progress);
    let seal = Recipients::parse(&s.encrypt_to).map_err(|e| {
        failed(
            SopStep::CreateFolder,
            ErrorKind::Encryption,
            e.to_string(),
            None,
        )
    })?;
    let (mut folders, continuing) = dated_folder(s, request, seal.is_some())?;
    remember(&shared, &folders, &progress);
    timer.finish(SopStep::CreateFolder, &progress);

    // Step 4: login.
    timer.start(SopStep::RemoteLogin, &progress);
    let mut link = Link::connect(s, progress.clone())
        .await
        .map_err(|e| EngineError {
            folders: Some(folders.clone()),
            ..e
        })?;
    timer.finish(SopStep::RemoteLogin, &progress);

    // Steps 5 and 6.
    let run = Run {
        s,
        today: request.date,
        seal: seal.as_ref(),
        timer: &timer,
        progress: &progress,
        shared: &shared,
    };
    let result = server_backup_and_copy(run, &mut link, &mut folders, continuing).await;
    let reconnects = link.reconnects;
    let result = match result {
        Ok(mut done) if done.verified() => {
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
    Ok(close_local_folder(s, folders, done, timer, reconnects))
}

/// What steps 5 and 6 work with around the link and the folders.
#[derive(Clone, Copy)]
struct Run<'a> {
    s: &'a EngineSettings,
    /// The run's date: the day number the rolling schedule of whole exports counts in.
    today: chrono::NaiveDate,
    seal: Option<&'a Recipients>,
    timer: &'a Timer,
    progress: &'a ProgressSender,
    shared: &'a Shared,
}

/// Step 3's folder: a run of the same day that failed or was cut off is continued rather than
/// started over (`true`); otherwise a new dated folder is made.
fn dated_folder(
    s: &EngineSettings,
    request: &RunRequest,
    encrypted: bool,
) -> Result<(RunFolders, bool), EngineError> {
    let step = SopStep::CreateFolder;
    local::check_disk(&s.local_root)
        .map_err(|e| failed(step, ErrorKind::DiskNotReady, e.to_string(), None))?;
    let now = Utc::now().with_timezone(&s.timezone).naive_local();
    let when = request.date.and_time(now.time());
    let continued = match &request.resume {
        Some(f) if f.local.is_dir() => Some(f.clone()),
        _ => local::unfinished_folder(&s.local_root, &s.folder_format, when).map(
            |(local, marker)| RunFolders {
                local,
                server: marker.server.unwrap_or_default(),
            },
        ),
    };
    // A folder is continued only in the form it was started in: encryption turned on (or off)
    // in between starts a new one, so no folder mixes plain and encrypted copies.
    let continued = continued.filter(|f| local::stored_encrypted(&f.local) != Some(!encrypted));
    let (folders, continuing) = match continued {
        Some(folders) => {
            make_owners_alone(&folders.local);
            // What a cut-off run of the other form left half-written goes: never a plain part in
            // a folder that is now encrypted.
            local::remove_partials_of_the_other_form(&folders.local, encrypted);
            (folders, true)
        }
        None => {
            let local = create_dated_folder(&s.local_root, &s.folder_format, when, &request.owner)
                .map_err(|e| failed(step, ErrorKind::LocalFolder, e.to_string(), None))?;
            let server = String::new();
            (RunFolders { local, server }, false)
        }
    };
    let _ = local::mark(&folders.local, FolderState::Running, None);
    Ok((folders, continuing))
}

/// A continued folder made by an older bot, or under another umask, becomes the owner's alone:
/// the folder 0700, every file in it 0600.
fn make_owners_alone(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// The run's end on the admin computer: the folder marked complete (or failed), and only after
/// a complete run do older folders go.
fn close_local_folder(
    s: &EngineSettings,
    folders: RunFolders,
    done: Done,
    timer: Timer,
    reconnects: u32,
) -> BackupReport {
    let verified = done.verified();
    let state = if verified {
        local::remove_stale_partials(&s.local_root, &folders.local);
        FolderState::Complete
    } else {
        FolderState::Failed
    };
    let _ = local::mark(&folders.local, state, None);
    let local_folders_removed = if verified {
        local::retention(&s.local_root, &folders.local, s.local_keep)
    } else {
        Vec::new()
    };
    BackupReport {
        folders,
        mailboxes: done.mailboxes,
        directory: done.directory.map(Box::new),
        steps: timer.into_steps(),
        bytes_total: done.bytes_total,
        bytes_copied: done.copied.transferred,
        copy_secs: done.copy_secs,
        reconnects,
        server_folders_removed: done.server_folders_removed,
        bytes_reused: done.copied.reused,
        local_folders_removed,
        disk_free: local::free_space(&s.local_root).ok(),
        encrypted_to: done.encrypted_to,
        incremental: done.incremental,
    }
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
    incremental: Option<super::Incremental>,
    directory: Option<DirectoryResult>,
    bytes_total: u64,
    copied: super::copy::Copied,
    copy_secs: f64,
    server_folders_removed: Vec<String>,
    /// The recipients the copies are encrypted to (0: plain).
    encrypted_to: usize,
}

impl Done {
    /// Every mailbox verified, and the directory too when the kind keeps one.
    fn verified(&self) -> bool {
        all_verified(&self.mailboxes)
            && self
                .directory
                .as_ref()
                .is_none_or(|d| d.status == MailboxStatus::Verified)
    }
}

/// What steps 5 and 6 leave, whichever way the kind runs them.
struct Copied {
    files: Vec<ServerFile>,
    results: Vec<MailboxResult>,
    copied: super::copy::Copied,
    copy_secs: f64,
    incremental: Option<super::Incremental>,
    /// The mailboxes given their last verified piece, not exported (see [`pipeline`]).
    unchanged: std::collections::HashSet<String>,
}

async fn server_backup_and_copy(
    run: Run<'_>,
    link: &mut Link<'_>,
    folders: &mut RunFolders,
    continuing: bool,
) -> Result<Done, EngineError> {
    let Run {
        s,
        timer,
        progress,
        shared,
        seal,
        ..
    } = run;
    // Step 5: the server folder (the earlier one when continuing and it is still the bot's),
    // then the exports.
    timer.start(SopStep::ServerBackup, progress);
    let keep_server =
        continuing && !folders.server.is_empty() && export::is_ours(link, &folders.server).await?;
    if !keep_server {
        claim_server_folder(s, link, folders).await?;
        remember(shared, folders, progress);
    }
    let with_folders = |e: EngineError| EngineError {
        folders: Some(folders.clone()),
        ..e
    };
    let kind = super::kind::of(&s.kind);
    let Copied {
        files,
        mut results,
        copied,
        copy_secs,
        incremental,
        ..
    } = match kind.mailboxes() {
        Some(mut scripts) => {
            let changes = changes_only(run, kind.as_ref(), &mut scripts);
            // Steps 5 and 6 side by side: each archive is copied as soon as it is exported.
            let ctx = pipeline::RunContext {
                s,
                kind: kind.as_ref(),
                scripts: &scripts,
                folders,
                timer,
                progress,
                seal,
            };
            let done = pipeline::run(ctx, link, keep_server)
                .await
                .map_err(with_folders)?;
            let mut copied = overlapped_results(link, &folders.server, done, changes).await;
            if let Some(no_hard_links) = changes {
                copied.incremental = Some(
                    settle_pieces(s, link, folders, seal.is_some(), &mut copied, no_hard_links)
                        .await,
                );
            }
            copied
        }
        None => export_then_copy(run, link, folders, keep_server).await?,
    };
    // The directory beside the mail, for the kinds that keep one; listed with the archives.
    let directory = match kind.directory_capture(&folders.server) {
        Some(c) => {
            Some(directory::capture(link.remote(), (&c.script, &c.args()), folders, seal).await)
        }
        None => None,
    };
    let bytes_total: u64 =
        files.iter().map(|x| x.size).sum::<u64>() + directory.as_ref().map_or(0, |d| d.size);
    results.sort_by(|a, b| a.account.cmp(&b.account));
    write_folder_files(folders, files, directory.as_ref(), &results, seal.is_some())?;
    timer.finish(SopStep::CopyAndReport, progress);
    Ok(Done {
        mailboxes: results,
        directory,
        bytes_total,
        copied,
        copy_secs,
        server_folders_removed: Vec::new(),
        encrypted_to: seal.map_or(0, Recipients::len),
        incremental,
    })
}

/// `SHA256SUMS` of the files as stored (checked with `sha256sum -c`, no identity needed) and
/// `summary.json` of the mailboxes (the plaintext's hashes, as the server made them).
fn write_folder_files(
    folders: &RunFolders,
    files: Vec<ServerFile>,
    directory: Option<&DirectoryResult>,
    results: &[MailboxResult],
    encrypted: bool,
) -> Result<(), EngineError> {
    let stored = with_directory(stored_files(&folders.local, files, encrypted), directory);
    let fail = |e: std::io::Error| {
        failed(
            SopStep::CopyAndReport,
            ErrorKind::Copy,
            e.to_string(),
            Some(folders),
        )
    };
    local::write_durably(
        &folders.local.join("SHA256SUMS"),
        sha256sums(&stored).as_bytes(),
    )
    .map_err(fail)?;
    write_summary(&folders.local, results).map_err(fail)
}

/// The files of the folder as they are on disk: the server's, or their encrypted copies (a file
/// without a record of its copy is left out: it was not verified).
fn stored_files(folder: &Path, files: Vec<ServerFile>, encrypted: bool) -> Vec<ServerFile> {
    if !encrypted {
        return files;
    }
    let index =
        std::fs::read_to_string(folder.join(super::files::ENCRYPTION_INDEX)).unwrap_or_default();
    let copies = super::encryption::entries(&index);
    files
        .iter()
        .filter_map(|f| {
            let copy = copies
                .get(f.name.as_str())
                .filter(|c| c.sha256 == f.sha256)?
                .clone();
            Some(ServerFile {
                name: ServerName::parse(&copy.stored()).ok()?,
                size: copy.stored_size,
                sha256: copy.stored_sha256,
            })
        })
        .collect()
}

/// The `command` kind: step 5 whole (the operator's command), then step 6.
async fn export_then_copy(
    run: Run<'_>,
    link: &mut Link<'_>,
    folders: &RunFolders,
    keep_server: bool,
) -> Result<Copied, EngineError> {
    let Run {
        s, timer, progress, ..
    } = run;
    let exported = export::run(s, link, &folders.server, keep_server, progress)
        .await
        .map_err(|e| EngineError {
            folders: Some(folders.clone()),
            ..e
        })?;
    timer.finish(SopStep::ServerBackup, progress);
    // Step 6: copy down, verify, read back.
    timer.start(SopStep::CopyAndReport, progress);
    let files = exported.files;
    let started = Instant::now();
    let copied = copy_with_reconnects(run, link, folders, &files).await?;
    let copy_secs = started.elapsed().as_secs_f64();
    let mut results = read_back(folders, &files, progress, run.seal.is_some()).await;
    results.extend(failed_exports(exported.failures));
    Ok(Copied {
        files,
        results,
        copied,
        copy_secs,
        incremental: None,
        unchanged: Default::default(),
    })
}

/// The folder's files for `SHA256SUMS`: the archives, and the directory capture when verified.
fn with_directory(mut files: Vec<ServerFile>, d: Option<&DirectoryResult>) -> Vec<ServerFile> {
    if let Some(d) = d.filter(|d| d.status == MailboxStatus::Verified) {
        if let Ok(name) = ServerName::parse(&d.file) {
            files.push(ServerFile {
                sha256: d.sha256.clone(),
                size: d.size,
                name,
            });
        }
    }
    files
}

/// A new server folder for this run, named after the local one and marked with its owner.
async fn claim_server_folder(
    s: &EngineSettings,
    link: &mut Link<'_>,
    folders: &mut RunFolders,
) -> Result<(), EngineError> {
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
    Ok(())
}

/// Each archive of the overlapped steps as a mailbox's result (its read-back against the
/// server's count), the failed ones forgotten on the server, then the failed exports.
async fn overlapped_results(
    link: &mut Link<'_>,
    server_dir: &str,
    done: pipeline::Overlapped,
    changes: Option<bool>,
) -> Copied {
    let files: Vec<ServerFile> = done.records.iter().map(|r| r.file.clone()).collect();
    let mut read_back = done.read_back;
    let mut results: Vec<MailboxResult> = done
        .records
        .iter()
        .map(|r| {
            let read = read_back
                .remove(r.file.name.as_str())
                .unwrap_or(Err(ReadBackError::NotReadBack));
            let mut result = mailbox_result(&r.file, read, r.count);
            if let Some(account) = done.accounts.get(r.file.name.as_str()) {
                result.account = account.clone();
            }
            result
        })
        .collect();
    forget_failed(link, server_dir, &results).await;
    results.extend(failed_exports(done.failures));
    Copied {
        files,
        results,
        copied: done.copied,
        copy_secs: done.copy_secs,
        incremental: changes.map(|_| super::Incremental::default()),
        unchanged: done.unchanged,
    }
}

/// An archive that failed its count or its read-back is not a result to keep: the server
/// forgets it and records the failure, so the backup ordered again exports the mailbox again.
async fn forget_failed(link: &mut Link<'_>, dir: &str, results: &[MailboxResult]) {
    for r in results {
        let MailboxStatus::Failed { error } = &r.status else {
            continue;
        };
        let args = [dir, r.file.as_str(), r.account.as_str(), error.as_str()];
        if let Err(e) = export::sh_again(link, SopStep::CopyAndReport, server::FORGET, &args).await
        {
            tracing::warn!(error = %e, file = %r.file, "cannot mark a failed archive for export again");
        }
    }
}

fn failed_exports(failures: Vec<(String, String)>) -> impl Iterator<Item = MailboxResult> {
    failures.into_iter().map(|(account, error)| MailboxResult {
        account,
        file: String::new(),
        size: 0,
        sha256: String::new(),
        messages: None,
        server_messages: None,
        piece: None,
        status: MailboxStatus::Failed { error },
    })
}

/// A copied archive's result: verified when it reads back whole and holds the messages the
/// server counted (when the kind counts).
fn mailbox_result(
    file: &ServerFile,
    read: Result<u64, ReadBackError>,
    count: Option<ServerCount>,
) -> MailboxResult {
    let (messages, status) = match read {
        Ok(n) => match count {
            Some(c) if !c.accepts(n) => (
                Some(n),
                MailboxStatus::Failed {
                    error: format!(
                        "the archive holds {n} messages, the server counted {c} for this mailbox"
                    ),
                },
            ),
            _ => (Some(n), MailboxStatus::Verified),
        },
        Err(e) => (
            None,
            MailboxStatus::Failed {
                error: e.to_string(),
            },
        ),
    };
    MailboxResult {
        account: account_of(file.name.as_str()),
        file: file.name.to_string(),
        size: file.size,
        sha256: file.sha256.clone(),
        messages,
        server_messages: count,
        piece: None,
        status,
    }
}

/// Step 6's copy; a dropped or stalled connection is made again and the copy goes on from
/// what is verified (and a big file's partial copy).
async fn copy_with_reconnects(
    run: Run<'_>,
    link: &mut Link<'_>,
    folders: &RunFolders,
    files: &[ServerFile],
) -> Result<super::copy::Copied, EngineError> {
    let mut total = super::copy::Copied::default();
    let stall = Duration::from_secs(run.s.stall_secs);
    loop {
        let copied = super::copy::copy_all(
            link.remote(),
            folders,
            files,
            run.progress,
            stall,
            &mut total,
            run.seal,
        );
        match copied.await {
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
    encrypted: bool,
) -> Vec<MailboxResult> {
    let mut results = Vec::new();
    let total = files.len();
    let reads = futures::stream::iter(files.iter().cloned().map(|file| {
        let (folder, name) = (folders.local.clone(), file.name.to_string());
        async move {
            let read = tokio::task::spawn_blocking(move || {
                super::archive::read_back_stored(&folder, &name, encrypted)
            });
            (file, read.await)
        }
    }))
    .buffered(2);
    futures::pin_mut!(reads);
    let mut done = 0;
    while let Some((file, read)) = reads.next().await {
        done += 1;
        tell(progress, Progress::ReadBack { done, total });
        let read = read.unwrap_or_else(|e| Err(ReadBackError::Stopped(e)));
        results.push(mailbox_result(&file, read, None));
    }
    results
}

/// Whether this run exports changes only: the kind's change export, with its state base, the
/// day number and `FULL_EVERY_DAYS`, put in place of the whole export. `Some(true)`: the backup
/// disk keeps no hard links, so every mailbox goes whole (`FULL_EVERY_DAYS` 1) and the report
/// says why. `None`: the kind exports whole archives.
fn changes_only(run: Run<'_>, kind: &dyn MailKind, scripts: &mut MailboxScripts) -> Option<bool> {
    let mut changes = kind.changes_export()?;
    let s = run.s;
    // Without hard links, or with FULL_EVERY_DAYS 1, every mailbox is exported whole, as it was
    // before incremental backups (no mirror kept on the server); the report says why.
    if super::pieces::hard_links_work(&s.local_root).is_err() {
        return Some(true);
    }
    if s.full_every_days <= 1 {
        return None;
    }
    let every = s.full_every_days;
    let day = run
        .today
        .signed_duration_since(chrono::NaiveDate::default())
        .num_days();
    let base = format!("{}/{}", s.server_backup_dir, super::increment::STATE_FOLDER);
    let (day, every) = (day.to_string(), every.to_string());
    // The pieces build on earlier ones kept on this disk in this form: another disk, or
    // encryption turned on or off, starts every mailbox whole.
    let disk = local::check_disk(&s.local_root).unwrap_or_default();
    let form = run.seal.map_or("plain", Recipients::fingerprint);
    let store: String = format!("{disk}:{form}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'))
        .collect();
    changes
        .args
        .extend([base.clone(), day.clone(), every.clone(), store.clone()]);
    scripts.export = changes;
    scripts.unchanged = kind.change_markers().map(|markers| {
        let mut args = vec![base, day, every, store, markers.script];
        args.extend(markers.args);
        Script {
            script: super::increment::UNCHANGED.to_owned(),
            args,
        }
    });
    Some(false)
}

/// The verified pieces of the run: the earlier pieces each names linked beside it (a mailbox
/// whose earlier pieces are gone fails: not committed, its next export is whole), the server
/// told which lists its next exports build on, and what moved counted.
async fn settle_pieces(
    s: &EngineSettings,
    link: &mut Link<'_>,
    folders: &RunFolders,
    encrypted: bool,
    copied: &mut Copied,
    no_hard_links: bool,
) -> super::Incremental {
    let root = s.local_root.clone();
    let local = folders.local.clone();
    let results = std::mem::take(&mut copied.results);
    let unchanged = std::mem::take(&mut copied.unchanged);
    let settled = tokio::task::spawn_blocking(move || {
        let mut linked: Vec<ServerFile> = Vec::new();
        let mut unlinked: Vec<String> = Vec::new();
        let results: Vec<MailboxResult> = results
            .into_iter()
            .map(|mut r| {
                if r.status != MailboxStatus::Verified {
                    return r;
                }
                let Some(facts) = super::pieces::facts_of(&local, &r.file, encrypted) else {
                    return r;
                };
                match super::pieces::link_elders(&root, &local, &facts, encrypted) {
                    Ok(elders) => {
                        for e in elders {
                            if !linked.iter().any(|l| l.name == e.name) {
                                linked.push(e);
                            }
                        }
                        let mut summary = facts.summary();
                        // Its last piece again: nothing was exported today.
                        if unchanged.contains(&r.file) {
                            summary.export = Export::Unchanged;
                            summary.reason.clear();
                            (summary.new_messages, summary.new_bytes) = (0, 0);
                        }
                        r.piece = Some(summary);
                    }
                    Err(e) => {
                        unlinked.push(r.file.clone());
                        r.status = MailboxStatus::Failed {
                            error: e.to_string(),
                        }
                    }
                }
                r
            })
            .collect();
        (results, linked, unlinked)
    })
    .await;
    let (results, linked, unlinked) = match settled {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, "linking the earlier pieces stopped");
            (Vec::new(), Vec::new(), Vec::new())
        }
    };
    let unlinked: Vec<MailboxResult> = results
        .iter()
        .filter(|r| unlinked.contains(&r.file))
        .cloned()
        .collect();
    copied.results = results;
    // A piece whose earlier pieces are gone is exported again, whole (an unchanged mailbox has
    // no pending list to say so: its state is reset).
    forget_failed(link, &folders.server, &unlinked).await;
    let base = format!("{}/{}", s.server_backup_dir, super::increment::STATE_FOLDER);
    if !unlinked.is_empty() {
        let mut args = vec![base.as_str()];
        args.extend(unlinked.iter().map(|r| r.account.as_str()));
        if let Err(e) =
            export::sh_again(link, SopStep::CopyAndReport, super::increment::RESET, &args).await
        {
            tracing::warn!(error = %e, "cannot mark the mailboxes whose earlier pieces are gone");
        }
    }
    let mut moved = super::Incremental {
        no_hard_links,
        bytes_linked: linked.iter().map(|f| f.size).sum(),
        ..Default::default()
    };
    copied.files.extend(linked);
    let mut verified: Vec<String> = Vec::new();
    for r in &copied.results {
        let Some(p) = r
            .piece
            .as_ref()
            .filter(|_| r.status == MailboxStatus::Verified)
        else {
            continue;
        };
        match p.export {
            Export::Full => moved.full += 1,
            Export::Changes => moved.changed += 1,
            Export::Unchanged => moved.unchanged += 1,
        }
        moved.mail_exported += p.new_bytes;
        moved.mail_total += p.mail_bytes;
        verified.extend([r.account.clone(), r.file.clone(), r.sha256.clone()]);
    }
    for batch in verified.chunks(600) {
        let mut args = vec![base.as_str(), folders.server.as_str()];
        args.extend(batch.iter().map(String::as_str));
        match export::sh_again(
            link,
            SopStep::CopyAndReport,
            super::increment::COMMIT,
            &args,
        )
        .await
        {
            Ok(out) if out.ok => {}
            Ok(out) => {
                tracing::warn!(error = %out.stderr, "the server did not take the verified lists; the next exports are whole")
            }
            Err(e) => {
                tracing::warn!(error = %e, "the server did not take the verified lists; the next exports are whole")
            }
        }
    }
    moved
}

fn write_summary(dir: &Path, results: &[MailboxResult]) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(&serde_json::json!({ "mailboxes": results }))
        .map_err(std::io::Error::other)?;
    local::write_durably(&dir.join("summary.json"), &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::manifest::ServerName;

    fn archive() -> ServerFile {
        ServerFile {
            sha256: "c".repeat(64),
            size: 100,
            name: ServerName::parse("ani@djki.go.id.tar.gz").expect("plain"),
        }
    }

    #[test]
    fn an_archive_is_verified_only_with_the_messages_the_server_counted() {
        let count = |before, after| Some(ServerCount { before, after });
        let ok = mailbox_result(&archive(), Ok(7), count(7, 7));
        assert_eq!(ok.status, MailboxStatus::Verified);
        assert_eq!(
            (ok.messages, ok.account.as_str()),
            (Some(7), "ani@djki.go.id")
        );
        // Mail that arrived during the export: anything the server held meanwhile is right.
        let moving = mailbox_result(&archive(), Ok(8), count(7, 9));
        assert_eq!(moving.status, MailboxStatus::Verified);
        let short = mailbox_result(&archive(), Ok(5), count(7, 7));
        assert_eq!(
            short.status,
            MailboxStatus::Failed {
                error: "the archive holds 5 messages, the server counted 7 for this mailbox".into()
            }
        );
        // A kind that cannot count on the server: the read-back decides.
        assert_eq!(
            mailbox_result(&archive(), Ok(5), None).status,
            MailboxStatus::Verified
        );
        let bad_gzip = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad gzip");
        let unreadable = mailbox_result(
            &archive(),
            Err(ReadBackError::Unreadable(bad_gzip)),
            count(7, 7),
        );
        assert_eq!(
            (unreadable.messages, unreadable.status),
            (
                None,
                MailboxStatus::Failed {
                    error: "the copy cannot be read back: bad gzip".into()
                }
            )
        );
    }
}
