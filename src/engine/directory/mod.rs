//! The directory capture: what the mail server knows of its accounts beside their mail, kept in
//! every dated folder as `directory.tar.gz`, so that a rebuilt server gets its accounts back.
//!
//! The capture is made on the server in the run's folder, under `.directory/` (hidden: never taken
//! for a mailbox's archive), streamed down, checked against the server's SHA-256, recorded as
//! verified, read back and counted. Its files hold password hashes: 0600 on both sides, and no
//! byte of them is ever logged, shown in the chat, passed on a command line or stored in the
//! database — only counts are.
//!
//! Inside the archive, `directory/` holds:
//! - `KIND`: the kind of server (`dovecot`);
//! - Dovecot: `sources` (one line per `passdb`/`userdb` block: role, driver, the file or
//!   arguments, and the copy's name when it is a `passwd-file` kept here, fields separated by
//!   U+001F), `passwd-N` (the copies), `SIEVE` (the server's `sieve` setting, empty when Sieve is
//!   not configured), `sieve` (user, script, active flag, file) and `sieve-*.json` (each script as
//!   `doveadm -f json sieve get` prints it).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod dovecot;
mod zimbra;

pub use dovecot::{AccountEntry, DovecotDirectory, SieveScript, Source, DOVECOT_CAPTURE};
use sha2::{Digest, Sha256};
pub(crate) use zimbra::zbatch_fn;
pub use zimbra::{command_outputs, entries, ZimbraDirectory, ZimbraEntry, ZIMBRA_CAPTURE};

use super::encryption::{self, Recipients};
use super::files::{hex, DIRECTORY_FILE};
use super::remote::{error_chain, Remote};
use super::{local, MailboxStatus, RunFolders};

/// Fields of the capture's lists are separated by U+001F (no name or path holds it).
const US: char = '\u{1f}';
/// A capture bigger than this is not read (a server's directory is megabytes at most).
const MOST_BYTES: u64 = 256 << 20;

/// Streams the capture down.
pub const SEND: &str = r#"exec cat -- "$1/.directory/directory.tar.gz""#;

/// What a dated folder's directory capture holds, counted (the report's and the CSV's "akun").
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DirectoryCounts {
    /// Accounts with an entry (Dovecot: a line of a captured `passwd-file`).
    pub accounts: u64,
    /// Accounts whose entry holds a password hash.
    pub passwords: u64,
    /// Mail filters (Dovecot: Sieve scripts).
    pub filters: u64,
    /// Distribution lists (Zimbra).
    #[serde(default)]
    pub lists: u64,
    /// Addresses that are another name of an account (Zimbra's aliases).
    #[serde(default)]
    pub aliases: u64,
    /// The accounts by name (names only: never a hash).
    #[serde(default)]
    pub names: Vec<String>,
    /// What the server keeps of its accounts that the capture could not hold, as plain facts
    /// (`passdb sql /etc/dovecot/dovecot-sql.conf.ext`).
    pub not_captured: Vec<String>,
}

/// The directory capture of a run, as its report keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryResult {
    pub file: String,
    pub size: u64,
    pub sha256: String,
    #[serde(flatten)]
    pub counts: DirectoryCounts,
    #[serde(flatten)]
    pub status: MailboxStatus,
}

/// Step 6's end for the directory: captured on the server, copied down into the dated folder,
/// checked against the server's SHA-256, recorded as verified and read back. A failure is the
/// capture's result, not a lost run: the mail already copied stays verified.
pub(super) async fn capture(
    remote: &Remote,
    script: (&str, &[&str]),
    folders: &RunFolders,
    seal: Option<&Recipients>,
) -> DirectoryResult {
    match capture_and_copy(remote, script, folders, seal).await {
        Ok(result) => result,
        Err(e) => DirectoryResult {
            file: DIRECTORY_FILE.to_owned(),
            size: 0,
            sha256: String::new(),
            counts: DirectoryCounts::default(),
            status: MailboxStatus::Failed {
                error: e.to_string(),
            },
        },
    }
}

