//! A mailbox that failed is tried again when the backup is ordered again the same day: the
//! cause is removed, the run goes on in the day's folder, asks the server again, and reports the
//! mailbox verified. (Zimbra's is in `zimbra.rs`.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::engine::{backup, settings};
use crate::support::{doveadm_on, env, sh, test_dir};

use mailbox_backup_bot::config::{BackupKind, MailStore};
use mailbox_backup_bot::engine::{BackupReport, MailboxResult, MailboxStatus};

/// Puts a folder's mode back on drop, so a failing test leaves nothing unreadable behind.
struct Unreadable(PathBuf, u32);

impl Unreadable {
    fn make(path: &Path) -> Unreadable {
        let mode = std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o7777;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        Unreadable(path.to_owned(), mode)
    }
}

impl Drop for Unreadable {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(self.1));
    }
}

fn result_of(report: &BackupReport, account: &str) -> MailboxResult {
    report
        .mailboxes
        .iter()
        .find(|m| m.account == account)
        .cloned()
        .unwrap_or_else(|| panic!("{account} in {report:#?}"))
}

fn failed_with(result: &MailboxResult, needle: &str) -> bool {
    matches!(&result.status, MailboxStatus::Failed { error } if error.contains(needle))
}

#[tokio::test]
async fn a_dovecot_mailbox_that_failed_is_exported_again_when_the_backup_is_ordered_again() {
    const USER: &str = "ulang@djki.go.id";
    let conf = env("TEST_DOVECOT_SLASH_CONF");
    let dir = test_dir("retry-dove");
    let msg = format!("From: kasi@djki.go.id\r\nTo: {USER}\r\nSubject: ulang\r\n\r\nisi\r\n");
    doveadm_on(
        &conf,
        &["save", "-u", USER, "-m", "INBOX"],
        Some(msg.as_bytes()),
    );
    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Dovecot {
            config: Some(conf.clone()),
        }),
    );
    let maildir = Path::new(&conf)
        .with_file_name("mail")
        .join(USER)
        .join("Maildir");

    // The mailbox's folder unreadable to the mail user: its export fails, by name.
    let unreadable = Unreadable::make(&maildir);
    let first = backup(&s, None).await.expect("the run ends");
    let failed = result_of(&first, USER);
    assert!(failed_with(&failed, "Permission denied"), "{failed:?}");

    // Put right, ordered again the same day: exported again, verified, the server's count.
    drop(unreadable);
    let second = backup(&s, None).await.expect("the run ends");
    assert_eq!(
        second.folders.local, first.folders.local,
        "the day's folder"
    );
    let ok = result_of(&second, USER);
    assert_eq!(ok.status, MailboxStatus::Verified, "{ok:?}");
    let counted = ok.server_messages.expect("the server counted");
    assert!(
        ok.messages.is_some_and(|n| n >= 1 && counted.accepts(n)),
        "{ok:?}"
    );
    assert!(second.all_verified(), "{second:#?}");
}

/// A system user of this test's own (the Maildir kind needs no root on the server): removed on
/// drop. Only a user this test made is ever removed.
struct ServerUser(&'static str);

const USER_MARK: &str = "mbb-test-user";

impl ServerUser {
    fn make(name: &'static str) -> ServerUser {
        if let Ok(o) = std::process::Command::new("getent")
            .args(["passwd", name])
            .output()
        {
            let entry = String::from_utf8_lossy(&o.stdout);
            if !entry.is_empty() {
                assert!(
                    entry.contains(USER_MARK),
                    "{name} exists and is not a test's"
                );
                sh("userdel", &[name]);
            }
        }
        sh(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/sh",
                "--comment",
                USER_MARK,
                name,
            ],
        );
        // A new system account is locked; sshd refuses a locked account even with a key.
        sh("usermod", &["-p", "*", name]);
        ServerUser(name)
    }
}

impl Drop for ServerUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-u", self.0])
            .status();
        let _ = std::process::Command::new("userdel").arg(self.0).status();
    }
}

#[tokio::test]
async fn a_maildir_mailbox_that_failed_is_exported_again_when_the_backup_is_ordered_again() {
    let dir = test_dir("retry-md");
    let user = ServerUser::make("mbb-ulang");
    let root = dir.join("maildirs");
    for (name, files) in [("andi", 2), ("budi", 1)] {
        for part in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join(name).join(part)).expect("mkdir");
        }
        for i in 0..files {
            std::fs::write(
                root.join(name)
                    .join("cur")
                    .join(format!("17000000{i}.M1P1.x:2,S")),
                format!("Subject: {name} {i}\r\n\r\nisi\r\n"),
            )
            .expect("message");
        }
    }
    let server = dir.join("server");
    std::fs::create_dir_all(&server).expect("server folder");
    sh(
        "chown",
        &[
            "-R",
            user.0,
            &root.to_string_lossy(),
            &server.to_string_lossy(),
        ],
    );
    let mut s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Maildir {
            root: root.to_string_lossy().into_owned(),
        }),
    );
    s.ssh_user = user.0.to_owned();

    let unreadable = Unreadable::make(&root.join("budi").join("cur"));
    let first = backup(&s, None).await.expect("the run ends");
    assert_eq!(result_of(&first, "andi").status, MailboxStatus::Verified);
    let failed = result_of(&first, "budi");
    assert!(failed_with(&failed, "Permission denied"), "{failed:?}");

    drop(unreadable);
    let second = backup(&s, None).await.expect("the run ends");
    assert_eq!(
        second.folders.local, first.folders.local,
        "the day's folder"
    );
    let ok = result_of(&second, "budi");
    assert_eq!(ok.status, MailboxStatus::Verified, "{ok:?}");
    assert_eq!(ok.messages, Some(1), "{ok:?}");
    assert!(second.all_verified(), "{second:#?}");
    let sums = std::fs::read_to_string(second.folders.local.join("SHA256SUMS")).expect("sums");
    assert!(sums.contains(&ok.sha256), "{sums}");
}
