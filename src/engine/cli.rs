//! `mailbox-backup-bot backup` (steps 3–6 once, with a progress bar) and `check`.

use anyhow::Result;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use super::{BackupEngine, MailboxStatus, Progress, RunRequest, SshEngine};
use crate::config::{BackupKind, EngineSettings};
use crate::messages::bytes;

pub async fn backup(settings: EngineSettings) -> Result<()> {
    let today = Utc::now().with_timezone(&settings.timezone).date_naive();
    let engine = SshEngine::new(settings);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg}\n[{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    let watcher = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            match p {
                Progress::StepStarted { step, .. } => shown.set_message(format!("step {step}")),
                Progress::StepFinished { step, .. } => shown.println(format!("step {step} done")),
                Progress::Folders(f) => shown.println(format!(
                    "local folder {}, server folder {}",
                    f.local.display(),
                    f.server
                )),
                Progress::Exported {
                    done,
                    total,
                    current,
                    ok,
                } => shown.set_message(format!(
                    "step 5: {done}/{total} exported ({current}{})",
                    if ok { "" } else { ": FAILED" }
                )),
                Progress::Copy {
                    files_done,
                    files_total,
                    bytes_done,
                    bytes_total,
                    ..
                } => {
                    shown.set_length(bytes_total);
                    shown.set_position(bytes_done);
                    shown.set_message(format!("step 6: {files_done}/{files_total} files verified"));
                }
                Progress::ReadBack { done, total } => {
                    shown.set_message(format!("step 6: {done}/{total} archives read back"))
                }
            }
        }
    });
    let result = engine
        .run(
            RunRequest {
                date: today,
                resume: None,
            },
            tx,
        )
        .await;
    let _ = watcher.await;
    bar.finish_and_clear();
    let report = result?;
    for m in &report.mailboxes {
        match &m.status {
            MailboxStatus::Verified => println!(
                "ok      {}  {}  {} messages  sha256 {}",
                m.file,
                bytes(m.size),
                m.messages.unwrap_or(0),
                m.sha256
            ),
            MailboxStatus::Failed { error } => println!("FAILED  {}  {error}", m.account),
        }
    }
    println!(
        "{} mailboxes, {} in {}; {:.1} MB/s",
        report.mailboxes.len(),
        bytes(report.bytes_total),
        report.folders.local.display(),
        report.rate() / 1e6
    );
    if !report.all_verified() {
        anyhow::bail!("{} mailbox(es) failed", report.failed().count());
    }
    Ok(())
}

/// Checks each thing a run needs; prints one line per check and fails if any does.
pub async fn check(s: EngineSettings) -> Result<()> {
    let mut bad = 0;
    let mut line = |ok: bool, what: &str, detail: String| {
        println!(
            "{} {what}{}",
            if ok { "PASS" } else { "FAIL" },
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        );
        if !ok {
            bad += 1;
        }
    };
    // Local root writable and free space.
    let probe = s
        .local_root
        .join(format!(".mbb-check-{}", std::process::id()));
    match std::fs::write(&probe, b"x").and_then(|_| std::fs::remove_file(&probe)) {
        Ok(()) => line(
            true,
            "local backup root writable",
            s.local_root.display().to_string(),
        ),
        Err(e) => line(
            false,
            "local backup root writable",
            format!("{}: {e}", s.local_root.display()),
        ),
    }
    match super::local::free_space(&s.local_root) {
        Ok(free) => line(true, "free space", bytes(free)),
        Err(e) => line(false, "free space", e.to_string()),
    }
    // Database, when configured.
    match crate::config::database_url(&crate::config::Env) {
        Ok(url) => match crate::storage::Store::connect(url.expose()).await {
            Ok(_) => line(true, "database reachable", String::new()),
            Err(e) => line(false, "database reachable", e.to_string()),
        },
        Err(e) => line(false, "database reachable", e.to_string()),
    }
    // SSH login and host key.
    let work = super::run::control_dir()?;
    match super::remote::Remote::connect(&s, &work).await {
        Ok(remote) => {
            line(
                true,
                "SSH login with strict host key",
                format!("{}@{}:{}", s.ssh_user, s.ssh_host, s.ssh_port),
            );
            // What the kind's export needs, then what the manifest and the copy need.
            let export: &[&str] = match &s.kind {
                BackupKind::Zimbra => &["su"],
                BackupKind::Dovecot { .. } => &["doveadm", "gzip"],
                BackupKind::Maildir { .. } => &["gzip", "find"],
                BackupKind::Command { .. } => &[],
            };
            let copy = ["sha256sum", "stat", "tar", "cat", "dd"];
            for tool in export.iter().chain(copy.iter()) {
                match remote.sh(r#"command -v "$1""#, &[tool]).await {
                    Ok(o) if o.ok => line(
                        true,
                        &format!("server tool {tool}"),
                        String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                    ),
                    _ => line(
                        false,
                        &format!("server tool {tool}"),
                        "not found on the server".into(),
                    ),
                }
            }
            if matches!(s.kind, BackupKind::Zimbra) {
                match remote
                    .sh(
                        "su - zimbra -c 'command -v zmmailbox && command -v zmprov'",
                        &[],
                    )
                    .await
                {
                    Ok(o) if o.ok => line(true, "server tools zmmailbox, zmprov", String::new()),
                    _ => line(
                        false,
                        "server tools zmmailbox, zmprov",
                        "not found for the zimbra user".into(),
                    ),
                }
            }
            let probe = r#"mkdir -p -- "$1" && t="$1/.mbb-check-$$" && : > "$t" && rm -f -- "$t""#;
            match remote.sh(probe, &[&s.server_backup_dir]).await {
                Ok(o) if o.ok => line(
                    true,
                    "server backup folder writable",
                    s.server_backup_dir.clone(),
                ),
                Ok(o) => line(false, "server backup folder writable", o.stderr),
                Err(e) => line(false, "server backup folder writable", e.to_string()),
            }
            remote.close().await;
        }
        Err(e) => line(
            false,
            "SSH login with strict host key",
            format!("{}: {}", e.kind, e.detail),
        ),
    }
    let _ = std::fs::remove_dir_all(&work);
    if bad > 0 {
        anyhow::bail!("{bad} check(s) failed");
    }
    Ok(())
}
