//! What the engine's files are called and how they are written: the names several parts of the
//! engine share (the encrypted suffix, the encryption index, the directory capture), SHA-256 in
//! hex, private files and folders, and names every file system takes. A leaf: it imports nothing
//! of the engine, so every other part may use it.

use std::path::Path;

use sha2::Digest;

/// What an encrypted file's name ends with: `ani@djki.go.id.tar.gz.age`.
pub const ENCRYPTED_SUFFIX: &str = ".age";

/// The index of the encrypted copies in a dated folder: a JSON line per file, appended as each
/// gets its real name.
pub const ENCRYPTION_INDEX: &str = ".encrypted";

/// The account directory capture's name in a dated folder.
pub const DIRECTORY_FILE: &str = "directory.tar.gz";

/// SHA-256 (hex) and length of a file, read in 1 MiB steps.
pub fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(
        &mut std::io::BufReader::with_capacity(1 << 20, file),
        &mut h,
    )?;
    Ok((hex(&h.finalize()), n))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens (creating) a file for writing that only its owner can read: it holds mail, or says
/// what mail there is. 0600 whatever the umask (a umask only takes bits away); see
/// [`make_private`] for a file that was already there.
pub fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.create(true).write(true).mode(0o600);
    o
}

/// Makes an open file 0600 (one made by an older bot, or under another umask, keeps its mode
/// when opened again).
pub fn make_private(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
}

/// Makes a folder only its owner can enter (0700 whatever the umask).
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// A file name NTFS, exFAT and ext4 all accept, kept readable: characters they refuse become `_`,
/// no leading dot (hidden), no trailing dot or space, never `.` or `..`.
pub fn portable_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    while out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    let trimmed = out.trim_end_matches(['.', ' ']).to_owned();
    let out = if trimmed.is_empty() {
        "_".to_owned()
    } else {
        trimmed
    };
    // Windows reserves these names whatever the extension.
    let stem = out.split('.').next().unwrap_or("").to_uppercase();
    let reserved = ["CON", "PRN", "AUX", "NUL"].contains(&stem.as_str())
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    let mut out = if reserved { format!("_{out}") } else { out };
    // Most file systems allow 255 bytes; keep room for the extension and a suffix.
    while out.len() > 200 {
        out.pop();
    }
    out
}
