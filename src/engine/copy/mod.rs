//! Step 6's copy: every archive of the server folder into the local dated folder. Each file is
//! written under a temporary name, checked for size and SHA-256 against the server's manifest,
//! made durable, and only then given its real name — so a file with its real name is always a
//! verified, complete copy, and an interrupted run can trust what it finds.
//!
//! [`plan`] says which files travel how, [`sink`] writes and hashes what arrives, [`meter`]
//! counts it; this module runs the streams over SSH.

mod meter;
mod plan;
mod sink;

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

pub(crate) use self::meter::Meter;
pub(crate) use self::plan::next_job;
pub(crate) use self::plan::OWN_STREAM_FROM;
use self::plan::{plan, Job};
use self::sink::{part_path, receive_many, receive_one, resume_point, BatchError, Encrypted};
use super::encryption::{self, EncryptedCopy, Recipients};
use super::files::sha256_of;
use super::local::{find_verified_copy, free_space, record_verified, remove_partials, sync_dir};
use super::manifest::ServerFile;
use super::remote::{error_chain, Remote};
use super::{EngineError, ErrorKind, ProgressSender, RunFolders};
use crate::domain::SopStep;

/// SSH channels open at once. One ssh connection carries them all.
pub(super) const STREAMS: usize = 4;

/// `cat` from the start; `dd` when resuming (`tail -c +N` reads in 8 KiB steps: a third slower).
const STREAM_ONE: &str = r#"if [ "$2" = 0 ]; then exec cat -- "$1"; else exec dd if="$1" bs=1M iflag=skip_bytes skip="$2" status=none; fi"#;
const STREAM_MANY: &str = r#"cd -- "$1" && shift && exec tar -cf - -- "$@""#;

