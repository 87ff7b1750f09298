//! The engine's copy step alone, then its read-back, for `scripts/bench`:
//! `copy [--encrypt] <server folder> <empty local folder>` with the `MAIL_SSH_*` settings in the
//! environment. `--encrypt` copies as with `BACKUP_ENCRYPT_TO` set, to a key made for the run.
//! The server's manifest is made first and not timed (step 5 makes it in a real run).
//! Prints one line: `copy_seconds bytes copy_peak_rss_kib read_back_seconds`.

use std::time::Instant;

use mailbox_backup_bot::config::{EngineSettings, Env};
use mailbox_backup_bot::engine::archive::read_back_stored;
use mailbox_backup_bot::engine::copy::copy_all;
use mailbox_backup_bot::engine::encryption::{generate, Recipients};
use mailbox_backup_bot::engine::manifest::parse_manifest;
use mailbox_backup_bot::engine::remote::Remote;
use mailbox_backup_bot::engine::run::control_dir;
use mailbox_backup_bot::engine::{server as scripts, RunFolders};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // As the bot does at start.
    mailbox_backup_bot::engine::hold_memory_flat();
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let encrypt = args.first().is_some_and(|a| a == "--encrypt");
    if encrypt {
        args.remove(0);
    }
    let [server, local] = args.as_slice() else {
        anyhow::bail!("usage: copy [--encrypt] <server folder> <local folder>");
    };
    let seal = match encrypt {
        true => Recipients::parse(&[generate().1]).map_err(anyhow::Error::msg)?,
        false => None,
    };
    let settings = EngineSettings::load(&Env)?;
    let work = control_dir()?;
    let remote = Remote::connect(&settings, &work)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.detail))?;
    let out = remote.sh(scripts::MANIFEST, &[server]).await?;
    anyhow::ensure!(out.ok, "manifest: {}", out.stderr);
    let files = parse_manifest(&out.stdout)?;
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
        seal.as_ref(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.detail))?;
    let bytes = copied.transferred;
    let seconds = started.elapsed().as_secs_f64();
    remote.close().await;
    let _ = std::fs::remove_dir_all(&work);
    // The copy's peak memory, before the read-back's buffers.
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    // The read-back as the run does it, two at a time: a plain copy is decompressed and its
    // messages counted; an encrypted one was counted as it arrived and is hashed on disk.
    let started = Instant::now();
    let names: Vec<String> = files.iter().map(|f| f.name.to_string()).collect();
    let folder = folders.local.clone();
    let halves: Vec<Vec<String>> = names
        .chunks(names.len().div_ceil(2).max(1))
        .map(<[String]>::to_vec)
        .collect();
    let reads: Vec<_> = halves
        .into_iter()
        .map(|half| {
            let folder = folder.clone();
            std::thread::spawn(move || -> Result<(), String> {
                for name in half {
                    read_back_stored(&folder, &name, encrypt)
                        .map_err(|e| format!("{name}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for r in reads {
        r.join()
            .map_err(|_| anyhow::anyhow!("read-back panicked"))?
            .map_err(anyhow::Error::msg)?;
    }
    let read_back = started.elapsed().as_secs_f64();
    println!("{seconds:.3} {bytes} {} {read_back:.3}", usage.ru_maxrss);
    Ok(())
}
