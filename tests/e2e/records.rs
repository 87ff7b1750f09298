//! The office's records and the set-up helpers: `/id`, `/export` and `/log` of a month through
//! the Bot API server, and `mailbox-backup-bot export` at the terminal.

use bot_api_stub::Chat;

use crate::support::*;

#[tokio::test]
async fn id_answers_anyone_anywhere_with_their_id_the_chats_and_their_roles() {
    let Scene {
        team,
        stub,
        db: _db,
        env,
    } = scene("id").await;
    let _bot = start_bot(&env, None).await;
    let g = &team.group;

    stub.say(g, &team.kasi, "/id");
    let kasi = expect_text(&stub, g, 0, "Id Telegram Anda").await;
    assert!(
        kasi.text
            .contains(&format!("<code>{}</code>", team.kasi.id))
            && kasi.text.contains(&format!("<code>{}</code>", g.id))
            && kasi.text.contains("Kasi Portal Web"),
        "{}",
        kasi.text
    );

    // Someone without a role gets their id and what to do with it.
    let before = stub.messages(g.id).len();
    stub.say(g, &team.stranger, "/id@djki_backup_bot");
    let stranger = expect_text(&stub, g, before, "Id Telegram Anda").await;
    assert!(
        stranger.text.contains(&team.stranger.id.to_string())
            && stranger.text.contains("admin")
            && stranger.text.contains("KASI_IDS"),
        "{}",
        stranger.text
    );

    // In private, and in a group that is not GROUP_CHAT_ID (how the admin finds its id).
    let private = Chat::private(&team.stranger);
    stub.say(&private, &team.stranger, "/id");
    let p = expect_text(&stub, &private, 0, "Id Telegram Anda").await;
    assert!(p.text.contains(&team.stranger.id.to_string()), "{}", p.text);
    stub.say(&team.other_group, &team.kasubdit, "/id");
    let other = expect_text(&stub, &team.other_group, 0, "Id obrolan ini").await;
    assert!(
        other.text.contains(&team.other_group.id.to_string())
            && other.text.contains("Kasubdit Perencanaan"),
        "{}",
        other.text
    );
    // Nothing else is answered in the other group.
    stub.say(&team.other_group, &team.kasubdit, "/order_backup");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(stub.messages(team.other_group.id).len(), 1);
}

/// Two orders this month: one received and logged, one cancelled.
async fn two_orders(stub: &bot_api_stub::Stub, team: &Team) {
    let g = &team.group;
    stub.say(g, &team.kasubdit, "/order_backup backup bulanan");
    expect_text(stub, g, 0, "Perintah backup mailbox #1").await;
    stub.say(g, &team.kasi, "/direct @budi_jfu");
    expect_text(stub, g, 0, "mendisposisikan perintah #1").await;
    stub.say(g, &team.jfu, "/start");
    expect_text(stub, g, 0, "Laporan backup #1").await;
    stub.say(g, &team.kasi, "/receive");
    expect_text(stub, g, 0, "dicatat di log kegiatan harian").await;
    stub.say(g, &team.kasubdit, "/order_backup ulang, \"tanggal\" salah");
    expect_text(stub, g, 0, "Perintah backup mailbox #2").await;
    stub.say(g, &team.kasubdit, "/cancel salah tanggal");
    expect_text(stub, g, 0, "membatalkan perintah #2").await;
}

#[tokio::test]
async fn export_sends_the_months_activity_as_csv_and_log_shows_the_month() {
    let Scene {
        team,
        stub,
        db,
        env,
    } = scene("id").await;
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;
    two_orders(&stub, &team).await;
    wait_until(
        &db,
        "SELECT count(*) FROM orders WHERE id = 2 AND status = 'cancelled'",
        "order 2 cancelled",
    )
    .await;

    stub.say(g, &team.kasi, "/export");
    let doc = stub
        .wait_for(g.id, WAIT, |msgs| msgs.iter().any(|m| m.document.is_some()))
        .await
        .unwrap_or_else(|m| panic!("no document: {m:?}"));
    let doc = doc
        .iter()
        .find_map(|m| m.document.clone())
        .expect("a document");
    let month = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .format("%Y-%m")
        .to_string();
    assert_eq!(doc.file_name, format!("log-backup-mailbox-{month}.csv"));
    assert!(
        doc.caption
            .as_deref()
            .is_some_and(|c| c.contains("2 perintah")),
        "{doc:?}"
    );
    let csv = doc.text.expect("text");
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(|r| r.expect("a CSV row").iter().map(str::to_owned).collect())
        .collect();
    // Order 1: steps 1–8; order 2: step 1, and step 2 not done.
    let of = |n: &str| rows.iter().filter(|r| r[0] == n).count();
    assert_eq!(of("1"), 8, "{csv}");
    assert_eq!(of("2"), 2, "{csv}");
    let step6 = rows
        .iter()
        .find(|r| r[0] == "1" && r[2] == "6")
        .expect("step 6");
    assert_eq!(step6[11], "selesai");
    assert_eq!(step6[12], "2", "mailboxes");
    assert_eq!(step6[13], "6144", "bytes");
    let step2 = rows
        .iter()
        .find(|r| r[0] == "2" && r[2] == "2")
        .expect("order 2 step 2");
    assert_eq!(step2[1], "dibatalkan");
    assert_eq!(step2[11], "tidak dilaksanakan");

    // A bad month is refused with what to type.
    stub.say(g, &team.kasi, "/export 13-2026");
    expect_text(&stub, g, 0, "/export 11-2026").await;

    // `/log MM-YYYY` lists the month's entries.
    let mm_yyyy = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .format("%m-%Y")
        .to_string();
    stub.say(g, &team.jfu, &format!("/log {mm_yyyy}"));
    let log = expect_text(&stub, g, 0, "Log kegiatan bulan").await;
    assert!(
        log.text.contains("Backup #1") && log.text.contains("Backup #2"),
        "{}",
        log.text
    );

    // The terminal prints the same rows.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"))
        .args(["export", &mm_yyyy])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().count(), 1 + 10, "{printed}");
    assert_eq!(printed.lines().next(), csv.lines().next());
}
