//! Test support: a fresh database per test, the Bot API stub, the people of the chain, and the
//! bot built exactly as the binary builds it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_api_stub::{Chat, Person, SentMessage, Stub};
use futures::future::BoxFuture;
use mailbox_backup_bot::config::Settings;
use mailbox_backup_bot::domain::SopStep;
use mailbox_backup_bot::engine::{
    BackupReport, Backups, Engine, EngineError, MailboxResult, MailboxStatus, Progress,
    ProgressSender, RunFolders, RunRequest,
};
use sqlx::Connection;

use std::path::{Path, PathBuf};

pub const TOKEN: &str = "123456:TEST-token-never-logged";
pub const WAIT: Duration = Duration::from_secs(20);

/// Fails the test with one line saying what to run instead (no panic message, no backtrace:
/// nothing is wrong with the code, the services are missing).
pub fn without_services(why: &str) -> ! {
    let line = format!(
        "{why}: the end-to-end tests need PostgreSQL, sshd, Dovecot and the Zimbra simulator on \
         127.0.0.1; run them with `bash scripts/test`"
    );
    eprintln!("{line}");
    std::panic::resume_unwind(Box::new(line))
}

/// What a test needs from the environment that `scripts/test` sets up.
pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| without_services(&format!("{var} is not set")))
}

pub fn database_url() -> String {
    env("DATABASE_URL")
}

/// A database made for one test, dropped when the test ends (also when it panics). A test
/// process that was killed leaves its database behind: the next test to start drops the ones
/// older than an hour (their names carry their creation time).
pub struct TestDb {
    url: String,
    name: String,
}

impl std::ops::Deref for TestDb {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

impl AsRef<str> for TestDb {
    fn as_ref(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Display for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

const DB_PREFIX: &str = "t_";
const STALE_SECS: i64 = 3600;

async fn drop_database(admin: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    // FORCE: a bot of the test may still hold connections.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: a thread of its own.
        let admin = database_url();
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(drop_database(&admin, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}", self.name),
        }
    }
}

/// Drops the test databases (`t_<unix seconds>_…`) made more than an hour ago: left by a test
/// process that was killed. Younger ones may belong to a run going on now.
async fn drop_stale_databases(conn: &mut sqlx::PgConnection, admin: &str) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    for name in names {
        let mut parts = name.trim_start_matches(DB_PREFIX).split('_');
        let born = parts.next().and_then(|p| p.parse::<i64>().ok());
        // Only names of this form: t_<seconds>_<pid>_<n> (a pid is far below 10⁹; an older form,
        // t_<pid>_<n>_<micros>, is left alone).
        if parts.count() != 2 {
            continue;
        }
        if born.is_some_and(|b| b > 1_000_000_000 && now - b > STALE_SECS) {
            let _ = drop_database(admin, &name).await;
        }
    }
}

/// A new, empty database on the shared server, dropped when the returned guard goes.
pub async fn fresh_database() -> TestDb {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{DB_PREFIX}{}_{}_{}",
        chrono::Utc::now().timestamp(),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
    );
    let admin = database_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| without_services(&format!("PostgreSQL at DATABASE_URL: {e}")));
    drop_stale_databases(&mut conn, &admin).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (base, _) = admin
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    TestDb {
        url: format!("{base}/{name}"),
        name,
    }
}

pub struct Team {
    pub kasubdit: Person,
    pub kasi: Person,
    pub jfu: Person,
    pub jfu2: Person,
    pub stranger: Person,
    pub group: Chat,
    pub other_group: Chat,
}

impl Team {
    pub fn new() -> Team {
        Team {
            kasubdit: Person::new(5_000_000_001, "Sri", "sri_kasubdit"),
            kasi: Person::new(5_000_000_002, "Agus", "agus_kasi"),
            jfu: Person::new(5_000_000_003, "Budi", "budi_jfu"),
            jfu2: Person::new(5_000_000_004, "Dewi", "dewi_jfu"),
            stranger: Person::new(5_000_000_009, "Tamu", "tamu"),
            group: Chat::group(-1_001_234_567_890, "Tim Portal Web DJKI"),
            other_group: Chat::group(-1_009_999_999_999, "Grup Lain"),
        }
    }