/// Blocking copy threads still running (a stopped run waits for them before cleaning up).
static BUSY_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a blocking thread while it lives.
struct Busy;
impl Busy {
    fn new() -> Busy {
        BUSY_THREADS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Busy
    }
}
impl Drop for Busy {
    fn drop(&mut self) {
        BUSY_THREADS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits (at most `limit`) until no copy thread runs.
pub async fn threads_done(limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while BUSY_THREADS.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// What a copy did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Copied {
    /// Bytes that came over the network.
    pub transferred: u64,
    /// Bytes taken from an earlier run's verified copy instead.
    pub reused: u64,
}

/// Copies every archive not yet verified locally, adding what it moved to `copied` (also when it
/// fails: a retry's figures include every attempt). No byte for `stall` ends the copy with
/// [`ErrorKind::Stalled`] (the caller reconnects and calls again: verified files are kept and a
/// big file's partial copy goes on).
/// The files of a copy sorted out: what is here and verified already (or taken from an earlier
/// run's copy), and what is still to copy with the bytes it needs.
#[derive(Default)]
struct Sorted {
    todo: Vec<ServerFile>,
    need: u64,
    done_files: usize,
    done_bytes: u64,
    reused: u64,
}

async fn sort_out(folders: &RunFolders, files: &[ServerFile], seal: Option<&Recipients>) -> Sorted {
    let mut sorted = Sorted::default();
    let encrypted = seal.is_some();
    for file in files {
        let here = verified_already(folders, file, seal).await;
        // An earlier copy is taken only into a plain folder: an encrypted one may be to other
        // recipients, and a plain one must never land in an encrypted folder.
        if here || (!encrypted && reuse_earlier_copy(folders, file).await) {
            sorted.done_files += 1;
            sorted.done_bytes += file.size;
            if !here {
                sorted.reused += file.size;
            }
            continue;
        }
        // Only a big plain file continues its partial copy; a small one starts over, and so
        // does an encrypted one (its stream cannot be taken up again).
        let have = match file.size >= OWN_STREAM_FROM && !encrypted {
            true => std::fs::metadata(part_path(&folders.local, file.name.as_str()))
                .map(|m| m.len())
                .unwrap_or(0)
                .min(file.size),
            false => 0,
        };
        sorted.need += file.size - have;
        sorted.todo.push(file.clone());
    }
    sorted
}

pub async fn copy_all(
    remote: &Remote,
    folders: &RunFolders,
    files: &[ServerFile],
    progress: &ProgressSender,
    stall: Duration,
    copied: &mut Copied,
    seal: Option<&Recipients>,
) -> Result<(), EngineError> {
    let err = |kind, detail: String| copy_error(kind, detail, folders);
    let Sorted {
        todo,
        need,
        done_files,
        done_bytes,
        reused,
    } = sort_out(folders, files, seal).await;
    if let Err(e) = room_for(folders, need) {
        // What cannot finish only holds the disk: free it now.
        remove_partials(&folders.local);
        return Err(e);
    }
    let meter = Arc::new(Meter::new(files, done_files, done_bytes, progress.clone()));
    let work = futures::stream::iter(plan(todo).into_iter().map(|job| {
        let meter = meter.clone();
        let seal = seal.cloned();
        async move {
            match job {
                Job::Whole(file) => copy_whole(remote, folders, file, meter, seal).await,
                Job::Batch(files) => copy_batch(remote, folders, files, meter, seal).await,
            }
        }
    }))
    .buffer_unordered(STREAMS)
    .try_collect::<Vec<()>>();
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            meter.tell_now();
            if meter.idle() >= stall {
                return err(
                    ErrorKind::Stalled,
                    format!("no byte arrived for {} s", meter.idle().as_secs()),
                );
            }
        }
    };
    let result = tokio::select! {
        r = work => r.map(|_| ()),
        e = watch => Err(e),
    };
    copied.reused += reused;
    if result.is_err() {
        // The dropped streams' threads end as their pipes close; what they wrote is counted.
        threads_done(Duration::from_secs(10)).await;
    }
    copied.transferred += meter.transferred();
    if let Err(e) = result {
        let full =
            e.kind == ErrorKind::NoSpace || free_space(&folders.local).is_ok_and(|f| f < (1 << 20));
        if full {
            remove_partials(&folders.local);
            return Err(EngineError {
                kind: ErrorKind::NoSpace,
                ..e
            });
        }
        return Err(e);
    }
    sync_dir(&folders.local).map_err(|e| err(ErrorKind::Copy, e.to_string()))?;
    meter.tell_now();
    Ok(())
}

/// One job of steps 5 and 6 overlapped: `files` (just exported) copied and verified, each
/// taken from what is already here when it can be (an earlier run's copy). Returns the bytes
/// taken from earlier copies. On an error, what was verified stays (a retry skips it).
pub(crate) async fn copy_files(
    remote: &Remote,
    folders: &RunFolders,
    files: Vec<ServerFile>,
    meter: &Arc<Meter>,
    seal: Option<&Recipients>,
) -> Result<u64, EngineError> {
    let mut reused = 0;
    let mut todo = Vec::new();
    let mut need = 0;
    let encrypted = seal.is_some();
    for file in files {
        // Hashing what is already here (a resumed run) is work, not a stall.
        meter.alive();
        if verified_here(folders, &file, meter, seal).await {
            meter.present(file.size);
        } else if !encrypted && reuse_earlier_copy(folders, &file).await {
            meter.present(file.size);
            reused += file.size;
        } else {
            need += file.size;
            todo.push(file);
        }
    }
    if todo.is_empty() {
        return Ok(reused);
    }
    room_for(folders, need)?;
    // Waiting for an export is not a stall: the clock starts with the job.
    meter.alive();
    for job in plan(todo) {
        let seal = seal.cloned();
        match job {
            Job::Whole(file) => copy_whole(remote, folders, file, meter.clone(), seal).await?,
            Job::Batch(files) => copy_batch(remote, folders, files, meter.clone(), seal).await?,
        }
    }
    Ok(reused)
}

