//! Hostile input and careless set-ups, through the bot as it runs: what a spreadsheet opens is
//! inert, user text cannot turn the reader's line around, a flood cannot silence the group,
//! secrets left open are refused, restore requests end, and one bot runs per database.

use crate::support::*;

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("a CSV row").iter().map(str::to_owned).collect())
        .collect()
}

fn assert_inert(rows: &[Vec<String>]) {
    for cell in rows.iter().flatten() {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "a cell a spreadsheet would run: {cell:?}"
        );
        assert!(
            !cell.contains("&amp;") && !cell.contains("&lt;"),
            "HTML in a CSV cell: {cell:?}"
        );
        assert!(!cell.contains('\u{202E}'), "a bidi override in {cell:?}");
    }
}

#[tokio::test]
async fn hostile_names_and_notes_are_plain_text_in_the_export_and_isolated_in_messages() {
    let (mut team, stub, db, env) = scene("id").await.parts();
    team.kasubdit.first_name = "=HYPERLINK(\"http://evil.example\",\"klik\")".into();
    team.kasi.first_name = "Joko & <Tim IT>".into();
    team.jfu.first_name = "Budi\u{202E}kcatta".into();
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;
    stub.say(
        g,
        &team.kasubdit,
        "/order_backup bulanan \u{202E}gnirut ,kcatta",
    );
    let ordered = expect_text(&stub, g, 0, "Perintah backup mailbox #1").await;
    assert!(
        ordered.text.contains("bulanan gnirut ,kcatta"),
        "{}",
        ordered.text
    );
    stub.say(g, &team.kasi, "/direct @budi_jfu");
    expect_text(&stub, g, 0, "mendisposisikan perintah #1").await;
    stub.say(g, &team.jfu, "/start");
    expect_text(&stub, g, 0, "Laporan backup #1").await;
    stub.say(g, &team.kasi, "/receive");
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
    wait_until(
        &db,
        "SELECT count(*) FROM orders WHERE status = 'logged'",
        "order 1 logged",
    )
    .await;
    stub.say(g, &team.kasubdit, "/status");
    expect_text(&stub, g, 0, "Budikcatta").await;
    let sent = stub.messages(g.id);
    assert!(
        sent.iter().all(|m| !m.text.contains('\u{202E}')),
        "a right-to-left override reached the group:\n{}",
        stub.transcript(g.id)
    );

    stub.say(g, &team.kasi, "/export");
    let csv = exported_csv(&stub, g).await.text.expect("the CSV");
    let rows = csv_rows(&csv);
    assert_inert(&rows);
    let actor = |step: &str| {
        rows.iter()
            .find(|r| r[0] == "1" && r[2] == step)
            .map(|r| r[4].clone())
            .expect("the step's row")
    };
    assert_eq!(
        actor("1"),
        "'=HYPERLINK(\"http://evil.example\",\"klik\") (@sri_kasubdit)"
    );
    assert_eq!(actor("2"), "Joko & <Tim IT> (@agus_kasi)");
    assert_eq!(actor("3"), "Budikcatta (@budi_jfu)");

    // The terminal's export is the same.
    let month = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .format("%m-%Y")
        .to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"))
        .args(["export", &month])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs");
    assert!(out.status.success());
    let printed = csv_rows(&String::from_utf8_lossy(&out.stdout));
    assert_inert(&printed);
    assert_eq!(printed.len(), rows.len());
}

/// How many of the bot's messages in the group contain `needle`.
fn said(stub: &bot_api_stub::Stub, chat: i64, needle: &str) -> usize {
    stub.messages(chat)
        .iter()
        .filter(|m| m.text.contains(needle))
        .count()
}

