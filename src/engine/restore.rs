//! Restoring one mailbox from a dated backup folder into an account on the mail server: the
//! archive is checked against `SHA256SUMS`, uploaded into a bot-made stage folder on the server,
//! unpacked, and only the messages the account does not already hold are imported, folder by
//! folder, with their flags. Nothing in the account is deleted or changed, so a second restore
//! adds nothing. The result is then counted folder by folder, and the stage removed.
//!
//! Dovecot is restored with `doveadm import` (the message GUIDs compared first); a plain Maildir
//! store by copying the message files whose names are missing; Zimbra with the admin REST import
//! (`resolve=skip`: a message whose digest is already in the folder is skipped), its result
//! counted per folder from the account's export before and after.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::encryption::{self, EncryptedCopy, Identities};
use super::import::{on_server, ssh, ImportTarget};
pub use super::import::{FolderCount, RestoreError, RestoreProgress};
use super::kind::{self, ImportProgress, MailKind};
use super::link::Link;
use super::{increment, local, piece, pieces, server};
use crate::config::EngineSettings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub folder: String,
    pub account: String,
    pub into: String,
    pub file: String,
    pub bytes: u64,
    pub folders: Vec<FolderCount>,
    /// The messages the backup counted in the archive when it was verified.
    #[serde(default)]
    pub recorded: Option<u64>,
}

impl RestoreReport {
    /// Every message of the backup is in the account now: every one the restore found in the
    /// archive, and it found at least as many as the backup recorded.
    pub fn complete(&self) -> bool {
        self.folders.iter().all(|f| f.present_after >= f.in_backup) && self.short_of().is_none()
    }

    /// `(found, recorded)` when the restore found fewer messages in the archive than the backup
    /// counted in it when it was verified: a listing or an unpacking that lost some.
    pub fn short_of(&self) -> Option<(usize, u64)> {
        let found = self.in_backup();
        self.recorded
            .filter(|recorded| (found as u64) < *recorded)
            .map(|recorded| (found, recorded))
    }

    /// Messages of the archive the account does not hold after the restore.
    pub fn missing_after(&self) -> usize {
        self.folders
            .iter()
            .map(|f| f.in_backup.saturating_sub(f.present_after))
            .sum()
    }

    /// Why the restore is not complete, in plain English (the terminal's and the log's words).
    pub fn why_incomplete(&self) -> Option<String> {
        if let Some((found, recorded)) = self.short_of() {
            return Some(format!(
                "the backup counted {recorded} messages in {} when it was verified, the restore found only {found} in it",
                self.file
            ));
        }
        let missing = self.missing_after();
        (missing > 0).then(|| {
            format!(
                "{missing} of the {} messages of the backup are not in {} after the restore",
                self.in_backup(),
                self.into
            )
        })
    }

    pub fn restored(&self) -> usize {
        self.folders.iter().map(|f| f.restored).sum()
    }

    pub fn in_backup(&self) -> usize {
        self.folders.iter().map(|f| f.in_backup).sum()
    }
}

/// An archive found in a backup folder the bot made and verified.
pub struct BackupArchive {
    /// The dated folder's name.
    pub folder: String,
    pub file: String,
    /// As recorded in the folder's index when the copy was verified.
    pub sha256: String,
    pub size: u64,
    /// The plaintext's facts when the file is an encrypted copy (`NAME.age`).
    pub encrypted: Option<EncryptedCopy>,
    /// The messages the backup counted in this archive when its copy was verified (its
    /// `summary.json`, or the index of encrypted copies); none for a file that is not a mailbox.
    pub recorded_messages: Option<u64>,
    dir: local::FolderAt,
}

impl std::fmt::Debug for BackupArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} ({} bytes, {})",
            self.folder, self.file, self.size, self.sha256
        )
    }
}

/// A backup archive found and read whole against its recorded SHA-256, as plain facts.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedArchive {
    pub folder: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// What a restore asked in the chat restores: the account from backup `folder` into `into`,
