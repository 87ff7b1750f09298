//! Encryption at rest: what lands on the admin computer's disk is an age file
//! (<https://age-encryption.org>) to the recipients of `BACKUP_ENCRYPT_TO`, so a lost external
//! disk leaks nothing. Only public keys live on the admin computer; the identity that decrypts
//! is kept elsewhere and given to a restore (`--identity`, `BACKUP_AGE_IDENTITY`).
//!
//! A backup is proven complete without the identity: the plaintext is hashed and its messages
//! counted as it streams in, before it is encrypted, and the ciphertext is hashed as it is
//! written (the read-back checks the file on disk against that hash).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use sha2::Digest;

use super::files::{make_private, private_file, ENCRYPTED_SUFFIX, ENCRYPTION_INDEX};

/// Why an archive's messages could not be counted as it arrived: the reader's own words, which
/// the encryption index keeps (so only its text survives a restart).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[serde(transparent)]
#[error("{0}")]
pub struct CountFailed(pub String);

impl From<std::io::Error> for CountFailed {
    fn from(e: std::io::Error) -> Self {
        CountFailed(e.to_string())
    }
}

/// What `ENCRYPTION_INDEX` keeps of an encrypted copy: the plaintext's facts beside the ciphertext's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EncryptedCopy {
    /// The server's name of the file and its plaintext, as the server's manifest has them.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// The file on disk (`file` + `.age`) and its ciphertext, hashed as it was written.
    pub stored_size: u64,
    pub stored_sha256: String,
    /// The messages counted in the plaintext as it arrived, or why they could not be.
    pub messages: Result<u64, CountFailed>,
    /// What a piece proved of itself as its plaintext passed: its elders are linked beside it
    /// without the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece: Option<super::piece::PieceFacts>,
    /// The recipients it was encrypted to ([`Recipients::fingerprint`]): a copy to other keys
    /// is not this run's copy.
    #[serde(default)]
    pub to: String,
}

impl EncryptedCopy {
    pub fn stored(&self) -> String {
        stored_name(&self.file, true)
    }
}

/// Appends `copy` to the folder's index (0600).
pub fn record(folder: &Path, copy: &EncryptedCopy) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(copy).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = private_file()
        .append(true)
        .open(folder.join(ENCRYPTION_INDEX))?;
    make_private(&f)?;
    f.write_all(&line)
}

/// Every entry of `index` (the text of a folder's `ENCRYPTION_INDEX`) by the server's file name, the
/// newest of each.
pub fn entries(index: &str) -> std::collections::HashMap<String, EncryptedCopy> {
    index
        .lines()
        .filter_map(|l| serde_json::from_str::<EncryptedCopy>(l).ok())
        .map(|c| (c.file.clone(), c))
        .collect()
}

/// The newest entry of `index` (the text of a folder's `ENCRYPTION_INDEX`) for the server's file `file`.
pub fn find_in(index: &str, file: &str) -> Option<EncryptedCopy> {
    entries(index).remove(file)
}

/// The newest entry of the folder's index for the server's file `file`.
pub fn find(folder: &Path, file: &str) -> Option<EncryptedCopy> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let mut index = std::fs::File::open(folder.join(ENCRYPTION_INDEX)).ok()?;
    let meta = index.metadata().ok()?;
    let mut cache = READ_INDEX.lock().unwrap_or_else(|p| p.into_inner());
    let same = matches!(&*cache, Some(c) if c.folder == folder && c.inode == (meta.dev(), meta.ino()) && c.read <= meta.len());
    if !same {
        *cache = Some(IndexRead {
            folder: folder.to_owned(),
            inode: (meta.dev(), meta.ino()),
            read: 0,
            copies: std::collections::HashMap::new(),
        });
    }
    let read = cache.as_mut()?;
    if read.read < meta.len() {
        index.seek(SeekFrom::Start(read.read)).ok()?;
        let mut text = String::new();
        index
            .take(meta.len() - read.read)
            .read_to_string(&mut text)
            .ok()?;
        // Whole lines only: one being appended now is read next time.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        read.copies.extend(entries(&text[..whole]));
        read.read += whole as u64;
    }
    read.copies.get(file).cloned()
}

/// The index of the folder looked up last, as read so far: a run looks up each of hundreds of
/// files, and the index only grows, so each lookup reads only the lines added since.
static READ_INDEX: std::sync::Mutex<Option<IndexRead>> = std::sync::Mutex::new(None);

struct IndexRead {
    folder: std::path::PathBuf,
    /// The index file's device and inode: a disk swapped at the same mount point is a new index.
    inode: (u64, u64),
    read: u64,
    copies: std::collections::HashMap<String, EncryptedCopy>,
}

