//! Step 5 per mail store: how mailboxes are listed, sized and exported. Scripts are fixed text;
//! account names and paths reach them only as positional arguments (escaped by the SSH layer),
//! so a hostile name can neither run code nor leave the folder.
//!
//! Every export script follows one contract, run by [`super::server::EXPORT_ONE`]:
//! `sh -c SCRIPT sh OUT ACCOUNT STAGE EXTRA…` writes the complete archive to OUT and exits 0, or
//! exits non-zero with the reason on stderr. STAGE is an empty private folder beside OUT,
//! removed afterwards. The script runs in its own process group, killed on cancel.

use crate::config::MailStore;

/// Lists the mailboxes, one per line (or NUL-separated, see [`Listing::nul`]).
pub struct Listing {
    pub script: &'static str,
    pub args: Vec<String>,
    pub nul: bool,
}

/// A server script and its arguments.
pub struct Script {
    pub script: &'static str,
    pub args: Vec<String>,
}

/// Zimbra's system accounts, not backed up.
pub fn is_zimbra_system_account(account: &str) -> bool {
    let local = account.split('@').next().unwrap_or(account);
    ["spam.", "ham.", "virus-quarantine.", "galsync"]
        .iter()
        .any(|p| local.starts_with(p))
}

const DOVECOT_LIST: &str =
    r#"if [ -n "$1" ]; then exec doveadm -c "$1" user '*'; else exec doveadm user '*'; fi"#;
const MAILDIR_LIST: &str = r#"exec find "$1" -mindepth 1 -maxdepth 1 -type d -printf '%f\0'"#;

pub const DOVECOT_EXPORT: &str = concat!(
    super::dovecot::inbox_namespace_fn!(),
    r#"set -eu
out=$1; user=$2; stage=$3; conf=$4
mkdir -p -- "$stage/Maildir"
if [ -n "$conf" ]; then set -- -c "$conf"; else set --; fi
# With a namespace prefix (INBOX. on servers that came from Courier), dsync into an empty
# Maildir tries to delete its INBOX and fails: the copy is made without the prefix, which
# changes no name on disk (Maildir++ never stores it).
ns=$(inbox_namespace "$@"); ns_name=$(printf '%s' "$ns" | cut -f1); ns_prefix=$(printf '%s' "$ns" | cut -f2)
uid=$(doveadm "$@" user -f uid -- "$user"); gid=$(doveadm "$@" user -f gid -- "$user")
# Only this mailbox's stage: other exports run in parallel beside it.
chown -R "$uid:$gid" -- "$stage"
# The server's own count, before and after (mail arriving meanwhile moves it).
# With a prefix, doveadm's `*` matches no folder at all: INBOX and the prefix's folders instead.
count() {
  if [ -n "$ns_prefix" ]; then
    doveadm "$@" -f flow mailbox status -t -u "$user" messages INBOX "$ns_prefix*"
  else
    doveadm "$@" -f flow mailbox status -t -u "$user" messages '*'
  fi | sed -n 's/^messages=\([0-9]*\)$/\1/p'
}
before=$(count "$@" || true)
if [ -n "$ns_prefix" ] && [ -n "$ns_name" ]; then
  doveadm "$@" -o maildir_copy_with_hardlinks=no -o "namespace/$ns_name/prefix=" backup -u "$user" "maildir:$stage/Maildir"
else
  doveadm "$@" -o maildir_copy_with_hardlinks=no backup -u "$user" "maildir:$stage/Maildir"
fi
after=$(count "$@" || true)
[ -z "${MBB_COUNT:-}" ] || printf '%s %s\n' "$before" "$after" > "$MBB_COUNT"
tar -czf "$out" -C "$stage" Maildir"#
);

pub const MAILDIR_EXPORT: &str = r#"set -eu
out=$1; name=$2; root=$4
# Messages are the files of the Maildir folders' cur/ and new/ (what the read-back counts).
count() { find "$root/$name" -type f -printf '%h\n' | grep -cE '/(cur|new)$' || true; }
before=$(count)
tar -czf "$out" -C "$root" -- "$name"
after=$(count)
[ -z "${MBB_COUNT:-}" ] || printf '%s %s\n' "$before" "$after" > "$MBB_COUNT""#;

/// Sizes print `TOTAL_KIB LARGEST_KIB`.
const SUM_KIB: &str = r#"awk 'BEGIN {t=0; m=0} {t+=$1; if ($1>m) m=$1} END {print t, m}'"#;

/// One `doveadm user` and one `du` for all the users (a process per user costs seconds on a
/// server of hundreds, before the first export may start).
const DOVECOT_SIZES: &str = r#"if [ -n "$1" ]; then set -- -c "$1"; else set --; fi
doveadm "$@" user '*' | xargs -r -d '\n' doveadm "$@" user -f home -- 2>/dev/null \
  | while IFS= read -r h; do [ -n "$h" ] && [ -d "$h" ] && printf '%s\0' "$h"; done \
  | xargs -r -0 du -sk -- | cut -f1 | "#;

