//! The office's records and the set-up helpers: `/id`, `/export` and `/log` of a month through
//! the Bot API server, and `mailbox-backup-bot export` at the terminal.

use bot_api_stub::Chat;
use sqlx::Connection;

use crate::support::*;

#[tokio::test]
async fn id_answers_anyone_anywhere_with_their_id_the_chats_and_their_roles() {
    let (team, stub, _db, env) = scene("id").await.parts();
    let _bot = start_bot(&env, mailbox_backup_bot::engine::Engine::default()).await;
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
    order_and_direct_in(stub, team, "id", "backup bulanan").await;
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
    let (team, stub, db, env) = scene("id").await.parts();
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
    let doc = exported_csv(&stub, g).await;
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
    eprintln!("{csv}");
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
    assert_eq!(step2[4], "", "nobody directed it");
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

/// An old backup, received `days` days ago: an order, logged.
async fn received_days_ago(db: &str, days: i64) {
    let mut conn = sqlx::PgConnection::connect(db).await.expect("connect");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (status, ordered_by, group_chat_id, created_at, updated_at)
         VALUES ('logged', 5000000001, -1001234567890, now() - make_interval(days => $1::int), now() - make_interval(days => $1::int)) RETURNING id",
    )
    .bind(days as i32)
    .fetch_one(&mut conn)
    .await
    .expect("order");
    sqlx::query(
        "INSERT INTO order_steps (order_id, step, actor_id, started_at, ended_at, outcome)
         VALUES ($2, 7, 5000000002, now() - make_interval(days => $1::int), now() - make_interval(days => $1::int), 'done')",
    )
    .bind(days as i32)
    .bind(id)
    .execute(&mut conn)
    .await
    .expect("step 7");
}

fn local(day: &str, hm: &str) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let t = chrono::NaiveDateTime::parse_from_str(&format!("{day} {hm}"), "%Y-%m-%d %H:%M")
        .expect("time");
    chrono_tz::Asia::Jakarta
        .from_local_datetime(&t)
        .single()
        .expect("one instant")
        .with_timezone(&chrono::Utc)
}

/// The time passed in: due at 09:00 once the days have passed, once a day, not again after a
/// restart (a new process on the same database), again the next day.
#[tokio::test]
async fn a_reminder_is_due_once_a_day_and_a_restart_does_not_repeat_it() {
    use mailbox_backup_bot::procedure::reminders::remind_if_due;
    let team = Team::new();
    let stub = start_stub(&team).await;
    let db = fresh_database().await;
    let env = team.env(&stub, &db, "id");
    let app = build_app(&env).await;
    received_days_ago(&db, 40).await;
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive();
    let tomorrow = today.succ_opt().expect("tomorrow");
    let (d0, d1) = (today.to_string(), tomorrow.to_string());

    assert!(!remind_if_due(&app, local(&d0, "08:59"))
        .await
        .expect("check"));
    assert!(remind_if_due(&app, local(&d0, "09:00"))
        .await
        .expect("check"));
    assert!(!remind_if_due(&app, local(&d0, "09:01"))
        .await
        .expect("check"));
    let restarted = build_app(&env).await;
    assert!(!remind_if_due(&restarted, local(&d0, "15:00"))
        .await
        .expect("check"));
    assert!(remind_if_due(&restarted, local(&d1, "09:30"))
        .await
        .expect("check"));
    assert_eq!(count(&db, "SELECT count(*) FROM reminders").await, 2);

    // An order under way: no reminder while it is being done.
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    sqlx::query("INSERT INTO orders (status, ordered_by, group_chat_id, created_at, updated_at) VALUES ('ordered', 5000000001, -1001234567890, now(), now())")
        .execute(&mut conn)
        .await
        .expect("order 2");
    let d2 = tomorrow.succ_opt().expect("day after").to_string();
    assert!(!remind_if_due(&restarted, local(&d2, "09:00"))
        .await
        .expect("check"));
}