/// only with the archive content (`sha256`) it was checked against.
#[derive(Debug, Clone, Copy)]
pub struct RestoreRequest<'a> {
    pub folder: &'a str,
    pub account: &'a str,
    pub into: &'a str,
    /// The archive's SHA-256 as a backup order recorded it; `None` only for a folder restored
    /// `--unrecorded` at the terminal (its own index of verified copies vouches for it).
    pub sha256: Option<&'a str>,
}

impl BackupArchive {
    /// The archive as plain facts (its content: the plaintext of an encrypted copy).
    pub fn facts(&self) -> VerifiedArchive {
        VerifiedArchive {
            folder: self.folder.clone(),
            file: self.file.clone(),
            sha256: self.content_sha256().to_owned(),
            size: self.encrypted.as_ref().map_or(self.size, |c| c.size),
        }
    }

    /// The SHA-256 of the archive's content as the server made it (and the report recorded
    /// it): the file's own, or the plaintext's of an encrypted copy.
    pub fn content_sha256(&self) -> &str {
        self.encrypted.as_ref().map_or(&self.sha256, |c| &c.sha256)
    }

    /// The archive, opened through the folder opened when it was found.
    pub fn open(&self) -> Result<std::fs::File, RestoreError> {
        self.dir
            .file(&self.file)
            .map_err(|_| RestoreError::Corrupt {
                file: self.file.clone(),
            })
    }

    /// The plaintext of the archive: the file itself, or its encrypted copy decrypted on the
    /// fly with the identity at `identity` (none, or one that does not open it, is an error).
    pub fn plaintext(
        &self,
        identity: Option<&Path>,
    ) -> Result<Box<dyn std::io::Read + Send>, RestoreError> {
        self.plaintext_of(self.open()?, identity)
    }

    /// [`plaintext`](Self::plaintext) read from `file`, the archive opened (and checked) before.
    pub fn plaintext_of(
        &self,
        file: std::fs::File,
        identity: Option<&Path>,
    ) -> Result<Box<dyn std::io::Read + Send>, RestoreError> {
        if self.encrypted.is_none() {
            return Ok(Box::new(file));
        }
        let identities = self.identities(identity)?;
        let input = std::io::BufReader::with_capacity(1 << 20, file);
        let plain = identities
            .decrypt(input)
            .map_err(|e| RestoreError::Identity {
                file: self.file.clone(),
                detail: e.to_string(),
            })?;
        Ok(Box::new(plain))
    }

    /// The identities that open this encrypted archive, or why there are none.
    fn identities(&self, identity: Option<&Path>) -> Result<Identities, RestoreError> {
        let path = identity.ok_or_else(|| RestoreError::NoIdentity {
            file: self.file.clone(),
        })?;
        Identities::load(path).map_err(|e| RestoreError::Identity {
            file: self.file.clone(),
            detail: e.to_string(),
        })
    }

    /// Whether the archive can be read: plain, or encrypted to the identity at `identity` (only
    /// its header is read).
    pub fn check_readable(&self, identity: Option<&Path>) -> Result<(), RestoreError> {
        self.plaintext(identity).map(drop)
    }

    /// Reads the archive through the folder opened when it was found and checks its SHA-256
    /// against the one recorded when the copy was verified (blocking: call off the runtime).
    pub fn check_content(&self) -> Result<(), RestoreError> {
        let corrupt = || RestoreError::Corrupt {
            file: self.file.clone(),
        };
        let opened = self.dir.file(&self.file).map_err(|_| corrupt())?;
        let path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&opened)
        ));
        match super::files::sha256_of(&path) {
            Ok((sha, _)) if sha == self.sha256 => Ok(()),
            _ => Err(corrupt()),
        }
    }
}

/// Whether `name` can be a dated folder's name: a plain name, never a path or a hidden entry.
fn plain_folder_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

