//! A restore asked in the chat: the Kasi asks, only a Kasubdit other than the asker decides, a
//! refused request changes nothing, an approved one runs against the harness's sshd and Dovecot,
//! reports per folder, and lands in the daily log.

use crate::imap::Imap;
use crate::support::*;
use mailbox_backup_bot::engine::restore;

pub(crate) fn buttons_of(
    stub: &bot_api_stub::Stub,
    team: &Team,
    needle: &str,
) -> (i64, Vec<String>) {
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
    let (team, stub, _db, mut env) = scene("id").await.parts();
    let dir = test_dir("rchat");
    use_engine(&mut env, &dir);
    empty_mailbox(target);
    fill_mailbox(user);
    let _bot = BotProcess::start(&env);
    // A verified backup the bot made and recorded, ordered and run through the chat.
    let folder = backup_through_the_chat(&stub, &team, &_db).await;
    let g = &team.group;

    // Wrong role, bad arguments, an account not in the backup: each says what to type.
    let n = stub.messages(g.id).len();
    stub.say(g, &team.jfu, &format!("/restore {folder} {user} {target}"));
    expect_text(&stub, g, n, "hanya untuk Kasi").await;
    stub.say(g, &team.kasi, "/restore");
    expect_text(&stub, g, n, "Format perintah: /restore FOLDER AKUN").await;
    stub.say(
        g,
        &team.kasi,
        &format!("/restore {folder} nobody@djki.go.id"),
    );
    expect_text(&stub, g, n, "tidak ada dalam backup").await;

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
}

/// An encrypted backup in the chat: the report says so, `/check` shows the recipient, and
/// `/restore` says what is missing while the admin computer holds no identity; once the bot is
/// given one, the same request is approved and restores message for message.
#[tokio::test]
async fn an_encrypted_dovecot_backup_is_restored_in_the_chat_only_with_an_identity() {
    let (user, target) = ("fajar@djki.go.id", "restore5@djki.go.id");
    let (team, stub, db, mut env) = scene("id").await.parts();
    let dir = test_dir("encchat");
    use_engine(&mut env, &dir);
    empty_mailbox(target);
    let (identity, recipient) = mailbox_backup_bot::engine::encryption::generate();
    let key = dir.join("kasubdit.key");
    std::fs::write(&key, identity).expect("identity");
    // As `keygen` writes it: the bot refuses to start with a key others can read.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("0600");
    set(&mut env, "BACKUP_ENCRYPT_TO", &recipient);
    fill_mailbox(user);
    let mut bot = BotProcess::start(&env);
    let folder = backup_through_the_chat(&stub, &team, &db).await;
    let g = &team.group;
    let report = expect_text(&stub, g, 0, "Laporan backup").await;
    assert!(
        report
            .text
            .contains("🔐 Terenkripsi (age) untuk 1 kunci penerima"),
        "{}",
        report.text
    );
    stub.say(g, &team.kasi, "/check");
    let check = expect_text(&stub, g, 0, "Pemeriksaan:").await;
    let text = check.plain_text();
    assert!(
        text.contains("✅ enkripsi backup (age) — on: age, to 1 recipient(s)"),
        "{text}"
    );
    assert!(text.contains("✅ penerima enkripsi age1"), "{text}");

    // No identity on the admin computer: refused at once, saying what to do.
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasi, &format!("/restore {folder} {user} {target}"));
    let refused = expect_text(&stub, g, n, "terenkripsi").await;
    assert!(
        refused.text.contains("BACKUP_AGE_IDENTITY"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("--identity"), "{}", refused.text);
    assert!(
        !stub
            .messages(g.id)
            .iter()
            .any(|m| m.text.contains("Permintaan pemulihan #")),
        "nothing is put to the Kasubdit"
    );

    // The identity given to the bot: the request goes through and the mail comes back.
    bot.kill();
    set(&mut env, "BACKUP_AGE_IDENTITY", &key.to_string_lossy());
    let _bot = BotProcess::start(&env);
    stub.say(g, &team.kasi, &format!("/restore {folder} {user} {target}"));
    expect_text(&stub, g, 0, "Permintaan pemulihan #1").await;
    let (mid, _) = buttons_of(&stub, &team, "Permintaan pemulihan #1");
    stub.press(g, &team.kasubdit, mid, "restore:1:ok")
        .expect("press");
    stub.wait_for_text(g.id, 0, "Pemulihan #1 selesai</b>", WAIT * 3)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stub.transcript(g.id)));
    let port: u16 = env_var("TEST_DOVECOT_IMAP_PORT").parse().expect("port");
    assert_eq!(
        Imap::login(port, user, "secret").contents(),
        Imap::login(port, target, "secret").contents(),
        "every folder, message and flag came back"
    );
    print_chat(&stub, &team);
}

