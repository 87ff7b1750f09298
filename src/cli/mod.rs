//! The command line: `run`, `migrate`, `log`, `export`, `backup`, `check`, `restore`, `init-disk`.

mod terminal;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{self, Settings};
use crate::domain::{parse_log_period, parse_month};
use crate::messages::Catalog;
use crate::procedure::people::People;
use crate::procedure::restores as recorded;
use crate::storage::Store;

/// mailbox-backup-bot: runs DJKI's mailbox-backup SOP from the Kasubdit's order to the daily log.
#[derive(Parser)]
#[command(version)]
pub struct Cli {
    /// Read settings from this file instead of ./.env (the environment wins over both).
    #[arg(long, global = true)]
    pub env_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Subcommand)]
pub enum CliCommand {
    /// Run the Telegram bot.
    Run,
    /// Apply the database migrations and exit.
    Migrate,
    /// Print the daily activity log of DATE (today, yesterday, DD-MM-YYYY, YYYY-MM-DD), or of a
    /// month (MM-YYYY).
    Log { date: Option<String> },
    /// Print the activity of MONTH (MM-YYYY; default this month) as CSV: one row per order and
    /// SOP step.
    Export { month: Option<String> },
    /// Run steps 3–6 once (dated folder, SSH, server backup, copy and verify); exit non-zero on any failure.
    Backup,
    /// Check every setting a backup needs, changing nothing; one line per check.
    Check,
    /// Restore ACCOUNT's mailbox from backup FOLDER (the name of a dated folder the bot made and
    /// verified, directly in LOCAL_BACKUP_ROOT; not a path) into ACCOUNT, or into the account
    /// given with --into. Adds what is missing, deletes nothing: running it twice duplicates
    /// nothing. With --create or --all, accounts the server lacks are first rebuilt from the
    /// folder's account directory (the day the server dies: docs/DISASTER-RECOVERY.md).
    Restore(RestoreArgs),
    /// Mark PATH (default LOCAL_BACKUP_ROOT) as the backup disk; backups refuse a root without
    /// this mark, so an unmounted disk's empty mount point is never written to.
    InitDisk { path: Option<PathBuf> },
    /// Make a new age identity for encrypted backups: writes it to FILE (0600, never over an
    /// existing file) and prints the line to put in .env (BACKUP_ENCRYPT_TO=age1…). Keep FILE off
    /// the admin computer: docs/DEPLOY.md, "Encrypted backups".
    Keygen {
        /// Where the identity goes (a USB stick, or a folder printed and then removed).
        file: PathBuf,
    },
}

/// The exit status for an error: [`crate::startup::EXIT_CONFIG`] for what only the admin can
/// fix (a setting, the token, the database login), 1 for the rest.
pub fn exit_status(e: &anyhow::Error) -> i32 {
    let config = e.chain().any(|c| {
        c.is::<config::ConfigError>()
            || c.is::<crate::telegram::service::InvalidToken>()
            || c.is::<crate::startup::DatabaseRefused>()
    });
    if config {
        crate::startup::EXIT_CONFIG
    } else {
        1
    }
}

/// Loads `.env` (or `file`) into the environment; returns the file read, when one was.
fn load_env(file: Option<&PathBuf>) -> Result<Option<PathBuf>> {
    match file {
        Some(f) => {
            dotenvy::from_path(f).with_context(|| format!("reading {}", f.display()))?;
            Ok(Some(f.clone()))
        }
        // A ./.env that cannot be read or has a bad line is said, not taken for missing
        // settings. Without one, a parent folder's is used; one that cannot even be looked for
        // there (someone else's home) is not an error: the environment may hold everything.
        None if std::path::Path::new(".env").exists() => {
            if let Err(e) = dotenvy::from_path(".env") {
                return Err(config::ConfigError {
                    var: ".env",
                    problem: format!("cannot be read: {e}"),
                }
                .into());
            }
            Ok(Some(
                std::path::absolute(".env").unwrap_or_else(|_| ".env".into()),
            ))
        }
        None => Ok(dotenvy::dotenv().ok()),
    }
}

/// What `log` and `export` read: the database, the catalogue in `BOT_LANG` and `BOT_TIMEZONE`,
/// the names known, and today there.
async fn records(settings: &Settings) -> Result<(Store, Catalog, People, chrono::NaiveDate)> {
    let store = store(settings).await?;
    let shown = settings.presentation()?;
    let tz = shown.timezone;
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let people = People::new(store.people().await?);
    Ok((store, Catalog::new(shown.lang, tz), people, today))
}

