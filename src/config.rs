//! Settings, read once from the environment (and `.env`) and checked at start. A missing or
//! malformed value stops the program with one line naming the variable and what it expects.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use chrono_tz::Tz;

use crate::domain::Lang;
use crate::domain::{Roster, UserId};

/// A value that must never be printed (the bot token, the database password).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// The bot's settings.
#[derive(Debug, Clone)]
pub struct BotSettings {
    pub token: Secret,
    pub api_url: Option<String>,
    pub group_chat_id: i64,
    pub roster: Roster,
    pub lang: Lang,
    pub timezone: Tz,
    /// Messages per minute to one chat (Telegram allows about 20 in a group).
    pub messages_per_minute: u32,
    /// At most one progress edit per this many seconds.
    pub progress_interval_secs: u64,
    /// Remind the Kasubdit when no backup was received for this many days (0: never).
    pub reminder_after_days: u32,
    /// The time of day (in `timezone`) the reminder is sent.
    pub reminder_at: chrono::NaiveTime,
    /// A restore request nobody decided ends after this many seconds.
    pub restore_expiry_secs: u64,
    /// A restore drill every this many days (0: only when asked with `/drill`).
    pub drill_every_days: u32,
    /// The time of day (in `timezone`) from which a due drill runs.
    pub drill_at: chrono::NaiveTime,
}

/// Which mailbox backup runs on the server.
#[derive(Debug, Clone, PartialEq)]
pub enum BackupKind {
    /// One archive per mailbox of the mail store.
    Mailboxes(MailStore),
    /// The operator's own command writes files into the folder.
    Command { command: String },
}

/// A mail store whose mailboxes the bot lists and exports one by one.
#[derive(Debug, Clone, PartialEq)]
pub enum MailStore {
    Zimbra,
    Dovecot { config: Option<String> },
    Maildir { root: String },
}

/// The backup engine's settings (steps 3–6).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub ssh_host: String,
    pub ssh_port: u16,
    pub ssh_user: String,
    pub ssh_key: PathBuf,
    pub ssh_known_hosts: PathBuf,
    pub kind: BackupKind,
    pub server_backup_dir: String,
    /// Exports at once on the server (`MAIL_BACKUP_JOBS`: the server's load).
    pub jobs: usize,
    /// Copy streams at once over the SSH connection (`MAIL_COPY_STREAMS`: the link).
    pub copy_streams: usize,
    /// Each mailbox is exported whole at least every this many days, spread over the days; in
    /// between only what changed (`FULL_EVERY_DAYS`; 1: whole every day).
    pub full_every_days: u32,
    pub local_root: PathBuf,
    pub folder_format: String,
    pub timezone: Tz,
    /// What must stay free on the server folder's file system (`MAIL_SERVER_MIN_FREE`).
    pub server_min_free: Floor,
    /// Bot-made server folders kept after a verified copy (`MAIL_SERVER_BACKUP_KEEP`).
    pub server_keep: usize,
    /// Verified local dated folders kept after a verified run (`LOCAL_BACKUP_KEEP`; 0 keeps all).
    pub local_keep: usize,
    /// No byte for this long during steps 5–6 means the connection stalled.
    pub stall_secs: u64,
    /// Reconnects after a dropped or stalled connection, at most this many in a row…
    pub reconnect_tries: u32,
    /// …and within this many seconds.
    pub reconnect_secs: u64,
    /// Public keys every new file on the admin computer is encrypted to (`BACKUP_ENCRYPT_TO`:
    /// age `age1…` or SSH public keys; none: not encrypted).
    pub encrypt_to: Vec<String>,
    /// The identity file restores decrypt with (`BACKUP_AGE_IDENTITY`; best left unset and given
    /// to each restore).
    pub age_identity: Option<PathBuf>,
    /// Zimbra: the scratch account a restore drill imports into and empties afterwards
    /// (`RESTORE_DRILL_ACCOUNT`; it must hold no mail). Other kinds drill into a temporary mail
    /// location in the bot's server folder.
    pub drill_account: Option<String>,
}

