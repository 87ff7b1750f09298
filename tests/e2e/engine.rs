//! The backup engine against the shared sshd and Dovecot on 127.0.0.1 and real files.

use std::path::{Path, PathBuf};

use crate::imap::Imap;
use crate::support::{doveadm, env, files_under, fill_mailbox, sh, test_dir};

use mailbox_backup_bot::config::{BackupKind, EngineSettings, MailStore};
use mailbox_backup_bot::engine::{
    run::run, BackupReport, EngineError, ErrorKind, MailboxStatus, RunFolders, RunRequest, Stop,
};

pub fn settings(dir: &Path, kind: BackupKind) -> EngineSettings {
    let local = dir.join("local");
    std::fs::create_dir_all(&local).expect("local root");
    mailbox_backup_bot::engine::local::init_disk(&local).expect("disk marker");
    let mut s = EngineSettings::new(
        (
            env("MAIL_SSH_HOST"),
            env("MAIL_SSH_PORT").parse().expect("port"),
            env("MAIL_SSH_USER"),
            env("MAIL_SSH_KEY").into(),
            env("MAIL_SSH_KNOWN_HOSTS").into(),
        ),
        kind,
        dir.join("server").to_string_lossy().into_owned(),
        local,
    );
    // The test machine's disk may be fuller than a mail server's should be.
    s.server_min_free = mailbox_backup_bot::config::Floor::Bytes(64 << 20);
    s
}

/// One run of steps 3–6 for today, or the continuation of an interrupted one.
pub async fn backup(
    s: &EngineSettings,
    resume: Option<RunFolders>,
) -> Result<BackupReport, EngineError> {
    backup_on(s, resume, chrono::Utc::now().date_naive()).await
}

/// A run for `date` (two runs of one test share a date even across midnight).
pub async fn backup_on(
    s: &EngineSettings,
    resume: Option<RunFolders>,
    date: chrono::NaiveDate,
) -> Result<BackupReport, EngineError> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut request = RunRequest::new(date, "test", Stop::never());
    request.resume = resume;
    run(s, request, tx).await
}

#[tokio::test]
async fn dovecot_mailboxes_are_backed_up_copied_verified_and_counted() {
    let dir = test_dir("dove");
    for user in ["ani@djki.go.id", "budi@djki.go.id"] {
        // The shared Dovecot: each test run adds 7 messages to these users.
        fill_mailbox(user);
    }
    let s = dovecot_settings(&dir);
    let day = chrono::Utc::now().date_naive();
    let report = backup_on(&s, None, day).await.expect("the run succeeds");
    assert!(report.all_verified(), "{report:?}");
    let names: Vec<&str> = report
        .mailboxes
        .iter()
        .map(|m| m.account.as_str())
        .collect();
    for user in ["ani@djki.go.id", "budi@djki.go.id"] {
        assert!(names.contains(&user), "{names:?}");
    }
    for m in &report.mailboxes {
        if m.account == "ani@djki.go.id" {
            assert!(m.messages.unwrap_or(0) >= 7, "{m:?}");
        }
        let local = report.folders.local.join(&m.file);
        let out = std::process::Command::new("sha256sum")
            .arg(&local)
            .output()
            .expect("sha256sum");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(&m.sha256),
            "local copy matches the server's checksum"
        );
    }
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&report.folders.local)
        .status()
        .expect("sha256sum -c");
    assert!(check.success(), "SHA256SUMS is readable by sha256sum -c");
    assert!(report.folders.local.join("summary.json").is_file());
    assert_eq!(report.steps.len(), 4);

    // A second run the same day gets its own folder.
    let second = backup_on(&s, None, day).await.expect("second run");
    assert_ne!(second.folders.local, report.folders.local);
    assert!(second.folders.local.to_string_lossy().ends_with("_2"));
}

