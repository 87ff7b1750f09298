//! What the chat and the database say when PostgreSQL or Telegram is away: a move is one
//! transaction with its messages (the outbox), the delivery worker waits Telegram out, and a run
//! waits PostgreSQL out. Real parts: a PostgreSQL cluster of the test's own that it stops and
//! starts, and the Bot API server behind a relay that it pauses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::support::*;

/// How many of the bot's messages in the group contain `needle`.
fn said(stub: &bot_api_stub::Stub, team: &Team, needle: &str) -> usize {
    stub.messages(team.group.id)
        .iter()
        .filter(|m| m.text.contains(needle))
        .count()
}

async fn unsent(db: &str) -> i64 {
    count(
        db,
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL OR given_up_at IS NOT NULL",
    )
    .await
}

#[tokio::test]
async fn a_run_across_a_postgresql_outage_records_every_step_and_reports_as_usual() {
    let dir = test_dir("pg-outage");
    let pg = PrivatePostgres::start(&dir);
    let team = Team::new();
    let stub = start_stub(&team).await;
    let db = pg.url();
    let env = team.env(&stub, &db, "id");
    let hold = Arc::new(tokio::sync::Notify::new());
    let _bot = start_bot(&env, ScriptedEngine::held_in(&hold, &dir.join("local"))).await;
    let g = &team.group;
    start_and_hold_in_step_4(&stub, &team, &db, "id").await;

    // PostgreSQL goes away while the engine works; the run finishes meanwhile.
    pg.stop_server();
    let down = Instant::now();
    hold.notify_one();
    // A command during the outage is told so, not met with silence.
    let before = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/status");
    let reply = expect_text(&stub, g, before, "Basis data sedang tidak dapat dihubungi").await;
    assert!(reply.text.contains("Coba lagi"), "{}", reply.text);
    assert_eq!(
        said(&stub, &team, "Laporan backup #1"),
        0,
        "no report without its record"
    );
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(down.elapsed())).await;
    pg.start_server();

    // Back: the steps' records and the result are saved in order, and the report goes out.
    let report = expect_text(&stub, g, 0, "Laporan backup #1").await;
    assert!(report.text.contains("/receive"), "{}", report.text);
    assert_eq!(status_of_last_order(&db).await, "reported");
    let open_steps = count(
        &db,
        "SELECT count(*) FROM order_steps WHERE step BETWEEN 1 AND 6 AND (ended_at IS NULL OR outcome <> 'done')",
    )
    .await;
    assert_eq!(open_steps, 0, "every step of 1–6 ended and done");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM order_steps WHERE step BETWEEN 1 AND 6"
        )
        .await,
        6
    );
    // The progress message ends with the real outcome.
    let progress = stub
        .wait_for(g.id, WAIT, |msgs| {
            msgs.iter().any(|m| m.text.contains("✅ Backup selesai"))
        })
        .await;
    assert!(progress.is_ok(), "{}", stub.transcript(g.id));

    stub.say(g, &team.kasi, "/receive");
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
    assert_eq!(status_of_last_order(&db).await, "logged");
    wait_for_outbox_empty(&db).await;
    assert_eq!(
        said(&stub, &team, "Laporan backup #1"),
        1,
        "the relay replies to the report, it does not repeat it"
    );
    print_chat(&stub, &team);
}

