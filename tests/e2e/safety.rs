//! The engine on a mail server that must not be harmed: folders made by hand, a small or
//! filling server disk, retention, dropped and stalled connections, cancel, a failed run's
//! successor. Faults go to a private sshd of the test's own, never the shared one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::settings;
use crate::support::{files_under, sh, test_dir, PrivateSshd, ServerDisk};

use mailbox_backup_bot::config::{BackupKind, EngineSettings, Floor, MailStore};
use mailbox_backup_bot::domain::SopStep;
use mailbox_backup_bot::engine::files::sha256_of;
use mailbox_backup_bot::engine::{
    run::run, BackupReport, EngineError, ErrorKind, MailboxStatus, Progress, RunRequest, Stop,
    StopReason,
};

/// Maildirs of `sizes` bytes of random (incompressible) mail each, named m00, m01 …
fn maildirs(root: &Path, sizes: &[usize]) {
    for (i, size) in sizes.iter().enumerate() {
        let cur = root.join(format!("m{i:02}")).join("cur");
        std::fs::create_dir_all(&cur).expect("maildir");
        let mut body = vec![0u8; *size];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").expect("urandom"),
            &mut body,
        )
        .expect("random");
        let mut msg = b"Subject: lampiran\r\n\r\n".to_vec();
        msg.extend(body.iter().map(|b| b'a' + b % 26));
        std::fs::write(cur.join("1.msg:2,S"), msg).expect("message");
    }
}

fn maildir_kind(root: &Path) -> BackupKind {
    BackupKind::Mailboxes(MailStore::Maildir {
        root: root.to_string_lossy().into_owned(),
    })
}

/// Runs the engine, collecting its progress events.
async fn backup_with(
    s: &EngineSettings,
    stop: Stop,
) -> (Result<BackupReport, EngineError>, Vec<Progress>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let date = chrono::Utc::now().with_timezone(&s.timezone).date_naive();
    let result = run(s, RunRequest::new(date, "test", stop), tx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events)
}

async fn backup(s: &EngineSettings) -> Result<BackupReport, EngineError> {
    backup_with(s, Stop::never()).await.0
}

/// Files and folders directly in `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Processes whose command line mentions `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-a", "-f", "--", needle])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_owned)
        .collect()
}

/// name → SHA-256 of every archive directly in `dir`.
fn archives(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                sha256_of(&p).expect("hash").0,
            )
        })
        .collect()
}

fn today_name(s: &EngineSettings) -> String {
    chrono::Utc::now()
        .with_timezone(&s.timezone)
        .format(&s.folder_format)
        .to_string()
}

#[tokio::test]
async fn a_server_folder_made_by_hand_is_left_alone_and_the_run_takes_the_next_name() {
    let dir = test_dir("hand");
    let root = dir.join("maildirs");
    maildirs(&root, &[1000, 2000]);
    let s = settings(&dir, maildir_kind(&root));
    let by_hand = Path::new(&s.server_backup_dir).join(today_name(&s));
    std::fs::create_dir_all(&by_hand).expect("by hand");
    std::fs::write(by_hand.join("catatan admin.txt"), "backup manual").expect("file");

    let report = backup(&s).await.expect("the run succeeds");
    assert!(report.all_verified(), "{report:?}");
    assert_eq!(names(&by_hand), vec!["catatan admin.txt"], "untouched");
    assert_eq!(
        report.folders.server,
        format!("{}_2", by_hand.display()),
        "the next free name"
    );
    let marker =
        std::fs::read_to_string(Path::new(&report.folders.server).join(".mailbox-backup-bot"))
            .expect("the bot's folder carries the marker");
    assert!(
        marker.starts_with("mailbox-backup-bot folder\nowner=test\n"),
        "{marker}"
    );
    // Nothing temporary is left on the server.
    let server_names = names(Path::new(&report.folders.server));
    assert!(
        !server_names
            .iter()
            .any(|n| n == ".stage" || n == ".run" || n.ends_with(".part")),
        "{server_names:?}"
    );
}

