//! A piece: what an incremental export of one mailbox sends down. A `.tar.gz` whose first
//! member, `mbb-piece`, says how it was made, whose second, `mbb-manifest`, lists every message
//! the mailbox held that day — `SHA256 TAB SIZE TAB PIECE TAB MTIME TAB PATH`, PIECE being `-`
//! for this piece or the SHA-256 of the earlier piece that carries the bytes, MTIME the file's
//! time (Maildir's received date, kept for the day even when the member is an earlier piece's)
//! — and whose other members are the mailbox's folders, the small files beside the mail
//! (keywords, subscriptions, Dovecot's UID list) and the messages new since the last verified
//! backup, under their Maildir paths with their own times.
//!
//! Reading a piece proves it: the header and the manifest agree, every message the manifest
//! says this piece carries is in it with those bytes, and nothing the manifest says is unsafe
//! to write back (a path out of the mailbox). What it needs of earlier pieces is named here and
//! linked beside it by `super::pieces`.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::hex;

/// The first member of a piece.
pub const HEADER: &str = "mbb-piece";
/// The second member: every message of the mailbox that day.
pub const MANIFEST: &str = "mbb-manifest";
const HEADER_HEAD: &str = "mailbox-backup-bot piece 1";
/// How an earlier piece linked into a folder is named: `SHA256.piece.tar.gz` (plaintext hash).
pub const ELDER_SUFFIX: &str = ".piece.tar.gz";

/// How the server made a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Export {
    /// Every message of the mailbox is in the piece.
    Full,
    /// Only what changed since the last verified backup.
    Changes,
    /// Nothing changed since the last verified backup.
    Unchanged,
}

/// What a piece says of itself and of the mailbox, once read and proven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PieceFacts {
    pub export: Export,
    /// Why a full export: `first`, `unfinished`, `reset`, `rolling`, `due`, `always`, `doubtful`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Messages of the mailbox that day (the manifest's lines).
    pub messages: u64,
    /// Bytes of those messages.
    pub mail_bytes: u64,
    /// Messages whose bytes this piece carries, and their bytes.
    pub new_messages: u64,
    pub new_bytes: u64,
    /// The earlier pieces the manifest names, by SHA-256.
    pub elders: BTreeSet<String>,
}

/// What a report keeps of a piece: its facts without the list of earlier pieces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PieceSummary {
    pub export: Export,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub mail_bytes: u64,
    pub new_messages: u64,
    pub new_bytes: u64,
    /// Earlier pieces linked beside it.
    pub elders: usize,
}

impl PieceFacts {
    pub fn summary(&self) -> PieceSummary {
        PieceSummary {
            export: self.export,
            reason: self.reason.clone(),
            mail_bytes: self.mail_bytes,
            new_messages: self.new_messages,
            new_bytes: self.new_bytes,
            elders: self.elders.len(),
        }
    }

    /// The file name of an earlier piece `sha256` linked into a folder (plaintext form).
    pub fn elder_name(sha256: &str) -> String {
        format!("{sha256}{ELDER_SUFFIX}")
    }
}

