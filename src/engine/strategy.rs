//! Step 5 on the server: how mailboxes are listed and exported for each `MAIL_BACKUP_KIND`.
//! Scripts are fixed text; account names and paths reach them only as positional arguments
//! (escaped by the SSH layer), so a hostile name can neither run code nor leave the folder.

use super::zimbra;
use crate::config::BackupKind;

/// Lists the mailboxes, one per line (or NUL-separated, see [`Listing::nul`]).
pub struct Listing {
    pub script: &'static str,
    pub args: Vec<String>,
    pub nul: bool,
}

/// Zimbra's system accounts, not backed up.
pub fn is_zimbra_system_account(account: &str) -> bool {
    let local = account.split('@').next().unwrap_or(account);
    ["spam.", "ham.", "virus-quarantine.", "galsync"]
        .iter()
        .any(|p| local.starts_with(p))
}

pub fn listing(kind: &BackupKind) -> Option<Listing> {
    match kind {
        BackupKind::Zimbra => Some(Listing {
            script: zimbra::LIST,
            args: vec![],
            nul: false,
        }),
        BackupKind::Dovecot { config } => Some(Listing {
            script: r#"if [ -n "$1" ]; then exec doveadm -c "$1" user '*'; else exec doveadm user '*'; fi"#,
            args: vec![config.clone().unwrap_or_default()],
            nul: false,
        }),
        BackupKind::Maildir { root } => Some(Listing {
            script: r#"exec find "$1" -mindepth 1 -maxdepth 1 -type d -printf '%f\0'"#,
            args: vec![root.clone()],
            nul: true,
        }),
        BackupKind::Command { .. } => None,
    }
}

/// The archive's extension for the kind.
pub fn extension(kind: &BackupKind) -> &'static str {
    match kind {
        BackupKind::Zimbra => "tgz",
        _ => "tar.gz",
    }
}

/// Exports one mailbox into `<dir>/<file>`: written as `.part`, renamed when complete.
/// Arguments: `$1` the server folder, `$2` the account, `$3` the file name, then per kind.
pub struct Export {
    pub script: &'static str,
    pub args: Vec<String>,
}

pub const DOVECOT_EXPORT: &str = r#"set -eu
dir=$1; user=$2; file=$3; conf=$4
stage="$dir/.stage/$file"
rm -rf -- "$stage"; mkdir -p -- "$stage/Maildir"
if [ -n "$conf" ]; then set -- -c "$conf"; else set --; fi
uid=$(doveadm "$@" user -f uid -- "$user"); gid=$(doveadm "$@" user -f gid -- "$user")
# Only this mailbox's stage: other exports run in parallel beside it, and a chown there would
# change files under their tar ("file changed as we read it").
chown -R "$uid:$gid" -- "$stage"
doveadm "$@" -o maildir_copy_with_hardlinks=no backup -u "$user" "maildir:$stage/Maildir"
(umask 077; tar -czf "$dir/$file.part" -C "$stage" Maildir)
mv -f -- "$dir/$file.part" "$dir/$file"
rm -rf -- "$stage""#;

pub const MAILDIR_EXPORT: &str = r#"set -eu
dir=$1; name=$2; file=$3; root=$4
(umask 077; tar -czf "$dir/$file.part" -C "$root" -- "$name")
mv -f -- "$dir/$file.part" "$dir/$file""#;

/// Adapts [`zimbra::EXPORT`] (`sh OUT ACCOUNT STAGE`) to this engine's export arguments: a
/// private stage beside the archive, `.part` renamed when complete, the stage removed either way.
pub const ZIMBRA_EXPORT: &str = r#"set -u
dir=$1; account=$2; file=$3; export=$4
stage="$dir/.stage/$file"
rm -rf -- "$stage"; mkdir -p -m 0700 -- "$stage" || exit 1
if sh -c "$export" sh "$dir/$file.part" "$account" "$stage"; then
  mv -f -- "$dir/$file.part" "$dir/$file"; rc=$?
else
  rc=$?; rm -f -- "$dir/$file.part"
fi
rm -rf -- "$stage"
exit "$rc""#;

