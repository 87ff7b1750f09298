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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::encryption::{self, EncryptedCopy, Identities};
use super::link::Link;
use super::{dovecot, local, server};
use crate::config::{BackupKind, EngineSettings, MailStore};

/// What went wrong, for the terminal and the chat to say in their words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum RestoreError {
    #[error("no backup folder {0}")]
    FolderNotFound(String),
    #[error("cannot read the backup folder: {0}")]
    Unreadable(String),
    #[error("{0:?} is not the name of a dated folder in LOCAL_BACKUP_ROOT (a name such as 25-11-2026, not a path)")]
    NotAFolderName(String),
    #[error("{0} is not a backup folder made by the bot (a symlink, or no marker of the bot)")]
    NotMadeByTheBot(String),
    #[error("the archive {file} is not in the folder's index of verified copies")]
    NotVerified { file: String },
    #[error("no backup order recorded the verified archive of {account} in {folder}")]
    NotRecorded { folder: String, account: String },
    #[error("{account} is not in backup {folder} (it holds: {available})")]
    NotInBackup {
        account: String,
        folder: String,
        available: String,
    },
    #[error("the archive {file} does not match the SHA-256 recorded when its copy was verified")]
    Corrupt { file: String },
    #[error("the account {0} does not exist on the mail server")]
    TargetMissing(String),
    #[error("restore is not available for the {0} backup kind")]
    Unsupported(String),
    #[error("not enough free space on the mail server: {0}")]
    ServerNoSpace(String),
    #[error("backup {0} has no account directory (made before the bot kept one, or of a kind of server without one)")]
    NoDirectory(String),
    #[error("{account} is not in the account directory of backup {folder}")]
    NotInDirectory { account: String, folder: String },
    #[error(
        "the server's configuration no longer names the passwd-file {0} the account came from"
    )]
    SourceGone(String),
    #[error("{file} is encrypted and no identity was given to decrypt it (restore --identity FILE, or BACKUP_AGE_IDENTITY)")]
    NoIdentity { file: String },
    #[error("{file} cannot be decrypted: {detail}")]
    Identity { file: String, detail: String },
    #[error("no scratch account for the restore drill: set RESTORE_DRILL_ACCOUNT to an account made for it alone")]
    NoDrillAccount,
    #[error("the drill's scratch account {0} holds mail (or is the account drilled): a drill writes only into an empty account made for it")]
    ScratchNotEmpty(String),
    #[error("SSH: {0}")]
    Ssh(String),
    #[error("on the server: {0}")]
    Server(String),
}

/// One folder of the restored mailbox, as counted after the restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderCount {
    pub folder: String,
    /// Messages of this folder in the backup.
    pub in_backup: usize,
    /// Of those, how many the account held before.
    pub already_there: usize,
    /// Added now.
    pub restored: usize,
    /// Of the backup's, how many the account holds now (all of them when the restore is whole).
    pub present_after: usize,
}

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

