//! The end of step 6: every archive is read back end to end on the local disk (decompressed,
//! listed, its gzip checksum checked) and its messages counted.

use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};

use super::encryption::CountFailed;
use super::piece::{self, PieceCheck, PieceError, PieceFacts};

/// Reads the `.tar.gz`/`.tgz` at `path` to the end; returns the number of messages in it: files
/// in a Maildir's `cur/` or `new/`, or Zimbra's `.eml` files.
pub fn read_back(path: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    count_messages(std::io::BufReader::with_capacity(1 << 20, file))
}

/// Reads a `.tar.gz` stream to its end; returns the number of messages in it (see
/// [`read_back`]).
pub fn count_messages(input: impl BufRead) -> std::io::Result<u64> {
    count_entries(input).map(|c| c.messages)
}

/// What a read-back found: the messages, and for a piece (see [`super::piece`]) what it
/// proved of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    pub messages: u64,
    pub piece: Option<PieceFacts>,
}

/// Reads a `.tar.gz` stream to its end. A whole archive's messages are its files in a Maildir's
/// `cur/` or `new/`, or Zimbra's `.eml` files; a piece's are its manifest's lines, and every
/// message it carries is hashed against the manifest.
pub fn count_entries(input: impl BufRead) -> std::io::Result<Counted> {
    let gz = flate2::bufread::GzDecoder::new(input);
    let mut archive = tar::Archive::new(gz);
    let mut messages = 0;
    let mut header: Option<String> = None;
    let mut check: Option<PieceCheck> = None;
    for (i, entry) in archive.entries()?.enumerate() {
        let mut entry = entry?;
        // tar stores a second name of a hard-linked message as a link entry: still a message
        // of that folder (Dovecot copies messages as hard links by default).
        let kind = entry.header().entry_type();
        let is_file = kind.is_file() || kind.is_hard_link();
        let path = entry.path()?.into_owned();
        if i == 0 && path.as_os_str() == piece::HEADER {
            header = Some(piece::read_text(&mut entry)?);
            continue;
        }
        if let Some(h) = header.take() {
            if path.as_os_str() != piece::MANIFEST {
                return Err(PieceError::Out(piece::MANIFEST).into());
            }
            check = Some(PieceCheck::new(&h, &piece::read_text(&mut entry)?)?);
            continue;
        }
        if let Some(check) = check.as_mut() {
            if kind.is_file() && piece::is_message_member(&path) {
                check.carried(&piece::hash_member(&mut entry)?);
            }
        } else {
            let is_eml = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("eml"));
            if is_file && (piece::is_message_member(&path) || is_eml) {
                messages += 1;
            }
        }
        // Read every byte, so a damaged member is found, not skipped.
        std::io::copy(&mut entry, &mut std::io::sink())?;
    }
    if header.is_some() {
        return Err(PieceError::Out(piece::MANIFEST).into());
    }
    // Past the tar end marker: read to the gzip trailer so its CRC and length are checked.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 8192];
    while rest.read(&mut buf)? > 0 {}
    match check {
        Some(check) => {
            let facts = check.finish()?;
            Ok(Counted {
                messages: facts.messages,
                piece: Some(facts),
            })
        }
        None => Ok(Counted {
            messages,
            piece: None,
        }),
    }
}

