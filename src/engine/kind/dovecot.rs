//! Dovecot: users listed with `doveadm user`, each mailbox exported with `doveadm backup` into a
//! Maildir then packed, the directory (passwd-files, `passdb`, sieve) captured, and a mailbox
//! imported with `doveadm import` after comparing message GUIDs, in the account's own namespace
//! (see [`crate::engine::dovecot`]). A drill imports into a scratch mail location in the stage.

use std::collections::{BTreeMap, HashMap};

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{ImportProgress, MailKind, MailboxScripts, Script};
use crate::engine::directory::{Directory, RebuildTarget, DOVECOT_CAPTURE};
use crate::engine::dovecot::{inbox_namespace_fn, Namespace, NAMESPACE};
use crate::engine::import::{
    on_server, ssh, unpack, FolderCount, ImportTarget, RestoreError, RestoreProgress,
};
use crate::engine::increment::piece_fn;
use crate::engine::remote::Remote;

pub struct Dovecot {
    /// `MAIL_DOVEADM_CONFIG`, or empty: doveadm's own.
    pub config: String,
}

const LIST: &str =
    r#"if [ -n "$1" ]; then exec doveadm -c "$1" user '*'; else exec doveadm user '*'; fi"#;

/// A shell function `count DOVEADM_OPTIONS…`: the server's count of `$user`'s messages. With a
/// namespace prefix (`$ns_prefix`), doveadm's `*` matches no folder at all: INBOX and the
/// prefix's folders instead.
macro_rules! count_fn {
    () => {
        r#"count() {
  if [ -n "$ns_prefix" ]; then
    doveadm "$@" -f flow mailbox status -t -u "$user" messages INBOX "$ns_prefix*"
  else
    doveadm "$@" -f flow mailbox status -t -u "$user" messages '*'
  fi | sed -n 's/^messages=\([0-9]*\)$/\1/p'
}
"#
    };
}

const EXPORT: &str = concat!(
    inbox_namespace_fn!(),
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
"#,
    count_fn!(),
    r#"before=$(count "$@" || true)
if [ -n "$ns_prefix" ] && [ -n "$ns_name" ]; then
  doveadm "$@" -o maildir_copy_with_hardlinks=no -o "namespace/$ns_name/prefix=" backup -u "$user" "maildir:$stage/Maildir"
else
  doveadm "$@" -o maildir_copy_with_hardlinks=no backup -u "$user" "maildir:$stage/Maildir"
fi
after=$(count "$@" || true)
[ -z "${MBB_COUNT:-}" ] || printf '%s %s\n' "$before" "$after" > "$MBB_COUNT"
tar -czf "$out" -C "$stage" Maildir"#
);

