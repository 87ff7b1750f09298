//! The backup engine against the shared sshd and Dovecot on 127.0.0.1 and real files.

use std::path::{Path, PathBuf};

use mailbox_backup_bot::config::{BackupKind, EngineSettings};
use mailbox_backup_bot::engine::{run::run, ErrorKind, MailboxStatus, RunFolders, RunRequest};

fn env(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests through scripts/test"))
}

/// A folder of this test's own under the shared temp dir (short: ssh socket paths).
fn test_dir(name: &str) -> PathBuf {
    let base = std::env::var("TEST_TMP").unwrap_or_else(|_| "/tmp".into());
    let dir = PathBuf::from(base).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("local")).expect("test dir");
    dir
}

fn settings(dir: &Path, kind: BackupKind) -> EngineSettings {
    EngineSettings {
        ssh_host: env("MAIL_SSH_HOST"),
        ssh_port: env("MAIL_SSH_PORT").parse().expect("port"),
        ssh_user: env("MAIL_SSH_USER"),
        ssh_key: env("MAIL_SSH_KEY").into(),
        ssh_known_hosts: env("MAIL_SSH_KNOWN_HOSTS").into(),
        kind,
        server_backup_dir: dir.join("server").to_string_lossy().into_owned(),
        jobs: 2,
        local_root: dir.join("local"),
        folder_format: "%d-%m-%Y".into(),
        timezone: chrono_tz::Asia::Jakarta,
    }
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

fn doveadm(args: &[&str], stdin: Option<&[u8]>) {
    use std::io::Write;
    let mut cmd = std::process::Command::new("doveadm");
    cmd.arg("-c")
        .arg(env("TEST_DOVECOT_CONF"))
        .args(args)
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("doveadm runs");
    if let Some(data) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write");
    }
    drop(child.stdin.take());
    let status = child.wait().expect("doveadm waits");
    assert!(status.success(), "doveadm {args:?} failed");
}

/// Fills a user's mailbox: nested folders, a folder with a space, an attachment of ~1 MB.
fn fill_mailbox(user: &str) -> usize {
    let _ = std::process::Command::new("doveadm")
        .args([
            "-c",
            &env("TEST_DOVECOT_CONF"),
            "mailbox",
            "create",
            "-u",
            user,
            "Surat Masuk",
            "Arsip",
            "Arsip.2026",
        ])
        .status();
    let big: String = (0..20_000).map(|i| format!("{:050}\r\n", i)).collect();
    let mut n = 0;
    for (folder, count) in [("INBOX", 3), ("Surat Masuk", 2), ("Arsip.2026", 2)] {
        for i in 0..count {
            let body = if i == 0 && folder == "Arsip.2026" {
                big.clone()
            } else {
                format!("isi pesan {i}\r\n")
            };
            let msg = format!("From: kasi@djki.go.id\r\nTo: {user}\r\nSubject: {folder} {i}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}");
            doveadm(&["save", "-u", user, "-m", folder], Some(msg.as_bytes()));
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn dovecot_mailboxes_are_backed_up_copied_verified_and_counted() {
    let dir = test_dir("dove");
    for user in ["ani@djki.go.id", "budi@djki.go.id"] {
        // The shared Dovecot: each test run adds 7 messages to these users.
        fill_mailbox(user);
    }
    let s = settings(
        &dir,
        BackupKind::Dovecot {
            config: Some(env("TEST_DOVECOT_CONF")),
        },
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let report = run(
        &s,
        RunRequest {
            date: today(),
            resume: None,
        },
        tx,
    )
    .await
    .expect("the run succeeds");
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
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let second = run(
        &s,
        RunRequest {
            date: today(),
            resume: None,
        },
        tx,
    )
    .await
    .expect("second run");
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
        BackupKind::Maildir {
            root: root.to_string_lossy().into_owned(),
        },
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let report = run(
        &s,
        RunRequest {
            date: today(),
            resume: None,
        },
        tx,
    )
    .await
    .expect("run");
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
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = run(
        &s,
        RunRequest {
            date: today(),
            resume: Some(folders.clone()),
        },
        tx,
    )
    .await
    .expect_err("a corrupted byte is caught");
    assert_eq!(err.kind, ErrorKind::Copy);
    assert!(err.detail.contains("checksum mismatch"), "{}", err.detail);
    assert!(!local_victim.exists(), "a bad copy is never put in place");

    // Restore the byte: the resumed run copies only that file and verifies everything.
    bytes[last] ^= 0xff;
    std::fs::write(&victim, &bytes).expect("repair");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let resumed = run(
        &s,
        RunRequest {
            date: today(),
            resume: Some(folders),
        },
        tx,
    )
    .await
    .expect("resumed");
    assert!(resumed.all_verified());
    assert_eq!(
        resumed.bytes_copied, report.mailboxes[0].size,
        "only the missing file was copied again"
    );
}

#[tokio::test]
async fn a_changed_host_key_and_a_refused_key_are_refused_with_their_own_errors() {
    let dir = test_dir("keys");
    let mut s = settings(
        &dir,
        BackupKind::Maildir {
            root: "/nonexistent".into(),
        },
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
    let fake = format!(
        "[127.0.0.1]:{} {}\n",
        s.ssh_port,
        pubkey
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let kh = dir.join("known_hosts_changed");
    std::fs::write(&kh, fake).expect("known_hosts");
    s.ssh_known_hosts = kh;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = run(
        &s,
        RunRequest {
            date: today(),
            resume: None,
        },
        tx,
    )
    .await
    .expect_err("changed host key refused");
    assert_eq!(err.kind, ErrorKind::HostKeyChanged, "{err}");

    let mut s = settings(
        &dir,
        BackupKind::Maildir {
            root: "/nonexistent".into(),
        },
    );
    s.ssh_key = other;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = run(
        &s,
        RunRequest {
            date: today(),
            resume: None,
        },
        tx,
    )
    .await
    .expect_err("unknown client key refused");
    assert_eq!(err.kind, ErrorKind::KeyRefused, "{err}");

    let mut s = settings(
        &dir,
        BackupKind::Maildir {
            root: "/nonexistent".into(),
        },
    );
    s.ssh_port = 1;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = run(
        &s,
        RunRequest {
            date: today(),
            resume: None,
        },
        tx,
    )
    .await
    .expect_err("nothing listens on port 1");
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    let _ = MailboxStatus::Verified;
}
