//! The Zimbra kind end to end against the shared sshd and the Zimbra simulator started by
//! `scripts/test` (tests/zimbra-sim: `zmprov`, `zmlocalconfig`, `zmhostname` for the `zimbra`
//! user, and the admin HTTPS endpoint on 127.0.0.1 serving real `.tgz` exports of Maildir
//! fixtures).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::support::{env, test_dir};

use mailbox_backup_bot::config::{BackupKind, EngineSettings, MailStore};
use mailbox_backup_bot::engine::files::portable_name;
use mailbox_backup_bot::engine::files::sha256_of;
use mailbox_backup_bot::engine::remote::Remote;
use mailbox_backup_bot::engine::run::{control_dir, run};
use mailbox_backup_bot::engine::zimbra::is_system_account as is_zimbra_system_account;
use mailbox_backup_bot::engine::{zimbra, MailboxStatus, RunRequest, Stop};

const HOSTILE: &str = "-x $(touch zpwned) o'b\"c;@djki.go.id";

fn settings(dir: &Path) -> EngineSettings {
    crate::engine::settings(dir, BackupKind::Mailboxes(MailStore::Zimbra))
}

/// The account the restore test writes into while the others run: left out of their checks.
const RESTORED_INTO: &str = "pulih@djki.go.id";

fn sim() -> PathBuf {
    PathBuf::from(env("TEST_ZIMBRA_SIM"))
}

/// The simulator's accounts and how it answers for each (ok, empty, error, cut).
fn sim_accounts() -> Vec<(String, String)> {
    std::fs::read_to_string(sim().join("accounts"))
        .expect("accounts")
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

/// The fixture's messages of one account that an export holds (Trash and Junk are not
/// exported), sorted.
fn fixture_messages(account: &str) -> Vec<Vec<u8>> {
    fn walk(p: &Path, out: &mut Vec<Vec<u8>>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".Trash" || name.starts_with(".Trash.") || name == ".Junk" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(std::fs::read(&path).expect("message"));
            }
        }
    }
    let mut out = Vec::new();
    walk(&sim().join("store").join(account), &mut out);
    out.sort();
    out
}

/// The `.eml` members of an archive, sorted, and every member name.
fn archive_messages(path: &Path) -> (Vec<Vec<u8>>, Vec<String>) {
    let file = std::fs::File::open(path).expect("archive");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut messages, mut names) = (Vec::new(), Vec::new());
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if name.ends_with(".eml") {
            let mut body = Vec::new();
            entry.read_to_end(&mut body).expect("member");
            messages.push(body);
        }
        names.push(name);
    }
    messages.sort();
    (messages, names)
}

/// Every `.meta` of an archive, by the name of the entry it describes.
fn archive_metas(path: &Path) -> BTreeMap<String, serde_json::Value> {
    let file = std::fs::File::open(path).expect("archive");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if let Some(item) = name.strip_suffix(".meta") {
            let mut body = Vec::new();
            entry.read_to_end(&mut body).expect("member");
            let meta = serde_json::from_slice(&body).expect("a .meta is JSON");
            out.insert(item.to_owned(), meta);
        }
    }
    out
}

/// The folder a `.meta` names: its `Path` without the slashes around it ("/Inbox/" → "Inbox").
fn meta_folder(meta: &serde_json::Value) -> String {
    meta["Path"]
        .as_str()
        .expect("Path")
        .trim_matches('/')
        .to_owned()
}

/// The folder part of an entry name for a folder path (ArchiveFormatter.ILLEGAL_FOLDER_CHARS).
fn entry_folder_of(folder: &str) -> String {
    folder
        .chars()
        .map(|c| if ":*?\"<>|\0".contains(c) { '_' } else { c })
        .collect()
}