/// The export of what changed (see [`crate::engine::increment`]): `doveadm backup -s STATE`
/// keeps a mirror of the mailbox in its state folder in step with the mailbox, moving only what
/// changed since the last sync, and the piece holds what the last verified backup lacks.
/// Arguments after OUT USER STAGE: the doveadm configuration, the state base, today's day
/// number, `FULL_EVERY_DAYS` and the store.
const CHANGES: &str = concat!(
    inbox_namespace_fn!(),
    piece_fn!(),
    r#"set -eu
out=$1; user=$2; stage=$3; conf=$4; base=$5; today=$6; every=$7; store=$8
if [ -n "$conf" ]; then set -- -c "$conf"; else set --; fi
ns=$(inbox_namespace "$@"); ns_name=$(printf '%s' "$ns" | cut -f1); ns_prefix=$(printf '%s' "$ns" | cut -f2)
uid=$(doveadm "$@" user -f uid -- "$user"); gid=$(doveadm "$@" user -f gid -- "$user")
st=$(state_dir "$base" "$user")
"#,
    count_fn!(),
    r#"# The change markers before the sync: what arrives after them is seen changed tomorrow.
if [ -n "$ns_prefix" ]; then
  doveadm "$@" -f tab mailbox status -u "$user" 'messages uidvalidity uidnext highestmodseq guid' INBOX "$ns_prefix*"
else
  doveadm "$@" -f tab mailbox status -u "$user" 'messages uidvalidity uidnext highestmodseq guid' '*'
fi | tail -n +2 | LC_ALL=C sort > "$st/sig.pending"
before=$(count "$@" || true)
mirror=$st/mirror
if [ ! -d "$mirror" ]; then
  rm -f -- "$st/dsync"; mkdir -m 0700 -- "$mirror"; chown "$uid:$gid" -- "$mirror"
fi
sync_state=$(cat -- "$st/dsync" 2>/dev/null || true)
# The mirror's Maildir is written as the user; the prefix is left out as in the whole export.
mirror_sync() {
  if [ -n "$ns_prefix" ] && [ -n "$ns_name" ]; then
    doveadm "$@" -o maildir_copy_with_hardlinks=no -o "namespace/$ns_name/prefix=" backup -s "$sync_state" -u "$user" "maildir:$mirror/Maildir"
  else
    doveadm "$@" -o maildir_copy_with_hardlinks=no backup -s "$sync_state" -u "$user" "maildir:$mirror/Maildir"
  fi
}
# Exit 2: the mailbox changed during the sync; once more.
set +e; new_state=$(mirror_sync "$@"); rc=$?
if [ "$rc" = 2 ]; then new_state=$(mirror_sync "$@"); rc=$?; fi
set -e
[ "$rc" = 0 ] || { echo "doveadm backup into the mirror failed (exit $rc)" >&2; rm -f -- "$st/dsync"; exit 1; }
printf '%s\n' "$new_state" > "$st/dsync.part" && mv -f -- "$st/dsync.part" "$st/dsync"
after=$(count "$@" || true)
[ -z "${MBB_COUNT:-}" ] || printf '%s %s\n' "$before" "$after" > "$MBB_COUNT"
piece_of "$out" "$stage" "$mirror/Maildir" "$st" "$today" "$every" "$user" "$store""#
);

/// Every user's change markers at once (`doveadm mailbox status -A`): `USER TAB MARKERS` lines,
/// the markers as [`CHANGES`] records them per user before its export.
const MARKERS: &str = concat!(
    inbox_namespace_fn!(),
    r#"if [ -n "$1" ]; then set -- -c "$1"; else set --; fi
ns=$(inbox_namespace "$@"); prefix=$(printf '%s' "$ns" | cut -f2)
if [ -n "$prefix" ]; then
  doveadm "$@" -f tab mailbox status -A 'messages uidvalidity uidnext highestmodseq guid' INBOX "$prefix*"
else
  doveadm "$@" -f tab mailbox status -A 'messages uidvalidity uidnext highestmodseq guid' '*'
fi | tail -n +2"#
);

/// One `doveadm user` and one `du` for all the users (a process per user costs seconds on a
/// server of hundreds, before the first export may start).
const SIZES: &str = r#"if [ -n "$1" ]; then set -- -c "$1"; else set --; fi
doveadm "$@" user '*' | xargs -r -d '\n' doveadm "$@" user -f home -- 2>/dev/null \
  | while IFS= read -r h; do [ -n "$h" ] && [ -d "$h" ] && printf '%s\0' "$h"; done \
  | xargs -r -0 du -sk -- | cut -f1 | "#;

