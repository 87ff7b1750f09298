//! The order chain through the bot's real HTTP client and a real PostgreSQL.

use std::sync::Arc;

use sqlx::Connection;

use crate::support::*;

#[tokio::test]
async fn three_people_run_the_whole_chain_and_it_lands_in_the_daily_log() {
    let (team, stub, db, env) = scene("id").await.parts();
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;

    stub.say(g, &team.kasubdit, "/order_backup backup bulanan");
    let order = expect_text(&stub, g, 0, "Perintah backup mailbox #1").await;
    assert!(
        mentions(&order.text, &team.kasi),
        "the Kasi is mentioned: {}",
        order.text
    );
    assert!(order.text.contains("backup bulanan"));
    assert_eq!(order.button_data().len(), 2, "one button per JFU");

    // The Kasi directs Budi with the button.
    let data = order
        .button_data()
        .into_iter()
        .find(|d| d.ends_with(&team.jfu.id.to_string()))
        .expect("Budi's button");
    stub.press(g, &team.kasi, order.message_id, &data)
        .expect("press");
    let directed = expect_text(&stub, g, 0, "mendisposisikan perintah #1").await;
    assert!(mentions(&directed.text, &team.jfu), "the JFU is mentioned");
    stub.wait_for(g.id, WAIT, |_| !stub.callback_answers().is_empty())
        .await
        .ok();
    let answers = stub.callback_answers();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].text.as_deref().unwrap_or("").contains("Budi"));
    let order_now = stub
        .messages(g.id)
        .into_iter()
        .find(|m| m.message_id == order.message_id)
        .expect("order message");
    assert!(
        order_now.button_data().is_empty(),
        "the buttons are removed once used"
    );

    stub.say(g, &team.jfu, "/start");
    let report = expect_text(&stub, g, 0, "Laporan backup #1").await;
    assert!(
        mentions(&report.text, &team.kasi),
        "the report mentions the Kasi"
    );
    assert!(report.text.contains("ani@djki.go.id") && report.text.contains("budi@djki.go.id"));
    for step in 1..=6 {
        assert!(
            report.text.contains(&format!(" {step}. ")),
            "SOP table has step {step}: {}",
            report.text
        );
    }
    let msgs = stub.messages(g.id);
    // Finished steps are shown in the one progress message, not in messages of their own.
    assert!(
        !msgs.iter().any(|m| m.text.contains("Langkah 4 selesai")),
        "no message per step"
    );
    assert_eq!(status_of_last_order(&db).await, "reported");

    stub.say(g, &team.kasi, "/receive");
    let relayed = expect_text(&stub, g, 0, "menerima laporan backup #1").await;
    assert!(
        mentions(&relayed.text, &team.kasubdit),
        "relayed to the Kasubdit"
    );
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
    assert_eq!(status_of_last_order(&db).await, "logged");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM order_steps WHERE ended_at IS NOT NULL"
        )
        .await,
        8
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM daily_log WHERE outcome = 'logged'"
        )
        .await,
        1
    );

    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM order_steps WHERE outcome = 'done'"
        )
        .await,
        8
    );

    let before = stub.messages(g.id).len();
    stub.say(g, &team.jfu, "/log hari ini");
    let log = expect_text(&stub, g, before, "Log kegiatan harian").await;
    assert!(
        log.text.contains("Backup #1") && log.text.contains("2/2 mailbox terverifikasi"),
        "{}",
        log.text
    );
    assert!(log
        .text
        .contains("✅ 8. Mencatat di log kegiatan harian — bot, "));
    assert!(
        log.text.contains(" WIB, "),
        "times carry the zone: {}",
        log.text
    );
    assert!(!log.text.contains("baku"), "{}", log.text);

    // The command menu was registered.
    let menu = stub.commands().expect("setMyCommands was called");
    assert!(menu.to_string().contains("order_backup"));
}

