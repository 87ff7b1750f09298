//! The pieces of a dated folder (see [`super::piece`]): every folder is whole on its own. Once
//! a mailbox's piece of the day is verified, the earlier pieces its manifest names are
//! hard-linked beside it from the newest folder that holds them, each under its content's
//! SHA-256, and listed in the folder's `SHA256SUMS` like any file: deleting every older folder
//! leaves this one complete, and a piece goes from the disk when its last link goes.
//!
//! A restore assembles the mailbox as it was that day from the manifest: each message's bytes
//! from the piece that carries them, under the path (folder, flags) and time the manifest gives.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::encryption::{self, EncryptedCopy};
use super::files::{hex, private_file, ENCRYPTED_SUFFIX, ENCRYPTION_INDEX};
use super::local;
use super::manifest::{ServerFile, ServerName};
use super::piece::{self, Entry, PieceCheck, PieceError, PieceFacts};

/// The facts of the verified copy `file` of `folder` when it is a piece: from the index of
/// encrypted copies (counted as the plaintext arrived), or read from the file's first members.
pub fn facts_of(folder: &Path, file: &str, encrypted: bool) -> Option<PieceFacts> {
    if encrypted {
        return encryption::find(folder, file)?.piece;
    }
    let f = std::fs::File::open(folder.join(file)).ok()?;
    let (header, manifest) = piece::head_of(std::io::BufReader::new(f)).ok()??;
    Some(PieceCheck::new(&header, &manifest).ok()?.facts().clone())
}

