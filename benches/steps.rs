//! Steps 5 and 6 of a real run and their parts, for `scripts/bench` (settings `MAIL_*` and
//! `LOCAL_BACKUP_ROOT` from the environment). Each mode prints one line:
//! `seconds bytes peak_rss_kib mailboxes`.
//!
//! - `run`: the engine's whole run (steps 3–6, steps 5 and 6 overlapped), as the bot runs it.
//! - `export DIR`: step 5 alone — every mailbox exported into the new server folder DIR by the
//!   engine's export script, `MAIL_BACKUP_JOBS` at a time, nothing copied.
//! - `copy DIR LOCAL`: step 6 alone — DIR's archives copied, verified and read back into LOCAL
//!   by the engine's copy (the server's manifest is made first and not timed).
//! - `latency`: 20 × `true` over the engine's session, one after another (the cost of a command).
//! - `day N`: the whole run for today + N days, printing besides the bytes it copied and what
//!   its incremental report says: `… copied unchanged changed full mail_exported mail_total`.
//! - `restore FOLDER ACCOUNT INTO`: the engine's restore of ACCOUNT from FOLDER into INTO.

use std::time::Instant;

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use mailbox_backup_bot::config::{EngineSettings, Env};
use mailbox_backup_bot::engine::copy::copy_all;
use mailbox_backup_bot::engine::kind;
use mailbox_backup_bot::engine::manifest::parse_manifest;
use mailbox_backup_bot::engine::remote::Remote;
use mailbox_backup_bot::engine::run::control_dir;
use mailbox_backup_bot::engine::{
    archive, files::portable_name, server as scripts, Backups, RunFolders, RunRequest, SshEngine,
    Stop,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // As the bot does at start.
    mailbox_backup_bot::engine::hold_memory_flat();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let settings = EngineSettings::load(&Env)?;
    let started = Instant::now();
    let (bytes, mailboxes, copy_began) = match args.iter().map(String::as_str).collect::<Vec<_>>()[..]
    {
        ["run"] => run(settings).await?,
        ["export", dir] => export(&settings, dir).await?,
        ["copy", dir, local] => copy(&settings, dir, local).await?,
        ["latency"] => latency(&settings).await?,
        ["day", n] => return day(settings, n.parse()?, started).await,
        ["restore", folder, account, into] => {
            let r = mailbox_backup_bot::engine::restore::restore(
                &settings,
                folder,
                account,
                Some(into),
                None,
                |_| {},
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!(r.complete(), "the restore is not whole: {r:?}");
            println!("{} {}", r.in_backup(), r.restored());
            return Ok(());
        }
        _ => bail!("usage: steps run | export DIR | copy DIR LOCAL | latency | day N | restore FOLDER ACCOUNT INTO"),
    };
    let seconds = copy_began.unwrap_or(started).elapsed().as_secs_f64();
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    println!("{seconds:.3} {bytes} {} {mailboxes}", usage.ru_maxrss);
    Ok(())
}

type Measured = (u64, usize, Option<Instant>);

async fn run(settings: EngineSettings) -> anyhow::Result<Measured> {
    let engine = SshEngine::new(settings);
    let (progress, mut events) = tokio::sync::mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let today = chrono::Utc::now().date_naive();
    let report = engine
        .run(RunRequest::new(today, "bench", Stop::never()), progress)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.detail))?;
    drain.await?;
    ensure!(report.all_verified(), "not every mailbox verified");
    Ok((report.bytes_total, report.mailboxes.len(), None))
}

/// The whole run for today + `n` days; one line with its figures.
async fn day(settings: EngineSettings, n: u64, started: Instant) -> anyhow::Result<()> {
    let engine = SshEngine::new(settings);
    let (progress, mut events) = tokio::sync::mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let date = chrono::Utc::now().date_naive() + chrono::Days::new(n);
    let report = engine
        .run(RunRequest::new(date, "bench", Stop::never()), progress)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.detail))?;
    drain.await?;
    ensure!(
        report.all_verified(),
        "not every mailbox verified: {:?}",
        report.failed().next()
    );
    let i = report.incremental.clone().unwrap_or_default();
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    println!(
        "{:.3} {} {} {} {} {} {} {} {} {} {}",
        started.elapsed().as_secs_f64(),
        report.bytes_total,
        usage.ru_maxrss,
        report.mailboxes.len(),
        report.bytes_copied,
        i.unchanged,
        i.changed,
        i.full,
        i.mail_exported,
        i.mail_total,
        report
            .folders
            .local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    Ok(())
}