#[tokio::test]
async fn the_wrong_people_and_the_wrong_places_change_nothing() {
    let (team, stub, db, env) = scene("en").await.parts();
    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;

    // A stranger and a JFU may not order.
    stub.say(g, &team.stranger, "/order_backup");
    expect_text(&stub, g, 0, "Only the Kasubdit Perencanaan may do this").await;
    stub.say(g, &team.jfu, "/order_backup");
    expect_text(&stub, g, 1, "Only the Kasubdit Perencanaan may do this").await;
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 0);

    // Another group is ignored altogether, even the Kasubdit there.
    stub.say(&team.other_group, &team.kasubdit, "/order_backup");
    // A command for another bot is ignored.
    stub.say(g, &team.kasubdit, "/order_backup@some_other_bot");
    // Nothing to receive yet.
    stub.say(g, &team.kasi, "/receive");
    expect_text(&stub, g, 2, "There is no active backup order").await;
    assert!(stub.messages(team.other_group.id).is_empty());
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 0);

    stub.say(g, &team.kasubdit, "/order_backup@djki_backup_bot");
    let order = expect_text(&stub, g, 0, "Mailbox backup order #1").await;
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasubdit, "/order_backup");
    expect_text(&stub, g, n, "Order #1 is still active").await;

    // A JFU pressing the Kasi's button: answered, refused, nothing changes.
    let data = order.button_data()[0].clone();
    stub.press(g, &team.jfu, order.message_id, &data)
        .expect("press");
    stub.wait_for(g.id, WAIT, |_| !stub.callback_answers().is_empty())
        .await
        .ok();
    let answers = stub.callback_answers();
    assert_eq!(answers.len(), 1);
    assert!(
        answers[0].show_alert
            && answers[0]
                .text
                .as_deref()
                .unwrap_or("")
                .contains("Kasi Portal Web only")
    );
    assert_eq!(status_of_last_order(&db).await, "ordered");
    let still = stub
        .messages(g.id)
        .into_iter()
        .find(|m| m.message_id == order.message_id)
        .expect("order message");
    assert_eq!(
        still.button_data().len(),
        2,
        "the buttons stay for the Kasi"
    );

    // Bad arguments get a short reply saying what to type.
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/direct @nobody");
    expect_text(&stub, g, n, "Unknown JFU").await;
    stub.say(g, &team.kasi, "/direct");
    expect_text(&stub, g, n + 1, "There are several JFUs").await;
    stub.say(g, &team.kasi, "/log 31-02-2026");
    expect_text(&stub, g, n + 2, "is not a date").await;
    stub.say(g, &team.kasi, "/frobnicate");
    expect_text(&stub, g, n + 3, "Unknown command").await;
    stub.say(g, &team.jfu, "/start");
    expect_text(&stub, g, n + 4, "has not directed it yet").await;
    // (Another one: someone without a role is answered once in a while, not at every command.)
    let visitor = bot_api_stub::Person::new(5_000_000_019, "Tamu Dua", "tamu_dua");
    stub.say(g, &visitor, "/status");
    expect_text(&stub, g, n + 5, "Only the").await;
    assert_eq!(status_of_last_order(&db).await, "ordered");

    // Directed to Budi: Dewi may not start it.
    stub.say(g, &team.kasi, "/direct @budi_jfu");
    let n = stub.messages(g.id).len();
    expect_text(&stub, g, n - 1, "directs order #1").await;
    stub.say(g, &team.jfu2, "/start");
    expect_text(&stub, g, n, "was directed to Budi").await;
    assert_eq!(status_of_last_order(&db).await, "directed");

    // In a private chat /start shows the help, and changes nothing.
    stub.say(&bot_api_stub::Chat::private(&team.jfu), &team.jfu, "/start");
    stub.wait_for(team.jfu.id, WAIT, |m| !m.is_empty())
        .await
        .expect("help in private");
    assert!(stub.messages(team.jfu.id)[0].text.contains("/start"));
    assert_eq!(status_of_last_order(&db).await, "directed");

    // The database itself refuses a second active order.
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    let second = sqlx::query("INSERT INTO orders (status, ordered_by, group_chat_id, created_at, updated_at) VALUES ('ordered', 1, 1, now(), now())")
        .execute(&mut conn)
        .await;
    assert!(
        second.is_err(),
        "the unique index refuses a second active order"
    );

    // The Kasubdit cancels; a new order is possible again.
    stub.say(g, &team.kasubdit, "/cancel salah tanggal");
    expect_text(&stub, g, 0, "cancelled order #1 (salah tanggal)").await;
    assert_eq!(status_of_last_order(&db).await, "cancelled");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM daily_log WHERE outcome = 'cancelled'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_bot_killed_mid_chain_goes_on_where_it_was() {
    let (team, stub, db, env) = scene("en").await.parts();
    let bot = start_bot(&env, ScriptedEngine::ok()).await;
    let g = &team.group;
    order_and_direct_in(&stub, &team, "en", "").await;
    bot.abort();
    let _ = bot.await;

    let _bot = start_bot(&env, ScriptedEngine::ok()).await;
    let n = stub.messages(g.id).len();
    stub.say(g, &team.jfu, "/start");
    expect_text(&stub, g, n, "Backup report #1").await;
    stub.say(g, &team.kasi, "/receive");
    expect_text(&stub, g, n, "recorded in the daily activity log").await;
    assert_eq!(status_of_last_order(&db).await, "logged");
}

