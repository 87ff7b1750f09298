//! A plain Maildir store (`MAILDIR_ROOT/ACCOUNT`): each account's folder packed as it is, and a
//! mailbox restored by copying the message files whose names it lacks. It keeps no directory.

use futures::future::BoxFuture;

use super::{ImportProgress, MailKind, MailboxScripts, Script};
use crate::engine::import::{
    on_server, ssh, unpack, FolderCount, ImportTarget, RestoreError, RestoreProgress,
};
use crate::engine::increment::piece_fn;
use crate::engine::remote::Remote;

pub struct Maildir {
    /// `MAILDIR_ROOT`: one folder per account.
    pub root: String,
}

const LIST: &str = r#"exec find "$1" -mindepth 1 -maxdepth 1 -type d -printf '%f\0'"#;

const SIZES: &str = r#"cd -- "$1" && find . -mindepth 1 -maxdepth 1 -type d -print0 | xargs -r -0 du -sk -- | cut -f1 | "#;

const EXPORT: &str = r#"set -eu
out=$1; name=$2; root=$4
# Messages are the files of the Maildir folders' cur/ and new/ (what the read-back counts).
count() { find "$root/$name" -type f -printf '%h\n' | grep -cE '/(cur|new)$' || true; }
before=$(count)
tar -czf "$out" -C "$root" -- "$name"
after=$(count)
[ -z "${MBB_COUNT:-}" ] || printf '%s %s\n' "$before" "$after" > "$MBB_COUNT""#;

/// The export of what changed (see [`crate::engine::increment`]): the account's folder read as
/// it is, its piece holding the message files the last verified backup lacks. Arguments after
/// OUT NAME STAGE: the root, the state base, today's day number, `FULL_EVERY_DAYS` and the
/// store.
const CHANGES: &str = concat!(
    piece_fn!(),
    r#"set -eu
out=$1; name=$2; stage=$3; root=$4; base=$5; today=$6; every=$7; store=$8
count() { find "$root/$name" -type f -printf '%h\n' | grep -cE '/(cur|new)$' || true; }
st=$(state_dir "$base" "$name")
# The change markers before the read: every file's name, size and time.
( cd -- "$root/$name" && find . -type f -printf '%P\t%s\t%T@\n' ) | LC_ALL=C sort > "$st/sig.pending"
before=$(count)
piece_of "$out" "$stage" "$root/$name" "$st" "$today" "$every" "$name" "$store"
after=$(count)
[ -z "${MBB_COUNT:-}" ] || printf '%s %s\n' "$before" "$after" > "$MBB_COUNT""#
);

/// Every account's change markers at once: `ACCOUNT TAB MARKERS` lines, as [`CHANGES`] records
/// them per account before its export.
const MARKERS: &str = r#"cd -- "$1" && find . -mindepth 2 -type f -printf '%P\t%s\t%T@\n' \
  | awk '{ i = index($0, "/"); print substr($0, 1, i - 1) "\t" substr($0, i + 1) }'"#;

impl MailKind for Maildir {
    fn name(&self) -> &'static str {
        "maildir"
    }

    fn mailboxes(&self) -> Option<MailboxScripts> {
        Some(MailboxScripts::taking(
            &self.root, LIST, true, EXPORT, SIZES,
        ))
    }

    fn change_markers(&self) -> Option<Script> {
        Some(Script {
            script: MARKERS.to_owned(),
            args: vec![self.root.clone()],
        })
    }

    fn changes_export(&self) -> Option<Script> {
        Some(Script {
            script: CHANGES.to_owned(),
            args: vec![self.root.clone()],
        })
    }

    fn tools(&self) -> &'static [&'static str] {
        // The incremental export's too: the scan, the comparison and the schedule.
        &["gzip", "find", "awk", "sort", "cmp", "xargs", "cksum"]
    }

    fn target_owner<'a>(
        &'a self,
        r: &'a Remote,
        into: &'a str,
    ) -> BoxFuture<'a, Result<String, RestoreError>> {
        Box::pin(async move {
            let o = r
                .sh(
                    r#"[ -d "$1/$2" ] && stat -c '%u:%g' -- "$1/$2""#,
                    &[&self.root, into],
                )
                .await
                .map_err(ssh)?;
            if !o.ok || into.contains('/') {
                return Err(RestoreError::TargetMissing(into.to_owned()));
            }
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
        })
    }

    fn scratch_has_owner(&self) -> bool {
        false
    }

    fn import<'a>(
        &'a self,
        r: &'a Remote,
        stage: &'a str,
        target: &'a ImportTarget<'a>,
        progress: ImportProgress<'a>,
    ) -> BoxFuture<'a, Result<Vec<FolderCount>, RestoreError>> {
        Box::pin(async move {
            let scratch = unpack(r, stage, target).await?;
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
                format!("{}/{}", self.root, target.account)
            };
            let counted = on_server(r, MAILDIR_RESTORE, &[&src, &dst, &target.owner]).await?;
            parse_maildir_counts(&counted).map_err(|e| RestoreError::Server(e.to_string()))
        })
    }
}

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

/// Parses [`MAILDIR_RESTORE`]'s `folder<TAB>in backup<TAB>had<TAB>copied` lines; a line that
/// does not parse is refused, not skipped.
/// A line of the restore's counts that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("the restore's count does not parse: {0:?}")]
struct BadCountLine(String);

fn parse_maildir_counts(text: &str) -> Result<Vec<FolderCount>, BadCountLine> {
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
                _ => Err(BadCountLine(l.to_owned())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
}