#[tokio::test]
async fn hostile_maildir_names_stay_inside_the_folder_and_a_corrupted_copy_is_caught_then_resumed()
{
    let dir = test_dir("mdir");
    let root = dir.join("maildirs");
    for name in ["a;b", "with space", "ünï", "..x", "$(touch pwned)"] {
        let cur = root.join(name).join("cur");
        std::fs::create_dir_all(&cur).expect("maildir");
        std::fs::write(
            cur.join("1.msg:2,S"),
            format!("Subject: {name}\r\n\r\nhi\r\n"),
        )
        .expect("message");
    }
    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Maildir {
            root: root.to_string_lossy().into_owned(),
        }),
    );
    let report = backup(&s, None).await.expect("run");
    assert!(report.all_verified(), "{report:?}");
    assert_eq!(report.mailboxes.len(), 5);
    assert!(
        !dir.join("pwned").exists() && !Path::new("pwned").exists(),
        "no name ran as code"
    );
    for entry in std::fs::read_dir(&report.folders.local).expect("list") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            !name.contains(':') && !name.starts_with("..") && !name.contains('/'),
            "{name}"
        );
    }
    assert!(report.mailboxes.iter().all(|m| m.messages == Some(1)));

    // Corrupt one byte of an archive on the server: the copy refuses it and says so.
    let server = PathBuf::from(&report.folders.server);
    let victim = server.join(&report.mailboxes[0].file);
    let mut bytes = std::fs::read(&victim).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&victim, &bytes).expect("corrupt");
    let local_victim = report.folders.local.join(&report.mailboxes[0].file);
    std::fs::remove_file(&local_victim).expect("drop local copy");
    let folders = RunFolders {
        local: report.folders.local.clone(),
        server: report.folders.server.clone(),
    };
    let err = backup(&s, Some(folders.clone()))
        .await
        .expect_err("a corrupted byte is caught");
    assert_eq!(err.kind, ErrorKind::Copy);
    assert!(err.detail.contains("checksum mismatch"), "{}", err.detail);
    assert!(!local_victim.exists(), "a bad copy is never put in place");

    // Restore the byte: the resumed run copies only that file and verifies everything.
    bytes[last] ^= 0xff;
    std::fs::write(&victim, &bytes).expect("repair");
    let resumed = backup(&s, Some(folders)).await.expect("resumed");
    assert!(resumed.all_verified());
    assert_eq!(
        resumed.bytes_copied, report.mailboxes[0].size,
        "only the missing file was copied again"
    );
}

#[tokio::test]
async fn a_changed_host_key_a_refused_key_and_a_dead_port_each_get_their_own_error() {
    let dir = test_dir("keys");
    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Maildir {
            root: "/nonexistent".into(),
        }),
    );
    let other = dir.join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(&other)
        .status()
        .expect("keygen");
    assert!(st.success());
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let changed = dir.join("known_hosts_changed");
    let line = format!("[127.0.0.1]:{} {}\n", s.ssh_port, key.join(" "));
    std::fs::write(&changed, line).expect("known_hosts");

    let cases = [
        (
            EngineSettings {
                ssh_known_hosts: changed,
                ..s.clone()
            },
            ErrorKind::HostKeyChanged,
        ),
        (
            EngineSettings {
                ssh_key: other,
                ..s.clone()
            },
            ErrorKind::KeyRefused,
        ),
        // Nothing listens on port 1.
        (EngineSettings { ssh_port: 1, ..s }, ErrorKind::Unreachable),
    ];
    for (s, kind) in cases {
        let err = backup(&s, None).await.expect_err("refused");
        assert_eq!(err.kind, kind, "{err}");
    }
}