/// What the restore reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum RestoreProgress {
    Uploading {
        sent: u64,
        total: u64,
    },
    Importing {
        folder: String,
        done: usize,
        total: usize,
    },
    /// A whole folder's rebuild: the account it is at.
    Rebuilding {
        account: String,
        done: usize,
        total: usize,
    },
    Checking,
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
    pub sha256: &'a str,
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
            .map_err(|detail| RestoreError::Identity {
                file: self.file.clone(),
                detail,
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

/// Unpacks the archive into `$1/x`, owned by `$2` (uid:gid), and removes the archive.
const UNPACK: &str = r#"set -eu
mkdir -p -- "$1/x"
tar -xzf "$1/archive.tar.gz" -C "$1/x" --no-same-owner
rm -f -- "$1/archive.tar.gz"
[ -z "$2" ] || chown -R -- "$2" "$1/x""#;

/// Removes the restore stages under `$1` older than an hour, only those carrying the bot's
/// marker (a restore cut off left them).
const STALE_STAGES: &str = r#"for d in "$1"/.restore-*; do
  [ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/.mailbox-backup-bot" ] || continue
  [ "$(head -n 1 -- "$d/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ] || continue
  [ -n "$(find "$d/.mailbox-backup-bot" -mmin +60)" ] && rm -rf -- "$d"
done; true"#;

/// Removes the stage `$1`, only when it carries the bot's marker.
const DROP_STAGE: &str = r#"[ -f "$1/.mailbox-backup-bot" ] && [ "$(head -n 1 -- "$1/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ] && rm -rf -- "$1""#;

/// Dovecot: `$1` the account, `$2` the doveadm config (or empty); prints `uid:gid`, or fails
/// when there is no such account.
const DOVECOT_USER: &str = r#"if [ -n "$2" ]; then set -- "$1" -c "$2"; else set -- "$1"; fi
u=$1; shift
uid=$(doveadm "$@" user -f uid -- "$u") && gid=$(doveadm "$@" user -f gid -- "$u") && [ -n "$uid" ] && printf '%s:%s' "$uid" "$gid""#;

/// A Dovecot script's `-o` options for the mail location `$loc` when one is given (the unpacked
/// archive, or a drill's scratch copy): the location, and nothing of the account's own
/// bookkeeping acting on it — no quota counted against the user (dict or SQL quotas outlive the
/// copy), no attachment store shared with the live mail, no full-text index or push
/// notification fed with a copy.
macro_rules! other_location {
    () => {
        "[ -z \"$loc\" ] || set -- \"$@\" -o \"mail_location=maildir:$loc\" -o plugin/quota= -o plugin/quota2= -o mail_attachment_dir= -o plugin/fts= -o plugin/push_notification_driver=\n"
    };
}

/// Dovecot: lists the messages of `$1` (or, with `$3`, of the Maildir `$3` read as `$1`'s) as a
/// JSON array of `{mailbox, uid, guid, hdr.message-id, size.virtual, date.sent}`. JSON, not
/// `-f tab`: a header value is printed as the message has it, and a folded `Message-ID:` would
/// split a tab record over two lines.
const DOVECOT_LIST: &str = concat!(
    r#"u=$1; conf=$2; loc=$3
set --
[ -z "$conf" ] || set -- -c "$conf"
"#,
    other_location!(),
    r#"exec doveadm "$@" -f json fetch -u "$u" 'mailbox uid guid hdr.message-id size.virtual date.sent' all"#
);

/// Dovecot: the folders that hold messages (not a parent made only by its children) of `$1`
/// (or of the Maildir `$3` read as `$1`'s), as a JSON array of `{mailbox, guid}`. `$4` is the
/// namespace prefix: with one, doveadm's `*` matches no folder.
const DOVECOT_FOLDERS: &str = concat!(
    r#"u=$1; conf=$2; loc=$3; prefix=$4
set --
[ -z "$conf" ] || set -- -c "$conf"
"#,
    other_location!(),
    r#"if [ -n "$prefix" ]; then
  exec doveadm "$@" -f json mailbox status -u "$u" guid INBOX "$prefix*"
fi
exec doveadm "$@" -f json mailbox status -u "$u" guid '*'"#
);

/// Dovecot: creates and subscribes folder `$2` of `$1` (in the mail location `$4` when given).
const DOVECOT_CREATE: &str = concat!(
    r#"u=$1; box=$2; conf=$3; loc=$4
set --
[ -z "$conf" ] || set -- -c "$conf"
"#,
    other_location!(),
    r#"exec doveadm "$@" mailbox create -s -u "$u" "$box""#
);

/// Dovecot: imports the messages `$4` (a UID set) of folder `$3` (as `doveadm import` names it)
/// from the Maildir `$2` into `$1` under the parent `$6` (see [`dovecot::Namespace`]), with their
/// flags, creating and subscribing the folder when missing; into the mail location `$7` when
/// given.
const DOVECOT_IMPORT: &str = concat!(
    r#"u=$1; src=$2; box=$3; uids=$4; conf=$5; parent=$6; loc=$7
set --
[ -z "$conf" ] || set -- -c "$conf"
"#,
    other_location!(),
    r#"exec doveadm "$@" import -s -u "$u" "maildir:$src" "$parent" mailbox "$box" uid "$uids""#
);

/// Maildir: copies every message file of the unpacked `$1` (one Maildir tree) into the account's
/// Maildir `$2` when no file of the same base name (before `:2,`) is in that folder's `cur` or
/// `new`; prints per folder `folder<TAB>in backup<TAB>already there<TAB>copied` (the top folder
/// is `INBOX`). A folder without a `dovecot-keywords` gets the backup's: the lowercase letters of
/// the names are keywords only through it. Folders and files it makes belong to `$3` (the
/// account's `uid:gid`); a copy that fails stops it with the reason.
const MAILDIR_RESTORE: &str = r#"set -eu
src=$1; dst=$2; owner=$3
[ -d "$dst" ] || { echo "no such Maildir: $dst" >&2; exit 3; }
cd -- "$src"
find . -type d \( -name cur -o -name new \) -exec dirname -- {} \; | sort -u | while IFS= read -r box; do
  n=0; had=0; put=0
  mkdir -p -- "$dst/$box/cur" "$dst/$box/new" "$dst/$box/tmp"
  [ -z "$owner" ] || chown -- "$owner" "$dst/$box" "$dst/$box/cur" "$dst/$box/new" "$dst/$box/tmp"
  kw=$dst/$box/tmp/dovecot-keywords.restore
  if [ -f "$box/dovecot-keywords" ] && [ ! -e "$dst/$box/dovecot-keywords" ]; then
    cp -- "$box/dovecot-keywords" "$kw" && { [ -z "$owner" ] || chown -- "$owner" "$kw"; } \
      && mv -n -- "$kw" "$dst/$box/dovecot-keywords" \
      || { rm -f -- "$kw"; echo "cannot copy the keywords of $box into $dst" >&2; exit 1; }
    rm -f -- "$kw"
  fi
  for f in "$box"/cur/* "$box"/new/*; do
    [ -f "$f" ] || continue
    n=$((n+1)); b=$(basename -- "$f"); base=${b%%:*}; part=$(basename -- "$(dirname -- "$f")")
    there=0
    for g in "$dst/$box/cur/$base" "$dst/$box/cur/$base":* "$dst/$box/new/$base" "$dst/$box/new/$base":*; do
      [ -e "$g" ] && there=1
    done
    if [ "$there" = 1 ]; then had=$((had+1));
    elif cp -p -- "$f" "$dst/$box/tmp/$b" && mv -- "$dst/$box/tmp/$b" "$dst/$box/$part/$b"; then put=$((put+1));
    else rm -f -- "$dst/$box/tmp/$b"; echo "cannot copy $b into $dst/$box" >&2; exit 1; fi
  done
  name=${box#./}; [ "$box" = . ] && name=INBOX
  printf '%s\t%s\t%s\t%s\n' "$name" "$n" "$had" "$put"
done"#;

/// Makes a drill's scratch mail location `$1/scratch/Maildir`, owned by `$2` (`uid:gid`, or
/// empty: the bot's), and prints its path.
const SCRATCH_LOCATION: &str = r#"set -eu
mkdir -m 0700 -- "$1/scratch"
mkdir -- "$1/scratch/Maildir"
[ -z "$2" ] || chown -R -- "$2" "$1/scratch"
printf '%s' "$1/scratch/Maildir""#;

/// Parses [`MAILDIR_RESTORE`]'s `folder<TAB>in backup<TAB>had<TAB>copied` lines; a line that
/// does not parse is refused, not skipped.
fn parse_maildir_counts(text: &str) -> Result<Vec<FolderCount>, String> {
    text.lines()
        .map(|l| {
            let mut f = l.rsplitn(4, '\t');
            let mut n = || f.next().and_then(|v| v.parse::<usize>().ok());
            let (put, had, all) = (n(), n(), n());
            match (f.next(), all, had, put) {
                (Some(folder), Some(in_backup), Some(had), Some(put)) => Ok(FolderCount {
                    folder: folder.trim_start_matches("./").to_owned(),
                    in_backup,
                    already_there: had,
                    restored: put,
                    present_after: had + put,
                }),
                _ => Err(format!("the restore's count does not parse: {l:?}")),
            }
        })
        .collect()
}

/// A message's identity for "is it there already": its folder and its GUID, which Dovecot keeps
/// through the backup (`doveadm backup`) and the import; without one, its Message-ID, size and
/// date.
type Key = (String, String);

/// Parses `doveadm -f json fetch 'mailbox uid guid hdr.message-id size.virtual date.sent'`.
/// A listing that does not parse whole is refused: a record skipped here would be a message
/// the restore silently leaves behind.
fn parse_listing(text: &str) -> Result<Vec<(Key, u32)>, String> {
    #[derive(Deserialize)]
    struct Fetched {
        mailbox: String,
        uid: String,
        #[serde(default)]
        guid: String,
        #[serde(rename = "hdr.message-id", default)]
        message_id: String,
        #[serde(rename = "size.virtual", default)]
        size: String,
        #[serde(rename = "date.sent", default)]
        date: String,
    }
    json_records::<Fetched>(text)?
        .into_iter()
        .map(|m| {
            let uid = m.uid.parse().map_err(|_| {
                format!("the listing gives {:?} as a UID in {:?}", m.uid, m.mailbox)
            })?;
            // Without a GUID: the Message-ID (unfolded), size and date.
            let id = if m.guid.is_empty() {
                let unfolded: String = m.message_id.split_whitespace().collect();
                format!("{unfolded}|{}|{}", m.size, m.date)
            } else {
                m.guid
            };
            Ok(((m.mailbox, id), uid))
        })
        .collect()
}

/// Parses `doveadm -f json mailbox status … guid`: the folders' names.
fn parse_folders(text: &str) -> Result<std::collections::BTreeSet<String>, String> {
    #[derive(Deserialize)]
    struct Status {
        mailbox: String,
    }
    Ok(json_records::<Status>(text)?
        .into_iter()
        .map(|s| s.mailbox)
        .collect())
}

/// doveadm's `-f json` output: one array of records (nothing at all when there are none).
fn json_records<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| format!("doveadm's listing does not parse: {e}"))
}

/// Per folder: the UIDs of the backup's messages the account does not hold (a message present
/// twice in the backup and once in the account is imported once), and the folder's counts.
fn missing(source: &[(Key, u32)], target: &[(Key, u32)]) -> BTreeMap<String, (Vec<u32>, usize)> {
    let mut have: HashMap<&Key, usize> = HashMap::new();
    for (k, _) in target {
        *have.entry(k).or_default() += 1;
    }
    let mut out: BTreeMap<String, (Vec<u32>, usize)> = BTreeMap::new();
    for (k, uid) in source {
        let entry = out.entry(k.0.clone()).or_default();
        match have.get_mut(k) {
            Some(n) if *n > 0 => {
                *n -= 1;
                entry.1 += 1;
            }
            _ => entry.0.push(*uid),
        }
    }
    out
}

/// UID sets of at most 500 UIDs, for the command line.
fn uid_sets(uids: &[u32]) -> Vec<String> {
    uids.chunks(500)
        .map(|c| c.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
        .collect()
}

fn ssh(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Ssh(e.to_string())
}

fn doveadm_config(store: &MailStore) -> String {
    match store {
        MailStore::Dovecot { config } => config.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The target account's owner on the server (`uid:gid`, empty for Zimbra); `TargetMissing`
/// when there is no such account.
async fn target_owner(
    r: &super::remote::Remote,
    store: &MailStore,
    conf: &str,
    into: &str,
) -> Result<String, RestoreError> {
    Ok(match store {
        MailStore::Dovecot { .. } => {
            let o = r.sh(DOVECOT_USER, &[into, conf]).await.map_err(ssh)?;
            if !o.ok {
                return Err(RestoreError::TargetMissing(into.to_owned()));
            }
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        }
        MailStore::Maildir { root } => {
            let o = r
                .sh(
                    r#"[ -d "$1/$2" ] && stat -c '%u:%g' -- "$1/$2""#,
                    &[root, into],
                )
                .await
                .map_err(ssh)?;
            if !o.ok || into.contains('/') {
                return Err(RestoreError::TargetMissing(into.to_owned()));
            }
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        }
        MailStore::Zimbra => {
            let o = r.sh(super::zimbra::LIST, &[]).await.map_err(ssh)?;
            let known = String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == into);
            if !o.ok || !known {
                return Err(RestoreError::TargetMissing(into.to_owned()));
            }
            String::new()
        }
    })
}

/// Checks, when a restore is asked, that the target account exists on the mail server.
pub async fn check_target(s: &EngineSettings, into: &str) -> Result<(), RestoreError> {
    let BackupKind::Mailboxes(store) = &s.kind else {
        return Err(RestoreError::Unsupported("command".into()));
    };
    if !plain_account(into, store) {
        return Err(RestoreError::TargetMissing(into.to_owned()));
    }
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let link = Link::connect(s, tx)
        .await
        .map_err(|e| RestoreError::Ssh(format!("{}: {}", e.kind, e.detail)))?;
    let found = target_owner(link.remote(), store, &doveadm_config(store), into).await;
    link.close().await;
    found.map(|_| ())
}

/// An account is a name, never a path: nothing outside the mail store is read or written. On
/// Zimbra an account is only ever a name in the directory and a URL (percent-encoded, or by its
/// id), never a file, so `/` is allowed there as Zimbra allows it (`bagian/umum@…` is a valid
/// address); on a Maildir or Dovecot store the name becomes a directory.
fn plain_account(name: &str, store: &MailStore) -> bool {
    let slash_ok = matches!(store, MailStore::Zimbra);
    !(name.is_empty()
        || name == "."
        || name == ".."
        || name.starts_with('-')
        || name.contains('\0')
        || (!slash_ok && name.contains('/')))
}

/// Runs a fixed server script: its output when it succeeds, its stderr as the error otherwise.
async fn on_server(
    r: &super::remote::Remote,
    script: &str,
    args: &[&str],
) -> Result<String, RestoreError> {
    let o = r.sh(script, args).await.map_err(ssh)?;
    if !o.ok {
        return Err(RestoreError::Server(o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
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
    progress: impl FnMut(RestoreProgress),
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
    progress: impl FnMut(RestoreProgress),
) -> Result<RestoreReport, RestoreError> {
    restore_to(s, folder, account, Destination::Scratch, expected, progress).await
}

async fn restore_to(
    s: &EngineSettings,
    folder: &str,
    account: &str,
    destination: Destination<'_>,
    expected: Option<&str>,
    mut progress: impl FnMut(RestoreProgress),
) -> Result<RestoreReport, RestoreError> {
    let into = match destination {
        Destination::Account(into) => into,
        Destination::Scratch => SCRATCH,
    };
    let store = match &s.kind {
        BackupKind::Mailboxes(store) => store.clone(),
        BackupKind::Command { .. } => return Err(RestoreError::Unsupported("command".into())),
    };
    for name in [account, into] {
        if !plain_account(name, &store) && name != SCRATCH {
            return Err(RestoreError::TargetMissing(name.to_owned()));
        }
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
    let (source, want, bytes): (Box<dyn std::io::Read + Send>, String, u64) =
        match &archive.encrypted {
            Some(copy) => (
                archive.plaintext_of(opened, s.age_identity.as_deref())?,
                copy.sha256.clone(),
                copy.size,
            ),
            None => (Box::new(opened), archive.sha256.clone(), bytes),
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
        &store,
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

/// The archive going up to the server: read from `source`, checked there against `sha256`.
struct Upload<'a> {
    source: Box<dyn std::io::Read + Send>,
    sha256: &'a str,
    size: u64,
}

/// The account restored into, as the server knows it: its name, its owner (`uid:gid`, empty
/// for Zimbra) and the doveadm configuration to reach it (empty by default); `scratch` when the
/// messages go to a drill's scratch copy rather than into the account's own mail.
struct Target<'a> {
    account: &'a str,
    owner: String,
    conf: String,
    scratch: bool,
}

async fn restore_on(
    s: &EngineSettings,
    link: &Link<'_>,
    store: &MailStore,
    upload: Upload<'_>,
    account: &str,
    destination: Destination<'_>,
    progress: &mut impl FnMut(RestoreProgress),
) -> Result<Vec<FolderCount>, RestoreError> {
    let r = link.remote();
    let conf = doveadm_config(store);
    // The account whose name and owner the import runs under: a drill's scratch copy of a
    // Dovecot mailbox is read and written as that mailbox's user, a Zimbra drill imports into
    // the scratch account, and a Maildir scratch copy belongs to nobody but the bot.
    let (into, scratch) = match (destination, store) {
        (Destination::Account(into), _) => (into, false),
        (Destination::Scratch, MailStore::Zimbra) => {
            let scratch = s
                .drill_account
                .as_deref()
                .ok_or(RestoreError::NoDrillAccount)?;
            if scratch == account || !plain_account(scratch, store) {
                return Err(RestoreError::ScratchNotEmpty(scratch.to_owned()));
            }
            (scratch, true)
        }
        (Destination::Scratch, _) => (account, true),
    };
    // The target first: nothing is uploaded for an account that is not there.
    let owner = match (scratch, store) {
        (true, MailStore::Maildir { .. }) => String::new(),
        _ => target_owner(r, store, &conf, into).await?,
    };
    let target = Target {
        account: into,
        owner,
        conf,
        scratch,
    };
    // Room for the archive and its unpacked mail (about four times the archive) above the floor;
    // a drill holds a second unpacked copy, its scratch copy, beside it.
    let size = upload.size;
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
    let staged = stage_and_import(r, store, &stage, upload, &target, progress).await;
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
    store: &MailStore,
    stage: &str,
    upload: Upload<'_>,
    target: &Target<'_>,
    progress: &mut impl FnMut(RestoreProgress),
) -> Result<Vec<FolderCount>, RestoreError> {
    let Upload {
        source,
        sha256,
        size,
    } = upload;
    let (into, owner, conf) = (target.account, target.owner.as_str(), target.conf.as_str());
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
    if let MailStore::Zimbra = store {
        return zimbra_import(r, stage, target, progress).await;
    }
    on_server(r, UNPACK, &[stage, owner]).await?;
    // A drill's copy goes into the stage, which is removed with it.
    let scratch = if target.scratch {
        on_server(r, SCRATCH_LOCATION, &[stage, owner]).await?
    } else {
        String::new()
    };
    match store {
        MailStore::Dovecot { .. } => {
            dovecot_import(r, stage, conf, (into, &scratch), progress).await
        }
        MailStore::Maildir { root } => {
            progress(RestoreProgress::Importing {
                folder: String::new(),
                done: 0,
                total: 1,
            });
            // The archive holds the account's folder by its name: its contents are the Maildir.
            let src = format!("{stage}/x");
            let o = r
                .sh(
                    r#"set -- "$1"/*; [ "$#" -eq 1 ] && [ -d "$1" ] && printf '%s' "$1""#,
                    &[&src],
                )
                .await
                .map_err(ssh)?;
            if !o.ok {
                return Err(RestoreError::Server(
                    "the archive is not one Maildir".into(),
                ));
            }
            let src = String::from_utf8_lossy(&o.stdout).into_owned();
            let dst = if target.scratch {
                scratch
            } else {
                format!("{root}/{into}")
            };
            let counted = on_server(r, MAILDIR_RESTORE, &[&src, &dst, owner]).await?;
            parse_maildir_counts(&counted).map_err(RestoreError::Server)
        }
        MailStore::Zimbra => Err(RestoreError::Unsupported("zimbra".into())),
    }
}

/// Messages per folder of a Zimbra `.tgz` export, from its listing (`tar -tzf
/// --quoting-style=escape`, one escaped name a line): `Folder/…-Subject.eml`, the folder split
/// into `Folder!1`, `Folder!2` … every 500 items (`ArchiveFormatter.saveItem`), its name as the
/// export writes it (`:*?"<>|` as `_`).
fn zimbra_counts(listing: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for entry in listing.lines().map(tar_unescape) {
        if !entry.ends_with(".eml") {
            continue;
        }
        let folder = entry.rsplit_once('/').map_or("", |(f, _)| f);
        let folder = match folder.rsplit_once('!') {
            Some((f, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => f,
            _ => folder,
        };
        *out.entry(folder.to_owned()).or_default() += 1;
    }
    out
}

/// A member name as GNU tar's `escape` quoting prints it: `\\`, `\a \b \f \n \r \t \v`, and
/// `\ooo` for every other byte it does not print as it is (in the C locale, every byte of a
/// UTF-8 name beyond ASCII).
fn tar_unescape(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            out.push(
                d.iter()
                    .fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')),
            );
            i += 4;
            continue;
        }
        out.push(match b[i + 1] {
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            other => other,
        });
        i += 2;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Zimbra: the account's messages per folder before and after the REST import (`resolve=skip`),
/// from its own export, and the backup's from the archive. A drill's scratch account must hold
/// no item at all (any folder, Trash and Junk included) and is emptied afterwards by the
/// zimbraId read then, whatever happened.
async fn zimbra_import(
    r: &super::remote::Remote,
    stage: &str,
    target: &Target<'_>,
    progress: &mut impl FnMut(RestoreProgress),
) -> Result<Vec<FolderCount>, RestoreError> {
    let into = target.account;
    let archive = format!("{stage}/archive.tar.gz");
    let listing = |file: String| async move {
        Ok(zimbra_counts(
            &on_server(r, r#"tar --quoting-style=escape -tzf "$1""#, &[&file]).await?,
        ))
    };
    let account_counts = |name: &'static str| async move {
        let out = format!("{stage}/{name}.tgz");
        on_server(r, super::zimbra::EXPORT, &[&out, into, stage]).await?;
        let counts = listing(out.clone()).await?;
        let _ = r.sh(r#"rm -f -- "$1""#, &[&out]).await;
        Ok(counts)
    };
    let backup = listing(archive.clone()).await?;
    // A drill writes only into an empty account: one that holds anything may be someone's.
    let scratch_id = if target.scratch {
        let checked = on_server(r, super::zimbra::SCRATCH, &[into, stage]).await?;
        let (id, items) = super::zimbra::parse_scratch(&checked).ok_or_else(|| {
            RestoreError::Server(format!("the scratch account's check says {checked:?}"))
        })?;
        if items > 0 {
            return Err(RestoreError::ScratchNotEmpty(into.to_owned()));
        }
        Some(id)
    } else {
        None
    };
    let before = account_counts("before").await;
    let after = match before {
        Ok(before) => {
            progress(RestoreProgress::Importing {
                folder: String::new(),
                done: 0,
                total: 1,
            });
            // A scratch copy gets no folder shares.
            let acl = if target.scratch { "noacl" } else { "" };
            match on_server(r, super::zimbra::IMPORT, &[&archive, into, stage, acl]).await {
                Ok(_) => {
                    progress(RestoreProgress::Checking);
                    account_counts("after").await.map(|after| (before, after))
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if let Some(id) = scratch_id {
        // Emptied whatever happened: the scratch account is left as the drill found it.
        on_server(r, super::zimbra::EMPTY, &[into, &id, stage]).await?;
    }
    let (before, after) = after?;
    Ok(backup
        .into_iter()
        .map(|(folder, in_backup)| {
            let had = before.get(&folder).copied().unwrap_or(0);
            let now = after.get(&folder).copied().unwrap_or(0);
            FolderCount {
                already_there: in_backup.min(had),
                restored: now.saturating_sub(had),
                // Counted: the folder holds at least as many as the backup has.
                present_after: in_backup.min(now),
                in_backup,
                folder,
            }
        })
        .collect())
}

/// `to` is the account and the mail location written (empty: the account's own; a drill's
/// scratch copy otherwise).
async fn dovecot_import(
    r: &super::remote::Remote,
    stage: &str,
    conf: &str,
    to: (&str, &str),
    progress: &mut impl FnMut(RestoreProgress),
) -> Result<Vec<FolderCount>, RestoreError> {
    let (into, location) = to;
    let maildir = format!("{stage}/x/Maildir");
    // The archive's folders are named in the account's own spelling (separator, prefix) for
    // the comparison, and in `doveadm import`'s for the import.
    let ns = dovecot::Namespace::parse(&on_server(r, dovecot::NAMESPACE, &[into, conf]).await?);
    let from_archive = |name: &str| ns.target_name(&ns.import_name(name));
    let list = |loc: String| async move {
        parse_listing(&on_server(r, DOVECOT_LIST, &[into, conf, &loc]).await?)
            .map_err(RestoreError::Server)
    };
    let prefix = ns.prefix.as_str();
    let folders = |loc: String| async move {
        parse_folders(&on_server(r, DOVECOT_FOLDERS, &[into, conf, &loc, prefix]).await?)
            .map_err(RestoreError::Server)
    };
    // The same folder tree: folders without messages too. `import_as` maps the account's
    // spelling back to the archive's.
    let mut import_as: HashMap<String, String> = HashMap::new();
    for name in folders(maildir.clone()).await? {
        import_as.insert(from_archive(&name), ns.import_name(&name));
    }
    let target_folders = folders(location.to_owned()).await?;
    // INBOX is always there (a new account's is made when first opened).
    let to_make = import_as
        .keys()
        .filter(|f| *f != "INBOX" && !target_folders.contains(*f));
    for folder in to_make {
        on_server(r, DOVECOT_CREATE, &[into, folder, conf, location]).await?;
    }
    let source: Vec<(Key, u32)> = list(maildir.clone())
        .await?
        .into_iter()
        .map(|((folder, id), uid)| {
            let name = from_archive(&folder);
            import_as
                .entry(name.clone())
                .or_insert_with(|| ns.import_name(&folder));
            ((name, id), uid)
        })
        .collect();
    let before = list(location.to_owned()).await?;
    let mut todo = missing(&source, &before);
    for folder in import_as.keys() {
        todo.entry(folder.clone()).or_default();
    }
    let total = todo.len();
    for (done, (folder, (uids, _))) in todo.iter().enumerate() {
        progress(RestoreProgress::Importing {
            folder: folder.clone(),
            done,
            total,
        });
        let Some(box_name) = import_as.get(folder) else {
            continue;
        };
        let parent = ns.import_parent(box_name);
        for set in uid_sets(uids) {
            on_server(
                r,
                DOVECOT_IMPORT,
                &[into, &maildir, box_name, &set, conf, &parent, location],
            )
            .await?;
        }
    }
    progress(RestoreProgress::Checking);
    let after = list(location.to_owned()).await?;
    Ok(folder_counts(todo, &missing(&source, &after)))
}

/// Per folder: what the backup holds, what was there already, what was imported, and what the
/// account holds now of the backup's messages (`still`: what is still missing).
fn folder_counts(
    todo: BTreeMap<String, (Vec<u32>, usize)>,
    still: &BTreeMap<String, (Vec<u32>, usize)>,
) -> Vec<FolderCount> {
    todo.into_iter()
        .map(|(folder, (uids, already))| {
            let in_backup = uids.len() + already;
            let left = still.get(&folder).map_or(0, |(u, _)| u.len());
            FolderCount {
                folder,
                in_backup,
                already_there: already,
                restored: uids.len(),
                present_after: in_backup - left,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: &str, id: &str) -> Key {
        (b.into(), id.into())
    }

    #[test]
    fn only_what_the_account_lacks_is_imported_counting_copies() {
        let source = vec![
            (key("INBOX", "<a>"), 1),
            (key("INBOX", "<b>"), 2),
            (key("INBOX", ""), 3),
            (key("INBOX", ""), 4),
            (key("Arsip", "<c>"), 1),
        ];
        let target = vec![(key("INBOX", "<a>"), 7), (key("INBOX", ""), 8)];
        let m = missing(&source, &target);
        assert_eq!(m["INBOX"], (vec![2, 4], 2));
        assert_eq!(m["Arsip"], (vec![1], 0));
        // After the import, nothing is missing: a second restore imports nothing.
        let all: Vec<(Key, u32)> = source.clone();
        assert!(missing(&source, &all).values().all(|(u, _)| u.is_empty()));
    }

    #[test]
    fn zimbra_exports_are_counted_per_folder_across_batches() {
        let listing = "Inbox/0000000257-a.eml.meta\nInbox/0000000257-a.eml\nInbox!1/0000000800-b.eml\nSent/0000000900-c.eml\nBriefs/2026/0000000901-d.eml\n";
        let c = zimbra_counts(listing);
        assert_eq!(c["Inbox"], 2);
        assert_eq!(c["Sent"], 1);
        assert_eq!(c["Briefs/2026"], 1);
        // A folder whose name ends in "!" is not a batch; "!N" only on the last folder.
        let c = zimbra_counts("Penting!/0000000300-x.eml\nA!1/B/0000000301-y.eml\n");
        assert_eq!(c["Penting!"], 1);
        assert_eq!(c["A!1/B"], 1);
    }

    #[test]
    fn zimbra_listings_are_read_as_gnu_tar_escapes_them() {
        // `tar --quoting-style=escape -tzf` in the C locale: UTF-8 bytes in octal, tab as \t.
        let listing = "\\303\\206r\\303\\270 \\303\\234n\\303\\257c\\303\\266d\\303\\251/0000000309-Folder.eml\n\
                       \\346\\227\\245\\346\\234\\254\\350\\252\\236/0000000310-x.eml\n\
                       Inbox/0000000298-tab\\tdi tengah.eml\nHukum & Kepatuhan/a b\\\\c.eml\n";
        let c = zimbra_counts(listing);
        let folders: Vec<&str> = c.keys().map(String::as_str).collect();
        assert_eq!(
            folders,
            vec!["Hukum & Kepatuhan", "Inbox", "Ærø Ünïcödé", "日本語"]
        );
        assert_eq!(tar_unescape("a\\tb\\\\c\\nd"), "a\tb\\c\nd");
        assert_eq!(tar_unescape("ends\\"), "ends\\");
    }

    #[test]
    fn listings_parse_folded_headers_and_uid_sets_stay_short() {
        // As doveadm -f json prints them: a folded Message-ID keeps its fold, escaped.
        let text = r#"[{"mailbox":"INBOX","uid":"4","guid":"1795616462.M98P6.vm,S=39","hdr.message-id":"\n <m1@x>","size.virtual":"43","date.sent":"1970-01-01 00:00:00 (+0000)"},{"mailbox":"Surat\tMasuk/Ærø","uid":"1","guid":"","hdr.message-id":"\n <long@example.go.id>","size.virtual":"25","date.sent":"2026-11-01 10:00:00 (+0700)"}]"#;
        let l = parse_listing(text).expect("parses");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].0, ("INBOX".into(), "1795616462.M98P6.vm,S=39".into()));
        assert_eq!(l[0].1, 4);
        assert_eq!(l[1].0 .0, "Surat\tMasuk/Ærø");
        assert_eq!(
            l[1].0 .1,
            "<long@example.go.id>|25|2026-11-01 10:00:00 (+0700)"
        );
        assert_eq!(parse_listing("").expect("empty"), vec![]);
        let uids: Vec<u32> = (1..=1001).collect();
        let sets = uid_sets(&uids);
        assert_eq!(sets.len(), 3);
        assert!(sets[2] == "1001");
    }

    #[test]
    fn a_listing_cut_short_or_malformed_is_refused_not_skipped() {
        let whole = r#"[{"mailbox":"INBOX","uid":"1","guid":"a"},{"mailbox":"INBOX","uid":"2","guid":"b"}]"#;
        assert_eq!(parse_listing(whole).expect("whole").len(), 2);
        // Cut off in the middle of the second record.
        let cut = &whole[..whole.len() - 20];
        assert!(parse_listing(cut).is_err());
        // The old tab format, or a UID that is not a number.
        assert!(parse_listing("mailbox\tuid\nINBOX\t1\n").is_err());
        assert!(parse_listing(r#"[{"mailbox":"INBOX","uid":"x"}]"#).is_err());
        assert!(parse_folders(r#"[{"mailbox":"INBOX"},"#).is_err());
        assert_eq!(
            parse_folders(r#"[{"mailbox":"INBOX","guid":"1"},{"mailbox":"A & B","guid":"2"}]"#)
                .expect("folders")
                .len(),
            2
        );
    }

    /// Runs [`MAILDIR_RESTORE`] here, from `src` into `dst` (no owner given).
    fn maildir_restore(src: &Path, dst: &Path) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(MAILDIR_RESTORE)
            .arg("sh")
            .arg(src)
            .arg(dst)
            .arg("")
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn a_maildir_restore_brings_a_folders_keywords_where_it_has_none() {
        let dir = std::env::temp_dir().join(format!("mbb-maildir-kw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (src, dst) = (dir.join("src"), dir.join("dst"));
        for (top, folder) in [(&src, "."), (&src, ".Arsip"), (&dst, ".")] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(top.join(folder).join(sub)).unwrap();
            }
        }
        let keywords = "0 $Forwarded\n1 Penting\n";
        std::fs::write(src.join("dovecot-keywords"), keywords).unwrap();
        std::fs::write(src.join(".Arsip/dovecot-keywords"), keywords).unwrap();
        std::fs::write(src.join("cur/1.a:2,Sab"), "Subject: a\n\na\n").unwrap();
        std::fs::write(src.join(".Arsip/cur/2.b:2,Sa"), "Subject: b\n\nb\n").unwrap();
        std::fs::write(src.join(".Arsip/new/3.c"), "Subject: c\n\nc\n").unwrap();
        // The account's own folder keeps its own keywords: they name the letters of its mail.
        std::fs::write(dst.join("dovecot-keywords"), "0 Junk\n").unwrap();
        let counts = parse_maildir_counts(&maildir_restore(&src, &dst)).unwrap();
        let copied: Vec<(&str, usize, usize)> = counts
            .iter()
            .map(|c| (c.folder.as_str(), c.in_backup, c.restored))
            .collect();
        assert_eq!(copied, vec![("INBOX", 1, 1), (".Arsip", 2, 2)]);
        let read = |p: &str| std::fs::read_to_string(dst.join(p)).unwrap();
        assert_eq!(read(".Arsip/dovecot-keywords"), keywords);
        assert_eq!(read("dovecot-keywords"), "0 Junk\n");
        assert!(dst.join(".Arsip/new/3.c").is_file());
        assert!(std::fs::read_dir(dst.join(".Arsip/tmp"))
            .unwrap()
            .next()
            .is_none());
        // Again: nothing copied, nothing changed.
        let again = parse_maildir_counts(&maildir_restore(&src, &dst)).unwrap();
        assert!(again.iter().all(|c| c.restored == 0), "{again:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

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
