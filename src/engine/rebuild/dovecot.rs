//! Dovecot: an account's entry goes back into the `passwd-file` the server's configuration names
//! (the same line, so the same password hash: the user logs in with the old password), then its
//! Sieve scripts. The entry reaches the server on the script's stdin, never on a command line.

use super::{connect, ssh, AccountPlan, Rebuilt};
use crate::config::EngineSettings;
use crate::engine::directory::DovecotDirectory;
use crate::engine::link::Link;
use crate::engine::restore::RestoreError;

/// The `passwd-file`s the server's configuration names now: `(role, path)`.
const DOVECOT_SOURCES: &str = r#"if [ -n "$1" ]; then exec doveconf -c "$1" passdb userdb; else exec doveconf passdb userdb; fi"#;

/// Whether `$1` exists (exit 0), or not (exit 1).
const DOVECOT_KNOWS: &str = r#"if [ -n "$2" ]; then set -- "$1" -c "$2"; else set -- "$1"; fi
u=$1; shift
doveadm "$@" user -- "$u" >/dev/null 2>&1"#;

/// Whether `$1` is known within three seconds: Dovecot reads a changed passwd-file again at most
/// once a second, and an auth cache may remember that the account was missing (flushed first).
const DOVECOT_KNOWS_SOON: &str = r#"if [ -n "$2" ]; then set -- "$1" -c "$2"; else set -- "$1"; fi
u=$1; shift
doveadm "$@" auth cache flush -- "$u" >/dev/null 2>&1 || true
i=0
while [ $i -lt 30 ]; do
  doveadm "$@" user -- "$u" >/dev/null 2>&1 && exit 0
  sleep 0.1; i=$((i + 1))
done
exit 1"#;

/// Adds the entry on stdin for user `$2` to the passwd-file `$1`, unless the file has `$2`
/// already (then prints `kept`). Never creates the file: a server without it is not configured
/// as the backup's was.
const DOVECOT_ADD_ENTRY: &str = r#"set -eu
f=$1; u=$2
line=$(cat)
case $line in "$u:"*) ;; *) echo "the entry is not $u's" >&2; exit 2 ;; esac
[ -f "$f" ] || { echo "$f does not exist on the server" >&2; exit 3; }
if cut -d: -f1 -- "$f" | grep -qxF -- "$u"; then echo kept; exit 0; fi
if [ -s "$f" ] && [ "$(tail -c 1 -- "$f" | od -An -c | tr -d ' ')" != '\n' ]; then printf '\n' >> "$f"; fi
printf '%s\n' "$line" >> "$f"
echo added"#;

/// The names of `$1`'s Sieve scripts, one per line.
const SIEVE_LIST: &str = r#"if [ -n "$2" ]; then set -- "$1" -c "$2"; else set -- "$1"; fi
u=$1; shift
doveadm "$@" sieve list -u "$u" | sed -e 's/ ACTIVE$//' -e 's/ $//'"#;

/// Puts the script on stdin as `$2` of user `$1` (`$3` = 1: and makes it the active one).
const SIEVE_PUT: &str = r#"u=$1; name=$2; active=$3
if [ -n "$4" ]; then set -- -c "$4"; else set --; fi
if [ "$active" = 1 ]; then exec doveadm "$@" sieve put -u "$u" -a "$name"; fi
exec doveadm "$@" sieve put -u "$u" "$name""#;

/// Whether the server's configuration (`doveconf passdb userdb`) names `path` as a passwd-file.
fn passwd_files(doveconf: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut role, mut driver, mut args) = (None::<String>, String::new(), String::new());
    for line in doveconf.lines() {
        let line = line.trim();
        if let Some(r) = line.strip_suffix(" {") {
            if r == "passdb" || r == "userdb" {
                role = Some(r.to_owned());
                driver.clear();
                args.clear();
            }
            continue;
        }
        if line == "}" {
            if let Some(r) = role.take() {
                let path = args.rsplit(' ').next().unwrap_or("");
                if driver == "passwd-file" && path.starts_with('/') && !path.contains('%') {
                    out.push((r, path.to_owned()));
                }
            }
            continue;
        }
        if role.is_some() {
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "driver" => driver = v.trim().to_owned(),
                    "args" => args = v.trim().to_owned(),
                    _ => {}
                }
            }
        }
    }
    out
}

/// What rebuilding `account` from `capture` would do on the server. Reads only.
pub(super) async fn plan(
    s: &EngineSettings,
    conf: &str,
    capture: &DovecotDirectory,
    folder: &str,
    account: &str,
) -> Result<AccountPlan, RestoreError> {
    let entries = capture.entries_of(account);
    if entries.is_empty() {
        return Err(RestoreError::NotInDirectory {
            account: account.to_owned(),
            folder: folder.to_owned(),
        });
    }
    let link = connect(s).await?;
    let planned = plan_on(&link, conf, capture, account).await;
    link.close().await;
    planned
}