async fn wait_for_outbox_empty(db: &str) {
    let deadline = Instant::now() + WAIT;
    while unsent(db).await > 0 {
        assert!(Instant::now() < deadline, "the outbox was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn telegram_unreachable_for_a_minute_during_a_run_then_the_report_arrives_once() {
    let (team, stub, db, mut env) = scene("id").await.parts();
    let relay = PausableRelay::start(stub.addr()).await;
    env.retain(|(k, _)| k != "TELEGRAM_API_URL");
    env.push(("TELEGRAM_API_URL".into(), relay.url()));
    let dir = test_dir("tg-outage");
    let hold = Arc::new(tokio::sync::Notify::new());
    let _bot = start_bot(&env, ScriptedEngine::held_in(&hold, &dir.join("local"))).await;
    let g = &team.group;
    start_and_hold_in_step_4(&stub, &team, &db, "id").await;

    // Telegram goes away for a minute during the run; the run ends half way through it.
    relay.pause();
    let away = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    hold.notify_one();
    wait_until(
        &db,
        "SELECT count(*) FROM orders WHERE status = 'reported'",
        "the result is committed while Telegram is away",
    )
    .await;
    assert!(unsent(&db).await > 0, "the report waits in the outbox");
    assert_eq!(said(&stub, &team, "Laporan backup #1"), 0);
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(away.elapsed())).await;
    relay.resume();

    // Back a minute after it went, 30 s after the run ended: the step messages, the report with
    // the Kasi's mention and the per-mailbox document, once each.
    let report = expect_text(&stub, g, 0, "Laporan backup #1").await;
    assert!(mentions(&report.text, &team.kasi), "{}", report.text);
    wait_for_outbox_empty(&db).await;
    let msgs = stub.messages(g.id);
    let pos = |needle: &str| {
        msgs.iter()
            .position(|m| m.text.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not said:\n{}", stub.transcript(g.id)))
    };
    assert!(pos("Backup selesai") < pos("Laporan backup #1"), "in order");
    let sums = msgs
        .iter()
        .filter_map(|m| m.document.as_ref())
        .filter(|d| d.file_name.ends_with("-per-mailbox.csv"))
        .count();
    assert_eq!(sums, 1, "the per-mailbox document once");
    assert_eq!(
        said(&stub, &team, "Laporan backup #1"),
        1,
        "the report once"
    );
    stub.say(g, &team.kasi, "/receive");
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
}

#[tokio::test]
async fn a_429_storm_and_failed_sends_lose_nothing_and_repeat_nothing() {
    let (team, stub, db, env) = scene("id").await.parts();
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;
    // Every send of the chain meets trouble: 429s with a pause to honour, then 500s.
    for _ in 0..6 {
        stub.fail_next_with_429("sendMessage", 1);
    }
    stub.fail_next_with_500("sendMessage", 1);
    stub.say(g, &team.kasubdit, "/order_backup");
    // teloxide itself pauses 10 s after a 5xx, so the first message takes a while.
    let order = stub
        .wait_for_text(g.id, 0, "Perintah backup mailbox #1", WAIT * 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stub.say(g, &team.kasi, "/direct @budi_jfu");
    expect_text(&stub, g, 0, "mendisposisikan perintah #1").await;
    stub.say(g, &team.jfu, "/start");
    expect_text(&stub, g, 0, "Laporan backup #1").await;
    stub.say(g, &team.kasi, "/receive");
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
    wait_for_outbox_empty(&db).await;

    let chain = [
        "Perintah backup mailbox #1",
        "mendisposisikan perintah #1",
        "memulai backup #1",
        "Backup selesai",
        "Laporan backup #1",
        "menerima laporan backup #1",
        "dicatat di log kegiatan harian",
    ];
    let msgs = stub.messages(g.id);
    let mut last = 0;
    for needle in chain {
        let at = msgs
            .iter()
            .position(|m| m.text.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{}", stub.transcript(g.id)));
        assert!(
            at >= last,
            "{needle:?} out of order:\n{}",
            stub.transcript(g.id)
        );
        last = at;
    }
    for once in [
        "Perintah backup mailbox #1",
        "mendisposisikan",
        "dicatat di log",
    ] {
        assert_eq!(said(&stub, &team, once), 1, "{once} once");
    }
    // The buttons were removed from the order once Budi was directed.
    let relayed = msgs.iter().find(|m| m.message_id == order.message_id);
    assert!(relayed.is_some_and(|m| m.button_data().is_empty()));
    let texts = msgs.iter().filter(|m| m.document.is_none()).count();
    assert_eq!(
        stub.calls("sendMessage") - texts,
        7,
        "each failure tried again"
    );
}

#[tokio::test]
async fn the_bot_killed_after_receive_sends_what_it_committed_once_at_its_next_start() {
    let (team, stub, db, env) = scene("id").await.parts();
    let bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;
    order_to_report(&stub, &team).await;
    wait_for_outbox_empty(&db).await;

    // Telegram takes no message now; the Kasi receives, and the bot is killed before it could
    // say anything about it.
    stub.fail_next_with_500("sendMessage", 10_000);
    stub.say(g, &team.kasi, "/receive");
    let deadline = Instant::now() + WAIT;
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    loop {
        // Received and logged are one move: never the one without the other.
        let (status, logged): (String, i64) = sqlx::query_as(
            "SELECT status, (SELECT count(*) FROM daily_log) FROM orders WHERE id = 1",
        )
        .fetch_one(&mut conn)
        .await
        .expect("order 1");
        assert_ne!(status, "received", "received without its log entry");
        assert_eq!(
            status == "logged",
            logged == 1,
            "{status} with {logged} log rows"
        );
        if status == "logged" {
            break;
        }
        assert!(Instant::now() < deadline, "the /receive was not committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bot.abort();
    let _ = bot.await;
    assert_eq!(said(&stub, &team, "dicatat di log"), 0);
    assert!(
        unsent(&db).await >= 2,
        "received and logged wait in the outbox"
    );

    // The next start delivers them, once.
    stub.clear_failures();
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
    wait_for_outbox_empty(&db).await;
    assert_eq!(said(&stub, &team, "menerima laporan backup #1"), 1);
    assert_eq!(said(&stub, &team, "dicatat di log kegiatan harian"), 1);
    assert_eq!(
        said(&stub, &team, "Perintah backup mailbox #1"),
        1,
        "nothing older again"
    );
}

/// `/cancel` and the run's record of a step's end reach the order at the same moment: the row
/// lock makes them take turns (the record first here, held until both wait), and neither update
/// is lost.
#[tokio::test]
async fn a_cancel_racing_a_step_record_takes_its_turn_and_loses_nothing() {
    let (team, stub, db, env) = scene("en").await.parts();
    let hold = Arc::new(tokio::sync::Notify::new());
    // Held in step 4, and again once step 4 has ended: no later step races the cancel.
    let _bot = start_bot(&env, ScriptedEngine::held_twice(&hold)).await;
    let g = &team.group;
    start_and_hold_in_step_4(&stub, &team, &db, "en").await;

    // The test holds the order's row; the run's record of step 4's end queues first, then the
    // cancel.
    let mut holder = sqlx::PgConnection::connect(&db).await.expect("connect");
    let mut tx = sqlx::Connection::begin(&mut holder).await.expect("begin");
    sqlx::query("SELECT id FROM orders WHERE id = 1 FOR UPDATE")
        .execute(&mut *tx)
        .await
        .expect("lock");
    hold.notify_one();
    wait_for_lock_waiters(&db, 1).await;
    stub.say(g, &team.kasi, "/cancel");
    wait_for_lock_waiters(&db, 2).await;
    tx.commit().await.expect("release");

    expect_text(&stub, g, 0, "cancelled order #1").await;
    let deadline = Instant::now() + WAIT;
    while status_of_last_order(&db).await != "cancelled" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The step's end recorded first was kept by the cancel that came after it.
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    let step4: (Option<chrono::DateTime<chrono::Utc>>, String) =
        sqlx::query_as("SELECT ended_at, outcome FROM order_steps WHERE order_id = 1 AND step = 4")
            .fetch_one(&mut conn)
            .await
            .expect("step 4 kept");
    assert!(step4.0.is_some(), "step 4's end was not lost");
    assert_eq!(step4.1, "done");
    // Nothing after the cancel: no later step, no report.
    let later: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM order_steps WHERE order_id = 1 AND step > 4 AND outcome NOT IN ('stopped', 'not_done')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("later steps");
    assert_eq!(later, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        said(&stub, &team, "Backup report #1"),
        0,
        "no report after a cancel"
    );
    // Let the scripted run end, as a real one stops when cancelled.
    hold.notify_one();
}

/// Waits until `n` sessions of the test's database wait for a lock.
async fn wait_for_lock_waiters(db: &str, n: i64) {
    let deadline = Instant::now() + WAIT;
    while count(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .await
        < n
    {
        assert!(Instant::now() < deadline, "{n} lock waiters never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
