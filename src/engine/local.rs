//! Step 3 and the admin computer's side: the dated folder, portable names, free space, and
//! the files that go in the folder.

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use super::files::{
    make_private, portable_name, private_dir, private_file, DIRECTORY_FILE, ENCRYPTED_SUFFIX,
    ENCRYPTION_INDEX,
};

/// The file `mailbox-backup-bot init-disk` writes at the root of the backup disk. Its absence
/// means the disk is not mounted (the empty mount point is there instead).
pub const DISK_MARKER: &str = ".mailbox-backup-bot-disk";

/// Writes the disk marker in `root` (keeps an existing one). Returns the marker's text and
/// whether it was written now.
pub fn init_disk(root: &Path) -> std::io::Result<(String, bool)> {
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a folder", root.display()),
        ));
    }
    let path = root.join(DISK_MARKER);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok((text, false));
    }
    let mut id = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id))?;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let text = format!(
        "mailbox-backup-bot disk\nid={}\ncreated={}\nhost={}\npath={}\n",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        host.trim(),
        root.display()
    );
    write_durably(&path, text.as_bytes())?;
    Ok((text, true))
}

/// Why the backup disk is not ready.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DiskNotReady {
    #[error("LOCAL_BACKUP_ROOT {} does not exist or is not a folder (is the external disk mounted?)", .0.display())]
    NoFolder(PathBuf),
    #[error("{} has no {DISK_MARKER}: disk not mounted? (on a new disk, run `mailbox-backup-bot init-disk {}` once)", .0.display(), .0.display())]
    NoMarker(PathBuf),
}

/// Refuses a backup root that is not a folder or has no disk marker; returns the disk's id.
pub fn check_disk(root: &Path) -> Result<String, DiskNotReady> {
    if !root.is_dir() {
        return Err(DiskNotReady::NoFolder(root.to_owned()));
    }
    match std::fs::read_to_string(root.join(DISK_MARKER)) {
        Ok(text) if text.starts_with("mailbox-backup-bot disk") => Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("id="))
            .unwrap_or("")
            .to_owned()),
        _ => Err(DiskNotReady::NoMarker(root.to_owned())),
    }
}

/// Where a local dated folder stands, kept in its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderState {
    Running,
    Complete,
    Failed,
}

/// The marker of a local dated folder: who made it, its server folder, how far it got.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalMarker {
    pub owner: String,
    pub created: String,
    pub server: Option<String>,
    pub state: FolderState,
    pub pid: u32,
}

impl LocalMarker {
    fn text(&self) -> String {
        let mut t = super::server::marker_text(&self.owner, &self.created);
        if let Some(server) = &self.server {
            t.push_str(&format!("server={}\n", server.replace('\n', "")));
        }
        let state = match self.state {
            FolderState::Running => "running",
            FolderState::Complete => "complete",
            FolderState::Failed => "failed",
        };
        t.push_str(&format!("state={state}\npid={}\n", self.pid));
        t
    }

    fn parse(text: &str) -> Option<LocalMarker> {
        let mut lines = text.lines();
        if lines.next()? != super::server::MARKER_HEAD {
            return None;
        }
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(str::to_owned)
        };
        Some(LocalMarker {
            owner: field("owner").unwrap_or_default(),
            created: field("created").unwrap_or_default(),
            server: field("server").filter(|s| !s.is_empty()),
            state: match field("state").as_deref() {
                Some("complete") => FolderState::Complete,
                Some("failed") => FolderState::Failed,
                _ => FolderState::Running,
            },
            pid: field("pid").and_then(|p| p.parse().ok()).unwrap_or(0),
        })
    }
}

pub fn read_marker(folder: &Path) -> Option<LocalMarker> {
    LocalMarker::parse(&std::fs::read_to_string(folder.join(super::server::MARKER_FILE)).ok()?)
}

pub fn write_marker(folder: &Path, marker: &LocalMarker) -> std::io::Result<()> {
    write_durably(
        &folder.join(super::server::MARKER_FILE),
        marker.text().as_bytes(),
    )
}

/// Updates the state (and server folder) in a folder's marker.
pub fn mark(folder: &Path, state: FolderState, server: Option<&str>) -> std::io::Result<()> {
    let mut m = read_marker(folder)
        .ok_or_else(|| std::io::Error::other(format!("{} has no marker", folder.display())))?;
    m.state = state;
    if let Some(server) = server {
        m.server = Some(server.to_owned());
    }
    m.pid = std::process::id();
    write_marker(folder, &m)
}