#[tokio::test]
async fn zimbra_accounts_are_exported_by_streaming_rest_copied_verified_and_counted() {
    let dir = test_dir("zimbra");
    let s = settings(&dir);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let date = chrono::Utc::now().with_timezone(&s.timezone).date_naive();
    let report = run(&s, RunRequest::new(date, "test", Stop::never()), tx)
        .await
        .expect("the run gets to the end of step 6");

    let by_account: BTreeMap<&str, _> = report
        .mailboxes
        .iter()
        .map(|m| (m.account.as_str(), m))
        .collect();
    let expected: Vec<(String, String)> = sim_accounts()
        .into_iter()
        .filter(|(a, _)| !is_zimbra_system_account(a))
        .filter(|(a, _)| a != RESTORED_INTO)
        .collect();
    assert_eq!(
        report
            .mailboxes
            .iter()
            .filter(|m| m.account != RESTORED_INTO)
            .count(),
        expected.len(),
        "{report:#?}"
    );
    for (account, behaviour) in &expected {
        // Every mailbox is reported under the account's own name, verified or failed.
        let m = by_account
            .get(account.as_str())
            .unwrap_or_else(|| panic!("{account} is in the report: {report:#?}"));
        match behaviour.as_str() {
            "ok" | "empty" => {
                assert_eq!(m.status, MailboxStatus::Verified, "{m:?}");
                let fixture = fixture_messages(account);
                assert_eq!(m.messages, Some(fixture.len() as u64), "{m:?}");
                // The server's own count, taken before and after the export, agrees.
                let counted = m.server_messages.as_ref().expect("the server counted");
                assert_eq!(
                    (counted.before, counted.after),
                    (fixture.len() as u64, fixture.len() as u64),
                    "{m:?}"
                );
                if behaviour == "empty" {
                    assert_eq!(m.messages, Some(0));
                }
                let local = report.folders.local.join(&m.file);
                let server = Path::new(&report.folders.server).join(&m.file);
                assert_eq!(sha256_of(&local).expect("local").0, m.sha256);
                assert_eq!(sha256_of(&server).expect("server").0, m.sha256);
                let (messages, names) = archive_messages(&local);
                assert_eq!(
                    messages, fixture,
                    "{account}: the archive holds the fixture's messages"
                );
                // ArchiveFormatter's layout: Folder/0000000257-Subject.eml (message-257.eml
                // without a subject), each after its .meta, in the folder its .meta's Path names
                // (`:*?"<>|` as `_`), continued in Folder!1 after 500.
                let metas = archive_metas(&local);
                for n in names.iter().filter(|n| n.ends_with(".eml")) {
                    assert!(names.contains(&format!("{n}.meta")), "{n}");
                    let base = n.rsplit('/').next().unwrap_or("");
                    let numbered =
                        base.len() > 11 && base[..10].bytes().all(|b| b.is_ascii_digit());
                    let unnamed = base
                        .strip_prefix("message-")
                        .and_then(|b| b.strip_suffix(".eml"))
                        .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()));
                    assert!(numbered || unnamed, "{n}");
                    let folder = meta_folder(&metas[n.as_str()]);
                    let entry_folder = n.rsplit_once('/').map_or("", |(f, _)| f);
                    let batch = entry_folder
                        .strip_prefix(entry_folder_of(&folder).as_str())
                        .unwrap_or("?");
                    assert!(
                        batch.is_empty() || batch == "!1",
                        "{n} is in the folder of its .meta's Path {folder}"
                    );
                }
                if fixture.len() > 500 {
                    // ArchiveFormatter's batches of 500: the rest of the folder in Inbox!1.
                    assert!(names.iter().any(|n| n.starts_with("Inbox!1/")), "{names:?}");
                }
            }
            "short" => match &m.status {
                // A well-formed archive of 5 of the 20 messages: failed by name, both figures.
                MailboxStatus::Failed { error } => {
                    assert!(
                        error.contains("holds 5 messages") && error.contains("counted 20"),
                        "{error}"
                    );
                    assert_eq!(m.messages, Some(5), "{m:?}");
                }
                other => panic!("{account}: {other:?}"),
            },
            "maintenance" => match &m.status {
                MailboxStatus::Failed { error } => {
                    assert!(error.contains(account.as_str()), "{error}");
                    assert!(error.contains("account is not active"), "{error}");
                }
                other => panic!("{account}: {other:?}"),
            },
            "error" => match &m.status {
                MailboxStatus::Failed { error } => {
                    assert!(error.contains(account.as_str()), "{error}");
                    assert!(error.contains("HTTP 500"), "{error}");
                    assert!(
                        error.contains("mail.NO_SUCH_BLOB"),
                        "the server's error: {error}"
                    );
                }
                other => panic!("{account}: {other:?}"),
            },
            "cut" => match &m.status {
                MailboxStatus::Failed { error } => {
                    assert!(error.contains(account.as_str()), "{error}");
                }
                other => panic!("{account}: {other:?}"),
            },
            other => panic!("unknown behaviour {other}"),
        }
    }
    assert!(!report.all_verified());
    assert_eq!(report.failed().count(), 4);
    // An empty mailbox is a 200 archive of folder .meta entries, not a 204.
    let empty = by_account.get("kosong@djki.go.id").expect("kosong");
    let (_, names) = archive_messages(&report.folders.local.join(&empty.file));
    assert!(
        names.iter().any(|n| n.ends_with("-Inbox.meta")),
        "{names:?}"
    );

    // The hostile name ran nowhere and its archive stays inside the folder.
    let home = sim().join("home");
    for place in [
        dir.as_path(),
        home.as_path(),
        Path::new("."),
        Path::new("/root"),
    ] {
        assert!(
            !place.join("zpwned").exists(),
            "no name ran as code in {place:?}"
        );
    }
    // Reported under the account's own name; its archive under a portable one.
    let hostile = by_account.get(HOSTILE).expect("hostile account exported");
    assert_eq!(hostile.file, format!("{}.tgz", portable_name(HOSTILE)));
    assert!(report.folders.local.join(&hostile.file).is_file());
    for entry in std::fs::read_dir(&report.folders.local).expect("list") {
        let path = entry.expect("entry").path();
        assert_eq!(path.parent(), Some(report.folders.local.as_path()));
    }
    // Failed exports leave neither a .part nor a stage on the server.
    for entry in std::fs::read_dir(&report.folders.server).expect("server folder") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        assert!(!name.ends_with(".part"), "{name}");
    }
    let stage = Path::new(&report.folders.server).join(".stage");
    assert_eq!(
        std::fs::read_dir(&stage).map(|d| d.count()).unwrap_or(0),
        0,
        "every stage removed"
    );

    // System accounts were listed by zmprov but never requested; each export logged in first.
    let log = std::fs::read_to_string(sim().join("requests.log")).expect("requests.log");
    for (account, _) in sim_accounts() {
        let asked = log.lines().any(|l| l == format!("GET {account} ok"));
        if is_zimbra_system_account(&account) {
            assert!(!asked, "system account {account} was exported");
        }
    }
    assert!(log.contains(&format!("GET {HOSTILE} ok")), "{log}");
    assert!(!log.lines().any(|l| l.contains(" 401")), "{log}");
}