impl EngineSettings {
    /// The defaults of the settings that have one, around the ones that must be given.
    pub fn new(
        ssh: (String, u16, String, PathBuf, PathBuf),
        kind: BackupKind,
        server_backup_dir: String,
        local_root: PathBuf,
    ) -> EngineSettings {
        let (ssh_host, ssh_port, ssh_user, ssh_key, ssh_known_hosts) = ssh;
        EngineSettings {
            ssh_host,
            ssh_port,
            ssh_user,
            ssh_key,
            ssh_known_hosts,
            kind,
            server_backup_dir,
            jobs: 2,
            copy_streams: 4,
            full_every_days: 28,
            local_root,
            folder_format: "%d-%m-%Y".into(),
            timezone: chrono_tz::Asia::Jakarta,
            server_min_free: DEFAULT_SERVER_MIN_FREE,
            server_keep: 1,
            local_keep: 0,
            stall_secs: 60,
            reconnect_tries: 6,
            reconnect_secs: 600,
            encrypt_to: Vec::new(),
            age_identity: None,
            drill_account: None,
        }
    }
}

/// 15 %: a mail server's `/var` below that is close to the point where delivery and logging
/// start failing; the backup never takes the server there.
pub const DEFAULT_SERVER_MIN_FREE: Floor = Floor::Percent(15.0);

/// Where a setting comes from: the process environment in production, a map in tests.
pub trait Source {
    fn get(&self, var: &str) -> Option<String>;
}

/// The process environment (after `.env` was loaded).
pub struct Env;

impl Source for Env {
    fn get(&self, var: &str) -> Option<String> {
        std::env::var(var).ok()
    }
}

/// Settings given as a map (tests).
impl Source for std::collections::HashMap<String, String> {
    fn get(&self, var: &str) -> Option<String> {
        std::collections::HashMap::get(self, var).cloned()
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, var: &str) -> Option<String> {
        self(var)
    }
}

/// Every setting, read once at start from the environment (and `.env`) and handed to whatever
/// needs it: each part as it parsed, so a command asks only for the parts it uses (`log` needs
/// no bot token) and `check` sees every part's problems. Nothing reads the environment later.
#[derive(Debug, Clone)]
pub struct Settings {
    bot: Result<BotSettings, ConfigError>,
    presentation: Result<Presentation, ConfigError>,
    local_backup_root: Option<PathBuf>,
    /// What `check` and the start-up checks read: the problems, the engine's settings, the
    /// database's address and the files holding secrets.
    pub reading: SettingsReading,
}

impl Settings {
    /// Reads every setting of `src`; `env_file` is the `.env` they were read from, when one was
    /// (`check` and `run` look at who may read and write it).
    pub fn read(src: &dyn Source, env_file: Option<PathBuf>) -> Settings {
        Settings {
            bot: BotSettings::load(src),
            presentation: Presentation::load(src),
            local_backup_root: value(src, "LOCAL_BACKUP_ROOT").map(PathBuf::from),
            reading: SettingsReading::read(src, env_file),
        }
    }

    /// The bot's settings (`run`).
    pub fn bot(&self) -> Result<&BotSettings, ConfigError> {
        self.bot.as_ref().map_err(Clone::clone)
    }

    /// The engine's settings; `None` when `MAIL_SSH_HOST` is not set (no engine meant to run).
    pub fn engine(&self) -> Result<Option<&EngineSettings>, ConfigError> {
        match (self.reading.engine_present, &self.reading.engine_loaded) {
            (false, _) => Ok(None),
            (true, Ok(e)) => Ok(Some(e)),
            (true, Err(e)) => Err(e.clone()),
        }
    }

    /// The engine's settings, for a command that needs the engine (`backup`, `restore`).
    pub fn engine_required(&self) -> Result<&EngineSettings, ConfigError> {
        match &self.reading.engine_loaded {
            Ok(e) => Ok(e),
            Err(e) => Err(e.clone()),
        }
    }

    pub fn database_url(&self) -> Result<&Secret, ConfigError> {
        self.reading.database_url.as_ref().map_err(Clone::clone)
    }

    /// How records are shown (`log`, `export`), read as the bot reads them.
    pub fn presentation(&self) -> Result<Presentation, ConfigError> {
        self.presentation.clone()
    }

    /// `LOCAL_BACKUP_ROOT` as written (what `init-disk` marks when no path is given).
    pub fn local_backup_root(&self) -> Option<&std::path::Path> {
        self.local_backup_root.as_deref()
    }
}