    pub fn env(&self, stub: &Stub, db: &str, lang: &str) -> Vec<(String, String)> {
        vec![
            ("TELOXIDE_TOKEN".into(), TOKEN.into()),
            ("TELEGRAM_API_URL".into(), stub.url()),
            ("DATABASE_URL".into(), db.into()),
            ("GROUP_CHAT_ID".into(), self.group.id.to_string()),
            ("KASUBDIT_IDS".into(), self.kasubdit.id.to_string()),
            ("KASI_IDS".into(), self.kasi.id.to_string()),
            (
                "JFU_IDS".into(),
                format!("{},{}", self.jfu.id, self.jfu2.id),
            ),
            ("BOT_LANG".into(), lang.into()),
            ("TELEGRAM_MESSAGES_PER_MINUTE".into(), "6000".into()),
            ("PROGRESS_INTERVAL_SECS".into(), "1".into()),
            // Scheduled drills only in the tests of drills: elsewhere one would start after
            // every backup and talk in the middle of what a test reads.
            ("RESTORE_DRILL_DAYS".into(), "0".into()),
        ]
    }
}

/// What every end-to-end test starts with: the people, the Bot API server with them in the
/// group, a fresh database, and the bot's settings for them.
pub struct Scene {
    pub team: Team,
    pub stub: Stub,
    /// Dropped with the value: bind it (`db: _db`) for as long as the test needs the database.
    pub db: TestDb,
    pub env: Vec<(String, String)>,
}

impl Scene {
    /// The scene as `(team, stub, db, env)`, to bind in one line; `_` for the database drops it
    /// at once.
    pub fn parts(self) -> (Team, Stub, TestDb, Vec<(String, String)>) {
        (self.team, self.stub, self.db, self.env)
    }
}

pub async fn scene(lang: &str) -> Scene {
    let team = Team::new();
    let stub = start_stub(&team).await;
    let db = fresh_database().await;
    let env = team.env(&stub, &db, lang);
    Scene {
        team,
        stub,
        db,
        env,
    }
}

pub async fn start_stub(team: &Team) -> Stub {
    let stub = Stub::start(
        ([127, 0, 0, 1], 0).into(),
        TOKEN,
        Person::new(7_000_000_001, "Backup Bot", "djki_backup_bot"),
    )
    .await
    .expect("stub starts");
    for p in [
        &team.kasubdit,
        &team.kasi,
        &team.jfu,
        &team.jfu2,
        &team.stranger,
    ] {
        stub.add_member(&team.group, p);
    }
    stub
}

/// The bot's settings as the binary reads them, from `env` alone.
fn settings_of(env: &[(String, String)]) -> Settings {
    let lookup = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    Settings::read(&lookup, None)
}

/// The bot started by the binary's own start-up (Telegram and PostgreSQL waited for, the bot
/// lock taken, migrations applied), not yet serving.
async fn started(env: &[(String, String)], engine: Engine) -> mailbox_backup_bot::startup::Started {
    mailbox_backup_bot::startup::start(&settings_of(env), engine)
        .await
        .expect("the bot starts")
        .expect("no stop signal while starting")
}

/// The bot's shared state built the way the binary builds it, without running it.
pub async fn build_app(env: &[(String, String)]) -> Arc<mailbox_backup_bot::procedure::app::App> {
    started(env, Engine::default()).await.running.app
}

/// The bot, in this process, started the way the binary starts it. Abort the handle to "kill"
/// it (its bot lock goes with it).
pub async fn start_bot(env: &[(String, String)], engine: Engine) -> tokio::task::JoinHandle<()> {
    let bot = started(env, engine).await;
    tokio::spawn(async move {
        mailbox_backup_bot::startup::serve(bot)
            .await
            .expect("bot runs");
    })
}

/// Whether a bot message's HTML mentions `person` (a `tg://user?id=` link, which notifies them).
pub fn mentions(html: &str, person: &Person) -> bool {
    html.contains(&format!("tg://user?id={}", person.id))
}

