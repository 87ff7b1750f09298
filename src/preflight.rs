//! The pre-flight of `mailbox-backup-bot check` and the chat's `/check`: every setting (all
//! problems at once), the backup disk, the database, the SSH login, the server's tools, folder
//! and free space — and, in the chat, the token, the group and the people of the roles. It
//! changes nothing anywhere.

use crate::config::{EngineSettings, SettingsReading};
use crate::domain::{Role, UserId};
use crate::engine::{link::Link, local, server};

/// What one line of the check is about.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckItem {
    Setting(String),
    EngineConfigured,
    DiskMarked,
    DiskWritable,
    /// The backup disk keeps hard links (each dated folder whole, earlier pieces linked).
    DiskHardLinks,
    DiskFree,
    Database,
    SshLogin,
    ServerTool(String),
    ZimbraTools,
    ServerFolder,
    ServerFree,
    Token,
    Group,
    Member(Role, UserId),
    /// A file holding a secret (`.env`, the SSH key): readable and writable by its owner only.
    SecretFile(&'static str),
    /// A file deciding whom the bot trusts (`known_hosts`): writable by its owner only.
    TrustFile(&'static str),
    /// Whether new backups are encrypted (`BACKUP_ENCRYPT_TO`).
    Encryption,
    /// One recipient of `BACKUP_ENCRYPT_TO` (shortened) and its kind.
    Recipient(String, &'static str),
    /// `BACKUP_AGE_IDENTITY`: the identity restores decrypt with.
    Identity,
    /// Zimbra: `RESTORE_DRILL_ACCOUNT`, the account restore drills write into.
    DrillAccount,
}

impl CheckItem {
    /// The setting naming the file a mode line is about (for `run`'s refusal).
    pub fn setting(&self) -> &'static str {
        match self {
            CheckItem::SecretFile(v) | CheckItem::TrustFile(v) => v,
            _ => "settings",
        }
    }
}

/// Who may read and write the files that hold the bot's secrets: `.env` (the token, the
/// database password, and the commands run as root on the mail server) and the SSH key must be
/// 0600 or 0400; `known_hosts` must not be writable by group or others. A file that is not there
/// is left to the other checks.
pub fn file_modes(read: &SettingsReading) -> Vec<CheckLine> {
    use std::os::unix::fs::PermissionsExt;
    let mut files: Vec<(CheckItem, std::path::PathBuf, u32)> = Vec::new();
    if let Some(f) = &read.env_file {
        files.push((CheckItem::SecretFile(".env"), f.clone(), 0o077));
    }
    if let Some(k) = &read.ssh_key {
        files.push((CheckItem::SecretFile("MAIL_SSH_KEY"), k.clone(), 0o077));
    }
    if let Some(k) = read.engine().and_then(|e| e.age_identity.clone()) {
        files.push((CheckItem::SecretFile("BACKUP_AGE_IDENTITY"), k, 0o077));
    }
    if let Some(k) = &read.known_hosts {
        files.push((
            CheckItem::TrustFile("MAIL_SSH_KNOWN_HOSTS"),
            k.clone(),
            0o022,
        ));
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    files
        .into_iter()
        .filter_map(|(item, path, forbidden)| {
            let meta = std::fs::metadata(&path).ok()?;
            let owner = std::os::unix::fs::MetadataExt::uid(&meta);
            if owner != 0 && owner != me {
                return Some(line(
                    item,
                    false,
                    format!(
                        "{} belongs to user {owner}, who can change it: it must belong to root or to the bot's user ({me}); run `chown {me} {}`",
                        path.display(),
                        path.display()
                    ),
                ));
            }
            let mode = meta.permissions().mode() & 0o7777;
            let open = mode & forbidden;
            let who = match (open & 0o070 != 0, open & 0o007 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            };
            let fix = if forbidden == 0o077 { "600" } else { "644" };
            Some(if open == 0 {
                line(item, true, format!("{} ({mode:04o})", path.display()))
            } else {
                line(
                    item,
                    false,
                    format!(
                        "{} is mode {mode:04o}: {} by {who}; run `chmod {fix} {}`",
                        path.display(),
                        if forbidden == 0o077 {
                            "readable or writable"
                        } else {
                            "writable"
                        },
                        path.display()
                    ),
                )
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckLine {
    pub item: CheckItem,
    pub ok: bool,
    /// The figures or the error, as evidence (not translated).
    pub detail: String,
}

fn line(item: CheckItem, ok: bool, detail: impl Into<String>) -> CheckLine {
    CheckLine {
        item,
        ok,
        detail: detail.into(),
    }
}

/// The settings (every problem, and stand-ins left from `.env.example`), then the engine's
/// checks when its settings load, then the database.
pub async fn run(read: &SettingsReading) -> Vec<CheckLine> {
    let mut lines: Vec<CheckLine> = read
        .issues
        .iter()
        .map(|i| line(CheckItem::Setting(i.var.clone()), false, i.problem.clone()))
        .collect();
    if lines.is_empty() {
        lines.push(line(CheckItem::Setting("*".into()), true, ""));
    }
    lines.extend(file_modes(read));
    match read.engine() {
        Some(s) => lines.extend(engine_checks(s).await),
        None if !read.engine_present => lines.push(line(
            CheckItem::EngineConfigured,
            false,
            "MAIL_SSH_HOST is not set",
        )),
        None => {}
    }
    lines.push(match &read.database_url {
        Ok(url) => match crate::storage::Store::connect(url.expose()).await {
            Ok(store) => match store.migration_state().await {
                Ok((unknown, _)) if !unknown.is_empty() => line(
                    CheckItem::Database,
                    false,
                    format!("migrated by a newer version of the bot (migrations {unknown:?} unknown to this one): run that version, or restore the dump taken before the upgrade"),
                ),
                Ok((_, 0)) => line(CheckItem::Database, true, ""),
                Ok((_, pending)) => line(
                    CheckItem::Database,
                    true,
                    format!("{pending} migration(s) will be applied at the next start"),
                ),
                Err(e) => line(CheckItem::Database, false, e.to_string()),
            },
            Err(e) => line(CheckItem::Database, false, e.to_string()),
        },
        Err(e) => line(CheckItem::Database, false, e.to_string()),
    });
    lines
}

fn bytes(n: u64) -> String {
    crate::domain::lang::bytes(crate::domain::Lang::En, n)
}

/// Encryption at rest: on or off, each recipient usable, the identity (when set) readable.
fn encryption_checks(s: &EngineSettings) -> Vec<CheckLine> {
    use crate::engine::encryption::{check_recipients, Identities};
    let recipients = check_recipients(&s.encrypt_to);
    let mut out = vec![if recipients.is_empty() {
        line(
            CheckItem::Encryption,
            true,
            "off: BACKUP_ENCRYPT_TO is not set, the backups are stored unencrypted",
        )
    } else {
        let usable = recipients.iter().all(|r| r.problem.is_none());
        line(
            CheckItem::Encryption,
            usable,
            match usable {
                true => format!("on: age, to {} recipient(s)", recipients.len()),
                false => {
                    "on, but a recipient cannot be used: no backup runs until it is fixed".into()
                }
            },
        )
    }];
    out.extend(recipients.into_iter().map(|r| {
        let ok = r.problem.is_none();
        line(
            CheckItem::Recipient(r.shown, r.kind),
            ok,
            r.problem.unwrap_or_default(),
        )
    }));
    if let Some(path) = &s.age_identity {
        out.push(match Identities::load(path) {
            Ok(_) => line(
                CheckItem::Identity,
                true,
                format!("{} (restores decrypt with it)", path.display()),
            ),
            Err(e) => line(CheckItem::Identity, false, e.to_string()),
        });
    }
    out
}

/// The backup disk, the SSH login and what the server needs; nothing is created or changed.
pub async fn engine_checks(s: &EngineSettings) -> Vec<CheckLine> {
    let mut out = disk_checks(s);
    out.extend(encryption_checks(s));
    // A Zimbra drill writes into an account of its own, which only the admin can make.
    if crate::engine::kind::of(&s.kind).drills_into_an_account() {
        out.push(match &s.drill_account {
            Some(a) => line(CheckItem::DrillAccount, true, a.clone()),
            None => line(
                CheckItem::DrillAccount,
                false,
                "not set: restore drills (/drill, RESTORE_DRILL_DAYS) cannot run on Zimbra without an empty account made for them",
            ),
        });
    }
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let link = match Link::connect(s, tx).await {
        Ok(link) => link,
        Err(e) => {
            out.push(line(
                CheckItem::SshLogin,
                false,
                format!("{}: {}", e.kind, e.detail),
            ));
            return out;
        }
    };
    out.push(line(
        CheckItem::SshLogin,
        true,
        format!("{}@{}:{}", s.ssh_user, s.ssh_host, s.ssh_port),
    ));
    out.extend(server_checks(s, &link).await);
    link.close().await;
    out
}

/// The backup disk: marked, writable, its free space.
fn disk_checks(s: &EngineSettings) -> Vec<CheckLine> {
    let mut out = Vec::new();
    out.push(match local::check_disk(&s.local_root) {
        Ok(id) => line(
            CheckItem::DiskMarked,
            true,
            format!("{} (disk {id})", s.local_root.display()),
        ),
        Err(e) => line(CheckItem::DiskMarked, false, e.to_string()),
    });
    let writable = std::ffi::CString::new(s.local_root.as_os_str().as_encoded_bytes())
        // SAFETY: a valid NUL-terminated path; access() only reads it.
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
        .unwrap_or(false);
    out.push(line(
        CheckItem::DiskWritable,
        writable,
        s.local_root.display().to_string(),
    ));
    out.push(match crate::engine::pieces::hard_links_work(&s.local_root) {
        Ok(()) => line(CheckItem::DiskHardLinks, true, s.local_root.display().to_string()),
        Err(e) => line(
            CheckItem::DiskHardLinks,
            false,
            format!("{e}: exFAT and FAT keep none; every mailbox would be exported and stored whole every day. Format the disk ext4 or XFS (docs/DEPLOY.md)"),
        ),
    });
    out.push(match local::free_space(&s.local_root) {
        Ok(free) => line(CheckItem::DiskFree, true, bytes(free)),
        Err(e) => line(CheckItem::DiskFree, false, e.to_string()),
    });
    out
}

/// On the mail server, over `link`: the tools, the backup folder and its free space.
async fn server_checks(s: &EngineSettings, link: &Link<'_>) -> Vec<CheckLine> {
    let mut out = Vec::new();
    // What the kind's export needs, then what the manifest and the copy need.
    let kind = crate::engine::kind::of(&s.kind);
    let export_tools = kind.tools();
    let copy = ["sha256sum", "stat", "tar", "cat", "dd", "df", "setsid"];
    for tool in export_tools.iter().chain(copy.iter()) {
        out.push(
            match link.remote().sh(r#"command -v "$1""#, &[tool]).await {
                Ok(o) if o.ok => line(
                    CheckItem::ServerTool((*tool).to_owned()),
                    true,
                    String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                ),
                _ => line(
                    CheckItem::ServerTool((*tool).to_owned()),
                    false,
                    "not found on the server",
                ),
            },
        );
    }
    if let Some(check) = kind.admin_tools_check() {
        let found = link.remote().sh(check, &[]).await;
        out.push(match found {
            Ok(o) if o.ok => line(CheckItem::ZimbraTools, true, ""),
            _ => line(
                CheckItem::ZimbraTools,
                false,
                "not found for the zimbra user",
            ),
        });
    }
    // The server folder: writable if it exists, or creatable under its nearest parent.
    let probe = r#"d=$1; while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done; [ -d "$d" ] && [ -w "$d" ] && echo "$d""#;
    out.push(
        match link.remote().sh(probe, &[&s.server_backup_dir]).await {
            Ok(o) if o.ok => line(CheckItem::ServerFolder, true, s.server_backup_dir.clone()),
            Ok(o) => line(
                CheckItem::ServerFolder,
                false,
                format!("{} {}", s.server_backup_dir, o.stderr),
            ),
            Err(e) => line(CheckItem::ServerFolder, false, e.to_string()),
        },
    );
    out.push(
        match link
            .remote()
            .sh(server::FREE_SPACE_NEAREST, &[&s.server_backup_dir])
            .await
        {
            Ok(o) => match server::parse_space(&String::from_utf8_lossy(&o.stdout)) {
                Some(space) => {
                    let floor = s.server_min_free.bytes(space.size);
                    line(
                        CheckItem::ServerFree,
                        space.avail >= floor,
                        format!(
                            "{} free on {}, {} must stay free (MAIL_SERVER_MIN_FREE={})",
                            bytes(space.avail),
                            space.mount,
                            bytes(floor),
                            s.server_min_free
                        ),
                    )
                }
                None => line(CheckItem::ServerFree, false, o.stderr),
            },
            Err(e) => line(CheckItem::ServerFree, false, e.to_string()),
        },
    );
    out
}
