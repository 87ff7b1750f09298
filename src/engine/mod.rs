//! The backup engine: steps 3–6 of the SOP. Creates the dated folder, logs into the mail server
//! over SSH, backs up every mailbox into one dated folder there, copies it down and proves every
//! byte. Independent of Telegram: the bot, the command line and cron call it through
//! [`Backups`] and [`Restores`].

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub mod archive;
pub mod copy;
pub mod directory;
pub mod dovecot;
pub mod encryption;
pub mod export;
pub mod files;
pub mod import;
pub mod increment;
pub mod kind;
pub mod link;
pub mod local;
pub mod manifest;
pub mod piece;
pub mod pieces;
mod pipeline;
pub mod rebuild;
pub mod remote;
pub mod restore;
pub mod run;
pub mod server;
mod timer;
pub mod zimbra;
pub use run::SshEngine;
use tokio::sync::{mpsc::UnboundedSender, watch};

use crate::domain::SopStep;

/// Where a run writes: the dated local folder and the dated folder on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFolders {
    pub local: PathBuf,
    pub server: String,
}

/// What to run: today's backup, or the continuation of an interrupted one.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub date: NaiveDate,
    pub resume: Option<RunFolders>,
    /// Who the run is for, written in the folders' markers (`order 12`, `command line`).
    pub owner: String,
    pub stop: Stop,
}

impl RunRequest {
    /// A new run for `date`, stopped only by `stop`.
    pub fn new(date: NaiveDate, owner: impl Into<String>, stop: Stop) -> RunRequest {
        RunRequest {
            date,
            resume: None,
            owner: owner.into(),
            stop,
        }
    }
}

/// Why a run is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `/cancel`: stop, kill the exports, remove partial files on both sides.
    Cancel,
    /// The bot is shutting down: stop the exports, keep local partial files so the run resumes.
    Shutdown,
}

/// The run's side of a stop request.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<Option<StopReason>>);

/// The asker's side.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<Option<StopReason>>);

impl StopHandle {
    pub fn stop(&self, reason: StopReason) {
        let _ = self.0.send(Some(reason));
    }
}

impl Stop {
    pub fn pair() -> (StopHandle, Stop) {
        let (tx, rx) = watch::channel(None);
        (StopHandle(tx), Stop(rx))
    }

    /// A run nobody stops (its handle is gone).
    pub fn never() -> Stop {
        Stop::pair().1
    }