/// The name a file of the server has on the admin computer's disk.
pub fn stored_name(name: &str, encrypted: bool) -> String {
    match encrypted {
        true => format!("{name}{ENCRYPTED_SUFFIX}"),
        false => name.to_owned(),
    }
}

type Recipient = Box<dyn age::Recipient + Send + Sync>;

/// One entry of `BACKUP_ENCRYPT_TO`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientCheck {
    /// The entry as configured, shortened for display (`age1qyqs…x7p3`).
    pub shown: String,
    /// `age X25519`, `SSH ed25519`, `SSH RSA`.
    pub kind: &'static str,
    /// Why it cannot be used; `None` when it can.
    pub problem: Option<String>,
}

/// The recipients every new file is encrypted to (cheap to clone: shared).
#[derive(Clone)]
pub struct Recipients(Arc<RecipientSet>);

struct RecipientSet {
    list: Vec<Recipient>,
    fingerprint: String,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({}, {})", self.len(), self.fingerprint())
    }
}

/// Why an entry of `BACKUP_ENCRYPT_TO` cannot be encrypted to, in the age library's words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnusableRecipient {
    #[error("not an SSH public key age can encrypt to ({0})")]
    Ssh(String),
    #[error("not an age public key (age1…) nor an SSH public key: {0}")]
    Age(String),
}

/// Why `BACKUP_ENCRYPT_TO` refuses: the entry, shortened, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("BACKUP_ENCRYPT_TO {shown}: {why}")]
pub struct RecipientsRefused {
    pub shown: String,
    #[source]
    pub why: UnusableRecipient,
}

/// Why an encrypted copy cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("the identity given is not one this backup was encrypted to")]
    NotForThisIdentity,
    #[error("not an age file (damaged?)")]
    NotAgeFile(#[source] age::DecryptError),
    #[error("cannot decrypt: {0}")]
    Other(#[source] age::DecryptError),
}

impl From<age::DecryptError> for DecryptError {
    fn from(e: age::DecryptError) -> Self {
        match e {
            age::DecryptError::NoMatchingKeys => DecryptError::NotForThisIdentity,
            age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
                DecryptError::NotAgeFile(e)
            }
            e => DecryptError::Other(e),
        }
    }
}

fn parse_one(entry: &str) -> (&'static str, Result<Recipient, UnusableRecipient>) {
    if entry.starts_with("ssh-") {
        let kind = if entry.starts_with("ssh-ed25519 ") {
            "SSH ed25519"
        } else if entry.starts_with("ssh-rsa ") {
            "SSH RSA"
        } else {
            "SSH"
        };
        let parsed = entry
            .parse::<age::ssh::Recipient>()
            .map(|r| Box::new(r) as Recipient)
            .map_err(|e| UnusableRecipient::Ssh(format!("{e:?}")));
        return (kind, parsed);
    }
    let parsed = entry
        .parse::<age::x25519::Recipient>()
        .map(|r| Box::new(r) as Recipient)
        .map_err(|e| UnusableRecipient::Age(e.to_string()));
    ("age X25519", parsed)
}

fn shown(entry: &str) -> String {
    let chars: Vec<char> = entry.chars().collect();
    if chars.len() <= 24 {
        return entry.to_owned();
    }
    let head: String = chars[..14].iter().collect();
    let tail: String = chars[chars.len() - 6..].iter().collect();
    format!("{head}…{tail}")
}

/// Each entry of `BACKUP_ENCRYPT_TO` and whether it can be encrypted to (`check`, `/check`).
pub fn check_recipients(entries: &[String]) -> Vec<RecipientCheck> {
    entries
        .iter()
        .map(|e| {
            let (kind, parsed) = parse_one(e);
            RecipientCheck {
                shown: shown(e),
                kind,
                problem: parsed.err().map(|e| e.to_string()),
            }
        })
        .collect()
}

impl Recipients {
    /// The recipients of `entries`; `None` when there are none (encryption off). One entry that
    /// cannot be used refuses them all: a backup is never written to fewer keys than set.
    pub fn parse(entries: &[String]) -> Result<Option<Recipients>, RecipientsRefused> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut list = Vec::new();
        for e in entries {
            match parse_one(e) {
                (_, Ok(r)) => list.push(r),
                (_, Err(why)) => {
                    return Err(RecipientsRefused {
                        shown: shown(e),
                        why,
                    })
                }
            }
        }
        // The set, whatever its order or the SSH keys' comments.
        let mut keys: Vec<String> = entries
            .iter()
            .map(|e| e.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect();
        keys.sort();
        keys.dedup();
        let digest = sha2::Sha256::digest(keys.join("\n").as_bytes());
        let fingerprint = super::files::hex(&digest[..8]);
        Ok(Some(Recipients(Arc::new(RecipientSet {
            list,
            fingerprint,
        }))))
    }