#[tokio::test]
async fn zimbra_sizes_come_from_getquotausage_over_ssh() {
    let dir = test_dir("zsizes");
    let s = settings(&dir);
    let work = control_dir().expect("control dir");
    let remote = Remote::connect(&s, &work).await.expect("login");
    let out = remote.sh(zimbra::SIZES, &[]).await.expect("ssh");
    remote.close().await;
    let _ = std::fs::remove_dir_all(&work);
    assert!(out.ok, "{}", out.stderr);
    let sizes = zimbra::parse_sizes(&String::from_utf8_lossy(&out.stdout));
    let accounts = sim_accounts();
    assert_eq!(sizes.len(), accounts.len(), "{sizes:?}");
    for ((account, _), (name, bytes)) in accounts.iter().zip(&sizes) {
        assert_eq!(account, name);
        if account == RESTORED_INTO {
            continue;
        }
        // The quota counts every folder, Trash and Junk included.
        let stored: u64 = crate::support::files_under(&sim().join("store").join(account))
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        assert_eq!(*bytes, stored, "{account}");
    }
    assert!(sizes.iter().any(|(a, _)| a == HOSTILE));
}

/// A Zimbra restore through the simulator's REST import, from an encrypted backup: no message
/// on the disk, refused without the identity, then ani's mailbox into pulih, counted per folder;
/// again with nothing added; a target that does not exist refused before any upload.
#[tokio::test]
async fn a_zimbra_restore_imports_with_resolve_skip_and_a_second_adds_nothing() {
    use mailbox_backup_bot::engine::restore::{restore, RestoreError};
    // pulih@ starts empty, as the fixtures make it, and is emptied again afterwards: a run of
    // the tests against a simulator an earlier run used finds it so too.
    empty_mailbox(RESTORED_INTO);
    let _emptied = EmptiedAfter(vec![RESTORED_INTO]);
    let dir = test_dir("zrest");
    let mut s = settings(&dir);
    // Encrypted at rest (the plain Zimbra restore runs in disaster.rs): the `.tgz` exports and the
    // directory land as age files, and the restore decrypts them on the way up.
    let (identity, recipient) = mailbox_backup_bot::engine::encryption::generate();
    std::fs::write(dir.join("restore.key"), identity).expect("identity");
    s.encrypt_to = vec![recipient];
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let date = chrono::Utc::now().with_timezone(&s.timezone).date_naive();
    let report = run(&s, RunRequest::new(date, "test", Stop::never()), tx)
        .await
        .expect("the backup runs");
    assert_eq!(report.encrypted_to, 1);
    let folder = crate::support::folder_name(&report);
    let source = "ani@djki.go.id";
    // The simulator's broken accounts fail on purpose; ani's archive is verified, encrypted.
    let ani = report
        .mailboxes
        .iter()
        .find(|m| m.account == source)
        .expect("ani");
    assert_eq!(
        ani.status,
        mailbox_backup_bot::engine::MailboxStatus::Verified
    );
    assert!(report
        .folders
        .local
        .join("ani@djki.go.id.tgz.age")
        .is_file());
    let message = fixture_messages(source).remove(0);
    let needle = &message[message.len().saturating_sub(40)..];
    for f in crate::support::files_under(&report.folders.local) {
        assert!(
            !crate::support::holds_text(&f, needle),
            "{f:?} holds a message"
        );
    }
    let err = restore(&s, &folder, source, Some(RESTORED_INTO), None, |_| {})
        .await
        .expect_err("no identity");
    assert!(matches!(err, RestoreError::NoIdentity { .. }), "{err:?}");
    s.age_identity = Some(dir.join("restore.key"));
    let first = restore(&s, &folder, source, Some(RESTORED_INTO), None, |_| {})
        .await
        .expect("the restore runs");
    assert!(first.complete(), "{first:#?}");
    let counts: Vec<(&str, usize, usize)> = first
        .folders
        .iter()
        .map(|f| (f.folder.as_str(), f.in_backup, f.restored))
        .collect();
    assert_eq!(counts, vec![("Inbox", 3, 3), ("Sent", 2, 2)], "{first:#?}");
    let mut want = fixture_messages(source);
    let mut got = fixture_messages(RESTORED_INTO);
    want.sort();
    got.sort();
    assert_eq!(got, want, "every message came over as it was");

    let second = restore(&s, &folder, source, Some(RESTORED_INTO), None, |_| {})
        .await
        .expect("the second restore runs");
    assert!(second.complete());
    assert_eq!(second.restored(), 0, "{second:#?}");
    assert_eq!(fixture_messages(RESTORED_INTO).len(), want.len());

    let err = restore(&s, &folder, source, Some("hantu@djki.go.id"), None, |_| {})
        .await
        .expect_err("no such account");
    assert_eq!(err, RestoreError::TargetMissing("hantu@djki.go.id".into()));
}