    /// Waits until a stop is asked; never returns when the handle is gone without asking.
    pub async fn requested(&mut self) -> StopReason {
        loop {
            if let Some(reason) = *self.0.borrow_and_update() {
                return reason;
            }
            if self.0.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// What the engine tells while it runs. The bot turns these into chat messages, the command line
/// into a progress bar.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    StepStarted {
        step: SopStep,
        at: DateTime<Utc>,
    },
    StepFinished {
        step: SopStep,
        at: DateTime<Utc>,
    },
    /// Step 3 chose the folders (kept so an interrupted run resumes into them).
    Folders(RunFolders),
    /// Step 5: `done` of `total` mailboxes exported; `current` just finished.
    Exported {
        done: usize,
        total: usize,
        current: String,
        ok: bool,
    },
    /// Step 6: bytes copied and verified so far.
    Copy {
        files_done: usize,
        files_total: usize,
        bytes_done: u64,
        bytes_total: u64,
        rate: f64,
        eta_secs: Option<u64>,
    },
    /// Step 6: archives read back end to end.
    ReadBack {
        done: usize,
        total: usize,
    },
    /// The connection dropped or stalled; reconnecting (`attempt` of at most `of`).
    Reconnecting {
        step: SopStep,
        attempt: u32,
        of: u32,
        reason: String,
    },
    /// Reconnected; the step goes on where it was.
    Reconnected {
        step: SopStep,
    },
    /// Step 5: the free space on the server, and what the export is expected to need.
    ServerSpace {
        free: u64,
        need: Option<u64>,
        floor: u64,
    },
}

pub type ProgressSender = UnboundedSender<Progress>;

/// Keeps the process's memory flat however many mailboxes a run has: the copy and read-back
/// buffers (1 MiB) are always mapped and unmapped, never left in malloc's heaps (glibc raises
/// its mmap threshold after the first free of such a buffer, and the heaps of the blocking
/// threads then grew with the number of archives: 13 MiB for 300 mailboxes against 7 for 30).
/// Call once at start.
pub fn hold_memory_flat() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc parameter; called before threads allocate much.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Sends a progress event; a receiver that went away only means nobody is watching.
pub(crate) fn tell(progress: &ProgressSender, event: Progress) {
    let _ = progress.send(event);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum MailboxStatus {
    /// Copied, checksum equal to the server's, and read back with `messages` messages.
    Verified,
    Failed {
        error: String,
    },
}

/// One mailbox of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxResult {
    /// The account name as the server knows it.
    pub account: String,
    /// The archive's file name in the dated folder.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub messages: Option<u64>,
    /// The server's own count of the mailbox's messages around its export, when the kind counts.
    #[serde(default)]
    pub server_messages: Option<manifest::ServerCount>,
    /// How the mailbox was exported when its file is a piece (see [`piece`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece: Option<piece::PieceSummary>,
    #[serde(flatten)]
    pub status: MailboxStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: SopStep,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// The result of a run that got to the end of step 6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    pub folders: RunFolders,
    pub mailboxes: Vec<MailboxResult>,
    /// The accounts beside the mail (`directory.tar.gz`), for the kinds that keep them; none in
    /// a report from before the capture, or of a kind without one.
    #[serde(default)]
    pub directory: Option<Box<directory::DirectoryResult>>,
    pub steps: Vec<StepTiming>,
    /// Bytes of all archives in the folder.
    pub bytes_total: u64,
    /// Bytes this run transferred (less than the total when it resumed).
    pub bytes_copied: u64,
    /// Seconds spent copying.
    pub copy_secs: f64,
    /// Times the connection was made again after a drop or stall.
    #[serde(default)]
    pub reconnects: u32,
    /// Older bot-made server folders removed by retention after the verified copy.
    #[serde(default)]
    pub server_folders_removed: Vec<String>,
    /// Bytes not copied over the network because an earlier run's verified copy was reused.
    #[serde(default)]
    pub bytes_reused: u64,
    /// Older verified local folders removed by `LOCAL_BACKUP_KEEP` after this run.
    #[serde(default)]
    pub local_folders_removed: Vec<String>,
    /// Free bytes left on the backup disk after the run.
    #[serde(default)]
    pub disk_free: Option<u64>,
    /// The recipients the folder's files are encrypted to (age); 0: stored unencrypted.
    #[serde(default)]
    pub encrypted_to: usize,
    /// What moved, when the kind exports changes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
}

/// What an incremental run moved, against the size of the whole backup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incremental {
    /// Mailboxes by how they were exported.
    pub unchanged: usize,
    pub changed: usize,
    pub full: usize,
    /// Bytes of the messages the pieces carried (new since the last verified backup, or all of
    /// a mailbox exported whole), and of every message the backup holds.
    pub mail_exported: u64,
    pub mail_total: u64,
    /// Bytes of the earlier pieces linked into the folder (stored once, on the disk already).
    pub bytes_linked: u64,
    /// The disk keeps no hard links: every mailbox was exported whole.
    #[serde(default)]
    pub no_hard_links: bool,
}

impl BackupReport {
    pub fn all_verified(&self) -> bool {
        !self.mailboxes.is_empty()
            && self
                .mailboxes
                .iter()
                .all(|m| m.status == MailboxStatus::Verified)
            && self
                .directory
                .as_ref()
                .is_none_or(|d| d.status == MailboxStatus::Verified)
    }

