//! Step 3 and the admin computer's side: the dated folder, portable names, free space, and
//! the files that go in the folder.

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

/// `<root>/<date>`, or `<date>_2`, `_3` … when that day already has a backup: an earlier backup is
/// never overwritten or mixed into. The root must exist (an unmounted external disk must not
/// silently become a folder on the internal one).
pub fn create_dated_folder(
    root: &Path,
    format: &str,
    when: NaiveDateTime,
) -> std::io::Result<PathBuf> {
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("LOCAL_BACKUP_ROOT {} does not exist or is not a folder (is the external disk mounted?)", root.display()),
        ));
    }
    let base = portable_name(&when.format(format).to_string());
    for n in 1..1000 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}_{n}")
        };
        let path = root.join(&name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("more than 999 backups on one day"))
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

/// Free bytes for an unprivileged writer on the file system holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_and_unportable_names_become_plain_file_names() {
        assert_eq!(portable_name("../x"), "_._x");
        assert_eq!(portable_name("a;b"), "a;b");
        assert_eq!(portable_name("Surat Masuk"), "Surat Masuk");
        assert_eq!(portable_name("ünï@djki.go.id"), "ünï@djki.go.id");
        assert_eq!(portable_name("a:b*c?"), "a_b_c_");
        assert_eq!(portable_name(".hidden"), "_hidden");
        assert_eq!(portable_name(".."), "_");
        assert_eq!(portable_name("name. "), "name");
        assert_eq!(portable_name("CON.tar.gz"), "_CON.tar.gz");
        assert_eq!(portable_name("line\nbreak"), "line_break");
        for n in ["../x", "a/b", "..", "."] {
            assert!(
                !portable_name(n).contains('/')
                    && portable_name(n) != ".."
                    && portable_name(n) != "."
            );
        }
    }

    #[test]
    fn a_second_backup_on_the_same_day_gets_its_own_folder() {
        let root = std::env::temp_dir().join(format!("mbb-local-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("root");
        let when = chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
            .and_then(|d| d.and_hms_opt(9, 0, 0))
            .expect("valid");
        let first = create_dated_folder(&root, "%d-%m-%Y", when).expect("first");
        let second = create_dated_folder(&root, "%d-%m-%Y", when).expect("second");
        assert_eq!(
            first.file_name().and_then(|n| n.to_str()),
            Some("24-11-2026")
        );
        assert_eq!(
            second.file_name().and_then(|n| n.to_str()),
            Some("24-11-2026_2")
        );
        assert!(create_dated_folder(&root.join("not-mounted"), "%d-%m-%Y", when).is_err());
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
