//! A restore asked in the chat: the Kasi asks, only a Kasubdit other than the asker decides, a
//! refused request changes nothing, an approved one runs against the harness's sshd and Dovecot,
//! reports per folder, and lands in the daily log.

use mailbox_backup_bot::config::{BackupKind, MailStore};

use crate::imap::Imap;
use crate::support::*;

fn buttons_of(stub: &bot_api_stub::Stub, team: &Team, needle: &str) -> (i64, Vec<String>) {
    let m = stub
        .messages(team.group.id)
        .into_iter()
        .rev()
        .find(|m| m.text.contains(needle))
        .expect("the request");
    (m.message_id, m.button_data())
}

#[tokio::test]
async fn a_restore_asked_by_the_kasi_runs_only_once_a_kasubdit_approves() {
    let (user, target) = ("eko@djki.go.id", "restore4@djki.go.id");
    let Scene {
        team,
        stub,
        db: _db,
        mut env,
    } = scene("id").await;
    let dir = test_dir("rchat");
    use_engine(&mut env, &dir);
    fill_mailbox(user);
    // A verified backup in dir/local, made by the engine as a run of the bot makes it.
    let s = crate::engine::settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Dovecot {
            config: Some(env_var("TEST_DOVECOT_CONF")),
        }),
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let today = chrono::Utc::now().with_timezone(&s.timezone).date_naive();
    let backup = mailbox_backup_bot::engine::run::run(
        &s,
        mailbox_backup_bot::engine::RunRequest::new(
            today,
            "test",
            mailbox_backup_bot::engine::Stop::never(),
        ),
        tx,
    )
    .await
    .expect("the backup runs");
    assert!(backup.all_verified());
    let folder = backup
        .folders
        .local
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let bot = start_bot(&env, None).await;
    let g = &team.group;

    // Wrong role, bad arguments, an account not in the backup: each says what to type.
    stub.say(g, &team.jfu, &format!("/restore {folder} {user} {target}"));
    expect_text(&stub, g, 0, "Kasi").await;
    stub.say(g, &team.kasi, "/restore");
    expect_text(&stub, g, 0, "Format perintah: /restore FOLDER AKUN").await;
    stub.say(
        g,
        &team.kasi,
        &format!("/restore {folder} nobody@djki.go.id"),
    );
    expect_text(&stub, g, 0, "tidak ada dalam backup").await;

    // Asked, then refused by the Kasubdit: nothing changes.
    stub.say(g, &team.kasi, &format!("/restore {folder} {user} {target}"));
    let asked = expect_text(&stub, g, 0, "Permintaan pemulihan #1").await;
    assert!(mentions(&asked.text, &team.kasubdit), "{}", asked.text);
    let (mid, data) = buttons_of(&stub, &team, "Permintaan pemulihan #1");
    assert_eq!(data, vec!["restore:1:ok", "restore:1:no"]);
    // Not the Kasi who asked, not a JFU.
    stub.press(g, &team.kasi, mid, "restore:1:ok")
        .expect("press");
    stub.press(g, &team.jfu, mid, "restore:1:ok")
        .expect("press");
    stub.press(g, &team.kasubdit, mid, "restore:1:no")
        .expect("press");
    expect_text(&stub, g, 0, "menolak permintaan pemulihan #1").await;
    let answers = stub.callback_answers();
    let texts: Vec<&str> = answers.iter().filter_map(|a| a.text.as_deref()).collect();
    assert!(
        texts.contains(&"Hanya Kasubdit yang dapat menyetujui atau menolak pemulihan."),
        "{texts:?}"
    );
    assert!(texts.contains(&"Ditolak."), "{texts:?}");
    let port: u16 = env_var("TEST_DOVECOT_IMAP_PORT").parse().expect("port");
    assert!(
        Imap::login(port, target, "secret")
            .contents()
            .values()
            .all(Vec::is_empty),
        "a refused request changes nothing"
    );
    // The spent request's buttons are gone; a late press is answered, not acted on.
    stub.press(g, &team.kasubdit, mid, "restore:1:ok")
        .expect("press");

    // Asked again and approved: the bot restores and reports per folder.
    stub.say(g, &team.kasi, &format!("/restore {folder} {user} {target}"));
    expect_text(&stub, g, 0, "Permintaan pemulihan #2").await;
    let (mid, _) = buttons_of(&stub, &team, "Permintaan pemulihan #2");
    stub.press(g, &team.kasubdit, mid, "restore:2:ok")
        .expect("press");
    expect_text(&stub, g, 0, "menyetujui pemulihan #2").await;
    let done = stub
        .wait_for_text(g.id, 0, "Pemulihan #2 selesai</b>", WAIT * 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(mentions(&done.text, &team.kasi), "{}", done.text);
    assert!(
        done.text.contains("tidak ada yang dihapus"),
        "{}",
        done.text
    );
    assert_eq!(
        Imap::login(port, user, "secret").contents(),
        Imap::login(port, target, "secret").contents(),
        "every folder, message and flag came back"
    );
    assert_eq!(
        stub.messages(g.id)
            .iter()
            .filter(|m| m.text.contains("menolak permintaan pemulihan #1")
                || m.text.contains("menyetujui pemulihan #1"))
            .count(),
        1,
        "the late press on request 1 did nothing"
    );
    let msgs = stub.messages(g.id);
    let at = |needle: &str| {
        msgs.iter()
            .position(|m| m.text.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{}", stub.transcript(g.id)))
    };
    assert!(at("menyetujui pemulihan #2") < at("Pemulihan #2 selesai dijalankan"));
    stub.say(g, &team.kasi, "/log hari ini");
    let log = expect_text(&stub, g, 0, "<b>Pemulihan #2</b> — selesai").await;
    assert!(log.text.contains("Log kegiatan harian"), "{}", log.text);
    assert!(
        stub.messages(g.id)
            .iter()
            .all(|m| !m.text.starts_with("⏳")),
        "no progress message is left saying it is still running"
    );
    print_chat(&stub, &team);
    bot.abort();
    let _ = bot.await;
}

fn env_var(name: &str) -> String {
    crate::support::env(name)
}