fn value(src: &dyn Source, var: &str) -> Option<String> {
    src.get(var)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn required(src: &dyn Source, var: &'static str, expected: &str) -> Result<String, ConfigError> {
    value(src, var).ok_or_else(|| ConfigError {
        var,
        problem: format!("missing; expected {expected}"),
    })
}

fn parsed<T: std::str::FromStr>(
    src: &dyn Source,
    var: &'static str,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match value(src, var) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError {
            var,
            problem: format!("expected {expected}, got {v:?}"),
        }),
    }
}

fn ids(src: &dyn Source, var: &'static str) -> Result<BTreeSet<UserId>, ConfigError> {
    let raw = required(
        src,
        var,
        "comma-separated numeric Telegram user ids, e.g. 123456789,987654321",
    )?;
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .map(UserId)
                .ok_or_else(|| ConfigError {
                    var,
                    problem: format!(
                        "expected numeric user ids, got {s:?} (usernames are not accepted)"
                    ),
                })
        })
        .collect()
}

fn timezone(src: &dyn Source) -> Result<Tz, ConfigError> {
    let raw = value(src, "BOT_TIMEZONE").unwrap_or_else(|| "Asia/Jakarta".to_owned());
    raw.parse::<Tz>().map_err(|_| ConfigError {
        var: "BOT_TIMEZONE",
        problem: format!("expected an IANA time zone such as Asia/Jakarta, got {raw:?}"),
    })
}

fn language(src: &dyn Source) -> Result<Lang, ConfigError> {
    match value(src, "BOT_LANG")
        .as_deref()
        .map(str::to_lowercase)
        .as_deref()
    {
        None | Some("id") => Ok(Lang::Id),
        Some("en") => Ok(Lang::En),
        Some(other) => Err(ConfigError {
            var: "BOT_LANG",
            problem: format!("expected id or en, got {other:?}"),
        }),
    }
}

/// How the records are shown (`log` and `export` at the terminal read only these, and read
/// them as the bot does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Presentation {
    pub lang: Lang,
    pub timezone: Tz,
}

impl Presentation {
    pub fn load(src: &dyn Source) -> Result<Presentation, ConfigError> {
        Ok(Presentation {
            lang: language(src)?,
            timezone: timezone(src)?,
        })
    }
}

impl BotSettings {
    pub fn load(src: &dyn Source) -> Result<BotSettings, ConfigError> {
        let token = required(src, "TELOXIDE_TOKEN", "the bot token from @BotFather")?;
        if !token.contains(':') {
            return Err(ConfigError {
                var: "TELOXIDE_TOKEN",
                problem: "expected a token of the form 123456:ABC… (from @BotFather)".into(),
            });
        }
        let api_url = value(src, "TELEGRAM_API_URL");
        if let Some(url) = &api_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError {
                    var: "TELEGRAM_API_URL",
                    problem: format!("expected an http(s) URL, got {url:?}"),
                });
            }
        }
        let group_chat_id = required(
            src,
            "GROUP_CHAT_ID",
            "the numeric id of the group chat, e.g. -1001234567890",
        )?;
        let group_chat_id = group_chat_id.parse::<i64>().map_err(|_| ConfigError {
            var: "GROUP_CHAT_ID",
            problem: format!("expected a numeric chat id, got {group_chat_id:?}"),
        })?;
        let roster = Roster {
            kasubdit: ids(src, "KASUBDIT_IDS")?,
            kasi: ids(src, "KASI_IDS")?,
            jfu: ids(src, "JFU_IDS")?,
        };
        let lang = language(src)?;
        Ok(BotSettings {
            token: Secret::new(token),
            api_url,
            group_chat_id,
            roster,
            lang,
            timezone: timezone(src)?,
            messages_per_minute: ranged(
                src,
                "TELEGRAM_MESSAGES_PER_MINUTE",
                20,
                1..=10_000,
                "messages per minute",
            )?,
            progress_interval_secs: ranged(src, "PROGRESS_INTERVAL_SECS", 4, 1..=3600, "seconds")?,
            reminder_after_days: ranged(
                src,
                "REMINDER_AFTER_DAYS",
                30,
                0..=366,
                "days (0 turns reminders off)",
            )?,
            restore_expiry_secs: ranged(
                src,
                "RESTORE_REQUEST_EXPIRY_SECS",
                24 * 3600,
                10..=7 * 24 * 3600,
                "seconds",
            )?,
            reminder_at: time_of_day(src, "REMINDER_AT", 9)?,
            drill_every_days: ranged(
                src,
                "RESTORE_DRILL_DAYS",
                30,
                0..=366,
                "days (0: drills only when asked with /drill)",
            )?,
            drill_at: time_of_day(src, "RESTORE_DRILL_AT", 7)?,
        })
    }
}