/// `<root>/<date>`, or `<date>_2`, `_3` … when that name exists (an earlier backup, or a folder
/// someone made by hand): an existing folder is never overwritten or mixed into. The new folder
/// gets the bot's marker. The root must exist (an unmounted external disk must not silently
/// become a folder on the internal one).
pub fn create_dated_folder(
    root: &Path,
    format: &str,
    when: NaiveDateTime,
    owner: &str,
) -> std::io::Result<PathBuf> {
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("LOCAL_BACKUP_ROOT {} does not exist or is not a folder (is the external disk mounted?)", root.display()),
        ));
    }
    let base = portable_name(&when.format(format).to_string());
    for n in 1..1000 {
        let path = root.join(numbered(&base, n));
        match private_dir(&path) {
            Ok(()) => {
                write_marker(
                    &path,
                    &LocalMarker {
                        owner: owner.to_owned(),
                        created: chrono::Utc::now()
                            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        server: None,
                        state: FolderState::Running,
                        pid: std::process::id(),
                    },
                )?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("more than 999 backups on one day"))
}

fn numbered(base: &str, n: usize) -> String {
    if n == 1 {
        base.to_owned()
    } else {
        format!("{base}_{n}")
    }
}

/// An unfinished bot-made folder of the same day (an earlier run failed or was killed, and no
/// live process of the bot still writes it): a new run continues it instead of starting over.
pub fn unfinished_folder(
    root: &Path,
    format: &str,
    when: NaiveDateTime,
) -> Option<(PathBuf, LocalMarker)> {
    let base = portable_name(&when.format(format).to_string());
    let mut found = None;
    for n in 1..1000 {
        let path = root.join(numbered(&base, n));
        if !path.exists() {
            break;
        }
        if let Some(m) = read_marker(&path) {
            let writer_alive = m.pid != 0
                && m.pid != std::process::id()
                && m.state == FolderState::Running
                && Path::new(&format!("/proc/{}", m.pid)).exists();
            if m.state != FolderState::Complete && !writer_alive {
                found = Some((path, m));
            }
        }
    }
    found
}

/// Bot-made folders under `root` other than `except`.
fn bot_folders(root: &Path, except: &Path) -> Vec<(PathBuf, LocalMarker)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != except && p.is_dir())
        .filter_map(|p| read_marker(&p).map(|m| (p, m)))
        .collect()
}

/// A dated folder whose every file the run verified: the bot's marker says `complete`, and each
/// name in its `SHA256SUMS` is in its index of verified files.
fn completely_verified(folder: &Path, marker: &LocalMarker) -> Option<Vec<String>> {
    if marker.state != FolderState::Complete {
        return None;
    }
    let sums = std::fs::read_to_string(folder.join("SHA256SUMS")).ok()?;
    let verified = std::fs::read_to_string(folder.join(VERIFIED_INDEX)).ok()?;
    let verified: std::collections::HashSet<&str> = verified
        .lines()
        .filter_map(|l| l.splitn(3, ' ').nth(2))
        .collect();
    let names: Vec<String> = sums
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, n)| n.to_owned()))
        .collect();
    (!names.is_empty() && names.iter().all(|n| verified.contains(n.as_str()))).then_some(names)
}