/// Sets an account's behaviour in the simulator for a test; puts the old one back on drop.
struct Behaviour {
    account: &'static str,
    old: String,
}

impl Behaviour {
    fn set(account: &'static str, behaviour: &str) -> Behaviour {
        let old = Behaviour::write(account, behaviour);
        Behaviour { account, old }
    }

    fn write(account: &str, behaviour: &str) -> String {
        let path = sim().join("accounts");
        let text = std::fs::read_to_string(&path).expect("accounts");
        let mut old = String::new();
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.split_once('\t') {
                Some((a, b)) if a == account => {
                    old = b.to_owned();
                    format!("{a}\t{behaviour}")
                }
                _ => l.to_owned(),
            })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").expect("accounts written");
        old
    }
}

impl Drop for Behaviour {
    fn drop(&mut self) {
        Behaviour::write(self.account, &self.old);
    }
}

fn requests(line: &str) -> usize {
    let log = std::fs::read_to_string(sim().join("requests.log")).unwrap_or_default();
    log.lines().filter(|l| *l == line).count()
}

/// A mailbox that failed (an account in maintenance) is exported again when the backup is
/// ordered again the same day, and reported verified; the mailboxes that still fail are asked
/// of the server again, not repeated from the first run's records.
#[tokio::test]
async fn a_zimbra_mailbox_that_failed_is_exported_again_when_the_backup_is_ordered_again() {
    const ACCOUNT: &str = "ulang@djki.go.id";
    let dir = test_dir("zretry");
    let s = settings(&dir);
    let date = chrono::Utc::now().with_timezone(&s.timezone).date_naive();
    let run_today = || async {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        run(&s, RunRequest::new(date, "test", Stop::never()), tx)
            .await
            .expect("the run gets to the end of step 6")
    };
    let status_of = |report: &mailbox_backup_bot::engine::BackupReport| {
        report
            .mailboxes
            .iter()
            .find(|m| m.account == ACCOUNT)
            .cloned()
            .expect("in the report")
    };

    let maintenance = Behaviour::set(ACCOUNT, "maintenance");
    let first = run_today().await;
    let failed = status_of(&first);
    assert!(
        matches!(&failed.status, MailboxStatus::Failed { error } if error.contains("not active")),
        "{failed:?}"
    );
    drop(maintenance);
    let short_asked = requests("GET pendek@djki.go.id short");

    let second = run_today().await;
    assert_eq!(
        second.folders.local, first.folders.local,
        "the same day's folder goes on"
    );
    let ok = status_of(&second);
    assert_eq!(ok.status, MailboxStatus::Verified, "{ok:?}");
    assert_eq!(ok.messages, Some(2), "{ok:?}");
    assert!(requests(&format!("GET {ACCOUNT} ok")) >= 1);
    assert!(
        requests("GET pendek@djki.go.id short") > short_asked,
        "a mailbox that fails again is asked of the server again"
    );
    let local = second.folders.local.join(&ok.file);
    assert_eq!(sha256_of(&local).expect("local").0, ok.sha256);
    // The run's own SHA256SUMS lists the new archive.
    let sums = std::fs::read_to_string(second.folders.local.join("SHA256SUMS")).expect("sums");
    assert!(
        sums.contains(&format!("{}  {}", ok.sha256, ok.file)),
        "{sums}"
    );
}

/// The simulator's account of mail as the field has it (tests/zimbra-sim/make_fixtures.py
/// `corpus`), the drill's scratch account, and an empty account to restore the corpus into.
const CORPUS: &str = "ragam@djki.go.id";
const SCRATCH_ACCOUNT: &str = "latihan@djki.go.id";
const COPY_INTO: &str = "salinan@djki.go.id";

