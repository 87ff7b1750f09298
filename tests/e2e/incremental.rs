//! Incremental backups on real servers: day 1 whole, day 2 only what changed, a second run of
//! the day moves nothing new, every dated folder restores alone after its elders are deleted,
//! and a restore from either day equals the mailbox as it was that day.

use std::path::Path;

use chrono::Days;

use crate::engine::{backup_on, dovecot_settings, settings};
use crate::imap::Imap;
use crate::support::{doveadm, empty_mailbox, env, folder_name, test_dir};

use mailbox_backup_bot::config::{BackupKind, MailStore};
use mailbox_backup_bot::engine::piece::{Export, PieceSummary};
use mailbox_backup_bot::engine::restore::restore;
use mailbox_backup_bot::engine::{BackupReport, MailboxResult, MailboxStatus};

fn result<'a>(report: &'a BackupReport, account: &str) -> &'a MailboxResult {
    report
        .mailboxes
        .iter()
        .find(|m| m.account == account)
        .unwrap_or_else(|| panic!("{account} in {report:?}"))
}

fn piece<'a>(report: &'a BackupReport, account: &str) -> &'a PieceSummary {
    let m = result(report, account);
    assert_eq!(m.status, MailboxStatus::Verified, "{m:?}");
    m.piece.as_ref().unwrap_or_else(|| panic!("a piece: {m:?}"))
}

fn save(user: &str, folder: &str, subject: &str, body: &str) {
    let msg =
        format!("From: kasi@djki.go.id\r\nTo: {user}\r\nSubject: {subject}\r\n\r\n{body}\r\n");
    doveadm(&["save", "-u", user, "-m", folder], Some(msg.as_bytes()));
}

fn sha256sum_c(folder: &Path) -> bool {
    std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(folder)
        .status()
        .expect("sha256sum")
        .success()
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("stat"))
}