/// The file of `account` in backup folder `dir`: as `summary.json` maps accounts to files, or,
/// without it, the account's portable name among the archives `SHA256SUMS` lists.
fn archive_name(
    dir: &local::FolderAt,
    sums: &HashMap<&str, &str>,
    folder: &str,
    account: &str,
) -> Result<String, RestoreError> {
    // summary.json maps accounts to files; without it, the file is the account's portable name.
    #[derive(Deserialize)]
    struct Summary {
        mailboxes: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        account: String,
        file: String,
    }
    let accounts: Vec<(String, String)> = dir
        .read("summary.json")
        .ok()
        .and_then(|b| serde_json::from_str::<Summary>(&b).ok())
        .map(|s| {
            s.mailboxes
                .into_iter()
                .map(|e| (e.account, e.file))
                .collect()
        })
        .unwrap_or_else(|| {
            sums.keys()
                .filter_map(|n| {
                    n.strip_suffix(super::files::ENCRYPTED_SUFFIX)
                        .unwrap_or(n)
                        .strip_suffix(".tar.gz")
                })
                .map(|a| (a.to_owned(), format!("{a}.tar.gz")))
                .collect()
        });
    accounts
        .iter()
        .find(|(a, _)| a == account)
        .map(|(_, f)| f.clone())
        .ok_or_else(|| {
            let mut names: Vec<&str> = accounts.iter().map(|(a, _)| a.as_str()).collect();
            names.sort();
            RestoreError::NotInBackup {
                account: account.to_owned(),
                folder: folder.to_owned(),
                available: names.join(", "),
            }
        })
}

/// `account`'s archive in the dated folder `folder` directly inside `root`, only as the bot made
/// it: a folder (not a symlink) carrying the bot's marker, the archive a plain file listed in
/// the folder's index of verified copies with the size recorded there, and the same SHA-256 in
/// `SHA256SUMS`. Everything is read through the folder opened once (`openat`, no symlink
/// followed). The content's hash is checked when the archive is read for the restore.
pub fn locate(root: &Path, folder: &str, account: &str) -> Result<BackupArchive, RestoreError> {
    locate_with(root, folder, |dir, sums| {
        archive_name(dir, sums, folder, account)
    })
}

/// The file `file` of the dated folder `folder`, found as [`locate`] finds an archive (listed in
/// `SHA256SUMS` and in the index of verified copies); `NotInBackup` when the folder has none.
pub fn locate_file(root: &Path, folder: &str, file: &str) -> Result<BackupArchive, RestoreError> {
    locate_with(root, folder, |_, sums| {
        let stored = encryption::stored_name(file, true);
        if sums.contains_key(file) || sums.contains_key(stored.as_str()) {
            Ok(file.to_owned())
        } else {
            Err(RestoreError::NotInBackup {
                account: file.to_owned(),
                folder: folder.to_owned(),
                available: String::new(),
            })
        }
    })
}

