//! Rebuilding what a server no longer has, from a dated folder's directory capture
//! ([`super::directory`]): an account that does not exist is created as it was (its password
//! hash, its filters, and on Zimbra its domain, class of service, aliases, signatures,
//! identities and lists), before its mail is restored as any restore. What exists already is
//! left as it is and said, never overwritten, so a rebuild cut off and run again duplicates
//! nothing. Secrets reach the server on a script's stdin, never on a command line.

mod dovecot;
mod zimbra;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::directory::{self, Directory};
use super::link::Link;
use super::restore::{self as restoring, RestoreError};
use crate::config::{BackupKind, EngineSettings, MailStore};

/// What a rebuild of one account would do, read from the capture and the server; changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPlan {
    pub account: String,
    /// The server knows the account already: nothing of it is created.
    pub exists: bool,
    /// Where its entry goes back, each with its roles (Dovecot: the passwd-files, `passdb`,
    /// `userdb`; Zimbra: the directory).
    pub entries: Vec<(String, Vec<String>)>,
    /// Its mail filters: name, and whether it was the active one.
    pub filters: Vec<(String, bool)>,
    /// What else it needs that the server lacks, in plain words ("domain djki.go.id").
    pub also: Vec<String>,
}

/// What a rebuild of one account did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rebuilt {
    /// Where an entry was added.
    pub entries_added: Vec<String>,
    /// The filters put back.
    pub filters_added: Vec<String>,
    /// Filters left as they were (the account has one of that name).
    pub filters_kept: Vec<String>,
    /// What else was created, in plain words.
    pub also_added: Vec<String>,
}

/// A dated folder's directory capture, found as the bot made and verified it and read whole
/// against its recorded SHA-256. Returns it with that hash (for the caller to match against the
/// order that recorded it).
pub fn read_capture(s: &EngineSettings, folder: &str) -> Result<(Directory, String), RestoreError> {
    let found =
        restoring::locate_file(&s.local_root, folder, directory::FILE).map_err(|e| match e {
            RestoreError::NotInBackup { folder, .. } => RestoreError::NoDirectory(folder),
            other => other,
        })?;
    found.check_content()?;
    let plain = found.plaintext(s.age_identity.as_deref())?;
    let directory = Directory::from_reader(plain).map_err(RestoreError::Unreadable)?;
    Ok((directory, found.sha256.clone()))
}

/// The capture matched with the kind of server configured: a capture is rebuilt only on the
/// kind it came from.
enum Target<'a> {
    Dovecot(String, &'a directory::DovecotDirectory),
    Zimbra(&'a directory::ZimbraDirectory),
}

fn target<'a>(s: &EngineSettings, capture: &'a Directory) -> Result<Target<'a>, RestoreError> {
    match (&s.kind, capture) {
        (BackupKind::Mailboxes(MailStore::Dovecot { config }), Directory::Dovecot(d)) => {
            Ok(Target::Dovecot(config.clone().unwrap_or_default(), d))
        }
        (BackupKind::Mailboxes(MailStore::Zimbra), Directory::Zimbra(z)) => Ok(Target::Zimbra(z)),
        (BackupKind::Command { .. }, _) => Err(RestoreError::Unsupported("command".into())),
        (BackupKind::Mailboxes(MailStore::Maildir { .. }), _) => {
            Err(RestoreError::Unsupported("maildir".into()))
        }
        _ => Err(RestoreError::Unsupported(
            "a directory of another kind of mail server".into(),
        )),
    }
}

/// What rebuilding `account` from `capture` would do on the server. Reads only.
pub async fn plan(
    s: &EngineSettings,
    capture: &Directory,
    folder: &str,
    account: &str,
) -> Result<AccountPlan, RestoreError> {
    match target(s, capture)? {
        Target::Dovecot(conf, d) => dovecot::plan(s, &conf, d, folder, account).await,
        Target::Zimbra(z) => zimbra::plan(s, z, folder, account).await,
    }
}

