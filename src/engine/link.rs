//! The SSH connection of a run, made again after a drop or a stall: bounded tries with
//! growing waits, each shown as progress. A changed host key or a refused key is never
//! retried — those are not passing faults.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::remote::Remote;
use super::{tell, EngineError, ErrorKind, Progress, ProgressSender};
use crate::config::EngineSettings;
use crate::domain::SopStep;

pub struct Link<'a> {
    settings: &'a EngineSettings,
    remote: Option<Remote>,
    work: PathBuf,
    progress: ProgressSender,
    /// Reconnects so far in this run.
    pub reconnects: u32,
}

impl<'a> Link<'a> {
    /// Logs in (step 4).
    pub async fn connect(
        settings: &'a EngineSettings,
        progress: ProgressSender,
    ) -> Result<Link<'a>, EngineError> {
        let work = control_dir()
            .map_err(|e| EngineError::new(SopStep::RemoteLogin, ErrorKind::Ssh, e.to_string()))?;
        // Dropped mid-way (a stop), the half-made connection still goes away.
        let guard = WorkGuard(Some(work.clone()));
        let remote = Remote::connect(settings, &work).await?;
        guard.disarm();
        Ok(Link {
            settings,
            remote: Some(remote),
            work,
            progress,
            reconnects: 0,
        })
    }

    pub fn remote(&self) -> &Remote {
        self.remote
            .as_ref()
            .expect("a link always holds a session between calls")
    }

    /// The session, if there is one (after a reconnect that failed there is none).
    pub fn session(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// Whether the connection still answers.
    pub async fn alive(&self) -> bool {
        match &self.remote {
            Some(r) => matches!(
                tokio::time::timeout(Duration::from_secs(10), r.check()).await,
                Ok(Ok(()))
            ),
            None => false,
        }
    }

    /// Drops the old connection and logs in again, waiting longer after each failed try.
    pub async fn reconnect(&mut self, step: SopStep, reason: &str) -> Result<(), EngineError> {
        self.drop_session().await;
        let s = self.settings;
        if self.reconnects >= 3 * s.reconnect_tries {
            return Err(EngineError::new(
                step,
                ErrorKind::Unreachable,
                format!(
                    "the connection was lost again ({reason}) after {} reconnects in this run",
                    self.reconnects
                ),
            ));
        }
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 1..=s.reconnect_tries {
            tell(
                &self.progress,
                Progress::Reconnecting {
                    step,
                    attempt,
                    of: s.reconnect_tries,
                    reason: reason.to_owned(),
                },
            );
            let wait = backoff(attempt);
            if started.elapsed() + wait > Duration::from_secs(s.reconnect_secs) {
                break;
            }
            tokio::time::sleep(wait).await;
            let work =
                control_dir().map_err(|e| EngineError::new(step, ErrorKind::Ssh, e.to_string()))?;
            let guard = WorkGuard(Some(work.clone()));
            match Remote::connect(s, &work).await {
                Ok(remote) => {
                    guard.disarm();
                    self.remote = Some(remote);
                    self.work = work;
                    self.reconnects += 1;
                    tell(&self.progress, Progress::Reconnected { step });
                    tracing::info!(%step, attempt, "reconnected to the mail server");
                    return Ok(());
                }
                Err(e) => {
                    drop(guard);
                    if matches!(e.kind, ErrorKind::HostKeyChanged | ErrorKind::KeyRefused) {
                        return Err(EngineError { step, ..e });
                    }
                    last = e.detail;
                }
            }
        }
        Err(EngineError::new(
            step,
            ErrorKind::Unreachable,
            format!(
                "the connection was lost ({reason}) and could not be made again in {} tries over {} s: {last}",
                s.reconnect_tries,
                started.elapsed().as_secs()
            ),
        ))
    }

    async fn drop_session(&mut self) {
        if let Some(old) = self.remote.take() {
            // A stalled master may not answer `-O exit`: do not wait for it long.
            let _ = tokio::time::timeout(Duration::from_secs(5), old.close()).await;
        }
        kill_master(&self.work);
        let _ = std::fs::remove_dir_all(&self.work);
    }

    /// Logs out and removes the control folder.
    pub async fn close(mut self) {
        self.drop_session().await;
    }
}

impl Drop for Link<'_> {
    /// A run dropped mid-way (a stop) still leaves no ssh master or control folder behind.
    fn drop(&mut self) {
        drop(self.remote.take());
        kill_master(&self.work);
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A control folder not yet owned by a link: removed, with its ssh master, if the connect is
/// abandoned (or fails).
struct WorkGuard(Option<PathBuf>);

impl WorkGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        if let Some(work) = self.0.take() {
            kill_master(&work);
            let _ = std::fs::remove_dir_all(&work);
        }
    }
}

/// 1, 2, 4, 8, 16, 30, 30 … seconds.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// The ssh master of a control folder, if it is still there (a stalled one ignores `-O exit`).
fn kill_master(work: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let needle = work.as_os_str().as_encoded_bytes();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.starts_with(b"ssh\0") && cmdline.windows(needle.len()).any(|w| w == needle) {
            // SAFETY: kill has no memory preconditions; the pid was just read from /proc.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
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
            kill_master(&entry.path());
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_are_capped() {
        let secs: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