/// Why a piece is not what it says.
#[derive(Debug, thiserror::Error)]
pub enum PieceError {
    #[error("the piece's header is not one the bot writes: {0:?}")]
    Header(String),
    #[error("the piece's manifest line {line} does not parse: {text:?}")]
    ManifestLine { line: usize, text: String },
    #[error("the piece's manifest names the path {0:?}, which is not a message of a Maildir")]
    UnsafePath(String),
    #[error("the piece's header says {header} messages, its manifest lists {manifest}")]
    Count { header: u64, manifest: u64 },
    #[error("the piece lacks {missing} of the messages its manifest says it carries")]
    Missing { missing: usize },
    #[error("the piece has no {0} where the bot writes it")]
    Out(&'static str),
}

impl From<PieceError> for std::io::Error {
    fn from(e: PieceError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// One line of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub sha256: String,
    pub size: u64,
    /// `None`: this piece; otherwise the SHA-256 of the earlier piece with the bytes.
    pub piece: Option<String>,
    /// The file's modification time in seconds (the message's received date in a Maildir).
    pub mtime: u64,
    /// The message's path in the Maildir (folder, `cur` or `new`, name with its flags).
    pub path: String,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A path the bot may write back into a mailbox: relative, no `.`/`..` component, inside a
/// `cur` or `new` folder.
pub fn is_message_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'))
        && matches!(parts[parts.len() - 2], "cur" | "new")
}

/// Parses a manifest line.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let mut f = line.splitn(5, '\t');
    let (sha256, size, piece, mtime, path) =
        (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let piece = match piece {
        "-" => None,
        p if is_sha256(p) => Some(p.to_owned()),
        _ => return None,
    };
    (is_sha256(sha256)).then_some(())?;
    Some(Entry {
        sha256: sha256.to_owned(),
        size: size.parse().ok()?,
        piece,
        mtime: mtime.parse().ok()?,
        path: path.to_owned(),
    })
}

/// Reads every line of a manifest, refusing the whole at the first bad line.
pub fn parse_manifest(text: &str) -> Result<Vec<Entry>, PieceError> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let e = parse_entry(l).ok_or_else(|| PieceError::ManifestLine {
                line: i + 1,
                text: l.chars().take(200).collect(),
            })?;
            if !is_message_path(&e.path) {
                return Err(PieceError::UnsafePath(e.path));
            }
            Ok(e)
        })
        .collect()
}

/// The header's `key=value` lines.
fn parse_header(text: &str) -> Result<(Export, String, u64), PieceError> {
    let bad = || PieceError::Header(text.chars().take(200).collect());
    let mut lines = text.lines();
    if lines.next() != Some(HEADER_HEAD) {
        return Err(bad());
    }
    let values: HashMap<&str, &str> = lines.filter_map(|l| l.split_once('=')).collect();
    let export = match values.get("export").copied() {
        Some("full") => Export::Full,
        Some("changes") => Export::Changes,
        Some("unchanged") => Export::Unchanged,
        _ => return Err(bad()),
    };
    let reason: String = values
        .get("reason")
        .unwrap_or(&"")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect();
    let messages = values
        .get("messages")
        .and_then(|m| m.trim().parse().ok())
        .ok_or_else(bad)?;
    Ok((export, reason, messages))
}

/// A piece being read member by member: the header and the manifest first, then every message
/// it carries, hashed.
pub struct PieceCheck {
    facts: PieceFacts,
    /// SHA-256 of the messages this piece must carry, not yet seen.
    owed: std::collections::HashSet<String>,
}

impl PieceCheck {
    /// From the text of the first two members.
    pub fn new(header: &str, manifest: &str) -> Result<PieceCheck, PieceError> {
        let (export, reason, said) = parse_header(header)?;
        let entries = parse_manifest(manifest)?;
        let messages = entries.len() as u64;
        if said != messages {
            return Err(PieceError::Count {
                header: said,
                manifest: messages,
            });
        }
        let mut facts = PieceFacts {
            export,
            reason,
            messages,
            mail_bytes: entries.iter().map(|e| e.size).sum(),
            new_messages: 0,
            new_bytes: 0,
            elders: BTreeSet::new(),
        };
        let mut owed = std::collections::HashSet::new();
        for e in entries {
            match e.piece {
                Some(p) => {
                    facts.elders.insert(p);
                }
                None => {
                    facts.new_messages += 1;
                    facts.new_bytes += e.size;
                    owed.insert(e.sha256);
                }
            }
        }
        Ok(PieceCheck { facts, owed })
    }

    /// The facts the header and manifest give (before the messages are proven).
    pub fn facts(&self) -> &PieceFacts {
        &self.facts
    }

    /// A message member read whole, by the SHA-256 of its bytes.
    pub fn carried(&mut self, sha256: &str) {
        self.owed.remove(sha256);
    }