impl MailKind for Dovecot {
    fn name(&self) -> &'static str {
        "dovecot"
    }

    fn mailboxes(&self) -> Option<MailboxScripts> {
        Some(MailboxScripts::taking(
            &self.config,
            LIST,
            false,
            EXPORT,
            SIZES,
        ))
    }

    /// Besides the archives, the uncompressed stage copy of each mailbox in flight.
    fn peak_bytes(&self, total: u64, largest: u64, jobs: usize) -> u64 {
        total + total / 100 + (1 << 20) + largest.saturating_mul(jobs as u64)
    }

    fn change_markers(&self) -> Option<Script> {
        Some(Script {
            script: MARKERS.to_owned(),
            args: vec![self.config.clone()],
        })
    }

    fn changes_export(&self) -> Option<Script> {
        Some(Script {
            script: CHANGES.to_owned(),
            args: vec![self.config.clone()],
        })
    }

    fn tools(&self) -> &'static [&'static str] {
        // The incremental export's too: the scan, the comparison and the schedule.
        &[
            "doveadm", "gzip", "awk", "find", "sort", "cmp", "xargs", "cksum",
        ]
    }

    fn directory_capture(&self, dir: &str) -> Option<Script> {
        Some(Script {
            script: DOVECOT_CAPTURE.to_owned(),
            args: vec![dir.to_owned(), self.config.clone()],
        })
    }

    fn rebuild_target<'a>(
        &self,
        capture: &'a Directory,
    ) -> Result<RebuildTarget<'a>, RestoreError> {
        match capture {
            Directory::Dovecot(d) => Ok(RebuildTarget::Dovecot(self.config.clone(), d)),
            _ => Err(RestoreError::Unsupported(
                "a directory of another kind of mail server".into(),
            )),
        }
    }

    fn target_owner<'a>(
        &'a self,
        r: &'a Remote,
        into: &'a str,
    ) -> BoxFuture<'a, Result<String, RestoreError>> {
        Box::pin(async move {
            let o = r.sh(USER, &[into, &self.config]).await.map_err(ssh)?;
            if !o.ok {
                return Err(RestoreError::TargetMissing(into.to_owned()));
            }
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
        })
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
            dovecot_import(r, stage, &self.config, (target.account, &scratch), progress).await
        })
    }
}

/// Dovecot: `$1` the account, `$2` the doveadm config (or empty); prints `uid:gid`, or fails
/// when there is no such account.
const USER: &str = r#"if [ -n "$2" ]; then set -- "$1" -c "$2"; else set -- "$1"; fi
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
const DOVECOT_MESSAGES: &str = concat!(
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
/// from the Maildir `$2` into `$1` under the parent `$6` (see [`Namespace`]), with their
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

/// A message's identity for "is it there already": its folder and its GUID, which Dovecot keeps
/// through the backup (`doveadm backup`) and the import; without one, its Message-ID, size and
/// date.
type Key = (String, String);

/// Parses `doveadm -f json fetch 'mailbox uid guid hdr.message-id size.virtual date.sent'`.
/// A listing that does not parse whole is refused: a record skipped here would be a message
/// the restore silently leaves behind.
/// Why doveadm's listing is refused (a record skipped would be a message left behind).
#[derive(Debug, thiserror::Error)]
enum ListingError {
    #[error("the listing gives {uid:?} as a UID in {mailbox:?}")]
    BadUid { uid: String, mailbox: String },
    #[error("doveadm's listing does not parse: {0}")]
    Json(#[source] serde_json::Error),
}

impl ListingError {
    /// As the restore reports it: the server's listing is at fault.
    fn on_server(self) -> RestoreError {
        RestoreError::Server(self.to_string())
    }
}

fn parse_listing(text: &str) -> Result<Vec<(Key, u32)>, ListingError> {
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
            let uid = m.uid.parse().map_err(|_| ListingError::BadUid {
                uid: m.uid.clone(),
                mailbox: m.mailbox.clone(),
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
fn parse_folders(text: &str) -> Result<std::collections::BTreeSet<String>, ListingError> {
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
fn json_records<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>, ListingError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(ListingError::Json)
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

/// `to` is the account and the mail location written (empty: the account's own; a drill's
/// scratch copy otherwise).
async fn dovecot_import(
    r: &Remote,
    stage: &str,
    conf: &str,
    to: (&str, &str),
    progress: ImportProgress<'_>,
) -> Result<Vec<FolderCount>, RestoreError> {
    let (into, location) = to;
    let maildir = format!("{stage}/x/Maildir");
    // The archive's folders are named in the account's own spelling (separator, prefix) for
    // the comparison, and in `doveadm import`'s for the import.
    let ns = Namespace::parse(&on_server(r, NAMESPACE, &[into, conf]).await?);
    let from_archive = |name: &str| ns.target_name(&ns.import_name(name));
    let list = |loc: String| async move {
        let text = on_server(r, DOVECOT_MESSAGES, &[into, conf, &loc]).await?;
        parse_listing(&text).map_err(ListingError::on_server)
    };
    let prefix = ns.prefix.as_str();
    let folders = |loc: String| async move {
        let text = on_server(r, DOVECOT_FOLDERS, &[into, conf, &loc, prefix]).await?;
        parse_folders(&text).map_err(ListingError::on_server)
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
}