/// Quotes `s` as one word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn export(kind: &BackupKind, dir: &str, account: &str, file: &str) -> Option<Export> {
    let base = vec![dir.to_owned(), account.to_owned(), file.to_owned()];
    let with = |extra: String| base.iter().cloned().chain(std::iter::once(extra)).collect();
    match kind {
        BackupKind::Dovecot { config } => Some(Export {
            script: DOVECOT_EXPORT,
            args: with(config.clone().unwrap_or_default()),
        }),
        BackupKind::Maildir { root } => Some(Export {
            script: MAILDIR_EXPORT,
            args: with(root.clone()),
        }),
        BackupKind::Zimbra => Some(Export {
            script: ZIMBRA_EXPORT,
            args: with(zimbra::EXPORT.to_owned()),
        }),
        BackupKind::Command { .. } => None,
    }
}

/// The operator's command with `{dir}` replaced by the quoted server folder.
pub fn operator_command(command: &str, dir: &str) -> String {
    command.replace("{dir}", &shell_quote(dir))
}

/// Prepares the server folder: `$1` must not exist yet or is emptied (it is ours).
pub const PREPARE_DIR: &str = r#"set -eu
mkdir -p -- "$(dirname -- "$1")"
rm -rf -- "$1"
mkdir -m 0711 -- "$1""#;

/// Size and SHA-256 of every archive in `$1`, as `sha256 size name\0`; also written to
/// `$1/SHA256SUMS` (for `sha256sum -c`) and `$1/.manifest` (marks step 5 complete).
pub const MANIFEST: &str = r#"set -eu
cd -- "$1"
: > .manifest.part
for f in *; do
  [ -f "$f" ] || continue
  case "$f" in SHA256SUMS|*.part) continue;; esac
  h=$(sha256sum < "$f" | cut -d' ' -f1); s=$(stat -c %s -- "$f")
  printf '%s %s %s\0' "$h" "$s" "$f" >> .manifest.part
done
tr '\0' '\n' < .manifest.part | awk '{h=$1; $1=""; $2=""; sub(/^  /, ""); print h "  " $0}' > SHA256SUMS
mv -f .manifest.part .manifest
cat .manifest"#;

/// Reads a finished step 5 back (for a resumed run): the manifest and the failures.
pub const READ_STATE: &str = r#"cd -- "$1" 2>/dev/null || exit 3
[ -f .manifest ] || exit 4
cat .manifest; printf '\n--failed--\n'; cat .failed 2>/dev/null || true"#;

pub const RECORD_FAILURE: &str = r#"printf '%s\t%s\0' "$2" "$3" >> "$1/.failed""#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zimbra_lists_with_zmprov_and_exports_through_the_streaming_script() {
        let l = listing(&BackupKind::Zimbra).expect("listing");
        assert_eq!(l.script, "exec su - zimbra -c 'zmprov -l gaa'");
        assert!(l.args.is_empty() && !l.nul);
        let e = export(
            &BackupKind::Zimbra,
            "/srv/b/24-11-2026",
            "o'brien@x",
            "o'brien@x.tgz",
        )
        .expect("zimbra exports");
        assert_eq!(e.script, ZIMBRA_EXPORT);
        // The account travels as an argument, never inside a command string.
        assert_eq!(
            e.args,
            vec![
                "/srv/b/24-11-2026".to_owned(),
                "o'brien@x".to_owned(),
                "o'brien@x.tgz".to_owned(),
                zimbra::EXPORT.to_owned()
            ]
        );
        assert!(
            ZIMBRA_EXPORT.contains(r#"sh -c "$export" sh "$dir/$file.part" "$account" "$stage""#)
        );
    }

    #[test]
    fn zimbra_system_accounts_are_skipped() {
        for sys in [
            "spam.abc@djki.go.id",
            "ham.x@djki.go.id",
            "virus-quarantine.q@djki.go.id",
            "galsync@djki.go.id",
            "galsync.1@x",
        ] {
            assert!(is_zimbra_system_account(sys), "{sys}");
        }
        assert!(!is_zimbra_system_account("ani@djki.go.id"));
    }

    #[test]
    fn the_operator_command_gets_the_folder_quoted() {
        assert_eq!(
            operator_command("/opt/backup.sh --out {dir}", "/srv/b/24 11"),
            "/opt/backup.sh --out '/srv/b/24 11'"
        );
    }
}
