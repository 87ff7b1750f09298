//! What a kind of mail server does for the engine, behind one trait: list and size its
//! mailboxes, export one into the server folder (counted by the server before and after), name
//! the tools `check` looks for, capture its account directory, check an account and import a
//! mailbox back. One module per kind implements it; [`of`] is the one place the settings choose
//! the implementation. The run, the overlap, the copy, the folders, encryption and restore know
//! only the trait.
//!
//! Scripts are fixed text; account names and paths reach them only as positional arguments
//! (escaped by the SSH layer), so a hostile name can neither run code nor leave the folder.
//! Every export script follows one contract, run by [`super::server::EXPORT_ONE`]:
//! `sh -c SCRIPT sh OUT ACCOUNT STAGE EXTRA…` writes the complete archive to OUT and exits 0, or
//! exits non-zero with the reason on stderr. STAGE is an empty private folder beside OUT,
//! removed afterwards. The script runs in its own process group, killed on cancel.

use futures::future::BoxFuture;

use super::directory::{Directory, RebuildTarget};
use super::import::{FolderCount, ImportTarget, RestoreError, RestoreProgress};
use super::remote::Remote;
use crate::config::{BackupKind, MailStore};

mod command;
mod dovecot;
mod maildir;
mod zimbra;

/// Lists the mailboxes, one per line (or NUL-separated, see [`Listing::nul`]).
pub struct Listing {
    pub script: &'static str,
    pub args: Vec<String>,
    pub nul: bool,
}

/// A server script and its arguments.
pub struct Script {
    pub script: String,
    pub args: Vec<String>,
}

impl Script {
    pub fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// How a kind that keeps one archive per mailbox lists, sizes and exports them.
pub struct MailboxScripts {
    pub listing: Listing,
    /// Exports one mailbox (its extra arguments come after OUT ACCOUNT STAGE).
    pub export: Script,
    /// Prints `TOTAL_KIB LARGEST_KIB` of the mailboxes as stored.
    pub sizes: Script,
    /// The archive's extension.
    pub extension: &'static str,
    /// Before the exports, the mailboxes unchanged since their last verified backup are given
    /// their last piece (see [`crate::engine::increment::UNCHANGED`]): the script and its
    /// arguments before the `ACCOUNT FILE` pairs.
    pub unchanged: Option<Script>,
}

impl MailboxScripts {
    /// Scripts that each take the one argument `arg` (the doveadm configuration, the Maildir
    /// root); `sizes` is piped into the sum of its `KIB` lines.
    fn taking(
        arg: &str,
        listing: &'static str,
        nul: bool,
        export: &str,
        sizes: &str,
    ) -> MailboxScripts {
        let args = || vec![arg.to_owned()];
        MailboxScripts {
            listing: Listing {
                script: listing,
                args: args(),
                nul,
            },
            export: Script {
                script: export.to_owned(),
                args: args(),
            },
            sizes: Script {
                script: format!("{sizes}{SUM_KIB}"),
                args: args(),
            },
            extension: "tar.gz",
            unchanged: None,
        }
    }
}

/// Where the messages of a progress callback go while a kind imports.
pub type ImportProgress<'a> = &'a mut (dyn FnMut(RestoreProgress) + Send);

/// One kind of mail server.
pub trait MailKind: Send + Sync {
    /// Its name in messages: `zimbra`, `dovecot`, `maildir`, `command`.
    fn name(&self) -> &'static str;

    /// Its mailboxes' scripts; `None` when the operator's own command writes the folder.
    fn mailboxes(&self) -> Option<MailboxScripts>;

    /// The operator's command for step 5 with `{dir}` replaced by the quoted server folder
    /// `dir`, for the kind that has one.
    fn operator_command(&self, dir: &str) -> Option<String> {
        let _ = dir;
        None
    }

    /// Whether a listed account is left out (Zimbra's system accounts).
    fn skips(&self, account: &str) -> bool {
        let _ = account;
        false
    }

    /// The bytes step 5 may hold at its peak for mailboxes of `total` bytes, the largest
    /// `largest`, with `jobs` exports at once: the archives (never bigger than the mail, give or
    /// take gzip's few bytes) and whatever the kind stages beside them.
    fn peak_bytes(&self, total: u64, largest: u64, jobs: usize) -> u64 {
        let _ = (largest, jobs);
        total + total / 100 + (1 << 20)
    }

    /// The export of what changed since the mailbox's last verified backup (a piece, see
    /// [`super::piece`]), for the kinds whose mail is a Maildir tree; its arguments after OUT
    /// ACCOUNT STAGE are its own, then the state base, today's day number, `FULL_EVERY_DAYS`
    /// and the store (the disk and the form its pieces are kept in: another means whole). `None`: every mailbox is exported whole every day.
    fn changes_export(&self) -> Option<Script> {
        None
    }

    /// A script printing every mailbox's change markers at once (`ACCOUNT TAB MARKERS` lines,
    /// taking one argument), as the change export records them per mailbox before it runs: a
    /// mailbox whose markers are unchanged is not exported (see
    /// [`crate::engine::increment::UNCHANGED`]).
    fn change_markers(&self) -> Option<Script> {
        None
    }

    /// The tools the export needs on the server (`check` looks for each).
    fn tools(&self) -> &'static [&'static str];