/// A backup ordered, directed and started in the chat, run by the bot's engine and reported;
/// returns its dated folder's name (as the bot recorded it).
pub(crate) async fn backup_through_the_chat(
    stub: &bot_api_stub::Stub,
    team: &Team,
    db: &str,
) -> String {
    let g = &team.group;
    // The bot answers (its migrations are applied) before the database is looked at.
    let n = stub.messages(g.id).len();
    stub.say(g, &team.kasubdit, "/status");
    stub.wait_for(g.id, WAIT * 3, |m| m.len() > n)
        .await
        .expect("the bot answers");
    stub.say(g, &team.kasubdit, "/order_backup");
    wait_until(
        db,
        "SELECT count(*) FROM orders WHERE status = 'ordered'",
        "ordered",
    )
    .await;
    stub.say(g, &team.kasi, "/direct @budi_jfu");
    wait_until(
        db,
        "SELECT count(*) FROM orders WHERE status = 'directed'",
        "directed",
    )
    .await;
    stub.say(g, &team.jfu, "/start");
    let deadline = std::time::Instant::now() + WAIT * 6;
    loop {
        let status = status_of_last_order(db).await;
        if status == "reported" {
            break;
        }
        assert!(
            status != "failed" && std::time::Instant::now() < deadline,
            "the backup did not come through ({status}):\n{}",
            stub.transcript(g.id)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stub.say(g, &team.kasi, "/receive");
    wait_until(
        db,
        "SELECT count(*) FROM orders WHERE status = 'logged'",
        "logged",
    )
    .await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db)
        .await
        .expect("db");
    let local: String = sqlx::query_scalar(
        "SELECT local_folder FROM orders WHERE status = 'logged' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the run's folder");
    std::path::Path::new(&local)
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned()
}

fn env_var(name: &str) -> String {
    crate::support::env(name)
}

/// An engine that runs the scripted backup and restores by the trait, recording what it was
/// asked to restore: the chat's restore goes through the engine like a backup does.
struct RestoringEngine {
    backup: ScriptedEngine,
    restored: std::sync::Mutex<Vec<(String, String, String, String)>>,
}

impl mailbox_backup_bot::engine::Backups for RestoringEngine {
    fn run(
        &self,
        request: mailbox_backup_bot::engine::RunRequest,
        progress: mailbox_backup_bot::engine::ProgressSender,
    ) -> futures::future::BoxFuture<
        '_,
        Result<mailbox_backup_bot::engine::BackupReport, mailbox_backup_bot::engine::EngineError>,
    > {
        self.backup.run(request, progress)
    }
}

/// What this double does not do is refused as the kind of server that cannot do it would be.
fn not_here<'a, T: Send + 'a>() -> futures::future::BoxFuture<'a, Result<T, restore::RestoreError>>
{
    Box::pin(async { Err(restore::RestoreError::Unsupported("test double".into())) })
}

impl mailbox_backup_bot::engine::Restores for RestoringEngine {
    fn backup_root(&self) -> std::path::PathBuf {
        "/tmp/none".into()
    }

    fn check_rebuild<'a>(
        &'a self,
        _folder: &'a str,
        _account: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<(String, mailbox_backup_bot::engine::rebuild::AccountPlan), restore::RestoreError>,
    > {
        not_here()
    }

    fn rebuild<'a>(
        &'a self,
        _folder: &'a str,
        _account: &'a str,
        _directory_sha256: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<mailbox_backup_bot::engine::rebuild::Rebuilt, restore::RestoreError>,
    > {
        not_here()
    }

    fn check_directory<'a>(
        &'a self,
        _folder: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<
            (
                String,
                mailbox_backup_bot::engine::directory::DirectoryCounts,
            ),
            restore::RestoreError,
        >,
    > {
        not_here()
    }

    fn rebuild_all<'a>(
        &'a self,
        _folder: &'a str,
        _directory_sha256: &'a str,
        _archives: &'a std::collections::BTreeMap<String, String>,
        _progress: mailbox_backup_bot::engine::rebuild::AccountProgress<'a>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<mailbox_backup_bot::engine::rebuild::RebuildSummary, restore::RestoreError>,
    > {
        not_here()
    }

    fn drill<'a>(
        &'a self,
        _folder: &'a str,
        _account: &'a str,
        _sha256: &'a str,
        _progress: Box<dyn FnMut(restore::RestoreProgress) + Send + 'a>,
    ) -> futures::future::BoxFuture<'a, Result<restore::RestoreReport, restore::RestoreError>> {
        not_here()
    }

    fn check_backup<'a>(
        &'a self,
        folder: &'a str,
        _account: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<restore::VerifiedArchive, restore::RestoreError>>
    {
        Box::pin(async move {
            Ok(restore::VerifiedArchive {
                folder: folder.to_owned(),
                file: "ani@djki.go.id.tar.gz".into(),
                sha256: "ab".repeat(32),
                size: 2048,
            })
        })
    }

    fn check_target<'a>(
        &'a self,
        _into: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), restore::RestoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn restore<'a>(
        &'a self,
        request: restore::RestoreRequest<'a>,
        mut progress: Box<dyn FnMut(restore::RestoreProgress) + Send + 'a>,
    ) -> futures::future::BoxFuture<'a, Result<restore::RestoreReport, restore::RestoreError>> {
        Box::pin(async move {
            progress(restore::RestoreProgress::Checking);
            self.restored.lock().expect("lock").push((
                request.folder.to_owned(),
                request.account.to_owned(),
                request.into.to_owned(),
                request.sha256.unwrap_or_default().to_owned(),
            ));
            Ok(restore::RestoreReport {
                folder: request.folder.to_owned(),
                account: request.account.to_owned(),
                into: request.into.to_owned(),
                file: "ani@djki.go.id.tar.gz".into(),
                bytes: 2048,
                folders: vec![restore::FolderCount {
                    folder: "INBOX".into(),
                    in_backup: 12,
                    already_there: 0,
                    restored: 12,
                    present_after: 12,
                }],
                recorded: Some(12),
            })
        })
    }
}