#[tokio::test]
async fn a_small_server_disk_is_refused_before_step_5_and_left_empty() {
    let dir = test_dir("srvsmall");
    let root = dir.join("maildirs");
    maildirs(&root, &[3 << 20, 3 << 20, 3 << 20]);
    let mut s = settings(&dir, maildir_kind(&root));
    let server = PathBuf::from(&s.server_backup_dir);
    let disk = ServerDisk::mount(&server, "16m");
    s.server_min_free = Floor::Bytes(8 << 20);
    let result = backup(&s).await;
    let left = names(&server);
    drop(disk);
    let err = result.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::ServerNoSpace, "{err}");
    let space = err.space.expect("the figures");
    assert!(space.need.expect("estimated") >= 9 << 20, "{space:?}");
    assert!(
        space.free <= 16 << 20 && space.floor == 8 << 20,
        "{space:?}"
    );
    assert!(
        err.detail.contains("MAIL_SERVER_MIN_FREE"),
        "{}",
        err.detail
    );
    assert!(
        left.is_empty(),
        "nothing was written on the server: {left:?}"
    );
}

#[tokio::test]
async fn a_server_disk_filling_during_step_5_stops_the_exports_at_the_floor() {
    let dir = test_dir("srvfill");
    let root = dir.join("maildirs");
    maildirs(&root, &[256 << 10; 24]);
    let mut s = settings(&dir, maildir_kind(&root));
    s.jobs = 1;
    let server = PathBuf::from(&s.server_backup_dir);
    let disk = ServerDisk::mount(&server, "64m");
    s.server_min_free = Floor::Bytes(16 << 20);
    // Another writer on the server's disk: as soon as the first archive is done, 44 MiB more.
    let filler = {
        let server = server.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let first = std::fs::read_dir(&server)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .any(|d| !archives(&d.path()).is_empty());
                if first {
                    let _ = std::fs::write(server.join("other-writer.bin"), vec![7u8; 50 << 20]);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        })
    };
    let result = backup(&s).await;
    let wrote = filler.join().expect("filler");
    let free_after = mailbox_backup_bot::engine::local::free_space(&server).expect("df");
    let report = result;
    let folder = report.as_ref().map(|r| PathBuf::from(&r.folders.server));
    let left = folder.as_ref().map(|f| names(f)).unwrap_or_default();
    drop(disk);
    assert!(wrote, "the other writer ran");
    let report = report.expect("the run reports what it did");
    let stopped: Vec<_> = report
        .mailboxes
        .iter()
        .filter(|m| matches!(&m.status, MailboxStatus::Failed { error } if error.contains("floor")))
        .collect();
    let verified = report
        .mailboxes
        .iter()
        .filter(|m| m.status == MailboxStatus::Verified)
        .count();
    assert!(
        !stopped.is_empty() && verified >= 1,
        "{:?}",
        report.mailboxes
    );
    assert_eq!(stopped.len() + verified, 24, "every mailbox accounted for");
    assert!(
        !report
            .mailboxes
            .iter()
            .any(|m| format!("{:?}", m.status).contains("No space")),
        "stopped before the disk was full: {:?}",
        report.mailboxes
    );
    // Had the exports gone on, 64 − 50 − 6 MiB would be left; they stopped at the floor.
    assert!(free_after >= 12 << 20, "the server kept room: {free_after}");
    assert!(
        !left
            .iter()
            .any(|n| n == ".stage" || n == ".run" || n.ends_with(".part")),
        "{left:?}"
    );
}

#[tokio::test]
async fn retention_keeps_exactly_n_bot_folders_and_never_one_made_by_hand() {
    let dir = test_dir("retain");
    let root = dir.join("maildirs");
    maildirs(&root, &[1000]);
    let mut s = settings(&dir, maildir_kind(&root));
    s.server_keep = 2;
    let server = PathBuf::from(&s.server_backup_dir);
    std::fs::create_dir_all(server.join("arsip-manual")).expect("by hand");
    std::fs::create_dir_all(server.join("31-02-2020")).expect("by hand");
    std::fs::write(server.join("31-02-2020").join("x.tar.gz"), "lama").expect("file");
    let mut made = Vec::new();
    let mut removed = Vec::new();
    for _ in 0..4 {
        let r = backup(&s).await.expect("run");
        assert!(r.all_verified(), "{r:?}");
        made.push(r.folders.server.clone());
        removed.extend(r.server_folders_removed.clone());
    }
    // `.incremental`: the bot's own marked state of the incremental exports.
    let mut expected = vec![
        ".incremental".to_owned(),
        "31-02-2020".to_owned(),
        "arsip-manual".to_owned(),
    ];
    expected.extend(
        made[2..]
            .iter()
            .map(|p| p.rsplit('/').next().expect("name").to_owned()),
    );
    expected.sort();
    assert_eq!(names(&server), expected);
    let gone: Vec<String> = made[..2]
        .iter()
        .map(|p| p.rsplit('/').next().expect("name").to_owned())
        .collect();
    removed.sort();
    assert_eq!(removed, gone);
    assert_eq!(names(&server.join("31-02-2020")), vec!["x.tar.gz"]);
}