#[tokio::test]
async fn a_dovecot_backup_restores_into_a_fresh_user_message_for_message() {
    let (user, fresh) = ("citra@djki.go.id", "restore1@djki.go.id");
    let dir = test_dir("restore");
    crate::support::empty_mailbox(fresh);
    fill_mailbox(user);
    add_flags(user, "\\Seen \\Flagged", "INBOX", &["uid", "1"]);
    add_flags(user, "\\Answered", "Surat Masuk", &["all"]);
    let s = dovecot_settings(&dir);
    let report = backup(&s, None).await.expect("the backup runs");
    let copy = report
        .mailboxes
        .iter()
        .find(|m| m.account == user)
        .expect("the user is backed up");
    assert_eq!(copy.status, MailboxStatus::Verified);

    // Restore from the local copy only: unpack it and sync it into a user that has never had mail.
    // The first backup of a mailbox is whole: its piece is the Maildir itself.
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(unpacked.join("Maildir")).expect("mkdir");
    let archive = report.folders.local.join(&copy.file);
    sh(
        "tar",
        &[
            "-xzf",
            &archive.to_string_lossy(),
            "-C",
            &unpacked.join("Maildir").to_string_lossy(),
        ],
    );
    sh("chown", &["-R", "vmail:vmail", &unpacked.to_string_lossy()]);
    let source = format!("maildir:{}/Maildir", unpacked.display());
    doveadm(&["backup", "-R", "-u", fresh, &source], None);

    let port: u16 = env("TEST_DOVECOT_IMAP_PORT").parse().expect("port");
    let original = Imap::login(port, user, "secret").contents();
    let restored = Imap::login(port, fresh, "secret").contents();
    let messages: usize = original.values().map(Vec::len).sum();
    assert!(messages >= 7, "{original:?}");
    assert!(original.contains_key("Surat Masuk"), "{original:?}");
    let flagged = original
        .values()
        .flatten()
        .filter(|(_, f)| f.contains(&"\\Flagged".into()));
    assert!(flagged.count() >= 1, "flags are part of the comparison");
    assert_eq!(
        original, restored,
        "every folder, message and flag came back"
    );
}

#[tokio::test]
async fn a_destination_too_small_is_refused_before_anything_is_copied() {
    let dir = test_dir("small");
    let root = dir.join("maildirs");
    let cur = root.join("pegawai").join("cur");
    std::fs::create_dir_all(&cur).expect("maildir");
    // Random bytes do not compress: the archive stays bigger than the 1 MiB disk below.
    let mut noise = vec![0u8; 3 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("urandom"),
        &mut noise,
    )
    .expect("random bytes");
    std::fs::write(cur.join("1.msg:2,S"), &noise).expect("message");
    let disk = dir.join("local");
    sh(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            &disk.to_string_lossy(),
        ],
    );
    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Maildir {
            root: root.to_string_lossy().into_owned(),
        }),
    );
    let result = backup(&s, None).await;
    let files: Vec<PathBuf> = files_under(&disk)
        .into_iter()
        .filter(|f| !f.to_string_lossy().contains(".mailbox-backup-bot"))
        .collect();
    sh("umount", &[&disk.to_string_lossy()]);
    let err = result.expect_err("too small");
    assert_eq!(err.kind, ErrorKind::NoSpace, "{err}");
    assert!(err.detail.contains("free"), "{}", err.detail);
    assert!(files.is_empty(), "nothing was written: {files:?}");
}

#[tokio::test]
async fn an_operator_command_backs_up_into_the_folder_and_its_failure_is_reported() {
    let dir = test_dir("cmd");
    let root = dir.join("store");
    for user in ["ani", "budi"] {
        let cur = root.join(user).join("cur");
        std::fs::create_dir_all(&cur).expect("maildir");
        for i in 0..3 {
            let msg = format!("Subject: {user} {i}\r\n\r\nisi\r\n");
            std::fs::write(cur.join(format!("{i}.msg:2,S")), msg).expect("message");
        }
    }
    let command = format!(
        "for u in ani budi; do tar -czf {{dir}}/$u.tar.gz -C {} $u || exit 1; done",
        root.display()
    );
    let s = settings(&dir, BackupKind::Command { command });
    let report = backup(&s, None).await.expect("the command's backup");
    assert!(report.all_verified(), "{report:?}");
    let counted: Vec<(&str, Option<u64>)> = report
        .mailboxes
        .iter()
        .map(|m| (m.account.as_str(), m.messages))
        .collect();
    assert_eq!(counted, vec![("ani", Some(3)), ("budi", Some(3))]);
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&report.folders.local)
        .status()
        .expect("sha256sum");
    assert!(check.success());

    let s = settings(
        &dir,
        BackupKind::Command {
            command: "echo 'zmmailbox: mailbox locked' >&2; exit 3".into(),
        },
    );
    let err = backup(&s, None).await.expect_err("a failing command");
    assert_eq!(err.kind, ErrorKind::ServerCommand);
    assert!(err.detail.contains("mailbox locked"), "{}", err.detail);
}