/// Why the earlier pieces a manifest names cannot all be put beside it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the earlier piece {sha256} is in no backup folder on this disk (deleted, or another disk): the mailbox is exported whole at the next backup")]
    Missing { sha256: String },
    #[error(
        "the backup disk does not keep hard links ({0}): format it ext4 or XFS (docs/DEPLOY.md)"
    )]
    NoHardLinks(#[source] std::io::Error),
    #[error("cannot record the earlier piece {name}: {source}")]
    Record {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Puts every earlier piece `facts` names into `folder` (a hard link to the newest verified
/// copy under `root`), recorded as verified; returns them as the server's files (their
/// plaintext names, sizes and hashes) for `SHA256SUMS`.
pub fn link_elders(
    root: &Path,
    folder: &Path,
    facts: &PieceFacts,
    encrypted: bool,
) -> Result<Vec<ServerFile>, LinkError> {
    let mut linked = Vec::new();
    for sha in &facts.elders {
        let name = PieceFacts::elder_name(sha);
        let copy = match here(folder, &name, encrypted) {
            Some(copy) => copy,
            None => {
                let (source, copy) =
                    elsewhere(root, folder, sha, encrypted).ok_or_else(|| LinkError::Missing {
                        sha256: sha.clone(),
                    })?;
                put(folder, &name, &source, copy)?
            }
        };
        linked.push(copy);
    }
    Ok(linked)
}

/// The earlier piece `name` already linked into `folder` (by another mailbox's manifest, or a
/// run of this folder cut off), as recorded.
fn here(folder: &Path, name: &str, encrypted: bool) -> Option<ServerFile> {
    let (size, sha256) = if encrypted {
        let c = encryption::find(folder, name)?;
        let on_disk = std::fs::metadata(folder.join(c.stored())).ok()?;
        (on_disk.len() == c.stored_size).then_some((c.size, c.sha256))?
    } else {
        let (sha, size) = verified_record(folder, name)?;
        let on_disk = std::fs::metadata(folder.join(name)).ok()?;
        (on_disk.len() == size).then_some((size, sha))?
    };
    Some(ServerFile {
        name: ServerName::parse(name).ok()?,
        size,
        sha256,
    })
}

/// The newest `.verified` line of `folder` that `chosen` picks by hash and name: `(sha256,
/// size, name)`; only plain names in the folder itself.
fn verified_line(
    folder: &Path,
    chosen: impl Fn(&str, &str) -> bool,
) -> Option<(String, u64, String)> {
    let index = std::fs::read_to_string(folder.join(local::VERIFIED_INDEX)).ok()?;
    index.lines().rev().find_map(|line| {
        let mut it = line.splitn(3, ' ');
        let (h, s, n) = (it.next()?, it.next()?, it.next()?);
        (!n.contains('/') && chosen(h, n)).then_some(())?;
        Some((h.to_owned(), s.parse().ok()?, n.to_owned()))
    })
}

/// The recorded `(sha256, size)` of the file `name` of `folder`.
fn verified_record(folder: &Path, name: &str) -> Option<(String, u64)> {
    verified_line(folder, |_, n| n == name).map(|(h, s, _)| (h, s))
}

/// What an earlier piece is, found in another folder.
enum Found {
    Plain { sha256: String, size: u64 },
    Encrypted(EncryptedCopy),
}

/// The newest verified copy of the piece whose plaintext is `sha` in another bot-made folder
/// of `root`: a mailbox's piece of that day, or an earlier piece linked there.
fn elsewhere(root: &Path, except: &Path, sha: &str, encrypted: bool) -> Option<(PathBuf, Found)> {
    local::verified_folders(root, except)
        .into_iter()
        .find_map(|folder| {
            if encrypted {
                let index = std::fs::read_to_string(folder.join(ENCRYPTION_INDEX)).ok()?;
                let copy = encryption::entries(&index)
                    .into_values()
                    .find(|c| c.sha256 == sha && !c.file.contains('/'))?;
                let path = folder.join(copy.stored());
                let stored = verified_record(&folder, &copy.stored())?;
                (stored == (copy.stored_sha256.clone(), copy.stored_size)
                    && std::fs::metadata(&path).is_ok_and(|m| m.len() == copy.stored_size))
                .then_some((path, Found::Encrypted(copy)))
            } else {
                let (sha256, size, name) =
                    verified_line(&folder, |h, n| h == sha && !n.ends_with(ENCRYPTED_SUFFIX))?;
                let path = folder.join(name);
                std::fs::metadata(&path)
                    .is_ok_and(|m| m.len() == size)
                    .then_some((path, Found::Plain { sha256, size }))
            }
        })
}

/// Links `source` into `folder` as the earlier piece `name` and records it.
fn put(folder: &Path, name: &str, source: &Path, found: Found) -> Result<ServerFile, LinkError> {
    let record = |source: std::io::Error| LinkError::Record {
        name: name.to_owned(),
        source,
    };
    let (stored, plain) = match &found {
        Found::Plain { sha256, size } => (name.to_owned(), (sha256.clone(), *size)),
        Found::Encrypted(c) => (
            format!("{name}{ENCRYPTED_SUFFIX}"),
            (c.sha256.clone(), c.size),
        ),
    };
    let target = folder.join(&stored);
    match std::fs::hard_link(source, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left by a run cut off before it was recorded: the same content or nothing.
            let same = std::fs::metadata(&target).is_ok_and(|m| {
                std::fs::metadata(source).is_ok_and(|s| {
                    use std::os::unix::fs::MetadataExt;
                    m.ino() == s.ino() && m.dev() == s.dev()
                })
            });
            if !same {
                std::fs::remove_file(&target).map_err(record)?;
                std::fs::hard_link(source, &target).map_err(LinkError::NoHardLinks)?;
            }
        }
        Err(e) => return Err(LinkError::NoHardLinks(e)),
    }
    match found {
        Found::Plain { sha256, size } => {
            local::record_verified(folder, &sha256, size, &stored).map_err(record)?
        }
        Found::Encrypted(c) => {
            let copy = EncryptedCopy {
                file: name.to_owned(),
                ..c
            };
            encryption::record(folder, &copy)
                .and_then(|()| {
                    local::record_verified(folder, &copy.stored_sha256, copy.stored_size, &stored)
                })
                .map_err(record)?
        }
    }
    Ok(ServerFile {
        name: ServerName::parse(name).map_err(|e| record(std::io::Error::other(e)))?,
        size: plain.1,
        sha256: plain.0,
    })
}

/// Whether hard links can be made in `dir` (the backup disk): exFAT and FAT have none, and
/// NTFS through FUSE may not.
pub fn hard_links_work(dir: &Path) -> std::io::Result<()> {
    let stamp = format!(
        ".hardlink-check-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let (a, b) = (dir.join(&stamp), dir.join(format!("{stamp}.link")));
    private_file().open(&a)?;
    let linked = std::fs::hard_link(&a, &b);
    let _ = std::fs::remove_file(&b);
    let _ = std::fs::remove_file(&a);
    linked
}

/// Why a mailbox cannot be assembled from its pieces.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Piece(#[from] PieceError),
    #[error("{0} is not a piece")]
    NotAPiece(String),
    #[error("the earlier piece {0} does not hold the bytes it is named after")]
    ElderCorrupt(String),
    #[error("{missing} of the mailbox's messages are in none of its pieces")]
    Missing { missing: usize },
    #[error("cannot open the earlier piece {name}: {detail}")]
    Elder { name: String, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A mailbox assembled whole: a `.tar.gz` of `Maildir/…` as a full export writes it.
#[derive(Debug)]
pub struct Assembled {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub messages: u64,
    /// The SHA-256 of the day's own piece as it was read (checked against its record).
    pub own_sha256: String,
}

/// Assembles the mailbox of the piece `own` (its plaintext) into `scratch/mailbox.tar.gz`:
/// every message of its manifest from the piece that carries it (`elder` opens an earlier
/// piece's plaintext by its SHA-256), each earlier piece hashed whole against its name. Memory
/// holds the manifest; each message passes through `scratch` one at a time.
pub fn assemble(
    own: impl Read,
    mut elder: impl FnMut(&str) -> Result<Box<dyn Read + Send>, AssembleError>,
    scratch: &Path,
) -> Result<Assembled, AssembleError> {
    let path = scratch.join("mailbox.tar.gz");
    let out = private_file().write(true).create_new(true).open(&path)?;
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::with_capacity(1 << 20, out),
        flate2::Compression::fast(),
    );
    let mut builder = tar::Builder::new(gz);
    let mut wanted: HashMap<String, Vec<Entry>> = HashMap::new();
    let mut facts = None;
    let spool = scratch.join("message");
    let mut own = Hashing {
        inner: own,
        hasher: Sha256::new(),
    };
    // The day's own piece: its manifest, folders, small files and new messages.
    {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&mut own));
        let mut header = None;
        for (i, entry) in archive.entries()?.enumerate() {
            let mut entry = entry?;
            let member = entry.path()?.into_owned();
            match (i, header.take()) {
                (0, _) if member.as_os_str() == piece::HEADER => {
                    header = Some(piece::read_text(&mut entry)?);
                }
                (0, _) => return Err(AssembleError::NotAPiece("the archive".into())),
                (1, Some(h)) if member.as_os_str() == piece::MANIFEST => {
                    let text = piece::read_text(&mut entry)?;
                    let check = PieceCheck::new(&h, &text)?;
                    facts = Some(check.facts().clone());
                    for e in piece::parse_manifest(&text)? {
                        wanted.entry(e.sha256.clone()).or_default().push(e);
                    }
                }
                (1, _) => return Err(PieceError::Out(piece::MANIFEST).into()),
                _ if piece::is_message_member(&member) => {
                    take_message(&mut entry, &spool, &mut wanted, &mut builder)?;
                }
                _ => {
                    // A folder or a small file beside the mail, under the mailbox's root.
                    if safe_member(&member) {
                        let mut h = entry.header().clone();
                        builder.append_data(
                            &mut h,
                            Path::new("Maildir").join(&member),
                            &mut entry,
                        )?;
                    }
                }
            }
        }
        // To its end: the gzip trailer checked, every byte hashed.
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink())?;
    }
    std::io::copy(&mut own, &mut std::io::sink())?;
    let own_sha256 = hex(&own.hasher.finalize());
    let facts = facts.ok_or(PieceError::Out(piece::MANIFEST))?;
    // The earlier pieces, each read whole and hashed against its name.
    for sha in &facts.elders {
        if wanted.is_empty() {
            break;
        }
        let mut hashing = Hashing {
            inner: elder(sha)?,
            hasher: Sha256::new(),
        };
        {
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&mut hashing));
            for entry in archive.entries()? {
                let mut entry = entry?;
                let member = entry.path()?.into_owned();
                if entry.header().entry_type().is_file() && piece::is_message_member(&member) {
                    take_message(&mut entry, &spool, &mut wanted, &mut builder)?;
                } else {
                    std::io::copy(&mut entry, &mut std::io::sink())?;
                }
            }
            let mut rest = archive.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink())?;
        }
        std::io::copy(&mut hashing, &mut std::io::sink())?;
        if hex(&hashing.hasher.finalize()) != *sha {
            return Err(AssembleError::ElderCorrupt(sha.clone()));
        }
    }
    let _ = std::fs::remove_file(&spool);
    if !wanted.is_empty() {
        return Err(AssembleError::Missing {
            missing: wanted.values().map(Vec::len).sum(),
        });
    }
    let gz = builder.into_inner()?;
    let mut file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    file.sync_all()?;
    drop(file);
    let (sha256, size) = super::files::sha256_of(&path)?;
    Ok(Assembled {
        path,
        sha256,
        size,
        messages: facts.messages,
        own_sha256,
    })
}