/// A 40 MiB archive (random bytes do not compress) and two small ones, made by the `command`
/// kind from files prepared on "the server".
pub fn big_and_small(dir: &Path) -> BackupKind {
    let source = dir.join("source");
    std::fs::create_dir_all(source.join("data")).expect("source");
    // 96 MiB: the faults below land while it streams, even on a busy machine.
    let mut noise = vec![0u8; 96 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("urandom"),
        &mut noise,
    )
    .expect("random");
    std::fs::write(source.join("data").join("lampiran.bin"), &noise).expect("data");
    let tar = |name: &str, what: &str| {
        sh(
            "sh",
            &[
                "-c",
                r#"tar -cf - -C "$2" "$3" | gzip -1 > "$1""#,
                "sh",
                &source.join(name).to_string_lossy(),
                &source.to_string_lossy(),
                what,
            ],
        )
    };
    tar("besar.tar.gz", "data");
    std::fs::write(source.join("note.txt"), "Subject: x\r\n\r\nisi\r\n").expect("note");
    tar("kecil1.tar.gz", "note.txt");
    tar("kecil2.tar.gz", "note.txt");
    BackupKind::Command {
        command: format!("cp {}/*.tar.gz {{dir}}/", source.display()),
    }
}

/// Waits on a thread of its own (whatever the run does on the test's runtime) until `cond`
/// holds, then does `fault`. The handle says whether it happened.
pub fn fault_when(
    cond: impl Fn() -> bool + Send + 'static,
    fault: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        fault();
        true
    })
}

pub fn part_len(local_root: &Path) -> u64 {
    std::fs::read_dir(local_root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join(".besar.tar.gz.part"))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_connection_dropped_during_the_copy_is_made_again_and_the_copy_goes_on() {
    let dir = test_dir("drop");
    let sshd = std::sync::Arc::new(PrivateSshd::start(&dir));
    let mut s = settings(&dir, big_and_small(&dir));
    sshd.use_in(&mut s);
    let local_root = s.local_root.clone();
    let cut = {
        let sshd = sshd.clone();
        fault_when(
            move || part_len(&local_root) > (1 << 20),
            move || assert!(sshd.signal_sessions("-KILL") > 0, "a session was cut"),
        )
    };
    let (result, events) = backup_with(&s, Stop::never()).await;
    assert!(
        cut.join().expect("fault thread"),
        "the copy was cut mid-way"
    );
    let report = result.expect("the run completes after reconnecting");
    assert!(report.all_verified(), "{report:?}");
    assert!(report.reconnects >= 1, "{report:?}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            Progress::Reconnecting {
                step: SopStep::CopyAndReport,
                ..
            }
        )),
        "the reconnect came in step 6"
    );
    let server = PathBuf::from(&report.folders.server);
    assert_eq!(archives(&report.folders.local), archives(&server));
    assert!(
        report.bytes_copied <= report.bytes_total + (64 << 10),
        "the big file went on from its partial copy, not from the start: {report:?}"
    );
}

