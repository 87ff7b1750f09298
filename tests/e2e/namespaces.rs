//! Dovecot as the field configures it: namespace separator `/`, and an `INBOX.` prefix (each a
//! Dovecot of its own, started by `scripts/test`). Backup, then restore into another account,
//! compared message for message over IMAP; a second restore adds nothing.

use crate::engine::{backup, settings};
use crate::imap::Imap;
use crate::support::{doveadm_on, env, folder_name, test_dir};

use mailbox_backup_bot::config::{BackupKind, MailStore};
use mailbox_backup_bot::engine::restore::restore;

const SOURCE: &str = "asal@djki.go.id";
const TARGET: &str = "pulih@djki.go.id";

/// Fills SOURCE with `folders` (named as that namespace names them), two messages each, one
/// flagged; returns how many messages there are.
fn fill(conf: &str, folders: &[&str]) -> usize {
    let mut n = 0;
    for folder in folders {
        if *folder != "INBOX" {
            // Made once; the test runs again on the same Dovecot only with the same names.
            let _ = std::process::Command::new("doveadm")
                .args(["-c", conf, "mailbox", "create", "-s", "-u", SOURCE, folder])
                .output();
        }
        for i in 0..2 {
            let msg = format!(
                "From: kasi@djki.go.id\r\nTo: {SOURCE}\r\nSubject: {folder} {i}\r\nMessage-ID: <{n}.{}@ns>\r\n\r\nisi {folder} {i}\r\n",
                std::process::id()
            );
            doveadm_on(
                conf,
                &["save", "-u", SOURCE, "-m", folder],
                Some(msg.as_bytes()),
            );
            n += 1;
        }
    }
    doveadm_on(
        conf,
        &[
            "flags",
            "add",
            "-u",
            SOURCE,
            "\\Flagged",
            "mailbox",
            folders[1],
            "uid",
            "1",
        ],
        None,
    );
    n
}

async fn backup_and_restore(variant: &str, folders: &[&str]) {
    let conf = env(&format!("TEST_DOVECOT_{variant}_CONF"));
    let port: u16 = env(&format!("TEST_DOVECOT_{variant}_IMAP_PORT"))
        .parse()
        .expect("port");
    let dir = test_dir(&format!("ns-{}", variant.to_lowercase()));
    // The target starts empty (a second run on the same Dovecot finds the first's restore).
    let mail = std::path::Path::new(&conf).with_file_name("mail");
    let _ = std::fs::remove_dir_all(mail.join(TARGET));
    fill(&conf, folders);
    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Dovecot {
            config: Some(conf.clone()),
        }),
    );
    let report = backup(&s, None).await.expect("the backup runs");
    assert!(report.all_verified(), "{report:?}");
    let copy = report
        .mailboxes
        .iter()
        .find(|m| m.account == SOURCE)
        .expect("backed up");
    let original = Imap::login(port, SOURCE, "secret").contents();
    let held: usize = original.values().map(Vec::len).sum();
    assert_eq!(
        copy.messages,
        Some(held as u64),
        "the archive holds what the server holds: {original:?}"
    );
    for folder in folders {
        assert!(original.contains_key(*folder), "{folder}: {original:?}");
    }

    let folder = folder_name(&report);
    let first = restore(&s, &folder, SOURCE, Some(TARGET), None, |_| {})
        .await
        .expect("the restore runs");
    assert!(first.complete(), "{first:?}");
    let restored = Imap::login(port, TARGET, "secret").contents();
    assert_eq!(
        original, restored,
        "every folder, message and flag came back under the server's own names"
    );
    let names: Vec<&str> = first.folders.iter().map(|f| f.folder.as_str()).collect();
    for folder in folders {
        assert!(
            names.contains(folder),
            "reported as the server names it: {names:?}"
        );
    }

    let second = restore(&s, &folder, SOURCE, Some(TARGET), None, |_| {})
        .await
        .expect("the second restore runs");
    assert!(second.complete(), "{second:?}");
    assert_eq!(second.restored(), 0, "{second:?}");
    assert_eq!(Imap::login(port, TARGET, "secret").contents(), restored);
}

#[tokio::test]
async fn dovecot_with_the_slash_separator_backs_up_and_restores_message_for_message() {
    backup_and_restore(
        "SLASH",
        &["INBOX", "Sent", "Arsip/2024", "Arsip/2025", "Surat Masuk"],
    )
    .await;
}

#[tokio::test]
async fn dovecot_with_an_inbox_prefix_backs_up_and_restores_message_for_message() {
    backup_and_restore(
        "PREFIX",
        &[
            "INBOX",
            "INBOX.Sent",
            "INBOX.Arsip.2024",
            "INBOX.Arsip.2025",
            "INBOX.Surat Masuk",
        ],
    )
    .await;
}