async fn connect(settings: &EngineSettings) -> anyhow::Result<(Remote, std::path::PathBuf)> {
    let work = control_dir()?;
    let remote = Remote::connect(settings, &work)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.detail))?;
    Ok((remote, work))
}

async fn export(settings: &EngineSettings, dir: &str) -> anyhow::Result<Measured> {
    let Some(scripts_of_kind) = kind::of(&settings.kind).mailboxes() else {
        bail!("a mailbox kind is needed");
    };
    let (remote, work) = connect(settings).await?;
    let (base, name) = dir.rsplit_once('/').context("an absolute DIR")?;
    let marker = scripts::marker_text("bench", &chrono::Utc::now().to_rfc3339());
    let claimed = remote.sh(scripts::CLAIM, &[base, name, &marker]).await?;
    ensure!(claimed.ok, "claim: {}", claimed.stderr);
    let listing = &scripts_of_kind.listing;
    let args: Vec<&str> = listing.args.iter().map(String::as_str).collect();
    let out = remote.sh(listing.script, &args).await?;
    let sep = if listing.nul { '\0' } else { '\n' };
    let accounts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split(sep)
        .filter(|a| !a.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let export = &scripts_of_kind.export;
    let ext = scripts_of_kind.extension;
    let remote = &remote;
    let mut runs = futures::stream::iter(accounts.iter().map(|account| async move {
        let file = format!("{}.{ext}", portable_name(account));
        let mut args = vec![dir, file.as_str(), "0", &export.script, account.as_str()];
        args.extend(export.args.iter().map(String::as_str));
        remote.sh(scripts::EXPORT_ONE, &args).await
    }))
    .buffer_unordered(settings.jobs);
    let mut bytes = 0u64;
    while let Some(out) = runs.next().await {
        let out = out?;
        ensure!(out.ok, "export: {}", out.stderr);
        let line = String::from_utf8_lossy(&out.stdout);
        bytes += line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    }
    drop(runs);
    let closed = remote.sh(scripts::SUMS, &[dir, "close"]).await?;
    ensure!(closed.ok, "close: {}", closed.stderr);
    let _ = std::fs::remove_dir_all(&work);
    Ok((bytes, accounts.len(), None))
}

async fn copy(settings: &EngineSettings, dir: &str, local: &str) -> anyhow::Result<Measured> {
    let (remote, work) = connect(settings).await?;
    let out = remote.sh(scripts::MANIFEST, &[dir]).await?;
    ensure!(out.ok, "manifest: {}", out.stderr);
    let files = parse_manifest(&out.stdout)?;
    let folders = RunFolders {
        local: local.into(),
        server: dir.to_owned(),
    };
    let (progress, _events) = tokio::sync::mpsc::unbounded_channel();
    // The clock the caller reads starts after the manifest (step 5 makes it in a real run).
    let begin = Instant::now();
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
    // The read-back, two at a time, as step 6 does.
    let reads = futures::stream::iter(files.iter().map(|f| {
        let path = folders.local.join(f.name.as_str());
        tokio::task::spawn_blocking(move || archive::read_back(&path))
    }))
    .buffer_unordered(2)
    .collect::<Vec<_>>()
    .await;
    for r in reads {
        r??;
    }
    let seconds = begin.elapsed();
    remote.close().await;
    let _ = std::fs::remove_dir_all(&work);
    Ok((
        copied.transferred,
        files.len(),
        Some(Instant::now() - seconds),
    ))
}

async fn latency(settings: &EngineSettings) -> anyhow::Result<Measured> {
    let (remote, work) = connect(settings).await?;
    let begin = Instant::now();
    for _ in 0..20 {
        ensure!(remote.sh("true", &[]).await?.ok, "true failed");
    }
    let took = begin.elapsed();
    remote.close().await;
    let _ = std::fs::remove_dir_all(&work);
    Ok((0, 20, Some(Instant::now() - took)))
}
