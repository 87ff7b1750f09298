//! `mailbox-backup-bot backup` (steps 3–6 once, with a progress bar) and `check`: the engine
//! at the terminal.

use anyhow::Result;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::EngineSettings;
use crate::engine::directory::Directory;
use crate::engine::{
    BackupReport, Backups, MailboxStatus, Progress, RunRequest, SshEngine, Stop, StopReason,
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
        anyhow::bail!(
            "the backup is not whole: {}",
            what_failed(&report).join("; ")
        );
    }
    Ok(())
}

/// Each thing of a run that was not verified, named with its reason.
fn what_failed(report: &BackupReport) -> Vec<String> {
    let mut failed: Vec<String> = report
        .mailboxes
        .iter()
        .filter_map(|m| match &m.status {
            MailboxStatus::Failed { error } => Some(format!("mailbox {}: {error}", m.account)),
            MailboxStatus::Verified => None,
        })
        .collect();
    if let Some(d) = &report.directory {
        if let MailboxStatus::Failed { error } = &d.status {
            failed.push(format!("the account directory ({}): {error}", d.file));
        }
    }
    if report.mailboxes.is_empty() {
        failed.push("no mailbox was backed up (the server listed none)".into());
    }
    failed
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
    if let Some(d) = &report.directory {
        match &d.status {
            MailboxStatus::Verified => println!(
                "ok      {}  {}  account directory  sha256 {}",
                d.file,
                bytes(d.size),
                d.sha256
            ),
            MailboxStatus::Failed { error } => {
                println!("FAILED  account directory ({})  {error}", d.file)
            }
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
pub async fn check(reading: &crate::config::SettingsReading) -> Result<()> {
    let catalog = crate::messages::Catalog::new(Lang::En, chrono_tz::Asia::Jakarta);
    let lines = crate::preflight::run(reading).await;
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

/// What a `restore` of one or many accounts came to, and where its lines go: above the one
/// progress bar of a restore of many accounts (the bar is hidden while a line is written, so a
/// line is never lost when the output is not a terminal).
#[derive(Default)]
struct Tally {
    created: usize,
    existed: usize,
    filters: usize,
    mailboxes: usize,
    messages_added: usize,
    /// Everything else made, as "domain djki.go.id", "alias …".
    made: Vec<String>,
    failed: Vec<(String, String)>,
    bar: Option<ProgressBar>,
}

impl Tally {
    fn say(&self, line: impl std::fmt::Display) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// "1 × domain, 1 × class of service, 2 × alias": what else was made, counted by kind.
    fn made_by_kind(&self) -> String {
        crate::engine::rebuild::count_by_kind(&self.made)
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `restore`: the accounts rebuilt first when asked and missing (one rebuild for all of them,
/// read back from the server), then each mailbox back from the dated folder, and the count per
/// folder; many accounts share one progress bar. Exits non-zero unless every account and every
/// message of the backup is on the server afterwards.
pub async fn restore_all(
    settings: EngineSettings,
    ask: &RestoreAsk<'_>,
    jobs: Vec<RestoreJob>,
) -> Result<()> {
    let n = jobs.len();
    let mut tally = Tally::default();
    let mut not_there = std::collections::BTreeSet::new();
    if let Some(capture) = ask.capture {
        not_there = rebuild_directory(&settings, ask, capture, &jobs, &mut tally).await?;
    }
    if n > 1 {
        let bar = ProgressBar::new(n as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg}\n[{bar:40}] {pos}/{len} accounts, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        tally.bar = Some(bar);
    }
    for (i, job) in jobs.iter().enumerate() {
        if let Some(bar) = &tally.bar {
            bar.set_position(i as u64);
            bar.set_message(job.account.clone());
        }
        if not_there.contains(&job.account) {
            continue;
        }
        if n > 1 {
            tally.say(format!("\n[{}/{n}] {}", i + 1, job.account));
        }
        if let Err(e) = restore_one(&settings, ask, job, &mut tally).await {
            tally.say(format!("FAILED  {}: {e:#}", job.account));
            tally.failed.push((job.account.clone(), format!("{e:#}")));
        }
    }
    if let Some(bar) = tally.bar.take() {
        bar.finish_and_clear();
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
        if !tally.made.is_empty() {
            println!("also {created}: {}", tally.made_by_kind());
        }
    }
    if !tally.failed.is_empty() {
        let mut who: Vec<&str> = tally.failed.iter().map(|(a, _)| a.as_str()).collect();
        who.dedup();
        anyhow::bail!(
            "{} of {n} account(s) or other objects are not (all) on the server as backed up: {}",
            who.len(),
            who.join(", ")
        );
    }
    Ok(())
}

/// The rebuild of every job's account (and with `--all` the directory's other objects) in one
/// go, said line by line as the server has it afterwards (or, in a dry run, as it would be
/// made). Returns the accounts that are not on the server: their mail cannot be restored.
async fn rebuild_directory(
    settings: &EngineSettings,
    ask: &RestoreAsk<'_>,
    capture: &Directory,
    jobs: &[RestoreJob],
    tally: &mut Tally,
) -> Result<std::collections::BTreeSet<String>> {
    let accounts: Vec<String> = jobs.iter().map(|j| j.account.clone()).collect();
    let rebuilt = crate::engine::rebuild::rebuild_accounts(
        settings,
        capture,
        ask.folder,
        &accounts,
        ask.all,
        ask.dry_run,
    )
    .await?;
    let mut not_there = std::collections::BTreeSet::new();
    for outcome in &rebuilt.accounts {
        let account = outcome.plan.account.as_str();
        if ask.dry_run {
            print_plan(&outcome.plan, tally);
        } else if outcome.plan.exists {
            tally.existed += 1;
            tally.say(format!(
                "account {account} is on the server already: left as it is"
            ));
        } else if outcome.on_server {
            tally.created += 1;
            tally.say(format!(
                "account {account} created in {} (its password hash as backed up)",
                outcome.done.entries_added.join(", ")
            ));
            tally.filters += outcome.done.filters_added.len();
            for f in &outcome.done.filters_added {
                tally.say(format!("mail filter {f} put back"));
            }
            for f in &outcome.done.filters_kept {
                tally.say(format!("mail filter {f} already there: left as it is"));
            }
            for what in &outcome.done.also_added {
                tally.say(format!("created {what}"));
                tally.made.push(what.clone());
            }
        }
        if !outcome.on_server && !ask.dry_run {
            not_there.insert(account.to_owned());
        }
        for why in &outcome.failures {
            tally.say(format!("FAILED  {account}: {why}"));
            tally.failed.push((account.to_owned(), why.clone()));
        }
    }
    let verb = if ask.dry_run {
        "would create"
    } else {
        "created"
    };
    for what in &rebuilt.made {
        tally.say(format!("{verb} {what}"));
        tally.made.push(what.clone());
    }
    for note in &rebuilt.notes {
        tally.say(format!("note: {note}"));
    }
    for (what, why) in &rebuilt.failed {
        tally.say(format!("FAILED  {what}: {why}"));
        tally.failed.push((what.clone(), why.clone()));
    }
    Ok(not_there)
}

async fn restore_one(
    settings: &EngineSettings,
    ask: &RestoreAsk<'_>,
    job: &RestoreJob,
    tally: &mut Tally,
) -> Result<()> {
    let account = job.account.as_str();
    if !job.has_mailbox {
        tally.say(format!(
            "{account} has no mailbox in backup {}: no mail to restore",
            ask.folder
        ));
        return Ok(());
    }
    if ask.dry_run {
        let into = ask.into.unwrap_or(account);
        tally.say(format!("would restore the mailbox of {account} from backup {} into {into} (only messages it lacks)", ask.folder));
        tally.mailboxes += 1;
        return Ok(());
    }
    let report = restore_mailbox(settings, ask, account, job.expected.as_deref(), tally).await?;
    tally.messages_added += report.restored();
    if let Some(why) = report.why_incomplete() {
        anyhow::bail!("{why}");
    }
    tally.mailboxes += 1;
    Ok(())
}

fn print_plan(plan: &crate::engine::rebuild::AccountPlan, tally: &mut Tally) {
    if plan.exists {
        tally.existed += 1;
        tally.say(format!(
            "account {} is on the server already: would be left as it is",
            plan.account
        ));
    } else {
        tally.created += 1;
        for (path, roles) in &plan.entries {
            tally.say(format!(
                "would create account {} in {path} ({}), with its password hash as backed up",
                plan.account,
                roles.join(", ")
            ));
        }
    }
    for what in &plan.also {
        tally.say(format!("would create {what}"));
        tally.made.push(what.clone());
    }
    for (name, active) in &plan.filters {
        tally.filters += 1;
        tally.say(format!(
            "would put back mail filter {name}{} (unless the account has one of that name)",
            if *active { " (active)" } else { "" }
        ));
    }
}

/// One mailbox back from a dated folder, then the count per folder. Alone, it has a progress bar
/// of its own; one of many tells the shared bar what it is doing.
async fn restore_mailbox(
    settings: &EngineSettings,
    ask: &RestoreAsk<'_>,
    account: &str,
    expected: Option<&str>,
    tally: &Tally,
) -> Result<crate::engine::restore::RestoreReport> {
    use crate::engine::restore::{self, RestoreProgress};
    use crate::engine::Restores;
    let own = tally.bar.is_none().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg}\n[{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let shared = tally.bar.clone();
    let shown = own.clone();
    // Through the engine's restores, as the chat's restore goes.
    let engine = crate::engine::SshEngine::new(settings.clone());
    let request = restore::RestoreRequest {
        folder: ask.folder,
        account,
        into: ask.into.unwrap_or(account),
        sha256: expected,
    };
    let progress = Box::new(|p: RestoreProgress| {
        let text = match &p {
            RestoreProgress::Uploading { .. } => "uploading the archive to the mail server".into(),
            RestoreProgress::Importing {
                folder,
                done,
                total,
            } => format!("restoring folder {}/{total}: {folder}", done + 1),
            RestoreProgress::Rebuilding {
                account,
                done,
                total,
            } => format!("account {}/{total}: {account}", done + 1),
            RestoreProgress::Checking => "counting the result".into(),
        };
        match (&shown, &shared) {
            (Some(bar), _) => {
                if let RestoreProgress::Uploading { sent, total } = p {
                    bar.set_length(total);
                    bar.set_position(sent);
                }
                bar.set_message(text);
            }
            (None, Some(bar)) => bar.set_message(format!("{account}: {text}")),
            (None, None) => {}
        }
    });
    let report = Restores::restore(&engine, request, progress).await;
    if let Some(bar) = own {
        bar.finish_and_clear();
    }
    let report = report?;
    tally.say(format!(
        "restored {} from backup {} ({}, {}) into {}",
        report.account,
        report.folder,
        report.file,
        bytes(report.bytes),
        report.into
    ));
    tally.say(format!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}",
        "folder", "in backup", "had", "added", "present"
    ));
    for f in &report.folders {
        tally.say(format!(
            "{:<30} {:>9} {:>9} {:>9} {:>9}",
            f.folder, f.in_backup, f.already_there, f.restored, f.present_after
        ));
    }
    if report.complete() {
        tally.say(format!(
            "OK: all {} messages of the backup are in {} ({} added now, nothing deleted)",
            report.in_backup(),
            report.into,
            report.restored()
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::directory::{DirectoryCounts, DirectoryResult};
    use crate::engine::{MailboxResult, RunFolders};

    fn report(mailboxes: Vec<MailboxResult>, directory: MailboxStatus) -> BackupReport {
        BackupReport {
            folders: RunFolders {
                local: "/media/backup/07-12-2026".into(),
                server: "/var/backups/mailbox/07-12-2026".into(),
            },
            mailboxes,
            directory: Some(Box::new(DirectoryResult {
                file: "directory.tar.gz".into(),
                size: 0,
                sha256: String::new(),
                counts: DirectoryCounts::default(),
                status: directory,
            })),
            steps: vec![],
            bytes_total: 0,
            bytes_copied: 0,
            copy_secs: 0.0,
            reconnects: 0,
            server_folders_removed: vec![],
            bytes_reused: 0,
            local_folders_removed: vec![],
            disk_free: None,
            encrypted_to: 0,
            incremental: None,
        }
    }

    fn mailbox(account: &str, status: MailboxStatus) -> MailboxResult {
        MailboxResult {
            account: account.into(),
            file: format!("{account}.tar.gz"),
            size: 1,
            sha256: "a".repeat(64),
            messages: Some(6),
            server_messages: None,
            piece: None,
            status,
        }
    }

    #[test]
    fn a_run_that_is_not_whole_names_what_failed_with_its_reason() {
        let failed = |e: &str| MailboxStatus::Failed { error: e.into() };
        // Every mailbox verified, the account directory's capture failed: named, not "0 failed".
        let r = report(
            vec![mailbox("ani@djki.go.id", MailboxStatus::Verified)],
            failed("the capture on the server failed: permission denied"),
        );
        assert!(!r.all_verified());
        assert_eq!(
            what_failed(&r),
            ["the account directory (directory.tar.gz): the capture on the server failed: permission denied"]
        );
        // A mailbox and the directory, each with its reason.
        let r = report(
            vec![
                mailbox("ani@djki.go.id", MailboxStatus::Verified),
                mailbox(
                    "budi@djki.go.id",
                    failed("the archive holds 5 messages, the server counted 6"),
                ),
            ],
            failed("no room"),
        );
        let said = what_failed(&r);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].starts_with("mailbox budi@djki.go.id: the archive holds 5"));
        // Nothing backed up at all.
        let r = report(vec![], MailboxStatus::Verified);
        assert_eq!(
            what_failed(&r),
            ["no mailbox was backed up (the server listed none)"]
        );
    }
}