#[tokio::test]
async fn a_chat_restore_goes_through_the_engine_with_the_hash_the_order_recorded() {
    let (team, stub, _db, env) = scene("id").await.parts();
    let engine = std::sync::Arc::new(RestoringEngine {
        backup: ScriptedEngine {
            fail_login: false,
            hold: None,
            folder: None,
            hold_again: false,
        },
        restored: Default::default(),
    });
    let _bot = start_bot(
        &env,
        mailbox_backup_bot::engine::Engine::both(engine.clone()),
    )
    .await;
    let g = &team.group;
    order_to_report(&stub, &team).await;
    stub.say(g, &team.kasi, "/receive");
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
    // The scripted run reported /tmp/none/24-11-2026 with ani's archive of SHA-256 "ab…".
    stub.say(g, &team.kasi, "/restore 24-11-2026 ani@djki.go.id");
    let asked = expect_text(&stub, g, 0, "Permintaan pemulihan #1").await;
    assert!(asked.text.contains("perintah #1"), "{}", asked.text);
    stub.press(g, &team.kasubdit, asked.message_id, "restore:1:ok")
        .expect("press");
    expect_text(&stub, g, 0, "Pemulihan #1 selesai</b>").await;
    assert_eq!(
        *engine.restored.lock().expect("lock"),
        vec![(
            "24-11-2026".to_owned(),
            "ani@djki.go.id".to_owned(),
            "ani@djki.go.id".to_owned(),
            "ab".repeat(32)
        )],
        "restored once, with the hash the order recorded"
    );
}