/// Through the Bot API server: the running bot sends the day's reminder once, with the
/// Kasubdit's mention, and a restart does not send it again.
#[tokio::test]
async fn the_running_bot_reminds_the_kasubdit_once() {
    let team = Team::new();
    let stub = start_stub(&team).await;
    let db = fresh_database().await;
    let mut env = team.env(&stub, &db, "id");
    env.push(("REMINDER_AT".into(), "00:00".into()));
    let store = mailbox_backup_bot::storage::Store::connect(&db)
        .await
        .expect("db");
    store.migrate().await.expect("migrations");
    received_days_ago(&db, 40).await;
    let g = &team.group;
    let bot = start_bot(&env, mailbox_backup_bot::engine::Engine::default()).await;
    let reminder = expect_text(
        &stub,
        g,
        0,
        "sudah 40 hari sejak backup mailbox terakhir diterima",
    )
    .await;
    assert!(
        mentions(&reminder.text, &team.kasubdit),
        "{}",
        reminder.text
    );
    assert!(reminder.text.contains("/order_backup"));
    // Killed once the send is recorded (a bot killed between Telegram's answer and that record
    // sends the message once more at its next start: delivery is at least once).
    wait_until(
        &db,
        "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
        "the reminder recorded as sent",
    )
    .await;
    bot.abort();
    let _ = bot.await;
    let bot2 = start_bot(&env, mailbox_backup_bot::engine::Engine::default()).await;
    stub.say(g, &team.kasi, "/help");
    expect_text(&stub, g, 0, "/receive").await;
    assert_eq!(
        stub.messages(g.id)
            .iter()
            .filter(|m| m.text.contains("hari sejak backup"))
            .count(),
        1
    );
    // Stopped before its database is dropped: a test's runtime is single-threaded, and a
    // connection it was opening would hold the DROP until PostgreSQL's authentication timeout.
    bot2.abort();
    let _ = bot2.await;
}

/// `/check` through the Bot API server with the harness's sshd and Dovecot: one line per check,
/// a Kasi id that is not in the group named as failing, and only the Kasubdit or Kasi may ask.
#[tokio::test]
async fn check_posts_one_line_per_check_and_names_what_is_wrong() {
    let (team, stub, _db, mut env) = scene("id").await.parts();
    let dir = test_dir("check");
    use_engine(&mut env, &dir);
    let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v));
    };
    // A Kasi who never joined the group.
    set(&mut env, "KASI_IDS", format!("{},5000000077", team.kasi.id));
    let _bot = start_bot(&env, mailbox_backup_bot::engine::Engine::default()).await;
    let g = &team.group;

    stub.say(g, &team.jfu, "/check");
    expect_text(&stub, g, 0, "Kasubdit").await;
    stub.say(g, &team.kasi, "/check");
    let report = stub
        .wait_for_text(g.id, 0, "Pemeriksaan:", WAIT * 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = report.plain_text();
    for ok in [
        "✅ pengaturan",
        "✅ disk backup bertanda",
        "✅ login SSH dengan kunci host yang dicocokkan",
        "✅ perkakas server doveadm",
        "✅ ruang kosong server di atas batas aman",
        "✅ basis data dapat dihubungi",
        "✅ token bot diterima Telegram",
        "✅ grup GROUP_CHAT_ID",
        "✅ enkripsi backup (age) — off: BACKUP_ENCRYPT_TO is not set",
    ] {
        assert!(text.contains(ok), "{ok:?} in:\n{text}");
    }
    assert!(
        text.contains("❌ Kasi Portal Web 5000000077 anggota grup"),
        "{text}"
    );
    assert!(text.contains("Pemeriksaan: 1 masalah"), "{text}");
    // Nothing was made on the server.
    assert!(!dir.join("server").exists());
}

/// `mailbox-backup-bot check` with several settings wrong names them all at once, and the
/// token still from `.env.example`.
#[test]
fn the_terminal_check_names_every_wrong_setting_at_once() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"))
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TELOXIDE_TOKEN", "123456789:replace-with-the-token")
        .env("GROUP_CHAT_ID", "grup")
        .env("MAIL_SSH_HOST", "127.0.0.1")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for var in [
        "FAIL setting TELOXIDE_TOKEN: still the value from .env.example",
        "FAIL setting GROUP_CHAT_ID",
        "FAIL setting KASUBDIT_IDS",
        "FAIL setting KASI_IDS",
        "FAIL setting JFU_IDS",
        "FAIL setting DATABASE_URL",
        "FAIL setting MAIL_SSH_KEY",
        "FAIL setting LOCAL_BACKUP_ROOT",
    ] {
        assert!(text.contains(var), "{var:?} in:\n{text}");
    }
}

/// `check` on a database a newer bot migrated: the database line fails and says what to do,
/// where the bot itself would refuse to start.
#[tokio::test]
async fn check_names_a_database_migrated_by_a_newer_bot() {
    let db = fresh_database().await;
    let store = mailbox_backup_bot::storage::Store::connect(&db)
        .await
        .expect("db");
    store.migrate().await.expect("migrations");
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (29991231000000, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("a newer migration");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"))
        .arg("check")
        .env("DATABASE_URL", db.to_string())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL database reachable: migrated by a newer version of the bot"),
        "{text}"
    );
}