/// Waits for a bot message containing `needle` in the group, after the first `skip`.
pub async fn expect_text(stub: &Stub, chat: &Chat, skip: usize, needle: &str) -> SentMessage {
    match stub.wait_for_text(chat.id, skip, needle, WAIT).await {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

/// Steps 1 and 2 in Indonesian: the Kasubdit orders (order #1), the Kasi directs Budi; each
/// relayed.
pub async fn order_and_direct(stub: &Stub, team: &Team) {
    order_and_direct_in(stub, team, "id", "").await;
}

/// The Kasubdit orders (`/order_backup NOTE`) and the Kasi directs Budi; each answer about
/// order #1 is awaited in the bot's language `lang`.
pub async fn order_and_direct_in(stub: &Stub, team: &Team, lang: &str, note: &str) {
    let g = &team.group;
    let (ordered, directed) = match lang {
        "en" => ("Mailbox backup order #1", "directs order #1"),
        _ => ("Perintah backup mailbox #1", "mendisposisikan perintah #1"),
    };
    stub.say(
        g,
        &team.kasubdit,
        format!("/order_backup {note}").trim_end(),
    );
    expect_text(stub, g, 0, ordered).await;
    stub.say(g, &team.kasi, "/direct @budi_jfu");
    expect_text(stub, g, 0, directed).await;
}

/// Orders, directs Budi and starts, in the bot's language `lang`; returns once step 4 has begun
/// (a held engine holds there).
pub async fn start_and_hold_in_step_4(stub: &Stub, team: &Team, db: &str, lang: &str) {
    order_and_direct_in(stub, team, lang, "backup bulanan").await;
    let started = if lang == "en" {
        "starts backup #1"
    } else {
        "memulai backup #1"
    };
    stub.say(&team.group, &team.jfu, "/start");
    expect_text(stub, &team.group, 0, started).await;
    wait_until(
        db,
        "SELECT count(*) FROM order_steps WHERE step = 4",
        "step 4 begins",
    )
    .await;
}

/// [`order_and_direct`], then Budi starts it and the report of order #1 arrives.
pub async fn order_to_report(stub: &Stub, team: &Team) {
    order_and_direct(stub, team).await;
    stub.say(&team.group, &team.jfu, "/start");
    expect_text(stub, &team.group, 0, "Laporan backup #1").await;
}

/// The month's activity CSV the bot attached in `chat` (after `/export`), as sent.
pub async fn exported_csv(stub: &Stub, chat: &Chat) -> bot_api_stub::SentDocument {
    let is_log = |m: &SentMessage| {
        m.document
            .as_ref()
            .is_some_and(|d| d.file_name.starts_with("log-backup-mailbox"))
    };
    stub.wait_for(chat.id, WAIT, |msgs| msgs.iter().any(is_log))
        .await
        .unwrap_or_else(|m| panic!("no document: {m:?}"))
        .iter()
        .filter(|m| is_log(m))
        .find_map(|m| m.document.clone())
        .expect("a document")
}

/// An engine stand-in for the chain tests (the real one is tested in the engine tests): it
/// reports every machine step and two verified mailboxes, or fails at login when told to.
pub struct ScriptedEngine {
    pub fail_login: bool,
    pub hold: Option<Arc<tokio::sync::Notify>>,
    /// The local folder it reports (with a `SHA256SUMS` written there); a made-up path if none.
    pub folder: Option<PathBuf>,
    /// With `hold`: waits for it once more after step 4 ends, before step 5.
    pub hold_again: bool,
}

impl ScriptedEngine {
    /// Every step goes well.
    pub fn ok() -> Engine {
        Engine::backups_only(Arc::new(ScriptedEngine {
            fail_login: false,
            hold: None,
            folder: None,
            hold_again: false,
        }))
    }

    /// The SSH login is refused.
    pub fn failing_login() -> Engine {
        Engine::backups_only(Arc::new(ScriptedEngine {
            fail_login: true,
            hold: None,
            folder: None,
            hold_again: false,
        }))
    }

    /// Every step goes well, but it waits in step 4 until `hold` is notified.
    pub fn held(hold: &Arc<tokio::sync::Notify>) -> Engine {
        Engine::backups_only(Arc::new(ScriptedEngine {
            fail_login: false,
            hold: Some(hold.clone()),
            folder: None,
            hold_again: false,
        }))
    }

    /// Like [`held`](Self::held), and then held again after step 4 ends (step 5 never starts
    /// unless `hold` is notified twice).
    pub fn held_twice(hold: &Arc<tokio::sync::Notify>) -> Engine {
        Engine::backups_only(Arc::new(ScriptedEngine {
            fail_login: false,
            hold: Some(hold.clone()),
            folder: None,
            hold_again: true,
        }))
    }

    /// Like [`held`](Self::held), reporting `folder`, where it writes a `SHA256SUMS`.
    pub fn held_in(hold: &Arc<tokio::sync::Notify>, folder: &Path) -> Engine {
        Engine::backups_only(Arc::new(ScriptedEngine {
            fail_login: false,
            hold: Some(hold.clone()),
            folder: Some(folder.to_owned()),
            hold_again: false,
        }))
    }
}

impl Backups for ScriptedEngine {
    fn run(
        &self,
        request: RunRequest,
        progress: ProgressSender,
    ) -> BoxFuture<'_, Result<BackupReport, EngineError>> {
        Box::pin(async move {
            let folders = request.resume.clone().unwrap_or(RunFolders {
                local: self
                    .folder
                    .clone()
                    .unwrap_or_else(|| "/tmp/none/24-11-2026".into()),
                server: "/srv/backup/24-11-2026".into(),
            });
            if let Some(folder) = &self.folder {
                let sums = format!(
                    "{}  ani@djki.go.id.tar.gz\n{}  budi@djki.go.id.tar.gz\n",
                    "ab".repeat(32),
                    "ab".repeat(32)
                );
                std::fs::write(folder.join("SHA256SUMS"), sums).expect("SHA256SUMS");
            }
            let now = chrono::Utc::now;
            let _ = progress.send(Progress::Folders(folders.clone()));
            let _ = progress.send(Progress::StepFinished {
                step: SopStep::CreateFolder,
                at: now(),
            });
            let _ = progress.send(Progress::StepStarted {
                step: SopStep::RemoteLogin,
                at: now(),
            });
            if self.fail_login {
                return Err(EngineError {
                    step: SopStep::RemoteLogin,
                    kind: mailbox_backup_bot::engine::ErrorKind::KeyRefused,
                    detail: "Permission denied (publickey)".into(),
                    folders: Some(folders),
                    space: None,
                });
            }
            if let Some(hold) = &self.hold {
                hold.notified().await;
            }
            let _ = progress.send(Progress::StepFinished {
                step: SopStep::RemoteLogin,
                at: now(),
            });
            if let (Some(hold), true) = (&self.hold, self.hold_again) {
                hold.notified().await;
            }
            for step in [SopStep::ServerBackup, SopStep::CopyAndReport] {
                let _ = progress.send(Progress::StepStarted { step, at: now() });
                let _ = progress.send(Progress::StepFinished { step, at: now() });
            }
            let mailbox = |name: &str, size| MailboxResult {
                account: name.into(),
                file: format!("{name}.tar.gz"),
                size,
                sha256: "ab".repeat(32),
                messages: Some(12),
                server_messages: None,
                piece: None,
                status: MailboxStatus::Verified,
            };
            Ok(BackupReport {
                directory: None,
                folders,
                mailboxes: vec![
                    mailbox("ani@djki.go.id", 2048),
                    mailbox("budi@djki.go.id", 4096),
                ],
                steps: vec![],
                bytes_total: 6144,
                bytes_copied: 6144,
                reconnects: 0,
                server_folders_removed: vec![],
                bytes_reused: 0,
                copy_secs: 0.5,
                local_folders_removed: vec![],
                disk_free: None,
                encrypted_to: 0,
                incremental: None,
            })
        })
    }
}

/// A folder of this test's own under the shared temp dir (short: ssh socket paths).
pub fn test_dir(name: &str) -> PathBuf {
    // Only under the harness's folder (removed with it): a plain `cargo test` stops here with
    // the line saying to run `bash scripts/test`, and leaves nothing in /tmp.
    let base = env("TEST_TMP");
    let dir = PathBuf::from(base).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("local")).expect("test dir");
    dir
}