/// Why a copy on the disk did not read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackError {
    #[error("{file}: no record of its encrypted copy")]
    NoRecord { file: String },
    #[error("the copy cannot be read back: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("the copy on disk changed: {size} bytes with SHA-256 {sha256}, {written_size} bytes with {written_sha256} were written")]
    Changed {
        size: u64,
        sha256: String,
        written_size: u64,
        written_sha256: String,
    },
    #[error(transparent)]
    Open(std::io::Error),
    #[error("the copy on disk is not an age file")]
    NotAge,
    #[error("the archive cannot be read as it arrived: {0}")]
    NotCounted(#[source] CountFailed),
    #[error("the copy was not read back")]
    NotReadBack,
    #[error("read-back stopped: {0}")]
    Stopped(#[source] tokio::task::JoinError),
}

/// The read-back of an encrypted copy, which needs no identity: the file on disk is read whole
/// against the SHA-256 taken as it was written and must start as an age file; its messages are
/// those counted in the plaintext as it arrived (the age format's authentication covers the
/// rest when it is decrypted).
pub fn read_back_encrypted(folder: &Path, file: &str) -> Result<u64, ReadBackError> {
    let copy = super::encryption::find(folder, file).ok_or_else(|| ReadBackError::NoRecord {
        file: file.to_owned(),
    })?;
    let path = folder.join(copy.stored());
    let (sha, size) = super::files::sha256_of(&path).map_err(ReadBackError::Unreadable)?;
    if sha != copy.stored_sha256 || size != copy.stored_size {
        return Err(ReadBackError::Changed {
            size,
            sha256: sha,
            written_size: copy.stored_size,
            written_sha256: copy.stored_sha256,
        });
    }
    let opened = std::fs::File::open(&path).map_err(ReadBackError::Open)?;
    if !super::encryption::looks_encrypted(std::io::BufReader::new(opened)) {
        return Err(ReadBackError::NotAge);
    }
    copy.messages.map_err(ReadBackError::NotCounted)
}

/// The read-back of a copy in the form it was stored in.
pub fn read_back_stored(folder: &Path, file: &str, encrypted: bool) -> Result<u64, ReadBackError> {
    if encrypted {
        return read_back_encrypted(folder, file);
    }
    read_back(&folder.join(file)).map_err(ReadBackError::Unreadable)
}

/// A buffer of a stream and how much of it is filled.
pub type Chunk = (Vec<u8>, usize);

/// The chunks of a copy on their way to the disk, read as one stream as they pass: an encrypted
/// copy's messages are counted here, before it is encrypted, without copying a byte. Each chunk
/// goes on (to `next`, in order) once it is read, and every chunk goes on whatever the count
/// makes of it; without `next`, read chunks are dropped.
pub struct Relay {
    rx: Receiver<Chunk>,
    next: Option<SyncSender<Chunk>>,
    current: Option<Chunk>,
    at: usize,
}

impl Relay {
    pub fn new(rx: Receiver<Chunk>, next: Option<SyncSender<Chunk>>) -> Relay {
        Relay {
            rx,
            next,
            current: None,
            at: 0,
        }
    }

    /// Counts the messages of what passes, then passes on the rest.
    pub fn count(mut self) -> Result<Counted, CountFailed> {
        let counted = count_entries(&mut self).map_err(CountFailed::from);
        self.pass_on_the_rest();
        counted
    }

    fn pass_on(&mut self, chunk: Chunk) -> std::io::Result<()> {
        match &self.next {
            Some(next) => next
                .send(chunk)
                .map_err(|_| std::io::Error::other("the writer stopped")),
            None => Ok(()),
        }
    }

    fn pass_on_the_rest(&mut self) {
        if let Some(chunk) = self.current.take() {
            if self.pass_on(chunk).is_err() {
                return;
            }
        }
        while let Ok(chunk) = self.rx.recv() {
            if self.pass_on(chunk).is_err() {
                return;
            }
        }
    }
}

impl BufRead for Relay {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        loop {
            if matches!(&self.current, Some((_, n)) if self.at < *n) {
                break;
            }
            if let Some(done) = self.current.take() {
                self.pass_on(done)?;
            }
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = Some(chunk);
                    self.at = 0;
                }
                Err(_) => return Ok(&[]),
            }
        }
        let (buf, n) = self.current.as_ref().expect("a chunk with bytes left");
        Ok(&buf[self.at..*n])
    }

    fn consume(&mut self, amount: usize) {
        self.at += amount;
    }
}

impl Read for Relay {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = out.len().min(available.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}
