//! The end of step 6: every archive is read back end to end on the local disk (decompressed,
//! listed, its gzip checksum checked) and its messages counted.

use std::io::Read;
use std::path::Path;

/// Reads the `.tar.gz`/`.tgz` at `path` to the end; returns the number of messages in it: files
/// in a Maildir's `cur/` or `new/`, or Zimbra's `.eml` files.
pub fn read_back(path: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut archive = tar::Archive::new(gz);
    let mut messages = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        // tar stores a second name of a hard-linked message as a link entry: still a message
        // of that folder (Dovecot copies messages as hard links by default).
        let kind = entry.header().entry_type();
        let is_file = kind.is_file() || kind.is_hard_link();
        let path = entry.path()?.into_owned();
        let parent = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let is_eml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("eml"));
        if is_file && (parent == "cur" || parent == "new" || is_eml) {
            messages += 1;
        }
        // Read every byte, so a damaged member is found, not skipped.
        std::io::copy(&mut entry, &mut std::io::sink())?;
    }
    // Past the tar end marker: read to the gzip trailer so its CRC and length are checked.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 8192];
    while rest.read(&mut buf)? > 0 {}
    Ok(messages)
}