/// Rebuilds `account` from `capture` when the server lacks it. An account the server knows
/// gets only the filters it lacks (Dovecot) or nothing (Zimbra).
pub async fn rebuild(
    s: &EngineSettings,
    capture: &Directory,
    folder: &str,
    account: &str,
) -> Result<(AccountPlan, Rebuilt), RestoreError> {
    match target(s, capture)? {
        Target::Dovecot(conf, d) => dovecot::rebuild(s, &conf, d, folder, account).await,
        Target::Zimbra(z) => zimbra::rebuild(s, z, folder, account).await,
    }
}

/// After every account of `--all`: what the capture holds beside accounts that the server still
/// lacks (Zimbra: domains, classes of service, lists with all their members), created; or, with
/// `dry_run`, only said. Dovecot keeps nothing beside its accounts.
pub async fn rebuild_rest(
    s: &EngineSettings,
    capture: &Directory,
    dry_run: bool,
) -> Result<Vec<String>, RestoreError> {
    match target(s, capture)? {
        Target::Dovecot(..) => Ok(Vec::new()),
        Target::Zimbra(z) => zimbra::rest(s, z, dry_run).await,
    }
}

/// Told before each account of a whole folder's rebuild: `(done, total, account)`.
pub type AccountProgress<'a> = Box<dyn FnMut(usize, usize, &str) + Send + 'a>;

/// What a rebuild of a whole backup folder came to (the chat's `/restore FOLDER semua`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RebuildSummary {
    /// Accounts of the folder's directory.
    pub accounts: usize,
    /// Accounts made again.
    pub created: Vec<String>,
    /// Accounts the server had: left as they were.
    pub existed: usize,
    /// Mailboxes whose every message of the backup is on the server now.
    pub mailboxes: usize,
    pub messages_added: usize,
    /// What else was made (domains, classes of service, lists), in plain words.
    pub also: Vec<String>,
    /// Accounts (or the directory's other objects) not (all) on the server, with why.
    pub failed: Vec<(String, String)>,
}

impl RebuildSummary {
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Every account of backup `folder`'s directory (only with content `directory_sha256`) made
/// again when missing, then its mail restored from the archive with the SHA-256 `archives` gives
/// for it (what the backup order recorded); then the directory's other objects. One account
/// failing does not stop the others. `progress(done, total, account)` before each account.
pub async fn rebuild_all(
    s: &EngineSettings,
    folder: &str,
    directory_sha256: &str,
    archives: &BTreeMap<String, String>,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<RebuildSummary, RestoreError> {
    let (capture, sha256) = read_capture(s, folder)?;
    if sha256 != directory_sha256 {
        return Err(RestoreError::Corrupt {
            file: directory::FILE.to_owned(),
        });
    }
    let accounts = capture.accounts();
    let mut summary = RebuildSummary {
        accounts: accounts.len(),
        ..RebuildSummary::default()
    };
    for (i, account) in accounts.iter().enumerate() {
        progress(i, accounts.len(), account);
        match rebuild(s, &capture, folder, account).await {
            Ok((plan, done)) if plan.exists => {
                summary.existed += 1;
                summary.also.extend(done.also_added);
            }
            Ok((_, done)) => {
                summary.created.push(account.clone());
                summary.also.extend(done.also_added);
            }
            Err(e) => {
                summary.failed.push((account.clone(), e.to_string()));
                continue;
            }
        }
        // An account with no mailbox in the backup (it never had mail) is only made again.
        let Some(sha) = archives.get(account) else {
            continue;
        };
        match restoring::restore(s, folder, account, None, Some(sha), |_| {}).await {
            Ok(r) => match r.why_incomplete() {
                None => {
                    summary.mailboxes += 1;
                    summary.messages_added += r.restored();
                }
                Some(why) => summary.failed.push((account.clone(), why)),
            },
            Err(e) => summary.failed.push((account.clone(), e.to_string())),
        }
    }
    match rebuild_rest(s, &capture, false).await {
        Ok(made) => summary.also.extend(made),
        Err(e) => summary.failed.push(("(directory)".into(), e.to_string())),
    }
    Ok(summary)
}

fn ssh(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Ssh(e.to_string())
}

async fn connect(s: &EngineSettings) -> Result<Link<'_>, RestoreError> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Link::connect(s, tx)
        .await
        .map_err(|e| RestoreError::Ssh(format!("{}: {}", e.kind, e.detail)))
}