/// Whether the local folder's disk has `need` bytes free.
fn room_for(folders: &RunFolders, need: u64) -> Result<(), EngineError> {
    let free = free_space(&folders.local)
        .map_err(|e| copy_error(ErrorKind::Copy, e.to_string(), folders))?;
    if free < need {
        return Err(copy_error(
            ErrorKind::NoSpace,
            format!(
                "{} to copy, {} free on {}",
                mib(need),
                mib(free),
                folders.local.display()
            ),
            folders,
        ));
    }
    Ok(())
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// An earlier run (failed, or of another day) verified a file with the same checksum: link
/// (or copy) it here instead of copying it over the network again, and check it.
async fn reuse_earlier_copy(folders: &RunFolders, file: &ServerFile) -> bool {
    let Some(root) = folders.local.parent() else {
        return false;
    };
    let Some(source) = find_verified_copy(root, &folders.local, &file.sha256, file.size) else {
        return false;
    };
    let dest = folders.local.join(file.name.as_str());
    let part = part_path(&folders.local, file.name.as_str());
    let expected = file.sha256.clone();
    let task = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        let _busy = Busy::new();
        let _ = std::fs::remove_file(&part);
        // Only a plain file: a link to a symlink would put the symlink in the backup.
        if !std::fs::symlink_metadata(&source)?.file_type().is_file() {
            return Ok(false);
        }
        if std::fs::hard_link(&source, &part).is_err() {
            std::fs::copy(&source, &part)?;
            File::open(&part)?.sync_all()?;
        }
        // The source swapped for a symlink between the look and the link: not taken.
        if !std::fs::symlink_metadata(&part)?.file_type().is_file() {
            let _ = std::fs::remove_file(&part);
            return Ok(false);
        }
        // A copy from a folder made under an older, looser umask is made private too.
        std::fs::set_permissions(&part, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let (sha, _) = sha256_of(&part)?;
        if sha != expected {
            let _ = std::fs::remove_file(&part);
            return Ok(false);
        }
        std::fs::rename(&part, &dest)?;
        Ok(true)
    });
    let ok = matches!(task.await, Ok(Ok(true)));
    if ok {
        let _ = record_verified(&folders.local, &file.sha256, file.size, file.name.as_str());
    }
    ok
}

fn copy_error(kind: ErrorKind, detail: String, folders: &RunFolders) -> EngineError {
    EngineError {
        step: SopStep::CopyAndReport,
        kind,
        detail,
        folders: Some(folders.clone()),
        space: None,
    }
}

/// Streams one file into `.name.part`, continuing a partial one (or into `.name.age.part`,
/// encrypted to `seal`, from its start).
async fn copy_whole(
    remote: &Remote,
    folders: &RunFolders,
    file: ServerFile,
    meter: Arc<Meter>,
    seal: Option<Recipients>,
) -> Result<(), EngineError> {
    let err =
        |detail: String| copy_error(ErrorKind::Copy, format!("{}: {detail}", file.name), folders);
    let io_err = |e: std::io::Error| {
        let kind = if e.raw_os_error() == Some(libc::ENOSPC) {
            ErrorKind::NoSpace
        } else {
            ErrorKind::Copy
        };
        copy_error(kind, format!("{}: {e}", file.name), folders)
    };
    let stored = encryption::stored_name(file.name.as_str(), seal.is_some());
    let part = part_path(&folders.local, &stored);
    let (hasher, have) = match seal {
        Some(_) => (sha2::Sha256::default(), 0),
        None => {
            let part = part.clone();
            let size = file.size;
            let meter = meter.clone();
            tokio::task::spawn_blocking(move || {
                let _busy = Busy::new();
                resume_point(&part, size, &meter)
            })
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?
        }
    };
    let path = format!("{}/{}", folders.server, file.name);
    let offset = have.to_string();
    let mut child = remote
        .stream(STREAM_ONE, &[&path, &offset])
        .await
        .map_err(|e| err(error_chain(&e)))?;
    let input = take_stdout(&mut child).map_err(|e| err(e.to_string()))?;
    let receive = {
        let part = part.clone();
        let (meter, seal) = (meter.clone(), seal.clone());
        tokio::task::spawn_blocking(move || {
            let _busy = Busy::new();
            receive_one(input, &part, have, hasher, &meter, seal.as_ref()).and_then(|r| {
                File::open(&part)?.sync_all()?;
                Ok(r)
            })
        })
    };
    let (received, finished) = tokio::join!(receive, child.wait_with_output());
    let received = received.map_err(|e| err(e.to_string()))?.map_err(io_err)?;
    let finished = finished.map_err(|e| err(error_chain(&e)))?;
    if !finished.status.success() {
        return Err(err(format!(
            "reading it on the server failed ({}): {}",
            finished.status,
            String::from_utf8_lossy(&finished.stderr).trim()
        )));
    }
    let (got, sha) = (received.size, received.sha256.as_str());
    if got != file.size || sha != file.sha256 {
        // Never keep a copy that does not match: the next run starts this file over.
        let _ = std::fs::remove_file(&part);
        return Err(err(format!(
            "checksum mismatch: got {got} bytes with SHA-256 {sha}, the server has {} bytes with {}",
            file.size, file.sha256
        )));
    }
    land(folders, &file, received.encrypted, seal.as_ref()).map_err(|e| err(e.to_string()))?;
    meter.add(0, 1);
    Ok(())
}