/// `restore`: dewi's mailbox from a dated folder into an empty account, compared message for
/// message over IMAP (folders, SHA-256 of each message, flags); again with nothing duplicated;
/// into dewi herself with nothing added; clear errors for an account not in the backup and a
/// target that does not exist; no stage left on the server. Then the same at the terminal.
#[tokio::test]
async fn restore_brings_a_mailbox_back_and_a_second_restore_adds_nothing() {
    use mailbox_backup_bot::engine::restore::{restore, RestoreError};
    let (user, fresh) = ("dewi@djki.go.id", "restore2@djki.go.id");
    let dir = test_dir("rest2");
    crate::support::empty_mailbox(fresh);
    crate::support::empty_mailbox("restore3@djki.go.id");
    fill_mailbox(user);
    add_flags(user, "\\Seen \\Flagged", "INBOX", &["uid", "1"]);
    let s = dovecot_settings(&dir);
    let report = backup(&s, None).await.expect("the backup runs");
    assert!(report.all_verified(), "{report:?}");
    let folder = crate::support::folder_name(&report);

    let mut steps = Vec::new();
    let first = restore(&s, &folder, user, Some(fresh), None, |p| steps.push(p))
        .await
        .expect("the restore runs");
    assert!(first.complete(), "{first:?}");
    assert_eq!(first.restored(), first.in_backup());
    assert!(first.in_backup() >= 7, "{first:?}");
    assert!(
        steps.iter().any(|p| matches!(
            p,
            mailbox_backup_bot::engine::restore::RestoreProgress::Uploading { .. }
        )),
        "a progress bar has something to show"
    );
    let port: u16 = env("TEST_DOVECOT_IMAP_PORT").parse().expect("port");
    let original = Imap::login(port, user, "secret").contents();
    let restored = Imap::login(port, fresh, "secret").contents();
    assert!(original.contains_key("Arsip.2026"), "{original:?}");
    assert_eq!(
        original, restored,
        "every folder, message and flag came back"
    );

    // Again: nothing is added, nothing changes.
    let second = restore(&s, &folder, user, Some(fresh), None, |_| {})
        .await
        .expect("the second restore runs");
    assert!(second.complete());
    assert_eq!(second.restored(), 0, "{second:?}");
    assert_eq!(Imap::login(port, fresh, "secret").contents(), restored);
    // Into the account it came from: everything is still there, nothing is added.
    let same = restore(&s, &folder, user, None, None, |_| {})
        .await
        .expect("runs");
    assert_eq!(same.restored(), 0, "{same:?}");
    assert_eq!(Imap::login(port, user, "secret").contents(), original);

    let err = restore(&s, &folder, "nobody@djki.go.id", Some(fresh), None, |_| {})
        .await
        .expect_err("not in the backup");
    assert!(
        matches!(&err, RestoreError::NotInBackup { available, .. } if available.contains(user)),
        "{err:?}"
    );
    let err = restore(&s, &folder, user, Some("ghost@djki.go.id"), None, |_| {})
        .await
        .expect_err("no such account");
    assert_eq!(err, RestoreError::TargetMissing("ghost@djki.go.id".into()));
    let stages: Vec<_> = std::fs::read_dir(dir.join("server"))
        .expect("server folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restore"))
        .collect();
    assert!(stages.is_empty(), "the stage is removed");

    // At the terminal, into a third account.
    let printed = crate::support::printed_ok(
        crate::support::dovecot_terminal(&dir, &env("TEST_DOVECOT_CONF")).args([
            "restore",
            &folder,
            user,
            "--into",
            "restore3@djki.go.id",
            "--unrecorded",
        ]),
    );
    assert!(printed.contains("OK: all"), "{printed}");
    assert_eq!(
        Imap::login(port, "restore3@djki.go.id", "secret").contents(),
        original
    );
}

/// Adds `flags` to the messages `which` selects (`["uid", "1"]`, `["all"]`) of `user`'s `mailbox`.
fn add_flags(user: &str, flags: &str, mailbox: &str, which: &[&str]) {
    let mut args = vec!["flags", "add", "-u", user, flags, "mailbox", mailbox];
    args.extend_from_slice(which);
    doveadm(&args, None);
}

/// The engine's settings for the shared Dovecot, backing up into `dir`.
pub fn dovecot_settings(dir: &std::path::Path) -> EngineSettings {
    settings(
        dir,
        BackupKind::Mailboxes(MailStore::Dovecot {
            config: Some(env("TEST_DOVECOT_CONF")),
        }),
    )
}