pub fn doveadm(args: &[&str], stdin: Option<&[u8]>) {
    doveadm_on(&env("TEST_DOVECOT_CONF"), args, stdin)
}

/// `doveadm -c CONF ARGS`, with `stdin` fed to it; asserts it succeeded.
pub fn doveadm_on(conf: &str, args: &[&str], stdin: Option<&[u8]>) {
    use std::io::Write;
    let mut cmd = std::process::Command::new("doveadm");
    cmd.arg("-c")
        .arg(conf)
        .args(args)
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("doveadm runs");
    if let Some(data) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write");
    }
    drop(child.stdin.take());
    let status = child.wait().expect("doveadm waits");
    assert!(status.success(), "doveadm {args:?} failed");
}

/// Empties a user's mailbox on the shared Dovecot (its whole mail folder goes, as a new account
/// has none), so a test that restores into it does not find an earlier run's messages there.
pub fn empty_mailbox(user: &str) {
    let mail = std::path::Path::new(&env("TEST_DOVECOT_MAIL")).join(user);
    match std::fs::remove_dir_all(&mail) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("emptying {}: {e}", mail.display()),
    }
}

/// Fills a user's mailbox: nested folders, a folder with a space, an attachment of ~1 MB.
pub fn fill_mailbox(user: &str) -> usize {
    let _ = std::process::Command::new("doveadm")
        .args([
            "-c",
            &env("TEST_DOVECOT_CONF"),
            "mailbox",
            "create",
            "-u",
            user,
            "Surat Masuk",
            "Arsip",
            "Arsip.2026",
        ])
        .status();
    let big: String = (0..20_000).map(|i| format!("{:050}\r\n", i)).collect();
    let mut n = 0;
    for (folder, count) in [("INBOX", 3), ("Surat Masuk", 2), ("Arsip.2026", 2)] {
        for i in 0..count {
            let body = if i == 0 && folder == "Arsip.2026" {
                big.clone()
            } else {
                format!("isi pesan {i}\r\n")
            };
            let msg = format!("From: kasi@djki.go.id\r\nTo: {user}\r\nSubject: {folder} {i}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}");
            doveadm(&["save", "-u", user, "-m", folder], Some(msg.as_bytes()));
            n += 1;
        }
    }
    n
}

