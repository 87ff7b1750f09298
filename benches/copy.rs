//! The engine's copy step alone (step 6 without the read-back), for `scripts/bench`:
//! `copy <server folder> <empty local folder>` with the `MAIL_SSH_*` settings in the environment.
//! The server's manifest is made first and not timed (step 5 makes it in a real run).
//! Prints one line: `seconds bytes peak_rss_kib`.

use std::time::Instant;

use mailbox_backup_bot::config::{EngineSettings, Env};
use mailbox_backup_bot::engine::copy::copy_all;
use mailbox_backup_bot::engine::manifest::parse_manifest;
use mailbox_backup_bot::engine::remote::Remote;
use mailbox_backup_bot::engine::run::control_dir;
use mailbox_backup_bot::engine::{server as scripts, RunFolders};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // As the bot does at start.
    mailbox_backup_bot::engine::hold_memory_flat();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [server, local] = args.as_slice() else {
        anyhow::bail!("usage: copy <server folder> <local folder>");
    };
    let settings = EngineSettings::load(&Env)?;
    let work = control_dir()?;
    let remote = Remote::connect(&settings, &work)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.detail))?;
    let out = remote.sh(scripts::MANIFEST, &[server]).await?;
    anyhow::ensure!(out.ok, "manifest: {}", out.stderr);
    let files = parse_manifest(&out.stdout).map_err(anyhow::Error::msg)?;
    let folders = RunFolders {
        local: local.into(),
        server: server.clone(),
    };
    let (progress, _events) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let stall = std::time::Duration::from_secs(settings.stall_secs);
    let mut copied = Default::default();
    copy_all(
        &remote,
        &folders,
        &files,
        &progress,
        stall,
        &mut copied,
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.detail))?;
    let bytes = copied.transferred;
    let seconds = started.elapsed().as_secs_f64();
    remote.close().await;
    let _ = std::fs::remove_dir_all(&work);
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    println!("{seconds:.3} {bytes} {}", usage.ru_maxrss);
    Ok(())
}