/// `.env.example` as shipped: its uncommented `KEY=value` lines are valid values, and the ones
/// in [`PLACEHOLDERS`] must not be left as they are.
const EXAMPLE: &str = include_str!("../.env.example");

/// Settings whose example value is a stand-in that only works in the example.
const PLACEHOLDERS: &[&str] = &[
    "TELOXIDE_TOKEN",
    "DATABASE_URL",
    "GROUP_CHAT_ID",
    "KASUBDIT_IDS",
    "KASI_IDS",
    "JFU_IDS",
];

fn example_values() -> std::collections::HashMap<&'static str, &'static str> {
    EXAMPLE
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// A setting that is wrong, or still the example's stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingIssue {
    pub var: String,
    pub problem: String,
    /// The value is still the one from `.env.example`.
    pub example: bool,
}

/// The settings as read once at start, for what checks them later (`check`, `/check`): every
/// problem found, the engine's settings when they load, the database's address, and the files
/// holding secrets. The raw environment is not kept.
#[derive(Debug, Clone)]
pub struct SettingsReading {
    pub issues: Vec<SettingIssue>,
    /// Whether `MAIL_SSH_HOST` is set (the engine is meant to run).
    pub engine_present: bool,
    /// The engine's settings as they load, with the first problem when they do not.
    pub engine_loaded: Result<EngineSettings, ConfigError>,
    pub database_url: Result<Secret, ConfigError>,
    /// `.env` (when one was read), `MAIL_SSH_KEY` and `MAIL_SSH_KNOWN_HOSTS` as given.
    pub env_file: Option<PathBuf>,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

impl SettingsReading {
    pub fn read(src: &dyn Source, env_file: Option<PathBuf>) -> SettingsReading {
        SettingsReading {
            issues: settings_issues(src),
            engine_present: EngineSettings::present(src),
            engine_loaded: EngineSettings::load(src),
            database_url: database_url(src),
            env_file,
            ssh_key: value(src, "MAIL_SSH_KEY").map(PathBuf::from),
            known_hosts: value(src, "MAIL_SSH_KNOWN_HOSTS").map(PathBuf::from),
        }
    }

    /// The engine's settings when `MAIL_SSH_HOST` is set and they load.
    pub fn engine(&self) -> Option<&EngineSettings> {
        self.engine_loaded
            .as_ref()
            .ok()
            .filter(|_| self.engine_present)
    }
}

/// Every problem with the settings at once (not only the first): each wrong value is noted and
/// replaced by a valid one (the example's, or none for an optional setting) until the settings
/// load; then the values still equal to the example's stand-ins.
pub fn settings_issues(src: &dyn Source) -> Vec<SettingIssue> {
    let examples = example_values();
    let mut issues = Vec::new();
    let mut patch: std::collections::HashMap<&'static str, Option<String>> = Default::default();
    let note =
        |e: ConfigError,
         issues: &mut Vec<SettingIssue>,
         patch: &mut std::collections::HashMap<&'static str, Option<String>>| {
            issues.push(SettingIssue {
                var: e.var.to_owned(),
                problem: e.problem,
                example: false,
            });
            patch.insert(e.var, examples.get(e.var).map(|v| (*v).to_owned()));
        };
    let patched = |patch: &std::collections::HashMap<&'static str, Option<String>>| {
        let patch = patch.clone();
        move |k: &str| match patch.get(k) {
            Some(v) => v.clone(),
            None => src.get(k),
        }
    };
    for _ in 0..64 {
        match BotSettings::load(&patched(&patch)) {
            Ok(_) => break,
            Err(e) => note(e, &mut issues, &mut patch),
        }
    }
    if let Err(e) = database_url(src) {
        note(e, &mut issues, &mut patch);
    }
    if EngineSettings::present(src) {
        for _ in 0..64 {
            match EngineSettings::load(&patched(&patch)) {
                Ok(_) => break,
                Err(e) => note(e, &mut issues, &mut patch),
            }
        }
    }
    for var in PLACEHOLDERS {
        let same = value(src, var).is_some_and(|v| Some(v.as_str()) == examples.get(var).copied());
        if same {
            issues.push(SettingIssue {
                var: (*var).to_owned(),
                problem: "still the value from .env.example".into(),
                example: true,
            });
        }
    }
    issues
}