#[tokio::test]
async fn a_stalled_connection_is_noticed_and_made_again() {
    let dir = test_dir("stall");
    let sshd = std::sync::Arc::new(PrivateSshd::start(&dir));
    let mut s = settings(&dir, big_and_small(&dir));
    sshd.use_in(&mut s);
    s.stall_secs = 3;
    let local_root = s.local_root.clone();
    let started = Instant::now();
    let stall = {
        let sshd = sshd.clone();
        let local_root2 = local_root.clone();
        fault_when(
            move || part_len(&local_root) > (1 << 20),
            move || {
                let stopped = sshd.sessions();
                sshd.signal_sessions("-STOP");
                eprintln!("stalled {stopped:?} at {} bytes", part_len(&local_root2));
                // Let the stopped ones go once the run has moved on: they find their peer gone.
                std::thread::sleep(Duration::from_secs(8));
                for pid in stopped {
                    let _ = std::process::Command::new("kill")
                        .args(["-CONT", &pid])
                        .status();
                }
            },
        )
    };
    let (result, events) = backup_with(&s, Stop::never()).await;
    assert!(
        stall.join().expect("fault thread"),
        "the copy was stalled mid-way"
    );
    let report = result.expect("the run completes after reconnecting");
    assert!(report.all_verified(), "{report:?}");
    assert!(report.reconnects >= 1);
    assert!(events
        .iter()
        .any(|e| matches!(e, Progress::Reconnecting { .. })));
    // The copy reported a rate of zero while nothing arrived, not the last one frozen.
    assert!(
        events.iter().any(|e| matches!(e, Progress::Copy { rate, bytes_done, bytes_total, .. } if *rate < 1.0 && bytes_done < bytes_total)),
        "a stall shows as a rate of zero"
    );
    assert_eq!(
        archives(&report.folders.local),
        archives(Path::new(&report.folders.server))
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn a_connection_dropped_during_step_5_keeps_finished_exports_and_does_the_rest() {
    let dir = test_dir("dropx");
    let sshd = std::sync::Arc::new(PrivateSshd::start(&dir));
    let root = dir.join("maildirs");
    maildirs(&root, &[300 << 10; 16]);
    let mut s = settings(&dir, maildir_kind(&root));
    sshd.use_in(&mut s);
    s.jobs = 1;
    let server = PathBuf::from(&s.server_backup_dir);
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let cut = {
        let sshd = sshd.clone();
        let kept = kept.clone();
        let server2 = server.clone();
        fault_when(
            move || {
                std::fs::read_dir(&server)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|d| archives(&d.path()).len() >= 2)
            },
            move || {
                assert!(sshd.signal_sessions("-KILL") > 0);
                // The archives finished before the cut, with their inodes.
                use std::os::unix::fs::MetadataExt;
                for d in std::fs::read_dir(&server2).into_iter().flatten().flatten() {
                    for name in archives(&d.path()).into_keys() {
                        let path = d.path().join(&name);
                        let ino = std::fs::metadata(&path).expect("archive").ino();
                        kept.lock().expect("kept").push((path, ino));
                    }
                }
            },
        )
    };
    let (result, _events) = backup_with(&s, Stop::never()).await;
    assert!(cut.join().expect("fault thread"), "step 5 was cut mid-way");
    let report = result.expect("the run completes after reconnecting");
    assert!(report.all_verified(), "{report:?}");
    assert_eq!(report.mailboxes.len(), 16);
    assert!(report.reconnects >= 1);
    assert_eq!(
        archives(&report.folders.local),
        archives(Path::new(&report.folders.server))
    );
    assert!(
        processes_naming(&report.folders.server).is_empty(),
        "no export left running"
    );
    use std::os::unix::fs::MetadataExt;
    let kept = kept.lock().expect("kept").clone();
    assert!(kept.len() >= 2, "{kept:?}");
    for (path, ino) in kept {
        assert_eq!(
            std::fs::metadata(&path).expect("still there").ino(),
            ino,
            "{} was kept, not exported again",
            path.display()
        );
    }
}

#[tokio::test]
async fn cancel_during_step_5_leaves_no_process_on_the_server_and_no_temporary_files() {
    let dir = test_dir("cancel");
    let mut s = settings(
        &dir,
        BackupKind::Command {
            command: "sleep 120 && echo never > {dir}/late.tar.gz".into(),
        },
    );
    s.jobs = 1;
    let server = PathBuf::from(&s.server_backup_dir);
    let (handle, stop) = Stop::pair();
    let run = backup_with(&s, stop);
    let cancel = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_dir(&server)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.path().join(".run").is_dir() && !processes_naming("sleep 120").is_empty())
        {
            assert!(Instant::now() < deadline, "the export never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        handle.stop(StopReason::Cancel);
        Instant::now()
    };
    let ((result, _), asked) = tokio::join!(run, cancel);
    let err = result.expect_err("cancelled");
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert!(
        err.detail.contains("1 export stopped on the server"),
        "{}",
        err.detail
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    let folder = PathBuf::from(&err.folders.expect("folders").server);
    // Killed: gone once the kernel has reaped it (a loaded machine takes a moment).
    let reaped = Instant::now() + Duration::from_secs(5);
    while !processes_naming("sleep 120").is_empty() && Instant::now() < reaped {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        processes_naming("sleep 120").is_empty(),
        "the export was killed: {:?}",
        processes_naming("sleep 120")
    );
    assert!(processes_naming(&folder.to_string_lossy()).is_empty());
    let left = names(&folder);
    assert_eq!(
        left,
        vec![".mailbox-backup-bot"],
        "no temporary files: {left:?}"
    );
    let controls: Vec<String> = names(Path::new("/tmp"))
        .into_iter()
        .filter(|n| n.starts_with(&format!("mbb-{}-", std::process::id())))
        .collect();
    assert!(
        controls.is_empty(),
        "no ssh control folder left: {controls:?}"
    );
}

#[tokio::test]
async fn an_order_after_a_failed_copy_copies_only_what_was_missing() {
    let dir = test_dir("again");
    let sshd = std::sync::Arc::new(PrivateSshd::start(&dir));
    let mut s = settings(&dir, big_and_small(&dir));
    sshd.use_in(&mut s);
    s.reconnect_tries = 1;
    s.reconnect_secs = 1;
    let local_root = s.local_root.clone();
    // The first run loses its connection mid-copy and cannot reconnect (the server refuses
    // connections for a while): it fails.
    let cut = {
        let sshd = sshd.clone();
        let local_root = local_root.clone();
        let local_root2 = local_root.clone();
        fault_when(
            move || part_len(&local_root) > (2 << 20),
            move || {
                // The sessions first: once the listener is gone they are no longer its children.
                let sessions = sshd.sessions();
                sshd.stop();
                for pid in sessions.iter().filter_map(|p| p.parse::<i32>().ok()) {
                    // SAFETY: kill has no memory preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                eprintln!("cut {sessions:?} at {} bytes", part_len(&local_root2));
            },
        )
    };
    let (first, _) = backup_with(&s, Stop::never()).await;
    assert!(
        cut.join().expect("fault thread"),
        "the copy was cut mid-way"
    );
    sshd.restart();
    let err = first.expect_err("the first run fails");
    let folders = err.folders.clone().expect("folders");
    let kept = part_len(&local_root);
    let verified_before: u64 = archives(&folders.local)
        .keys()
        .map(|n| {
            std::fs::metadata(folders.local.join(n))
                .expect("size")
                .len()
        })
        .sum();
    assert!(kept > 0 || verified_before > 0, "something was kept: {err}");

    let report = backup(&s).await.expect("the next order completes");
    assert!(report.all_verified(), "{report:?}");
    assert_eq!(report.folders, folders, "the same folders, continued");
    assert_eq!(
        report.bytes_copied,
        report.bytes_total - verified_before - kept,
        "only what was missing was copied"
    );
    assert_eq!(
        archives(&report.folders.local),
        archives(Path::new(&report.folders.server))
    );
}

#[tokio::test]
async fn a_run_cut_off_in_step_5_is_continued_with_one_writer_on_the_server() {
    let dir = test_dir("orphan");
    let source = dir.join("source");
    std::fs::create_dir_all(&source).expect("source");
    std::fs::write(source.join("n.txt"), "Subject: x\r\n\r\nisi\r\n").expect("note");
    // While the flag exists the export hangs (a long export); the cut-off run leaves it so.
    // (`sleep 87`: no other test runs a sleep of that length, tests run side by side.)
    let flag = dir.join("slow");
    std::fs::write(&flag, "").expect("flag");
    let slow = format!(
        "if [ -f {} ]; then sleep 87; fi; tar -czf {{dir}}/arsip.tar.gz -C {} n.txt",
        flag.display(),
        source.display()
    );
    let s = settings(&dir, BackupKind::Command { command: slow });
    let server = PathBuf::from(&s.server_backup_dir);
    // The first run is dropped mid-export the way a killed bot leaves it: its export goes on.
    let first = tokio::time::timeout(Duration::from_secs(2), backup_with(&s, Stop::never())).await;
    assert!(first.is_err(), "cut off");
    let folder = std::fs::read_dir(&server)
        .expect("server")
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("the first run's folder");
    let orphan = processes_naming(&folder.to_string_lossy());
    assert!(!orphan.is_empty(), "the cut-off export still runs");
    assert!(!processes_naming("sleep 87").is_empty());

    // The next run of the day stops it first: otherwise it would write for a minute more.
    std::fs::remove_file(&flag).expect("flag");
    let started = Instant::now();
    let report = backup(&s).await.expect("continued");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it did not wait for the orphan"
    );
    assert!(
        processes_naming("sleep 87").is_empty(),
        "the orphan was stopped"
    );
    assert!(report.all_verified(), "{report:?}");
    assert_eq!(
        PathBuf::from(&report.folders.server),
        folder,
        "the same server folder"
    );
    assert!(
        processes_naming(&folder.to_string_lossy()).is_empty(),
        "no writer left"
    );
    assert_eq!(archives(&report.folders.local), archives(&folder));
}

#[tokio::test]
async fn an_empty_step_5_is_never_taken_for_a_verified_backup_and_removes_nothing() {
    let dir = test_dir("empty");
    let root = dir.join("maildirs");
    maildirs(&root, &[1000]);
    let good = settings(&dir, maildir_kind(&root));
    let first = backup(&good).await.expect("a good backup");
    assert!(first.all_verified());
    // The operator's command writes nothing (or only hidden files), twice the same day.
    let mut empty = settings(
        &dir,
        BackupKind::Command {
            command: "touch {dir}/.hidden".into(),
        },
    );
    empty.server_keep = 1;
    for attempt in 0..2 {
        let err = backup(&empty).await.expect_err("nothing to back up");
        assert_eq!(err.kind, ErrorKind::NoMailboxes, "attempt {attempt}: {err}");
    }
    assert!(
        Path::new(&first.folders.server).is_dir(),
        "the last good server backup is kept"
    );
}

#[tokio::test]
async fn retention_removes_a_folder_left_with_a_dead_export_but_not_a_live_one() {
    let dir = test_dir("stale");
    let root = dir.join("maildirs");
    maildirs(&root, &[1000]);
    let s = settings(&dir, maildir_kind(&root));
    let server = PathBuf::from(&s.server_backup_dir);
    // Two older bot folders: one whose export died (its pid is gone), one whose export runs.
    let marker =
        |created: &str| format!("mailbox-backup-bot folder\nowner=order 1\ncreated={created}\n");
    for (name, created) in [
        ("30-02-1999", "1999-11-01T00:00:00.000000Z"),
        ("31-02-1999", "1999-11-02T00:00:00.000000Z"),
    ] {
        std::fs::create_dir_all(server.join(name).join(".run")).expect("folder");
        std::fs::write(
            server.join(name).join(".mailbox-backup-bot"),
            marker(created),
        )
        .expect("marker");
        std::fs::write(server.join(name).join("lama.tar.gz"), "x").expect("archive");
    }
    std::fs::write(server.join("30-02-1999/.run/x.pid"), "999999 999998").expect("dead pid");
    let live_dir = server.join("31-02-1999");
    // Like an export: a shell naming its folder on its command line, in a group of its own.
    let mut live = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sh")
            .args(["-c", "sleep 60; true", &live_dir.to_string_lossy()])
            .process_group(0)
            .spawn()
            .expect("a live export")
    };
    std::fs::write(
        live_dir.join(".run/x.pid"),
        format!("{} {}", live.id(), live.id()),
    )
    .expect("live pid");

    let report = backup(&s).await.expect("run");
    // SAFETY: kill has no memory preconditions; the group is the one spawned above.
    unsafe { libc::kill(-(live.id() as i32), libc::SIGKILL) };
    let _ = live.wait();
    assert!(report.all_verified(), "{report:?}");
    assert_eq!(report.server_folders_removed, vec!["30-02-1999"]);
    assert!(
        live_dir.is_dir(),
        "a folder with a live export is never removed"
    );
}

#[tokio::test]
async fn a_slow_export_is_stopped_mid_way_when_the_server_disk_reaches_the_floor() {
    let dir = test_dir("floorkill");
    let mut s = settings(
        &dir,
        BackupKind::Command {
            // 40 MiB written slowly, like a big mailbox export.
            command: "for i in $(seq 40); do head -c 1048576 /dev/urandom >> {dir}/besar.tar.gz; sleep 0.05; done"
                .into(),
        },
    );
    let server = PathBuf::from(&s.server_backup_dir);
    let disk = ServerDisk::mount(&server, "64m");
    s.server_min_free = Floor::Bytes(16 << 20);
    // Another writer takes 36 MiB as soon as the export has started writing.
    let filler = {
        let watched = server.clone();
        fault_when(
            move || {
                std::fs::read_dir(&watched)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|d| {
                        std::fs::metadata(d.path().join("besar.tar.gz"))
                            .is_ok_and(|m| m.len() > (2 << 20))
                    })
            },
            {
                let server = server.clone();
                move || {
                    std::fs::write(server.join("other-writer.bin"), vec![7u8; 36 << 20])
                        .expect("fill")
                }
            },
        )
    };
    let result = backup(&s).await;
    let filled = filler.join().expect("filler");
    let free_after = mailbox_backup_bot::engine::local::free_space(&server).expect("df");
    let folders: Vec<PathBuf> = std::fs::read_dir(&server)
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    let left: Vec<String> = folders.iter().flat_map(|f| names(f)).collect();
    let running = processes_naming("head -c 1048576");
    drop(disk);
    assert!(filled, "the other writer ran while the export wrote");
    let err = result.expect_err("stopped at the floor");
    assert_eq!(err.kind, ErrorKind::ServerNoSpace, "{err}");
    assert!(err.detail.contains("floor"), "{}", err.detail);
    assert!(running.is_empty(), "the export was killed: {running:?}");
    // Its partial output was removed, and the folder it had claimed with it: only the other
    // writer's 36 MiB are used.
    assert!(left.is_empty(), "{left:?}");
    assert!(folders.is_empty(), "{folders:?}");
    assert!(free_after >= 26 << 20, "the space came back: {free_after}");
}