fn locate_with(
    root: &Path,
    folder: &str,
    name: impl FnOnce(&local::FolderAt, &HashMap<&str, &str>) -> Result<String, RestoreError>,
) -> Result<BackupArchive, RestoreError> {
    if !plain_folder_name(folder) {
        return Err(RestoreError::NotAFolderName(folder.to_owned()));
    }
    let not_made = || RestoreError::NotMadeByTheBot(folder.to_owned());
    let unreadable =
        |what: &str, e: std::io::Error| RestoreError::Unreadable(format!("{what}: {e}"));
    let root_at =
        local::FolderAt::open(root).map_err(|e| unreadable(&root.display().to_string(), e))?;
    let dir = match root_at.folder(folder) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RestoreError::FolderNotFound(folder.to_owned()))
        }
        // O_NOFOLLOW on a symlink, or not a folder at all.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            return Err(not_made())
        }
        Err(e) => return Err(unreadable(folder, e)),
    };
    dir.marker().ok_or_else(not_made)?;
    // A folder whose run never got to write its sums holds no verified backup.
    let sums = dir
        .read("SHA256SUMS")
        .map_err(|e| unreadable(&format!("{folder}/SHA256SUMS"), e))?;
    let sums: HashMap<&str, &str> = sums
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(h, n)| (n, h)))
        .collect();
    let (file, encrypted) = stored_form(&dir, &sums, name(&dir, &sums)?)?;
    let not_verified = || RestoreError::NotVerified { file: file.clone() };
    let index = dir
        .read(local::VERIFIED_INDEX)
        .map_err(|_| not_verified())?;
    // The newest entry for the file (a copy verified again after a retry is appended).
    let (sha256, size) = index
        .lines()
        .rev()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            Some((it.next()?, it.next()?.parse::<u64>().ok()?, it.next()?))
        })
        .filter(|(_, _, n)| *n == file)
        .map(|(h, size, _)| (h.to_owned(), size))
        .next()
        .ok_or_else(not_verified)?;
    if sums.get(file.as_str()) != Some(&sha256.as_str())
        || encrypted
            .as_ref()
            .is_some_and(|c| c.stored_sha256 != sha256)
    {
        return Err(RestoreError::Corrupt { file });
    }
    let on_disk = dir
        .file(&file)
        .and_then(|f| f.metadata())
        .map_err(|_| not_verified())?;
    if on_disk.len() != size {
        return Err(RestoreError::Corrupt { file });
    }
    let recorded_messages = recorded_messages(&dir, &file, encrypted.as_ref());
    Ok(BackupArchive {
        folder: folder.to_owned(),
        file,
        sha256,
        size,
        encrypted,
        recorded_messages,
        dir,
    })
}

/// The messages counted in `file` when its copy was verified: `summary.json`'s entry for it, or
/// the count kept with its encrypted copy.
fn recorded_messages(
    dir: &local::FolderAt,
    file: &str,
    encrypted: Option<&EncryptedCopy>,
) -> Option<u64> {
    #[derive(Deserialize)]
    struct Summary {
        mailboxes: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        file: String,
        messages: Option<u64>,
    }
    let plain = file
        .strip_suffix(super::files::ENCRYPTED_SUFFIX)
        .unwrap_or(file);
    let summarised = dir
        .read("summary.json")
        .ok()
        .and_then(|b| serde_json::from_str::<Summary>(&b).ok())
        .and_then(|s| {
            s.mailboxes
                .into_iter()
                .find(|e| e.file == plain || e.file == file)
        })
        .and_then(|e| e.messages);
    summarised.or_else(|| encrypted.and_then(|c| c.messages.as_ref().ok().copied()))
}

/// The file of `name` as the folder stores it: `NAME`, or in an encrypted folder `NAME.age` with
/// its plaintext's facts from the folder's index of encrypted copies.
fn stored_form(
    dir: &local::FolderAt,
    sums: &HashMap<&str, &str>,
    name: String,
) -> Result<(String, Option<EncryptedCopy>), RestoreError> {
    let stored = encryption::stored_name(&name, true);
    if sums.contains_key(name.as_str()) || !sums.contains_key(stored.as_str()) {
        return Ok((name, None));
    }
    let index = dir.read(super::files::ENCRYPTION_INDEX).unwrap_or_default();
    let copy = encryption::find_in(&index, &name).ok_or_else(|| RestoreError::NotVerified {
        file: stored.clone(),
    })?;
    Ok((stored, Some(copy)))
}

/// Makes the stage `$1/$2` with the bot's marker `$3`; prints its path.
const STAGE: &str = r#"set -eu
mkdir -p -- "$1"
mkdir -m 0711 -- "$1/$2"
printf '%s' "$3" > "$1/$2/.mailbox-backup-bot"
printf '%s' "$1/$2""#;