/// `script` is the kind's capture into the server folder, with its arguments.
async fn capture_and_copy(
    remote: &Remote,
    script: (&str, &[&str]),
    folders: &RunFolders,
    seal: Option<&Recipients>,
) -> Result<DirectoryResult, CaptureError> {
    let dir = folders.server.as_str();
    let out = remote
        .sh(script.0, script.1)
        .await
        .map_err(CaptureError::Ssh)?;
    if !out.ok {
        return Err(CaptureError::Failed(out.stderr));
    }
    let said = String::from_utf8_lossy(&out.stdout);
    let (sha256, size) = said
        .split_whitespace()
        .collect::<Vec<_>>()
        .as_slice()
        .get(..2)
        .and_then(|f| Some((f[0].to_owned(), f[1].parse::<u64>().ok()?)))
        .filter(|(h, _)| h.len() == 64)
        .ok_or_else(|| CaptureError::BadChecksumLine(said.clone().into_owned()))?;
    if size > MOST_BYTES {
        return Err(CaptureError::TooBig(size));
    }
    let sent = remote.sh(SEND, &[dir]).await.map_err(CaptureError::Ssh)?;
    if !sent.ok {
        return Err(CaptureError::NotSent(sent.stderr));
    }
    let got = hex(&Sha256::digest(&sent.stdout));
    if got != sha256 || sent.stdout.len() as u64 != size {
        return Err(CaptureError::Mismatch {
            got_size: sent.stdout.len() as u64,
            got,
            size,
            sha256,
        });
    }
    if let Some(seal) = seal {
        let (folder, seal) = (folders.local.clone(), seal.clone());
        let plain = sent.stdout;
        return tokio::task::spawn_blocking(move || {
            store_encrypted(&folder, &plain, sha256, &seal)
        })
        .await
        .map_err(CaptureError::Stopped)?;
    }
    let path = folders.local.join(DIRECTORY_FILE);
    local::write_durably(&path, &sent.stdout).map_err(|source| CaptureError::Write {
        path: path.clone(),
        source,
    })?;
    local::record_verified(&folders.local, &sha256, size, DIRECTORY_FILE).map_err(|source| {
        CaptureError::Write {
            path: folders.local.clone(),
            source,
        }
    })?;
    let read = path.clone();
    let counts = tokio::task::spawn_blocking(move || Directory::read(&read).map(|d| d.counts()))
        .await
        .map_err(CaptureError::Stopped)??;
    Ok(DirectoryResult {
        file: DIRECTORY_FILE.to_owned(),
        size,
        sha256,
        counts,
        status: MailboxStatus::Verified,
    })
}

/// The capture encrypted into the dated folder: read (and counted) in its plaintext first, then
/// written as an age file, recorded, and read back against the hash taken as it was written.
fn store_encrypted(
    folder: &Path,
    plain: &[u8],
    sha256: String,
    seal: &Recipients,
) -> Result<DirectoryResult, CaptureError> {
    let counts = Directory::from_reader(plain)?.counts();
    let stored = encryption::stored_name(DIRECTORY_FILE, true);
    let path = folder.join(&stored);
    let cipher = encryption::encrypt_to_vec(seal, plain).map_err(CaptureError::Encrypt)?;
    local::write_durably(&path, &cipher).map_err(|source| CaptureError::Write {
        path: path.clone(),
        source,
    })?;
    let stored_sha256 = hex(&Sha256::digest(&cipher));
    let copy = encryption::EncryptedCopy {
        file: DIRECTORY_FILE.to_owned(),
        size: plain.len() as u64,
        sha256,
        stored_size: cipher.len() as u64,
        stored_sha256: stored_sha256.clone(),
        messages: Ok(counts.accounts),
        piece: None,
        to: seal.fingerprint().to_owned(),
    };
    encryption::record(folder, &copy)
        .and_then(|()| local::record_verified(folder, &stored_sha256, copy.stored_size, &stored))
        .map_err(|source| CaptureError::Write {
            path: folder.to_owned(),
            source,
        })?;
    super::archive::read_back_encrypted(folder, DIRECTORY_FILE)?;
    Ok(DirectoryResult {
        file: stored,
        size: copy.stored_size,
        sha256: stored_sha256,
        counts,
        status: MailboxStatus::Verified,
    })
}

/// Why a directory capture cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureUnreadable {
    #[error("{}: {source}", path.display())]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the directory capture cannot be read: {0}")]
    Archive(#[source] std::io::Error),
    #[error("the directory capture is bigger than 256 MiB")]
    TooBig,
    #[error("the directory capture has no {0}")]
    Missing(String),
    #[error("{0} in the directory capture is not UTF-8")]
    NotUtf8(String),
    #[error("unknown kind of directory capture {0:?}")]
    UnknownKind(String),
    #[error("a bad line in the capture's Sieve list: {0:?}")]
    BadSieveLine(String),
    #[error("{0} is not a Sieve script")]
    NotSieve(String),
    #[error("{what}.out holds {answers} answers for {names} names")]
    ShortAnswers {
        what: String,
        answers: usize,
        names: usize,
    },
}

