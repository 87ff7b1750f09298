//! Step 5: the mailbox backup into one folder on the server. The folder is claimed with the
//! bot's marker; the server's free space is checked against the expected size before anything
//! is written and watched by every export; a dropped connection is followed by a reconnect and
//! the exports not yet finished (finished ones are kept); whatever an earlier run left running
//! in the folder is stopped first.

use super::files::portable_name;
use super::kind::{self, MailKind};
use super::link::Link;
use super::manifest::{parse_failures, parse_manifest, ServerFile};
use super::remote::{error_chain, Output};
use super::server::{self, parse_space, ServerSpace};
use super::{tell, EngineError, ErrorKind, Progress, ProgressSender, SpaceShortfall};
use crate::config::EngineSettings;
use crate::config::Floor;
use crate::domain::SopStep;

const STEP: SopStep = SopStep::ServerBackup;

fn fail(kind: ErrorKind, detail: impl Into<String>) -> EngineError {
    EngineError::new(STEP, kind, detail)
}

/// What step 5 leaves for step 6.
pub struct Exported {
    pub files: Vec<ServerFile>,
    pub failures: Vec<(String, String)>,
}

/// Runs a fixed script; after a dropped connection, reconnects and runs it again.
pub async fn sh_again(
    link: &mut Link<'_>,
    step: SopStep,
    script: &str,
    args: &[&str],
) -> Result<Output, EngineError> {
    loop {
        let why = match link.remote().sh(script, args).await {
            Ok(out) if out.ok => return Ok(out),
            Ok(out) => {
                if link.alive().await {
                    return Ok(out);
                }
                out.stderr
            }
            Err(e) => {
                if link.alive().await {
                    return Err(EngineError::new(step, ErrorKind::Ssh, error_chain(&e)));
                }
                error_chain(&e)
            }
        };
        link.reconnect(step, &why).await?;
    }
}

/// Runs fixed scripts side by side (each a round trip of its own); after a dropped connection,
/// reconnects and runs them all again. Outputs in the order given.
pub async fn sh_together(
    link: &mut Link<'_>,
    step: SopStep,
    scripts: &[(&str, Vec<&str>)],
) -> Result<Vec<Output>, EngineError> {
    loop {
        let ran = {
            let remote = link.remote();
            futures::future::join_all(scripts.iter().map(|(script, args)| remote.sh(script, args)))
                .await
        };
        let mut why = None;
        let mut outs = Vec::with_capacity(ran.len());
        for r in ran {
            match r {
                Ok(out) => outs.push(out),
                Err(e) => {
                    why.get_or_insert_with(|| error_chain(&e));
                }
            }
        }
        let broken = why.is_some() || outs.iter().any(|o| !o.ok);
        if !broken || link.alive().await {
            if let Some(why) = why {
                return Err(EngineError::new(step, ErrorKind::Ssh, why));
            }
            return Ok(outs);
        }
        let why = why.unwrap_or_else(|| {
            outs.iter()
                .find(|o| !o.ok)
                .map(|o| o.stderr.clone())
                .unwrap_or_default()
        });
        link.reconnect(step, &why).await?;
    }
}

