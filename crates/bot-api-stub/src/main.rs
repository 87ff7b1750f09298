//! `bot-api-stub`: runs the loopback Bot API server until interrupted.

use std::net::SocketAddr;

use bot_api_stub::{Person, Stub};
use clap::Parser;

/// A Telegram Bot API server on loopback, for tests and the demo.
#[derive(Parser)]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The token the bot must present.
    #[arg(long, env = "TELOXIDE_TOKEN")]
    token: String,
    /// The bot's username, as `getMe` reports it.
    #[arg(long, default_value = "djki_backup_bot")]
    bot_username: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "bot-api-stub: refusing to listen on {}: loopback only",
            args.listen
        );
        std::process::exit(2);
    }
    let stub = Stub::start(
        args.listen,
        &args.token,
        Person::new(7_000_000_001, "Backup Bot", &args.bot_username),
    )
    .await?;
    println!("bot-api-stub listening on {}", stub.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
