//! Backups encrypted at rest (`BACKUP_ENCRYPT_TO`): no plaintext of the mail or the account
//! directory reaches the disk, the run verifies without the identity, a restore needs it and
//! brings the mailbox back message for message, a wrong or missing identity changes nothing,
//! and plain folders made before stay readable and go by retention like the others.

use std::path::Path;

use crate::engine::{backup, dovecot_settings};
use crate::imap::Imap;
use crate::support::{doveadm, env, files_under, fill_mailbox, holds_text, test_dir};
use mailbox_backup_bot::engine::restore::{restore, RestoreError};
use mailbox_backup_bot::engine::{ErrorKind, MailboxStatus};

/// Text only one message of the test holds.
const MARKER: &str = "RAHASIA-DJKI-7731 laporan keuangan triwulan";

/// `keygen FILE` at the terminal; returns the recipient it printed.
fn keygen(file: &Path) -> String {
    let printed = crate::support::printed_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"))
            .arg("keygen")
            .arg(file),
    );
    printed
        .lines()
        .find_map(|l| l.strip_prefix("BACKUP_ENCRYPT_TO="))
        .expect("the recipient line")
        .to_owned()
}

#[tokio::test]
async fn dovecot_backups_encrypted_at_rest_verify_without_the_key_and_restore_only_with_it() {
    let (user, target) = ("fajar@djki.go.id", "restore5@djki.go.id");
    let dir = test_dir("encr");
    crate::support::empty_mailbox(target);
    fill_mailbox(user);
    let secret =
        format!("From: kasubdit@djki.go.id\r\nTo: {user}\r\nSubject: rahasia\r\n\r\n{MARKER}\r\n");
    doveadm(
        &["save", "-u", user, "-m", "INBOX"],
        Some(secret.as_bytes()),
    );

    // A plain backup first: the folder encryption must leave readable.
    let mut s = dovecot_settings(&dir);
    s.local_keep = 0;
    let plain = backup(&s, None).await.expect("the plain backup runs");
    assert!(plain.all_verified(), "{plain:?}");
    assert_eq!(plain.encrypted_to, 0);
    let plain_folder = crate::support::folder_name(&plain);
    // The search below finds the message and the password in a plain folder.
    let plain_files = files_under(&plain.folders.local);
    assert!(
        plain_files.iter().any(|f| holds_text(f, MARKER.as_bytes())),
        "{plain_files:?}"
    );
    assert!(
        plain_files.iter().any(|f| holds_text(f, b"{PLAIN}secret")),
        "{plain_files:?}"
    );

    // The identity made at the terminal: 0600, never written over.
    let key = dir.join("kasubdit.key");
    let recipient = keygen(&key);
    assert!(recipient.starts_with("age1"), "{recipient}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).expect("key");
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"))
        .arg("keygen")
        .arg(&key)
        .output()
        .expect("runs");
    assert!(
        !again.status.success(),
        "an existing identity is never overwritten"
    );
    assert_eq!(std::fs::read(&key).expect("key"), before);

    // A recipient that cannot be used stops the run before anything is written.
    s.encrypt_to = vec![recipient.clone(), "age1bukankunci".into()];
    let folders_before = std::fs::read_dir(&s.local_root).expect("root").count();
    let err = backup(&s, None).await.expect_err("a bad recipient");
    assert_eq!(err.kind, ErrorKind::Encryption, "{err:?}");
    assert!(err.detail.contains("age1bukankunci"), "{}", err.detail);
    assert_eq!(
        std::fs::read_dir(&s.local_root).expect("root").count(),
        folders_before
    );

    // The encrypted backup: verified without the identity, nowhere on the disk in plaintext.
    s.encrypt_to = vec![recipient.clone()];
    let checks = mailbox_backup_bot::preflight::engine_checks(&s).await;
    let said: Vec<String> = checks
        .iter()
        .map(|l| format!("{:?} {} {}", l.item, l.ok, l.detail))
        .collect();
    assert!(
        said.iter()
            .any(|l| l.starts_with("Encryption true on: age, to 1")),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|l| l.starts_with("Recipient(") && l.contains("true")),
        "{said:?}"
    );
    let report = backup(&s, None).await.expect("the encrypted backup runs");
    assert!(report.all_verified(), "{report:?}");
    assert_eq!(report.encrypted_to, 1);
    let folder = crate::support::folder_name(&report);
    let local = report.folders.local.clone();
    let fajar = report
        .mailboxes
        .iter()
        .find(|m| m.account == user)
        .expect("fajar");
    assert_eq!(fajar.status, MailboxStatus::Verified);
    assert_eq!(
        fajar.messages,
        fajar.server_messages.map(|c| c.after),
        "counted before encrypting"
    );
    assert!(fajar.messages >= Some(8), "{fajar:?}");
    let directory = report.directory.as_deref().expect("directory");
    assert_eq!(directory.status, MailboxStatus::Verified);
    assert_eq!(directory.file, "directory.tar.gz.age");
    let files = files_under(&local);
    for f in &files {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tar.gz") && !name.ends_with(".part"),
            "plain file left: {name}"
        );
        assert!(
            !holds_text(f, MARKER.as_bytes()),
            "{name} holds the message's text"
        );
        assert!(!holds_text(f, b"{PLAIN}secret"), "{name} holds a password");
        let mode = std::fs::metadata(f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    // SHA256SUMS covers the files as stored: checked with coreutils, no key needed.
    let sums = std::process::Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&local)
        .output()
        .expect("sha256sum");
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );
    let listed = std::fs::read_to_string(local.join("SHA256SUMS")).expect("sums");
    assert!(
        listed.contains(&format!("  {user}.tar.gz.age\n")),
        "{listed}"
    );
    assert!(listed.contains("  directory.tar.gz.age\n"), "{listed}");
    // The manifest keeps the plaintext's hash, as the server made it.
    let summary = std::fs::read_to_string(local.join("summary.json")).expect("summary");
    assert!(summary.contains(&fajar.sha256), "{summary}");

    // No identity, then a wrong one: a clear error, the target untouched, no stage left.
    let port: u16 = env("TEST_DOVECOT_IMAP_PORT").parse().expect("port");
    let untouched = Imap::login(port, target, "secret").contents();
    let err = restore(&s, &folder, user, Some(target), None, |_| {})
        .await
        .expect_err("no identity");
    assert!(matches!(err, RestoreError::NoIdentity { .. }), "{err:?}");
    let stranger = dir.join("stranger.key");
    keygen(&stranger);
    s.age_identity = Some(stranger.clone());
    let err = restore(&s, &folder, user, Some(target), None, |_| {})
        .await
        .expect_err("a wrong identity");
    assert!(
        matches!(&err, RestoreError::Identity { detail, .. } if detail.contains("not one this backup was encrypted to")),
        "{err:?}"
    );
    assert_eq!(Imap::login(port, target, "secret").contents(), untouched);
    let stages = std::fs::read_dir(dir.join("server"))
        .expect("server")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restore"))
        .count();
    assert_eq!(stages, 0);

    // The right identity: message for message.
    s.age_identity = Some(key.clone());
    let done = restore(&s, &folder, user, Some(target), None, |_| {})
        .await
        .expect("the restore runs");
    assert!(done.complete(), "{done:?}");
    let original = Imap::login(port, user, "secret").contents();
    assert_eq!(Imap::login(port, target, "secret").contents(), original);

    // At the terminal: without --identity it says what is missing; with it, nothing to add.
    let mut without = crate::support::dovecot_terminal(&dir, &env("TEST_DOVECOT_CONF"));
    without.args(["restore", &folder, user, "--into", target, "--unrecorded"]);
    let out = without.output().expect("runs");
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(printed.contains("--identity"), "{printed}");
    let printed = crate::support::printed_ok(
        crate::support::dovecot_terminal(&dir, &env("TEST_DOVECOT_CONF"))
            .args([
                "restore",
                &folder,
                user,
                "--into",
                target,
                "--unrecorded",
                "--identity",
            ])
            .arg(&key),
    );
    assert!(printed.contains("OK: all"), "{printed}");

    // The plain folder made before encryption was turned on is still restored without a key.
    s.age_identity = None;
    let old = restore(&s, &plain_folder, user, Some(target), None, |_| {})
        .await
        .expect("the plain folder restores");
    assert!(old.complete(), "{old:?}");

    // That folder cut off, a plain part left in it, and the keys changed: the run that continues
    // it removes the plain part and encrypts every file again, to the new keys only.
    use mailbox_backup_bot::engine::local::{mark, FolderState};
    mark(&local, FolderState::Failed, None).expect("mark");
    let leftover = local.join(format!(".{user}.tar.gz.part"));
    std::fs::write(&leftover, MARKER).expect("a plain part");
    let new_key = dir.join("new.key");
    s.encrypt_to = vec![keygen(&new_key)];
    let again = backup(&s, None).await.expect("the continued run");
    assert!(again.all_verified(), "{again:?}");
    assert_eq!(
        crate::support::folder_name(&again),
        folder,
        "the folder is continued"
    );
    assert!(!leftover.exists(), "the plain part is gone");
    for f in files_under(&local) {
        assert!(!holds_text(&f, MARKER.as_bytes()), "{f:?}");
    }
    s.age_identity = Some(key.clone());
    let err = restore(&s, &folder, user, Some(target), None, |_| {})
        .await
        .expect_err("the old key no longer opens it");
    assert!(matches!(err, RestoreError::Identity { .. }), "{err:?}");
    s.age_identity = Some(new_key.clone());
    let done = restore(&s, &folder, user, Some(target), None, |_| {})
        .await
        .expect("the new key opens it");
    assert!(done.complete(), "{done:?}");

    // Retention goes by age alone: with one folder kept, the plain and the encrypted one go.
    s.local_keep = 1;
    let last = backup(&s, None).await.expect("a third backup");
    assert!(last.all_verified(), "{last:?}");
    let mut removed = last.local_folders_removed.clone();
    removed.sort();
    let mut expected = vec![plain_folder.clone(), folder.clone()];
    expected.sort();
    assert_eq!(removed, expected);
}
