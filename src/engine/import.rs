//! What every kind's import of a mailbox shares: why a restore fails ([`RestoreError`]), what it
//! reports as it goes and at the end (per folder), where the messages go ([`ImportTarget`]), and
//! the server steps before a kind's own import (the archive unpacked, a drill's scratch copy
//! made). The kinds (`super::kind`) import; `super::restore` finds, checks and uploads the archive
//! and calls them.

use serde::{Deserialize, Serialize};

use super::remote::Remote;

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
    #[error("the mailbox cannot be assembled from the pieces of its backup: {0}")]
    Pieces(String),
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

/// The account an import writes into, as the restore checked it.
pub struct ImportTarget<'a> {
    pub account: &'a str,
    /// Its owner on the server (`uid:gid`; empty for Zimbra, or for a scratch copy nobody owns).
    pub owner: String,
    /// A drill's scratch copy, not the account's own mail.
    pub scratch: bool,
}

/// Unpacks the archive into `$1/x`, owned by `$2` (uid:gid), and removes the archive.
const UNPACK: &str = r#"set -eu
mkdir -p -- "$1/x"
tar -xzf "$1/archive.tar.gz" -C "$1/x" --no-same-owner
rm -f -- "$1/archive.tar.gz"
[ -z "$2" ] || chown -R -- "$2" "$1/x""#;

/// Makes a drill's scratch mail location `$1/scratch/Maildir`, owned by `$2` (`uid:gid`, or
/// empty: the bot's), and prints its path.
const SCRATCH_LOCATION: &str = r#"set -eu
mkdir -m 0700 -- "$1/scratch"
mkdir -- "$1/scratch/Maildir"
[ -z "$2" ] || chown -R -- "$2" "$1/scratch"
printf '%s' "$1/scratch/Maildir""#;

/// Unpacks the uploaded archive of `stage` into `STAGE/x`, owned by the target's owner; for a
/// drill, makes the scratch mail location beside it and returns its path (empty otherwise).
pub async fn unpack(
    r: &Remote,
    stage: &str,
    target: &ImportTarget<'_>,
) -> Result<String, RestoreError> {
    let owner = target.owner.as_str();
    on_server(r, UNPACK, &[stage, owner]).await?;
    // A drill's copy goes into the stage, which is removed with it.
    if target.scratch {
        on_server(r, SCRATCH_LOCATION, &[stage, owner]).await
    } else {
        Ok(String::new())
    }
}

/// Runs a fixed server script: its output when it succeeds, its stderr as the error otherwise.
pub async fn on_server(r: &Remote, script: &str, args: &[&str]) -> Result<String, RestoreError> {
    let o = r.sh(script, args).await.map_err(ssh)?;
    if !o.ok {
        return Err(RestoreError::Server(o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// An SSH failure, as a restore's.
pub fn ssh(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Ssh(e.to_string())
}