/// A verified part given its real name and entered in the folder's index (and, encrypted, in
/// the index of encrypted copies with its plaintext's facts).
fn land(
    folders: &RunFolders,
    file: &ServerFile,
    encrypted: Option<Encrypted>,
    seal: Option<&Recipients>,
) -> Result<(), LandError> {
    let name = file.name.as_str();
    let stored = encryption::stored_name(name, encrypted.is_some());
    std::fs::rename(
        part_path(&folders.local, &stored),
        folders.local.join(&stored),
    )
    .map_err(|source| LandError {
        stored: stored.clone(),
        source,
    })?;
    let Some(e) = encrypted else {
        let _ = record_verified(&folders.local, &file.sha256, file.size, name);
        return Ok(());
    };
    // Both indexes, or the copy does not count: a resumed run copies it again.
    encryption::record(
        &folders.local,
        &EncryptedCopy {
            file: name.to_owned(),
            size: file.size,
            sha256: file.sha256.clone(),
            stored_size: e.size,
            stored_sha256: e.sha256.clone(),
            messages: e.messages,
            piece: e.piece,
            to: seal.map(|r| r.fingerprint().to_owned()).unwrap_or_default(),
        },
    )
    .and_then(|()| record_verified(&folders.local, &e.sha256, e.size, &stored))
    .map_err(|source| LandError { stored, source })
}

/// A verified part that could not be given its name or entered in an index.
#[derive(Debug, thiserror::Error)]
#[error("{stored}: {source}")]
struct LandError {
    stored: String,
    #[source]
    source: std::io::Error,
}