const MAILDIR_SIZES: &str = r#"cd -- "$1" && find . -mindepth 1 -maxdepth 1 -type d -print0 | xargs -r -0 du -sk -- | cut -f1 | "#;

impl MailStore {
    pub fn listing(&self) -> Listing {
        match self {
            MailStore::Zimbra => Listing {
                script: super::zimbra::LIST,
                args: vec![],
                nul: false,
            },
            MailStore::Dovecot { config } => Listing {
                script: DOVECOT_LIST,
                args: vec![config.clone().unwrap_or_default()],
                nul: false,
            },
            MailStore::Maildir { root } => Listing {
                script: MAILDIR_LIST,
                args: vec![root.clone()],
                nul: true,
            },
        }
    }

    /// Whether a listed account is left out (Zimbra's system accounts).
    pub fn skips(&self, account: &str) -> bool {
        matches!(self, MailStore::Zimbra) && is_zimbra_system_account(account)
    }

    /// The export script and its extra arguments (after OUT ACCOUNT STAGE).
    pub fn export(&self) -> Script {
        match self {
            MailStore::Zimbra => Script {
                script: super::zimbra::EXPORT,
                args: vec![],
            },
            MailStore::Dovecot { config } => Script {
                script: DOVECOT_EXPORT,
                args: vec![config.clone().unwrap_or_default()],
            },
            MailStore::Maildir { root } => Script {
                script: MAILDIR_EXPORT,
                args: vec![root.clone()],
            },
        }
    }

    /// The archive's extension.
    pub fn extension(&self) -> &'static str {
        match self {
            MailStore::Zimbra => "tgz",
            _ => "tar.gz",
        }
    }

    /// The script printing `TOTAL_KIB LARGEST_KIB` of the mailboxes as stored.
    pub fn sizes(&self) -> (String, Vec<String>) {
        match self {
            MailStore::Zimbra => (
                format!(
                    "{} | awk '{{print int($NF / 1024) + 1}}' | {SUM_KIB}",
                    super::zimbra::SIZES
                ),
                vec![],
            ),
            MailStore::Dovecot { config } => (
                format!("{DOVECOT_SIZES}{SUM_KIB}"),
                vec![config.clone().unwrap_or_default()],
            ),
            MailStore::Maildir { root } => {
                (format!("{MAILDIR_SIZES}{SUM_KIB}"), vec![root.clone()])
            }
        }
    }

    /// The bytes step 5 may hold at its peak for mailboxes of `total` bytes, the largest
    /// `largest`, with `jobs` exports at once: the archives (never bigger than the mail, give or
    /// take gzip's few bytes), plus Dovecot's uncompressed stage copy of each mailbox in flight.
    pub fn peak_bytes(&self, total: u64, largest: u64, jobs: usize) -> u64 {
        let slack = total / 100 + (1 << 20);
        match self {
            MailStore::Dovecot { .. } => total + slack + largest.saturating_mul(jobs as u64),
            _ => total + slack,
        }
    }

    /// The tools the export needs on the server.
    pub fn tools(&self) -> &'static [&'static str] {
        match self {
            MailStore::Zimbra => &["su", "curl", "od"],
            MailStore::Dovecot { .. } => &["doveadm", "gzip"],
            MailStore::Maildir { .. } => &["gzip", "find"],
        }
    }
}

/// Quotes `s` as one word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The operator's command with `{dir}` replaced by the quoted server folder, as a script
/// for [`super::server::EXPORT_ONE`] (its OUT ACCOUNT STAGE arguments are not used).
pub fn operator_command(command: &str, dir: &str) -> String {
    command.replace("{dir}", &shell_quote(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zimbra_system_accounts_are_skipped() {
        for sys in [
            "spam.abc@djki.go.id",
            "ham.x@djki.go.id",
            "virus-quarantine.q@djki.go.id",
            "galsync@djki.go.id",
            "galsync.1@x",
        ] {
            assert!(MailStore::Zimbra.skips(sys), "{sys}");
        }
        assert!(!MailStore::Zimbra.skips("ani@djki.go.id"));
        assert!(!MailStore::Maildir { root: "/m".into() }.skips("spam.x"));
    }

    #[test]
    fn zimbra_lists_with_zmprov_and_exports_through_the_streaming_script() {
        let z = MailStore::Zimbra;
        assert_eq!(z.listing().script, "exec su - zimbra -c 'zmprov -l gaa'");
        assert_eq!(z.export().script, super::super::zimbra::EXPORT);
        assert!(z.export().args.is_empty());
        assert_eq!(z.extension(), "tgz");
        assert!(z.sizes().0.starts_with(super::super::zimbra::SIZES));
    }

    #[test]
    fn the_operator_command_gets_the_folder_quoted() {
        assert_eq!(
            operator_command("/opt/backup.sh --out {dir}", "/srv/b/24 11"),
            "/opt/backup.sh --out '/srv/b/24 11'"
        );
    }

    #[test]
    fn dovecot_needs_room_for_its_stage_copies_as_well() {
        let d = MailStore::Dovecot { config: None };
        let m = MailStore::Maildir { root: "/m".into() };
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
}
