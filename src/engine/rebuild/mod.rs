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

use super::directory::{Directory, RebuildTarget as Target};
use super::link::Link;
use super::restore::{self as restoring, RestoreError};
use crate::config::EngineSettings;

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
    /// What of its own comes with it, in plain words ("alias ani.s@djki.go.id").
    pub also: Vec<String>,
}

/// What a rebuild of one account made, as the server has it afterwards.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rebuilt {
    /// Where an entry was added.
    pub entries_added: Vec<String>,
    /// The filters put back.
    pub filters_added: Vec<String>,
    /// Filters left as they were (the account has one of that name).
    pub filters_kept: Vec<String>,
    /// What else of its own was made, in plain words.
    pub also_added: Vec<String>,
}

/// One account of a rebuild: what was planned, what the server has of it afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountOutcome {
    pub plan: AccountPlan,
    pub done: Rebuilt,
    /// The account is on the server afterwards: its mail can be restored.
    pub on_server: bool,
    /// Where the server differs from the backup's directory, each in plain words with the
    /// server's own as evidence. Empty: the account is as it was backed up.
    pub failures: Vec<String>,
}

/// A rebuild of many accounts (or its plan, in a dry run).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirectoryRebuild {
    pub accounts: Vec<AccountOutcome>,
    /// Objects beside the accounts made (or to make), each once: "class of service pegawai".
    pub made: Vec<String>,
    /// What was mapped to the new server or left for it to set, each said once.
    pub notes: Vec<String>,
    /// Objects beside the accounts not as the backup had them, with why.
    pub failed: Vec<(String, String)>,
}

/// A dated folder's directory capture, found as the bot made and verified it and read whole
/// against its recorded SHA-256. Returns it with that hash (for the caller to match against the
/// order that recorded it).
pub fn read_capture(s: &EngineSettings, folder: &str) -> Result<(Directory, String), RestoreError> {
    let found = restoring::locate_file(&s.local_root, folder, super::files::DIRECTORY_FILE)
        .map_err(|e| match e {
            RestoreError::NotInBackup { folder, .. } => RestoreError::NoDirectory(folder),
            other => other,
        })?;
    found.check_content()?;
    let plain = found.plaintext(s.age_identity.as_deref())?;
    let directory =
        Directory::from_reader(plain).map_err(|e| RestoreError::Unreadable(e.to_string()))?;
    Ok((directory, found.sha256.clone()))
}

/// The capture matched with the kind of server configured.
fn target<'a>(s: &EngineSettings, capture: &'a Directory) -> Result<Target<'a>, RestoreError> {
    super::kind::of(&s.kind).rebuild_target(capture)
}

/// What rebuilding `account` from `capture` would do on the server. Reads only.
pub async fn plan(
    s: &EngineSettings,
    capture: &Directory,
    folder: &str,
    account: &str,
) -> Result<AccountPlan, RestoreError> {
    if let Target::Dovecot(conf, d) = target(s, capture)? {
        return dovecot::plan(s, &conf, d, folder, account).await;
    }
    let mut done = rebuild_accounts(s, capture, folder, &[account.to_owned()], false, true).await?;
    let outcome = done.accounts.remove(0);
    match outcome.failures.first() {
        Some(why) => Err(RestoreError::Server(format!(
            "{account} cannot be made: {why}"
        ))),
        None => Ok(outcome.plan),
    }
}

/// Rebuilds `account` from `capture` when the server lacks it (with what it needs: its domain,
/// class of service, lists). An account the server knows gets only the filters it lacks
/// (Dovecot) or nothing (Zimbra). Fails unless the account is on the server afterwards as the
/// backup had it.
pub async fn rebuild(
    s: &EngineSettings,
    capture: &Directory,
    folder: &str,
    account: &str,
) -> Result<(AccountPlan, Rebuilt), RestoreError> {
    if let Target::Dovecot(conf, d) = target(s, capture)? {
        return dovecot::rebuild(s, &conf, d, folder, account).await;
    }
    let mut done =
        rebuild_accounts(s, capture, folder, &[account.to_owned()], false, false).await?;
    let outcome = done.accounts.remove(0);
    let mut failures = outcome.failures;
    failures.extend(
        done.failed
            .into_iter()
            .map(|(what, why)| format!("{what}: {why}")),
    );
    if !outcome.on_server || !failures.is_empty() {
        return Err(RestoreError::Server(format!(
            "{account} is not on the server as backed up: {}",
            failures.join("; ")
        )));
    }
    Ok((outcome.plan, outcome.done))
}