    /// A script that must succeed for the kind's admin tools to be usable (`check`), and what
    /// it checks.
    fn admin_tools_check(&self) -> Option<&'static str> {
        None
    }

    /// Whether a restore drill writes into an account of its own (`RESTORE_DRILL_ACCOUNT`),
    /// which the backup then leaves out, rather than into a scratch folder in the stage.
    fn drills_into_an_account(&self) -> bool {
        false
    }

    /// The script capturing the account directory into server folder `dir`, for the kinds that
    /// keep one beside the mail.
    fn directory_capture(&self, dir: &str) -> Option<Script> {
        let _ = dir;
        None
    }

    /// The capture matched with this server: a capture is rebuilt only on the kind it came from.
    fn rebuild_target<'a>(
        &self,
        capture: &'a Directory,
    ) -> Result<RebuildTarget<'a>, RestoreError> {
        let _ = capture;
        Err(RestoreError::Unsupported(self.name().into()))
    }

    /// Whether `name` may name an account to restore from or into: a name, never a path
    /// (nothing outside the mail store is read or written).
    fn is_account_name(&self, name: &str) -> bool {
        plain_name(name) && !name.contains('/')
    }

    /// The account `into`'s owner on the server (`uid:gid`, or empty where the kind has none);
    /// [`RestoreError::TargetMissing`] when there is no such account.
    fn target_owner<'a>(
        &'a self,
        r: &'a Remote,
        into: &'a str,
    ) -> BoxFuture<'a, Result<String, RestoreError>>;

    /// Whether a drill's scratch copy is checked against the account's owner (Maildir's belongs
    /// to nobody but the bot).
    fn scratch_has_owner(&self) -> bool {
        true
    }

    /// Imports the archive uploaded into `stage` (as `STAGE/archive.tar.gz`) into `target`,
    /// adding only what it lacks; returns the counts per folder afterwards.
    fn import<'a>(
        &'a self,
        r: &'a Remote,
        stage: &'a str,
        target: &'a ImportTarget<'a>,
        progress: ImportProgress<'a>,
    ) -> BoxFuture<'a, Result<Vec<FolderCount>, RestoreError>>;
}

/// The kind the settings name: the one place the configured kind chooses the implementation.
pub fn of(kind: &BackupKind) -> Box<dyn MailKind> {
    match kind {
        BackupKind::Mailboxes(MailStore::Zimbra) => Box::new(zimbra::Zimbra),
        BackupKind::Mailboxes(MailStore::Dovecot { config }) => Box::new(dovecot::Dovecot {
            config: config.clone().unwrap_or_default(),
        }),
        BackupKind::Mailboxes(MailStore::Maildir { root }) => {
            Box::new(maildir::Maildir { root: root.clone() })
        }
        BackupKind::Command { command } => Box::new(command::Command {
            command: command.clone(),
        }),
    }
}

/// Not empty, `.`, `..`, an option, or holding a NUL.
fn plain_name(name: &str) -> bool {
    !(name.is_empty()
        || name == "."
        || name == ".."
        || name.starts_with('-')
        || name.contains('\0'))
}

/// Sizes print `TOTAL_KIB LARGEST_KIB`.
const SUM_KIB: &str = r#"awk 'BEGIN {t=0; m=0} {t+=$1; if ($1>m) m=$1} END {print t, m}'"#;

/// Quotes `s` as one word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(store: MailStore) -> Box<dyn MailKind> {
        of(&BackupKind::Mailboxes(store))
    }

    #[test]
    fn zimbra_system_accounts_are_skipped() {
        let z = kind(MailStore::Zimbra);
        for sys in [
            "spam.abc@djki.go.id",
            "ham.x@djki.go.id",
            "virus-quarantine.q@djki.go.id",
            "galsync@djki.go.id",
            "galsync.1@x",
        ] {
            assert!(z.skips(sys), "{sys}");
        }
        assert!(!z.skips("ani@djki.go.id"));
        assert!(!kind(MailStore::Maildir { root: "/m".into() }).skips("spam.x"));
    }

    #[test]
    fn zimbra_lists_with_zmprov_and_exports_through_the_streaming_script() {
        let m = kind(MailStore::Zimbra).mailboxes().expect("mailboxes");
        assert_eq!(m.listing.script, "exec su - zimbra -c 'zmprov -l gaa'");
        assert_eq!(m.export.script, crate::engine::zimbra::EXPORT);
        assert!(m.export.args.is_empty());
        assert_eq!(m.extension, "tgz");
        assert!(m.sizes.script.starts_with(crate::engine::zimbra::SIZES));
    }

    #[test]
    fn the_operator_command_gets_the_folder_quoted() {
        assert_eq!(
            command::operator_script("/opt/backup.sh --out {dir}", "/srv/b/24 11"),
            "/opt/backup.sh --out '/srv/b/24 11'"
        );
        let c = of(&BackupKind::Command {
            command: "x".into(),
        });
        assert!(c.mailboxes().is_none());
        assert_eq!(c.operator_command("/d").as_deref(), Some("x"));
    }

    #[test]
    fn dovecot_needs_room_for_its_stage_copies_as_well() {
        let d = kind(MailStore::Dovecot { config: None });
        let m = kind(MailStore::Maildir { root: "/m".into() });
        let (total, largest) = (100 << 20, 40 << 20);
        assert_eq!(
            m.peak_bytes(total, largest, 2),
            total + (total / 100) + (1 << 20)
        );
        assert_eq!(
            d.peak_bytes(total, largest, 2),
            m.peak_bytes(total, largest, 2) + (80 << 20)
        );
    }

    #[test]
    fn an_account_is_a_name_and_a_slash_only_where_zimbra_allows_it() {
        let z = kind(MailStore::Zimbra);
        let d = kind(MailStore::Dovecot { config: None });
        for bad in ["", ".", "..", "-x", "a\0b"] {
            assert!(
                !z.is_account_name(bad) && !d.is_account_name(bad),
                "{bad:?}"
            );
        }
        assert!(z.is_account_name("bagian/umum@djki.go.id"));
        assert!(!d.is_account_name("bagian/umum@djki.go.id"));
        assert!(d.is_account_name("o'brien@djki.go.id"));
    }
}