#[tokio::test]
async fn a_second_bot_on_the_same_database_stands_by_and_takes_over_when_the_first_dies() {
    let (team, stub, _db, mut env) = scene("en").await.parts();
    let dir = test_dir("lock");
    use_engine(&mut env, &dir);
    let g = &team.group;
    let mut first = BotProcess::start_logging(&env, Some(&dir.join("first.log")));
    stub.say(g, &team.kasubdit, "/help");
    expect_text(&stub, g, 0, "/order_backup").await;
    let second_log = dir.join("second.log");
    let _second = BotProcess::start_logging(&env, Some(&second_log));
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&second_log)
        .unwrap_or_default()
        .contains("standing by")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the second bot never said it stands by:\n{}",
            std::fs::read_to_string(&second_log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Only one of them answers.
    stub.say(g, &team.kasubdit, "/status");
    expect_text(&stub, g, 0, "no active backup order").await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        said(&stub, g.id, "no active backup order"),
        1,
        "{}",
        stub.transcript(g.id)
    );

    // The first dies the hard way: the second takes over within seconds.
    first.kill();
    let killed = std::time::Instant::now();
    stub.say(g, &team.kasubdit, "/status");
    stub.wait_for(g.id, WAIT, |m| {
        m.iter()
            .filter(|m| m.text.contains("no active backup order"))
            .count()
            == 2
    })
    .await
    .unwrap_or_else(|_| panic!("nobody took over:\n{}", stub.transcript(g.id)));
    let took = killed.elapsed();
    eprintln!("the standby answered {took:?} after the first bot was killed");
    assert!(
        std::fs::read_to_string(&second_log)
            .unwrap_or_default()
            .contains("takes over"),
        "{}",
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
}

