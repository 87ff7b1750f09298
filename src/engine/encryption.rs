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

/// The index of the encrypted copies in a dated folder: a JSON line per file, appended as each
/// gets its real name.
pub const INDEX: &str = ".encrypted";

/// What `INDEX` keeps of an encrypted copy: the plaintext's facts beside the ciphertext's.
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
    pub messages: Result<u64, String>,
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
    let mut f = super::local::private_file()
        .append(true)
        .open(folder.join(INDEX))?;
    super::local::make_private(&f)?;
    f.write_all(&line)
}

/// The newest entry of `index` (the text of a folder's `INDEX`) for the server's file `file`.
pub fn find_in(index: &str, file: &str) -> Option<EncryptedCopy> {
    index
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<EncryptedCopy>(l).ok())
        .find(|c| c.file == file)
}

/// The newest entry of the folder's index for the server's file `file`.
pub fn find(folder: &Path, file: &str) -> Option<EncryptedCopy> {
    find_in(&std::fs::read_to_string(folder.join(INDEX)).ok()?, file)
}

/// What an encrypted file's name ends with: `ani@djki.go.id.tar.gz.age`.
pub const SUFFIX: &str = ".age";

/// The name a file of the server has on the admin computer's disk.
pub fn stored_name(name: &str, encrypted: bool) -> String {
    match encrypted {
        true => format!("{name}{SUFFIX}"),
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
pub struct Recipients(Arc<Vec<Recipient>>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({})", self.0.len())
    }
}

fn parse_one(entry: &str) -> (&'static str, Result<Recipient, String>) {
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
            .map_err(|e| format!("not an SSH public key age can encrypt to ({e:?})"));
        return (kind, parsed);
    }
    let parsed = entry
        .parse::<age::x25519::Recipient>()
        .map(|r| Box::new(r) as Recipient)
        .map_err(|e| format!("not an age public key (age1…) nor an SSH public key: {e}"));
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
                problem: parsed.err(),
            }
        })
        .collect()
}

impl Recipients {
    /// The recipients of `entries`; `None` when there are none (encryption off). One entry that
    /// cannot be used refuses them all: a backup is never written to fewer keys than set.
    pub fn parse(entries: &[String]) -> Result<Option<Recipients>, String> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut list = Vec::new();
        for e in entries {
            match parse_one(e) {
                (_, Ok(r)) => list.push(r),
                (_, Err(why)) => return Err(format!("BACKUP_ENCRYPT_TO {}: {why}", shown(e))),
            }
        }
        Ok(Some(Recipients(Arc::new(list))))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Starts an age file on `out` (its header written): what is written to the result is
    /// encrypted; `finish` ends the file.
    pub fn encrypt<W: Write>(&self, out: W) -> std::io::Result<age::stream::StreamWriter<W>> {
        let encryptor =
            age::Encryptor::with_recipients(self.0.iter().map(|r| r.as_ref() as &dyn age::Recipient))
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
    #[error("{0} holds no age identity (AGE-SECRET-KEY-1…) and no unencrypted OpenSSH private key")]
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
    pub fn decrypt<R: Read>(&self, input: R) -> Result<age::stream::StreamReader<R>, String> {
        let decryptor = age::Decryptor::new(input).map_err(|e| decrypt_problem(&e))?;
        decryptor
            .decrypt(self.0.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| decrypt_problem(&e))
    }
}

fn decrypt_problem(e: &age::DecryptError) -> String {
    match e {
        age::DecryptError::NoMatchingKeys => {
            "the identity given is not one this backup was encrypted to".into()
        }
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            "not an age file (damaged?)".into()
        }
        e => format!("cannot decrypt: {e}"),
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
