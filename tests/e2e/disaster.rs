//! The day the server dies: accounts rebuilt from a dated folder's account directory. Dovecot
//! with Sieve (its own instance, started by `scripts/test`): a user with a real password hash,
//! mail and a filter is backed up, wiped from the server (its passwd-file line and its mail), and
//! rebuilt — then logs in over IMAP with the old password and finds every message.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::engine::{backup, settings};
use crate::imap::Imap;
use crate::support::{doveadm_on, env, folder_name, test_dir};

use mailbox_backup_bot::config::{BackupKind, MailStore};
use mailbox_backup_bot::engine::files::DIRECTORY_FILE as FILE;
use mailbox_backup_bot::engine::rebuild;
use mailbox_backup_bot::engine::restore::restore;
use mailbox_backup_bot::engine::MailboxStatus;

const USER: &str = "hilang@djki.go.id";
const PASSWORD: &str = "sandi-lama-2026";
const FILTER: &str = "require \"fileinto\";\nif header :contains \"subject\" \"[arsip]\" {\n  fileinto \"Arsip\";\n}\n";

fn users_file(conf: &str) -> std::path::PathBuf {
    Path::new(conf).with_file_name("users")
}

/// The users file without `user`'s line, and `user`'s mail gone: the server as after the disk
/// died and the admin rebuilt Dovecot's configuration with the other users.
fn wipe(conf: &str, user: &str) {
    let file = users_file(conf);
    let kept: String = std::fs::read_to_string(&file)
        .expect("users file")
        .lines()
        .filter(|l| !l.starts_with(&format!("{user}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, kept).expect("users file written");
    let _ = std::fs::remove_dir_all(Path::new(conf).with_file_name("mail").join(user));
}

fn knows(conf: &str, user: &str) -> bool {
    std::process::Command::new("doveadm")
        .args(["-c", conf, "user", user])
        .output()
        .expect("doveadm")
        .status
        .success()
}

/// Dovecot reads a changed passwd-file again at most once a second: waits (3 s at most) until
/// it sees `user` as `known`.
fn settle(conf: &str, user: &str, known: bool) {
    for _ in 0..30 {
        if knows(conf, user) == known {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "{user} is still {}",
        if known { "unknown" } else { "known" }
    );
}

/// `USER` with a SHA512-CRYPT password, five messages in two folders and an active filter.
fn make_user(conf: &str) -> String {
    wipe(conf, USER);
    let out = std::process::Command::new("doveadm")
        .args(["pw", "-s", "SHA512-CRYPT", "-p", PASSWORD])
        .output()
        .expect("doveadm pw");
    let hash = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{hash}");
    let mut users = std::fs::read_to_string(users_file(conf)).expect("users");
    users.push_str(&format!("{USER}:{hash}::::::\n"));
    std::fs::write(users_file(conf), users).expect("users written");
    settle(conf, USER, true);
    doveadm_on(
        conf,
        &["mailbox", "create", "-s", "-u", USER, "Arsip"],
        None,
    );
    for (i, folder) in ["INBOX", "INBOX", "INBOX", "Arsip", "Arsip"]
        .iter()
        .enumerate()
    {
        let msg = format!(
            "From: kasi@djki.go.id\r\nTo: {USER}\r\nSubject: surat {i}\r\nMessage-ID: <{i}.{}@dr>\r\n\r\nisi surat {i} untuk {USER}\r\n",
            std::process::id()
        );
        doveadm_on(
            conf,
            &["save", "-u", USER, "-m", folder],
            Some(msg.as_bytes()),
        );
    }
    doveadm_on(
        conf,
        &["sieve", "put", "-u", USER, "-a", "saring"],
        Some(FILTER.as_bytes()),
    );
    hash
}

#[tokio::test]
async fn a_dovecot_user_wiped_from_the_server_comes_back_with_its_old_password_filter_and_mail() {
    let conf = env("TEST_DOVECOT_DR_CONF");
    let port: u16 = env("TEST_DOVECOT_DR_IMAP_PORT").parse().expect("port");
    let dir = test_dir("dr-dovecot");
    let hash = make_user(&conf);
    let original = Imap::login(port, USER, PASSWORD).contents();
    assert_eq!(
        original.values().map(Vec::len).sum::<usize>(),
        5,
        "{original:?}"
    );

    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Dovecot {
            config: Some(conf.clone()),
        }),
    );
    let report = backup(&s, None).await.expect("the backup runs");
    assert!(report.all_verified(), "{report:?}");
    let d = report.directory.as_deref().expect("a directory capture");
    assert_eq!(d.status, MailboxStatus::Verified);
    assert!(d.counts.names.iter().any(|n| n == USER), "{d:?}");
    assert_eq!(d.counts.accounts, 4, "asal, pulih, ulang and hilang: {d:?}");
    assert_eq!(d.counts.passwords, 4, "{d:?}");
    assert_eq!(d.counts.filters, 1, "{d:?}");
    assert!(d.counts.not_captured.is_empty(), "{d:?}");
    // The capture is the owner's alone, listed in SHA256SUMS; the hash is in no record.
    let folder = folder_name(&report);
    let local = dir.join("local").join(&folder);
    let mode = std::fs::metadata(local.join(FILE))
        .expect("capture")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let sums = std::fs::read_to_string(local.join("SHA256SUMS")).expect("sums");
    assert!(sums.contains(&format!("{}  {FILE}", d.sha256)), "{sums}");
    let recorded = serde_json::to_string(&report).expect("json");
    assert!(
        !recorded.contains(&hash[15..]),
        "no password hash in the report"
    );

    // The disk died: the user is gone from the server, with its mail.
    wipe(&conf, USER);
    settle(&conf, USER, false);
    let users_before = std::fs::read_to_string(users_file(&conf)).expect("users");

    // A dry run says what it would do and changes nothing.
    let (capture, _) = rebuild::read_capture(&s, &folder).expect("the capture reads back");
    let plan = rebuild::plan(&s, &capture, &folder, USER)
        .await
        .expect("plan");
    assert!(!plan.exists);
    let users_path = users_file(&conf).to_string_lossy().into_owned();
    assert_eq!(
        plan.entries,
        [(
            users_path.clone(),
            vec!["passdb".to_owned(), "userdb".to_owned()]
        )]
    );
    assert_eq!(plan.filters, [("saring".to_owned(), true)]);
    assert_eq!(
        std::fs::read_to_string(users_file(&conf)).expect("users"),
        users_before
    );
    assert!(!knows(&conf, USER));

    // Rebuilt: the same line back, then the filter, then the mail.
    let (_, done) = rebuild::rebuild(&s, &capture, &folder, USER)
        .await
        .expect("rebuilt");
    assert_eq!(done.entries_added, [users_path]);
    assert_eq!(done.filters_added, ["saring"]);
    assert!(std::fs::read_to_string(users_file(&conf))
        .expect("users")
        .contains(&format!("{USER}:{hash}::::::\n")));
    let restored = restore(&s, &folder, USER, None, None, |_| {})
        .await
        .expect("the mail comes back");
    assert!(restored.complete(), "{restored:?}");
    assert_eq!(restored.restored(), 5);
    let filter = std::process::Command::new("doveadm")
        .args([
            "-c", &conf, "-f", "pager", "sieve", "get", "-u", USER, "saring",
        ])
        .output()
        .expect("sieve get");
    assert!(
        String::from_utf8_lossy(&filter.stdout).contains("fileinto \"Arsip\";"),
        "{filter:?}"
    );
    let listed = std::process::Command::new("doveadm")
        .args(["-c", &conf, "sieve", "list", "-u", USER])
        .output()
        .expect("sieve list");
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "saring ACTIVE\n");

    // The user logs in with the old password and finds every message with its flags.
    assert_eq!(Imap::login(port, USER, PASSWORD).contents(), original);

    // Run again (a cut-off rebuild run a second time): nothing is added twice.
    let (plan, again) = rebuild::rebuild(&s, &capture, &folder, USER)
        .await
        .expect("again");
    assert!(plan.exists);
    assert!(again.entries_added.is_empty() && again.filters_added.is_empty());
    assert_eq!(again.filters_kept, ["saring"]);
    let users = std::fs::read_to_string(users_file(&conf)).expect("users");
    assert_eq!(users.matches(&format!("{USER}:")).count(), 1, "{users}");
    let second = restore(&s, &folder, USER, None, None, |_| {})
        .await
        .expect("again");
    assert_eq!(second.restored(), 0);

    // At the terminal, the whole directory: wiped again, a dry run changes nothing, `--all`
    // rebuilds what is missing and leaves the rest; run a second time, it adds nothing.
    wipe(&conf, USER);
    settle(&conf, USER, false);
    let users_before = std::fs::read_to_string(users_file(&conf)).expect("users");
    let dry = terminal(
        &dir,
        &conf,
        &["restore", &folder, "--all", "--dry-run", "--unrecorded"],
    );
    let would = format!(
        "would create account {USER} in {}",
        users_file(&conf).display()
    );
    assert!(dry.contains(&would), "{dry}");
    assert!(
        dry.contains("would put back mail filter saring (active)"),
        "{dry}"
    );
    assert!(
        dry.contains("4 account(s): 1 would be created, 3 already on the server"),
        "{dry}"
    );
    assert_eq!(
        std::fs::read_to_string(users_file(&conf)).expect("users"),
        users_before
    );
    let all = terminal(&dir, &conf, &["restore", &folder, "--all", "--unrecorded"]);
    assert!(
        all.contains("4 account(s): 1 created, 3 already on the server"),
        "{all}"
    );
    assert!(all.contains("1 mail filter(s) put back"), "{all}");
    assert!(all.contains("5 message(s) added"), "{all}");
    assert_eq!(Imap::login(port, USER, PASSWORD).contents(), original);
    let again = terminal(&dir, &conf, &["restore", &folder, "--all", "--unrecorded"]);
    assert!(
        again.contains("0 created, 4 already on the server"),
        "{again}"
    );
    assert!(again.contains("0 message(s) added"), "{again}");

    // One account at the terminal: `restore FOLDER ACCOUNT --create`, then the old password.
    wipe(&conf, USER);
    settle(&conf, USER, false);
    let create = terminal(
        &dir,
        &conf,
        &["restore", &folder, USER, "--create", "--unrecorded"],
    );
    assert!(
        create.contains(&format!(
            "account {USER} created in {}",
            users_file(&conf).display()
        )) && create.contains("mail filter saring put back")
            && create.contains(&format!("OK: all 5 messages of the backup are in {USER}")),
        "{create}"
    );
    assert_eq!(Imap::login(port, USER, PASSWORD).contents(), original);
    wipe(&conf, USER);
}

/// Runs the binary against the Dovecot at `conf`, with the engine's settings for `dir`; returns
/// what it printed, and fails the test unless it succeeded.
fn terminal(dir: &Path, conf: &str, args: &[&str]) -> String {
    crate::support::printed_ok(crate::support::dovecot_terminal(dir, conf).args(args))
}

/// The Zimbra simulator's state (its directory, its accounts and their mail), put back when
/// dropped, also when the test fails half way: the other Zimbra tests share the simulator (they
/// run one at a time: the test group `zimbra`).
struct SimState {
    sim: std::path::PathBuf,
    directory: String,
    accounts: String,
}

impl SimState {
    fn save() -> SimState {
        let sim = std::path::PathBuf::from(env("TEST_ZIMBRA_SIM"));
        let saved = sim.join("store.saved");
        let _ = std::fs::remove_dir_all(&saved);
        let ok = std::process::Command::new("cp")
            .args([
                "-a",
                &sim.join("store").to_string_lossy(),
                &saved.to_string_lossy(),
            ])
            .status()
            .expect("cp");
        assert!(ok.success());
        SimState {
            directory: std::fs::read_to_string(sim.join("directory.json")).expect("directory"),
            accounts: std::fs::read_to_string(sim.join("accounts")).expect("accounts"),
            sim,
        }
    }

    /// A freshly installed Zimbra: the built-in classes of service, no domain, no account, no
    /// mail (the fixtures' domain and accounts are what the restore must bring back).
    fn empty_server(&self) {
        let mut d: serde_json::Value = serde_json::from_str(&self.directory).expect("json");
        d["domains"] = serde_json::json!({});
        d["accounts"] = serde_json::json!({});
        d["lists"] = serde_json::json!({});
        d["signatures"] = serde_json::json!({});
        d["identities"] = serde_json::json!({});
        d["cos"] = serde_json::json!({ "default": d["cos"]["default"].clone() });
        std::fs::write(self.sim.join("directory.json"), d.to_string()).expect("directory");
        std::fs::write(self.sim.join("accounts"), "").expect("accounts");
        for e in std::fs::read_dir(self.sim.join("store"))
            .expect("store")
            .flatten()
        {
            std::fs::remove_dir_all(e.path()).expect("store emptied");
        }
    }
}

impl Drop for SimState {
    fn drop(&mut self) {
        let _ = std::fs::write(self.sim.join("directory.json"), &self.directory);
        let _ = std::fs::write(self.sim.join("accounts"), &self.accounts);
        let _ = std::fs::remove_file(self.sim.join("refuse-create"));
        let store = self.sim.join("store");
        for e in std::fs::read_dir(&store).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
        for e in std::fs::read_dir(self.sim.join("store.saved"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::rename(e.path(), store.join(e.file_name()));
        }
        let _ = std::fs::remove_dir_all(self.sim.join("store.saved"));
    }
}

/// Every message file under `dir` (an account's Maildir), its bytes, sorted; Trash and Junk are
/// left out (Zimbra's export leaves them out).
fn messages_under(dir: &Path) -> Vec<Vec<u8>> {
    fn walk(p: &Path, out: &mut Vec<Vec<u8>>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".Trash" || name.starts_with(".Trash.") || name == ".Junk" {
                continue;
            }
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(std::fs::read(e.path()).expect("message"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

fn directory_json(sim: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(sim.join("directory.json")).expect("json"))
        .expect("json")
}

/// Runs the binary; returns its exit status and what it printed.
fn terminal_status(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().expect("the binary runs");
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{printed}");
    (out.status.success(), printed)
}

#[tokio::test]
async fn an_empty_zimbra_is_rebuilt_from_one_folder_and_a_cut_off_rebuild_run_again_duplicates_nothing(
) {
    let state = SimState::save();
    let sim = state.sim.clone();
    // Only the accounts the simulator serves whole: the backup verifies every mailbox.
    let served: String = state
        .accounts
        .lines()
        .filter(|l| l.ends_with("\tok") || l.ends_with("\tempty"))
        // The big one only slows the test; the hostile name is refused as a restore target (an
        // account is never a name that starts with "-").
        .filter(|l| !l.starts_with("besar@") && !l.starts_with('-'))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(sim.join("accounts"), &served).expect("accounts");
    let dir = test_dir("dr-zimbra");
    let s = crate::engine::settings(&dir, BackupKind::Mailboxes(MailStore::Zimbra));
    let report = backup(&s, None).await.expect("the backup runs");
    assert!(report.all_verified(), "{report:?}");
    let d = report.directory.as_deref().expect("a directory capture");
    assert_eq!(d.status, MailboxStatus::Verified, "{d:?}");
    let user_accounts: Vec<String> = served
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_owned())
        .filter(|a| !mailbox_backup_bot::engine::zimbra::is_system_account(a))
        .collect();
    assert_eq!(d.counts.names, user_accounts);
    assert_eq!(d.counts.passwords, user_accounts.len() as u64);
    assert_eq!(
        (d.counts.filters, d.counts.lists, d.counts.aliases),
        (1, 1, 1),
        "{d:?}"
    );
    let folder = folder_name(&report);
    let before = directory_json(&sim);
    let saved_store = sim.join("store.saved");

    // The server died; a fresh Zimbra is installed. The first rebuild is cut off at budi.
    state.empty_server();
    std::fs::write(sim.join("refuse-create"), "budi@djki.go.id\n").expect("refuse");
    let (ok, first) = terminal_status(crate::support::zimbra_terminal(&dir).args([
        "restore",
        &folder,
        "--all",
        "--unrecorded",
    ]));
    assert!(!ok, "a rebuild that left an account out fails: {first}");
    assert!(first.contains("FAILED  budi@djki.go.id"), "{first}");
    assert!(
        first.contains("also created: 1 × alias, 1 × signature, 1 × identity, 1 × member of list, 1 × class of service, 1 × domain, 1 × list"),
        "what else was made, counted by kind: {first}"
    );
    assert!(first.contains("simulated outage"), "{first}");
    std::fs::remove_file(sim.join("refuse-create")).expect("outage over");
    let (ok, second) = terminal_status(crate::support::zimbra_terminal(&dir).args([
        "restore",
        &folder,
        "--all",
        "--unrecorded",
    ]));
    assert!(ok, "{second}");
    let n = user_accounts.len();
    assert!(
        second.contains(&format!(
            "{n} account(s): 1 created, {} already on the server",
            n - 1
        )),
        "{second}"
    );

    // Every account back as it was: its password hash, aliases, class of service by name, Sieve
    // script, signatures, identities, lists; and every message, once.
    let after = directory_json(&sim);
    let cos_name = |dir: &serde_json::Value, id: &serde_json::Value| -> Option<String> {
        dir["cos"]
            .as_object()?
            .iter()
            .find(|(_, c)| c["zimbraId"] == *id)
            .map(|(n, _)| n.clone())
    };
    for account in &user_accounts {
        let (was, now) = (&before["accounts"][account], &after["accounts"][account]);
        assert!(now.is_object(), "{account} is back");
        for attr in [
            "userPassword",
            "zimbraMailAlias",
            "zimbraMailSieveScript",
            "displayName",
            "zimbraPrefMailSignature",
            "zimbraSignatureName",
        ] {
            assert_eq!(was[attr], now[attr], "{account} {attr}");
        }
        assert_eq!(
            cos_name(&before, &was["zimbraCOSId"]),
            cos_name(&after, &now["zimbraCOSId"]),
            "{account}'s class of service"
        );
        assert_eq!(
            messages_under(&sim.join("store").join(account)),
            messages_under(&saved_store.join(account)),
            "{account}'s mail"
        );
    }
    assert_eq!(
        before["domains"]["djki.go.id"]["description"],
        after["domains"]["djki.go.id"]["description"]
    );
    for account in &user_accounts {
        for (kind, key) in [
            ("signatures", "zimbraSignatureName"),
            ("identities", "zimbraPrefIdentityName"),
        ] {
            assert_eq!(
                names_of(&before[kind][account], key),
                names_of(&after[kind][account], key),
                "{account}'s {kind}"
            );
        }
    }
    let members = |d: &serde_json::Value| -> Vec<String> {
        let mut m: Vec<String> = d["lists"]["semua@djki.go.id"]["zimbraMailForwardingAddress"]
            .as_array()
            .expect("members")
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_owned())
            .collect();
        m.sort();
        m
    };
    let rebuilt = members(&after);
    assert_eq!(rebuilt, members(&before), "every member of the list");
    assert!(
        rebuilt.windows(2).all(|w| w[0] != w[1]),
        "each once: {rebuilt:?}"
    );

    // A third run finds everything there and adds nothing.
    let (ok, third) = terminal_status(crate::support::zimbra_terminal(&dir).args([
        "restore",
        &folder,
        "--all",
        "--unrecorded",
    ]));
    assert!(ok, "{third}");
    assert!(
        third.contains(&format!("{n} account(s): 0 created, {n} already")),
        "{third}"
    );
    assert!(third.contains("0 message(s) added"), "{third}");
    assert_eq!(directory_json(&sim)["lists"], after["lists"]);
    drop(state);
}

#[tokio::test]
async fn a_dovecot_account_gone_from_the_server_is_made_again_when_a_kasubdit_approves_its_restore()
{
    use crate::support::{expect_text, scene, use_engine_on, BotProcess, WAIT};
    let conf = env("TEST_DOVECOT_DR_CONF");
    let port: u16 = env("TEST_DOVECOT_DR_IMAP_PORT").parse().expect("port");
    let (team, stub, db, mut env_vars) = scene("id").await.parts();
    let dir = test_dir("dr-chat");
    use_engine_on(&mut env_vars, &dir, &conf);
    let hash = make_user(&conf);
    let original = Imap::login(port, USER, PASSWORD).contents();
    let _bot = BotProcess::start(&env_vars);
    let folder = crate::restore_chat::backup_through_the_chat(&stub, &team, &db).await;
    let report = stub
        .messages(team.group.id)
        .into_iter()
        .find(|m| m.text.contains("Laporan backup #1"))
        .expect("the report");
    assert!(
        report
            .text
            .contains("🗂 Direktori akun: 4 akun, 4 dengan sandi, 1 filter surat"),
        "{}",
        report.text
    );

    // The account is gone from the server: the request says it will be made again, and how.
    wipe(&conf, USER);
    settle(&conf, USER, false);
    let g = &team.group;
    stub.say(g, &team.kasi, &format!("/restore {folder} {USER}"));
    let asked = expect_text(&stub, g, 0, "Permintaan pemulihan #1").await;
    assert!(
        asked
            .text
            .contains("<b>tidak ada</b> di server mail: akun itu akan <b>dibuat</b>")
            && asked.text.contains("dengan sandi lamanya (filter saring)"),
        "{}",
        asked.text
    );
    assert!(!asked.text.contains(&hash[15..]), "no hash in the chat");
    assert!(!knows(&conf, USER), "asking changes nothing");
    let (mid, _) = crate::restore_chat::buttons_of(&stub, &team, "Permintaan pemulihan #1");
    stub.press(g, &team.kasubdit, mid, "restore:1:ok")
        .expect("press");
    let done = stub
        .wait_for_text(g.id, 0, "Pemulihan #1 selesai</b>", WAIT * 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        done.text.contains("dibuat lagi dari direktori akun backup"),
        "{}",
        done.text
    );
    // The user logs in with the old password and finds every message.
    assert_eq!(Imap::login(port, USER, PASSWORD).contents(), original);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .expect("db");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM restores WHERE report::text LIKE '%' || $1 || '%' OR coalesce(error, '') LIKE '%' || $1 || '%'",
    )
    .bind(&hash[15..])
    .fetch_one(&mut conn)
    .await
    .expect("query");
    assert_eq!(stored, 0, "no hash in the database");

    // The whole folder: gone again, `/restore FOLDER semua` says what the directory holds and
    // that what exists stays; approved, it makes the missing account and restores every mailbox.
    wipe(&conf, USER);
    settle(&conf, USER, false);
    stub.say(g, &team.kasi, &format!("/restore {folder} semua"));
    let asked = expect_text(&stub, g, 0, "Permintaan pemulihan #2").await;
    assert!(
        asked.text.contains("<b>SEMUA akun</b>")
            && asked
                .text
                .contains("(4 akun, 4 dengan sandi, 1 filter surat)")
            && asked.text.contains("akun yang sudah ada tidak diubah"),
        "{}",
        asked.text
    );
    assert!(!knows(&conf, USER), "asking changes nothing");
    let (mid, _) = crate::restore_chat::buttons_of(&stub, &team, "Permintaan pemulihan #2");
    stub.press(g, &team.kasubdit, mid, "restore:2:ok")
        .expect("press");
    let done = stub
        .wait_for_text(g.id, 0, "Pemulihan #2 selesai</b>", WAIT * 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        done.text.contains("Semua 4 akun backup")
            && done
                .text
                .contains("1 dibuat lagi, 3 sudah ada (tidak diubah)")
            && done.text.contains("5 pesan ditambahkan"),
        "{}",
        done.text
    );
    assert_eq!(Imap::login(port, USER, PASSWORD).contents(), original);
    stub.say(g, &team.kasi, "/log hari ini");
    let log = expect_text(
        &stub,
        g,
        0,
        "<b>Pemulihan #2</b> — selesai: semua akun dari",
    )
    .await;
    assert!(log.text.contains("Log kegiatan harian"), "{}", log.text);
    wipe(&conf, USER);
}

/// Runs one of the simulator's scripts (`realistic.py`, `reinstall.py`) on the shared simulator,
/// and gives the zimbra user its files back (the simulator's zmprov runs as that user).
fn sim_script(sim: &Path, script: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/zimbra-sim")
        .join(script);
    let ok = std::process::Command::new("python3")
        .arg(&path)
        .arg(sim)
        .status()
        .expect("python3");
    assert!(ok.success(), "{script}");
    let ok = std::process::Command::new("chown")
        .args(["-R", "zimbra:zimbra"])
        .args(["directory.json", "accounts", "store"].map(|f| sim.join(f)))
        .status()
        .expect("chown");
    assert!(ok.success());
}

/// The class of service an account has in a directory as the simulator keeps it: its own, else
/// its domain's default, else `default` (LdapProvisioning.createAccount, Provisioning.getCOS).
fn cos_of(dir: &serde_json::Value, account: &str) -> String {
    let name_of = |id: &serde_json::Value| -> Option<String> {
        dir["cos"]
            .as_object()?
            .iter()
            .find(|(_, c)| c["zimbraId"][0] == id[0] || c["zimbraId"][0] == *id)
            .map(|(n, _)| n.clone())
    };
    let a = &dir["accounts"][account];
    let domain = account.rsplit_once('@').map_or("", |(_, d)| d);
    name_of(&a["zimbraCOSId"])
        .or_else(|| name_of(&dir["domains"][domain]["zimbraDomainDefaultCOSId"]))
        .unwrap_or_else(|| "default".into())
}

/// A JSON list of strings as a sorted, lowercased set.
fn set_of(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str())
        .map(str::to_lowercase)
        .collect()
}

fn names_of(v: &serde_json::Value, key: &str) -> std::collections::BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|e| e[key][0].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_realistic_directory_is_rebuilt_onto_a_freshly_installed_zimbra_as_the_server_reads_it_back(
) {
    use mailbox_backup_bot::engine::zimbra::is_system_account as is_zimbra_system_account;
    let state = SimState::save();
    let sim = state.sim.clone();
    sim_script(&sim, "realistic.py");
    let dir = test_dir("dr-fresh");
    let s = crate::engine::settings(&dir, BackupKind::Mailboxes(MailStore::Zimbra));
    let report = backup(&s, None).await.expect("the backup runs");
    assert!(report.all_verified(), "{report:?}");
    let d = report.directory.as_deref().expect("a directory capture");
    assert_eq!(d.status, MailboxStatus::Verified, "{d:?}");
    let folder = folder_name(&report);
    let before = directory_json(&sim);
    let accounts: Vec<String> = before["accounts"]
        .as_object()
        .expect("accounts")
        .keys()
        .filter(|a| !is_zimbra_system_account(a) && *a != "admin@djki.go.id")
        .cloned()
        .collect();
    assert!(
        accounts.iter().any(|a| a == "bagian/umum@djki.go.id"),
        "{accounts:?}"
    );
    let saved_store = sim.join("store.saved.fresh");
    let _ = std::fs::remove_dir_all(&saved_store);
    assert!(std::process::Command::new("cp")
        .args(["-a"])
        .arg(sim.join("store"))
        .arg(&saved_store)
        .status()
        .expect("cp")
        .success());

    // The server is reinstalled: its domain, `default` and its admin, with new ids.
    sim_script(&sim, "reinstall.py");
    let fresh = directory_json(&sim);
    let run = |extra: &[&str]| {
        let mut args = vec!["restore", folder.as_str(), "--all", "--unrecorded"];
        args.extend(extra);
        terminal_status(crate::support::zimbra_terminal(&dir).args(&args))
    };

    // The dry run counts each missing object once and changes nothing.
    let (ok, dry) = run(&["--dry-run"]);
    assert!(ok, "{dry}");
    let lists = before["lists"].as_object().expect("lists").len();
    let list_aliases: usize = before["lists"]
        .as_object()
        .expect("lists")
        .iter()
        .map(|(name, l)| {
            set_of(&l["zimbraMailAlias"])
                .iter()
                .filter(|a| *a != name)
                .count()
        })
        .sum();
    for want in [
        "1 × default class of service of domain".to_owned(),
        "2 × class of service".to_owned(),
        "1 × domain".to_owned(),
        format!("{lists} × list"),
        format!("{list_aliases} × list alias"),
    ] {
        assert!(dry.contains(&want), "{want}: {dry}");
    }
    assert_eq!(directory_json(&sim), fresh, "a dry run changes nothing");

    // One account first, as `--create` makes it: its class of service through its domain, the
    // domain's default class set again, its list made with it.
    let umum = "bagian/umum@djki.go.id";
    let (ok, one) = terminal_status(crate::support::zimbra_terminal(&dir).args([
        "restore",
        &folder,
        umum,
        "--create",
        "--unrecorded",
    ]));
    assert!(ok, "{one}");
    let now = directory_json(&sim);
    assert_eq!(cos_of(&now, umum), "pegawai", "{one}");
    assert!(
        now["lists"]["semua.pegawai@djki.go.id"].is_object(),
        "{one}"
    );
    assert!(
        one.contains(&format!("OK: all 3 messages of the backup are in {umum}")),
        "{one}"
    );

    // The rebuild: every other account, with what it had, and its mail.
    let (ok, first) = run(&[]);
    assert!(ok, "{first}");
    let n = accounts.len();
    assert!(
        first.contains(&format!("account(s): {} created", n - 1)),
        "every account is made, and said so: {first}"
    );
    // What was fitted to the new server is said where it was made.
    let both = format!("{one}{first}");
    assert!(
        both.contains("zimbraMailHostPool) mapped by server name"),
        "{both}"
    );
    assert!(both.contains("GAL sync account"), "{both}");
    let filters = accounts
        .iter()
        .filter(|a| before["accounts"][a.as_str()]["zimbraMailSieveScript"].is_array())
        .count();
    assert!(
        first.contains(&format!("{filters} mail filter(s) put back")),
        "the filters the server has: {first}"
    );
    let after = directory_json(&sim);
    for account in &accounts {
        let (was, now) = (&before["accounts"][account], &after["accounts"][account]);
        assert!(now.is_object(), "{account} is back");
        for attr in ["userPassword", "zimbraMailSieveScript", "displayName", "cn"] {
            assert_eq!(was[attr], now[attr], "{account} {attr}");
        }
        assert_eq!(
            set_of(&was["zimbraMailAlias"]),
            set_of(&now["zimbraMailAlias"]),
            "{account}'s aliases"
        );
        assert_eq!(
            cos_of(&before, account),
            cos_of(&after, account),
            "{account}'s class of service"
        );
        for (kind, key) in [
            ("signatures", "zimbraSignatureName"),
            ("identities", "zimbraPrefIdentityName"),
        ] {
            assert_eq!(
                names_of(&before[kind][account], key),
                names_of(&after[kind][account], key),
                "{account}'s {kind}"
            );
        }
        assert_eq!(
            messages_under(&sim.join("store").join(account)),
            messages_under(&saved_store.join(account)),
            "{account}'s mail"
        );
    }
    for (name, list) in before["lists"].as_object().expect("lists") {
        let now = &after["lists"][name];
        assert!(now.is_object(), "list {name} is back");
        for attr in ["zimbraMailAlias", "zimbraMailForwardingAddress"] {
            assert_eq!(
                set_of(&list[attr]),
                set_of(&now[attr]),
                "list {name}: {attr}"
            );
        }
    }
    for (name, _) in before["domains"].as_object().expect("domains") {
        let default = |d: &serde_json::Value| {
            cos_of(
                &serde_json::json!({"cos": d["cos"], "domains": d["domains"], "accounts": {}}),
                &format!("nobody@{name}"),
            )
        };
        assert_eq!(
            default(&before),
            default(&after),
            "domain {name}'s default class of service"
        );
    }

    // A second run changes nothing and says so.
    let (ok, second) = run(&[]);
    assert!(ok, "{second}");
    assert!(second.contains("account(s): 0 created"), "{second}");
    assert!(second.contains("0 message(s) added"), "{second}");
    let again = directory_json(&sim);
    for part in [
        "accounts",
        "lists",
        "cos",
        "domains",
        "signatures",
        "identities",
    ] {
        assert_eq!(again[part], after[part], "{part} unchanged by a second run");
    }
    let _ = std::fs::remove_dir_all(&saved_store);
    drop(state);
}