/// Runs a program and asserts it succeeded.
pub fn sh(program: &str, args: &[&str]) {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// An sshd of this test's own on 127.0.0.1, with the shared client key: its connections can be
/// killed or stopped without touching other tests.
pub struct PrivateSshd {
    dir: PathBuf,
    port: u16,
    /// Session processes signalled by the test, cleaned up at the end whatever happened.
    orphans: std::sync::Mutex<Vec<String>>,
    listener_pid: std::sync::Mutex<String>,
}

impl PrivateSshd {
    pub fn start(dir: &Path) -> PrivateSshd {
        PrivateSshd::start_with(dir, "")
    }

    /// [`start`](Self::start) with `extra` lines added to its configuration (a `SetEnv PATH=…`).
    pub fn start_with(dir: &Path, extra: &str) -> PrivateSshd {
        let d = dir.join("sshd");
        std::fs::create_dir_all(&d).expect("sshd dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let key = d.join("hostkey");
        sh(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &key.to_string_lossy(),
            ],
        );
        let authorized = Path::new(&env("MAIL_SSH_KEY")).with_file_name("authorized_keys");
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nMaxSessions 64\nMaxStartups 64\n{extra}",
            key.display(),
            d.join("sshd.pid").display(),
            authorized.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("config");
        sh(
            "/usr/sbin/sshd",
            &[
                "-f",
                &d.join("sshd_config").to_string_lossy(),
                "-E",
                &d.join("sshd.log").to_string_lossy(),
            ],
        );
        let public = std::fs::read_to_string(d.join("hostkey.pub")).expect("host key");
        let mut words = public.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{port} {} {}\n",
            words.next().expect("type"),
            words.next().expect("key")
        );
        std::fs::write(d.join("known_hosts"), line).expect("known_hosts");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the private sshd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let sshd = PrivateSshd {
            dir: d,
            port,
            orphans: Default::default(),
            listener_pid: Default::default(),
        };
        sshd.find_listener();
        sshd
    }

    /// Starts the listener again (after [`Self::stop`]).
    pub fn restart(&self) {
        sh(
            "/usr/sbin/sshd",
            &[
                "-f",
                &self.dir.join("sshd_config").to_string_lossy(),
                "-E",
                &self.dir.join("sshd.log").to_string_lossy(),
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private sshd did not start again"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.find_listener();
    }

    /// Stops the listener at once: new connections are refused.
    pub fn stop(&self) {
        if let Ok(pid) = self.listener().parse::<i32>() {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// The listening sshd, as found when it started.
    pub fn listener(&self) -> String {
        self.listener_pid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn find_listener(&self) {
        let pid = self.look_up_listener();
        *self.listener_pid.lock().unwrap_or_else(|p| p.into_inner()) = pid;
    }

    /// Found by its config path: its pid file is not reliable here.
    fn look_up_listener(&self) -> String {
        let config = self.dir.join("sshd_config");
        let out = std::process::Command::new("pgrep")
            .args(["-f", &format!("{}.*listener", config.display())])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("the private sshd is not running ({})", config.display()))
            .to_owned()
    }

    /// The per-connection sshd processes: the listener's children (privileged monitors) and
    /// their children, which move the data. Read from /proc: a fault must land fast.
    pub fn sessions(&self) -> Vec<String> {
        let listener = self.listener();
        let mut all = children_of(&listener);
        let grandchildren: Vec<String> = all.iter().flat_map(|p| children_of(p)).collect();
        all.extend(grandchildren);
        all
    }

    pub fn signal_sessions(&self, signal: &str) -> usize {
        let sessions = self.sessions();
        self.orphans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(sessions.iter().cloned());
        let sig = match signal {
            "-KILL" => libc::SIGKILL,
            "-STOP" => libc::SIGSTOP,
            "-CONT" => libc::SIGCONT,
            other => panic!("unknown signal {other}"),
        };
        for pid in &sessions {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, sig) };
            }
        }
        sessions.len()
    }

    /// The environment a bot process needs to log in here instead of the shared sshd.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("MAIL_SSH_PORT".into(), self.port.to_string()),
            (
                "MAIL_SSH_KNOWN_HOSTS".into(),
                self.dir.join("known_hosts").to_string_lossy().into_owned(),
            ),
        ]
    }

    pub fn use_in(&self, s: &mut mailbox_backup_bot::config::EngineSettings) {
        s.ssh_port = self.port;
        s.ssh_known_hosts = self.dir.join("known_hosts");
    }
}