/// Rebuilds `accounts` of `capture` where the server lacks them, and with `whole` every other
/// object of the capture (Zimbra: domains, classes of service, lists with all their members and
/// addresses); with `dry_run`, only plans. What is reported made is what the server has
/// afterwards. One account failing does not stop the others.
pub async fn rebuild_accounts(
    s: &EngineSettings,
    capture: &Directory,
    folder: &str,
    accounts: &[String],
    whole: bool,
    dry_run: bool,
) -> Result<DirectoryRebuild, RestoreError> {
    match target(s, capture)? {
        Target::Zimbra(z) => zimbra::rebuild_accounts(s, z, folder, accounts, whole, dry_run).await,
        Target::Dovecot(conf, d) => {
            let mut out = DirectoryRebuild::default();
            for account in accounts {
                let done = if dry_run {
                    dovecot::plan(s, &conf, d, folder, account)
                        .await
                        .map(|p| (p, Rebuilt::default()))
                } else {
                    dovecot::rebuild(s, &conf, d, folder, account).await
                };
                out.accounts.push(match done {
                    Ok((plan, done)) => AccountOutcome {
                        on_server: plan.exists || !dry_run,
                        plan,
                        done,
                        failures: Vec::new(),
                    },
                    Err(e) => AccountOutcome {
                        plan: AccountPlan {
                            account: account.clone(),
                            exists: false,
                            entries: Vec::new(),
                            filters: Vec::new(),
                            also: Vec::new(),
                        },
                        done: Rebuilt::default(),
                        on_server: false,
                        failures: vec![e.to_string()],
                    },
                });
            }
            Ok(out)
        }
    }
}

/// What a rebuild made, counted by kind ("class of service pegawai" is of kind "class of
/// service"; "default class of service of domain x (y)" of its own), in first-seen order.
pub fn count_by_kind(made: &[String]) -> Vec<(String, usize)> {
    const KINDS: &[&str] = &[
        "default class of service of domain",
        "class of service",
        "member of list",
        "list alias",
        "list",
        "domain",
        "alias",
        "signature",
        "identity",
    ];
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for what in made {
        let kind = KINDS
            .iter()
            .find(|k| what.starts_with(&format!("{k} ")))
            .map_or_else(
                || {
                    what.rsplit_once(' ')
                        .map_or(what.as_str(), |(k, _)| k)
                        .to_owned()
                },
                |k| (*k).to_owned(),
            );
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    kinds
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
    /// Mail filters on the server as backed up, of the accounts made.
    #[serde(default)]
    pub filters: usize,
    /// What else was made (domains, classes of service, lists, aliases…), in plain words.
    pub also: Vec<String>,
    /// What was mapped to the new server's ids or left for it to set.
    #[serde(default)]
    pub notes: Vec<String>,
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
            file: super::files::DIRECTORY_FILE.to_owned(),
        });
    }
    let accounts = capture.accounts();
    let mut summary = RebuildSummary {
        accounts: accounts.len(),
        ..RebuildSummary::default()
    };
    let directory = rebuild_accounts(s, &capture, folder, &accounts, true, false).await?;
    for outcome in &directory.accounts {
        let account = &outcome.plan.account;
        if outcome.plan.exists {
            summary.existed += 1;
        } else if outcome.on_server {
            summary.created.push(account.clone());
        }
        summary.filters += outcome.done.filters_added.len();
        summary.also.extend(outcome.done.also_added.iter().cloned());
        if !outcome.failures.is_empty() {
            summary
                .failed
                .push((account.clone(), outcome.failures.join("; ")));
        }
    }
    summary.also.extend(directory.made);
    summary.notes = directory.notes;
    summary.failed.extend(directory.failed);
    for (i, outcome) in directory.accounts.iter().enumerate() {
        let account = &outcome.plan.account;
        progress(i, accounts.len(), account);
        // An account that is not on the server gets no mail; one with no mailbox in the backup
        // (it never had mail) is only made again.
        let Some(sha) = archives.get(account).filter(|_| outcome.on_server) else {
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