    pub fn len(&self) -> usize {
        self.0.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.list.is_empty()
    }

    /// A short name of the set of recipients (the same keys give the same name).
    pub fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }

    /// Starts an age file on `out` (its header written): what is written to the result is
    /// encrypted; `finish` ends the file.
    pub fn encrypt<W: Write>(&self, out: W) -> std::io::Result<age::stream::StreamWriter<W>> {
        let encryptor = age::Encryptor::with_recipients(
            self.0
                .list
                .iter()
                .map(|r| r.as_ref() as &dyn age::Recipient),
        )
        .map_err(std::io::Error::other)?;
        encryptor.wrap_output(out)
    }
}

/// `plain` as an age file in memory (a directory capture: at most 256 MiB).
pub fn encrypt_to_vec(seal: &Recipients, plain: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut w = seal.encrypt(Vec::with_capacity(plain.len() + 1024))?;
    w.write_all(plain)?;
    w.finish()
}

type Identity = Box<dyn age::Identity + Send + Sync>;

/// The identities of a file that decrypt backups: an age identity file (`AGE-SECRET-KEY-1…`
/// lines, as `keygen` writes) or an unencrypted OpenSSH private key.
#[derive(Clone)]
pub struct Identities(Arc<Vec<Identity>>);

/// Why an identity file cannot be used. Never quotes the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the identity file {0} cannot be read: {1}")]
    Unreadable(String, String),
    #[error(
        "{0} holds no age identity (AGE-SECRET-KEY-1…) and no unencrypted OpenSSH private key"
    )]
    NotAnIdentity(String),
    #[error("{0} is a passphrase-protected SSH key: give an age identity or an unencrypted copy of the key")]
    Protected(String),
}

impl Identities {
    pub fn load(path: &Path) -> Result<Identities, IdentityError> {
        let name = path.display().to_string();
        let text = std::fs::read(path)
            .map_err(|e| IdentityError::Unreadable(name.clone(), e.to_string()))?;
        if let Ok(file) = age::IdentityFile::from_buffer(&text[..]) {
            if let Ok(ids) = file.into_identities() {
                if !ids.is_empty() {
                    return Ok(Identities(Arc::new(ids)));
                }
            }
        }
        match age::ssh::Identity::from_buffer(&text[..], Some(name.clone())) {
            Ok(age::ssh::Identity::Unencrypted(key)) => Ok(Identities(Arc::new(vec![Box::new(
                age::ssh::Identity::Unencrypted(key),
            )]))),
            Ok(age::ssh::Identity::Encrypted(_)) => Err(IdentityError::Protected(name)),
            _ => Err(IdentityError::NotAnIdentity(name)),
        }
    }

    /// The plaintext of the age file `input`; an error when the file is not an age file or none
    /// of these identities opens it.
    pub fn decrypt<R: Read>(&self, input: R) -> Result<age::stream::StreamReader<R>, DecryptError> {
        let decryptor = age::Decryptor::new(input)?;
        Ok(decryptor.decrypt(self.0.iter().map(|i| i.as_ref() as &dyn age::Identity))?)
    }
}

/// Whether `input` starts like an age file (its header parses). Needs no identity.
pub fn looks_encrypted(input: impl Read) -> bool {
    age::Decryptor::new(input).is_ok()
}

