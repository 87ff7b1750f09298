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
        Err(error) => DirectoryResult {
            file: DIRECTORY_FILE.to_owned(),
            size: 0,
            sha256: String::new(),
            counts: DirectoryCounts::default(),
            status: MailboxStatus::Failed { error },
        },
    }
}

/// `script` is the kind's capture into the server folder, with its arguments.
async fn capture_and_copy(
    remote: &Remote,
    script: (&str, &[&str]),
    folders: &RunFolders,
    seal: Option<&Recipients>,
) -> Result<DirectoryResult, String> {
    let dir = folders.server.as_str();
    let out = remote
        .sh(script.0, script.1)
        .await
        .map_err(|e| error_chain(&e))?;
    if !out.ok {
        return Err(format!("the capture on the server failed: {}", out.stderr));
    }
    let said = String::from_utf8_lossy(&out.stdout);
    let (sha256, size) = said
        .split_whitespace()
        .collect::<Vec<_>>()
        .as_slice()
        .get(..2)
        .and_then(|f| Some((f[0].to_owned(), f[1].parse::<u64>().ok()?)))
        .filter(|(h, _)| h.len() == 64)
        .ok_or_else(|| format!("the capture's checksum line is not understood: {said:?}"))?;
    if size > MOST_BYTES {
        return Err(format!("the capture is {size} bytes, more than 256 MiB"));
    }
    let sent = remote.sh(SEND, &[dir]).await.map_err(|e| error_chain(&e))?;
    if !sent.ok {
        return Err(format!(
            "reading the capture on the server failed: {}",
            sent.stderr
        ));
    }
    let got = hex(&Sha256::digest(&sent.stdout));
    if got != sha256 || sent.stdout.len() as u64 != size {
        return Err(format!(
            "checksum mismatch: got {} bytes with SHA-256 {got}, the server has {size} bytes with {sha256}",
            sent.stdout.len()
        ));
    }
    if let Some(seal) = seal {
        let (folder, seal) = (folders.local.clone(), seal.clone());
        let plain = sent.stdout;
        return tokio::task::spawn_blocking(move || {
            store_encrypted(&folder, &plain, sha256, &seal)
        })
        .await
        .map_err(|e| format!("the read-back stopped: {e}"))?;
    }
    let path = folders.local.join(DIRECTORY_FILE);
    local::write_durably(&path, &sent.stdout).map_err(|e| format!("{}: {e}", path.display()))?;
    local::record_verified(&folders.local, &sha256, size, DIRECTORY_FILE)
        .map_err(|e| format!("{}: {e}", folders.local.display()))?;
    let read = path.clone();
    let counts = tokio::task::spawn_blocking(move || Directory::read(&read).map(|d| d.counts()))
        .await
        .map_err(|e| format!("the read-back stopped: {e}"))??;
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
) -> Result<DirectoryResult, String> {
    let counts = Directory::from_reader(plain)?.counts();
    let stored = encryption::stored_name(DIRECTORY_FILE, true);
    let path = folder.join(&stored);
    let cipher = encryption::encrypt_to_vec(seal, plain).map_err(|e| e.to_string())?;
    local::write_durably(&path, &cipher).map_err(|e| format!("{}: {e}", path.display()))?;
    let stored_sha256 = hex(&Sha256::digest(&cipher));
    let copy = encryption::EncryptedCopy {
        file: DIRECTORY_FILE.to_owned(),
        size: plain.len() as u64,
        sha256,
        stored_size: cipher.len() as u64,
        stored_sha256: stored_sha256.clone(),
        messages: Ok(counts.accounts),
        to: seal.fingerprint().to_owned(),
    };
    encryption::record(folder, &copy)
        .and_then(|()| local::record_verified(folder, &stored_sha256, copy.stored_size, &stored))
        .map_err(|e| format!("{}: {e}", folder.display()))?;
    super::archive::read_back_encrypted(folder, DIRECTORY_FILE)?;
    Ok(DirectoryResult {
        file: stored,
        size: copy.stored_size,
        sha256: stored_sha256,
        counts,
        status: MailboxStatus::Verified,
    })
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
    pub fn read(path: &Path) -> Result<Directory, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Directory::from_reader(file)
    }

    pub fn from_reader(reader: impl Read) -> Result<Directory, String> {
        let bad = |e: std::io::Error| format!("the directory capture cannot be read: {e}");
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(reader));
        let mut archive = tar::Archive::new(gz);
        let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut total = 0u64;
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            total += entry.size();
            if total > MOST_BYTES {
                return Err("the directory capture is bigger than 256 MiB".into());
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
    ) -> Result<Directory, String> {
        let kind = members
            .remove("KIND")
            .map(|k| String::from_utf8_lossy(&k).trim().to_owned())
            .ok_or("the directory capture has no KIND")?;
        match kind.as_str() {
            "dovecot" => Ok(Directory::Dovecot(DovecotDirectory::from_members(members)?)),
            "zimbra" => Ok(Directory::Zimbra(ZimbraDirectory::from_members(members)?)),
            _ => Err(format!("unknown kind of directory capture {kind:?}")),
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
