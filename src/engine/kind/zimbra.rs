//! Zimbra: accounts listed with `zmprov`, each mailbox exported and imported over the admin REST
//! interface (the scripts are in [`crate::engine::zimbra`]), the directory captured with
//! `zmprov`. A drill imports into an account made for it (`RESTORE_DRILL_ACCOUNT`).

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{ImportProgress, Listing, MailKind, MailboxScripts, Script, SUM_KIB};
use crate::engine::directory::{Directory, RebuildTarget, ZIMBRA_CAPTURE};
use crate::engine::import::{
    on_server, ssh, FolderCount, ImportTarget, RestoreError, RestoreProgress,
};
use crate::engine::remote::Remote;
use crate::engine::zimbra::{self as scripts, is_system_account};

pub struct Zimbra;

impl MailKind for Zimbra {
    fn name(&self) -> &'static str {
        "zimbra"
    }

    fn mailboxes(&self) -> Option<MailboxScripts> {
        Some(MailboxScripts {
            unchanged: None,
            listing: Listing {
                script: scripts::LIST,
                args: vec![],
                nul: false,
            },
            export: Script {
                script: scripts::EXPORT.to_owned(),
                args: vec![],
            },
            sizes: Script {
                script: format!(
                    "{} | awk '{{print int($NF / 1024) + 1}}' | {SUM_KIB}",
                    scripts::SIZES
                ),
                args: vec![],
            },
            extension: "tgz",
        })
    }

    fn skips(&self, account: &str) -> bool {
        is_system_account(account)
    }

    fn tools(&self) -> &'static [&'static str] {
        &["su", "curl", "od"]
    }

    fn admin_tools_check(&self) -> Option<&'static str> {
        Some("su - zimbra -c 'command -v zmprov && command -v zmlocalconfig && command -v zmhostname'")
    }

    fn drills_into_an_account(&self) -> bool {
        true
    }

    fn directory_capture(&self, dir: &str) -> Option<Script> {
        Some(Script {
            script: ZIMBRA_CAPTURE.to_owned(),
            args: vec![dir.to_owned()],
        })
    }

    fn rebuild_target<'a>(
        &self,
        capture: &'a Directory,
    ) -> Result<RebuildTarget<'a>, RestoreError> {
        match capture {
            Directory::Zimbra(z) => Ok(RebuildTarget::Zimbra(z)),
            _ => Err(RestoreError::Unsupported(
                "a directory of another kind of mail server".into(),
            )),
        }
    }

    /// On Zimbra an account is only ever a name in the directory and a URL (percent-encoded, or
    /// by its id), never a file, so `/` is allowed as Zimbra allows it (`bagian/umum@…` is a
    /// valid address).
    fn is_account_name(&self, name: &str) -> bool {
        super::plain_name(name)
    }

    fn target_owner<'a>(
        &'a self,
        r: &'a Remote,
        into: &'a str,
    ) -> BoxFuture<'a, Result<String, RestoreError>> {
        Box::pin(async move {
            let o = r.sh(scripts::LIST, &[]).await.map_err(ssh)?;
            let known = String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == into);
            if !o.ok || !known {
                return Err(RestoreError::TargetMissing(into.to_owned()));
            }
            Ok(String::new())
        })
    }

    fn import<'a>(
        &'a self,
        r: &'a Remote,
        stage: &'a str,
        target: &'a ImportTarget<'a>,
        progress: ImportProgress<'a>,
    ) -> BoxFuture<'a, Result<Vec<FolderCount>, RestoreError>> {
        Box::pin(zimbra_import(r, stage, target, progress))
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
    r: &Remote,
    stage: &str,
    target: &ImportTarget<'_>,
    progress: ImportProgress<'_>,
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
        on_server(r, scripts::EXPORT, &[&out, into, stage]).await?;
        let counts = listing(out.clone()).await?;
        let _ = r.sh(r#"rm -f -- "$1""#, &[&out]).await;
        Ok(counts)
    };
    let backup = listing(archive.clone()).await?;
    // A drill writes only into an empty account: one that holds anything may be someone's.
    let scratch_id = if target.scratch {
        let checked = on_server(r, scripts::SCRATCH, &[into, stage]).await?;
        let (id, items) = scripts::parse_scratch(&checked).ok_or_else(|| {
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
            match on_server(r, scripts::IMPORT, &[&archive, into, stage, acl]).await {
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
        on_server(r, scripts::EMPTY, &[into, &id, stage]).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