/// Receives the archive on stdin into `$1/archive.tar.gz` and prints its SHA-256.
const RECEIVE: &str = r#"set -eu
cat > "$1/.archive.part"
mv -- "$1/.archive.part" "$1/archive.tar.gz"
sha256sum -- "$1/archive.tar.gz" | cut -d' ' -f1"#;

/// Removes the restore stages under `$1` older than an hour, only those carrying the bot's
/// marker (a restore cut off left them).
const STALE_STAGES: &str = r#"for d in "$1"/.restore-*; do
  [ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/.mailbox-backup-bot" ] || continue
  [ "$(head -n 1 -- "$d/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ] || continue
  [ -n "$(find "$d/.mailbox-backup-bot" -mmin +60)" ] && rm -rf -- "$d"
done; true"#;

/// Removes the stage `$1`, only when it carries the bot's marker.
const DROP_STAGE: &str = r#"[ -f "$1/.mailbox-backup-bot" ] && [ "$(head -n 1 -- "$1/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ] && rm -rf -- "$1""#;

/// Checks, when a restore is asked, that the target account exists on the mail server.
pub async fn check_target(s: &EngineSettings, into: &str) -> Result<(), RestoreError> {
    let kind = kind::of(&s.kind);
    restorable(kind.as_ref(), &[into])?;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let link = Link::connect(s, tx)
        .await
        .map_err(|e| RestoreError::Ssh(format!("{}: {}", e.kind, e.detail)))?;
    let found = kind.target_owner(link.remote(), into).await;
    link.close().await;
    found.map(|_| ())
}

/// The kind restores mailboxes, and every name is an account name of it (never a path).
fn restorable(kind: &dyn MailKind, names: &[&str]) -> Result<(), RestoreError> {
    if kind.mailboxes().is_none() {
        return Err(RestoreError::Unsupported(kind.name().into()));
    }
    match names.iter().find(|n| !kind.is_account_name(n)) {
        Some(name) => Err(RestoreError::TargetMissing((*name).to_owned())),
        None => Ok(()),
    }
}

/// Where a restore writes the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// Into this account on the mail server (only what it lacks is added).
    Account(&'a str),
    /// A restore drill's scratch copy that no user reads, removed afterwards: for Dovecot and
    /// Maildir a mail location in the restore's own stage in the bot's server folder; for Zimbra
    /// the account `RESTORE_DRILL_ACCOUNT`, which must hold no mail and is emptied afterwards.
    Scratch,
}

/// The name a scratch copy is reported under.
pub const SCRATCH: &str = "(scratch copy)";

/// Restores `account`'s mailbox from backup `folder` into `into` (the same account by default).
pub async fn restore(
    s: &EngineSettings,
    folder: &str,
    account: &str,
    into: Option<&str>,
    expected: Option<&str>,
    progress: impl FnMut(RestoreProgress) + Send,
) -> Result<RestoreReport, RestoreError> {
    let into = into.unwrap_or(account);
    restore_to(
        s,
        folder,
        account,
        Destination::Account(into),
        expected,
        progress,
    )
    .await
}

/// The restore drill of `account`'s mailbox from backup `folder`: restored into a scratch copy
/// (see [`Destination::Scratch`]), compared with the archive and with what the backup recorded,
/// and the copy removed whatever happened. The report's [`RestoreReport::complete`] is the
/// drill's verdict.
pub async fn drill(
    s: &EngineSettings,
    folder: &str,
    account: &str,
    expected: Option<&str>,
    progress: impl FnMut(RestoreProgress) + Send,
) -> Result<RestoreReport, RestoreError> {
    restore_to(s, folder, account, Destination::Scratch, expected, progress).await
}

async fn restore_to(
    s: &EngineSettings,
    folder: &str,
    account: &str,
    destination: Destination<'_>,
    expected: Option<&str>,
    mut progress: impl FnMut(RestoreProgress) + Send,
) -> Result<RestoreReport, RestoreError> {
    let into = match destination {
        Destination::Account(into) => into,
        Destination::Scratch => SCRATCH,
    };
    let kind = kind::of(&s.kind);
    match destination {
        Destination::Account(into) => restorable(kind.as_ref(), &[account, into])?,
        Destination::Scratch => restorable(kind.as_ref(), &[account])?,
    }
    let archive = locate(&s.local_root, folder, account)?;
    let file = archive.file.clone();
    let corrupt = || RestoreError::Corrupt { file: file.clone() };
    if expected.is_some_and(|want| want != archive.content_sha256()) {
        return Err(corrupt());
    }
    // Hashed and then uploaded through one open descriptor: what is restored is what was checked
    // (and the server checks the hash of what it received again).
    let opened = archive.dir.file(&file).map_err(|_| corrupt())?;
    let path = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&opened)
    ));
    let hashing = path.clone();
    let (got, bytes) = tokio::task::spawn_blocking(move || super::files::sha256_of(&hashing))
        .await
        .map_err(|_| corrupt())?
        .map_err(|_| corrupt())?;
    if got != archive.sha256 {
        return Err(corrupt());
    }
    // What goes up is the plaintext, checked on the server against the server's own hash of
    // it; an encrypted copy is decrypted on the fly, and without the identity nothing starts.
    let is_piece = match &archive.encrypted {
        Some(copy) => copy.piece.is_some(),
        None => piece::head_of(archive.open()?).is_ok_and(|h| h.is_some()),
    };
    let (mut source, mut want, mut bytes): (Box<dyn std::io::Read + Send>, String, u64) =
        match &archive.encrypted {
            Some(copy) => (
                archive.plaintext_of(opened, s.age_identity.as_deref())?,
                copy.sha256.clone(),
                copy.size,
            ),
            None => (Box::new(opened), archive.sha256.clone(), bytes),
        };
    // A piece goes up as the mailbox it stands for that day, assembled from its manifest and
    // the earlier pieces beside it in the same folder. The scratch folder goes when this ends.
    let _scratch = match is_piece {
        true => {
            // An encrypted folder's mail is never written in plaintext onto the backup disk:
            // assembled on the admin computer's own disk instead.
            let under = match archive.encrypted {
                Some(_) => std::env::temp_dir(),
                None => s.local_root.clone(),
            };
            let scratch = Scratch::new(&under)?;
            let assembled = assemble(s, &archive.folder, source, scratch.0.clone()).await?;
            if assembled.own_sha256 != want {
                return Err(corrupt());
            }
            source = Box::new(std::fs::File::open(&assembled.path).map_err(|e| {
                RestoreError::Pieces(format!("cannot read the assembled mailbox: {e}"))
            })?);
            (want, bytes) = (assembled.sha256, assembled.size);
            Some(scratch)
        }
        false => None,
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let link = Link::connect(s, tx)
        .await
        .map_err(|e| RestoreError::Ssh(format!("{}: {}", e.kind, e.detail)))?;
    let upload = Upload {
        source,
        sha256: &want,
        size: bytes,
    };
    let result = restore_on(
        s,
        &link,
        kind.as_ref(),
        upload,
        account,
        destination,
        &mut progress,
    )
    .await;
    link.close().await;
    let folders = result?;
    Ok(RestoreReport {
        folder: archive.folder.clone(),
        account: account.to_owned(),
        into: into.to_owned(),
        file,
        bytes,
        folders,
        recorded: archive.recorded_messages,
    })
}

