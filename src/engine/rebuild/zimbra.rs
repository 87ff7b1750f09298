//! Zimbra: what the server lacks is created with `zmprov -l` as the zimbra user, one batch on its
//! stdin (`-f /dev/stdin`: one JVM start, and the password hash on no command line). Only what
//! the server lacks is in the batch, so an error from it is a real failure (zmprov's batch mode
//! exits 0 whatever happened; its errors are read from stderr).
//!
//! Attributes the server sets itself or refuses (ProvUtil's immutable ones, the old mail host,
//! ids of another server's classes of service) are left out; the class of service is set again
//! by name (`sac`), aliases with `aaa`, list members with `adlm`, signatures and identities with
//! `csig`/`cid`. See docs/ZIMBRA.md.

use std::collections::BTreeSet;

use super::{connect, ssh, AccountPlan, Rebuilt};
use crate::config::EngineSettings;
use crate::engine::directory::{command_outputs, ZimbraDirectory, ZimbraEntry};
use crate::engine::link::Link;
use crate::engine::restore::RestoreError;

/// Runs the batch on stdin as the zimbra user.
const BATCH: &str = concat!(crate::engine::directory::zbatch_fn!(), "umask 077\nzbatch");

/// Left out when an account is created: set by the server, refused by it (immutable), or of the
/// old server (its mail host, its class of service's id, login state).
const DROP_ACCOUNT: &[&str] = &[
    "objectClass",
    "mail",
    "uid",
    "zimbraMailAlias",
    "zimbraMailDeliveryAddress",
    "zimbraCreateTimestamp",
    "zimbraLastLogonTimestamp",
    "zimbraMemberOf",
    "zimbraMailHost",
    "zimbraMailTransport",
    "zimbraCOSId",
    "zimbraMailboxInitialized",
    "zimbraMailAddress",
    "zimbraOldMailAddress",
    "zimbraPasswordModifiedTime",
    "zimbraAuthTokens",
    "zimbraAuthTokenValidityValue",
    "zimbraCsrfTokenData",
    "zimbraTwoFactorAuthSecret",
    "zimbraTwoFactorAuthScratchCodes",
    "zimbraTwoFactorAuthTrustedDevices",
    "zimbraAppSpecificPassword",
];
const DROP_DOMAIN: &[&str] = &[
    "objectClass",
    "zimbraId",
    "zimbraCreateTimestamp",
    "zimbraDomainName",
    "dc",
    "o",
    "zimbraDomainDefaultCOSId",
];
const DROP_COS: &[&str] = &["objectClass", "zimbraId", "zimbraCreateTimestamp", "cn"];
const DROP_LIST: &[&str] = &[
    "objectClass",
    "zimbraId",
    "zimbraCreateTimestamp",
    "mail",
    "uid",
    "zimbraMailAlias",
    "zimbraMailHost",
    "zimbraMailForwardingAddress",
    "zimbraMemberOf",
];
const DROP_SIGNATURE: &[&str] = &[
    "objectClass",
    "zimbraCreateTimestamp",
    "zimbraSignatureName",
];
const DROP_IDENTITY: &[&str] = &[
    "objectClass",
    "zimbraCreateTimestamp",
    "zimbraPrefIdentityName",
];
/// Every Zimbra has these classes of service from its installation.
const BUILT_IN_COS: &[&str] = &["default", "defaultExternal"];

/// A value as zmprov's batch parser reads it back: double-quoted, backslash escapes.
fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One batch line: `words…` then the entry's attributes but `drop`.
fn line(words: &[&str], entry: Option<(&ZimbraEntry, &[&str])>) -> String {
    let mut parts: Vec<String> = words.iter().map(|w| quote(w)).collect();
    if let Some((e, drop)) = entry {
        for (name, value) in &e.attrs {
            if !drop.contains(&name.as_str()) {
                parts.push(quote(name));
                parts.push(quote(value));
            }
        }
    }
    // The command itself is a bare word.
    parts[0] = words[0].to_owned();
    parts.join(" ") + "\n"
}

/// What the server has, by name.
#[derive(Default)]
struct Server {
    domains: BTreeSet<String>,
    cos: BTreeSet<String>,
    accounts: BTreeSet<String>,
    lists: BTreeSet<String>,
}

