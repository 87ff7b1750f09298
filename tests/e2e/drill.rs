//! The restore drill through the chat, on the harness's sshd and Dovecot: `/drill` restores one
//! mailbox of the newest verified backup into a scratch copy and compares it with its archive,
//! passes on a good backup, fails loudly (mentioning the Kasubdit and the Kasi) on one whose
//! archive is short of its record or damaged, leaves nothing behind on the server, and lands in
//! the daily log; the scheduled drill runs by itself once a backup is there.

use std::path::Path;

use crate::restore_chat::backup_through_the_chat;
use crate::support::*;

/// The drills of the test's database: (status, account, compared, recorded).
async fn drills(db: &str) -> Vec<(String, String, Option<i64>, Option<i64>)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db).await.expect("connect");
    sqlx::query_as("SELECT status, account, compared, recorded FROM restore_drills ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("drills")
}

/// Nothing of a drill's stage is left in the server folder.
fn no_stage_left(server: &Path) {
    let left: Vec<String> = std::fs::read_dir(server)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".restore-"))
        .collect();
    assert!(left.is_empty(), "left on the server: {left:?}");
}

/// Rewrites every mailbox's recorded message count in the folder's summary.json by `change`.
fn change_recorded_counts(folder: &Path, change: i64) {
    let path = folder.join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("summary")).expect("json");
    for m in summary["mailboxes"].as_array_mut().expect("mailboxes") {
        let n = m["messages"].as_i64().expect("a count");
        m["messages"] = serde_json::json!(n + change);
    }
    std::fs::write(&path, serde_json::to_vec(&summary).expect("json")).expect("write");
}

#[tokio::test]
async fn a_drill_on_request_passes_on_a_good_backup_and_fails_loudly_on_a_short_or_damaged_one() {
    let (team, stub, db, mut env) = scene("id").await.parts();
    let dir = test_dir("drill");
    use_engine(&mut env, &dir);
    fill_mailbox("dewi@djki.go.id");
    let _bot = BotProcess::start(&env);
    let folder = backup_through_the_chat(&stub, &team, &db).await;
    let local = dir.join("local").join(&folder);
    let g = &team.group;

    // Only the Kasubdit or the Kasi; no arguments.
    let n = stub.messages(g.id).len();
    stub.say(g, &team.jfu, "/drill");
    expect_text(&stub, g, n, "hanya dapat diminta oleh Kasubdit atau Kasi").await;

    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/drill");
    let started = expect_text(&stub, g, n, "Latihan pemulihan #1").await;
    assert!(started.text.contains(&folder), "{}", started.text);
    let passed = expect_text(&stub, g, n, "Latihan pemulihan #1 LULUS").await;
    let rows = drills(&db).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (status, account, compared, recorded) = &rows[0];
    assert_eq!(status, "passed");
    assert!(passed.text.contains(account.as_str()), "{}", passed.text);
    assert!(compared.is_some() && compared == recorded, "{rows:?}");
    no_stage_left(&dir.join("server"));

    // The folder's record says one message more than each archive holds (and than the order
    // recorded): the drill fails by name with both figures, mentioning the Kasubdit and the Kasi.
    change_recorded_counts(&local, 1);
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasubdit, "/drill");
    let failed = expect_text(&stub, g, n, "Latihan pemulihan #2 GAGAL").await;
    assert!(
        failed.text.contains("summary.json records")
            && failed.text.contains("the backup order recorded"),
        "{}",
        failed.text
    );
    assert!(mentions(&failed.text, &team.kasubdit) && mentions(&failed.text, &team.kasi));
    change_recorded_counts(&local, -1);
    no_stage_left(&dir.join("server"));

    // Every archive damaged (the drill may take any): refused against its recorded SHA-256.
    for e in std::fs::read_dir(&local).expect("folder").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar.gz") && name != "directory.tar.gz" {
            let mut bytes = std::fs::read(e.path()).expect("archive");
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(e.path(), bytes).expect("damage");
        }
    }
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, "/drill");
    let failed = expect_text(&stub, g, n, "Latihan pemulihan #3 GAGAL").await;
    assert!(failed.text.contains("SHA-256"), "{}", failed.text);
    assert!(mentions(&failed.text, &team.kasubdit) && mentions(&failed.text, &team.kasi));
    let statuses: Vec<String> = drills(&db).await.into_iter().map(|d| d.0).collect();
    assert_eq!(statuses, ["passed", "failed", "failed"]);
    no_stage_left(&dir.join("server"));

    // The daily log keeps each, with its verdict.
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasubdit, "/log");
    let log = expect_text(&stub, g, n, "Latihan pemulihan #3").await;
    for needle in [
        "Latihan pemulihan #1</b> — lulus",
        "Latihan pemulihan #2</b> — GAGAL",
        "pesan dibandingkan",
    ] {
        assert!(log.text.contains(needle), "{needle}: {}", log.text);
    }
}

#[tokio::test]
async fn the_scheduled_drill_runs_by_itself_once_a_backup_is_there() {
    let (team, stub, db, mut env) = scene("en").await.parts();
    let dir = test_dir("drill-sched");
    use_engine(&mut env, &dir);
    set(&mut env, "RESTORE_DRILL_DAYS", "1");
    set(&mut env, "RESTORE_DRILL_AT", "00:00");
    fill_mailbox("dewi@djki.go.id");
    let _bot = BotProcess::start(&env);
    backup_through_the_chat(&stub, &team, &db).await;
    // Checked once a minute: the drill starts within it, by itself.
    let passed = stub
        .wait_for_text(
            team.group.id,
            0,
            "Restore drill #1 PASSED",
            std::time::Duration::from_secs(150),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stub.transcript(team.group.id)));
    assert!(
        passed.text.contains("scratch copy was removed"),
        "{}",
        passed.text
    );
    let started = stub
        .messages(team.group.id)
        .into_iter()
        .find(|m| m.text.contains("Restore drill #1"))
        .expect("the start");
    assert!(started.text.contains("(scheduled)"), "{}", started.text);
    // Not again the same day: domain::drill's tests; here, one drill, and nothing left.
    assert_eq!(drills(&db).await.len(), 1);
    no_stage_left(&dir.join("server"));
}