impl Drop for PrivateSshd {
    fn drop(&mut self) {
        let config = self.dir.join("sshd_config").to_string_lossy().into_owned();
        let _ = std::process::Command::new("pkill")
            .args(["-CONT", "-f", &config])
            .status();
        let _ = std::process::Command::new("pkill")
            .args(["-f", &config])
            .status();
        // Connections of the listener go with it; any left are stopped ones, gone at -CONT.
        for pid in self
            .orphans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill has no memory preconditions; a pid already gone is fine.
                unsafe {
                    libc::kill(pid, libc::SIGCONT);
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// The pids whose parent is `parent`, from /proc.
pub fn children_of(parent: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The fields after the command name (which may hold spaces) start after ") ".
            let rest = &stat[stat.rfind(") ")? + 2..];
            let ppid = rest.split_whitespace().nth(1)?;
            (ppid == parent).then(|| pid.to_string())
        })
        .collect()
}

/// A TCP relay on 127.0.0.1 to `target` that can be paused: paused, it cuts the connections it
/// carries and closes new ones at once, as an unreachable server looks to a client.
pub struct PausableRelay {
    pub port: u16,
    paused: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl PausableRelay {
    pub async fn start(target: std::net::SocketAddr) -> PausableRelay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("relay port");
        let port = listener.local_addr().expect("relay address").port();
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (p, c) = (paused.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if p.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = c.subscribe();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    }
                });
            }
        });
        PausableRelay { port, paused, cut }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