#[tokio::test]
async fn dovecot_day_two_moves_only_what_changed_and_each_day_restores_as_it_was() {
    let (user, day1_into, day2_into) = ("inc1@djki.go.id", "inc2@djki.go.id", "inc3@djki.go.id");
    for u in [user, day1_into, day2_into] {
        empty_mailbox(u);
    }
    doveadm(&["mailbox", "create", "-u", user, "Arsip"], None);
    let big: String = (0..4000).map(|i| format!("{i:070}\r\n")).collect();
    for i in 0..6 {
        save(
            user,
            "INBOX",
            &format!("masuk {i}"),
            &format!("isi {i}\r\n{big}"),
        );
    }
    for i in 0..3 {
        save(user, "Arsip", &format!("arsip {i}"), &format!("lama {i}"));
    }
    doveadm(
        &[
            "flags", "add", "-u", user, "\\Seen", "mailbox", "INBOX", "uid", "1",
        ],
        None,
    );
    let port: u16 = env("TEST_DOVECOT_IMAP_PORT").parse().expect("port");
    let as_day1 = Imap::login(port, user, "secret").contents();

    let dir = test_dir("incr-dove");
    let s = dovecot_settings(&dir);
    let d1 = chrono::Utc::now().date_naive();
    let day1 = backup_on(&s, None, d1).await.expect("day 1 runs");
    let p1 = piece(&day1, user).clone();
    assert_eq!((p1.export, p1.new_messages), (Export::Full, 9), "{p1:?}");
    assert!(day1.incremental.is_some(), "the report says what moved");

    // Day 2: one new, one re-flagged, one moved to another folder, one deleted.
    save(user, "INBOX", "baru", "pesan baru");
    doveadm(
        &[
            "flags",
            "add",
            "-u",
            user,
            "\\Flagged",
            "mailbox",
            "INBOX",
            "uid",
            "2",
        ],
        None,
    );
    doveadm(
        &["move", "-u", user, "Arsip", "mailbox", "INBOX", "uid", "3"],
        None,
    );
    doveadm(
        &["expunge", "-u", user, "mailbox", "Arsip", "uid", "1"],
        None,
    );
    let as_day2 = Imap::login(port, user, "secret").contents();
    assert_ne!(as_day1, as_day2);
    let d2 = d1 + Days::new(1);
    let day2 = backup_on(&s, None, d2).await.expect("day 2 runs");
    let p2 = piece(&day2, user);
    assert_eq!(p2.export, Export::Changes, "{p2:?}");
    // The moved and re-flagged messages' bytes are in day 1's piece: only the new one moves.
    assert_eq!(p2.new_messages, 1, "{p2:?}");
    assert_eq!(result(&day2, user).messages, Some(9));
    let m1 = result(&day1, user);
    let m2 = result(&day2, user);
    assert!(
        m2.size * 10 < m1.size,
        "day 2's piece is small: {} against {}",
        m2.size,
        m1.size
    );
    assert_eq!(p2.elders, 1);

    // A second run of day 2: the mailbox is unchanged, its piece is day 2's, linked not copied.
    let again = backup_on(&s, None, d2).await.expect("again");
    let p3 = piece(&again, user);
    assert_eq!(p3.export, Export::Unchanged, "{p3:?}");
    let m3 = result(&again, user);
    assert_eq!(m3.sha256, m2.sha256);
    assert_eq!(
        inode(&again.folders.local.join(&m3.file)),
        inode(&day2.folders.local.join(&m2.file)),
        "the unchanged piece is a hard link, not a copy"
    );

    // Day 1's folder restores as day 1 was.
    let f1 = folder_name(&day1);
    let r1 = restore(&s, &f1, user, Some(day1_into), None, |_| {})
        .await
        .expect("day 1 restores");
    assert!(r1.complete(), "{r1:?}");
    assert_eq!(Imap::login(port, day1_into, "secret").contents(), as_day1);

    // Every older folder deleted: day 2's folder is whole on its own.
    for old in [&day1.folders.local, &again.folders.local] {
        std::fs::remove_dir_all(old).expect("delete an older folder");
    }
    assert!(
        sha256sum_c(&day2.folders.local),
        "sha256sum -c passes alone"
    );
    let f2 = folder_name(&day2);
    let r2 = restore(&s, &f2, user, Some(day2_into), None, |_| {})
        .await
        .expect("day 2 restores alone");
    assert!(r2.complete(), "{r2:?}");
    assert_eq!(
        Imap::login(port, day2_into, "secret").contents(),
        as_day2,
        "message for message (SHA-256, flags, folder); the deleted one does not come back"
    );
    // The account restored into is exported whole at its next backup, and the report says so.
    let d3 = d2 + Days::new(1);
    let day3 = backup_on(&s, None, d3).await.expect("day 3 runs");
    let p = piece(&day3, day2_into);
    assert_eq!(
        (p.export, p.reason.as_str()),
        (Export::Full, "reset"),
        "{p:?}"
    );
    assert_eq!(piece(&day3, user).export, Export::Unchanged);
}

