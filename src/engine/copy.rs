//! Step 6's copy: every archive of the server folder into the local dated folder. Each file is
//! written under a temporary name, checked for size and SHA-256 against the server's manifest,
//! made durable, and only then given its real name — so a file with its real name is always a
//! verified, complete copy, and an interrupted run can trust what it finds.
//!
//! Big files each get their own stream (`tail -c +N`, so a partial copy resumes where it
//! stopped); small ones travel many to a `tar` stream, because one SSH channel per 100 KiB file
//! costs more in round trips than in bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::local::{find_verified_copy, free_space, record_verified, remove_partials, sync_dir};
use super::manifest::ServerFile;
use super::remote::{error_chain, Remote};
use super::{tell, EngineError, ErrorKind, Progress, ProgressSender, RunFolders};
use crate::domain::SopStep;

/// Files at least this big get a stream of their own and resume byte-exactly.
const OWN_STREAM_FROM: u64 = 8 << 20;
/// Limits of one `tar` stream of small files (the file names travel on its command line).
const BATCH_FILES: usize = 400;
const BATCH_BYTES: u64 = 64 << 20;
/// SSH channels open at once. One ssh connection carries them all.
const STREAMS: usize = 4;
const BUFFER: usize = 1 << 20;
/// Buffers of a big file between the reading and the writing thread (memory: this × BUFFER).
const IN_FLIGHT: usize = 8;
/// Bytes a big file may have unwritten before the writer waits for the disk.
const WRITEBACK_WINDOW: u64 = 4 << 20;
/// How far behind the newest data the writer waits for the disk (the disk's slack).
const WRITEBACK_LAG: u64 = 4 * WRITEBACK_WINDOW;
const SMALL_BUFFER: usize = 128 << 10;
/// Progress events no more often than this (the last one of a file always goes out).
const TELL_EVERY: Duration = Duration::from_millis(200);

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