#[tokio::test]
async fn a_failed_login_ends_in_a_clear_failure_report_and_a_new_order_is_possible() {
    let (team, stub, db, env) = scene("en").await.parts();
    let bot = start_bot(&env, ScriptedEngine::failing_login()).await;
    let g = &team.group;
    order_and_direct_in(&stub, &team, "en", "").await;
    stub.say(g, &team.jfu, "/start");
    let failure = expect_text(&stub, g, 0, "Backup FAILED #1").await;
    assert!(
        failure
            .text
            .contains("<code>Permission denied (publickey)</code>")
            && failure.text.contains("the SSH key was refused"),
        "{}",
        failure.text
    );
    assert!(mentions(&failure.text, &team.kasi));
    // The SOP table: step 4 failed with its reason, nothing after it, no verdict on it.
    let step4 = failure
        .text
        .lines()
        .find(|l| l.contains(" 4. Remote login"))
        .expect("step 4 in the table");
    assert!(
        step4.starts_with("❌ 4. Remote login to the mail server — ")
            && step4.ends_with(": the SSH key was refused"),
        "{step4}"
    );
    assert!(
        !step4.contains("within") && !step4.contains('✅'),
        "{step4}"
    );
    assert!(
        !failure.text.contains(" 5. Run the mailbox backup"),
        "{}",
        failure.text
    );
    // The progress message ends with the failure, not with "finished".
    let progress = stub
        .messages(g.id)
        .into_iter()
        .find(|m| m.edits.iter().any(|e| e.contains("Backup progress")))
        .expect("the progress message, edited");
    assert_eq!(
        progress.text,
        "❌ Backup FAILED in step 4 (Remote login to the mail server). See the report below.",
        "{progress:?}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM order_steps WHERE step = 4 AND outcome = 'failed'"
        )
        .await,
        1
    );
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/log today");
    let log = expect_text(&stub, g, n, "Daily activity log").await;
    assert!(
        log.text.contains(
            "Step 4 failed: the SSH key was refused. System message: Permission denied (publickey)"
        ),
        "{}",
        log.text
    );
    assert_eq!(
        log.text.matches("the SSH key was refused").count(),
        2,
        "once in the summary, once on the failed step: {}",
        log.text
    );
    assert_eq!(status_of_last_order(&db).await, "failed");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM daily_log WHERE outcome = 'failed'"
        )
        .await,
        1
    );
    // The failure is stored as its kind and evidence: the same log, read by a bot that now
    // speaks Indonesian, says it in Indonesian.
    stub.say(g, &team.kasubdit, "/order_backup");
    expect_text(&stub, g, 0, "order #2").await;
    bot.abort();
    let _ = bot.await;
    let mut id_env = env.clone();
    set(&mut id_env, "BOT_LANG", "id");
    let bot = start_bot(&id_env, mailbox_backup_bot::engine::Engine::default()).await;
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/log hari ini");
    let log = expect_text(&stub, g, n, "Log kegiatan harian").await;
    assert!(
        log.text.matches("kunci SSH ditolak server").count() == 2
            && !log.text.contains("the SSH key was refused"),
        "{}",
        log.text
    );
    // Stopped before its database is dropped (a connection it was opening would hold the DROP).
    bot.abort();
    let _ = bot.await;
}

#[tokio::test]
async fn a_cancelled_order_is_logged_without_the_steps_nobody_did() {
    let (team, stub, db, env) = scene("id").await.parts();
    let _bot = start_bot(&env, mailbox_backup_bot::engine::Engine::default()).await;
    let g = &team.group;
    stub.say(g, &team.kasubdit, "/order_backup");
    expect_text(&stub, g, 0, "Perintah backup mailbox #1").await;
    stub.say(g, &team.kasubdit, "/cancel tidak jadi");
    expect_text(&stub, g, 0, "membatalkan perintah #1").await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM order_steps WHERE step = 2 AND outcome = 'not_done' AND actor_id IS NULL"
        )
        .await,
        1
    );
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/log hari ini");
    let log = expect_text(&stub, g, n, "Log kegiatan harian").await;
    assert!(
        log.text.contains(
            "➖ 2. Mendisposisikan kepada JFU — tidak dilaksanakan (perintah dibatalkan)"
        ),
        "{}",
        log.text
    );
    assert!(log.text.contains("Alasan: tidak jadi"), "{}", log.text);
    assert!(
        !log.text.contains("Kasi Portal Web") && !log.text.contains("✅ 2."),
        "nobody directed it: {}",
        log.text
    );
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/log kemarin");
    expect_text(&stub, g, n, "Tidak ada kegiatan backup").await;
}