/// A member path written back under the mailbox's root: relative, no `..`.
fn safe_member(member: &Path) -> bool {
    member
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        && member.as_os_str() != ""
}

/// A message member: spooled to `spool` while hashed; when the manifest wants those bytes,
/// written under each of its paths with its time.
fn take_message<R: Read, W: Write>(
    entry: &mut tar::Entry<'_, R>,
    spool: &Path,
    wanted: &mut HashMap<String, Vec<Entry>>,
    builder: &mut tar::Builder<W>,
) -> Result<(), AssembleError> {
    let mut file = private_file()
        .write(true)
        .read(true)
        .create(true)
        .truncate(true)
        .open(spool)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = entry.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        size += n as u64;
    }
    let sha = hex(&hasher.finalize());
    let Some(entries) = wanted.remove(&sha) else {
        return Ok(());
    };
    for e in entries {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(e.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut h, Path::new("Maildir").join(&e.path), &mut file)?;
    }
    Ok(())
}

/// A reader that hashes what passes.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::increment::piece_fn;

    /// Runs the server's `piece_of` here on the Maildir `tree`, then commits the piece as the
    /// bot does once it is verified; returns the piece's path and its SHA-256.
    fn export(dir: &Path, tree: &Path, day: u32, name: &str) -> (PathBuf, String) {
        let (state, stage) = (dir.join("state"), dir.join("stage"));
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir_all(&stage).unwrap();
        let out = dir.join(name);
        let script = concat!(
            piece_fn!(),
            r#"set -eu
st=$(state_dir "$4" "$7"); piece_of "$1" "$2" "$3" "$st" "$5" "$6" "$7" disk:plain"#
        );
        let run = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args([&out, &stage, &tree.to_path_buf(), &state])
            .args([day.to_string(), "28".into(), "ani@djki.go.id".into()])
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        let (sha, _) = crate::engine::files::sha256_of(&out).unwrap();
        let run = std::process::Command::new("sh")
            .arg("-c")
            .arg(crate::engine::increment::COMMIT)
            .arg("sh")
            .arg(&state)
            .arg(dir)
            .args(["ani@djki.go.id", name, &sha])
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        (out, sha)
    }

    fn message(tree: &Path, path: &str, body: &str) {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    /// Every message of an assembled mailbox: path and bytes.
    fn contents(archive: &Path) -> Vec<(String, String)> {
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(archive).unwrap());
        let mut out: Vec<(String, String)> = tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| piece::is_message_member(&e.path().unwrap()))
            .map(|mut e| {
                let p = e.path().unwrap().display().to_string();
                (p, piece::read_text(&mut e).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_day_of_changes_assembles_into_the_mailbox_as_it_was_that_day() {
        let dir = std::env::temp_dir().join(format!("mbb-pieces-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tree = dir.join("Maildir");
        for f in [
            "cur",
            "new",
            "tmp",
            ".Arsip/cur",
            ".Arsip/new",
            ".Arsip/tmp",
            ".Kosong/cur",
        ] {
            std::fs::create_dir_all(tree.join(f)).unwrap();
        }
        message(&tree, "cur/1.a:2,S", "Subject: a\n\none\n");
        message(&tree, "new/2.b", "Subject: b\n\ntwo\n");
        message(&tree, ".Arsip/cur/3.c:2,", "Subject: c\n\nthree\n");
        message(&tree, "dovecot-keywords", "0 Penting\n");
        let (day1, sha1) = export(&dir, &tree, 100, "day1.tar.gz");
        let counted = crate::engine::archive::read_back(&day1).unwrap();
        assert_eq!(counted, 3);
        // Day 2: one re-flagged, one moved, one deleted, one new.
        std::fs::rename(tree.join("new/2.b"), tree.join("cur/2.b:2,RS")).unwrap();
        std::fs::rename(tree.join(".Arsip/cur/3.c:2,"), tree.join("cur/3.c:2,")).unwrap();
        std::fs::remove_file(tree.join("cur/1.a:2,S")).unwrap();
        message(&tree, ".Arsip/new/4.d", "Subject: d\n\nfour\n");
        let (day2, _) = export(&dir, &tree, 101, "day2.tar.gz");
        let file = std::fs::File::open(&day2).unwrap();
        let counted = crate::engine::archive::count_entries(std::io::BufReader::new(file)).unwrap();
        let facts = counted.piece.expect("a piece");
        assert_eq!(
            (counted.messages, facts.export),
            (3, piece::Export::Changes)
        );
        // Only the new message's bytes moved; the rest is named in day 1's piece.
        assert_eq!((facts.new_messages, facts.new_bytes), (1, 17));
        assert_eq!(facts.elders.iter().collect::<Vec<_>>(), vec![&sha1]);
        // Assembled with day 1's piece: exactly the mailbox of day 2, flags and folders as they were.
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let elder = |sha: &str| -> Result<Box<dyn Read + Send>, AssembleError> {
            assert_eq!(sha, sha1);
            Ok(Box::new(std::fs::File::open(&day1).unwrap()))
        };
        let whole = assemble(std::fs::File::open(&day2).unwrap(), elder, &scratch).unwrap();
        assert_eq!(whole.messages, 3);
        assert_eq!(
            contents(&whole.path),
            vec![
                (
                    "Maildir/.Arsip/new/4.d".into(),
                    "Subject: d\n\nfour\n".into()
                ),
                ("Maildir/cur/2.b:2,RS".into(), "Subject: b\n\ntwo\n".into()),
                ("Maildir/cur/3.c:2,".into(), "Subject: c\n\nthree\n".into()),
            ]
        );
        assert_eq!(crate::engine::archive::read_back(&whole.path).unwrap(), 3);
        // An earlier piece that is not what its name says is refused.
        std::fs::remove_file(&whole.path).unwrap();
        let wrong = |_: &str| -> Result<Box<dyn Read + Send>, AssembleError> {
            Ok(Box::new(std::fs::File::open(&day2).unwrap()))
        };
        let refused = assemble(std::fs::File::open(&day2).unwrap(), wrong, &scratch);
        assert!(refused.is_err(), "{refused:?}");
        // Unchanged: the same piece again, byte for byte (a second run moves nothing new).
        let (day3, sha3) = export(&dir, &tree, 101, "day3.tar.gz");
        // A second later: nothing of the clock goes into the piece.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (_, sha4) = export(&dir, &tree, 101, "day4.tar.gz");
        assert_eq!(sha3, sha4);
        let f = std::fs::File::open(&day3).unwrap();
        let facts = crate::engine::archive::count_entries(std::io::BufReader::new(f))
            .unwrap()
            .piece
            .unwrap();
        assert_eq!(
            (facts.export, facts.new_messages),
            (piece::Export::Unchanged, 0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