/// Claims a new server folder named like the local one (`_2` … when the name is taken, by
/// the bot or by hand) and returns its path.
pub async fn claim(
    link: &mut Link<'_>,
    s: &EngineSettings,
    name: &str,
    owner: &str,
) -> Result<String, EngineError> {
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let marker = server::marker_text(owner, &created);
    let out = sh_again(
        link,
        STEP,
        server::CLAIM,
        &[&s.server_backup_dir, name, &marker],
    )
    .await?;
    if !out.ok {
        return Err(fail(
            ErrorKind::ServerCommand,
            format!(
                "cannot create a folder in {}: {}",
                s.server_backup_dir, out.stderr
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether `dir` exists on the server and carries the bot's marker.
pub async fn is_ours(link: &mut Link<'_>, dir: &str) -> Result<bool, EngineError> {
    Ok(sh_again(link, STEP, server::IS_OURS, &[dir]).await?.ok)
}

/// Stops what an earlier run still runs in the bot's folder `dir` and removes its temporary
/// files; returns how many exports were stopped.
pub async fn stop_writers(link: &mut Link<'_>, dir: &str) -> Result<usize, EngineError> {
    let out = sh_again(link, STEP, server::STOP_WRITERS, &[dir]).await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

/// Step 5 of the `command` kind into the claimed folder `dir` (the mailbox kinds overlap steps 5
/// and 6 in [`super::pipeline`]). `continuing`: an earlier run of this folder was cut
/// off; its finished exports are kept and a finished step 5 is taken as it is.
pub async fn run(
    s: &EngineSettings,
    link: &mut Link<'_>,
    dir: &str,
    continuing: bool,
    progress: &ProgressSender,
) -> Result<Exported, EngineError> {
    let result = exports(s, link, dir, continuing, progress).await;
    if let Err(e) = &result {
        // A failed step 5 leaves nothing running and nothing temporary behind.
        let _ = link.remote().sh(server::STOP_WRITERS, &[dir]).await;
        if !continuing && e.kind == ErrorKind::ServerNoSpace {
            let _ = link.remote().sh(server::RELEASE, &[dir]).await;
        }
    }
    result
}

async fn exports(
    s: &EngineSettings,
    link: &mut Link<'_>,
    dir: &str,
    continuing: bool,
    progress: &ProgressSender,
) -> Result<Exported, EngineError> {
    if continuing {
        let stopped = stop_writers(link, dir).await?;
        if stopped > 0 {
            tracing::warn!(dir, stopped, "stopped exports an earlier run left running");
        }
        let state = sh_again(link, STEP, server::READ_STATE, &[dir]).await?;
        if state.ok {
            return finished_before(&state.stdout);
        }
        sh_again(link, STEP, server::CLEAR_FAILURES, &[dir]).await?;
    }
    let Some(script) = kind::of(&s.kind).operator_command(dir) else {
        return Err(fail(
            ErrorKind::ServerCommand,
            "the mailbox kinds export through the pipeline of steps 5 and 6",
        ));
    };
    let out = sh_again(link, STEP, server::LAST_RUN_SIZE, &[&s.server_backup_dir]).await?;
    let last: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let need = (last > 0).then_some(last * 1024);
    let floor = check_space(s, link, need, progress).await?;
    run_command(link, &script, dir, floor).await?;
    let out = sh_again(link, STEP, server::MANIFEST, &[dir]).await?;
    if !out.ok {
        return Err(fail(
            ErrorKind::ServerCommand,
            format!("checksums on the server failed: {}", out.stderr),
        ));
    }
    let files =
        parse_manifest(&out.stdout).map_err(|e| fail(ErrorKind::ServerCommand, e.to_string()))?;
    if files.is_empty() {
        return Err(fail(
            ErrorKind::NoMailboxes,
            format!("no archive was written in {dir}"),
        ));
    }
    Ok(Exported {
        files,
        failures: Vec::new(),
    })
}

/// [`server::READ_STATE`]'s output: the manifest, and the failures.
pub(super) fn split_state(raw: &[u8]) -> (&[u8], Vec<(String, String)>) {
    let end = raw
        .windows(12)
        .position(|w| w == b"\n--failed--\n")
        .unwrap_or(raw.len());
    let failures = raw.get(end + 12..).map(parse_failures).unwrap_or_default();
    (&raw[..end], failures)
}

fn finished_before(raw: &[u8]) -> Result<Exported, EngineError> {
    let (manifest, failures) = split_state(raw);
    let files =
        parse_manifest(manifest).map_err(|e| fail(ErrorKind::ServerCommand, e.to_string()))?;
    if files.is_empty() && failures.is_empty() {
        return Err(fail(
            ErrorKind::NoMailboxes,
            "the earlier step 5 of this folder wrote no archive",
        ));
    }
    Ok(Exported { files, failures })
}

/// The accounts in the listing's output, sorted, without the ones the kind skips.
pub(super) fn accounts_of(
    kind: &dyn MailKind,
    nul: bool,
    out: &Output,
) -> Result<Vec<String>, EngineError> {
    if !out.ok {
        return Err(fail(
            ErrorKind::ServerCommand,
            format!(
                "listing the mailboxes failed ({:?}): {}",
                out.code, out.stderr
            ),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let sep = if nul { '\0' } else { '\n' };
    let mut accounts: Vec<String> = text
        .split(sep)
        .map(|a| a.trim_end_matches('\r').to_owned())
        .filter(|a| !a.trim().is_empty() && !kind.skips(a))
        .collect();
    if accounts.is_empty() {
        return Err(fail(
            ErrorKind::NoMailboxes,
            "the server listed no mailboxes",
        ));
    }
    accounts.sort();
    accounts.dedup();
    Ok(accounts)
}

/// Each account's archive name: portable, and unique even when two accounts map to one name.
pub(super) fn name_archives(ext: &str, accounts: Vec<String>) -> Vec<(String, String)> {
    let mut used = std::collections::HashSet::new();
    accounts
        .into_iter()
        .map(|a| {
            let base = portable_name(&a);
            // `a:b`, `a_b` and `a_b_2` must not end up in one file.
            let file = (1usize..)
                .map(|n| match n {
                    1 => format!("{base}.{ext}"),
                    n => format!("{base}_{n}.{ext}"),
                })
                .find(|f| !used.contains(f))
                .expect("an unused name");
            used.insert(file.clone());
            (a, file)
        })
        .collect()
}

/// `(total, largest)` bytes of the mailboxes as stored (the output of the kind's [`kind::MailboxScripts::sizes`]);
/// `None` when the server cannot say.
pub(super) fn sizes_of(out: &Output) -> (Option<u64>, Option<u64>) {
    if !out.ok {
        return (None, None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(t), Some(m)) if t > 0 => (Some(t * 1024), Some(m * 1024)),
        _ => (None, None),
    }
}

/// The free space where the server folders live, checked against what the export needs and
/// the floor. Returns the floor in KiB for the exports to watch.
pub(super) async fn check_space(
    s: &EngineSettings,
    link: &mut Link<'_>,
    need: Option<u64>,
    progress: &ProgressSender,
) -> Result<u64, EngineError> {
    let out = sh_again(link, STEP, server::FREE_SPACE, &[&s.server_backup_dir]).await?;
    space_floor(s, &out, need, progress)
}

/// [`check_space`] of [`server::FREE_SPACE`]'s output.
pub(super) fn space_floor(
    s: &EngineSettings,
    out: &Output,
    need: Option<u64>,
    progress: &ProgressSender,
) -> Result<u64, EngineError> {
    let space = parse_space(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        fail(
            ErrorKind::ServerCommand,
            format!(
                "cannot read the free space of {}: {}",
                s.server_backup_dir, out.stderr
            ),
        )
    })?;
    let floor = s.server_min_free.bytes(space.size);
    tell(
        progress,
        Progress::ServerSpace {
            free: space.avail,
            need,
            floor,
        },
    );
    if let Some(shortfall) = shortfall(&space, need, floor, s.server_min_free, &s.server_backup_dir)
    {
        return Err(EngineError {
            space: Some(Box::new(shortfall.clone())),
            ..fail(ErrorKind::ServerNoSpace, shortfall.to_string())
        });
    }
    Ok(floor / 1024)
}

/// Why the export would take the server below its floor, if it would.
pub fn shortfall(
    space: &ServerSpace,
    need: Option<u64>,
    floor: u64,
    setting: Floor,
    dir: &str,
) -> Option<SpaceShortfall> {
    let after = space.avail.saturating_sub(need.unwrap_or(0));
    (after < floor || space.avail < floor).then(|| SpaceShortfall {
        need,
        free: space.avail,
        floor,
        setting: setting.to_string(),
        mount: space.mount.clone(),
        dir: dir.to_owned(),
    })
}

/// The `command` kind: the operator's command writes into the folder, watched like an export.
async fn run_command(
    link: &mut Link<'_>,
    script: &str,
    dir: &str,
    floor_kib: u64,
) -> Result<(), EngineError> {
    let floor = floor_kib.to_string();
    loop {
        // What an earlier, cut-off run of the command left here is not trusted: start clean.
        sh_again(link, STEP, server::CLEAR_OUTPUT, &[dir]).await?;
        let args = [dir, "-", floor.as_str(), script, "command"];
        let why = match link.remote().sh(server::EXPORT_ONE, &args).await {
            Ok(out) if out.ok => return Ok(()),
            Ok(out) if out.code == Some(99) => {
                // Its partial output only holds the server's disk: free it now.
                let _ = link.remote().sh(server::CLEAR_OUTPUT, &[dir]).await;
                return Err(fail(ErrorKind::ServerNoSpace, out.stderr));
            }
            Ok(out) => {
                if link.alive().await {
                    let _ = link.remote().sh(server::CLEAR_OUTPUT, &[dir]).await;
                    return Err(fail(
                        ErrorKind::ServerCommand,
                        format!(
                            "MAIL_BACKUP_COMMAND exited with {:?}: {}",
                            out.code, out.stderr
                        ),
                    ));
                }
                out.stderr
            }
            Err(e) => error_chain(&e),
        };
        link.reconnect(STEP, &why).await?;
        stop_writers(link, dir).await?;
    }
}

/// Server retention after a verified copy: keeps the newest `MAIL_SERVER_BACKUP_KEEP` bot-made
/// folders, removes older ones (never one without the marker). Returns the names removed.
pub async fn retention(
    s: &EngineSettings,
    link: &mut Link<'_>,
    current: &str,
) -> Result<Vec<String>, EngineError> {
    let keep = s.server_keep.to_string();
    let out = sh_again(
        link,
        SopStep::CopyAndReport,
        server::RETENTION,
        &[&s.server_backup_dir, &keep, current],
    )
    .await?;
    if !out.ok {
        return Err(EngineError::new(
            SopStep::CopyAndReport,
            ErrorKind::ServerCommand,
            format!("removing old server folders failed: {}", out.stderr),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_that_would_cross_the_floor_is_refused_with_the_figures() {
        let space = ServerSpace {
            avail: 30 << 30,
            size: 100 << 30,
            mount: "/var".into(),
        };
        let floor = Floor::Percent(15.0);
        let f = floor.bytes(space.size);
        assert!(shortfall(&space, Some(10 << 30), f, floor, "/var/backups").is_none());
        let s = shortfall(&space, Some(20 << 30), f, floor, "/var/backups").expect("refused");
        assert_eq!(
            (s.need, s.free, s.mount.as_str()),
            (Some(20 << 30), 30 << 30, "/var")
        );
        // Unknown size: only a server already below the floor is refused.
        assert!(shortfall(&space, None, f, floor, "/x").is_none());
        let low = ServerSpace {
            avail: 1 << 30,
            ..space
        };
        assert!(shortfall(&low, None, f, floor, "/x").is_some());
    }

    #[test]
    fn two_accounts_with_one_portable_name_get_two_archives() {
        let jobs = name_archives("tar.gz", vec!["a:b".into(), "a_b".into(), "c".into()]);
        let files: Vec<&str> = jobs.iter().map(|(_, f)| f.as_str()).collect();
        assert_eq!(files, vec!["a_b.tar.gz", "a_b_2.tar.gz", "c.tar.gz"]);
        let taken = name_archives("tar.gz", vec!["a:b".into(), "a_b".into(), "a_b_2".into()]);
        let files: Vec<&str> = taken.iter().map(|(_, f)| f.as_str()).collect();
        assert_eq!(files, vec!["a_b.tar.gz", "a_b_2.tar.gz", "a_b_2_2.tar.gz"]);
    }
}