/// A new identity: the text of its file (with the recipient as a comment) and its recipient.
pub fn generate() -> (String, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = format!(
        "# created: {created}\n# public key: {recipient}\n# mailbox-backup-bot: this key opens the encrypted backups. Keep it off the admin computer.\n{}\n",
        identity.to_string().expose_secret()
    );
    (text, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_file(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
        let (text, recipient) = generate();
        let path = dir.join(name);
        std::fs::write(&path, text).expect("identity");
        (path, recipient)
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mbb-enc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    #[test]
    fn a_file_encrypted_to_two_keys_opens_with_either_and_not_with_a_third() {
        let dir = scratch("two");
        let (kasubdit, r1) = identity_file(&dir, "kasubdit.key");
        let (spare, r2) = identity_file(&dir, "spare.key");
        let (stranger, _) = identity_file(&dir, "stranger.key");
        let seal = Recipients::parse(&[r1, r2]).expect("valid").expect("on");
        assert_eq!(seal.len(), 2);
        let plain = b"Subject: rapat\r\n\r\nkata sandi wifi ada di meja".repeat(1000);
        let sealed = encrypt_to_vec(&seal, &plain).expect("encrypt");
        assert!(looks_encrypted(&sealed[..]));
        assert!(!sealed.windows(10).any(|w| w == b"kata sandi"));
        for key in [&kasubdit, &spare] {
            let mut back = Vec::new();
            Identities::load(key)
                .expect("load")
                .decrypt(&sealed[..])
                .expect("opens")
                .read_to_end(&mut back)
                .expect("read");
            assert_eq!(back, plain);
        }
        let wrong = Identities::load(&stranger).expect("load");
        let err = wrong
            .decrypt(&sealed[..])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("not one this backup was encrypted to"),
            "{err}"
        );
        // Not an age file at all, and a file that is no identity.
        assert!(!looks_encrypted(&plain[..]));
        std::fs::write(dir.join("notes.txt"), "just notes\n").expect("notes");
        assert!(matches!(
            Identities::load(&dir.join("notes.txt")),
            Err(IdentityError::NotAnIdentity(_))
        ));
        assert!(matches!(
            Identities::load(&dir.join("absent")),
            Err(IdentityError::Unreadable(..))
        ));
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn recipients_are_checked_one_by_one_and_one_bad_one_refuses_them_all() {
        let (_, good) = generate();
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9AIEqOKWoo2npNA9uuGWf8aRTtpxe6ljqGTyGFD6Hn kasubdit@djki";
        let entries = vec![good.clone(), ssh.to_owned(), "age1notakey".to_owned()];
        let checks = check_recipients(&entries);
        assert_eq!(checks[0].kind, "age X25519");
        assert_eq!(checks[0].problem, None);
        assert_eq!(checks[1].kind, "SSH ed25519");
        assert_eq!(checks[1].problem, None, "{:?}", checks[1]);
        assert!(checks[2].problem.is_some());
        assert!(checks[1].shown.len() < ssh.len(), "shortened for the chat");
        let err = Recipients::parse(&entries).expect_err("one bad entry");
        let err = err.to_string();
        assert!(err.contains("BACKUP_ENCRYPT_TO age1notakey"), "{err}");
        assert!(Recipients::parse(&[]).expect("off").is_none());
        // The same keys in another order, an SSH key with another comment: the same set.
        let print = |e: &[String]| {
            Recipients::parse(e)
                .expect("ok")
                .expect("on")
                .fingerprint()
                .to_owned()
        };
        let (_, other) = generate();
        let renamed = ssh.replace("kasubdit@djki", "kasubdit@laptop");
        assert_eq!(
            print(&[good.clone(), ssh.to_owned()]),
            print(&[renamed, good.clone()])
        );
        assert_ne!(
            print(std::slice::from_ref(&good)),
            print(&[good.clone(), other])
        );
        assert!(Recipients::parse(&entries[..2])
            .expect("both good")
            .is_some());
    }

    #[test]
    fn an_ssh_key_pair_encrypts_and_opens_and_a_protected_key_is_named() {
        let dir = scratch("ssh");
        for (name, pass) in [("open", ""), ("locked", "rahasia")] {
            let made = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", pass, "-C", "kasubdit", "-f"])
                .arg(dir.join(name))
                .status()
                .expect("ssh-keygen");
            assert!(made.success());
        }
        let public = std::fs::read_to_string(dir.join("open.pub")).expect("pub");
        let seal = Recipients::parse(&[public.trim().to_owned()])
            .expect("ssh recipient")
            .expect("on");
        let sealed = encrypt_to_vec(&seal, b"isi surat").expect("encrypt");
        let mut back = Vec::new();
        Identities::load(&dir.join("open"))
            .expect("unencrypted ssh key")
            .decrypt(&sealed[..])
            .expect("opens")
            .read_to_end(&mut back)
            .expect("read");
        assert_eq!(back, b"isi surat");
        assert!(matches!(
            Identities::load(&dir.join("locked")),
            Err(IdentityError::Protected(_))
        ));
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn the_index_keeps_the_newest_entry_per_file() {
        let dir = scratch("index");
        let entry = |sha: &str| EncryptedCopy {
            file: "ani@djki.go.id.tar.gz".into(),
            size: 10,
            sha256: sha.into(),
            stored_size: 300,
            stored_sha256: "c".repeat(64),
            messages: Ok(3),
            piece: None,
            to: "0123456789abcdef".into(),
        };
        record(&dir, &entry(&"a".repeat(64))).expect("first");
        record(&dir, &entry(&"b".repeat(64))).expect("again");
        let found = find(&dir, "ani@djki.go.id.tar.gz").expect("found");
        assert_eq!(found.sha256, "b".repeat(64));
        assert_eq!(found.stored(), "ani@djki.go.id.tar.gz.age");
        assert!(find(&dir, "budi@djki.go.id.tar.gz").is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(ENCRYPTION_INDEX))
            .expect("index")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