#[tokio::test]
async fn maildir_changes_go_in_the_next_piece_and_a_missing_elder_forces_a_whole_export() {
    let dir = test_dir("incr-mdir");
    let root = dir.join("maildirs");
    let user = root.join("pegawai");
    for f in [
        "cur",
        "new",
        "tmp",
        ".Arsip/cur",
        ".Arsip/new",
        ".Arsip/tmp",
    ] {
        std::fs::create_dir_all(user.join(f)).expect("maildir");
    }
    let write = |p: &str, body: &str| std::fs::write(user.join(p), body).expect("message");
    write("cur/1.a:2,S", "Subject: a\n\nsatu\n");
    write("cur/2.b:2,", "Subject: b\n\ndua\n");
    write(".Arsip/cur/3.c:2,S", "Subject: c\n\ntiga\n");
    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Maildir {
            root: root.to_string_lossy().into_owned(),
        }),
    );
    let d1 = chrono::Utc::now().date_naive();
    let day1 = backup_on(&s, None, d1).await.expect("day 1");
    assert_eq!(piece(&day1, "pegawai").export, Export::Full);

    std::fs::rename(user.join("cur/2.b:2,"), user.join("cur/2.b:2,FS")).expect("flag");
    std::fs::rename(user.join(".Arsip/cur/3.c:2,S"), user.join("cur/3.c:2,S")).expect("move");
    std::fs::remove_file(user.join("cur/1.a:2,S")).expect("delete");
    write("new/4.d", "Subject: d\n\nempat\n");
    let d2 = d1 + Days::new(1);
    let day2 = backup_on(&s, None, d2).await.expect("day 2");
    let p = piece(&day2, "pegawai");
    assert_eq!((p.export, p.new_messages), (Export::Changes, 1), "{p:?}");

    // The disk swapped for one without day 1 and day 2: day 3's piece names pieces that are not
    // there. The mailbox fails, said plainly, and the next run exports it whole.
    std::fs::remove_dir_all(&day1.folders.local).expect("rm");
    std::fs::remove_dir_all(&day2.folders.local).expect("rm");
    write("new/5.e", "Subject: e\n\nlima\n");
    let d3 = d2 + Days::new(1);
    let day3 = backup_on(&s, None, d3).await.expect("day 3 runs");
    let m = result(&day3, "pegawai");
    match &m.status {
        MailboxStatus::Failed { error } => assert!(error.contains("earlier piece"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(!day3.all_verified());
    let again = backup_on(&s, None, d3)
        .await
        .expect("the backup ordered again");
    let p = piece(&again, "pegawai");
    assert_eq!(
        (p.export, p.reason.as_str()),
        (Export::Full, "unfinished"),
        "{p:?}"
    );
    assert!(sha256sum_c(&again.folders.local));
}

#[tokio::test]
async fn a_disk_without_hard_links_is_refused_by_init_disk_and_check_and_named_in_every_report() {
    // A real exFAT file system (an image on a loop device through FUSE, mounted by scripts/test).
    let exfat = std::env::var("TEST_EXFAT_DIR")
        .expect("TEST_EXFAT_DIR: scripts/test mounts an exFAT image (needs loop devices and FUSE)");
    let dir = test_dir("incr-exfat");
    let disk = Path::new(&exfat).join(dir.file_name().expect("a name"));
    std::fs::create_dir_all(&disk).expect("a folder on the exFAT disk");
    let conf = env("TEST_DOVECOT_CONF");
    let terminal = |args: &[&str]| {
        let out = crate::support::dovecot_terminal(&dir, &conf)
            .env("LOCAL_BACKUP_ROOT", &disk)
            .args(args)
            .output()
            .expect("the binary runs");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), said)
    };
    let (ok, said) = terminal(&["init-disk"]);
    assert!(!ok && said.contains("keeps no hard links"), "{said}");
    assert!(
        !disk.join(".mailbox-backup-bot-disk").exists(),
        "nothing marked"
    );
    // Marked anyway (by hand, or before this bot): `check` names the fault.
    mailbox_backup_bot::engine::local::init_disk(&disk).expect("marked by hand");
    let (ok, said) = terminal(&["check"]);
    assert!(
        !ok && said.contains("FAIL backup disk keeps hard links"),
        "{said}"
    );

    // A backup onto it: every mailbox whole, every time, and the report says why.
    let root = dir.join("maildirs");
    for f in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join("pegawai").join(f)).expect("maildir");
    }
    std::fs::write(root.join("pegawai/cur/1.a:2,S"), "Subject: a\n\nsatu\n").expect("message");
    let mut s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Maildir {
            root: root.to_string_lossy().into_owned(),
        }),
    );
    s.local_root = disk.clone();
    let d1 = chrono::Utc::now().date_naive();
    for (n, day) in [d1, d1 + Days::new(1)].into_iter().enumerate() {
        let report = backup_on(&s, None, day).await.expect("the run");
        assert!(report.all_verified(), "{report:?}");
        let moved = report.incremental.as_ref().expect("what moved");
        assert!(moved.no_hard_links, "{moved:?}");
        // A whole archive, as before incremental backups: no pieces to link.
        let m = result(&report, "pegawai");
        assert!(
            m.piece.is_none() && m.status == MailboxStatus::Verified,
            "run {n}: {m:?}"
        );
        let text = mailbox_backup_bot::messages::Catalog::new(
            mailbox_backup_bot::domain::lang::Lang::En,
            chrono_tz::Asia::Jakarta,
        )
        .run_notes(&report);
        assert!(text.contains("keeps no hard links"), "{text}");
        assert!(sha256sum_c(&report.folders.local));
    }
    let _ = std::fs::remove_dir_all(&disk);
}