/// Local retention after a verified run: of the completely verified bot-made folders under
/// `root` (the current one among them), the newest `keep` stay and older ones go. A folder is
/// removed only when it holds nothing but what the bot made there (the archives its
/// `SHA256SUMS` names, `SHA256SUMS`, `summary.json`, the index and the marker); one holding
/// anything else is left whole. `keep` 0 keeps all. Returns the names of the folders removed.
pub fn retention(root: &Path, current: &Path, keep: usize) -> Vec<String> {
    if keep == 0 || read_marker(current).is_none() {
        return Vec::new();
    }
    // What the current run holds: an older folder with an archive the current one lacks (a
    // mailbox the server did not list this time) is kept.
    // Compared by the server's names: a plain folder and an encrypted one hold the same archives.
    let server_name = |n: &str| n.strip_suffix(ENCRYPTED_SUFFIX).unwrap_or(n).to_owned();
    let current_names: std::collections::HashSet<String> = read_marker(current)
        .and_then(|m| completely_verified(current, &m))
        .unwrap_or_default()
        .iter()
        .map(|n| server_name(n))
        .collect();
    let mut verified: Vec<(PathBuf, LocalMarker, Vec<String>)> = bot_folders(root, current)
        .into_iter()
        .filter_map(|(p, m)| completely_verified(&p, &m).map(|names| (p, m, names)))
        .collect();
    // Newest first (markers carry their creation time); the current folder is newer than all.
    verified.sort_by(|a, b| b.1.created.cmp(&a.1.created));
    let mut removed = Vec::new();
    for (folder, _, names) in verified.into_iter().skip(keep.saturating_sub(1)) {
        // An earlier piece linked there is not a mailbox: the newest folder holds all it needs.
        if let Some(missing) = names.iter().find(|n| {
            !current_names.contains(&server_name(n))
                && !server_name(n).ends_with(super::piece::ELDER_SUFFIX)
        }) {
            tracing::warn!(folder = %folder.display(), archive = %missing, "an old backup folder holds an archive the newest backup lacks; it is kept");
            continue;
        }
        let made: std::collections::HashSet<&str> = names
            .iter()
            .map(String::as_str)
            .chain([
                "SHA256SUMS",
                "summary.json",
                VERIFIED_INDEX,
                ENCRYPTION_INDEX,
                super::server::MARKER_FILE,
            ])
            .collect();
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let entries: Vec<_> = entries.flatten().collect();
        let foreign: Vec<String> = entries
            .iter()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !made.contains(n.as_str()))
            .collect();
        let all_files = entries
            .iter()
            .all(|e| e.file_type().is_ok_and(|t| t.is_file()));
        if !foreign.is_empty() || !all_files {
            tracing::warn!(folder = %folder.display(), foreign = ?foreign, "an old backup folder holds what the bot did not make; it is kept whole");
            continue;
        }
        for e in &entries {
            let _ = std::fs::remove_file(e.path());
        }
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::remove_dir(&folder) {
            Ok(()) => removed.push(name),
            Err(e) => {
                tracing::warn!(folder = %folder.display(), error = %e, "could not remove an old backup folder")
            }
        }
    }
    let _ = sync_dir(root);
    removed
}

/// The index of verified files in a folder: `sha256 size name` lines, appended as each file
/// gets its real name.
pub const VERIFIED_INDEX: &str = ".verified";

pub fn record_verified(folder: &Path, sha256: &str, size: u64, name: &str) -> std::io::Result<()> {
    let mut f = private_file()
        .append(true)
        .open(folder.join(VERIFIED_INDEX))?;
    make_private(&f)?;
    std::io::Write::write_all(&mut f, format!("{sha256} {size} {name}\n").as_bytes())
}

/// Whether the verified copies of `folder` are encrypted (`Some(true)`), plain (`Some(false)`),
/// or there are none yet (`None`).
pub fn stored_encrypted(folder: &Path) -> Option<bool> {
    let index = std::fs::read_to_string(folder.join(VERIFIED_INDEX)).ok()?;
    let name = index.lines().find_map(|l| l.splitn(3, ' ').nth(2))?;
    Some(name.ends_with(ENCRYPTED_SUFFIX))
}

/// The bot-made folders of `root` other than `except`, newest first (each file in them counts
/// only as its folder's index of verified files records it).
pub fn verified_folders(root: &Path, except: &Path) -> Vec<PathBuf> {
    let mut folders = bot_folders(root, except);
    folders.sort_by(|a, b| b.1.created.cmp(&a.1.created));
    folders.into_iter().map(|(p, _)| p).collect()
}

/// A verified copy with this checksum and size in another bot-made folder, newest first.
pub fn find_verified_copy(root: &Path, except: &Path, sha256: &str, size: u64) -> Option<PathBuf> {
    verified_folders(root, except)
        .into_iter()
        .find_map(|folder| {
            let index = std::fs::read_to_string(folder.join(VERIFIED_INDEX)).ok()?;
            index.lines().find_map(|line| {
                let mut it = line.splitn(3, ' ');
                let (h, s, n) = (it.next()?, it.next()?, it.next()?);
                let path = folder.join(n);
                (h == sha256
                    && s.parse::<u64>().ok() == Some(size)
                    && !n.contains('/')
                    && std::fs::metadata(&path).is_ok_and(|m| m.len() == size))
                .then_some(path)
            })
        })
}

/// Removes the partial copies (`.NAME.part`) in `folder`; returns the bytes freed.
pub fn remove_partials(folder: &Path) -> u64 {
    remove_files_named(folder, is_partial)
}

fn is_partial(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".part")
}

/// In a folder continued as `encrypted` (or plain), the partial copies of the other form: plain
/// `.NAME.part` and the directory's half-written plain capture when encrypting, `.NAME.age.part`
/// otherwise. Returns the bytes freed.
pub fn remove_partials_of_the_other_form(folder: &Path, encrypted: bool) -> u64 {
    let suffix = format!("{}.part", ENCRYPTED_SUFFIX);
    // What `write_durably` leaves of a plain capture it did not finish.
    let plain_capture = Path::new(DIRECTORY_FILE).with_extension("tmp");
    remove_files_named(folder, |name| match encrypted {
        true => (is_partial(name) && !name.ends_with(&suffix)) || Path::new(name) == plain_capture,
        false => is_partial(name) && name.ends_with(&suffix),
    })
}

