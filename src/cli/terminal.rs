//! `mailbox-backup-bot backup` (steps 3–6 once, with a progress bar) and `check`: the engine
//! at the terminal.

use anyhow::Result;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{BackupKind, EngineSettings};
use crate::engine::{
    link::Link, local, server, BackupEngine, MailboxStatus, Progress, RunRequest, SshEngine, Stop,
    StopReason,
};
use crate::messages::{bytes as sized, Lang};
fn bytes(n: u64) -> String {
    sized(Lang::En, n)
}

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
                Progress::Reconnecting {
                    step,
                    attempt,
                    of,
                    reason,
                } => shown.println(format!(
                    "step {step}: connection lost ({reason}); reconnecting, try {attempt} of {of}"
                )),
                Progress::Reconnected { step } => {
                    shown.println(format!("step {step}: reconnected, going on"))
                }
                Progress::ServerSpace { free, need, floor } => shown.println(format!(
                    "server: {} free, {} must stay free, the export needs about {}",
                    bytes(free),
                    bytes(floor),
                    need.map(bytes).unwrap_or_else(|| "(unknown)".into())
                )),
            }
        }
    });
    // Ctrl-C stops the exports on the server and keeps what is verified; the next `backup` of
    // the day goes on from there.
    let (stop_handle, stop) = Stop::pair();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop_handle.stop(StopReason::Shutdown);
        }
    });
    let result = engine
        .run(RunRequest::new(today, "command line", stop), tx)
        .await;
    ctrl_c.abort();
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

/// Checks each thing a run needs; prints one line per check and fails if any does. Changes
/// nothing, here or on the server.
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
    // The backup disk: mounted (its marker is there) and writable.
    match local::check_disk(&s.local_root) {
        Ok(id) => line(
            true,
            "backup disk marked",
            format!("{} (disk {id})", s.local_root.display()),
        ),
        Err(e) => line(false, "backup disk marked", e),
    }
    let writable = std::ffi::CString::new(s.local_root.as_os_str().as_encoded_bytes())
        // SAFETY: a valid NUL-terminated path; access() only reads it.
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
        .unwrap_or(false);
    line(
        writable,
        "local backup root writable",
        s.local_root.display().to_string(),
    );
    match local::free_space(&s.local_root) {
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
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    match Link::connect(&s, tx).await {
        Ok(link) => {
            line(
                true,
                "SSH login with strict host key",
                format!("{}@{}:{}", s.ssh_user, s.ssh_host, s.ssh_port),
            );
            // What the kind's export needs, then what the manifest and the copy need.
            let export_tools: &[&str] = match &s.kind {
                BackupKind::Mailboxes(store) => store.tools(),
                BackupKind::Command { .. } => &[],
            };
            let copy = ["sha256sum", "stat", "tar", "cat", "dd", "df", "setsid"];
            for tool in export_tools.iter().chain(copy.iter()) {
                match link.remote().sh(r#"command -v "$1""#, &[tool]).await {
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
            if matches!(
                s.kind,
                BackupKind::Mailboxes(crate::config::MailStore::Zimbra)
            ) {
                match link
                    .remote()
                    .sh(
                        "su - zimbra -c 'command -v zmprov && command -v zmlocalconfig && command -v zmhostname'",
                        &[],
                    )
                    .await
                {
                    Ok(o) if o.ok => line(
                        true,
                        "server tools zmprov, zmlocalconfig, zmhostname",
                        String::new(),
                    ),
                    _ => line(
                        false,
                        "server tools zmprov, zmlocalconfig, zmhostname",
                        "not found for the zimbra user".into(),
                    ),
                }
            }
            // The server folder: writable if it exists, or creatable under its nearest parent.
            let probe = r#"d=$1; while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done; [ -d "$d" ] && [ -w "$d" ] && echo "$d""#;
            match link.remote().sh(probe, &[&s.server_backup_dir]).await {
                Ok(o) if o.ok => line(
                    true,
                    "server backup folder writable",
                    s.server_backup_dir.clone(),
                ),
                Ok(o) => line(
                    false,
                    "server backup folder writable",
                    format!("{} {}", s.server_backup_dir, o.stderr),
                ),
                Err(e) => line(false, "server backup folder writable", e.to_string()),
            }
            let free_script = format!(
                r#"d=$1; while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done; set -- "$d"; {}"#,
                server::FREE_SPACE
            );
            match link
                .remote()
                .sh(&free_script, &[&s.server_backup_dir])
                .await
            {
                Ok(o) => match server::parse_space(&String::from_utf8_lossy(&o.stdout)) {
                    Some(space) => {
                        let floor = s.server_min_free.bytes(space.size);
                        line(
                            space.avail >= floor,
                            "server free space above the floor",
                            format!(
                                "{} free on {}, {} must stay free (MAIL_SERVER_MIN_FREE={})",
                                bytes(space.avail),
                                space.mount,
                                bytes(floor),
                                s.server_min_free
                            ),
                        )
                    }
                    None => line(false, "server free space above the floor", o.stderr),
                },
                Err(e) => line(false, "server free space above the floor", e.to_string()),
            }
            link.close().await;
        }
        Err(e) => line(
            false,
            "SSH login with strict host key",
            format!("{}: {}", e.kind, e.detail),
        ),
    }
    if bad > 0 {
        anyhow::bail!("{bad} check(s) failed");
    }
    Ok(())
}
