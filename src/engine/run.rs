//! One run of steps 3–6 over SSH.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;

use super::local::{create_dated_folder, portable_name};
use super::remote::{error_chain, Remote};
use super::{
    strategy, tell, BackupEngine, BackupReport, EngineError, ErrorKind, MailboxResult,
    MailboxStatus, Progress, ProgressSender, RunFolders, RunRequest, StepTiming,
};
use crate::config::{BackupKind, EngineSettings};
use crate::domain::SopStep;

pub struct SshEngine {
    settings: EngineSettings,
}

impl SshEngine {
    pub fn new(settings: EngineSettings) -> Self {
        SshEngine { settings }
    }
}

impl BackupEngine for SshEngine {
    fn run(
        &self,
        request: RunRequest,
        progress: ProgressSender,
    ) -> futures::future::BoxFuture<'_, Result<BackupReport, EngineError>> {
        Box::pin(run(&self.settings, request, progress))
    }
}

/// One archive on the server, as the manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFile {
    pub sha256: String,
    pub size: u64,
    pub name: String,
}

/// Parses `sha256 size name\0…`.
pub fn parse_manifest(raw: &[u8]) -> Result<Vec<ServerFile>, String> {
    raw.split(|b| *b == 0)
        .filter(|r| !r.is_empty() && *r != b"\n")
        .map(|r| {
            let text = std::str::from_utf8(r).map_err(|_| "a file name is not UTF-8".to_owned())?;
            let mut parts = text.splitn(3, ' ');
            let (Some(h), Some(s), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("bad manifest line {text:?}"));
            };
            let size = s.parse().map_err(|_| format!("bad size in {text:?}"))?;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("bad checksum in {text:?}"));
            }
            Ok(ServerFile {
                sha256: h.to_owned(),
                size,
                name: n.to_owned(),
            })
        })
        .collect()
}

fn failed(
    step: SopStep,
    kind: ErrorKind,
    detail: impl Into<String>,
    folders: Option<&RunFolders>,
) -> EngineError {
    EngineError {
        step,
        kind,
        detail: detail.into(),
        folders: folders.cloned(),
    }
}

struct Timer {
    steps: Vec<StepTiming>,
}

impl Timer {
    fn start(&mut self, step: SopStep, progress: &ProgressSender) -> chrono::DateTime<Utc> {
        let at = Utc::now();
        tell(progress, Progress::StepStarted { step, at });
        at
    }
    fn finish(
        &mut self,
        step: SopStep,
        started_at: chrono::DateTime<Utc>,
        progress: &ProgressSender,
    ) {
        let at = Utc::now();
        self.steps.push(StepTiming {
            step,
            started_at,
            ended_at: at,
        });
        tell(progress, Progress::StepFinished { step, at });
    }
}

pub async fn run(
    s: &EngineSettings,
    request: RunRequest,
    progress: ProgressSender,
) -> Result<BackupReport, EngineError> {
    let mut timer = Timer { steps: Vec::new() };

    // Step 3: the dated folder.
    let t3 = timer.start(SopStep::CreateFolder, &progress);
    let folders = match &request.resume {
        Some(f) if f.local.is_dir() => f.clone(),
        _ => {
            let now = Utc::now().with_timezone(&s.timezone).naive_local();
            let when = request.date.and_time(now.time());
            let local =
                create_dated_folder(&s.local_root, &s.folder_format, when).map_err(|e| {
                    failed(
                        SopStep::CreateFolder,
                        ErrorKind::LocalFolder,
                        e.to_string(),
                        None,
                    )
                })?;
            let name = local
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("backup")
                .to_owned();
            RunFolders {
                local,
                server: format!("{}/{}", s.server_backup_dir.trim_end_matches('/'), name),
            }
        }
    };
    tell(&progress, Progress::Folders(folders.clone()));
    timer.finish(SopStep::CreateFolder, t3, &progress);
    let f = Some(&folders);

    // Step 4: login. ssh's control socket lives in a short private folder.
    let t4 = timer.start(SopStep::RemoteLogin, &progress);
    let work = control_dir()
        .map_err(|e| failed(SopStep::RemoteLogin, ErrorKind::Ssh, e.to_string(), f))?;
    let remote = Remote::connect(s, &work).await.map_err(|mut e| {
        e.folders = Some(folders.clone());
        e
    })?;
    timer.finish(SopStep::RemoteLogin, t4, &progress);

    let result = backup_and_copy(
        s,
        &remote,
        &folders,
        request.resume.is_some(),
        &mut timer,
        &progress,
    )
    .await;
    remote.close().await;
    let _ = std::fs::remove_dir_all(&work);
    let (mailboxes, bytes_total, bytes_copied, copy_secs) = result?;
    Ok(BackupReport {
        folders,
        mailboxes,
        steps: timer.steps,
        bytes_total,
        bytes_copied,
        copy_secs,
    })
}