async fn run_batch(link: &Link<'_>, batch: &str) -> Result<String, RestoreError> {
    let o = link
        .remote()
        .sh_with_input(BATCH, &[], batch.as_bytes())
        .await
        .map_err(ssh)?;
    if !o.ok || !o.stderr.is_empty() {
        return Err(RestoreError::Server(format!("zmprov: {}", o.stderr)));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

async fn server_state(link: &Link<'_>) -> Result<Server, RestoreError> {
    let out = run_batch(link, "gad\ngac\ngaa\ngadl\n").await?;
    let outputs = command_outputs(&out);
    let names = |i: usize| -> BTreeSet<String> {
        outputs
            .get(i)
            .map(|o| {
                o.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Server {
        domains: names(0),
        cos: names(1),
        accounts: names(2),
        lists: names(3),
    })
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// The batch that makes `account` on a server that has `server`'s objects, and what it creates
/// beside the account, in plain words. `server` learns what the batch creates.
fn account_batch(
    z: &ZimbraDirectory,
    server: &mut Server,
    a: &ZimbraEntry,
) -> (String, Vec<String>) {
    let mut batch = String::new();
    let mut also = Vec::new();
    let aliases = a.all("zimbraMailAlias");
    let domains: BTreeSet<&str> = std::iter::once(domain_of(&a.name))
        .chain(aliases.iter().map(|x| domain_of(x)))
        .collect();
    for d in domains {
        if server.domains.contains(d) {
            continue;
        }
        if let Some(entry) = z.domains.iter().find(|e| e.name == d) {
            batch += &line(&["cd", d], Some((entry, DROP_DOMAIN)));
            also.push(format!("domain {d}"));
            server.domains.insert(d.to_owned());
        }
    }
    let cos = a
        .get("zimbraCOSId")
        .and_then(|id| z.cos.iter().find(|c| c.get("zimbraId") == Some(id)));
    if let Some(c) = cos {
        if !server.cos.contains(&c.name) && !BUILT_IN_COS.contains(&c.name.as_str()) {
            batch += &line(&["cc", &c.name], Some((c, DROP_COS)));
            also.push(format!("class of service {}", c.name));
            server.cos.insert(c.name.clone());
        }
    }
    batch += &line(&["ca", &a.name, ""], Some((a, DROP_ACCOUNT)));
    server.accounts.insert(a.name.clone());
    if let Some(c) = cos {
        batch += &line(&["sac", &a.name, &c.name], None);
    }
    for alias in aliases {
        batch += &line(&["aaa", &a.name, alias], None);
        also.push(format!("alias {alias}"));
    }
    // The account's own signature came with it; the others are entries of their own.
    let own = a.get("zimbraSignatureId");
    for sig in z.signatures.get(&a.name).into_iter().flatten() {
        if sig.get("zimbraSignatureId").is_some() && sig.get("zimbraSignatureId") == own {
            continue;
        }
        batch += &line(&["csig", &a.name, &sig.name], Some((sig, DROP_SIGNATURE)));
        also.push(format!("signature {}", sig.name));
    }
    for id in z.identities.get(&a.name).into_iter().flatten() {
        if id.name == "DEFAULT" {
            continue;
        }
        batch += &line(&["cid", &a.name, &id.name], Some((id, DROP_IDENTITY)));
        also.push(format!("identity {}", id.name));
    }
    for list in &z.lists {
        if !list.members.iter().any(|m| m.eq_ignore_ascii_case(&a.name)) {
            continue;
        }
        if !server.lists.contains(&list.name) {
            batch += &list_batch(z, list);
            also.push(format!("list {}", list.name));
            server.lists.insert(list.name.clone());
        }
        batch += &line(&["adlm", &list.name, &a.name], None);
        also.push(format!("list membership {}", list.name));
    }
    (batch, also)
}

/// A list made again, with its members from outside the capture's accounts (the accounts join
/// as each is made).
fn list_batch(z: &ZimbraDirectory, list: &ZimbraEntry) -> String {
    let mut batch = line(&["cdl", &list.name], Some((list, DROP_LIST)));
    let outside: Vec<&str> = list
        .members
        .iter()
        .filter(|m| z.account(m).is_none())
        .map(String::as_str)
        .collect();
    if !outside.is_empty() {
        let mut words = vec!["adlm", list.name.as_str()];
        words.extend(outside);
        batch += &line(&words, None);
    }
    batch
}

fn plan_of(a: &ZimbraEntry, exists: bool, also: Vec<String>) -> AccountPlan {
    AccountPlan {
        account: a.name.clone(),
        exists,
        entries: vec![("the Zimbra directory".into(), vec!["account".into()])],
        filters: a
            .get("zimbraMailSieveScript")
            .map(|_| ("zimbraMailSieveScript".to_owned(), true))
            .into_iter()
            .collect(),
        also,
    }
}

fn captured<'a>(
    z: &'a ZimbraDirectory,
    folder: &str,
    account: &str,
) -> Result<&'a ZimbraEntry, RestoreError> {
    z.account(account)
        .ok_or_else(|| RestoreError::NotInDirectory {
            account: account.to_owned(),
            folder: folder.to_owned(),
        })
}

pub(super) async fn plan(
    s: &EngineSettings,
    z: &ZimbraDirectory,
    folder: &str,
    account: &str,
) -> Result<AccountPlan, RestoreError> {
    let a = captured(z, folder, account)?;
    let link = connect(s).await?;
    let state = server_state(&link).await;
    link.close().await;
    let mut server = state?;
    if server.accounts.contains(account) {
        return Ok(plan_of(a, true, Vec::new()));
    }
    let (_, also) = account_batch(z, &mut server, a);
    Ok(plan_of(a, false, also))
}

pub(super) async fn rebuild(
    s: &EngineSettings,
    z: &ZimbraDirectory,
    folder: &str,
    account: &str,
) -> Result<(AccountPlan, Rebuilt), RestoreError> {
    let a = captured(z, folder, account)?;
    let link = connect(s).await?;
    let done = rebuild_on(&link, z, a).await;
    link.close().await;
    done
}

async fn rebuild_on(
    link: &Link<'_>,
    z: &ZimbraDirectory,
    a: &ZimbraEntry,
) -> Result<(AccountPlan, Rebuilt), RestoreError> {
    let mut server = server_state(link).await?;
    if server.accounts.contains(&a.name) {
        return Ok((plan_of(a, true, Vec::new()), Rebuilt::default()));
    }
    let (batch, also) = account_batch(z, &mut server, a);
    run_batch(link, &batch).await?;
    if !server_state(link).await?.accounts.contains(&a.name) {
        return Err(RestoreError::Server(format!(
            "zmprov created {} but the server does not list it",
            a.name
        )));
    }
    let plan = plan_of(a, false, also.clone());
    let done = Rebuilt {
        entries_added: vec!["the Zimbra directory".into()],
        filters_added: plan.filters.iter().map(|(n, _)| n.clone()).collect(),
        filters_kept: Vec::new(),
        also_added: also,
    };
    Ok((plan, done))
}

/// Domains, classes of service and lists the server lacks, made; every captured member added
/// to its list (zmprov skips a member the list has). Returns what was made, in plain words.
pub(super) async fn rest(
    s: &EngineSettings,
    z: &ZimbraDirectory,
    dry_run: bool,
) -> Result<Vec<String>, RestoreError> {
    let link = connect(s).await?;
    let done = rest_on(&link, z, dry_run).await;
    link.close().await;
    done
}

async fn rest_on(
    link: &Link<'_>,
    z: &ZimbraDirectory,
    dry_run: bool,
) -> Result<Vec<String>, RestoreError> {
    let server = server_state(link).await?;
    let mut batch = String::new();
    let mut made = Vec::new();
    for d in z
        .domains
        .iter()
        .filter(|d| !server.domains.contains(&d.name))
    {
        batch += &line(&["cd", &d.name], Some((d, DROP_DOMAIN)));
        made.push(format!("domain {}", d.name));
    }
    let missing_cos = |c: &&ZimbraEntry| {
        !server.cos.contains(&c.name) && !BUILT_IN_COS.contains(&c.name.as_str())
    };
    for c in z.cos.iter().filter(missing_cos) {
        batch += &line(&["cc", &c.name], Some((c, DROP_COS)));
        made.push(format!("class of service {}", c.name));
    }
    for list in &z.lists {
        if !server.lists.contains(&list.name) {
            batch += &line(&["cdl", &list.name], Some((list, DROP_LIST)));
            made.push(format!("list {}", list.name));
        }
        if !list.members.is_empty() {
            let mut words = vec!["adlm", list.name.as_str()];
            words.extend(list.members.iter().map(String::as_str));
            batch += &line(&words, None);
        }
    }
    if !dry_run && !batch.is_empty() {
        run_batch(link, &batch).await?;
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, attrs: &[(&str, &str)]) -> ZimbraEntry {
        ZimbraEntry {
            name: name.into(),
            attrs: attrs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            members: Vec::new(),
        }
    }

    #[test]
    fn an_account_is_made_with_its_hash_by_batch_and_what_the_server_refuses_left_out() {
        let ani = entry(
            "ani@djki.go.id",
            &[
                ("cn", "Ani"),
                ("mail", "ani@djki.go.id"),
                ("uid", "ani"),
                ("userPassword", "{SSHA512}a\"b\\c=="),
                ("zimbraCOSId", "cos-1"),
                ("zimbraMailAlias", "ani.s@djki.go.id"),
                ("zimbraMailHost", "old.djki.go.id"),
                (
                    "zimbraMailSieveScript",
                    "require \"fileinto\";\n\n# x\nkeep;",
                ),
                ("zimbraSignatureId", "sig-1"),
            ],
        );
        let mut list = entry("semua@djki.go.id", &[("displayName", "Semua")]);
        list.members = vec!["ani@djki.go.id".into(), "mitra@example.org".into()];
        let z = ZimbraDirectory {
            domains: vec![entry(
                "djki.go.id",
                &[("zimbraId", "d-1"), ("description", "DJKI")],
            )],
            cos: vec![entry(
                "pegawai",
                &[("zimbraId", "cos-1"), ("zimbraMailQuota", "1")],
            )],
            accounts: vec![ani.clone()],
            lists: vec![list],
            resources: Vec::new(),
            signatures: [(
                "ani@djki.go.id".to_owned(),
                vec![
                    entry("Ani", &[("zimbraSignatureId", "sig-1")]),
                    entry(
                        "Resmi",
                        &[
                            ("zimbraSignatureId", "sig-2"),
                            ("zimbraSignatureName", "Resmi"),
                        ],
                    ),
                ],
            )]
            .into(),
            identities: [("ani@djki.go.id".to_owned(), vec![entry("DEFAULT", &[])])].into(),
        };
        let mut server = Server::default();
        let (batch, also) = account_batch(&z, &mut server, &ani);
        let lines: Vec<&str> = batch.lines().collect();
        assert_eq!(
            lines,
            [
                r#"cd "djki.go.id" "description" "DJKI""#,
                r#"cc "pegawai" "zimbraMailQuota" "1""#,
                r#"ca "ani@djki.go.id" "" "cn" "Ani" "userPassword" "{SSHA512}a\"b\\c==" "zimbraMailSieveScript" "require \"fileinto\";\n\n# x\nkeep;" "zimbraSignatureId" "sig-1""#,
                r#"sac "ani@djki.go.id" "pegawai""#,
                r#"aaa "ani@djki.go.id" "ani.s@djki.go.id""#,
                r#"csig "ani@djki.go.id" "Resmi" "zimbraSignatureId" "sig-2""#,
                r#"cdl "semua@djki.go.id" "displayName" "Semua""#,
                r#"adlm "semua@djki.go.id" "mitra@example.org""#,
                r#"adlm "semua@djki.go.id" "ani@djki.go.id""#,
            ]
        );
        assert!(
            also.contains(&"list semua@djki.go.id".to_owned()),
            "{also:?}"
        );
        // What the batch made is known: a second account of the domain does not make it again.
        assert!(server.domains.contains("djki.go.id") && server.lists.contains("semua@djki.go.id"));
    }
}
