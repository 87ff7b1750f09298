//! `mailbox-backup-bot backup` (steps 3–6 once, with a progress bar) and `check`: the engine
//! at the terminal.

use anyhow::Result;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::EngineSettings;
use crate::engine::directory::Directory;
use crate::engine::{
    BackupEngine, BackupReport, MailboxStatus, Progress, RunRequest, SshEngine, Stop, StopReason,
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
            show(&shown, p);
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
    print_report(&report);
    if !report.all_verified() {
        anyhow::bail!("{} mailbox(es) failed", report.failed().count());
    }
    Ok(())
}

/// One progress event on the bar: a step's start and end, the exports, the copy's bytes.
fn show(shown: &ProgressBar, p: Progress) {
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

fn print_report(report: &BackupReport) {
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
}

/// `check`: every check, one line each; non-zero exit when any failed. Changes nothing.
pub async fn check() -> Result<()> {
    let catalog = crate::messages::Catalog::new(Lang::En, chrono_tz::Asia::Jakarta);
    let lines =
        crate::preflight::run(&crate::config::SettingsReading::read(&crate::config::Env)).await;
    // A closed pipe (`check | head`) ends the listing, not the program.
    let mut out = std::io::stdout().lock();
    for l in &lines {
        if std::io::Write::write_all(
            &mut out,
            format!("{}\n", catalog.check_line_plain(l)).as_bytes(),
        )
        .is_err()
        {
            break;
        }
    }
    drop(out);
    let bad = lines.iter().filter(|l| !l.ok).count();
    if bad > 0 {
        anyhow::bail!("{bad} check(s) failed");
    }
    Ok(())
}

/// One account of a `restore` at the terminal: whether the folder holds its mailbox, and the
/// archive's hash as a backup order recorded it (none with `--unrecorded`).
pub struct RestoreJob {
    pub account: String,
    pub has_mailbox: bool,
    pub expected: Option<String>,
}

/// What `restore` was asked beside its accounts.
pub struct RestoreAsk<'a> {
    pub folder: &'a str,
    pub into: Option<&'a str>,
    /// The folder's account directory, when accounts are rebuilt (`--create`, `--all`).
    pub capture: Option<&'a Directory>,
    /// `--all`: after the accounts, the capture's other objects too.
    pub all: bool,
    pub dry_run: bool,
}

/// What a `restore` of one or many accounts came to.
#[derive(Default)]
struct Tally {
    created: usize,
    existed: usize,
    filters: usize,
    mailboxes: usize,
    messages_added: usize,
    failed: Vec<(String, String)>,
}