async fn store(settings: &Settings) -> Result<Store> {
    let url = settings.database_url()?;
    let store = Store::connect(url.expose())
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// `run`: the bot, once Telegram and PostgreSQL answer and the database's bot lock is held.
async fn run_bot(settings: &Settings) -> Result<()> {
    let engine = crate::startup::engine_of(settings)?;
    match crate::startup::start(settings, engine).await? {
        Some(started) => crate::startup::serve(started).await,
        // SIGTERM while waiting for Telegram or PostgreSQL.
        None => Ok(()),
    }
}

/// What `restore` at the terminal was asked.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The dated folder's name (such as 25-11-2026), not a path.
    folder: String,
    /// The account whose mailbox is restored (none with --all).
    #[arg(required_unless_present = "all")]
    account: Option<String>,
    /// Restore into this other account (it must exist on the server) instead of the account's
    /// own: only the messages it lacks are added, nothing in it is deleted.
    #[arg(long, value_name = "ACCOUNT")]
    into: Option<String>,
    /// Create the account from the backup's account directory when the server lacks it
    /// (same password hash, same Sieve filters), then restore its mail.
    #[arg(long, conflicts_with = "into")]
    create: bool,
    /// Every account of the backup's account directory: created when missing (what exists
    /// is left as it is), then its mail. Run again after a cut-off: nothing is duplicated.
    #[arg(long, conflicts_with_all = ["account", "into", "create"])]
    all: bool,
    /// Say what would be created and restored, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Restore from a folder no backup order recorded (made by `backup` at the terminal),
    /// trusting the folder's own index of verified copies.
    #[arg(long)]
    unrecorded: bool,
    /// The identity that opens an encrypted backup (an age identity file, as `keygen` writes,
    /// or an unencrypted OpenSSH private key); default BACKUP_AGE_IDENTITY.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

const UNRECORDED_HINT: &str = "a backup made with `backup` at the terminal is restored with --unrecorded (then only the folder's own index of verified copies vouches for it)";

/// `restore` at the terminal: only what a backup order recorded, unless `unrecorded`. With
/// `create` or `all`, the accounts the server lacks are rebuilt from the folder's account
/// directory first.
async fn restore(all_settings: &Settings, a: RestoreArgs) -> Result<()> {
    use crate::engine::restore::RestoreError;
    let mut settings = all_settings.engine_required()?.clone();
    if let Some(identity) = &a.identity {
        settings.age_identity = Some(std::path::absolute(identity)?);
    }
    // Hashes as a backup order recorded them in the database: the folder's own files are not
    // enough, whoever can write the disk can write them too.
    let db = if a.unrecorded {
        None
    } else {
        if let Err(e) = all_settings.database_url() {
            return Err(config::ConfigError {
                var: e.var,
                problem: format!(
                    "{}. A restore checks the folder against what the backup order recorded in the database; {UNRECORDED_HINT}",
                    e.problem
                ),
            }
            .into());
        }
        Some(store(all_settings).await?)
    };
    let root = settings.local_root.clone();
    let capture = if a.create || a.all {
        let (capture, sha) = crate::engine::rebuild::read_capture(&settings, &a.folder)?;
        if let Some(db) = &db {
            if !recorded::directory_recorded(db, &root, &a.folder, &sha).await? {
                anyhow::bail!(
                    "no backup order recorded the account directory of {}; {UNRECORDED_HINT}",
                    a.folder
                );
            }
        }
        Some(capture)
    } else {
        None
    };
    let accounts = match (&capture, &a.account) {
        (Some(c), None) => c.accounts(),
        (_, Some(account)) => vec![account.clone()],
        (None, None) => anyhow::bail!("give an ACCOUNT, or --all"),
    };
    let mut jobs = Vec::new();
    for account in accounts {
        // An account without a mailbox in the folder (it never had mail) is only rebuilt.
        let archive = match crate::engine::restore::locate(&root, &a.folder, &account) {
            Ok(archive) => Some(archive),
            Err(RestoreError::NotInBackup { .. }) if capture.is_some() => None,
            Err(e) => return Err(e.into()),
        };
        let expected = match (&db, &archive) {
            (Some(db), Some(archive)) => {
                let sha256 = archive.content_sha256();
                match recorded::recorded_backup(db, &root, &a.folder, &account, sha256).await? {
                    Ok(f) => Some(f.sha256),
                    Err(e) => anyhow::bail!("{e}; {UNRECORDED_HINT}"),
                }
            }
            _ => None,
        };
        jobs.push(terminal::RestoreJob {
            account,
            has_mailbox: archive.is_some(),
            expected,
        });
    }
    let ask = terminal::RestoreAsk {
        folder: &a.folder,
        into: a.into.as_deref(),
        capture: capture.as_ref(),
        all: a.all,
        dry_run: a.dry_run,
    };
    terminal::restore_all(settings, &ask, jobs).await
}

pub async fn main(cli: Cli) -> Result<()> {
    let env_file = load_env(cli.env_file.as_ref())?;
    // Every setting read once, here; each command takes the parts it needs.
    let settings = Settings::read(&config::Env, env_file);
    match cli.command {
        CliCommand::Run => run_bot(&settings).await,
        CliCommand::Migrate => {
            store(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        CliCommand::Log { date } => {
            let (store, catalog, people, today) = records(&settings).await?;
            let period = parse_log_period(&date.unwrap_or_default(), today)?;
            let text = crate::procedure::chain::render_log(&store, &catalog, period, &|id| {
                people.name(id)
            })
            .await?;
            println!("{}", crate::messages::html_to_text(&text));
            Ok(())
        }
        CliCommand::Export { month } => {
            let (store, catalog, people, today) = records(&settings).await?;
            let month = parse_month(&month.unwrap_or_default(), today)?;
            let (csv, _) = crate::procedure::chain::activity_csv(&store, &catalog, month, &|id| {
                people.plain_name(id)
            })
            .await?;
            print!("{csv}");
            Ok(())
        }
        CliCommand::Backup => terminal::backup(settings.engine_required()?.clone()).await,
        CliCommand::Check => terminal::check(&settings.reading).await,
        CliCommand::Restore(args) => restore(&settings, args).await,
        CliCommand::Keygen { file } => keygen(&file),
        CliCommand::InitDisk { path } => {
            let path = match path {
                Some(p) => p,
                None => settings
                    .local_backup_root()
                    .map(PathBuf::from)
                    .context("give a PATH, or set LOCAL_BACKUP_ROOT")?,
            };
            // Each dated folder stays whole by hard links to the earlier pieces it needs.
            crate::engine::pieces::hard_links_work(&path).map_err(|e| {
                anyhow::anyhow!(
                    "{} keeps no hard links ({e}): exFAT and FAT have none. Format the backup disk ext4 or XFS (docs/DEPLOY.md) and run init-disk again",
                    path.display()
                )
            })?;
            let (text, new) = crate::engine::local::init_disk(&path)
                .with_context(|| format!("marking {} as the backup disk", path.display()))?;
            println!(
                "{} {}:\n{}",
                if new { "marked" } else { "already marked" },
                path.display(),
                text.trim_end()
            );
            Ok(())
        }
    }
}

/// `keygen`: a new identity in `file` (0600, created new), its recipient printed.
fn keygen(file: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let (text, recipient) = crate::engine::encryption::generate();
    let mut out = crate::engine::files::private_file()
        .create_new(true)
        .open(file)
        .with_context(|| {
            format!(
                "writing the identity to {} (an existing file is never overwritten)",
                file.display()
            )
        })?;
    // Whatever the umask: the identity is the owner's alone.
    crate::engine::files::make_private(&out)
        .and_then(|()| out.write_all(text.as_bytes()))
        .and_then(|()| out.sync_all())
        .with_context(|| format!("writing the identity to {}", file.display()))?;
    println!("identity written to {} (0600)", file.display());
    println!("its public key, for .env on the admin computer:");
    println!();
    println!("BACKUP_ENCRYPT_TO={recipient}");
    println!();
    println!("Keep {} off the admin computer (a USB stick in the safe, and a printed copy): it is the only way to open the encrypted backups. Test it once with `mailbox-backup-bot restore FOLDER ACCOUNT --identity {}` (docs/DEPLOY.md).", file.display(), file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_only_the_admin_can_fix_exits_78_and_the_rest_1() {
        let bad_setting = || -> Result<()> {
            crate::config::EngineSettings::load(&|_: &str| -> Option<String> { None })?;
            Ok(())
        };
        let e = bad_setting().expect_err("no settings");
        assert_eq!(exit_status(&e), crate::startup::EXIT_CONFIG, "{e:#}");
        let token = anyhow::Error::from(crate::telegram::service::InvalidToken).context("starting");
        assert_eq!(exit_status(&token), crate::startup::EXIT_CONFIG);
        assert_eq!(exit_status(&anyhow::anyhow!("disk full")), 1);
    }
}
