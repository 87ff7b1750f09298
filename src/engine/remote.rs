//! Step 4 and the server side: an SSH session (key only, strict host key), commands whose
//! arguments are always escaped, and files streamed down.

use std::path::Path;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};

use super::{EngineError, ErrorKind};
use crate::config::EngineSettings;
use crate::domain::SopStep;

pub struct Remote {
    session: Session,
}

/// What a remote command printed.
pub struct Output {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Classifies what `ssh` said when the login failed.
pub fn login_error(message: &str) -> ErrorKind {
    let m = message.to_lowercase();
    if m.contains("remote host identification has changed")
        || m.contains("host key for") && m.contains("has changed")
    {
        ErrorKind::HostKeyChanged
    } else if m.contains("host key verification failed") || m.contains("no matching host key") {
        // ssh says the same for an unknown and a changed key unless it prints the warning.
        ErrorKind::HostKeyUnknown
    } else if m.contains("permission denied") || m.contains("too many authentication failures") {
        ErrorKind::KeyRefused
    } else if m.contains("connection refused")
        || m.contains("timed out")
        || m.contains("could not resolve")
        || m.contains("no route to host")
        || m.contains("network is unreachable")
        || m.contains("connection closed")
    {
        ErrorKind::Unreachable
    } else {
        ErrorKind::Ssh
    }
}

impl Remote {
    /// Logs in. `work_dir` holds ssh's control socket and config; keep its path short.
    pub async fn connect(s: &EngineSettings, work_dir: &Path) -> Result<Remote, EngineError> {
        let fail = |kind, detail: String| EngineError::new(SopStep::RemoteLogin, kind, detail);
        // Our own ssh config: the user's ~/.ssh/config must not change how the backup logs in, and
        // AES-GCM is the fastest cipher on common CPUs.
        let config = work_dir.join("ssh_config");
        // A server that does not answer for MAIL_SSH_STALL_SECS ends the connection (three
        // keep-alives unanswered), so a stall turns into an error the run can reconnect after.
        let alive = (s.stall_secs / 3).max(1);
        let text = format!("BatchMode yes\nIdentitiesOnly yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nServerAliveInterval {alive}\nServerAliveCountMax 3\nCiphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr\n");
        std::fs::write(&config, text)
            .map_err(|e| fail(ErrorKind::Ssh, format!("writing {}: {e}", config.display())))?;
        if !s.ssh_key.is_file() {
            return Err(fail(
                ErrorKind::KeyRefused,
                format!(
                    "MAIL_SSH_KEY {} is not a readable file",
                    s.ssh_key.display()
                ),
            ));
        }
        if !s.ssh_known_hosts.is_file() {
            return Err(fail(
                ErrorKind::HostKeyUnknown,
                format!(
                    "MAIL_SSH_KNOWN_HOSTS {} is not a readable file",
                    s.ssh_known_hosts.display()
                ),
            ));
        }
        let mut b = SessionBuilder::default();
        b.user(s.ssh_user.clone())
            .port(s.ssh_port)
            .keyfile(&s.ssh_key)
            .known_hosts_check(KnownHosts::Strict)
            .user_known_hosts_file(&s.ssh_known_hosts)
            .config_file(&config)
            .control_directory(work_dir)
            // If the bot dies without closing the session, the master ssh still goes away.
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(300).expect("non-zero"),
            ))
            .connect_timeout(Duration::from_secs(15));
        match b.connect(&s.ssh_host).await {
            Ok(session) => Ok(Remote { session }),
            Err(e) => {
                let detail = error_chain(&e);
                Err(fail(login_error(&detail), detail))
            }
        }
    }

    /// Runs `program args…`, every argument escaped for the remote shell.
    pub async fn run(&self, program: &str, args: &[&str]) -> Result<Output, openssh::Error> {
        let out = self
            .session
            .command(program)
            .args(args)
            .stdin(openssh::Stdio::null())
            .output()
            .await?;
        Ok(Output {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }

    /// Runs the fixed `script` with `sh -c`, passing values only as positional arguments.
    pub async fn sh(&self, script: &str, args: &[&str]) -> Result<Output, openssh::Error> {
        let mut all = vec!["-c", script, "sh"];
        all.extend_from_slice(args);
        self.run("sh", &all).await
    }

    /// Starts `sh -c script args…` with stdout piped, to stream a file down.
    pub async fn stream(
        &self,
        script: &str,
        args: &[&str],
    ) -> Result<openssh::Child<&Session>, openssh::Error> {
        let mut all = vec!["-c", script, "sh"];
        all.extend_from_slice(args);
        self.session
            .command("sh")
            .args(&all)
            .stdin(openssh::Stdio::null())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
    }

    /// Starts `sh -c script args…` with every stream piped.
    async fn spawn_piped(
        &self,
        script: &str,
        args: &[&str],
    ) -> Result<openssh::Child<&Session>, openssh::Error> {
        let mut all = vec!["-c", script, "sh"];
        all.extend_from_slice(args);
        self.session
            .command("sh")
            .args(&all)
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
    }

    /// Runs `sh -c script args…` with the file at `path` on its stdin (an upload), calling
    /// `sent` with the bytes written so far.
    pub async fn upload(
        &self,
        script: &str,
        args: &[&str],
        mut source: Box<dyn std::io::Read + Send>,
        mut sent: impl FnMut(u64),
    ) -> Result<Output, openssh::Error> {
        use tokio::io::AsyncWriteExt;
        let mut child = self.spawn_piped(script, args).await?;
        // Read (and decrypt, for an encrypted copy) on a thread of its own, a few chunks ahead.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
        let reader = tokio::task::spawn_blocking(move || loop {
            let mut buf = vec![0u8; 256 * 1024];
            let got = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = got.is_err();
            if tx.blocking_send(got).is_err() || failed {
                break;
            }
        });
        let mut read_error = None;
        if let Some(mut stdin) = child.stdin().take() {
            let mut total = 0u64;
            while let Some(chunk) = rx.recv().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                };
                if stdin.write_all(&chunk).await.is_err() {
                    // The remote side stopped reading: its exit status and stderr say why.
                    break;
                }
                total += chunk.len() as u64;
                sent(total);
            }
            let _ = stdin.shutdown().await;
        }
        drop(rx);
        let _ = reader.await;
        let output = finished(child).await?;
        // A source that broke off (a damaged encrypted copy) is the error, whatever the server
        // made of the part it got.
        match read_error {
            Some(e) => Err(openssh::Error::ChildIo(e)),
            None => Ok(output),
        }
    }

    /// Runs `sh -c script args…` with `input` on its stdin: what must not be on a command line
    /// (a password hash) reaches the server this way.
    pub async fn sh_with_input(
        &self,
        script: &str,
        args: &[&str],
        input: &[u8],
    ) -> Result<Output, openssh::Error> {
        use tokio::io::AsyncWriteExt;
        let mut child = self.spawn_piped(script, args).await?;
        if let Some(mut stdin) = child.stdin().take() {
            // A script that stopped reading says why in its exit status and stderr.
            let _ = stdin.write_all(input).await;
            let _ = stdin.shutdown().await;
        }
        finished(child).await
    }

    /// Whether the connection still answers.
    pub async fn check(&self) -> Result<(), openssh::Error> {
        self.session.check().await
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}

/// The error with its causes (ssh's own words are in the source).
/// A piped child's end, as an [`Output`].
async fn finished(child: openssh::Child<&Session>) -> Result<Output, openssh::Error> {
    let out = child.wait_with_output().await?;
    Ok(Output {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_ssh_says_is_sorted_into_kinds() {
        assert_eq!(login_error("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@ Host key verification failed."), ErrorKind::HostKeyChanged);
        assert_eq!(
            login_error("Host key verification failed."),
            ErrorKind::HostKeyUnknown
        );
        assert_eq!(
            login_error("root@127.0.0.1: Permission denied (publickey)."),
            ErrorKind::KeyRefused
        );
        assert_eq!(
            login_error("ssh: connect to host 127.0.0.1 port 1: Connection refused"),
            ErrorKind::Unreachable
        );
        assert_eq!(login_error("something else"), ErrorKind::Ssh);
    }
}