/// Why step 6's capture of the directory failed (the run's mail stays verified).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}", error_chain(.0))]
    Ssh(#[source] openssh::Error),
    #[error("the capture on the server failed: {0}")]
    Failed(String),
    #[error("the capture's checksum line is not understood: {0:?}")]
    BadChecksumLine(String),
    #[error("the capture is {0} bytes, more than 256 MiB")]
    TooBig(u64),
    #[error("reading the capture on the server failed: {0}")]
    NotSent(String),
    #[error("checksum mismatch: got {got_size} bytes with SHA-256 {got}, the server has {size} bytes with {sha256}")]
    Mismatch {
        got_size: u64,
        got: String,
        size: u64,
        sha256: String,
    },
    #[error("the read-back stopped: {0}")]
    Stopped(#[source] tokio::task::JoinError),
    #[error("{}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Encrypt(#[source] std::io::Error),
    #[error(transparent)]
    Unreadable(#[from] CaptureUnreadable),
    #[error(transparent)]
    ReadBack(#[from] super::archive::ReadBackError),
}

/// A directory capture read back, by the kind of server it came from. Holds password hashes:
/// no `Debug`, nothing printed of it.
pub enum Directory {
    Dovecot(DovecotDirectory),
    Zimbra(ZimbraDirectory),
}

/// A capture matched with the server it goes back onto (see
/// [`crate::engine::kind::MailKind::rebuild_target`]): a capture is rebuilt only on the kind it
/// came from. Dovecot's carries the doveadm configuration (`MAIL_DOVEADM_CONFIG`, or empty).
pub enum RebuildTarget<'a> {
    Dovecot(String, &'a DovecotDirectory),
    Zimbra(&'a ZimbraDirectory),
}

impl Directory {
    /// Reads the capture at `path` to the end (every member, the gzip trailer checked).
    pub fn read(path: &Path) -> Result<Directory, CaptureUnreadable> {
        let file = std::fs::File::open(path).map_err(|source| CaptureUnreadable::Open {
            path: path.to_owned(),
            source,
        })?;
        Directory::from_reader(file)
    }

    pub fn from_reader(reader: impl Read) -> Result<Directory, CaptureUnreadable> {
        let bad = CaptureUnreadable::Archive;
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(reader));
        let mut archive = tar::Archive::new(gz);
        let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut total = 0u64;
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            total += entry.size();
            if total > MOST_BYTES {
                return Err(CaptureUnreadable::TooBig);
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(bad)?;
            if let Some(member) = name.strip_prefix("directory/") {
                if entry.header().entry_type().is_file() && !member.contains('/') {
                    members.insert(member.to_owned(), bytes);
                }
            }
        }
        let mut rest = archive.into_inner();
        let mut buf = [0u8; 8192];
        while rest.read(&mut buf).map_err(bad)? > 0 {}
        Directory::from_members(members)
    }

    pub(super) fn from_members(
        mut members: BTreeMap<String, Vec<u8>>,
    ) -> Result<Directory, CaptureUnreadable> {
        let kind = members
            .remove("KIND")
            .map(|k| String::from_utf8_lossy(&k).trim().to_owned())
            .ok_or_else(|| CaptureUnreadable::Missing("KIND".into()))?;
        match kind.as_str() {
            "dovecot" => Ok(Directory::Dovecot(DovecotDirectory::from_members(members)?)),
            "zimbra" => Ok(Directory::Zimbra(ZimbraDirectory::from_members(members)?)),
            _ => Err(CaptureUnreadable::UnknownKind(kind)),
        }
    }

    /// Every account of the capture, each once, in order.
    pub fn accounts(&self) -> Vec<String> {
        match self {
            Directory::Dovecot(d) => d.accounts(),
            Directory::Zimbra(z) => z.accounts(),
        }
    }

    pub fn counts(&self) -> DirectoryCounts {
        match self {
            Directory::Dovecot(d) => d.counts(),
            Directory::Zimbra(z) => z.counts(),
        }
    }
}