/// `DATABASE_URL`, with the password hidden when printed.
pub fn database_url(src: &dyn Source) -> Result<Secret, ConfigError> {
    let url = required(
        src,
        "DATABASE_URL",
        "a PostgreSQL URL such as postgres://user:password@127.0.0.1/mailbox_backup",
    )?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError {
            var: "DATABASE_URL",
            problem: "expected a URL starting with postgres://".into(),
        });
    }
    Ok(Secret::new(url))
}

impl EngineSettings {
    /// Whether the engine is configured at all (the bot then runs steps 3–6).
    pub fn present(src: &dyn Source) -> bool {
        value(src, "MAIL_SSH_HOST").is_some()
    }

    pub fn load(src: &dyn Source) -> Result<EngineSettings, ConfigError> {
        let kind_name = value(src, "MAIL_BACKUP_KIND").unwrap_or_else(|| "dovecot".to_owned());
        let kind = match kind_name.as_str() {
            "zimbra" => BackupKind::Mailboxes(MailStore::Zimbra),
            "dovecot" => BackupKind::Mailboxes(MailStore::Dovecot {
                config: value(src, "MAIL_DOVEADM_CONFIG"),
            }),
            "maildir" => BackupKind::Mailboxes(MailStore::Maildir {
                root: required(
                    src,
                    "MAILDIR_ROOT",
                    "the folder on the server holding one Maildir per mailbox",
                )?,
            }),
            "command" => {
                let command = required(
                    src,
                    "MAIL_BACKUP_COMMAND",
                    "a command with {dir} where the backup folder goes",
                )?;
                if !command.contains("{dir}") {
                    return Err(ConfigError {
                        var: "MAIL_BACKUP_COMMAND",
                        problem: "expected the placeholder {dir} for the server backup folder"
                            .into(),
                    });
                }
                BackupKind::Command { command }
            }
            other => {
                return Err(ConfigError {
                    var: "MAIL_BACKUP_KIND",
                    problem: format!("expected zimbra, dovecot, maildir or command, got {other:?}"),
                })
            }
        };
        let folder_format =
            value(src, "BACKUP_FOLDER_FORMAT").unwrap_or_else(|| "%d-%m-%Y".to_owned());
        check_folder_format(&folder_format)?;
        let jobs: usize = parsed(src, "MAIL_BACKUP_JOBS", 2, "a whole number from 1 to 32")?;
        if !(1..=32).contains(&jobs) {
            return Err(ConfigError {
                var: "MAIL_BACKUP_JOBS",
                problem: format!("expected a whole number from 1 to 32, got {jobs}"),
            });
        }
        let full_every_days: u32 = parsed(
            src,
            "FULL_EVERY_DAYS",
            28,
            "a whole number of days from 1 to 366",
        )?;
        if !(1..=366).contains(&full_every_days) {
            return Err(ConfigError {
                var: "FULL_EVERY_DAYS",
                problem: format!(
                    "expected a whole number of days from 1 to 366, got {full_every_days}"
                ),
            });
        }
        let copy_streams: usize =
            parsed(src, "MAIL_COPY_STREAMS", 4, "a whole number from 1 to 16")?;
        if !(1..=16).contains(&copy_streams) {
            return Err(ConfigError {
                var: "MAIL_COPY_STREAMS",
                problem: format!("expected a whole number from 1 to 16, got {copy_streams}"),
            });
        }
        let server_backup_dir = required(
            src,
            "MAIL_SERVER_BACKUP_DIR",
            "an absolute folder on the mail server, e.g. /var/backups/mailbox",
        )?;
        if !server_backup_dir.starts_with('/') {
            return Err(ConfigError {
                var: "MAIL_SERVER_BACKUP_DIR",
                problem: format!("expected an absolute path, got {server_backup_dir:?}"),
            });
        }
        Ok(EngineSettings {
            ssh_host: required(
                src,
                "MAIL_SSH_HOST",
                "the mail server's host name or address",
            )?,
            ssh_port: ranged(src, "MAIL_SSH_PORT", 22, 1..=65535, "a port number")?,
            ssh_user: required(
                src,
                "MAIL_SSH_USER",
                "the user to log in as on the mail server",
            )?,
            ssh_key: absolute(
                "MAIL_SSH_KEY",
                required(src, "MAIL_SSH_KEY", "the path of the private key file")?,
            )?,
            ssh_known_hosts: absolute(
                "MAIL_SSH_KNOWN_HOSTS",
                required(
                    src,
                    "MAIL_SSH_KNOWN_HOSTS",
                    "the path of a known_hosts file holding the server's host key",
                )?,
            )?,
            kind,
            server_backup_dir,
            jobs,
            copy_streams,
            full_every_days,
            local_root: absolute(
                "LOCAL_BACKUP_ROOT",
                required(
                    src,
                    "LOCAL_BACKUP_ROOT",
                    "the folder (or mounted external disk) for the backups",
                )?,
            )?,
            folder_format,
            timezone: timezone(src)?,
            server_min_free: match value(src, "MAIL_SERVER_MIN_FREE") {
                None => DEFAULT_SERVER_MIN_FREE,
                Some(v) => Floor::parse(&v).ok_or_else(|| ConfigError {
                    var: "MAIL_SERVER_MIN_FREE",
                    problem: format!(
                        "expected a percentage such as 15% or a size such as 10G, got {v:?}"
                    ),
                })?,
            },
            server_keep: ranged(src, "MAIL_SERVER_BACKUP_KEEP", 1, 0..=1000, "folders")?,
            local_keep: ranged(
                src,
                "LOCAL_BACKUP_KEEP",
                0,
                0..=100_000,
                "folders (0 keeps all)",
            )?,
            stall_secs: ranged(src, "MAIL_SSH_STALL_SECS", 60, 5..=3600, "seconds")?,
            reconnect_tries: ranged(src, "MAIL_SSH_RECONNECT_TRIES", 6, 0..=1000, "tries")?,
            reconnect_secs: ranged(src, "MAIL_SSH_RECONNECT_SECS", 600, 1..=86_400, "seconds")?,
            encrypt_to: value(src, "BACKUP_ENCRYPT_TO")
                .map(|v| encrypt_entries(&v))
                .unwrap_or_default(),
            age_identity: match value(src, "BACKUP_AGE_IDENTITY") {
                None => None,
                Some(p) => Some(absolute("BACKUP_AGE_IDENTITY", p)?),
            },
            drill_account: value(src, "RESTORE_DRILL_ACCOUNT"),
        })
    }
}

