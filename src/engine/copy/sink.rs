//! Where copied bytes land: a `.NAME.part` file, hashed as it is written, made durable, and
//! renamed only by the caller once size and SHA-256 match the server's. Blocking code, run on
//! threads of its own.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::meter::Meter;
use crate::engine::archive::{count_entries, Chunk, Counted, Relay};
use crate::engine::encryption::{CountFailed, Recipients};
use crate::engine::files::{hex, make_private, private_file};
use crate::engine::manifest::ServerFile;
use crate::engine::piece::PieceFacts;

pub(super) const BUFFER: usize = 1 << 20;
/// Buffers of a big file between the reading and the writing thread (memory: this × BUFFER).
pub(super) const IN_FLIGHT: usize = 8;
/// Bytes a big file may have unwritten before the writer waits for the disk.
pub(super) const WRITEBACK_WINDOW: u64 = 4 << 20;
/// How far behind the newest data the writer waits for the disk (the disk's slack).
pub(super) const WRITEBACK_LAG: u64 = 4 * WRITEBACK_WINDOW;
pub(super) const SMALL_BUFFER: usize = 128 << 10;

/// The hash of what a partial copy already holds, and how much that is. Hashing a big partial
/// copy takes a while: the meter hears of each MiB, so it is not taken for a stall.
pub(super) fn resume_point(
    part: &Path,
    size: u64,
    meter: &Meter,
) -> std::io::Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    match File::open(part) {
        Ok(mut existing) if existing.metadata()?.len() <= size => {
            let mut buf = vec![0u8; BUFFER];
            let mut have = 0u64;
            loop {
                let n = fill(&mut existing, &mut buf, &|_| meter.alive())?;
                if n == 0 {
                    return Ok((hasher, have));
                }
                hasher.update(&buf[..n]);
                have += n as u64;
            }
        }
        _ => Ok((Sha256::new(), 0)),
    }
}

/// What an encrypted copy wrote: the ciphertext's length and SHA-256, and the messages counted
/// in the plaintext before it was encrypted.
#[derive(Debug)]
pub(super) struct Encrypted {
    pub size: u64,
    pub sha256: String,
    pub messages: Result<u64, CountFailed>,
    /// What a piece proved of itself as it passed (see [`crate::engine::piece`]).
    pub piece: Option<PieceFacts>,
}

/// What a stream left: the plaintext's length and SHA-256 (the server's file), and the
/// ciphertext's when it was encrypted on the way.
pub(super) struct Received {
    pub size: u64,
    pub sha256: String,
    pub encrypted: Option<Encrypted>,
}

/// Appends the stream to `part`, hashing as it goes (encrypted to `seal` when given: then the
/// part is new, `have` is 0).
pub(super) fn receive_one(
    mut input: File,
    part: &Path,
    have: u64,
    mut hasher: Sha256,
    meter: &Meter,
    seal: Option<&Recipients>,
) -> std::io::Result<Received> {
    let mut out = private_file()
        .append(have > 0)
        .truncate(have == 0)
        .open(part)?;
    make_private(&out)?;
    let (got, encrypted) = pump_overlapped(&mut input, &mut out, &mut hasher, meter, seal)?;
    Ok(Received {
        size: have + got,
        sha256: hex(&hasher.finalize()),
        encrypted,
    })
}

/// Writes to a file as the bytes come, keeping the disk writing (`sync_file_range`) so the
/// final `fsync` finds little to do; hashes what it writes when it is ciphertext.
struct DiskWriter<'a> {
    file: &'a mut File,
    written: u64,
    flushed: u64,
    hash: Option<Sha256>,
}