    /// The piece's facts, when it carried every message it owes.
    pub fn finish(self) -> Result<PieceFacts, PieceError> {
        if !self.owed.is_empty() {
            return Err(PieceError::Missing {
                missing: self.owed.len(),
            });
        }
        Ok(self.facts)
    }
}

/// Whether a member path is a message (a file of a `cur` or `new` folder).
pub fn is_message_member(path: &std::path::Path) -> bool {
    path.parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "cur" || n == "new")
}

/// Reads a member whole into text (the header and the manifest are small: a line a message).
pub fn read_text(member: &mut impl std::io::Read) -> std::io::Result<String> {
    let mut text = String::new();
    member.read_to_string(&mut text)?;
    Ok(text)
}

/// Reads a member whole and returns the SHA-256 of its bytes.
pub fn hash_member(member: &mut impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = member.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The header and manifest of the piece in `input` (a `.tar.gz`), reading no further; `None`
/// when it is not a piece (a whole archive of an earlier kind of run).
pub fn head_of(input: impl std::io::Read) -> std::io::Result<Option<(String, String)>> {
    let gz = flate2::read::GzDecoder::new(input);
    let mut archive = tar::Archive::new(gz);
    let mut entries = archive.entries()?;
    let mut next_text = |want: &str| -> std::io::Result<Option<String>> {
        match entries.next() {
            Some(e) => {
                let mut e = e?;
                if e.path()?.as_os_str() != want {
                    return Ok(None);
                }
                read_text(&mut e).map(Some)
            }
            None => Ok(None),
        }
    };
    let Some(header) = next_text(HEADER)? else {
        return Ok(None);
    };
    let manifest = next_text(MANIFEST)?.ok_or(PieceError::Out(MANIFEST))?;
    Ok(Some((header, manifest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn a_manifest_names_only_messages_inside_the_mailbox() {
        for good in ["cur/1.a:2,S", ".Arsip/new/2.b", ".A.B/cur/x"] {
            assert!(is_message_path(good), "{good}");
        }
        for bad in [
            "../cur/x", "/cur/x", "cur/../x", "x", "tmp/x", "cur/", "./cur/x", "a//cur/x",
        ] {
            assert!(!is_message_path(bad), "{bad}");
        }
        let text = format!("{}\t5\t-\t0\t../../etc/cur/x\n", sha('a'));
        assert!(matches!(
            parse_manifest(&text),
            Err(PieceError::UnsafePath(_))
        ));
    }

    #[test]
    fn a_piece_owes_the_messages_its_manifest_says_it_carries() {
        let header = "mailbox-backup-bot piece 1\nexport=changes\nreason=\nmessages=3\nnew=1\n";
        let manifest = format!(
            "{}\t10\t{}\t7\tcur/1.a:2,S\n{}\t20\t-\t7\tnew/2.b\n{}\t30\t{}\t7\t.Arsip/cur/3.c:2,\n",
            sha('a'),
            sha('e'),
            sha('b'),
            sha('c'),
            sha('f')
        );
        let check = PieceCheck::new(header, &manifest).unwrap();
        assert!(matches!(
            check.finish(),
            Err(PieceError::Missing { missing: 1 })
        ));
        let mut check = PieceCheck::new(header, &manifest).unwrap();
        check.carried(&sha('b'));
        let facts = check.finish().unwrap();
        assert_eq!(facts.export, Export::Changes);
        assert_eq!((facts.messages, facts.mail_bytes), (3, 60));
        assert_eq!((facts.new_messages, facts.new_bytes), (1, 20));
        assert_eq!(
            facts.elders.iter().cloned().collect::<Vec<_>>(),
            vec![sha('e'), sha('f')]
        );
        // A header that counts otherwise than its manifest is refused.
        let lying = header.replace("messages=3", "messages=4");
        assert!(matches!(
            PieceCheck::new(&lying, &manifest),
            Err(PieceError::Count { .. })
        ));
        assert!(PieceCheck::new("something else\n", &manifest).is_err());
    }
}