/// A short private folder for ssh's control socket (its path must stay under ~100 bytes).
pub fn control_dir() -> std::io::Result<PathBuf> {
    remove_stale_control_dirs();
    let dir = PathBuf::from(format!(
        "/tmp/mbb-{}-{}",
        std::process::id(),
        Utc::now().timestamp_micros() % 1_000_000_000
    ));
    std::fs::create_dir(&dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Control folders left by a process that died without cleaning up (a kill, a power cut).
fn remove_stale_control_dirs() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("mbb-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let mine = std::fs::metadata(entry.path())
            // SAFETY: geteuid has no preconditions.
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == unsafe { libc::geteuid() })
            .unwrap_or(false);
        if mine && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

type Copied = (Vec<MailboxResult>, u64, u64, f64);

async fn backup_and_copy(
    s: &EngineSettings,
    remote: &Remote,
    folders: &RunFolders,
    resume: bool,
    timer: &mut Timer,
    progress: &ProgressSender,
) -> Result<Copied, EngineError> {
    let f = Some(folders);
    let dir = folders.server.as_str();
    let server_err = |step, e: openssh::Error| failed(step, ErrorKind::Ssh, error_chain(&e), f);

    // Step 5: back up on the server, unless a resumed run finds it done.
    let t5 = timer.start(SopStep::ServerBackup, progress);
    let done_before = if resume {
        let out = remote
            .sh(strategy::READ_STATE, &[dir])
            .await
            .map_err(|e| server_err(SopStep::ServerBackup, e))?;
        out.ok.then_some(out.stdout)
    } else {
        None
    };
    let (files, failures) = match done_before {
        Some(raw) => {
            let text_end = raw
                .windows(12)
                .position(|w| w == b"\n--failed--\n")
                .unwrap_or(raw.len());
            let files = parse_manifest(&raw[..text_end])
                .map_err(|e| failed(SopStep::ServerBackup, ErrorKind::ServerCommand, e, f))?;
            let failures = raw
                .get(text_end + 12..)
                .map(parse_failures)
                .unwrap_or_default();
            (files, failures)
        }
        None => server_backup(s, remote, dir, progress).await?,
    };
    timer.finish(SopStep::ServerBackup, t5, progress);

    // Step 6: copy down, verify, read back.
    let t6 = timer.start(SopStep::CopyAndReport, progress);
    let bytes_total: u64 = files.iter().map(|x| x.size).sum();
    let started = Instant::now();
    let copied = super::copy::copy_all(remote, folders, &files, progress).await?;
    let copy_secs = started.elapsed().as_secs_f64();
    write_local_manifest(&folders.local, &files)
        .map_err(|e| failed(SopStep::CopyAndReport, ErrorKind::Copy, e.to_string(), f))?;

    let mut results = Vec::new();
    let total = files.len();
    let reads = futures::stream::iter(files.iter().cloned().map(|file| {
        let path = folders.local.join(&file.name);
        async move {
            (
                file,
                tokio::task::spawn_blocking(move || super::archive::read_back(&path)).await,
            )
        }
    }))
    .buffered(2);
    futures::pin_mut!(reads);
    let mut done = 0;
    while let Some((file, read)) = reads.next().await {
        done += 1;
        tell(progress, Progress::ReadBack { done, total });
        let account = account_of(&file.name);
        let (messages, status) = match read {
            Ok(Ok(n)) => (Some(n), MailboxStatus::Verified),
            Ok(Err(e)) => (
                None,
                MailboxStatus::Failed {
                    error: format!("the copy cannot be read back: {e}"),
                },
            ),
            Err(e) => (
                None,
                MailboxStatus::Failed {
                    error: format!("read-back stopped: {e}"),
                },
            ),
        };
        results.push(MailboxResult {
            account,
            file: file.name.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            messages,
            status,
        });
    }
    for (account, error) in failures {
        results.push(MailboxResult {
            account,
            file: String::new(),
            size: 0,
            sha256: String::new(),
            messages: None,
            status: MailboxStatus::Failed { error },
        });
    }
    results.sort_by(|a, b| a.account.cmp(&b.account));
    write_summary(&folders.local, &results)
        .map_err(|e| failed(SopStep::CopyAndReport, ErrorKind::Copy, e.to_string(), f))?;
    timer.finish(SopStep::CopyAndReport, t6, progress);
    Ok((results, bytes_total, copied, copy_secs))
}

/// The account an archive holds, from its file name.
fn account_of(file: &str) -> String {
    file.trim_end_matches(".tar.gz")
        .trim_end_matches(".tgz")
        .to_owned()
}

fn parse_failures(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == 0)
        .filter_map(|r| {
            let t = String::from_utf8_lossy(r);
            let (a, e) = t.split_once('\t')?;
            Some((a.trim().to_owned(), e.to_owned()))
        })
        .collect()
}

/// Step 5: list, export each mailbox (bounded parallelism), then the manifest.
async fn server_backup(
    s: &EngineSettings,
    remote: &Remote,
    dir: &str,
    progress: &ProgressSender,
) -> Result<(Vec<ServerFile>, Vec<(String, String)>), EngineError> {
    let step = SopStep::ServerBackup;
    let err = |kind, detail: String| failed(step, kind, detail, None);
    let ssh_err = |e: openssh::Error| err(ErrorKind::Ssh, error_chain(&e));
    let out = remote
        .sh(strategy::PREPARE_DIR, &[dir])
        .await
        .map_err(ssh_err)?;
    if !out.ok {
        return Err(err(
            ErrorKind::ServerCommand,
            format!("cannot prepare {dir}: {}", out.stderr),
        ));
    }
    let mut failures = Vec::new();
    match &s.kind {
        BackupKind::Command { command } => {
            let out = remote
                .sh(&strategy::operator_command(command, dir), &[])
                .await
                .map_err(ssh_err)?;
            if !out.ok {
                return Err(err(
                    ErrorKind::ServerCommand,
                    format!(
                        "MAIL_BACKUP_COMMAND exited with {:?}: {}",
                        out.code, out.stderr
                    ),
                ));
            }
        }
        kind => {
            let listing = strategy::listing(kind)
                .ok_or_else(|| err(ErrorKind::ServerCommand, "no listing".into()))?;
            let args: Vec<&str> = listing.args.iter().map(String::as_str).collect();
            let out = remote.sh(listing.script, &args).await.map_err(ssh_err)?;
            if !out.ok {
                return Err(err(
                    ErrorKind::ServerCommand,
                    format!(
                        "listing the mailboxes failed ({:?}): {}",
                        out.code, out.stderr
                    ),
                ));
            }
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let sep = if listing.nul { '\0' } else { '\n' };
            let mut accounts: Vec<String> = text
                .split(sep)
                .map(|a| a.trim_end_matches('\r').to_owned())
                .filter(|a| !a.trim().is_empty())
                .collect();
            if matches!(kind, BackupKind::Zimbra) {
                accounts.retain(|a| !strategy::is_zimbra_system_account(a));
            }
            if accounts.is_empty() {
                return Err(err(
                    ErrorKind::NoMailboxes,
                    "the server listed no mailboxes".into(),
                ));
            }
            accounts.sort();
            let ext = strategy::extension(kind);
            let mut used = HashMap::new();
            let jobs: Vec<(String, String)> = accounts
                .into_iter()
                .map(|a| {
                    let base = portable_name(&a);
                    let n = used
                        .entry(base.clone())
                        .and_modify(|n| *n += 1)
                        .or_insert(1usize);
                    let file = if *n == 1 {
                        format!("{base}.{ext}")
                    } else {
                        format!("{base}_{n}.{ext}")
                    };
                    (a, file)
                })
                .collect();
            let total = jobs.len();
            let mut done = 0;
            let mut exports =
                futures::stream::iter(jobs.into_iter().map(|(account, file)| async move {
                    let e = strategy::export(kind, dir, &account, &file);
                    let result = match e {
                        Some(e) => {
                            let args: Vec<&str> = e.args.iter().map(String::as_str).collect();
                            remote.sh(e.script, &args).await
                        }
                        None => unreachable_export(),
                    };
                    (account, result)
                }))
                .buffer_unordered(s.jobs);
            while let Some((account, result)) = exports.next().await {
                done += 1;
                let error = match result {
                    Ok(out) if out.ok => None,
                    Ok(out) => Some(format!("exit {:?}: {}", out.code, out.stderr)),
                    Err(e) => Some(error_chain(&e)),
                };
                tell(
                    progress,
                    Progress::Exported {
                        done,
                        total,
                        current: account.clone(),
                        ok: error.is_none(),
                    },
                );
                if let Some(error) = error {
                    let _ = remote
                        .sh(strategy::RECORD_FAILURE, &[dir, &account, &error])
                        .await;
                    failures.push((account, error));
                }
            }
        }
    }
    let out = remote
        .sh(strategy::MANIFEST, &[dir])
        .await
        .map_err(ssh_err)?;
    if !out.ok {
        return Err(err(
            ErrorKind::ServerCommand,
            format!("checksums on the server failed: {}", out.stderr),
        ));
    }
    let files = parse_manifest(&out.stdout).map_err(|e| err(ErrorKind::ServerCommand, e))?;
    if files.is_empty() && failures.is_empty() {
        return Err(err(
            ErrorKind::NoMailboxes,
            format!("no archive was written in {dir}"),
        ));
    }
    Ok((files, failures))
}

fn unreachable_export() -> Result<super::remote::Output, openssh::Error> {
    Ok(super::remote::Output {
        ok: false,
        code: None,
        stdout: vec![],
        stderr: "no export for this kind".into(),
    })
}

/// `SHA256SUMS` in the local folder, readable by `sha256sum -c`.
fn write_local_manifest(dir: &Path, files: &[ServerFile]) -> std::io::Result<()> {
    let text: String = files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.name))
        .collect();
    write_durably(&dir.join("SHA256SUMS"), text.as_bytes())
}

fn write_summary(dir: &Path, results: &[MailboxResult]) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(&serde_json::json!({ "mailboxes": results }))
        .map_err(std::io::Error::other)?;
    write_durably(&dir.join("summary.json"), &json)
}

fn write_durably(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, content)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_manifest_is_parsed_and_garbage_refused() {
        let h = "a".repeat(64);
        let raw = format!("{h} 10 ani@djki.go.id.tar.gz\0{h} 0 with space.tar.gz\0");
        let files = parse_manifest(raw.as_bytes()).expect("parses");
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[1],
            ServerFile {
                sha256: h.clone(),
                size: 0,
                name: "with space.tar.gz".into()
            }
        );
        assert!(parse_manifest(b"zz 1 x\0").is_err());
        assert!(parse_manifest(format!("{h} x y\0").as_bytes()).is_err());
    }
}