/// The corpus as make_fixtures.py wrote it (SIM/corpus.json): every folder, empty ones too,
/// with the SHA-256 of each of its messages, sorted.
fn corpus() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(sim().join("corpus.json")).expect("corpus.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["account"], CORPUS);
    let folders: BTreeMap<String, Vec<String>> =
        serde_json::from_value(v["folders"].clone()).expect("folders");
    folders
        .into_iter()
        .map(|(f, mut sums)| {
            sums.sort();
            (f, sums)
        })
        .collect()
}

/// The corpus' messages an export holds (not Trash and its folders, not Junk), per folder.
fn corpus_exported() -> BTreeMap<String, Vec<String>> {
    corpus()
        .into_iter()
        .filter(|(f, sums)| {
            !sums.is_empty() && f != "Junk" && f != "Trash" && !f.starts_with("Trash/")
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An archive's messages per folder of their `.meta` `Path`: the SHA-256 of each, sorted; and
/// every folder it names (its folders' own `.meta` entries included).
fn archive_by_folder(path: &Path) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let metas = archive_metas(path);
    let file = std::fs::File::open(path).expect("archive");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if name.ends_with(".eml") {
            let mut body = Vec::new();
            entry.read_to_end(&mut body).expect("member");
            let folder = meta_folder(&metas[&name]);
            out.entry(folder).or_default().push(sha256_hex(&body));
        }
    }
    for sums in out.values_mut() {
        sums.sort();
    }
    let mut folders: Vec<String> = metas.values().map(meta_folder).collect();
    folders.sort();
    folders.dedup();
    (out, folders)
}

/// Per message (folder, SHA-256): the flags and the received date its `.meta` gives, sorted.
fn archive_flags(path: &Path) -> Vec<(String, String, String, i64)> {
    let metas = archive_metas(path);
    let file = std::fs::File::open(path).expect("archive");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if name.ends_with(".eml") {
            let mut body = Vec::new();
            entry.read_to_end(&mut body).expect("member");
            let meta = &metas[&name];
            out.push((
                meta_folder(meta),
                sha256_hex(&body),
                meta["FlagStr"].as_str().unwrap_or("").to_owned(),
                meta["date"].as_i64().expect("date"),
            ));
        }
    }
    out.sort();
    out
}

/// Runs a Zimbra script as the engine does (over the shared sshd, as root).
async fn on_server(s: &EngineSettings, script: &str, args: &[&str]) -> String {
    let work = control_dir().expect("control dir");
    let remote = Remote::connect(s, &work).await.expect("login");
    let out = remote.sh(script, args).await.expect("ssh");
    remote.close().await;
    let _ = std::fs::remove_dir_all(&work);
    assert!(out.ok, "{}", out.stderr);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The account's export (the engine's EXPORT), into `dir`.
async fn export_of(s: &EngineSettings, dir: &Path, account: &str) -> PathBuf {
    let stage = dir.join("xstage");
    std::fs::create_dir_all(&stage).expect("stage");
    let out = dir.join(format!("{}.tgz", portable_name(account)));
    let _ = std::fs::remove_file(&out);
    on_server(
        s,
        zimbra::EXPORT,
        &[&out.to_string_lossy(), account, &stage.to_string_lossy()],
    )
    .await;
    out
}

/// The items in every folder of the account, as the server counts them (GetFolderRequest, the
/// engine's SCRATCH check).
async fn items_of(s: &EngineSettings, dir: &Path, account: &str) -> u64 {
    let stage = dir.join("cstage");
    std::fs::create_dir_all(&stage).expect("stage");
    let out = on_server(s, zimbra::SCRATCH, &[account, &stage.to_string_lossy()]).await;
    zimbra::parse_scratch(&out).expect("ZIMBRAID ITEMS").1
}

/// Whether the account holds nothing: no item in any folder (the server's count), no message in
/// its export, no file in its store.
async fn holds_nothing(s: &EngineSettings, dir: &Path, account: &str) -> bool {
    let items = items_of(s, dir, account).await;
    let (exported, _) = archive_messages(&export_of(s, dir, account).await);
    let files = crate::support::files_under(&sim().join("store").join(account));
    items == 0 && exported.is_empty() && files.is_empty()
}

/// Empties an account's mailbox in the simulator's store (as a new mailbox is: an empty Maildir).
fn empty_mailbox(account: &str) {
    let maildir = sim().join("store").join(account).join("Maildir");
    let _ = std::fs::remove_dir_all(&maildir);
    for sub in ["cur", "new", "tmp"] {
        let _ = std::fs::create_dir_all(maildir.join(sub));
    }
}