/// Copies every archive not yet verified locally. No byte for `stall` ends the copy with
/// [`ErrorKind::Stalled`] (the caller reconnects and calls again: verified files are kept and a
/// big file's partial copy goes on).
pub async fn copy_all(
    remote: &Remote,
    folders: &RunFolders,
    files: &[ServerFile],
    progress: &ProgressSender,
    stall: Duration,
) -> Result<Copied, EngineError> {
    let err = |kind, detail: String| copy_error(kind, detail, folders);
    let mut need = 0u64;
    let mut todo = Vec::new();
    let mut done_files = 0;
    let mut done_bytes = 0u64;
    let mut reused = 0u64;
    for file in files {
        if verified_already(&folders.local.join(file.name.as_str()), file).await {
            done_files += 1;
            done_bytes += file.size;
            continue;
        }
        if reuse_earlier_copy(folders, file).await {
            done_files += 1;
            done_bytes += file.size;
            reused += file.size;
            continue;
        }
        // Only a big file continues its partial copy; a small one starts over.
        let have = match file.size >= OWN_STREAM_FROM {
            true => std::fs::metadata(part_path(&folders.local, file.name.as_str()))
                .map(|m| m.len())
                .unwrap_or(0)
                .min(file.size),
            false => 0,
        };
        need += file.size - have;
        todo.push(file.clone());
    }
    let free = free_space(&folders.local).map_err(|e| err(ErrorKind::Copy, e.to_string()))?;
    if free < need {
        // What cannot finish only holds the disk: free it now.
        remove_partials(&folders.local);
        return Err(err(
            ErrorKind::NoSpace,
            format!(
                "{} to copy, {} free on {}",
                mib(need),
                mib(free),
                folders.local.display()
            ),
        ));
    }
    let meter = Arc::new(Meter::new(files, done_files, done_bytes, progress.clone()));
    let work = futures::stream::iter(plan(todo).into_iter().map(|job| {
        let meter = meter.clone();
        async move {
            match job {
                Job::Whole(file) => copy_whole(remote, folders, file, meter).await,
                Job::Batch(files) => copy_batch(remote, folders, files, meter).await,
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
    Ok(Copied {
        transferred: meter.transferred(),
        reused,
    })
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
        if std::fs::hard_link(&source, &part).is_err() {
            std::fs::copy(&source, &part)?;
            File::open(&part)?.sync_all()?;
        }
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

enum Job {
    Whole(ServerFile),
    Batch(Vec<ServerFile>),
}

/// Big files alone, small ones in batches; the biggest work first so the streams end together.
fn plan(mut todo: Vec<ServerFile>) -> Vec<Job> {
    todo.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let mut jobs = Vec::new();
    let mut batch: Vec<ServerFile> = Vec::new();
    let mut batch_bytes = 0;
    for file in todo {
        if file.size >= OWN_STREAM_FROM {
            jobs.push(Job::Whole(file));
            continue;
        }
        if batch.len() == BATCH_FILES || batch_bytes + file.size > BATCH_BYTES {
            jobs.push(Job::Batch(std::mem::take(&mut batch)));
            batch_bytes = 0;
        }
        batch_bytes += file.size;
        batch.push(file);
    }
    if !batch.is_empty() {
        jobs.push(Job::Batch(batch));
    }
    jobs
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

/// Streams one file into `.name.part`, continuing a partial one.
async fn copy_whole(
    remote: &Remote,
    folders: &RunFolders,
    file: ServerFile,
    meter: Arc<Meter>,
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
    let part = part_path(&folders.local, file.name.as_str());
    let (hasher, have) = {
        let part = part.clone();
        let size = file.size;
        tokio::task::spawn_blocking(move || resume_point(&part, size))
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?
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
        let meter = meter.clone();
        tokio::task::spawn_blocking(move || {
            let _busy = Busy::new();
            receive_one(input, &part, have, hasher, &meter).and_then(|(got, sha)| {
                File::open(&part)?.sync_all()?;
                Ok((got, sha))
            })
        })
    };
    let (received, finished) = tokio::join!(receive, child.wait_with_output());
    let (got, sha) = received.map_err(|e| err(e.to_string()))?.map_err(io_err)?;
    let finished = finished.map_err(|e| err(error_chain(&e)))?;
    if !finished.status.success() {
        return Err(err(format!(
            "reading it on the server failed ({}): {}",
            finished.status,
            String::from_utf8_lossy(&finished.stderr).trim()
        )));
    }
    if got != file.size || sha != file.sha256 {
        // Never keep a copy that does not match: the next run starts this file over.
        let _ = std::fs::remove_file(&part);
        return Err(err(format!(
            "checksum mismatch: got {got} bytes with SHA-256 {sha}, the server has {} bytes with {}",
            file.size, file.sha256
        )));
    }
    std::fs::rename(&part, folders.local.join(file.name.as_str()))
        .map_err(|e| err(e.to_string()))?;
    let _ = record_verified(&folders.local, &file.sha256, file.size, file.name.as_str());
    meter.add(0, 1);
    Ok(())
}

/// Copies a batch of small files through one `tar` stream.
async fn copy_batch(
    remote: &Remote,
    folders: &RunFolders,
    files: Vec<ServerFile>,
    meter: Arc<Meter>,
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
        let files = files.clone();
        tokio::task::spawn_blocking(move || {
            let _busy = Busy::new();
            receive_many(input, &dir, &files, &meter)
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
    for name in &verified {
        std::fs::rename(part_path(&folders.local, name), folders.local.join(name))
            .map_err(|e| err(format!("{name}: {e}")))?;
        if let Some(f) = files.iter().find(|f| f.name.as_str() == name) {
            let _ = record_verified(&folders.local, &f.sha256, f.size, name);
        }
    }
    meter.add(0, verified.len());
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
    if verified.len() != files.len() {
        let missing: Vec<&str> = files
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| !verified.iter().any(|v| v == n))
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

/// The hash of what a partial copy already holds, and how much that is.
fn resume_point(part: &Path, size: u64) -> std::io::Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    match File::open(part) {
        Ok(existing) if existing.metadata()?.len() <= size => {
            let have = std::io::copy(&mut BufReader::with_capacity(BUFFER, existing), &mut hasher)?;
            Ok((hasher, have))
        }
        _ => Ok((Sha256::new(), 0)),
    }
}

/// Appends the stream to `part`, hashing as it goes; returns the total length and its SHA-256.
fn receive_one(
    mut input: File,
    part: &Path,
    have: u64,
    mut hasher: Sha256,
    meter: &Meter,
) -> std::io::Result<(u64, String)> {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(have > 0)
        .truncate(have == 0)
        .open(part)?;
    let got = have + pump_overlapped(&mut input, &mut out, &mut hasher, meter)?;
    Ok((got, hex(&hasher.finalize())))
}

/// Like [`pump`], for big files, as a pipeline of three threads — one drains the pipe, one
/// hashes, one writes — so ssh never waits on the hash or the disk. The disk is kept writing
/// as the data arrives (`sync_file_range`), so the final `fsync` finds little left to do and
/// the page cache never holds much unwritten backup. Holds at most `IN_FLIGHT` buffers.
fn pump_overlapped(
    input: &mut File,
    out: &mut File,
    hasher: &mut Sha256,
    meter: &Meter,
) -> std::io::Result<u64> {
    type Filled = (Vec<u8>, usize);
    let (read_tx, read_rx) = std::sync::mpsc::sync_channel::<Filled>(IN_FLIGHT);
    let (hashed_tx, hashed_rx) = std::sync::mpsc::sync_channel::<Filled>(IN_FLIGHT);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..IN_FLIGHT {
        let _ = empty_tx.send(vec![0u8; BUFFER]);
    }
    let start = out.metadata()?.len();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (buf, n) in read_rx {
                hasher.update(&buf[..n]);
                if hashed_tx.send((buf, n)).is_err() {
                    break;
                }
            }
        });
        let writer = scope.spawn(move || -> std::io::Result<()> {
            let (mut written, mut flushed) = (start, start);
            for (buf, n) in hashed_rx {
                out.write_all(&buf[..n])?;
                written += n as u64;
                if written - flushed >= WRITEBACK_WINDOW {
                    write_back(out, flushed, written - flushed);
                    flushed = written;
                }
                // The reader may have stopped; then the buffer is simply dropped.
                let _ = empty_tx.send(buf);
            }
            Ok(())
        });
        let mut total = 0u64;
        let read = loop {
            // No buffer back means the writer stopped: its error is the one to report.
            let Ok(mut buf) = empty_rx.recv() else {
                break Ok(());
            };
            let n = match fill(input, &mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            total += n as u64;
            meter.add(n as u64, 0);
            if read_tx.send((buf, n)).is_err() {
                break Ok(());
            }
        };
        drop(read_tx);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writer thread panicked")));
        read?;
        wrote?;
        Ok(total)
    })
}

/// Reads until `buf` is full or the input ends (a pipe hands out 64 KiB at a time).
fn fill(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies `input` to `out`, hashing it.
fn pump(
    input: &mut impl Read,
    out: &mut File,
    hasher: &mut Sha256,
    meter: &Meter,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; SMALL_BUFFER];
    let mut total = 0;
    loop {
        let n = fill(input, &mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        total += n as u64;
        meter.add(n as u64, 0);
    }
}

/// Starts writing `len` bytes at `offset` to disk (0: to the end) and waits for a window
/// `WRITEBACK_LAG` behind it. Only a hint: durability still comes from the `fsync`/`syncfs` before the rename.
fn write_back(out: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let fd = out.as_raw_fd();
    // SAFETY: plain syscalls on an open descriptor; errors only lose the hint.
    unsafe {
        libc::sync_file_range(
            fd,
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
        if len > 0 && offset >= WRITEBACK_LAG {
            libc::sync_file_range(
                fd,
                (offset - WRITEBACK_LAG) as libc::off64_t,
                WRITEBACK_WINDOW as libc::off64_t,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
    }
}

struct BatchError {
    verified: Vec<String>,
    detail: String,
}

/// Unpacks a `tar` stream of expected files into `.name.part` files, each checked against the
/// manifest. Returns the names whose parts are verified and durable (one `syncfs` for the batch),
/// ready to be renamed.
fn receive_many(
    input: File,
    dir: &Path,
    files: &[ServerFile],
    meter: &Meter,
) -> Result<Vec<String>, BatchError> {
    let expected: HashMap<&str, &ServerFile> = files.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut verified = Vec::new();
    let mut problem = None;
    let mut archive = tar::Archive::new(BufReader::with_capacity(BUFFER, input));
    let result = (|| -> std::io::Result<()> {
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&name).into_owned();
            // Only the files asked for, by their exact plain names: nothing else is written.
            let Some(file) = expected.get(name.as_str()) else {
                problem.get_or_insert(format!("the server sent an unexpected entry {name:?}"));
                break;
            };
            if entry.header().entry_type() != tar::EntryType::Regular {
                problem.get_or_insert(format!("{name}: not a regular file on the server"));
                break;
            }
            let part = part_path(dir, &name);
            let mut out = File::create(&part)?;
            let mut hasher = Sha256::new();
            let got = pump(&mut entry, &mut out, &mut hasher, meter)?;
            // Start writing it out now; the batch's one `syncfs` then has little left to wait for.
            write_back(&out, 0, 0);
            let sha = hex(&hasher.finalize());
            if got != file.size || sha != file.sha256 {
                drop(out);
                let _ = std::fs::remove_file(&part);
                problem.get_or_insert(format!(
                    "{name}: checksum mismatch: got {got} bytes with SHA-256 {sha}, the server has {} bytes with {}",
                    file.size, file.sha256
                ));
                continue;
            }
            verified.push(name);
        }
        Ok(())
    })();
    if let Err(e) = result {
        problem.get_or_insert(format!("the stream of small files broke off: {e}"));
    }
    if let Err(e) = sync_filesystem(dir) {
        return Err(BatchError {
            verified: Vec::new(),
            detail: format!("cannot flush {} to disk: {e}", dir.display()),
        });
    }
    match problem {
        None => Ok(verified),
        Some(detail) => Err(BatchError { verified, detail }),
    }
}

/// Flushes the file system holding `dir`: one call makes a whole batch durable, where an
/// `fsync` per 100 KiB file would cost a disk flush each.
fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir)?;
    // SAFETY: `d` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn part_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.part"))
}

/// SHA-256 (hex) and length of a file, read in 1 MiB steps.
pub fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let file = File::open(path)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut BufReader::with_capacity(BUFFER, file), &mut h)?;
    Ok((hex(&h.finalize()), n))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Already copied and verified by an earlier (interrupted) run.
async fn verified_already(dest: &Path, file: &ServerFile) -> bool {
    match std::fs::metadata(dest) {
        Ok(m) if m.len() == file.size => {
            let dest = dest.to_owned();
            let sum = tokio::task::spawn_blocking(move || sha256_of(&dest)).await;
            matches!(sum, Ok(Ok((h, _))) if h == file.sha256)
        }
        _ => false,
    }
}

/// Counts bytes and files across the streams and turns them into progress events.
struct Meter {
    progress: ProgressSender,
    files_total: usize,
    bytes_total: u64,
    state: Mutex<MeterState>,
}

struct MeterState {
    files_done: usize,
    bytes_done: u64,
    transferred: u64,
    last_told: Option<Instant>,
    last_byte: Instant,
    /// `(when, transferred)` over the last [`RATE_WINDOW`]: the rate shown is the recent one,
    /// so a stall shows as a falling rate, not a frozen one.
    samples: std::collections::VecDeque<(Instant, u64)>,
}

const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Meter {
    fn new(
        files: &[ServerFile],
        files_done: usize,
        bytes_done: u64,
        progress: ProgressSender,
    ) -> Self {
        let now = Instant::now();
        Meter {
            progress,
            files_total: files.len(),
            bytes_total: files.iter().map(|f| f.size).sum(),
            state: Mutex::new(MeterState {
                files_done,
                bytes_done,
                transferred: 0,
                last_told: None,
                last_byte: now,
                samples: std::collections::VecDeque::from([(now, 0)]),
            }),
        }
    }

    fn add(&self, bytes: u64, files: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.bytes_done += bytes;
        st.transferred += bytes;
        st.files_done += files;
        st.last_byte = Instant::now();
        let due = st.last_told.is_none_or(|t| t.elapsed() >= TELL_EVERY);
        if files > 0 || due {
            st.last_told = Some(Instant::now());
            self.tell(&mut st);
        }
    }

    /// How long since the last byte arrived.
    fn idle(&self) -> Duration {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.last_byte.elapsed()
    }

    fn tell_now(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.tell(&mut st);
    }

    fn tell(&self, st: &mut MeterState) {
        let now = Instant::now();
        st.samples.push_back((now, st.transferred));
        while st.samples.len() > 2 && now.duration_since(st.samples[0].0) > RATE_WINDOW {
            st.samples.pop_front();
        }
        let (since, then) = st.samples[0];
        let secs = now.duration_since(since).as_secs_f64().max(0.001);
        // Nothing for two seconds: nothing is arriving now, whatever the window's average says.
        let rate = if st.last_byte.elapsed() > Duration::from_secs(2) {
            0.0
        } else {
            (st.transferred - then) as f64 / secs
        };
        let left = self.bytes_total.saturating_sub(st.bytes_done);
        tell(
            &self.progress,
            Progress::Copy {
                files_done: st.files_done,
                files_total: self.files_total,
                bytes_done: st.bytes_done,
                bytes_total: self.bytes_total,
                rate,
                eta_secs: (rate > 1.0).then(|| (left as f64 / rate) as u64),
            },
        );
    }

    fn transferred(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .transferred
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> ServerFile {
        ServerFile {
            sha256: "0".repeat(64),
            size,
            name: super::super::manifest::ServerName::parse(name).expect("a plain name"),
        }
    }

    #[test]
    fn big_files_stream_alone_and_small_ones_share_bounded_batches() {
        let mut todo = vec![
            file("big.tar.gz", 1 << 30),
            file("mid.tar.gz", OWN_STREAM_FROM),
        ];
        todo.extend((0..BATCH_FILES + 10).map(|i| file(&format!("m{i}.tar.gz"), 100 << 10)));
        let jobs = plan(todo);
        let shape: Vec<(bool, usize)> = jobs
            .iter()
            .map(|j| match j {
                Job::Whole(_) => (true, 1),
                Job::Batch(b) => (false, b.len()),
            })
            .collect();
        assert_eq!(
            shape,
            vec![(true, 1), (true, 1), (false, BATCH_FILES), (false, 10)]
        );
        let bytes = plan((0..9).map(|i| file(&format!("s{i}"), 15 << 19)).collect());
        let sizes: Vec<usize> = bytes
            .iter()
            .map(|j| match j {
                Job::Batch(b) => b.len(),
                Job::Whole(_) => 1,
            })
            .collect();
        // 7.5 MiB each: eight fill 60 MiB, the ninth would pass BATCH_BYTES.
        assert_eq!(sizes, vec![8, 1]);
    }
}