/// The entries of `BACKUP_ENCRYPT_TO`, separated by commas, semicolons or new lines (an SSH
/// public key holds spaces: `ssh-ed25519 AAAA… kasubdit@djki`). Checked by the engine.
pub fn encrypt_entries(raw: &str) -> Vec<String> {
    raw.split([',', '\n', ';'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A time of day as `HH:MM`; `default_hour`:00 when unset.
fn time_of_day(
    src: &dyn Source,
    var: &'static str,
    default_hour: u32,
) -> Result<chrono::NaiveTime, ConfigError> {
    match value(src, var) {
        None => Ok(chrono::NaiveTime::from_hms_opt(default_hour, 0, 0).unwrap_or_default()),
        Some(v) => chrono::NaiveTime::parse_from_str(&v, "%H:%M").map_err(|_| ConfigError {
            var,
            problem: format!("expected a time of day as HH:MM, e.g. 09:00, got {v:?}"),
        }),
    }
}

/// A whole number in `range`; outside it, the variable is named with the range.
fn ranged<T>(
    src: &dyn Source,
    var: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let expected = if unit.starts_with("a ") {
        format!("{unit} from {} to {}", range.start(), range.end())
    } else {
        format!(
            "a whole number of {unit} from {} to {}",
            range.start(),
            range.end()
        )
    };
    let v: T = parsed(src, var, default, &expected)?;
    if !range.contains(&v) {
        return Err(ConfigError {
            var,
            problem: format!("expected {expected}, got {v}"),
        });
    }
    Ok(v)
}

/// A path that does not depend on the folder the bot is started from.
fn absolute(var: &'static str, path: String) -> Result<PathBuf, ConfigError> {
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ConfigError {
            var,
            problem: format!(
                "expected an absolute path (it would depend on the folder the bot is started from), got {path:?}"
            ),
        })
    }
}

/// The folder name must come out portable (no `/`, `:` …) and name the date.
fn check_folder_format(format: &str) -> Result<(), ConfigError> {
    use chrono::format::{Item, StrftimeItems};
    let bad = |problem: &str| ConfigError {
        var: "BACKUP_FOLDER_FORMAT",
        problem: format!("{problem}, got {format:?}"),
    };
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(bad("expected a strftime format such as %d-%m-%Y"));
    }
    let mut sample = String::new();
    let moment = chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
        .and_then(|d| d.and_hms_opt(13, 45, 0))
        .unwrap_or_default();
    if std::fmt::Write::write_fmt(&mut sample, format_args!("{}", moment.format(format))).is_err() {
        return Err(bad("expected a strftime format such as %d-%m-%Y"));
    }
    if sample.is_empty()
        || sample.contains(['/', '\\', ':', '*', '?', '"', '<', '>', '|'])
        || !sample.contains("24")
    {
        return Err(bad(
            "expected a format giving a portable folder name with the day, such as %d-%m-%Y",
        ));
    }
    Ok(())
}