/// The mode bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test]
async fn careless_setups_are_refused_and_backups_are_private_whatever_the_umask() {
    use crate::procedure::{dated_folder, engine_env, terminal};
    let dir = test_dir("careless");
    let root = dir.join("maildirs");
    let cur = root.join("ani").join("cur");
    std::fs::create_dir_all(&cur).expect("maildir");
    std::fs::write(cur.join("1.msg:2,S"), "Subject: a\r\n\r\nisi\r\n").expect("message");
    let mut env = engine_env(&dir);
    set(&mut env, "MAIL_BACKUP_KIND", "maildir");
    set(&mut env, "MAILDIR_ROOT", &root.to_string_lossy());
    // The SSH key as a careless admin copies it: readable by everyone.
    let key = dir.join("key");
    std::fs::copy(crate::support::env("MAIL_SSH_KEY"), &key).expect("copy the key");
    chmod(&key, 0o644);
    let team = Team::new();
    let settings: Vec<(String, String)> = team
        .env(&start_stub(&team).await, &database_url(), "en")
        .into_iter()
        .chain(env.iter().cloned())
        .filter(|(k, _)| k != "MAIL_SSH_KEY")
        .chain([(
            "MAIL_SSH_KEY".to_owned(),
            key.to_string_lossy().into_owned(),
        )])
        .collect();
    // Everything in a .env of mode 0666, none of it in the environment.
    let dot_env = dir.join(".env");
    let text: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&dot_env, &text).expect(".env");
    chmod(&dot_env, 0o666);
    let clean: Vec<(String, String)> = settings
        .iter()
        .map(|(k, _)| (k.clone(), String::new()))
        .collect();
    let bin = env!("CARGO_BIN_EXE_mailbox-backup-bot");
    let run_with = |args: &[&str]| {
        let mut c = std::process::Command::new(bin);
        c.arg("--env-file").arg(&dot_env).args(args);
        for (k, _) in &clean {
            c.env_remove(k);
        }
        c.env_remove("DATABASE_URL");
        let out = c.output().expect("the binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, said) = run_with(&["run"]);
    assert_eq!(code, Some(78), "{said}");
    assert!(
        said.contains(".env") && said.contains("0666") && said.contains("chmod 600"),
        "{said}"
    );
    let (code, said) = run_with(&["check"]);
    assert_ne!(code, Some(0), "{said}");
    assert!(
        said.contains("FAIL .env file private to its owner")
            && said.contains("FAIL MAIL_SSH_KEY file private to its owner"),
        "{said}"
    );
    // Fixed, run gets past the modes (and then fails only on what this test did not set up).
    chmod(&dot_env, 0o600);
    chmod(&key, 0o600);
    let (_, said) = run_with(&["check"]);
    assert!(
        said.contains("PASS .env file private to its owner")
            && said.contains("PASS MAIL_SSH_KEY file private to its owner"),
        "{said}"
    );

    // Settings that only work by accident are refused with their name.
    for (var, value) in [
        ("TELEGRAM_MESSAGES_PER_MINUTE", "0"),
        ("LOCAL_BACKUP_ROOT", "../local"),
        ("MAIL_SSH_STALL_SECS", "999999"),
    ] {
        let mut bad = settings.clone();
        set(&mut bad, var, value);
        let (ok, said) = terminal(&["check"], &bad);
        assert!(
            !ok && said.contains(&format!("FAIL setting {var}")),
            "{var}: {said}"
        );
        let (ok, said) = terminal(&["run"], &bad);
        assert!(!ok && said.contains(var), "{var}: {said}");
    }

    // A backup from a shell with umask 022: the dated folder 0700, every file in it 0600.
    let out = std::process::Command::new("sh")
        .args(["-c", "umask 022; exec \"$0\" backup", bin])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = dated_folder(&dir.join("local")).expect("the dated folder");
    assert_eq!(mode(&local), 0o700);
    let files: Vec<_> = std::fs::read_dir(&local)
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[tokio::test]
async fn a_flood_of_junk_commands_does_not_hold_up_the_kasubdits_status() {
    let (team, stub, _db, mut env) = scene("en").await.parts();
    // Telegram's own limit for a group, as the bot keeps it in the field.
    set(&mut env, "TELEGRAM_MESSAGES_PER_MINUTE", "20");
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;
    let strangers: Vec<bot_api_stub::Person> = (0..10)
        .map(|i| bot_api_stub::Person::new(6_000_000_000 + i, "Spam", &format!("spam{i}")))
        .collect();
    // 200 commands in 10 s: most from one person without a role, some from nine others.
    for i in 0..200 {
        let who = if i % 4 == 0 {
            &strangers[1 + (i / 4) % 9]
        } else {
            &strangers[0]
        };
        stub.say(g, who, "/order_backup");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let asked = std::time::Instant::now();
    stub.say(g, &team.kasubdit, "/status");
    expect_text(&stub, g, 0, "no active backup order").await;
    let waited = asked.elapsed();
    eprintln!("after 200 junk commands in 10 s, /status was answered in {waited:?}");
    assert!(
        waited < std::time::Duration::from_secs(15),
        "the Kasubdit waited {waited:?}"
    );
    let refusals = stub
        .messages(g.id)
        .iter()
        .filter(|m| m.text.contains("Only the"))
        .count();
    assert!(
        (1..=3).contains(&refusals),
        "{refusals} refusals:\n{}",
        stub.transcript(g.id)
    );
}

#[tokio::test]
async fn two_role_holders_flooding_do_not_hold_up_the_kasubdits_status() {
    use mailbox_backup_bot::domain::flood::BACKLOG;
    let (team, stub, _db, mut env) = scene("en").await.parts();
    // Telegram's own limit for a group, as the bot keeps it in the field.
    set(&mut env, "TELEGRAM_MESSAGES_PER_MINUTE", "20");
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;
    // 240 commands in about 6 s from the two JFUs, each refused to them.
    let started = std::time::Instant::now();
    for _ in 0..120 {
        for jfu in [&team.jfu, &team.jfu2] {
            stub.say(g, jfu, "/order_backup");
            tokio::time::sleep(std::time::Duration::from_millis(12)).await;
        }
    }
    let flooded = started.elapsed();
    let asked = std::time::Instant::now();
    stub.say(g, &team.kasubdit, "/status");
    expect_text(&stub, g, 0, "no active backup order").await;
    let waited = asked.elapsed();
    eprintln!(
        "after 240 junk commands from two JFUs in {flooded:?}, /status was answered in {waited:?}"
    );
    assert!(
        waited < std::time::Duration::from_secs(5),
        "the Kasubdit waited {waited:?}:\n{}",
        stub.transcript(g.id)
    );
    // What was admitted is answered, then the group goes quiet: nothing piles up.
    let mut seen = stub.messages(g.id).len();
    loop {
        // Longer than the pace's few seconds between messages.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let now = stub.messages(g.id).len();
        if now == seen {
            break;
        }
        seen = now;
    }
    let refusals = said(&stub, g.id, "Only the");
    // Each JFU's backlog, and what the group took while they flooded (a burst, then one every
    // few seconds).
    let sendable = 2 + (flooded.as_secs_f64() / 3.0).ceil() as usize;
    assert!(
        refusals <= 2 * BACKLOG + sendable,
        "{refusals} refusals:\n{}",
        stub.transcript(g.id)
    );
    let slow_down = said(&stub, g.id, "too many commands");
    assert_eq!(slow_down, 2, "{}", stub.transcript(g.id));
    for jfu in ["budi_jfu", "dewi_jfu"] {
        assert!(
            stub.messages(g.id)
                .iter()
                .any(|m| m.text.contains("too many commands") && m.text.contains(jfu)),
            "{jfu} was not told:\n{}",
            stub.transcript(g.id)
        );
    }
    assert_eq!(
        stub.messages(g.id).len(),
        refusals + slow_down + 1,
        "{}",
        stub.transcript(g.id)
    );
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A copy of backup folder `from` at `to`, as a forger would make it: the bot's marker, index and
/// sums copied, `account`'s archive replaced by `forged` and its lines rewritten to match.
pub(crate) fn forge(from: &std::path::Path, to: &std::path::Path, account: &str, forged: &[u8]) {
    std::fs::create_dir_all(to).expect("forged folder");
    for e in std::fs::read_dir(from).expect("list").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
    let file = format!("{account}.tar.gz");
    std::fs::write(to.join(&file), forged).expect("forged archive");
    let sha = sha256_hex(forged);
    let sums: String = std::fs::read_to_string(to.join("SHA256SUMS"))
        .expect("sums")
        .lines()
        .map(|l| {
            if l.ends_with(&format!("  {file}")) {
                format!("{sha}  {file}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(to.join("SHA256SUMS"), sums).expect("sums");
    let index = std::fs::read_to_string(to.join(".verified")).expect("index")
        + &format!("{sha} {} {file}\n", forged.len());
    std::fs::write(to.join(".verified"), index).expect("index");
}

#[tokio::test]
async fn a_restore_takes_only_a_folder_the_bot_made_and_verified_on_dovecot() {
    let account = "ani@djki.go.id";
    let (team, stub, db, mut env) = scene("id").await.parts();
    let dir = test_dir("forged");
    use_engine(&mut env, &dir);
    let _bot = BotProcess::start(&env);
    let folder = crate::restore_chat::backup_through_the_chat(&stub, &team, &db).await;
    let root = dir.join("local");
    let real = root.join(&folder);
    let g = &team.group;
    let ask = |args: String| {
        let n = stub.messages(g.id).len();
        stub.say(g, &team.kasi, &format!("/restore {args}"));
        n
    };

    // A planted folder outside the backup disk, linked in under a dated name.
    let outside = dir.join("outside").join("30-02-2026");
    forge(
        &real,
        &outside,
        account,
        b"SEGERA: transfer dana ke rekening ...",
    );
    std::os::unix::fs::symlink(&outside, root.join("30-02-2026")).expect("symlink");
    let n = ask(format!("30-02-2026 {account}"));
    expect_text(&stub, g, n, "bukan folder backup buatan bot").await;
    // A path, absolute or relative, is not a folder name.
    let n = ask(format!("{} {account}", outside.display()));
    expect_text(&stub, g, n, "bukan nama folder bertanggal").await;
    let n = ask(format!("../local/{folder} {account}"));
    expect_text(&stub, g, n, "bukan nama folder bertanggal").await;
    // A real folder on the disk, marker, index and sums all consistent, that no order made.
    forge(&real, &root.join("31-02-2026"), account, b"forged mail");
    let n = ask(format!("31-02-2026 {account}"));
    expect_text(
        &stub,
        g,
        n,
        "tidak ada perintah backup yang mencatat arsip terverifikasi",
    )
    .await;
    // At the terminal too, unless the admin says the folder is one no order recorded.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"))
        .args([
            "restore",
            "31-02-2026",
            account,
            "--into",
            "restore1@djki.go.id",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("no backup order recorded"),
        "{said}"
    );
    // The real archive replaced by other bytes of the same size.
    let archive = real.join(format!("{account}.tar.gz"));
    let original = std::fs::read(&archive).expect("archive");
    std::fs::write(&archive, vec![0u8; original.len()]).expect("tamper");
    let n = ask(format!("{folder} {account}"));
    expect_text(&stub, g, n, "tidak cocok dengan SHA-256").await;
    std::fs::write(&archive, &original).expect("put back");
    // A target that does not exist is named when asked, not after an approval.
    let n = ask(format!("{folder} {account} ghost@djki.go.id"));
    expect_text(&stub, g, n, "tidak ada di server mail").await;

    // The real request into another account: the facts, and a plain warning.
    let n = ask(format!("{folder} {account} restore1@djki.go.id"));
    let asked = expect_text(&stub, g, n, "Permintaan pemulihan #1").await;
    let text = asked.plain_text();
    for needle in [
        "perintah #1",
        "dijalankan oleh Budi",
        "pesan, terverifikasi",
        "Perhatian: surat milik ani@djki.go.id akan dimasukkan ke mailbox akun lain, restore1@djki.go.id",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/restore batal");
    expect_text(&stub, g, n, "menarik permintaan pemulihan #1").await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM restores").await,
        1,
        "only the real request was recorded"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM restores WHERE status <> 'withdrawn'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn restore_requests_end_by_withdrawal_expiry_or_refusal_when_nobody_can_decide_on_dovecot() {
    let account = "ani@djki.go.id";
    let (team, stub, db, mut env) = scene("en").await.parts();
    let dir = test_dir("rends");
    use_engine(&mut env, &dir);
    set(&mut env, "RESTORE_REQUEST_EXPIRY_SECS", "10");
    // The Kasubdit is also a Kasi, and the only Kasubdit.
    set(
        &mut env,
        "KASI_IDS",
        &format!("{},{}", team.kasi.id, team.kasubdit.id),
    );
    let _bot = BotProcess::start(&env);
    let folder = crate::restore_chat::backup_through_the_chat(&stub, &team, &db).await;
    let g = &team.group;
    let ask = format!("/restore {folder} {account}");

    // Nobody but the asker could decide: refused at once, nothing waits.
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasubdit, &ask);
    expect_text(&stub, g, n, "No Kasubdit other than you can approve").await;
    assert_eq!(count(&db, "SELECT count(*) FROM restores").await, 0);

    // Withdrawn by the asker; a JFU may not.
    stub.say(g, &team.kasi, &ask);
    let asked = expect_text(&stub, g, n, "Restore request #1").await;
    stub.say(g, &team.jfu, "/restore cancel");
    expect_text(&stub, g, n, "Only the asker or a Kasubdit may withdraw").await;
    stub.say(g, &team.kasi, "/restore cancel");
    expect_text(&stub, g, n, "withdrew restore request #1").await;
    stub.press(g, &team.kasubdit, asked.message_id, "restore:1:ok")
        .expect("press");
    stub.wait_for(g.id, WAIT, |_| {
        stub.callback_answers()
            .iter()
            .any(|a| a.text.as_deref() == Some("This request was withdrawn."))
    })
    .await
    .unwrap_or_else(|_| panic!("{:?}", stub.callback_answers()));

    // Left alone, the next one expires with a message, and the way is free again.
    stub.say(g, &team.kasi, &ask);
    expect_text(&stub, g, n, "Restore request #2").await;
    stub.wait_for_text(g.id, n, "Restore request #2 expired", WAIT * 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stub.say(g, &team.kasi, &ask);
    expect_text(&stub, g, n, "Restore request #3").await;
    // A Kasubdit may withdraw someone else's request.
    stub.say(g, &team.kasubdit, "/restore cancel");
    expect_text(&stub, g, n, "withdrew restore request #3").await;
    stub.say(g, &team.kasi, "/restore cancel");
    expect_text(&stub, g, n, "No restore request is waiting").await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM restores WHERE status IN ('running', 'done', 'failed')"
        )
        .await,
        0,
        "nothing ran"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM restores WHERE status = 'expired'"
        )
        .await,
        1
    );
}