/// Empties the accounts a test restores into when dropped (also when the test fails half way),
/// so the next test finds them as the fixtures made them.
struct EmptiedAfter(Vec<&'static str>);

impl Drop for EmptiedAfter {
    fn drop(&mut self) {
        for account in &self.0 {
            empty_mailbox(account);
        }
    }
}

/// The simulator lists only some accounts for a test (its backups then export only those), and
/// lists them all again when dropped; accounts named to be emptied are emptied then too.
struct Listing {
    all: String,
    _empty_after: EmptiedAfter,
}

impl Listing {
    fn only(accounts: &[&str], empty_after: &[&'static str]) -> Listing {
        let path = sim().join("accounts");
        let all = std::fs::read_to_string(&path).expect("accounts");
        let kept: String = all
            .lines()
            .filter(|l| accounts.iter().any(|a| l.split('\t').next() == Some(*a)))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(kept.lines().count(), accounts.len(), "{all}");
        std::fs::write(&path, kept).expect("accounts");
        Listing {
            all,
            _empty_after: EmptiedAfter(empty_after.to_vec()),
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        let _ = std::fs::write(sim().join("accounts"), &self.all);
    }
}

/// A backup of the corpus alone (with the other accounts `also` listed): its report, dated
/// folder and the corpus' result.
async fn backup_of_the_corpus(
    s: &EngineSettings,
) -> (
    mailbox_backup_bot::engine::BackupReport,
    String,
    mailbox_backup_bot::engine::MailboxResult,
) {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let date = chrono::Utc::now().with_timezone(&s.timezone).date_naive();
    let report = run(s, RunRequest::new(date, "test", Stop::never()), tx)
        .await
        .expect("the backup runs");
    assert!(report.all_verified(), "{report:#?}");
    let m = report
        .mailboxes
        .iter()
        .find(|m| m.account == CORPUS)
        .cloned()
        .expect("the corpus is backed up");
    let exported: usize = corpus_exported().values().map(Vec::len).sum();
    assert_eq!(m.messages, Some(exported as u64), "{m:?}");
    let folder = crate::support::folder_name(&report);
    (report, folder, m)
}

fn import_lines(account: &str) -> Vec<String> {
    std::fs::read_to_string(sim().join("requests.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("POST {account} import ")))
        .map(str::to_owned)
        .collect()
}

/// The drill (issue 26): the corpus' backup restored into the scratch account, every folder
/// counted against the archive and the recorded count, the scratch account emptied afterwards
/// by DeleteMailbox. Refused without RESTORE_DRILL_ACCOUNT, and when the scratch account holds
/// anything (mail in its Trash only included), which is then left as it was.
#[tokio::test]
async fn a_zimbra_drill_of_the_corpus_restores_it_into_the_scratch_account_and_empties_it() {
    use mailbox_backup_bot::engine::restore::{drill, RestoreError, RestoreProgress, SCRATCH};
    let dir = test_dir("zdrill");
    let _listing = Listing::only(&[CORPUS, SCRATCH_ACCOUNT], &[SCRATCH_ACCOUNT]);
    let mut s = settings(&dir);
    let (_, folder, m) = backup_of_the_corpus(&s).await;
    assert!(holds_nothing(&s, &dir, SCRATCH_ACCOUNT).await);

    let err = drill(&s, &folder, CORPUS, Some(&m.sha256), |_| {})
        .await
        .expect_err("no scratch account");
    assert_eq!(err, RestoreError::NoDrillAccount);
    // The account drilled is never its own scratch account.
    s.drill_account = Some(CORPUS.into());
    let err = drill(&s, &folder, CORPUS, Some(&m.sha256), |_| {})
        .await
        .expect_err("the account itself");
    assert_eq!(err, RestoreError::ScratchNotEmpty(CORPUS.into()));

    // Mail in the scratch account's Trash (an export would not show it): refused, untouched.
    s.drill_account = Some(SCRATCH_ACCOUNT.into());
    let trash = sim()
        .join("store")
        .join(SCRATCH_ACCOUNT)
        .join("Maildir/.Trash/cur");
    std::fs::create_dir_all(&trash).expect("trash");
    let planted = trash.join("1764000000.M1P1.sim:2,S");
    let message = b"From: a@djki.go.id\r\nSubject: milik seseorang\r\n\r\nJangan dihapus.\r\n";
    std::fs::write(&planted, message).expect("planted");
    assert_eq!(items_of(&s, &dir, SCRATCH_ACCOUNT).await, 1);
    let imports = import_lines(SCRATCH_ACCOUNT).len();
    let err = drill(&s, &folder, CORPUS, Some(&m.sha256), |_| {})
        .await
        .expect_err("a scratch account that holds mail");
    assert_eq!(err, RestoreError::ScratchNotEmpty(SCRATCH_ACCOUNT.into()));
    assert_eq!(std::fs::read(&planted).expect("left as it was"), message);
    assert_eq!(
        import_lines(SCRATCH_ACCOUNT).len(),
        imports,
        "nothing imported"
    );
    std::fs::remove_dir_all(trash.parent().expect(".Trash")).expect("unplanted");

    // The drill.
    let mut seen = Vec::new();
    let report = drill(&s, &folder, CORPUS, Some(&m.sha256), |p| seen.push(p))
        .await
        .expect("the drill runs");
    assert!(report.complete(), "{report:#?}");
    assert_eq!(report.why_incomplete(), None);
    assert_eq!(report.into, SCRATCH);
    assert_eq!(report.recorded, m.messages, "{report:#?}");
    assert_eq!(Some(report.in_backup() as u64), m.messages);
    assert_eq!(Some(report.restored() as u64), m.messages);
    // Per folder as the export names them: both copies of a message in one folder counted.
    let want: Vec<(String, usize)> = {
        let mut w: BTreeMap<String, usize> = BTreeMap::new();
        for (f, sums) in corpus_exported() {
            *w.entry(entry_folder_of(&f)).or_default() += sums.len();
        }
        w.into_iter().collect()
    };
    let got: Vec<(String, usize)> = report
        .folders
        .iter()
        .map(|f| {
            assert_eq!(
                (f.already_there, f.restored, f.present_after),
                (0, f.in_backup, f.in_backup),
                "{f:?}"
            );
            (f.folder.clone(), f.in_backup)
        })
        .collect();
    assert_eq!(got, want);
    assert!(seen.contains(&RestoreProgress::Checking), "{seen:?}");
    // Imported whole, without the folders' shares, then the mailbox deleted.
    let imports = import_lines(SCRATCH_ACCOUNT);
    let last = imports.last().expect("an import");
    assert!(
        last.contains("import success")
            && last.contains(&format!("added={}", m.messages.unwrap_or(0)))
            && last.contains("callback=mbbImport acl=0"),
        "{last}"
    );
    let log = std::fs::read_to_string(sim().join("requests.log")).expect("log");
    assert!(
        log.lines()
            .any(|l| l.starts_with(&format!("POST DeleteMailbox {SCRATCH_ACCOUNT} 200 mbxid="))),
        "{log}"
    );
    assert!(holds_nothing(&s, &dir, SCRATCH_ACCOUNT).await);
}

/// A drill of a damaged backup fails loudly, and leaves the scratch account empty: an archive
/// whose bytes no longer match the SHA-256 recorded when it was verified (refused before
/// anything reaches the server); a summary that records one message more than the archive
/// holds (the drill's report is not complete and names both figures); an import the server
/// answers with refused items (the scratch account's quota reached half way: HTTP 200 all the
/// same, its report page says `warn`).
#[tokio::test]
async fn a_zimbra_drill_of_a_damaged_backup_fails_loudly_and_leaves_the_scratch_account_empty() {
    use mailbox_backup_bot::engine::restore::{drill, RestoreError};
    let dir = test_dir("zdrillbad");
    let _listing = Listing::only(&[CORPUS, SCRATCH_ACCOUNT], &[SCRATCH_ACCOUNT]);
    let mut s = settings(&dir);
    s.drill_account = Some(SCRATCH_ACCOUNT.into());
    let (report, folder, m) = backup_of_the_corpus(&s).await;
    let counted = m.messages.expect("counted");

    // The summary records one more than the archive holds.
    let summary_path = report.folders.local.join("summary.json");
    let text = std::fs::read_to_string(&summary_path).expect("summary");
    let mut summary: serde_json::Value = serde_json::from_str(&text).expect("json");
    for mailbox in summary["mailboxes"].as_array_mut().expect("mailboxes") {
        if mailbox["account"] == CORPUS {
            mailbox["messages"] = serde_json::json!(counted + 1);
        }
    }
    std::fs::write(&summary_path, summary.to_string()).expect("summary");
    let drilled = drill(&s, &folder, CORPUS, None, |_| {})
        .await
        .expect("the drill runs");
    assert!(!drilled.complete(), "{drilled:#?}");
    assert_eq!(drilled.recorded, Some(counted + 1));
    let why = drilled.why_incomplete().expect("why");
    assert!(
        why.contains(&format!("counted {}", counted + 1))
            && why.contains(&format!("only {counted}")),
        "{why}"
    );
    assert!(holds_nothing(&s, &dir, SCRATCH_ACCOUNT).await);
    std::fs::write(&summary_path, &text).expect("summary back");

    // The scratch account's quota is reached half way: the server's report names it.
    let directory = sim().join("directory.json");
    let saved = std::fs::read_to_string(&directory).expect("directory");
    let mut d: serde_json::Value = serde_json::from_str(&saved).expect("json");
    d["accounts"][SCRATCH_ACCOUNT]["zimbraMailQuota"] = serde_json::json!(["100000"]);
    std::fs::write(&directory, d.to_string()).expect("quota");
    let refused = drill(&s, &folder, CORPUS, None, |_| {}).await;
    std::fs::write(&directory, &saved).expect("directory back");
    match refused {
        Err(RestoreError::Server(e)) => assert!(
            e.contains("refused items")
                && e.contains("mail.QUOTA_EXCEEDED: mailbox exceeded quota of 100000 bytes"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(holds_nothing(&s, &dir, SCRATCH_ACCOUNT).await);

    // The archive's bytes no longer match: nothing goes to the server.
    let imports = import_lines(SCRATCH_ACCOUNT).len();
    let archive = report.folders.local.join(&m.file);
    let mut bytes = std::fs::read(&archive).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&archive, &bytes).expect("damaged");
    let err = drill(&s, &folder, CORPUS, None, |_| {})
        .await
        .expect_err("a damaged archive");
    assert_eq!(
        err,
        RestoreError::Corrupt {
            file: m.file.clone()
        }
    );
    assert_eq!(import_lines(SCRATCH_ACCOUNT).len(), imports);
    assert!(holds_nothing(&s, &dir, SCRATCH_ACCOUNT).await);
}

/// The corpus backed up and restored into an empty account comes back message for message: the
/// SHA-256 of every message per folder as the fixture wrote it, both copies of a message in one
/// folder, the empty folders and the nested ones, each message's flags and received date as
/// the backup's `.meta` has them. A second restore adds nothing.
#[tokio::test]
async fn the_zimbra_corpus_is_restored_message_for_message_and_a_second_restore_adds_nothing() {
    use mailbox_backup_bot::engine::restore::restore;
    let dir = test_dir("zcorpus");
    let _listing = Listing::only(&[CORPUS, COPY_INTO], &[COPY_INTO]);
    let s = settings(&dir);
    assert!(holds_nothing(&s, &dir, COPY_INTO).await);
    let (report, folder, m) = backup_of_the_corpus(&s).await;
    let archive = report.folders.local.join(&m.file);
    let (backed_up, _) = archive_by_folder(&archive);
    assert_eq!(backed_up, corpus_exported(), "the backup holds the corpus");

    let first = restore(
        &s,
        &folder,
        CORPUS,
        Some(COPY_INTO),
        Some(&m.sha256),
        |_| {},
    )
    .await
    .expect("the restore runs");
    assert!(first.complete(), "{first:#?}");
    assert_eq!(Some(first.restored() as u64), m.messages, "{first:#?}");
    let exported = export_of(&s, &dir, COPY_INTO).await;
    let (restored, folders) = archive_by_folder(&exported);
    assert_eq!(
        restored,
        corpus_exported(),
        "message for message, per folder"
    );
    for f in corpus().keys() {
        assert!(folders.contains(f), "folder {f} restored: {folders:?}");
    }
    assert_eq!(archive_flags(&exported), archive_flags(&archive));

    let second = restore(
        &s,
        &folder,
        CORPUS,
        Some(COPY_INTO),
        Some(&m.sha256),
        |_| {},
    )
    .await
    .expect("the second restore runs");
    assert!(second.complete(), "{second:#?}");
    assert_eq!(second.restored(), 0, "{second:#?}");
    assert_eq!(
        archive_by_folder(&export_of(&s, &dir, COPY_INTO).await).0,
        corpus_exported()
    );
}

/// Through the chat on the Zimbra simulator: once a backup is there the scheduled drill runs by
/// itself, and `/drill` runs one on request; both take the corpus (never the scratch account,
/// which is backed up like any other) into `RESTORE_DRILL_ACCOUNT`, pass, and leave it empty.
#[tokio::test]
async fn zimbra_drills_scheduled_and_asked_in_the_chat_pass_and_leave_the_scratch_account_empty() {
    use crate::support::*;
    let _listing = Listing::only(&[CORPUS, SCRATCH_ACCOUNT], &[SCRATCH_ACCOUNT]);
    let (team, stub, db, mut env) = scene("en").await.parts();
    let dir = test_dir("zdrillchat");
    use_zimbra_engine(&mut env, &dir);
    set(&mut env, "RESTORE_DRILL_ACCOUNT", SCRATCH_ACCOUNT);
    set(&mut env, "RESTORE_DRILL_DAYS", "1");
    set(&mut env, "RESTORE_DRILL_AT", "00:00");
    let _bot = BotProcess::start(&env);
    crate::restore_chat::backup_through_the_chat(&stub, &team, &db).await;
    let g = &team.group;
    let scheduled = stub
        .wait_for_text(g.id, 0, "Restore drill #1 PASSED", WAIT * 8)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stub.transcript(g.id)));
    assert!(scheduled.text.contains(CORPUS), "{}", scheduled.text);
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/drill");
    let asked = expect_text(&stub, g, n, "Restore drill #2 PASSED").await;
    assert!(asked.text.contains(CORPUS), "{}", asked.text);
    let started = stub
        .messages(g.id)
        .into_iter()
        .filter(|m| m.text.contains("Restore drill #"))
        .map(|m| m.text)
        .collect::<Vec<_>>();
    assert!(
        started.iter().any(|t| t.contains("#1</b> (scheduled)"))
            && started.iter().any(|t| t.contains("#2</b> (asked by")),
        "{started:?}"
    );
    let s = settings(&dir);
    assert!(holds_nothing(&s, &dir, SCRATCH_ACCOUNT).await);
}