#[tokio::test]
async fn a_run_cancelled_in_step_4_ends_its_progress_as_cancelled_and_logs_step_4_as_stopped() {
    let (team, stub, db, env) = scene("en").await.parts();
    let hold = Arc::new(tokio::sync::Notify::new());
    let _bot = start_bot(&env, ScriptedEngine::held(&hold)).await;
    let g = &team.group;
    order_and_direct_in(&stub, &team, "en", "").await;
    stub.say(g, &team.jfu, "/start");
    expect_text(&stub, g, 0, "starts backup #1").await;
    // The engine holds in step 4 once its start is recorded.
    let deadline = std::time::Instant::now() + WAIT;
    while count(&db, "SELECT count(*) FROM order_steps WHERE step = 4").await == 0 {
        assert!(std::time::Instant::now() < deadline, "step 4 never began");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stub.say(g, &team.kasi, "/cancel");
    expect_text(&stub, g, 0, "cancelled order #1").await;
    hold.notify_one();
    stub.wait_for(g.id, WAIT, |msgs| {
        msgs.iter().any(|m| {
            m.text == "⏹ Backup cancelled; the run was stopped and its partial files removed."
        })
    })
    .await
    .expect("the progress message ends as cancelled");
    assert!(
        !stub
            .messages(g.id)
            .iter()
            .any(|m| m.text.contains("Backup report") || m.text.contains("Backup finished")),
        "a cancelled run is not reported as done"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM order_steps WHERE step = 4 AND outcome = 'stopped'"
        )
        .await,
        1
    );
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/log today");
    let log = expect_text(&stub, g, n, "Daily activity log").await;
    let step4 = log
        .text
        .lines()
        .find(|l| l.contains(" 4. Remote login"))
        .expect("step 4 in the log");
    assert!(
        step4.starts_with("⏹ 4. Remote login to the mail server — ")
            && step4.contains("stopped after")
            && step4.ends_with("(order cancelled)"),
        "{step4}"
    );
    assert!(
        log.text.contains("✅ 3. Create the dated backup folder"),
        "{}",
        log.text
    );
    assert!(
        !log.text.contains(" 5. "),
        "step 5 never began: {}",
        log.text
    );
}

#[tokio::test]
async fn the_chat_stays_responsive_during_a_run_and_a_second_start_is_refused() {
    let (team, stub, db, env) = scene("en").await.parts();
    let hold = Arc::new(tokio::sync::Notify::new());
    let _bot = start_bot(&env, ScriptedEngine::held(&hold)).await;
    let g = &team.group;
    order_and_direct_in(&stub, &team, "en", "").await;
    stub.say(g, &team.jfu, "/start");
    expect_text(&stub, g, 0, "starts backup #1").await;
    let n = stub.messages(g.id).len();
    stub.say(g, &team.jfu, "/start");
    expect_text(&stub, g, n, "already running").await;
    // The engine holds in step 4 once its start is recorded.
    let deadline = std::time::Instant::now() + WAIT;
    while count(&db, "SELECT count(*) FROM order_steps WHERE step = 4").await == 0 {
        assert!(std::time::Instant::now() < deadline, "step 4 never began");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stub.say(g, &team.kasubdit, "/status");
    let status = expect_text(&stub, g, n, "Order #1</b> — running").await;
    let open: Vec<&str> = status
        .text
        .lines()
        .filter(|l| l.starts_with('⏳') && l.contains(" — "))
        .collect();
    assert_eq!(open.len(), 1, "one step open: {}", status.text);
    assert!(
        open[0].starts_with("⏳ 4. Remote login to the mail server — the bot is doing it for ")
            && !open[0].contains("within")
            && !open[0].contains("over"),
        "an open step is not judged yet: {}",
        open[0]
    );
    stub.say(g, &team.kasi, "/log");
    expect_text(&stub, g, n, "No backup activity recorded").await;
    hold.notify_one();
    expect_text(&stub, g, n, "Backup report #1").await;
}

#[tokio::test]
async fn a_429_from_telegram_is_waited_out_and_the_message_still_arrives() {
    let (team, stub, db, env) = scene("en").await.parts();
    let _bot = start_bot(&env, mailbox_backup_bot::engine::Engine::default()).await;
    let g = &team.group;
    stub.fail_next_with_429("sendMessage", 1);
    let started = std::time::Instant::now();
    stub.say(g, &team.kasubdit, "/order_backup");
    expect_text(&stub, g, 0, "order #1").await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "retry_after was honoured"
    );
    assert_eq!(stub.messages(g.id).len(), 1, "sent once, after the wait");
    // Without an engine, /start says so and the order keeps waiting.
    stub.say(g, &team.kasi, "/direct @budi_jfu");
    expect_text(&stub, g, 0, "directs order #1").await;
    stub.say(g, &team.jfu, "/start");
    expect_text(&stub, g, 0, "backup engine is not configured").await;
    assert_eq!(status_of_last_order(&db).await, "directed");
}