    pub fn failed(&self) -> impl Iterator<Item = &MailboxResult> {
        self.mailboxes
            .iter()
            .filter(|m| m.status != MailboxStatus::Verified)
    }

    /// Copy rate in bytes per second.
    pub fn rate(&self) -> f64 {
        if self.copy_secs > 0.0 {
            self.bytes_copied as f64 / self.copy_secs
        } else {
            0.0
        }
    }
}

/// Why a run stopped before the end of step 6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("step {step}: {kind}: {detail}")]
pub struct EngineError {
    pub step: SopStep,
    pub kind: ErrorKind,
    pub detail: String,
    /// The folders, when step 3 got that far (what is kept).
    pub folders: Option<RunFolders>,
    /// For [`ErrorKind::ServerNoSpace`]: the figures, for the reader's language.
    #[serde(default)]
    pub space: Option<Box<SpaceShortfall>>,
}

/// Why the server's disk cannot take the export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceShortfall {
    /// Bytes the export is expected to need (`None`: the server could not say).
    pub need: Option<u64>,
    pub free: u64,
    /// Bytes that must stay free, from `setting`.
    pub floor: u64,
    pub setting: String,
    pub mount: String,
    pub dir: String,
}

impl std::fmt::Display for SpaceShortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
        match self.need {
            Some(need) => write!(
                f,
                "the export needs about {}, {} is free on {} (for {}); that would leave {}, below the floor of {} (MAIL_SERVER_MIN_FREE={})",
                mib(need), mib(self.free), self.mount, self.dir,
                mib(self.free.saturating_sub(need)), mib(self.floor), self.setting
            ),
            None => write!(
                f,
                "{} is free on {} (for {}), below the floor of {} (MAIL_SERVER_MIN_FREE={})",
                mib(self.free), self.mount, self.dir, mib(self.floor), self.setting
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    #[error("local folder")]
    LocalFolder,
    #[error("mail server unreachable")]
    Unreachable,
    #[error("SSH key refused")]
    KeyRefused,
    #[error("mail server host key changed")]
    HostKeyChanged,
    #[error("mail server host key unknown")]
    HostKeyUnknown,
    #[error("SSH")]
    Ssh,
    #[error("server command failed")]
    ServerCommand,
    #[error("no mailboxes found")]
    NoMailboxes,
    #[error("not enough free space")]
    NoSpace,
    #[error("not enough free space on the mail server")]
    ServerNoSpace,
    #[error("backup disk not ready (not mounted?)")]
    DiskNotReady,
    #[error("connection stalled")]
    Stalled,
    #[error("cancelled")]
    Cancelled,
    #[error("interrupted by shutdown")]
    Interrupted,
    #[error("copy")]
    Copy,
    #[error("encryption settings")]
    Encryption,
}

impl EngineError {
    pub fn new(step: SopStep, kind: ErrorKind, detail: impl Into<String>) -> Self {
        EngineError {
            step,
            kind,
            detail: detail.into(),
            folders: None,
            space: None,
        }
    }
}

/// Steps 3–6, as the bot's `/start` and `backup` at the terminal run them.
pub trait Backups: Send + Sync {
    /// What must hold before a run may start (the backup disk is there).
    fn ready(&self) -> Result<(), local::DiskNotReady> {
        Ok(())
    }

    fn run(
        &self,
        request: RunRequest,
        progress: ProgressSender,
    ) -> BoxFuture<'_, Result<BackupReport, EngineError>>;
}

/// Restores from the dated folders, as the chat's `/restore` and `/drill` and `restore` at the
/// terminal ask them. Whether a folder may be restored at all (a backup order recorded it) is
/// the procedure's one rule (`procedure::restores::recorded_backup`), asked before these.
pub trait Restores: Send + Sync {
    /// The folder the dated backup folders are made in (restores name them from there).
    fn backup_root(&self) -> PathBuf;

    /// `account`'s archive in backup `folder`, only as the bot made and verified it, read whole
    /// against its recorded SHA-256 (see [`restore::locate`]).
    fn check_backup<'a>(
        &'a self,
        folder: &'a str,
        account: &'a str,
    ) -> BoxFuture<'a, Result<restore::VerifiedArchive, restore::RestoreError>>;

    /// Whether the account a restore writes into exists on the mail server.
    fn check_target<'a>(
        &'a self,
        into: &'a str,
    ) -> BoxFuture<'a, Result<(), restore::RestoreError>>;

    /// The account directory of backup `folder`, read whole against its recorded SHA-256, and
    /// what rebuilding `account` from it would make on the server (which is only read). Returns
    /// the directory's SHA-256 with the plan.
    fn check_rebuild<'a>(
        &'a self,
        folder: &'a str,
        account: &'a str,
    ) -> BoxFuture<'a, Result<(String, rebuild::AccountPlan), restore::RestoreError>>;

    /// Makes `account` again from backup `folder`'s account directory, only when its content is
    /// `directory_sha256` (what the request was checked against).
    fn rebuild<'a>(
        &'a self,
        folder: &'a str,
        account: &'a str,
        directory_sha256: &'a str,
    ) -> BoxFuture<'a, Result<rebuild::Rebuilt, restore::RestoreError>>;

    /// The account directory of backup `folder`, read whole against its recorded SHA-256:
    /// returns that SHA-256 with what the directory holds.
    fn check_directory<'a>(
        &'a self,
        folder: &'a str,
    ) -> BoxFuture<'a, Result<(String, directory::DirectoryCounts), restore::RestoreError>>;

    /// Every account of backup `folder`'s directory made again when missing, then its mail (see
    /// [`rebuild::rebuild_all`]); `progress(done, total, account)`.
    fn rebuild_all<'a>(
        &'a self,
        folder: &'a str,
        directory_sha256: &'a str,
        archives: &'a std::collections::BTreeMap<String, String>,
        progress: rebuild::AccountProgress<'a>,
    ) -> BoxFuture<'a, Result<rebuild::RebuildSummary, restore::RestoreError>>;

    /// Restores `request.account` from backup `request.folder` into `request.into`, only when
    /// the archive still has the SHA-256 `request.sha256` when one is given (see
    /// [`restore::restore`]).
    fn restore<'a>(
        &'a self,
        request: restore::RestoreRequest<'a>,
        progress: Box<dyn FnMut(restore::RestoreProgress) + Send + 'a>,
    ) -> BoxFuture<'a, Result<restore::RestoreReport, restore::RestoreError>>;

    /// The restore drill of `account` from backup `folder` into a scratch copy, only when the
    /// archive still has the SHA-256 `sha256` (see [`restore::drill`]).
    fn drill<'a>(
        &'a self,
        folder: &'a str,
        account: &'a str,
        sha256: &'a str,
        progress: Box<dyn FnMut(restore::RestoreProgress) + Send + 'a>,
    ) -> BoxFuture<'a, Result<restore::RestoreReport, restore::RestoreError>>;
}

/// What the bot can run: backups, and restores where the engine has them. Empty when
/// `MAIL_SSH_HOST` is not set.
#[derive(Clone, Default)]
pub struct Engine {
    pub backups: Option<Arc<dyn Backups>>,
    pub restores: Option<Arc<dyn Restores>>,
}

impl Engine {
    /// One engine that does both (the SSH engine).
    pub fn both<E: Backups + Restores + 'static>(engine: Arc<E>) -> Engine {
        Engine {
            backups: Some(engine.clone()),
            restores: Some(engine),
        }
    }

    /// Backups alone (restores answer that they are not available).
    pub fn backups_only(backups: Arc<dyn Backups>) -> Engine {
        Engine {
            backups: Some(backups),
            restores: None,
        }
    }
}
