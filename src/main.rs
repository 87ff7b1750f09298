use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    mailbox_backup_bot::engine::hold_memory_flat();
    // The HTTP client logs request URLs (which hold the bot token) at debug level: keep it quiet.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,reqwest=warn,hyper=warn,hyper_util=warn,sqlx=warn")
    });
    // Colours only on a terminal: in journald or a file they would break `grep group=…`.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = mailbox_backup_bot::cli::Cli::parse();
    if let Err(e) = mailbox_backup_bot::cli::main(cli).await {
        // One line naming what is wrong, then its causes.
        eprintln!("error: {e:#}");
        std::process::exit(mailbox_backup_bot::cli::exit_status(&e));
    }
}