/// A private folder on the backup disk for a mailbox assembled from its pieces, removed with
/// everything in it when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &Path) -> Result<Scratch, RestoreError> {
        // What a restore cut off (a crash, a kill) left: its process is gone.
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(".assemble-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let path = root.join(format!(
            ".assemble-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        super::files::private_dir(&path)
            .map_err(|e| RestoreError::Pieces(format!("cannot make {}: {e}", path.display())))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The mailbox of the piece read from `own` (plaintext), assembled whole in `scratch` from the
/// earlier pieces of backup `folder` (see [`pieces::assemble`]).
async fn assemble(
    s: &EngineSettings,
    folder: &str,
    own: Box<dyn std::io::Read + Send>,
    scratch: PathBuf,
) -> Result<pieces::Assembled, RestoreError> {
    let (root, folder, identity) = (
        s.local_root.clone(),
        folder.to_owned(),
        s.age_identity.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let elder = |sha: &str| {
            let name = piece::PieceFacts::elder_name(sha);
            let opened =
                locate_file(&root, &folder, &name).and_then(|a| a.plaintext(identity.as_deref()));
            opened.map_err(|e| pieces::AssembleError::Elder {
                name,
                detail: e.to_string(),
            })
        };
        pieces::assemble(own, elder, &scratch)
    })
    .await
    .map_err(|e| RestoreError::Pieces(e.to_string()))?
    .map_err(|e| RestoreError::Pieces(e.to_string()))
}