impl Write for DiskWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        self.written += n as u64;
        if self.written - self.flushed >= WRITEBACK_WINDOW {
            write_back(self.file, self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Where the writer thread puts the plaintext: the file itself, or an age stream into it.
enum Landing<'a> {
    Plain(DiskWriter<'a>),
    Encrypted(age::stream::StreamWriter<DiskWriter<'a>>),
}

impl<'a> Landing<'a> {
    fn new(file: &'a mut File, seal: Option<&Recipients>) -> std::io::Result<Landing<'a>> {
        let start = file.metadata()?.len();
        let disk = DiskWriter {
            file,
            written: start,
            flushed: start,
            hash: seal.map(|_| Sha256::new()),
        };
        Ok(match seal {
            Some(r) => Landing::Encrypted(r.encrypt(disk)?),
            None => Landing::Plain(disk),
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Landing::Plain(w) => w.write_all(buf),
            Landing::Encrypted(w) => w.write_all(buf),
        }
    }

    /// Ends the age stream; the ciphertext's length and SHA-256 when it was one.
    fn finish(self) -> std::io::Result<Option<(u64, String)>> {
        match self {
            Landing::Plain(_) => Ok(None),
            Landing::Encrypted(w) => {
                let disk = w.finish()?;
                Ok(Some((
                    disk.written,
                    hex(&disk.hash.unwrap_or_default().finalize()),
                )))
            }
        }
    }
}

/// An encrypted landing's facts with the messages its plaintext held.
fn encrypted(
    finished: Option<(u64, String)>,
    counted: Option<Result<Counted, CountFailed>>,
) -> Option<Encrypted> {
    let (size, sha256) = finished?;
    let counted = counted.unwrap_or_else(|| Err(CountFailed("not counted".into())));
    let (messages, piece) = match counted {
        Ok(c) => (Ok(c.messages), c.piece),
        Err(e) => (Err(e), None),
    };
    Some(Encrypted {
        size,
        sha256,
        messages,
        piece,
    })
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
    seal: Option<&Recipients>,
) -> std::io::Result<(u64, Option<Encrypted>)> {
    let (read_tx, read_rx) = std::sync::mpsc::sync_channel::<Chunk>(IN_FLIGHT);
    let (hashed_tx, hashed_rx) = std::sync::mpsc::sync_channel::<Chunk>(IN_FLIGHT);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    (0..IN_FLIGHT).for_each(|_| drop(empty_tx.send(vec![0u8; BUFFER])));
    let landing = Landing::new(out, seal)?;
    // An encrypted copy's messages are counted before it is encrypted (nothing can read them
    // after): the hashed buffers pass through a counting thread on their way to the writer.
    let (to_count, counting_rx) = seal
        .map(|_| std::sync::mpsc::sync_channel::<Chunk>(IN_FLIGHT))
        .unzip();
    std::thread::scope(|scope| {
        let (to_writer, counting) = match counting_rx {
            Some(rx) => {
                let relay = Relay::new(rx, Some(hashed_tx));
                let counting = scope.spawn(move || relay.count());
                (to_count.expect("made with its receiver"), Some(counting))
            }
            None => (hashed_tx, None),
        };
        scope.spawn(move || {
            for (buf, n) in read_rx {
                hasher.update(&buf[..n]);
                if to_writer.send((buf, n)).is_err() {
                    break;
                }
            }
        });
        let writer = scope.spawn(move || -> std::io::Result<(u64, Option<(u64, String)>)> {
            let mut landing = landing;
            let mut landed = 0u64;
            for (buf, n) in hashed_rx {
                landing.write_all(&buf[..n])?;
                landed += n as u64;
                // The reader may have stopped; then the buffer is simply dropped.
                let _ = empty_tx.send(buf);
            }
            Ok((landed, landing.finish()?))
        });
        let mut total = 0u64;
        let read = loop {
            // No buffer back means the writer stopped: its error is the one to report.
            let Ok(mut buf) = empty_rx.recv() else {
                break Ok(());
            };
            let n = match fill(input, &mut buf, &|k| meter.add(k, 0)) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            total += n as u64;
            if read_tx.send((buf, n)).is_err() {
                break Ok(());
            }
        };
        drop(read_tx);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writer thread panicked")));
        let counted = counting.map(|c| c.join()).transpose();
        read?;
        let (landed, finished) = wrote?;
        // Every byte read reached the file (a counting thread that died on the way would have
        // dropped what it held): the file is whole, or the copy is an error.
        match counted {
            Ok(messages) if landed == total => Ok((total, encrypted(finished, messages))),
            _ => Err(std::io::Error::other(format!(
                "{landed} of {total} bytes reached the file (the counting thread stopped)"
            ))),
        }
    })
}

/// Reads until `buf` is full or the input ends (a pipe hands out 64 KiB at a time), telling
/// `got` of each read: on a slow link a full buffer may take long, and that is not a stall.
fn fill(input: &mut impl Read, buf: &mut [u8], got: &dyn Fn(u64)) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                got(k as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies `input` to `out`, hashing it; with `seal`, encrypting it and counting its messages as
/// they pass (the count's reads drive the copy: one thread, no byte copied twice).
fn pump(
    input: &mut impl Read,
    out: &mut File,
    hasher: &mut Sha256,
    meter: &Meter,
    seal: Option<&Recipients>,
) -> std::io::Result<(u64, Option<Encrypted>)> {
    let mut passing = Passing {
        input,
        hasher,
        landing: Landing::new(out, seal)?,
        meter,
        total: 0,
        failed: None,
    };
    let messages = seal.map(|_| {
        let counted = count_entries(std::io::BufReader::with_capacity(
            SMALL_BUFFER,
            &mut passing,
        ));
        counted.map_err(CountFailed::from)
    });
    // What the count left (all of it, without a seal) goes on to the file.
    let mut buf = vec![0u8; SMALL_BUFFER];
    while passing.read(&mut buf)? > 0 {}
    if let Some(e) = passing.failed.take() {
        return Err(e);
    }
    let total = passing.total;
    let finished = passing.landing.finish()?;
    Ok((total, encrypted(finished, messages)))
}

/// A stream whose every byte read is hashed and written on (encrypted) as it is read.
struct Passing<'a, R: Read> {
    input: &'a mut R,
    hasher: &'a mut Sha256,
    landing: Landing<'a>,
    meter: &'a Meter,
    total: u64,
    /// A write that failed: the error to report, whatever the reader made of it.
    failed: Option<std::io::Error>,
}

impl<R: Read> Read for Passing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = loop {
            match self.input.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Ok(0);
        }
        self.meter.add(n as u64, 0);
        self.hasher.update(&buf[..n]);
        if let Err(e) = self.landing.write_all(&buf[..n]) {
            let said = std::io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            return Err(said);
        }
        self.total += n as u64;
        Ok(n)
    }
}

/// Starts writing `len` bytes at `offset` to disk (0: to the end) and waits for a window
/// `WRITEBACK_LAG` behind it. Only a hint: durability still comes from the `fsync`/`syncfs` before the rename.
pub(super) fn write_back(out: &File, offset: u64, len: u64) {
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

/// A file of a batch that arrived whole: its name, and its ciphertext's facts when encrypted.
pub(super) type Landed = (String, Option<Encrypted>);

pub(super) struct BatchError {
    pub verified: Vec<Landed>,
    pub detail: String,
}

/// Unpacks a `tar` stream of expected files into `.name.part` files (`.name.age.part`,
/// encrypted, with `seal`), each checked against the manifest. Returns the files whose parts are
/// verified and durable (one `syncfs` for the batch), ready to be renamed.
pub(super) fn receive_many(
    input: File,
    dir: &Path,
    files: &[ServerFile],
    meter: &Meter,
    seal: Option<&Recipients>,
) -> Result<Vec<Landed>, BatchError> {
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
            let stored = crate::engine::encryption::stored_name(&name, seal.is_some());
            let part = part_path(dir, &stored);
            let mut out = private_file().truncate(true).open(&part)?;
            let mut hasher = Sha256::new();
            let (got, encrypted) = pump(&mut entry, &mut out, &mut hasher, meter, seal)?;
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
            verified.push((name, encrypted));
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

pub(super) fn part_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.part"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::manifest::ServerName;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mbb-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    fn meter(files: &[ServerFile]) -> Meter {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        Meter::new(files, 0, 0, tx)
    }

    /// `data` as a readable file (what a pipe from ssh looks like to the sink).
    fn input(dir: &Path, name: &str, data: &[u8]) -> File {
        let path = dir.join(name);
        std::fs::write(&path, data).expect("input");
        File::open(path).expect("open")
    }

    #[test]
    fn a_stream_lands_hashed_and_a_partial_copy_goes_on_from_its_bytes() {
        let dir = scratch("one");
        let data: Vec<u8> = (0..(3u32 << 20))
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        let part = dir.join(".big.part");
        let m = meter(&[]);
        // The first stream breaks off after 1 MiB + 5 bytes.
        let cut = (1 << 20) + 5;
        let got = receive_one(
            input(&dir, "a", &data[..cut]),
            &part,
            0,
            Sha256::new(),
            &m,
            None,
        )
        .expect("first part")
        .size;
        assert_eq!(got, cut as u64);
        // The resumed stream sends only the rest; the hash covers the whole file.
        let (hasher, have) = resume_point(&part, data.len() as u64, &m).expect("resume point");
        assert_eq!(have, cut as u64);
        let rest = receive_one(
            input(&dir, "b", &data[cut..]),
            &part,
            have,
            hasher,
            &m,
            None,
        )
        .expect("rest");
        let (got, digest) = (rest.size, rest.sha256);
        assert_eq!(
            (got, digest.as_str()),
            (data.len() as u64, sha(&data).as_str())
        );
        assert_eq!(std::fs::read(&part).expect("part"), data);
        assert_eq!(
            m.transferred(),
            data.len() as u64,
            "every byte counted once"
        );
        // A partial copy longer than the server's file is not trusted.
        assert_eq!(resume_point(&part, 10, &m).expect("too long").1, 0);
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; write the raw name as a hostile server could.
            let raw = name.as_bytes();
            h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn expected(name: &str, data: &[u8]) -> ServerFile {
        ServerFile {
            sha256: sha(data),
            size: data.len() as u64,
            name: ServerName::parse(name).expect("name"),
        }
    }

    #[test]
    fn a_batch_keeps_only_the_files_that_match_the_manifest() {
        let dir = scratch("many");
        let files = [
            expected("a.tar.gz", b"alpha"),
            expected("b.tar.gz", b"bravo"),
            expected("c.tar.gz", b"charlie"),
        ];
        // b arrives damaged; c arrives whole.
        let stream = tar_of(&[
            ("a.tar.gz", b"alpha"),
            ("b.tar.gz", b"brav0"),
            ("c.tar.gz", b"charlie"),
        ]);
        let err = receive_many(
            input(&dir, "in", &stream),
            &dir,
            &files,
            &meter(&files),
            None,
        )
        .expect_err("b is refused");
        let names: Vec<&str> = err.verified.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["a.tar.gz", "c.tar.gz"]);
        assert!(
            err.detail.contains("b.tar.gz: checksum mismatch"),
            "{}",
            err.detail
        );
        assert!(
            !part_path(&dir, "b.tar.gz").exists(),
            "a damaged copy is not kept"
        );
        assert_eq!(
            std::fs::read(part_path(&dir, "c.tar.gz")).expect("c"),
            b"charlie"
        );

        // An entry nobody asked for (here one that climbs out) is never written.
        let evil = tar_of(&[("../evil.tar.gz", b"x"), ("a.tar.gz", b"alpha")]);
        let err = receive_many(
            input(&dir, "in2", &evil),
            &dir,
            &files,
            &meter(&files),
            None,
        )
        .expect_err("refused");
        assert!(err.detail.contains("unexpected entry"), "{}", err.detail);
        assert!(err.verified.is_empty());
        assert!(!dir.parent().expect("parent").join("evil.tar.gz").exists());
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    /// A Maildir of `n` messages as a `.tar.gz`, each message holding `marker`.
    fn maildir_tgz(n: usize, marker: &str) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..n {
            // Text that does not compress away (an attachment's base64), of varying length.
            let noise: String = (0..(i * 997 % 20_000))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b'A' + (seed % 26) as u8)
                })
                .collect();
            let body = format!("Subject: {i}\r\n\r\n{marker} {noise}\r\n");
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, format!("ani/cur/{i}.eml:2,S"), body.as_bytes())
                .expect("append");
        }
        b.into_inner().expect("tar").finish().expect("gz")
    }

    fn seal_and_key(dir: &Path) -> (Recipients, crate::engine::encryption::Identities) {
        let (text, recipient) = crate::engine::encryption::generate();
        std::fs::write(dir.join("key"), text).expect("key");
        (
            Recipients::parse(&[recipient]).expect("ok").expect("on"),
            crate::engine::encryption::Identities::load(&dir.join("key")).expect("load"),
        )
    }

    fn opened(key: &crate::engine::encryption::Identities, sealed: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        key.decrypt(sealed)
            .expect("opens")
            .read_to_end(&mut back)
            .expect("read");
        back
    }

    #[test]
    fn an_encrypted_stream_is_hashed_and_counted_in_plaintext_and_lands_as_ciphertext() {
        let dir = scratch("sealed-one");
        let (seal, key) = seal_and_key(&dir);
        let data = maildir_tgz(400, "RAHASIA-NEGARA");
        assert!(data.len() > 2 * BUFFER, "spans several buffers");
        let part = dir.join(".big.age.part");
        let got = receive_one(
            input(&dir, "a", &data),
            &part,
            0,
            Sha256::new(),
            &meter(&[]),
            Some(&seal),
        )
        .expect("copied");
        assert_eq!(
            (got.size, got.sha256.as_str()),
            (data.len() as u64, sha(&data).as_str())
        );
        let on_disk = std::fs::read(&part).expect("part");
        let e = got.encrypted.expect("encrypted");
        assert_eq!(e.messages, Ok(400));
        assert_eq!(
            (e.size, e.sha256.as_str()),
            (on_disk.len() as u64, sha(&on_disk).as_str())
        );
        assert!(!on_disk.windows(14).any(|w| w == b"RAHASIA-NEGARA"));
        assert_eq!(opened(&key, &on_disk), data);

        // Bytes that are no archive still arrive whole; only their count fails.
        let noise: Vec<u8> = (0..100_000u32).map(|i| (i * 31) as u8).collect();
        let got = receive_one(
            input(&dir, "b", &noise),
            &part,
            0,
            Sha256::new(),
            &meter(&[]),
            Some(&seal),
        )
        .expect("copied");
        assert_eq!(got.sha256, sha(&noise));
        assert!(got.encrypted.expect("encrypted").messages.is_err());
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn a_batch_encrypts_each_file_and_counts_its_messages() {
        let dir = scratch("sealed-many");
        let (seal, key) = seal_and_key(&dir);
        let a = maildir_tgz(3, "PESAN-A");
        let b = maildir_tgz(5, "PESAN-B");
        let files = [expected("a.tar.gz", &a), expected("b.tar.gz", &b)];
        let stream = tar_of(&[("a.tar.gz", &a), ("b.tar.gz", &b)]);
        let landed = receive_many(
            input(&dir, "in", &stream),
            &dir,
            &files,
            &meter(&files),
            Some(&seal),
        )
        .unwrap_or_else(|e| panic!("{}", e.detail));
        let counts: Vec<(String, Result<u64, CountFailed>)> = landed
            .into_iter()
            .map(|(n, e)| (n, e.expect("encrypted").messages))
            .collect();
        assert_eq!(
            counts,
            vec![("a.tar.gz".into(), Ok(3)), ("b.tar.gz".into(), Ok(5))]
        );
        assert!(!part_path(&dir, "a.tar.gz").exists(), "no plaintext part");
        let sealed = std::fs::read(part_path(&dir, "b.tar.gz.age")).expect("encrypted part");
        assert!(!sealed.windows(7).any(|w| w == b"PESAN-B"));
        assert_eq!(opened(&key, &sealed), b);
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