/// `LOCAL_BACKUP_KEEP=2` over four runs: the oldest verified folder goes once two newer ones are
/// there, a folder made by hand and a bot folder holding a hand-written note stay whole, and the
/// report says what went and how much room is left.
#[tokio::test]
async fn local_retention_keeps_the_newest_and_never_touches_what_the_bot_did_not_make() {
    let dir = test_dir("lkeep");
    let root = dir.join("maildirs");
    maildirs(&root, &[2000, 3000]);
    let mut s = settings(&dir, maildir_kind(&root));
    s.local_keep = 2;
    s.server_keep = 0;
    let local = s.local_root.clone();
    let by_hand = local.join("31-02-2020");
    std::fs::create_dir_all(&by_hand).expect("hand folder");
    std::fs::write(by_hand.join("arsip.tar.gz"), b"kept").expect("hand file");

    let first = backup(&s).await.expect("run 1");
    assert!(first.all_verified() && first.local_folders_removed.is_empty());
    std::fs::write(first.folders.local.join("catatan.txt"), b"jangan dihapus").expect("note");
    let second = backup(&s).await.expect("run 2");
    assert!(second.local_folders_removed.is_empty(), "{second:?}");
    let third = backup(&s).await.expect("run 3");
    // Run 1's folder is beyond the two newest, but it holds a note: kept whole.
    assert!(third.local_folders_removed.is_empty(), "{third:?}");
    assert!(first.folders.local.join("m00.tar.gz").is_file());
    let fourth = backup(&s).await.expect("run 4");
    let name = |r: &BackupReport| {
        r.folders
            .local
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(fourth.local_folders_removed, vec![name(&second)]);
    assert!(!second.folders.local.exists());
    for kept in [&first, &third, &fourth] {
        assert!(kept.folders.local.is_dir(), "{}", name(kept));
    }
    assert_eq!(
        std::fs::read(first.folders.local.join("catatan.txt")).expect("note"),
        b"jangan dihapus"
    );
    assert_eq!(names(&by_hand), vec!["arsip.tar.gz"]);
    // The newest two are complete and verifiable.
    for r in [&third, &fourth] {
        let ok = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(&r.folders.local)
            .status()
            .expect("sha256sum");
        assert!(ok.success());
    }
    let free = fourth.disk_free.expect("free space measured");
    assert!(free > 0);
    let report = mailbox_backup_bot::messages::Catalog::new(
        mailbox_backup_bot::messages::Lang::Id,
        chrono_tz::Asia::Jakarta,
    )
    .run_notes(&fourth);
    assert!(
        report.contains("LOCAL_BACKUP_KEEP") && report.contains("Sisa ruang disk backup"),
        "{report}"
    );
}

/// A Maildir store: a mailbox restored into another account's Maildir file by file, flags kept
/// in the names; a second restore copies nothing; a message the target already has stays single.
#[tokio::test]
async fn a_maildir_restore_copies_only_missing_messages() {
    use mailbox_backup_bot::engine::restore::restore;
    let dir = test_dir("mrest");
    let root = dir.join("maildirs");
    maildirs(&root, &[1000, 2000]);
    // m00 has a subfolder with a flagged message too.
    let sub = root.join("m00").join(".Arsip").join("cur");
    std::fs::create_dir_all(&sub).expect("subfolder");
    std::fs::write(sub.join("9.msg:2,FS"), b"Subject: arsip\r\n\r\nlama\r\n").expect("message");
    std::fs::create_dir_all(root.join("target").join("cur")).expect("target");
    let s = settings(&dir, maildir_kind(&root));
    let report = backup(&s).await.expect("the backup runs");
    assert!(report.all_verified(), "{report:?}");
    let folder = crate::support::folder_name(&report);
    // The target already holds one of the messages.
    std::fs::copy(
        root.join("m00").join("cur").join("1.msg:2,S"),
        root.join("target").join("cur").join("1.msg:2,S"),
    )
    .expect("copy");

    let first = restore(&s, &folder, "m00", Some("target"), None, |_| {})
        .await
        .expect("the restore runs");
    assert!(first.complete(), "{first:?}");
    assert_eq!((first.in_backup(), first.restored()), (2, 1), "{first:?}");
    let files = |p: &Path| names(p);
    assert_eq!(files(&root.join("target").join("cur")), vec!["1.msg:2,S"]);
    assert_eq!(
        files(&root.join("target").join(".Arsip").join("cur")),
        vec!["9.msg:2,FS"]
    );
    let rows: Vec<(&str, usize, usize, usize)> = first
        .folders
        .iter()
        .map(|f| (f.folder.as_str(), f.in_backup, f.already_there, f.restored))
        .collect();
    assert_eq!(rows, vec![("INBOX", 1, 1, 0), (".Arsip", 1, 0, 1)]);
    let second = restore(&s, &folder, "m00", Some("target"), None, |_| {})
        .await
        .expect("again");
    assert_eq!(second.restored(), 0, "{second:?}");
    let err = restore(&s, &folder, "m00", Some("nobody"), None, |_| {})
        .await
        .expect_err("no such Maildir");
    assert_eq!(
        err,
        mailbox_backup_bot::engine::restore::RestoreError::TargetMissing("nobody".into())
    );
}

/// The drill of a Maildir mailbox: into a folder of the restore's own stage on the server, never
/// the account's Maildir; compared with the archive and its record; nothing left behind. A
/// record the archive falls short of fails it with both figures.
#[tokio::test]
async fn a_maildir_drill_restores_into_a_scratch_folder_and_leaves_the_account_alone() {
    use mailbox_backup_bot::engine::restore::drill;
    let dir = test_dir("mdrill");
    let root = dir.join("maildirs");
    maildirs(&root, &[1000, 2000]);
    let new = root.join("m00").join("new");
    std::fs::create_dir_all(&new).expect("new");
    std::fs::write(new.join("2.msg"), b"Subject: belum dibaca\r\n\r\nbaru\r\n").expect("new mail");
    let s = settings(&dir, maildir_kind(&root));
    let report = backup(&s).await.expect("the backup runs");
    assert!(report.all_verified(), "{report:?}");
    let folder = crate::support::folder_name(&report);
    let before = files_under(&root);

    let drilled = drill(&s, &folder, "m00", None, |_| {})
        .await
        .expect("the drill runs");
    assert!(drilled.complete(), "{drilled:?}");
    assert_eq!((drilled.in_backup(), drilled.recorded), (2, Some(2)));
    assert_eq!(drilled.into, mailbox_backup_bot::engine::restore::SCRATCH);
    assert_eq!(
        files_under(&root),
        before,
        "the account's Maildir is untouched"
    );
    let server = PathBuf::from(&s.server_backup_dir);
    let left: Vec<String> = names(&server)
        .into_iter()
        .filter(|n| n.starts_with(".restore-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The folder's record says one message more than the archive holds.
    let summary = report.folders.local.join("summary.json");
    let text = std::fs::read_to_string(&summary).expect("summary");
    std::fs::write(
        &summary,
        text.replace("\"messages\": 2,", "\"messages\": 3,"),
    )
    .expect("edit");
    let short = drill(&s, &folder, "m00", None, |_| {})
        .await
        .expect("the drill runs");
    assert!(!short.complete());
    assert_eq!(short.short_of(), Some((2, 3)));
    assert!(short.why_incomplete().expect("why").contains("counted 3"));
}