async fn plan_on(
    link: &Link<'_>,
    conf: &str,
    capture: &DovecotDirectory,
    account: &str,
) -> Result<AccountPlan, RestoreError> {
    let r = link.remote();
    let exists = r.sh(DOVECOT_KNOWS, &[account, conf]).await.map_err(ssh)?.ok;
    let o = r.sh(DOVECOT_SOURCES, &[conf]).await.map_err(ssh)?;
    if !o.ok {
        return Err(RestoreError::Server(o.stderr));
    }
    let now = passwd_files(&String::from_utf8_lossy(&o.stdout));
    let mut entries = Vec::new();
    for e in capture.entries_of(account) {
        if !now.iter().any(|(_, p)| *p == e.path) {
            return Err(RestoreError::SourceGone(e.path));
        }
        entries.push((e.path, e.roles));
    }
    Ok(AccountPlan {
        account: account.to_owned(),
        exists,
        entries,
        filters: capture
            .sieve_of(account)
            .map(|f| (f.name.clone(), f.active))
            .collect(),
        also: Vec::new(),
    })
}

/// Rebuilds `account` from `capture` when the server lacks it: its entries, then its Sieve
/// scripts. An account the server knows gets only the scripts it lacks.
pub(super) async fn rebuild(
    s: &EngineSettings,
    conf: &str,
    capture: &DovecotDirectory,
    folder: &str,
    account: &str,
) -> Result<(AccountPlan, Rebuilt), RestoreError> {
    let plan = plan(s, conf, capture, folder, account).await?;
    let link = connect(s).await?;
    let done = rebuild_on(&link, conf, capture, &plan).await;
    link.close().await;
    Ok((plan, done?))
}

async fn rebuild_on(
    link: &Link<'_>,
    conf: &str,
    capture: &DovecotDirectory,
    plan: &AccountPlan,
) -> Result<Rebuilt, RestoreError> {
    let r = link.remote();
    let account = plan.account.as_str();
    let mut done = Rebuilt::default();
    if !plan.exists {
        for e in capture.entries_of(account) {
            let line = format!("{}\n", e.line);
            let o = r
                .sh_with_input(DOVECOT_ADD_ENTRY, &[&e.path, account], line.as_bytes())
                .await
                .map_err(ssh)?;
            if !o.ok {
                return Err(RestoreError::Server(o.stderr));
            }
            if String::from_utf8_lossy(&o.stdout).trim() == "added" {
                done.entries_added.push(e.path);
            }
        }
        // The server reads the file again when it changes: the account must now be known.
        if !r
            .sh(DOVECOT_KNOWS_SOON, &[account, conf])
            .await
            .map_err(ssh)?
            .ok
        {
            return Err(RestoreError::Server(format!(
                "{account} was added to {} but the server does not know it",
                plan.entries
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let scripts: Vec<_> = capture.sieve_of(account).collect();
    if scripts.is_empty() {
        return Ok(done);
    }
    let o = r.sh(SIEVE_LIST, &[account, conf]).await.map_err(ssh)?;
    if !o.ok {
        return Err(RestoreError::Server(o.stderr));
    }
    let have: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for script in scripts {
        if have.contains(&script.name) {
            done.filters_kept.push(script.name.clone());
            continue;
        }
        let active = if script.active { "1" } else { "0" };
        let o = r
            .sh_with_input(
                SIEVE_PUT,
                &[account, &script.name, active, conf],
                script.text.as_bytes(),
            )
            .await
            .map_err(ssh)?;
        if !o.ok {
            return Err(RestoreError::Server(o.stderr));
        }
        done.filters_added.push(script.name.clone());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passwd_files_are_read_from_doveconf_blocks_with_their_options_and_roles() {
        let conf = "passdb {\n  args = scheme=CRYPT username_format=%u /etc/dovecot/users\n  driver = passwd-file\n}\n\
                    passdb {\n  args = /etc/dovecot/dovecot-sql.conf.ext\n  driver = sql\n}\n\
                    userdb {\n  args = /etc/dovecot/%d/passwd\n  driver = passwd-file\n}\n\
                    userdb {\n  args = /etc/dovecot/users\n  default_fields = \n  driver = passwd-file\n}\n";
        assert_eq!(
            passwd_files(conf),
            [
                ("passdb".to_owned(), "/etc/dovecot/users".to_owned()),
                ("userdb".to_owned(), "/etc/dovecot/users".to_owned()),
            ]
        );
    }
}
