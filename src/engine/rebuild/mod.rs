//! Rebuilding what a server no longer has, from a dated folder's directory capture
//! ([`super::directory`]): an account that does not exist is created as it was (its password
//! hash, its filters, and on Zimbra its domain, class of service, aliases, signatures,
//! identities and lists), before its mail is restored as any restore. What exists already is
//! left as it is and said, never overwritten, so a rebuild cut off and run again duplicates
//! nothing. Secrets reach the server on a script's stdin, never on a command line.

mod dovecot;
mod zimbra;

use std::path::PathBuf;

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
    let opened = found.open()?;
    let path = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&opened)
    ));
    let directory = Directory::read(&path).map_err(RestoreError::Unreadable)?;
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

fn ssh(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Ssh(e.to_string())
}

async fn connect(s: &EngineSettings) -> Result<Link<'_>, RestoreError> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Link::connect(s, tx)
        .await
        .map_err(|e| RestoreError::Ssh(format!("{}: {}", e.kind, e.detail)))
}
