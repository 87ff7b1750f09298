//! The bot binary at start: a refused token, Telegram and PostgreSQL not there yet, and updates
//! from a chat that is not `GROUP_CHAT_ID`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The bot binary running `run`, its log in a file; killed when dropped.
struct Bot {
    child: Child,
    log: std::path::PathBuf,
}

impl Bot {
    fn start(env: &[(String, String)], dir: &Path) -> Bot {
        let log = dir.join("bot.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mailbox-backup-bot"))
            .arg("run")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // No backup engine: scripts/test's own MAIL_SSH_* settings are not for this bot.
            .env_remove("MAIL_SSH_HOST")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the bot binary starts");
        Bot { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` at least `times` times; the bot must keep running.
    async fn wait_log(&mut self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if log.matches(needle).count() >= times {
                return log;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the bot exited ({status}) while waiting for {needle:?}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {times}× within {WAIT:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set(env: &mut Vec<(String, String)>, var: &str, value: &str) {
    env.retain(|(k, _)| k != var);
    env.push((var.into(), value.into()));
}

#[tokio::test]
async fn an_invalid_token_is_one_line_and_exit_status_78() {
    let Scene { env, db: _db, .. } = scene("id").await;
    let dir = test_dir("badtoken");
    let mut env = env;
    let wrong = "123456:WRONG-token-never-logged";
    set(&mut env, "TELOXIDE_TOKEN", wrong);
    let mut bot = Bot::start(&env, &dir);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = bot.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the bot did not stop:\n{}",
            bot.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = bot.log();
    assert_eq!(status.code(), Some(78), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one line: {log}");
    assert!(
        errors[0].starts_with("error: TELOXIDE_TOKEN") && errors[0].contains("401"),
        "{log}"
    );
    assert!(!log.contains("panicked") && !log.contains(wrong), "{log}");
}

/// A TCP relay to `target`, started late: PostgreSQL "comes up" when it starts.
async fn relay(port: u16, target: String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("relay port");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

#[tokio::test]
async fn the_bot_waits_for_telegram_and_postgresql_then_serves_and_logs_other_chats() {
    let team = Team::new();
    let db = fresh_database().await;
    let dir = test_dir("waits");
    // Neither the Bot API server nor PostgreSQL is there at start: their ports are free.
    let tg_port = free_port();
    let db_port = free_port();
    let (scheme_user, rest) = db.split_once('@').expect("DATABASE_URL has user@host");
    let (pg_addr, db_name) = rest.split_once('/').expect("host/db");
    let bot_db = format!("{scheme_user}@127.0.0.1:{db_port}/{db_name}");

    // The settings as the stub will be reached.
    let placeholder = bot_api_stub::Stub::start(
        ([127, 0, 0, 1], 0).into(),
        TOKEN,
        bot_api_stub::Person::new(1, "x", "x"),
    )
    .await
    .expect("placeholder");
    let mut env = team.env(&placeholder, &bot_db, "id");
    set(
        &mut env,
        "TELEGRAM_API_URL",
        &format!("http://127.0.0.1:{tg_port}"),
    );
    drop(placeholder);

    let mut bot = Bot::start(&env, &dir);
    bot.wait_log("waiting for Telegram", 2).await;
    let stub = bot_api_stub::Stub::start(
        ([127, 0, 0, 1], tg_port).into(),
        TOKEN,
        bot_api_stub::Person::new(7_000_000_001, "Backup Bot", "djki_backup_bot"),
    )
    .await
    .expect("the Bot API server starts late");
    for p in [&team.kasubdit, &team.kasi, &team.jfu, &team.jfu2] {
        stub.add_member(&team.group, p);
    }
    bot.wait_log("waiting for PostgreSQL", 1).await;
    relay(db_port, pg_addr.to_owned()).await;
    bot.wait_log("bot running", 1).await;

    let g = &team.group;
    stub.say(g, &team.kasubdit, "/help");
    expect_text(&stub, g, 0, "/order_backup").await;

    // A message from a group that is not GROUP_CHAT_ID: no answer there, a log line naming it.
    stub.say(&team.other_group, &team.kasubdit, "/order_backup");
    let log = bot.wait_log(&team.other_group.id.to_string(), 1).await;
    assert!(log.contains("Grup Lain"), "{log}");
    assert!(stub.messages(team.other_group.id).is_empty());
    assert!(!log.contains("panicked"), "{log}");
}