/// A PostgreSQL cluster of the test's own (initdb in `dir`, 127.0.0.1, a free port), which the
/// test may stop and start; stopped when dropped. Needs `TEST_PG_BIN` (scripts/test sets it).
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start(dir: &Path) -> PrivatePostgres {
        let bin = PathBuf::from(env("TEST_PG_BIN"));
        let root = dir.join("pg");
        std::fs::create_dir_all(&root).expect("pg dir");
        std::fs::write(root.join("pwfile"), "test\n").expect("pwfile");
        sh(
            "chown",
            &["-R", "postgres:postgres", &root.to_string_lossy()],
        );
        let data = root.join("data");
        let port = free_port();
        let pg = PrivatePostgres { bin, data, port };
        pg.as_postgres(
            "initdb",
            &[
                "-D",
                &pg.data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", root.join("pwfile").display()),
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        );
        pg.start_server();
        pg
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data.to_string_lossy().into_owned();
        let mut all = vec!["-D", &data, "-w"];
        all.extend_from_slice(args);
        self.as_postgres("pg_ctl", &all);
    }

    pub fn start_server(&self) {
        let log = self.data.with_file_name("server.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.with_file_name("").display()
        );
        self.pg_ctl(&["-l", &log.to_string_lossy(), "-o", &opts, "start"]);
    }

    /// Stops the server at once (`-m fast`: sessions are cut, as in an outage).
    pub fn stop_server(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres:test@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let data = self.data.to_string_lossy().into_owned();
            let _ = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One number from the test's database.
pub async fn count(db: &str, sql: &'static str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(db).await.expect("connect");
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect("query")
}

pub async fn status_of_last_order(db: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(db).await.expect("connect");
    sqlx::query_scalar("SELECT status FROM orders ORDER BY id DESC LIMIT 1")
        .fetch_one(&mut conn)
        .await
        .expect("an order")
}

/// Waits until `sql` (a count) is above zero.
pub async fn wait_until(db: &str, sql: &'static str, what: &str) {
    let deadline = Instant::now() + WAIT;
    while count(db, sql).await == 0 {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints the group's messages as its members see them (for the docs and a failing test).
pub fn print_chat(stub: &bot_api_stub::Stub, team: &Team) {
    for m in stub.messages(team.group.id) {
        let edited = if m.edits.is_empty() {
            String::new()
        } else {
            format!(" (edited {}×)", m.edits.len())
        };
        eprintln!("[Backup Bot{edited}] {}\n", m.plain_text());
        for (i, e) in m.edits.iter().enumerate() {
            if e.contains("🔌") {
                eprintln!(
                    "    (edit {}) {}",
                    i + 1,
                    mailbox_backup_bot::messages::html_to_text(e)
                );
            }
        }
    }
}

/// Points the bot's settings at the harness's sshd and Dovecot, with `dir/server` as the server
/// folder and `dir/local` (marked as the backup disk) as the local root.
pub fn use_engine(env: &mut Vec<(String, String)>, dir: &Path) {
    use_engine_on(env, dir, &crate::support::env("TEST_DOVECOT_CONF"));
}

/// [`use_engine`] with the Zimbra simulator as the mail server.
pub fn use_zimbra_engine(env: &mut Vec<(String, String)>, dir: &Path) {
    use_engine_of(env, dir, None);
}

/// [`use_engine`] with the Dovecot at `conf`.
pub fn use_engine_on(env: &mut Vec<(String, String)>, dir: &Path, conf: &str) {
    use_engine_of(env, dir, Some(conf));
}

fn use_engine_of(env: &mut Vec<(String, String)>, dir: &Path, conf: Option<&str>) {
    for (k, v) in engine_env(dir, conf) {
        env.retain(|(key, _)| *key != k);
        env.push((k, v));
    }
    std::fs::create_dir_all(dir.join("local")).expect("local root");
    mailbox_backup_bot::engine::local::init_disk(&dir.join("local")).expect("disk mark");
}

/// The engine's settings for the Dovecot at `conf` (none: the Zimbra simulator), reached over
/// the test sshd, with its server and local folders under `dir`.
fn engine_env(dir: &Path, conf: Option<&str>) -> Vec<(String, String)> {
    let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let mut out: Vec<(String, String)> = [
        "MAIL_SSH_HOST",
        "MAIL_SSH_PORT",
        "MAIL_SSH_USER",
        "MAIL_SSH_KEY",
        "MAIL_SSH_KNOWN_HOSTS",
    ]
    .iter()
    .map(|var| (var.to_string(), env(var)))
    .collect();
    match conf {
        Some(conf) => out.extend([
            ("MAIL_BACKUP_KIND".into(), "dovecot".into()),
            ("MAIL_DOVEADM_CONFIG".into(), conf.to_owned()),
        ]),
        None => out.push(("MAIL_BACKUP_KIND".into(), "zimbra".into())),
    }
    out.extend([
        ("MAIL_SERVER_BACKUP_DIR".into(), path("server")),
        ("LOCAL_BACKUP_ROOT".into(), path("local")),
        ("MAIL_SERVER_MIN_FREE".into(), "64M".into()),
    ]);
    out
}

/// A small tmpfs mounted at `path` (a server folder, to fill on purpose), unmounted when dropped,
/// also when the test fails half way.
pub struct ServerDisk {
    path: PathBuf,
}

impl ServerDisk {
    pub fn mount(path: &Path, size: &str) -> ServerDisk {
        std::fs::create_dir_all(path).expect("mount point");
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &path.to_string_lossy(),
            ],
        );
        ServerDisk {
            path: path.to_owned(),
        }
    }
}

impl Drop for ServerDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

/// The bot binary, started with `run`; killed (SIGKILL) when dropped.
pub struct BotProcess {
    pub child: std::process::Child,
}

impl BotProcess {
    pub fn start(env: &[(String, String)]) -> BotProcess {
        Self::start_logging(env, None)
    }

    /// Like [`start`](Self::start), its log (stderr) written to `log` when given.
    pub fn start_logging(env: &[(String, String)], log: Option<&Path>) -> BotProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"));
        command
            .arg("run")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        if let Some(log) = log {
            command.stderr(std::fs::File::create(log).expect("the log file"));
        }
        let child = command.spawn().expect("the bot binary starts");
        BotProcess { child }
    }

    /// Kills it the hard way, as a power cut or `kill -9` would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sets `var` in a test's environment list, replacing an earlier value.
pub fn set(env: &mut Vec<(String, String)>, var: &str, value: &str) {
    env.retain(|(k, _)| k != var);
    env.push((var.into(), value.into()));
}

/// The name of a run's dated folder, as `restore` takes it.
pub fn folder_name(report: &mailbox_backup_bot::engine::BackupReport) -> String {
    report
        .folders
        .local
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned()
}

/// The binary at the terminal (`restore`, `backup`), set up for the Dovecot at `conf` with the
/// engine's folders under `dir` (as [`crate::engine::settings`] makes them).
pub fn dovecot_terminal(dir: &Path, conf: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"));
    cmd.envs(engine_env(dir, Some(conf)));
    cmd
}

/// The binary at the terminal, set up for the Zimbra simulator.
pub fn zimbra_terminal(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"));
    cmd.envs(engine_env(dir, None));
    cmd
}

/// Runs `cmd`; returns what it printed (stdout then stderr), and fails the test unless it
/// succeeded.
pub fn printed_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("the binary runs");
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{printed}");
    assert!(out.status.success(), "{printed}");
    printed
}

/// Every file (not folder) under `dir`, hidden ones and partial copies included.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether the file at `path` holds `needle` as it is, or once gunzipped (an archive's messages
/// are compressed: a search of the raw bytes alone would find nothing in a plain backup either).
pub fn holds_text(path: &Path, needle: &[u8]) -> bool {
    let raw = std::fs::read(path).expect("read");
    let has = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if has(&raw) {
        return true;
    }
    let mut unpacked = Vec::new();
    // A damaged or non-gzip file unpacks to what it can (nothing): only its raw bytes count.
    let _ = std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&raw[..]),
        &mut unpacked,
    );
    has(&unpacked)
}