/// Copies a batch of small files through one `tar` stream.
async fn copy_batch(
    remote: &Remote,
    folders: &RunFolders,
    files: Vec<ServerFile>,
    meter: Arc<Meter>,
    seal: Option<Recipients>,
) -> Result<(), EngineError> {
    let err = |detail: String| copy_error(ErrorKind::Copy, detail, folders);
    let mut args = vec![folders.server.as_str()];
    args.extend(files.iter().map(|f| f.name.as_str()));
    let mut child = remote
        .stream(STREAM_MANY, &args)
        .await
        .map_err(|e| err(error_chain(&e)))?;
    let input = take_stdout(&mut child).map_err(|e| err(e.to_string()))?;
    let receive = {
        let dir = folders.local.clone();
        let meter = meter.clone();
        let (files, seal) = (files.clone(), seal.clone());
        tokio::task::spawn_blocking(move || {
            let _busy = Busy::new();
            receive_many(input, &dir, &files, &meter, seal.as_ref())
        })
    };
    let (received, finished) = tokio::join!(receive, child.wait_with_output());
    let received = received.map_err(|e| err(e.to_string()))?;
    let finished = finished.map_err(|e| err(error_chain(&e)))?;
    // Whatever arrived verified is kept, even when the stream broke off: a resumed run skips it.
    let (verified, problem) = match received {
        Ok(verified) => (verified, None),
        Err(BatchError { verified, detail }) => (verified, Some(detail)),
    };
    let mut landed = Vec::new();
    for (name, encrypted) in verified {
        if let Some(f) = files.iter().find(|f| f.name.as_str() == name) {
            land(folders, f, encrypted, seal.as_ref()).map_err(|e| err(e.to_string()))?;
            landed.push(name);
        }
    }
    meter.add(0, landed.len());
    if let Some(detail) = problem {
        return Err(err(detail));
    }
    if !finished.status.success() {
        return Err(err(format!(
            "reading files on the server failed ({}): {}",
            finished.status,
            String::from_utf8_lossy(&finished.stderr).trim()
        )));
    }
    if landed.len() != files.len() {
        let missing: Vec<&str> = files
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| !landed.iter().any(|v| v == n))
            .collect();
        return Err(err(format!(
            "the server did not send {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

fn take_stdout(child: &mut openssh::Child<&openssh::Session>) -> std::io::Result<File> {
    let out = child
        .stdout()
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    // A plain blocking pipe: the copy loop runs on a blocking thread, without a poll per read.
    let file = File::from(out.into_owned_fd()?);
    // A bigger pipe means fewer wake-ups between ssh and us; only a hint.
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on an open descriptor we own.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    Ok(file)
}

/// [`verified_already`], telling the meter of every MiB hashed (a big archive on a slow disk
/// takes longer than the stall limit).
async fn verified_here(
    folders: &RunFolders,
    file: &ServerFile,
    meter: &Arc<Meter>,
    seal: Option<&Recipients>,
) -> bool {
    let Some((dest, size, sha256)) = stored_copy(folders, file, seal) else {
        return false;
    };
    if !std::fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
        return false;
    }
    let meter = meter.clone();
    let hashed = tokio::task::spawn_blocking(move || {
        let _busy = Busy::new();
        resume_point(&dest, size, &meter)
    })
    .await;
    match hashed {
        Ok(Ok((h, n))) => n == size && super::files::hex(&sha2::Digest::finalize(h)) == sha256,
        _ => false,
    }
}

/// Where the copy of `file` is on disk and what it must be: the server's bytes, or (encrypted)
/// the ciphertext recorded for exactly that plaintext.
fn stored_copy(
    folders: &RunFolders,
    file: &ServerFile,
    seal: Option<&Recipients>,
) -> Option<(std::path::PathBuf, u64, String)> {
    let name = file.name.as_str();
    let Some(seal) = seal else {
        return Some((folders.local.join(name), file.size, file.sha256.clone()));
    };
    // A copy of exactly that plaintext, to exactly these keys (not to the keys of before).
    let copy = encryption::find(&folders.local, name)
        .filter(|c| c.sha256 == file.sha256 && c.size == file.size && c.to == seal.fingerprint())?;
    Some((
        folders.local.join(copy.stored()),
        copy.stored_size,
        copy.stored_sha256,
    ))
}

/// Already copied and verified by an earlier (interrupted) run.
async fn verified_already(
    folders: &RunFolders,
    file: &ServerFile,
    seal: Option<&Recipients>,
) -> bool {
    let Some((dest, size, sha256)) = stored_copy(folders, file, seal) else {
        return false;
    };
    match std::fs::metadata(&dest) {
        Ok(m) if m.len() == size => {
            let sum = tokio::task::spawn_blocking(move || sha256_of(&dest)).await;
            matches!(sum, Ok(Ok((h, _))) if h == sha256)
        }
        _ => false,
    }
}