/// `MAIL_SERVER_MIN_FREE`: what must stay free on the server folder's file system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Floor {
    Percent(f64),
    Bytes(u64),
}

impl Floor {
    /// `15%`, `10G`, `500M`, `2048K` or a number of bytes.
    pub fn parse(s: &str) -> Option<Floor> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().ok()?;
            return (0.0..100.0).contains(&p).then_some(Floor::Percent(p));
        }
        let upper = s.to_ascii_uppercase();
        let upper = upper.trim_end_matches("IB").trim_end_matches('B');
        let (num, unit) = match upper.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&upper[..i], c),
            _ => (upper, ' '),
        };
        let n: f64 = num.trim().parse().ok()?;
        let mult = match unit {
            ' ' => 1.0,
            'K' => 1024.0,
            'M' => 1024.0 * 1024.0,
            'G' => 1024.0 * 1024.0 * 1024.0,
            'T' => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return None,
        };
        (n >= 0.0).then_some(Floor::Bytes((n * mult) as u64))
    }

    /// The floor in bytes on a file system of `size` bytes.
    pub fn bytes(&self, size: u64) -> u64 {
        match *self {
            Floor::Percent(p) => (size as f64 * p / 100.0) as u64,
            Floor::Bytes(b) => b,
        }
    }
}

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Floor::Percent(p) => write!(f, "{p}%"),
            Floor::Bytes(b) => write!(f, "{b} bytes"),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_problem_is_reported_at_once_and_example_values_are_named() {
        let vars: std::collections::HashMap<String, String> = [
            ("TELOXIDE_TOKEN", "123456789:replace-with-the-token"),
            ("GROUP_CHAT_ID", "grup"),
            ("KASI_IDS", "222222222"),
            ("JFU_IDS", "x"),
            ("MAIL_SSH_HOST", "mail.djki.go.id"),
            ("MAIL_BACKUP_KIND", "exchange"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let issues = settings_issues(&vars);
        let engine = SettingsReading::read(&vars, None);
        let engine = engine.engine();
        let named: Vec<(&str, bool)> = issues.iter().map(|i| (i.var.as_str(), i.example)).collect();
        for wrong in [
            "GROUP_CHAT_ID",
            "KASUBDIT_IDS",
            "JFU_IDS",
            "DATABASE_URL",
            "MAIL_BACKUP_KIND",
            "MAIL_SSH_KEY",
            "LOCAL_BACKUP_ROOT",
        ] {
            assert!(named.contains(&(wrong, false)), "{wrong}: {issues:#?}");
        }
        assert!(named.contains(&("TELOXIDE_TOKEN", true)), "{issues:#?}");
        assert!(named.contains(&("KASI_IDS", true)), "{issues:#?}");
        assert!(engine.is_none());
    }

    use super::*;
    use std::collections::HashMap;

    fn src(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    const GOOD: &[(&str, &str)] = &[
        ("TELOXIDE_TOKEN", "123:abc"),
        ("GROUP_CHAT_ID", "-100200"),
        ("KASUBDIT_IDS", "1"),
        ("KASI_IDS", "2, 3"),
        ("JFU_IDS", "4"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = GOOD
            .iter()
            .copied()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .collect();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn good_settings_load_with_defaults() {
        let s = BotSettings::load(&src(GOOD)).expect("loads");
        assert_eq!(s.group_chat_id, -100200);
        assert_eq!(s.roster.kasi.len(), 2);
        assert_eq!(s.lang, Lang::Id);
        assert_eq!(s.timezone, chrono_tz::Asia::Jakarta);
        assert!(
            !format!("{s:?}").contains("123:abc"),
            "the token must not be printed"
        );
    }

    #[test]
    fn the_terminal_reads_the_language_and_time_zone_as_the_bot_does() {
        let read = |pairs: &[(&str, &str)]| {
            let vars: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            super::Presentation::load(&vars)
        };
        let en = read(&[("BOT_LANG", "EN"), ("BOT_TIMEZONE", "Asia/Makassar")]).unwrap();
        assert_eq!(en.lang, crate::domain::lang::Lang::En);
        assert_eq!(en.timezone, chrono_tz::Asia::Makassar);
        let plain = read(&[]).unwrap();
        assert_eq!(plain.lang, crate::domain::lang::Lang::Id);
        assert_eq!(plain.timezone, chrono_tz::Asia::Jakarta);
        assert_eq!(read(&[("BOT_LANG", "fr")]).unwrap_err().var, "BOT_LANG");
        assert_eq!(
            read(&[("BOT_TIMEZONE", "Jakarta")]).unwrap_err().var,
            "BOT_TIMEZONE"
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("TELOXIDE_TOKEN", "")], "TELOXIDE_TOKEN"),
            (&[("GROUP_CHAT_ID", "grup")], "GROUP_CHAT_ID"),
            (&[("KASI_IDS", "@budi")], "KASI_IDS"),
            (&[("JFU_IDS", "")], "JFU_IDS"),
            (&[("BOT_LANG", "fr")], "BOT_LANG"),
            (&[("BOT_TIMEZONE", "Jakarta")], "BOT_TIMEZONE"),
            (
                &[("TELEGRAM_API_URL", "127.0.0.1:8081")],
                "TELEGRAM_API_URL",
            ),
        ];
        for (extra, var) in cases {
            let err = BotSettings::load(&src(&with(extra))).expect_err("refused");
            assert_eq!(err.var, *var);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    #[test]
    fn engine_settings_check_the_kind_and_the_folder_format() {
        let base = [
            ("MAIL_SSH_HOST", "127.0.0.1"),
            ("MAIL_SSH_USER", "root"),
            ("MAIL_SSH_KEY", "/k"),
            ("MAIL_SSH_KNOWN_HOSTS", "/kh"),
            ("MAIL_SERVER_BACKUP_DIR", "/srv/b"),
            ("LOCAL_BACKUP_ROOT", "/b"),
        ];
        let s = EngineSettings::load(&src(&base)).expect("loads");
        assert_eq!(
            (s.ssh_port, s.jobs, s.copy_streams, s.folder_format.as_str()),
            (22, 2, 4, "%d-%m-%Y")
        );
        assert_eq!(
            s.kind,
            BackupKind::Mailboxes(MailStore::Dovecot { config: None })
        );
        for (extra, var) in [
            (("MAIL_BACKUP_KIND", "exchange"), "MAIL_BACKUP_KIND"),
            (("BACKUP_FOLDER_FORMAT", "%d/%m/%Y"), "BACKUP_FOLDER_FORMAT"),
            (("BACKUP_FOLDER_FORMAT", "%H:%M"), "BACKUP_FOLDER_FORMAT"),
            (("MAIL_BACKUP_JOBS", "0"), "MAIL_BACKUP_JOBS"),
            (("MAIL_COPY_STREAMS", "17"), "MAIL_COPY_STREAMS"),
            (("MAIL_SSH_PORT", "ssh"), "MAIL_SSH_PORT"),
            (("MAIL_SERVER_MIN_FREE", "lots"), "MAIL_SERVER_MIN_FREE"),
            (("MAIL_SSH_STALL_SECS", "0"), "MAIL_SSH_STALL_SECS"),
            (("MAIL_SERVER_BACKUP_KEEP", "-1"), "MAIL_SERVER_BACKUP_KEEP"),
            (("MAIL_BACKUP_KIND", "maildir"), "MAILDIR_ROOT"),
        ] {
            let mut v = base.to_vec();
            v.push(extra);
            assert_eq!(
                EngineSettings::load(&src(&v)).expect_err("refused").var,
                var
            );
        }
    }
}