/// The archive going up to the server: read from `source`, checked there against `sha256`.
struct Upload<'a> {
    source: Box<dyn std::io::Read + Send>,
    sha256: &'a str,
    size: u64,
}

/// The account restored into, as the server knows it: its name, its owner (`uid:gid`, empty
/// for Zimbra) and the doveadm configuration to reach it (empty by default); `scratch` when the
/// messages go to a drill's scratch copy rather than into the account's own mail.
/// Room on the server for the archive and its unpacked mail (about four times the archive)
/// above the floor; a drill holds a second unpacked copy, its scratch copy, beside it.
async fn room_for(
    s: &EngineSettings,
    r: &super::remote::Remote,
    size: u64,
    scratch: bool,
) -> Result<(), RestoreError> {
    let o = r
        .sh(server::FREE_SPACE_NEAREST, &[&s.server_backup_dir])
        .await
        .map_err(ssh)?;
    if let Some(space) = server::parse_space(&String::from_utf8_lossy(&o.stdout)) {
        let need = size.saturating_mul(if scratch { 9 } else { 5 });
        let floor = s.server_min_free.bytes(space.size);
        if space.avail.saturating_sub(need) < floor {
            return Err(RestoreError::ServerNoSpace(format!(
                "{} free on {}, the restore needs about {} and {} must stay free",
                space.avail, space.mount, need, floor
            )));
        }
    }
    Ok(())
}