/// Removes the files directly in `folder` whose names `chosen` picks; returns the bytes freed.
fn remove_files_named(folder: &Path, chosen: impl Fn(&str) -> bool) -> u64 {
    let mut freed = 0;
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        if chosen(&entry.file_name().to_string_lossy()) {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(entry.path()).is_ok() {
                freed += len;
            }
        }
    }
    freed
}

/// After a verified run: the partial copies left in earlier unfinished bot-made folders are no
/// longer needed (what they held is now verified here). Returns the bytes freed.
pub fn remove_stale_partials(root: &Path, except: &Path) -> u64 {
    bot_folders(root, except)
        .into_iter()
        .filter(|(_, m)| m.state != FolderState::Complete)
        .map(|(p, _)| remove_partials(&p))
        .sum()
}

/// A folder opened once and read by names inside it (`openat`), never following a symlink: what
/// is read is what is in that folder, whatever is renamed or linked around it meanwhile.
pub struct FolderAt(std::fs::File);

impl FolderAt {
    /// Opens `path` as a folder (the path itself may go through symlinks: it is a setting).
    pub fn open(path: &Path) -> std::io::Result<FolderAt> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .map(FolderAt)
    }

    fn open_at(&self, name: &str, flags: libc::c_int) -> std::io::Result<std::fs::File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name:?} is not a plain name"),
            ));
        }
        let c = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
        // SAFETY: a valid folder descriptor and NUL-terminated name; the returned descriptor
        // is owned by the File alone.
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }

    /// The folder `name` directly inside this one; a symlink is refused.
    pub fn folder(&self, name: &str) -> std::io::Result<FolderAt> {
        self.open_at(name, libc::O_RDONLY | libc::O_DIRECTORY)
            .map(FolderAt)
    }

    /// The plain file `name` directly inside this one, open for reading; a symlink, a folder
    /// or a device is refused.
    pub fn file(&self, name: &str) -> std::io::Result<std::fs::File> {
        let f = self.open_at(name, libc::O_RDONLY | libc::O_NONBLOCK)?;
        if !f.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name} is not a plain file"),
            ));
        }
        Ok(f)
    }

    /// The text of the plain file `name` in this folder (at most 64 MiB).
    pub fn read(&self, name: &str) -> std::io::Result<String> {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(self.file(name)?, 64 << 20),
            &mut text,
        )?;
        Ok(text)
    }

    /// This folder's bot marker, when it has one.
    pub fn marker(&self) -> Option<LocalMarker> {
        LocalMarker::parse(&self.read(super::server::MARKER_FILE).ok()?)
    }
}

/// Writes `content` to `path` through a temporary file (0600), synced, then renamed.
pub fn write_durably(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = private_file().truncate(true).open(&tmp)?;
        make_private(&f)?;
        std::io::Write::write_all(&mut f, content)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
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
        std::fs::create_dir_all(root.join("24-11-2026_2")).expect("made by hand");
        let first = create_dated_folder(&root, "%d-%m-%Y", when, "order 1").expect("first");
        let second = create_dated_folder(&root, "%d-%m-%Y", when, "order 2").expect("second");
        assert_eq!(
            first.file_name().and_then(|n| n.to_str()),
            Some("24-11-2026")
        );
        assert_eq!(
            second.file_name().and_then(|n| n.to_str()),
            Some("24-11-2026_3"),
            "the folder made by hand is skipped"
        );
        assert_eq!(
            read_marker(&second).map(|m| m.owner),
            Some("order 2".into())
        );
        assert_eq!(read_marker(&root.join("24-11-2026_2")), None);
        // The first failed: the next run of the day continues it, not the hand-made one.
        mark(&first, FolderState::Failed, Some("/srv/b/24-11-2026")).expect("mark");
        mark(&second, FolderState::Complete, None).expect("mark");
        let (again, m) = unfinished_folder(&root, "%d-%m-%Y", when).expect("unfinished");
        assert_eq!(
            (again, m.server.as_deref()),
            (first.clone(), Some("/srv/b/24-11-2026"))
        );
        assert!(create_dated_folder(&root.join("not-mounted"), "%d-%m-%Y", when, "x").is_err());
        assert!(check_disk(&root).is_err(), "no disk marker yet");
        let (_, new) = init_disk(&root).expect("init");
        assert!(new && check_disk(&root).is_ok());
        assert!(
            !init_disk(&root).expect("again").1,
            "an existing marker is kept"
        );
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