/// `restore`: each account rebuilt when asked and missing, then its mailbox back from the dated
/// folder with a progress bar and the count per folder. Exits non-zero unless every account and
/// every message of the backup is on the server afterwards.
pub async fn restore_all(
    settings: EngineSettings,
    ask: &RestoreAsk<'_>,
    jobs: Vec<RestoreJob>,
) -> Result<()> {
    let mut tally = Tally::default();
    let n = jobs.len();
    for (i, job) in jobs.iter().enumerate() {
        if n > 1 {
            println!("\n[{}/{n}] {}", i + 1, job.account);
        }
        if let Err(e) = restore_one(&settings, ask, job, &mut tally).await {
            println!("FAILED  {}: {e:#}", job.account);
            tally.failed.push((job.account.clone(), format!("{e:#}")));
        }
    }
    if let Some(capture) = ask.capture.filter(|_| ask.all) {
        match crate::engine::rebuild::rebuild_rest(&settings, capture, ask.dry_run).await {
            Ok(made) => {
                for what in made {
                    let verb = if ask.dry_run {
                        "would create"
                    } else {
                        "created"
                    };
                    println!("{verb} {what}");
                }
            }
            Err(e) => {
                println!("FAILED  domains, classes of service and lists: {e:#}");
                tally.failed.push(("(directory)".into(), format!("{e:#}")));
            }
        }
    }
    if ask.capture.is_some() || n > 1 {
        let (created, put, restored) = if ask.dry_run {
            ("would be created", "would be put back", "to restore")
        } else {
            ("created", "put back", "restored")
        };
        println!(
            "\n{n} account(s): {} {created}, {} already on the server (left as they were); {} mail filter(s) {put}; {} mailbox(es) {restored}, {} message(s) added",
            tally.created, tally.existed, tally.filters, tally.mailboxes, tally.messages_added
        );
    }
    if !tally.failed.is_empty() {
        anyhow::bail!(
            "{} of {n} account(s) are not (all) on the server: {}",
            tally.failed.len(),
            tally
                .failed
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

async fn restore_one(
    settings: &EngineSettings,
    ask: &RestoreAsk<'_>,
    job: &RestoreJob,
    tally: &mut Tally,
) -> Result<()> {
    use crate::engine::rebuild;
    let account = job.account.as_str();
    if let Some(capture) = ask.capture {
        if ask.dry_run {
            let plan = rebuild::plan(settings, capture, ask.folder, account).await?;
            print_plan(&plan, tally);
        } else {
            let (plan, done) = rebuild::rebuild(settings, capture, ask.folder, account).await?;
            if plan.exists {
                tally.existed += 1;
                println!("account {account} is on the server already: left as it is");
            } else {
                tally.created += 1;
                println!(
                    "account {account} created in {} (its password hash as backed up)",
                    done.entries_added.join(", ")
                );
            }
            tally.filters += done.filters_added.len();
            for f in &done.filters_added {
                println!("mail filter {f} put back");
            }
            for f in &done.filters_kept {
                println!("mail filter {f} already there: left as it is");
            }
            for what in &done.also_added {
                println!("created {what}");
            }
        }
    }
    if !job.has_mailbox {
        println!(
            "{account} has no mailbox in backup {}: no mail to restore",
            ask.folder
        );
        return Ok(());
    }
    if ask.dry_run {
        let into = ask.into.unwrap_or(account);
        println!("would restore the mailbox of {account} from backup {} into {into} (only messages it lacks)", ask.folder);
        tally.mailboxes += 1;
        return Ok(());
    }
    let report = restore_mailbox(settings, ask, account, job.expected.as_deref()).await?;
    tally.messages_added += report.restored();
    if !report.complete() {
        anyhow::bail!(
            "some messages of the backup are not in {} after the restore",
            report.into
        );
    }
    tally.mailboxes += 1;
    Ok(())
}

fn print_plan(plan: &crate::engine::rebuild::AccountPlan, tally: &mut Tally) {
    if plan.exists {
        tally.existed += 1;
        println!(
            "account {} is on the server already: would be left as it is",
            plan.account
        );
    } else {
        tally.created += 1;
        for (path, roles) in &plan.entries {
            println!(
                "would create account {} in {path} ({}), with its password hash as backed up",
                plan.account,
                roles.join(", ")
            );
        }
    }
    for what in &plan.also {
        println!("would create {what}");
    }
    for (name, active) in &plan.filters {
        tally.filters += 1;
        println!(
            "would put back mail filter {name}{} (unless the account has one of that name)",
            if *active { " (active)" } else { "" }
        );
    }
}

/// One mailbox back from a dated folder, with a progress bar, then the count per folder.
async fn restore_mailbox(
    settings: &EngineSettings,
    ask: &RestoreAsk<'_>,
    account: &str,
    expected: Option<&str>,
) -> Result<crate::engine::restore::RestoreReport> {
    use crate::engine::restore::{self, RestoreProgress};
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg}\n[{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    let report = restore::restore(
        settings,
        ask.folder,
        account,
        ask.into,
        expected,
        |p| match p {
            RestoreProgress::Uploading { sent, total } => {
                shown.set_length(total);
                shown.set_position(sent);
                shown.set_message("uploading the archive to the mail server");
            }
            RestoreProgress::Importing {
                folder,
                done,
                total,
            } => shown.set_message(format!("restoring folder {}/{total}: {folder}", done + 1)),
            RestoreProgress::Rebuilding {
                account,
                done,
                total,
            } => shown.set_message(format!("account {}/{total}: {account}", done + 1)),
            RestoreProgress::Checking => shown.set_message("counting the result"),
        },
    )
    .await;
    bar.finish_and_clear();
    let report = report?;
    println!(
        "restored {} from backup {} ({}, {}) into {}",
        report.account,
        report.folder,
        report.file,
        bytes(report.bytes),
        report.into
    );
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}",
        "folder", "in backup", "had", "added", "present"
    );
    for f in &report.folders {
        println!(
            "{:<30} {:>9} {:>9} {:>9} {:>9}",
            f.folder, f.in_backup, f.already_there, f.restored, f.present_after
        );
    }
    if report.complete() {
        println!(
            "OK: all {} messages of the backup are in {} ({} added now, nothing deleted)",
            report.in_backup(),
            report.into,
            report.restored()
        );
    }
    Ok(report)
}
