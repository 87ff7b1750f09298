//! Bad input gets a clear answer and changes nothing; a verified backup is not cancelled; a group
//! upgraded to a supergroup is followed. Through the bot's real HTTP client and PostgreSQL.

use std::sync::Arc;

use bot_api_stub::Chat;
use sqlx::Connection;

use crate::support::*;

#[tokio::test]
async fn malformed_suffixes_are_ignored_and_bad_notes_refused_with_nothing_stored() {
    let (team, stub, db, env) = scene("id").await.parts();
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;

    for text in [
        "/order_backup@djki_backup_bot@x",
        "/order_backup@",
        "/order_backup@other_bot",
        "/start@djki_backup_bot@djki_backup_bot",
    ] {
        stub.say(g, &team.kasubdit, text);
    }
    stub.say(g, &team.kasubdit, "/order_backup backup\0bulanan");
    let nul = expect_text(&stub, g, 0, "karakter kontrol").await;
    assert!(nul.text.contains("U+0000"), "{}", nul.text);
    let long = "x".repeat(5000);
    stub.say(g, &team.kasubdit, &format!("/order_backup {long}"));
    let refused = expect_text(&stub, g, 1, "terlalu panjang").await;
    assert!(
        refused.text.contains("5000") && refused.text.contains("500 karakter"),
        "{}",
        refused.text
    );
    stub.say(g, &team.kasi, "/cancel salah\u{1}ketik");
    expect_text(&stub, g, 2, "U+0001").await;
    // Updates of one chat are handled in order: the help answers after everything above.
    stub.say(g, &team.kasubdit, "/help");
    expect_text(&stub, g, 3, "/order_backup").await;
    let said: Vec<String> = stub.messages(g.id).into_iter().map(|m| m.text).collect();
    assert_eq!(
        said.len(),
        4,
        "the malformed commands got no answer: {said:#?}"
    );
    assert!(
        said.iter().all(|t| !t.contains("kesalahan internal")),
        "{said:#?}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 0);

    // A note of exactly 500 characters, with a line break, is kept as written.
    let note = format!("baris satu\n{}", "é".repeat(489));
    assert_eq!(note.chars().count(), 500);
    stub.say(g, &team.kasubdit, &format!("/order_backup {note}"));
    expect_text(&stub, g, 4, "Perintah backup mailbox #1").await;
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    let stored: String = sqlx::query_scalar("SELECT note FROM orders")
        .fetch_one(&mut conn)
        .await
        .expect("note");
    assert_eq!(stored, note);
}

#[tokio::test]
async fn cancel_after_the_report_is_refused_and_the_backup_waits_for_receive() {
    let (team, stub, db, env) = scene("id").await.parts();
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;
    order_to_report(&stub, &team).await;

    for who in [&team.kasi, &team.kasubdit] {
        let n = stub.messages(g.id).len();
        stub.say(g, who, "/cancel sudah tidak perlu");
        let refused = expect_text(&stub, g, n, "tidak dapat dibatalkan").await;
        assert!(refused.text.contains("/receive"), "{}", refused.text);
    }
    assert_eq!(status_of_last_order(&db).await, "reported");
    assert!(stub
        .messages(g.id)
        .iter()
        .all(|m| !m.text.contains("membatalkan perintah")));

    stub.say(g, &team.kasi, "/help");
    expect_text(&stub, g, 0, "setelah laporan terkirim").await;
    stub.say(g, &team.kasi, "/receive");
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
    assert_eq!(status_of_last_order(&db).await, "logged");
}

fn old_group() -> Chat {
    Chat {
        id: -4_001_234_567,
        kind: "group".into(),
        title: Some("Tim Portal Web DJKI".into()),
    }
}

/// The group is upgraded while a backup runs, without the service messages reaching the bot: the
/// report's send to the old id is answered with `migrate_to_chat_id`, and the bot follows it.
#[tokio::test]
async fn a_group_upgraded_during_a_run_gets_its_report_in_the_supergroup() {
    let (team, stub, db, mut env) = scene("id").await.parts();
    let old = old_group();
    let new = team.group.clone();
    for p in [&team.kasubdit, &team.kasi, &team.jfu, &team.jfu2] {
        stub.add_member(&old, p);
    }
    env.retain(|(k, _)| k != "GROUP_CHAT_ID");
    env.push(("GROUP_CHAT_ID".into(), old.id.to_string()));
    let hold = Arc::new(tokio::sync::Notify::new());
    let _bot = start_bot(&env, ScriptedEngine::held(&hold)).await;

    stub.say(&old, &team.kasubdit, "/order_backup");
    expect_text(&stub, &old, 0, "Perintah backup mailbox #1").await;
    stub.say(&old, &team.kasi, "/direct @budi_jfu");
    expect_text(&stub, &old, 0, "mendisposisikan perintah #1").await;
    stub.say(&old, &team.jfu, "/start");
    expect_text(&stub, &old, 0, "Langkah 3").await;

    stub.migrate_group(&old, &new, &team.kasi, false);
    hold.notify_one();
    expect_text(&stub, &new, 0, "Laporan backup #1").await;
    // The people now write in the supergroup, and the bot answers there.
    stub.say(&new, &team.kasi, "/receive");
    expect_text(&stub, &new, 0, "dicatat di log kegiatan harian").await;
    assert_eq!(status_of_last_order(&db).await, "logged");
}

/// The service messages reach the bot: it follows the new id before sending anything.
#[tokio::test]
async fn a_group_upgrade_announced_by_telegram_is_followed() {
    let (team, stub, db, mut env) = scene("en").await.parts();
    let old = old_group();
    let new = team.group.clone();
    env.retain(|(k, _)| k != "GROUP_CHAT_ID");
    env.push(("GROUP_CHAT_ID".into(), old.id.to_string()));
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;

    stub.migrate_group(&old, &new, &team.kasubdit, true);
    stub.say(&new, &team.kasubdit, "/order_backup");
    expect_text(&stub, &new, 0, "Mailbox backup order #1").await;
    assert!(stub.messages(old.id).is_empty());
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    let chat: i64 = sqlx::query_scalar("SELECT group_chat_id FROM orders")
        .fetch_one(&mut conn)
        .await
        .expect("order");
    assert_eq!(chat, new.id);
}

/// At the terminal: every `restore` option says what it does, and a restore with no database to
/// check the folder against says what it needs instead of only "DATABASE_URL: missing".
#[test]
fn the_terminal_restore_explains_its_options_and_what_it_needs_without_a_database() {
    let bin = env!("CARGO_BIN_EXE_mailbox-backup-bot");
    let help = std::process::Command::new(bin)
        .args(["restore", "--help"])
        .output()
        .expect("the binary runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--into",
        "--create",
        "--all",
        "--dry-run",
        "--unrecorded",
        "--identity",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(option))
            .unwrap_or_else(|| panic!("{option} is not in the help:\n{help}"));
        let said = line.trim_start().trim_start_matches(option);
        let said = said.split_once("  ").map_or("", |(_, text)| text.trim());
        assert!(!said.is_empty(), "{option} has no help text:\n{help}");
    }

    let dir = test_dir("cli-norecord");
    let mut env = Vec::new();
    use_engine(&mut env, &dir);
    let out = std::process::Command::new(bin)
        .args(["restore", "01-01-1999", "ani@djki.go.id"])
        .env_remove("DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(
        said.contains("DATABASE_URL") && said.contains("--unrecorded"),
        "{said}"
    );
}