async fn restore_on(
    s: &EngineSettings,
    link: &Link<'_>,
    kind: &dyn MailKind,
    upload: Upload<'_>,
    account: &str,
    destination: Destination<'_>,
    progress: ImportProgress<'_>,
) -> Result<Vec<FolderCount>, RestoreError> {
    let r = link.remote();
    // The account whose name and owner the import runs under: a drill's scratch copy of a
    // Dovecot mailbox is read and written as that mailbox's user, a Zimbra drill imports into
    // the scratch account, and a Maildir scratch copy belongs to nobody but the bot.
    let (into, scratch) = match destination {
        Destination::Account(into) => (into, false),
        Destination::Scratch if kind.drills_into_an_account() => {
            let scratch = s
                .drill_account
                .as_deref()
                .ok_or(RestoreError::NoDrillAccount)?;
            if scratch == account || !kind.is_account_name(scratch) {
                return Err(RestoreError::ScratchNotEmpty(scratch.to_owned()));
            }
            (scratch, true)
        }
        Destination::Scratch => (account, true),
    };
    // The target first: nothing is uploaded for an account that is not there.
    let owner = match scratch && !kind.scratch_has_owner() {
        true => String::new(),
        false => kind.target_owner(r, into).await?,
    };
    let target = ImportTarget {
        account: into,
        owner,
        scratch,
    };
    room_for(s, r, upload.size, scratch).await?;
    let name = format!(
        ".restore-{}{}-{}",
        if scratch { "drill-" } else { "" },
        super::files::portable_name(into),
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    );
    let marker = server::marker_text(
        &format!("restore of {account}"),
        &chrono::Utc::now().to_rfc3339(),
    );
    // A stage left by a restore cut off (a restart, a dropped link) goes first.
    let _ = r.sh(STALE_STAGES, &[&s.server_backup_dir]).await;
    let stage = on_server(r, STAGE, &[&s.server_backup_dir, &name, &marker]).await?;
    let staged = stage_and_import(r, kind, &stage, upload, &target, progress).await;
    if staged.is_ok() && !scratch {
        // The account now holds restored mail: its next backup is whole, said in the report.
        let base = format!("{}/{}", s.server_backup_dir, increment::STATE_FOLDER);
        let _ = r.sh(increment::RESET, &[&base, into]).await;
    }
    // The stage goes whatever happened. A drill's holds a copy of someone's mailbox: that it is
    // gone is checked, not assumed.
    let dropped = r.sh(DROP_STAGE, &[&stage]).await;
    if scratch {
        let gone = r.sh(r#"[ ! -e "$1" ]"#, &[&stage]).await;
        if !(dropped.is_ok() && gone.is_ok_and(|o| o.ok)) {
            return Err(RestoreError::Server(format!(
                "the drill's scratch copy in {stage} could not be removed: remove that folder by hand"
            )));
        }
    }
    staged
}

async fn stage_and_import(
    r: &super::remote::Remote,
    kind: &dyn MailKind,
    stage: &str,
    upload: Upload<'_>,
    target: &ImportTarget<'_>,
    progress: ImportProgress<'_>,
) -> Result<Vec<FolderCount>, RestoreError> {
    let Upload {
        source,
        sha256,
        size,
    } = upload;
    let o = r
        .upload(RECEIVE, &[stage], source, |sent| {
            progress(RestoreProgress::Uploading { sent, total: size })
        })
        .await
        .map_err(ssh)?;
    if !o.ok || String::from_utf8_lossy(&o.stdout).trim() != sha256 {
        return Err(RestoreError::Server(format!(
            "the uploaded archive does not match its SHA-256 {}",
            o.stderr
        )));
    }
    kind.import(r, stage, target, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(recorded: Option<u64>, folders: &[(usize, usize)]) -> RestoreReport {
        RestoreReport {
            folder: "01-01-2000".into(),
            account: "ani@djki.go.id".into(),
            into: "ani@djki.go.id".into(),
            file: "ani@djki.go.id.tar.gz".into(),
            bytes: 1,
            folders: folders
                .iter()
                .enumerate()
                .map(|(i, (in_backup, present))| FolderCount {
                    folder: format!("F{i}"),
                    in_backup: *in_backup,
                    already_there: 0,
                    restored: *present,
                    present_after: *present,
                })
                .collect(),
            recorded,
        }
    }

    #[test]
    fn a_restore_is_whole_only_when_it_found_what_the_backup_recorded() {
        // Everything found and present.
        assert!(report(Some(6), &[(4, 4), (2, 2)]).complete());
        // Nothing found in an archive the backup counted 6 messages in: not "OK, 0 of 0".
        let empty = report(Some(6), &[]);
        assert!(!empty.complete());
        assert_eq!(empty.short_of(), Some((0, 6)));
        let why = empty.why_incomplete().expect("a reason");
        assert!(why.contains("counted 6") && why.contains("only 0"), "{why}");
        // One short of the record.
        assert_eq!(report(Some(6), &[(5, 5)]).short_of(), Some((5, 6)));
        // All found, one not present afterwards.
        let short = report(Some(6), &[(6, 5)]);
        assert!(!short.complete());
        assert_eq!(short.missing_after(), 1);
        assert!(short
            .why_incomplete()
            .expect("a reason")
            .starts_with("1 of the 6"));
        // An archive with no record (not a mailbox's) is judged on what it holds.
        assert!(report(None, &[(2, 2)]).complete());
    }
}
