//! Zimbra: what the server lacks is created with `zmprov -l` as the zimbra user, in batches on
//! stdin (`-f`: one JVM start per batch, and the password hashes on no command line). A rebuild
//! of any number of accounts reads the server, makes the classes of service it lacks, reads
//! their new ids, makes everything else in one batch, and then reads the server again: what the
//! report says was made is what the server has afterwards, compared with the backup's directory
//! object by object (zmprov's batch mode goes on after an error and exits 0, so its word proves
//! nothing; its `ERROR:` lines are kept as the evidence).
//!
//! A rebuilt server is usually a fresh installation: new ids for its server, its classes of
//! service and its GAL account. What names the old server's objects is mapped to the new one's by
//! name (`zimbraCOSId`, a domain's default class of service, `zimbraMailHostPool` through the
//! captured servers' names) or left for the new server to set (`zimbraMailHost`, a pool whose
//! server is not there, the GAL account, rights granted to old ids), each said in the output.
//! What Zimbra refuses on create (`immutable="1"` in zimbra-attrs.xml) is never sent; a list's
//! own addresses come back with `adla`. See docs/DISASTER-RECOVERY.md.

use std::collections::{BTreeMap, BTreeSet};

use super::{connect, ssh, AccountOutcome, AccountPlan, DirectoryRebuild, Rebuilt};
use crate::config::EngineSettings;
use crate::engine::directory::{command_outputs, entries, ZimbraDirectory, ZimbraEntry};
use crate::engine::link::Link;
use crate::engine::restore::RestoreError;

/// Runs the batch on stdin as the zimbra user.
const BATCH: &str = concat!(crate::engine::directory::zbatch_fn!(), "umask 077\nzbatch");

/// zimbra-attrs.xml's `immutable="1"`: refused by every create (AttributeManager.preModify with
/// checkImmutable), so never sent. An account keeps its `zimbraId` (createAccount takes it as a
/// special attribute): its signatures, identities and shares name it.
const IMMUTABLE: &[&str] = &[
    "mail",
    "uid",
    "zimbraId",
    "zimbraMailAddress",
    "zimbraMemberOf",
    "zimbraMailDeliveryAddress",
    "zimbraDomainName",
    "zimbraMailAlias",
    "zimbraAliasTargetId",
    "zimbraAuthTokenKey",
    "zimbraLastLogonTimestamp",
    "zimbraDomainType",
    "zimbraMtaAuthURL",
    "zimbraGroupId",
    "zimbraNetworkLicense",
    "zimbraNetworkActivation",
    "zimbraXMPPServerDialbackKey",
    "zimbraCreateTimestamp",
    "zimbraSMIMELdapURL",
    "zimbraSMIMELdapStartTlsEnabled",
    "zimbraSMIMELdapBindDn",
    "zimbraSMIMELdapBindPassword",
    "zimbraSMIMELdapSearchBase",
    "zimbraSMIMELdapFilter",
    "zimbraSMIMELdapAttribute",
    "zimbraSMIMELdapDiscoverSearchBaseEnabled",
    "zimbraIsACLGroup",
    "zimbraAdminLocalBind",
    "zimbraMailLocalBind",
    "zimbraProduct",
    "zimbraExternalAccountProvisioningKey",
    "zimbraTwoFactorAuthSecret",
    "zimbraTwoFactorAuthScratchCodes",
    "zimbraAppSpecificPassword",
    "zimbraTwoFactorAuthTrustedDevices",
    "zimbraTwoFactorAuthTrustedDeviceTokenKey",
    "zimbraTwoFactorAuthLastReset",
    "zimbraOldMailAddress",
    "zimbraPreviousEphemeralBackendURL",
    "zimbraAttributeMigrationInfo",
    "zimbraMailboxInitialized",
    "zimbraNetworkRealtimeLicense",
    "zimbraNetworkRealtimeActivation",
    "zimbraOfflineNetworkRealtimeLicense",
    "zimbraFeatureActualUsageCount",
];
/// Never carried to the new server by any create: its own, or rights granted to the old
/// server's ids (the grantees are ids that name nothing there).
const DROP_ANY: &[&str] = &["objectClass", "zimbraACE"];
/// An account's: where it lived and how it logged in on the old server; its class of service is
/// sent as the new server's id for the same name. `uid`, `zimbraMailAlias` and
/// `zimbraMailDeliveryAddress` are refused by createAccount (sInvalidAccountCreateModifyAttrs).
const DROP_ACCOUNT: &[&str] = &[
    "zimbraMailHost",
    "zimbraMailTransport",
    "zimbraCOSId",
    "zimbraPasswordModifiedTime",
    "zimbraAuthTokens",
    "zimbraAuthTokenValidityValue",
    "zimbraCsrfTokenData",
];
/// A domain's ids of the old server: the classes of service are sent mapped by name, the GAL
/// sync account is not made again (see [`Rebuild::domain_line`]).
const DROP_DOMAIN: &[&str] = &[
    "dc",
    "o",
    "zimbraDomainDefaultCOSId",
    "zimbraDomainDefaultExternalUserCOSId",
    "zimbraDomainCOSMaxAccounts",
    "zimbraGalAccountId",
];
/// A class of service's name is the command's; its pool is sent mapped (see [`map_pool`]).
const DROP_COS: &[&str] = &["cn", "zimbraMailHostPool"];
const DROP_LIST: &[&str] = &["zimbraMailHost", "zimbraMailForwardingAddress"];
const DROP_SIGNATURE: &[&str] = &["zimbraSignatureName"];
const DROP_IDENTITY: &[&str] = &["zimbraPrefIdentityName"];
/// Every Zimbra has these classes of service from its installation.
const BUILT_IN_COS: &[&str] = &["default", "defaultExternal"];
/// What an account gets when neither it nor its domain names a class of service.
const FALLBACK_COS: &str = "default";

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

/// One batch line: the command (a bare word), its quoted words, then attribute pairs.
fn line(words: &[&str], attrs: &[(String, String)]) -> String {
    let mut parts = vec![words[0].to_owned()];
    parts.extend(words[1..].iter().map(|w| quote(w)));
    for (name, value) in attrs {
        parts.push(quote(name));
        parts.push(quote(value));
    }
    parts.join(" ") + "\n"
}

/// The entry's attributes but those in any of `drops` (attribute names are case-insensitive).
fn carried(e: &ZimbraEntry, drops: &[&[&str]]) -> Vec<(String, String)> {
    e.attrs
        .iter()
        .filter(|(n, _)| {
            !drops
                .iter()
                .any(|d| d.iter().any(|x| x.eq_ignore_ascii_case(n)))
        })
        .cloned()
        .collect()
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// A list as the server has it: its addresses beside its name, its members (lowercase).
#[derive(Clone, Default, PartialEq, Debug)]
struct ListState {
    aliases: BTreeSet<String>,
    members: BTreeSet<String>,
}

/// What the server has, by name.
#[derive(Clone, Default, Debug)]
struct Server {
    /// Domains, each with its default class of service's id.
    domains: BTreeMap<String, Option<String>>,
    /// Classes of service: name → id.
    cos: BTreeMap<String, String>,
    /// Servers: name → id.
    servers: BTreeMap<String, String>,
    accounts: BTreeSet<String>,
    /// Every list by name; the captured ones with what they hold.
    lists: BTreeMap<String, ListState>,
}

impl Server {
    fn cos_name(&self, id: &str) -> Option<&str> {
        self.cos
            .iter()
            .find(|(_, i)| i.as_str() == id)
            .map(|(n, _)| n.as_str())
    }

    /// The class of service an account gets from its own id, else its domain's default.
    fn effective_cos(&self, own: Option<&str>, domain: &str) -> String {
        own.and_then(|id| self.cos_name(id))
            .or_else(|| {
                self.domains
                    .get(domain)
                    .and_then(|d| d.as_deref())
                    .and_then(|id| self.cos_name(id))
            })
            .unwrap_or(FALLBACK_COS)
            .to_owned()
    }
}

/// The capture's answers to the same questions.
fn captured_cos_name<'a>(z: &'a ZimbraDirectory, id: &str) -> Option<&'a str> {
    z.cos
        .iter()
        .find(|c| c.get("zimbraId") == Some(id))
        .map(|c| c.name.as_str())
}

/// The class of service `a` had on the old server: its own, else its domain's default; and
/// whether it was its own.
fn captured_cos_of(z: &ZimbraDirectory, a: &ZimbraEntry) -> (String, bool) {
    if let Some(name) = a.get("zimbraCOSId").and_then(|id| captured_cos_name(z, id)) {
        return (name.to_owned(), true);
    }
    let by_domain = z
        .domains
        .iter()
        .find(|d| d.name == domain_of(&a.name))
        .and_then(|d| d.get("zimbraDomainDefaultCOSId"))
        .and_then(|id| captured_cos_name(z, id));
    (by_domain.unwrap_or(FALLBACK_COS).to_owned(), false)
}

fn domain_default_cos<'a>(z: &'a ZimbraDirectory, d: &ZimbraEntry) -> Option<&'a str> {
    d.get("zimbraDomainDefaultCOSId")
        .and_then(|id| captured_cos_name(z, id))
}

/// A list's own addresses beside its name.
fn list_aliases(list: &ZimbraEntry) -> BTreeSet<String> {
    list.all("zimbraMailAlias")
        .into_iter()
        .map(lower)
        .filter(|a| *a != lower(&list.name))
        .collect()
}

/// The old server's `zimbraMailHostPool` of a class of service, as the new server's ids: each
/// old id named by the captured server's name, found on the new server by that name. `None`
/// (with why) when any is not there: then the class is made without it and copies the new
/// server's default class's pool (createCos copies `default`).
fn map_pool(
    z: &ZimbraDirectory,
    server: &Server,
    c: &ZimbraEntry,
) -> (Option<Vec<(String, String)>>, Option<String>) {
    let old = c.all("zimbraMailHostPool");
    if old.is_empty() {
        return (None, None);
    }
    let mut mapped = Vec::new();
    for id in &old {
        let name = z
            .servers
            .iter()
            .find(|s| s.get("zimbraId") == Some(id))
            .map(|s| s.name.clone());
        match name
            .as_ref()
            .and_then(|n| server.servers.get(n).map(|i| (n, i)))
        {
            Some((n, new)) => mapped.push((n.clone(), new.clone())),
            None => {
                let what = name.map_or_else(
                    || format!("server id {id}, which the backup does not name"),
                    |n| format!("server {n} (id {id}), which this server does not have"),
                );
                return (
                    None,
                    Some(format!(
                        "class of service {}: its mail-host pool (zimbraMailHostPool) named the old {what}; left for the new server to set (copied from its default class of service)",
                        c.name
                    )),
                );
            }
        }
    }
    let names: Vec<&str> = mapped.iter().map(|(n, _)| n.as_str()).collect();
    let note = format!(
        "class of service {}: its mail-host pool (zimbraMailHostPool) mapped by server name to this server's id for {}",
        c.name,
        names.join(", ")
    );
    (
        Some(
            mapped
                .into_iter()
                .map(|(_, id)| ("zimbraMailHostPool".to_owned(), id))
                .collect(),
        ),
        Some(note),
    )
}

/// The part of the capture a rebuild makes: the accounts asked, and with `whole` every domain,
/// class of service and list of the capture too.
struct Scope<'a> {
    accounts: Vec<&'a ZimbraEntry>,
    domains: Vec<&'a ZimbraEntry>,
    cos: Vec<&'a ZimbraEntry>,
    lists: Vec<&'a ZimbraEntry>,
    whole: bool,
}

impl<'a> Scope<'a> {
    fn of(z: &'a ZimbraDirectory, accounts: Vec<&'a ZimbraEntry>, whole: bool) -> Scope<'a> {
        let asked: BTreeSet<String> = accounts.iter().map(|a| lower(&a.name)).collect();
        let lists: Vec<&ZimbraEntry> = z
            .lists
            .iter()
            .filter(|l| whole || l.members.iter().any(|m| asked.contains(&lower(m))))
            .collect();
        let mut domain_names: BTreeSet<String> = BTreeSet::new();
        for a in &accounts {
            domain_names.insert(domain_of(&a.name).to_owned());
            domain_names.extend(
                a.all("zimbraMailAlias")
                    .iter()
                    .map(|x| domain_of(x).to_owned()),
            );
        }
        for l in &lists {
            domain_names.insert(domain_of(&l.name).to_owned());
            domain_names.extend(list_aliases(l).iter().map(|x| domain_of(x).to_owned()));
        }
        let domains: Vec<&ZimbraEntry> = z
            .domains
            .iter()
            .filter(|d| whole || domain_names.contains(&d.name))
            .collect();
        let mut cos_names: BTreeSet<String> =
            accounts.iter().map(|a| captured_cos_of(z, a).0).collect();
        cos_names.extend(
            domains
                .iter()
                .filter_map(|d| domain_default_cos(z, d).map(str::to_owned)),
        );
        let cos = z
            .cos
            .iter()
            .filter(|c| !BUILT_IN_COS.contains(&c.name.as_str()))
            .filter(|c| whole || cos_names.contains(&c.name))
            .collect();
        Scope {
            accounts,
            domains,
            cos,
            lists,
            whole,
        }
    }
}

/// The batches of a rebuild, written against what the server has (`server`, which learns what
/// each batch makes), and what they make in plain words.
struct Rebuild<'a> {
    z: &'a ZimbraDirectory,
    server: Server,
    /// Shared objects made: "class of service pegawai", each once.
    made: Vec<String>,
    /// What was mapped or left for the new server to set.
    notes: Vec<String>,
    /// Per account: its aliases, signatures, identities and lists, in plain words.
    also: BTreeMap<String, Vec<String>>,
    /// Accounts the batch does not try to make, with why.
    skipped: BTreeMap<String, String>,
}

impl<'a> Rebuild<'a> {
    fn new(z: &'a ZimbraDirectory, server: Server) -> Rebuild<'a> {
        Rebuild {
            z,
            server,
            made: Vec::new(),
            notes: Vec::new(),
            also: BTreeMap::new(),
            skipped: BTreeMap::new(),
        }
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// The classes of service the server lacks (their ids are read before anything names them).
    fn cos_batch(&mut self, scope: &Scope) -> String {
        let mut batch = String::new();
        for c in &scope.cos {
            if self.server.cos.contains_key(&c.name) {
                continue;
            }
            let mut attrs = carried(c, &[IMMUTABLE, DROP_ANY, DROP_COS]);
            let (pool, note) = map_pool(self.z, &self.server, c);
            attrs.extend(pool.unwrap_or_default());
            if let Some(note) = note {
                self.note(note);
            }
            batch += &line(&["cc", &c.name], &attrs);
            self.made.push(format!("class of service {}", c.name));
            // Until its id is read back, a placeholder (a dry run never reads it).
            self.server.cos.insert(
                c.name.clone(),
                format!("(id of new class of service {})", c.name),
            );
        }
        batch
    }

    /// The id of the class of service named `name` on this server.
    fn cos_id(&self, name: &str) -> Option<String> {
        self.server.cos.get(name).cloned()
    }

    /// A domain made again, or its default class of service set again when it exists without one.
    fn domain_line(&mut self, d: &ZimbraEntry) -> String {
        let default = domain_default_cos(self.z, d).map(str::to_owned);
        if let Some(now) = self.server.domains.get(&d.name).cloned() {
            let Some(want) = default.filter(|w| w != FALLBACK_COS) else {
                return String::new();
            };
            if now.is_some() {
                // Set by the new server's admin: compared afterwards, never overwritten.
                return String::new();
            }
            return match self.cos_id(&want) {
                Some(id) => {
                    self.made.push(format!(
                        "default class of service of domain {} ({want})",
                        d.name
                    ));
                    self.server.domains.insert(d.name.clone(), Some(id.clone()));
                    line(&["md", &d.name], &[("zimbraDomainDefaultCOSId".into(), id)])
                }
                None => String::new(),
            };
        }
        let mut attrs = carried(d, &[IMMUTABLE, DROP_ANY, DROP_DOMAIN]);
        // createDomain takes these two on create and refuses them afterwards.
        for keep in ["zimbraDomainType", "zimbraDomainStatus"] {
            if let Some(v) = d.get(keep) {
                if !attrs.iter().any(|(n, _)| n == keep) {
                    attrs.push((keep.into(), v.into()));
                }
            }
        }
        let mut default_id = None;
        for (attr, cos) in [
            ("zimbraDomainDefaultCOSId", default.clone()),
            (
                "zimbraDomainDefaultExternalUserCOSId",
                d.get("zimbraDomainDefaultExternalUserCOSId")
                    .and_then(|id| captured_cos_name(self.z, id))
                    .map(str::to_owned),
            ),
        ] {
            if let Some(name) = cos {
                if let Some(id) = self.cos_id(&name) {
                    if attr == "zimbraDomainDefaultCOSId" {
                        default_id = Some(id.clone());
                    }
                    attrs.push((attr.into(), id));
                }
            }
        }
        for limit in d.all("zimbraDomainCOSMaxAccounts") {
            let mapped = limit.split_once(':').and_then(|(id, n)| {
                let name = captured_cos_name(self.z, id)?;
                Some(format!("{}:{n}", self.cos_id(name)?))
            });
            match mapped {
                Some(v) => attrs.push(("zimbraDomainCOSMaxAccounts".into(), v)),
                None => self.note(format!(
                    "domain {}: the account limit {limit} (zimbraDomainCOSMaxAccounts) names a class of service this server lacks; left out",
                    d.name
                )),
            }
        }
        if d.get("zimbraGalAccountId").is_some() {
            self.note(format!(
                "domain {}: its GAL sync account (zimbraGalAccountId) is not made again; make one with zmgsautil createAccount (see docs/DISASTER-RECOVERY.md)",
                d.name
            ));
        }
        self.made.push(format!("domain {}", d.name));
        self.server.domains.insert(d.name.clone(), default_id);
        line(&["cd", &d.name], &attrs)
    }

    /// An account the server lacks, with its aliases, signatures and identities.
    fn account_lines(&mut self, a: &ZimbraEntry) -> String {
        if self.server.accounts.contains(&a.name) {
            return String::new();
        }
        if !self.server.domains.contains_key(domain_of(&a.name)) {
            self.skipped.insert(
                a.name.clone(),
                format!("its domain {} is not on the server", domain_of(&a.name)),
            );
            return String::new();
        }
        let mut attrs = carried(a, &[DROP_ANY, DROP_ACCOUNT]);
        attrs.retain(|(n, _)| {
            n == "zimbraId" || !IMMUTABLE.iter().any(|x| x.eq_ignore_ascii_case(n))
        });
        let (cos, own) = captured_cos_of(self.z, a);
        if own {
            match self.cos_id(&cos) {
                Some(id) => attrs.push(("zimbraCOSId".into(), id)),
                None => {
                    let why = format!("its class of service {cos} is not on the server");
                    self.skipped.insert(a.name.clone(), why);
                    return String::new();
                }
            }
        }
        self.note(
            "zimbraMailHost of every account made: left for the new server to set (from the account's class of service)".into(),
        );
        let mut batch = line(&["ca", &a.name, ""], &attrs);
        self.server.accounts.insert(a.name.clone());
        let also = self.also.entry(a.name.clone()).or_default();
        for alias in a.all("zimbraMailAlias") {
            batch += &line(&["aaa", &a.name, alias], &[]);
            also.push(format!("alias {alias}"));
        }
        // The account's own signature came with it; the others are entries of their own.
        let own_sig = a.get("zimbraSignatureId");
        for sig in self.z.signatures.get(&a.name).into_iter().flatten() {
            if sig.get("zimbraSignatureId").is_some() && sig.get("zimbraSignatureId") == own_sig {
                continue;
            }
            let attrs = carried(sig, &[IMMUTABLE, DROP_ANY, DROP_SIGNATURE]);
            batch += &line(&["csig", &a.name, &sig.name], &attrs);
            also.push(format!("signature {}", sig.name));
        }
        for id in self.z.identities.get(&a.name).into_iter().flatten() {
            if id.name == "DEFAULT" {
                continue;
            }
            let attrs = carried(id, &[IMMUTABLE, DROP_ANY, DROP_IDENTITY]);
            batch += &line(&["cid", &a.name, &id.name], &attrs);
            also.push(format!("identity {}", id.name));
        }
        batch
    }

    /// A list the server lacks, its addresses and the members it lacks (all of them with
    /// `whole`; else the asked accounts and the members from outside the capture's accounts).
    fn list_lines(&mut self, list: &ZimbraEntry, asked: &BTreeSet<String>, whole: bool) -> String {
        let mut batch = String::new();
        let now = match self.server.lists.get(&list.name) {
            Some(state) => state.clone(),
            None => {
                if !self.server.domains.contains_key(domain_of(&list.name)) {
                    return batch;
                }
                let attrs = carried(list, &[IMMUTABLE, DROP_ANY, DROP_LIST]);
                batch += &line(&["cdl", &list.name], &attrs);
                self.made.push(format!("list {}", list.name));
                ListState::default()
            }
        };
        let mut state = now.clone();
        for alias in list_aliases(list) {
            if !now.aliases.contains(&alias) {
                batch += &line(&["adla", &list.name, &alias], &[]);
                self.made.push(format!("list alias {alias}"));
                state.aliases.insert(alias);
            }
        }
        let wanted: Vec<&str> = list
            .members
            .iter()
            .map(String::as_str)
            .filter(|m| !now.members.contains(&lower(m)))
            .filter(|m| whole || asked.contains(&lower(m)) || self.z.account(m).is_none())
            .collect();
        if !wanted.is_empty() {
            let mut words = vec!["adlm", list.name.as_str()];
            words.extend(&wanted);
            batch += &line(&words, &[]);
            for m in &wanted {
                state.members.insert(lower(m));
                if let Some(also) = self.also.get_mut(*m) {
                    also.push(format!("member of list {}", list.name));
                }
            }
        }
        self.server.lists.insert(list.name.clone(), state);
        batch
    }

    /// Everything but the classes of service, in the order Zimbra needs: domains, accounts with
    /// their aliases, signatures and identities, then every list before any member is added (a
    /// list may be a member of another).
    fn main_batch(&mut self, scope: &Scope) -> String {
        let mut batch = String::new();
        for d in &scope.domains {
            batch += &self.domain_line(d);
        }
        for a in &scope.accounts {
            batch += &self.account_lines(a);
        }
        let asked: BTreeSet<String> = scope.accounts.iter().map(|a| lower(&a.name)).collect();
        for list in &scope.lists {
            batch += &self.list_lines(list, &asked, scope.whole);
        }
        batch
    }
}

/// The `ERROR:` lines a batch printed.
fn errors_of(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Runs a batch that only reads: anything on stderr is a failure.
async fn read_batch(link: &Link<'_>, batch: &str) -> Result<String, RestoreError> {
    let (out, errors) = write_batch(link, batch).await?;
    if !errors.is_empty() {
        return Err(RestoreError::Server(format!(
            "zmprov: {}",
            errors.join("; ")
        )));
    }
    Ok(out)
}

/// Runs a batch; its output and its error lines (zmprov goes on after an error and exits 0).
async fn write_batch(link: &Link<'_>, batch: &str) -> Result<(String, Vec<String>), RestoreError> {
    if batch.is_empty() {
        return Ok((String::new(), Vec::new()));
    }
    let o = link
        .remote()
        .sh_with_input(BATCH, &[], batch.as_bytes())
        .await
        .map_err(ssh)?;
    if !o.ok {
        return Err(RestoreError::Server(format!(
            "zmprov did not run: {}",
            o.stderr.trim()
        )));
    }
    Ok((
        String::from_utf8_lossy(&o.stdout).into_owned(),
        errors_of(&o.stderr),
    ))
}

fn names(output: Option<&&str>) -> Vec<String> {
    output
        .map(|o| {
            o.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The first entry of each of a batch's answers (`None` where a command printed nothing).
fn first_entries(out: &str) -> Vec<Option<ZimbraEntry>> {
    command_outputs(out)
        .into_iter()
        .map(|o| entries(o).into_iter().next())
        .collect()
}

/// What the server has of the capture's objects: names, ids, domains' defaults, and the captured
/// lists' addresses and members. Two batches.
async fn read_server(link: &Link<'_>, z: &ZimbraDirectory) -> Result<Server, RestoreError> {
    let out = read_batch(link, "gad\ngac\ngaa\ngadl\ngas\n").await?;
    let outputs = command_outputs(&out);
    let (domains, cos, accounts, lists, servers) = (
        names(outputs.first()),
        names(outputs.get(1)),
        names(outputs.get(2)),
        names(outputs.get(3)),
        names(outputs.get(4)),
    );
    let known_lists: Vec<&ZimbraEntry> =
        z.lists.iter().filter(|l| lists.contains(&l.name)).collect();
    let mut batch = String::new();
    for c in &cos {
        batch += &line(&["gc", c, "zimbraId"], &[]);
    }
    for s in &servers {
        batch += &line(&["gs", s, "zimbraId"], &[]);
    }
    for d in &domains {
        batch += &line(&["gd", d, "zimbraDomainDefaultCOSId"], &[]);
    }
    for l in &known_lists {
        batch += &line(&["gdl", &l.name], &[]);
    }
    let details = first_entries(&read_batch(link, &batch).await?);
    let mut it = details.into_iter();
    let mut next = || it.next().flatten();
    let mut server = Server::default();
    for c in cos {
        let id = next().and_then(|e| e.get("zimbraId").map(str::to_owned));
        server.cos.insert(c, id.unwrap_or_default());
    }
    for s in servers {
        let id = next().and_then(|e| e.get("zimbraId").map(str::to_owned));
        server.servers.insert(s, id.unwrap_or_default());
    }
    for d in domains {
        let default = next().and_then(|e| e.get("zimbraDomainDefaultCOSId").map(str::to_owned));
        server.domains.insert(d, default);
    }
    let mut state_of = BTreeMap::new();
    for l in &known_lists {
        let state = next().map(|e| ListState {
            aliases: list_aliases(&e),
            members: e.members.iter().map(|m| lower(m)).collect(),
        });
        state_of.insert(l.name.clone(), state.unwrap_or_default());
    }
    for l in lists {
        let state = state_of.remove(&l).unwrap_or_default();
        server.lists.insert(l, state);
    }
    server.accounts = accounts.into_iter().collect();
    Ok(server)
}

/// The error lines that name `words` (an object's name, its addresses): the server's own words
/// on why it is not as the backup had it.
fn evidence(errors: &[String], words: &[&str]) -> Vec<String> {
    errors
        .iter()
        .filter(|e| {
            let e = e.to_lowercase();
            words
                .iter()
                .any(|w| !w.is_empty() && e.contains(&w.to_lowercase()))
        })
        .cloned()
        .collect()
}

fn with_evidence(what: String, errors: &[String], words: &[&str]) -> String {
    let said = evidence(errors, words);
    if said.is_empty() {
        what
    } else {
        format!("{what} (zmprov: {})", said.join("; "))
    }
}

/// The created accounts read back: each one's class of service, aliases, filter, password,
/// signatures and identities, compared with the capture.
async fn read_accounts(
    link: &Link<'_>,
    made: &[&ZimbraEntry],
) -> Result<Vec<(Option<ZimbraEntry>, Vec<String>, Vec<String>)>, RestoreError> {
    let mut batch = String::new();
    for a in made {
        batch += &line(
            &[
                "ga",
                &a.name,
                "zimbraCOSId",
                "zimbraMailAlias",
                "zimbraMailSieveScript",
                "userPassword",
            ],
            &[],
        );
        batch += &line(&["gsig", &a.name], &[]);
        batch += &line(&["gid", &a.name], &[]);
    }
    let (out, _) = write_batch(link, &batch).await?;
    let outputs = command_outputs(&out);
    let entry_names = |i: usize| -> Vec<String> {
        outputs
            .get(i)
            .map(|o| entries(o).into_iter().map(|e| e.name).collect())
            .unwrap_or_default()
    };
    Ok((0..made.len())
        .map(|i| {
            let account = outputs
                .get(3 * i)
                .and_then(|o| entries(o).into_iter().next());
            (account, entry_names(3 * i + 1), entry_names(3 * i + 2))
        })
        .collect())
}

/// Where the server, read after the batches, differs from the capture: per created account, and
/// for the other objects of the scope.
fn compare_account(
    z: &ZimbraDirectory,
    server: &Server,
    a: &ZimbraEntry,
    read: &(Option<ZimbraEntry>, Vec<String>, Vec<String>),
    errors: &[String],
) -> (Rebuilt, Vec<String>) {
    let mut done = Rebuilt::default();
    let mut differs = Vec::new();
    let words: Vec<&str> = std::iter::once(a.name.as_str())
        .chain(a.all("zimbraMailAlias"))
        .collect();
    let Some(now) = &read.0 else {
        differs.push(with_evidence(
            "it is not on the server after the rebuild".into(),
            errors,
            &words,
        ));
        return (done, differs);
    };
    done.entries_added.push("the Zimbra directory".into());
    if now.get("userPassword") != a.get("userPassword") {
        differs.push("its password hash on the server is not the one backed up".into());
    }
    let (want, _) = captured_cos_of(z, a);
    let got = server.effective_cos(now.get("zimbraCOSId"), domain_of(&a.name));
    if want != got {
        differs.push(format!(
            "its class of service is {got} on the server, {want} in the backup"
        ));
    }
    let has: BTreeSet<String> = now.all("zimbraMailAlias").into_iter().map(lower).collect();
    for alias in a.all("zimbraMailAlias") {
        if has.contains(&lower(alias)) {
            done.also_added.push(format!("alias {alias}"));
        } else {
            differs.push(with_evidence(
                format!("its alias {alias} is not on the server"),
                errors,
                &[alias],
            ));
        }
    }
    if let Some(script) = a.get("zimbraMailSieveScript") {
        if now.get("zimbraMailSieveScript") == Some(script) {
            done.filters_added.push("zimbraMailSieveScript".into());
        } else {
            differs.push("its mail filter (zimbraMailSieveScript) is not the one backed up".into());
        }
    }
    let own_sig = a.get("zimbraSignatureId");
    for sig in z.signatures.get(&a.name).into_iter().flatten() {
        let own = sig.get("zimbraSignatureId").is_some() && sig.get("zimbraSignatureId") == own_sig;
        if read.1.contains(&sig.name) {
            if !own {
                done.also_added.push(format!("signature {}", sig.name));
            }
        } else {
            differs.push(format!("its signature {} is not on the server", sig.name));
        }
    }
    for id in z.identities.get(&a.name).into_iter().flatten() {
        if id.name == "DEFAULT" {
            continue;
        }
        if read.2.contains(&id.name) {
            done.also_added.push(format!("identity {}", id.name));
        } else {
            differs.push(format!("its identity {} is not on the server", id.name));
        }
    }
    for list in z
        .lists
        .iter()
        .filter(|l| l.members.iter().any(|m| m.eq_ignore_ascii_case(&a.name)))
    {
        match server.lists.get(&list.name) {
            Some(state) if state.members.contains(&lower(&a.name)) => {
                done.also_added
                    .push(format!("member of list {}", list.name));
            }
            _ => differs.push(format!("it is not a member of list {}", list.name)),
        }
    }
    (done, differs)
}

/// The scope's other objects compared: domains (with their default class of service), classes
/// of service, lists with their addresses and members.
fn compare_rest(
    z: &ZimbraDirectory,
    server: &Server,
    scope: &Scope,
    errors: &[String],
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    // An object missing afterwards, with zmprov's errors that name any of `words` as evidence.
    let gone = |what: String, words: &[&str]| {
        (
            what,
            with_evidence("it is not on the server".into(), errors, words),
        )
    };
    for c in &scope.cos {
        if !server.cos.contains_key(&c.name) {
            let mut words = vec![c.name.as_str()];
            words.extend(c.all("zimbraMailHostPool"));
            failed.push(gone(format!("class of service {}", c.name), &words));
        }
    }
    for d in &scope.domains {
        let Some(now) = server.domains.get(&d.name) else {
            failed.push(gone(format!("domain {}", d.name), &[&d.name]));
            continue;
        };
        let want = domain_default_cos(z, d).unwrap_or(FALLBACK_COS);
        let got = now
            .as_deref()
            .and_then(|id| server.cos_name(id))
            .unwrap_or(FALLBACK_COS);
        if want != got {
            failed.push((
                format!("domain {}", d.name),
                format!("its default class of service is {got} on the server, {want} in the backup (left as the server has it)"),
            ));
        }
    }
    for list in &scope.lists {
        let Some(now) = server.lists.get(&list.name) else {
            failed.push(gone(format!("list {}", list.name), &[&list.name]));
            continue;
        };
        let lacks: Vec<String> = list_aliases(list)
            .difference(&now.aliases)
            .cloned()
            .collect();
        if !lacks.is_empty() {
            let words: Vec<&str> = lacks.iter().map(String::as_str).collect();
            failed.push((
                format!("list {}", list.name),
                with_evidence(
                    format!("its address(es) {} are not on the server", lacks.join(", ")),
                    errors,
                    &words,
                ),
            ));
        }
        let asked: BTreeSet<String> = scope.accounts.iter().map(|a| lower(&a.name)).collect();
        let missing: Vec<&str> = list
            .members
            .iter()
            .filter(|m| !now.members.contains(&lower(m)))
            .filter(|m| scope.whole || asked.contains(&lower(m)) || z.account(m).is_none())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            failed.push((
                format!("list {}", list.name),
                with_evidence(
                    format!("member(s) {} are not in it", missing.join(", ")),
                    errors,
                    &missing,
                ),
            ));
        }
    }
    failed
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

/// Rebuilds (or, with `dry_run`, plans) `accounts` of the capture, and with `whole` every other
/// object of it, on the server `s` reaches.
pub(super) async fn rebuild_accounts(
    s: &EngineSettings,
    z: &ZimbraDirectory,
    folder: &str,
    accounts: &[String],
    whole: bool,
    dry_run: bool,
) -> Result<DirectoryRebuild, RestoreError> {
    let mut entries = Vec::new();
    for name in accounts {
        entries.push(
            z.account(name)
                .ok_or_else(|| RestoreError::NotInDirectory {
                    account: name.clone(),
                    folder: folder.to_owned(),
                })?,
        );
    }
    let link = connect(s).await?;
    let done = rebuild_on(&link, z, entries, whole, dry_run).await;
    link.close().await;
    done
}

async fn rebuild_on(
    link: &Link<'_>,
    z: &ZimbraDirectory,
    accounts: Vec<&ZimbraEntry>,
    whole: bool,
    dry_run: bool,
) -> Result<DirectoryRebuild, RestoreError> {
    let scope = Scope::of(z, accounts, whole);
    let before = read_server(link, z).await?;
    let existed: BTreeSet<String> = before.accounts.clone();
    let mut rebuild = Rebuild::new(z, before);
    let cos_batch = rebuild.cos_batch(&scope);
    let mut errors = Vec::new();
    if !dry_run && !cos_batch.is_empty() {
        let (_, said) = write_batch(link, &cos_batch).await?;
        errors.extend(said);
        // The new classes' ids, as the server gave them.
        let now = read_server(link, z).await?;
        rebuild.server.cos = now.cos;
    }
    let main = rebuild.main_batch(&scope);
    let plans: Vec<AccountPlan> = scope
        .accounts
        .iter()
        .map(|a| {
            let exists = existed.contains(&a.name);
            let also = if exists {
                Vec::new()
            } else {
                rebuild.also.get(&a.name).cloned().unwrap_or_default()
            };
            plan_of(a, exists, also)
        })
        .collect();
    let mut result = DirectoryRebuild {
        made: rebuild.made.clone(),
        notes: rebuild.notes.clone(),
        ..DirectoryRebuild::default()
    };
    if dry_run {
        for (a, plan) in scope.accounts.iter().zip(plans) {
            let failures: Vec<String> = rebuild.skipped.get(&a.name).cloned().into_iter().collect();
            result.accounts.push(AccountOutcome {
                on_server: plan.exists,
                plan,
                done: Rebuilt::default(),
                failures,
            });
        }
        return Ok(result);
    }
    let (_, said) = write_batch(link, &main).await?;
    errors.extend(said);
    // The truth: the server read again.
    let after = read_server(link, z).await?;
    let made: Vec<&ZimbraEntry> = scope
        .accounts
        .iter()
        .copied()
        .filter(|a| !existed.contains(&a.name))
        .collect();
    let mut reads = read_accounts(link, &made).await?.into_iter();
    for (a, plan) in scope.accounts.iter().zip(plans) {
        if plan.exists {
            result.accounts.push(AccountOutcome {
                on_server: true,
                plan,
                done: Rebuilt::default(),
                failures: Vec::new(),
            });
            continue;
        }
        let read = reads.next().unwrap_or_default();
        let (done, mut failures) = compare_account(z, &after, a, &read, &errors);
        if let Some(why) = rebuild.skipped.get(&a.name) {
            failures.insert(0, format!("not made: {why}"));
        }
        result.accounts.push(AccountOutcome {
            on_server: read.0.is_some() && after.accounts.contains(&a.name),
            plan,
            done,
            failures,
        });
    }
    // Only what is there now is said to be made.
    result.made.retain(|what| made_and_there(what, &after));
    result.failed = compare_rest(z, &after, &scope, &errors);
    // Every error line is shown somewhere: those that name no object stand on their own.
    let named: BTreeSet<&String> = result
        .accounts
        .iter()
        .flat_map(|o| o.failures.iter())
        .chain(result.failed.iter().map(|(_, why)| why))
        .flat_map(|text| errors.iter().filter(move |e| text.contains(e.as_str())))
        .collect();
    for e in &errors {
        if !named.contains(e) {
            result.failed.push(("zmprov".into(), e.clone()));
        }
    }
    Ok(result)
}

/// Whether a shared object said made ("list x@y") is on the server read afterwards.
fn made_and_there(what: &str, after: &Server) -> bool {
    if let Some(name) = what.strip_prefix("class of service ") {
        return after.cos.contains_key(name);
    }
    if let Some(name) = what.strip_prefix("domain ") {
        return after.domains.contains_key(name);
    }
    if let Some(name) = what.strip_prefix("list alias ") {
        return after.lists.values().any(|l| l.aliases.contains(name));
    }
    if let Some(name) = what.strip_prefix("list ") {
        return after.lists.contains_key(name);
    }
    if let Some(rest) = what.strip_prefix("default class of service of domain ") {
        let (domain, cos) = rest.split_once(" (").unwrap_or((rest, ""));
        let cos = cos.trim_end_matches(')');
        return after
            .domains
            .get(domain)
            .and_then(|d| d.as_deref())
            .and_then(|id| after.cos_name(id))
            == Some(cos);
    }
    true
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

    const OLD_SERVER: &str = "11111111-0000-4000-8000-000000000001";
    const NEW_SERVER: &str = "22222222-0000-4000-8000-000000000002";

    /// An old server's directory: `pegawai` the domain's default, `pimpinan` given directly.
    fn directory() -> ZimbraDirectory {
        let ani = entry(
            "ani@djki.go.id",
            &[
                ("cn", "Ani"),
                ("mail", "ani@djki.go.id"),
                ("uid", "ani"),
                ("userPassword", "{SSHA512}a\"b\\c=="),
                ("zimbraCOSId", "cos-pimpinan"),
                ("zimbraId", "acc-ani"),
                ("zimbraMailAlias", "ani.s@djki.go.id"),
                ("zimbraMailHost", "old.djki.go.id"),
                ("zimbraACE", "grantee-old-id usr +sendAs"),
                (
                    "zimbraMailSieveScript",
                    "require \"fileinto\";\n\n# x\nkeep;",
                ),
                ("zimbraSignatureId", "sig-1"),
            ],
        );
        let umum = entry(
            "bagian/umum@djki.go.id",
            &[("userPassword", "{SSHA512}u"), ("zimbraId", "acc-umum")],
        );
        let mut list = entry(
            "semua@djki.go.id",
            &[
                ("displayName", "Semua"),
                ("zimbraMailAlias", "semua@djki.go.id"),
                ("zimbraMailAlias", "seluruh.pegawai@djki.go.id"),
                ("zimbraId", "list-1"),
            ],
        );
        list.members = vec![
            "ani@djki.go.id".into(),
            "bagian/umum@djki.go.id".into(),
            "mitra@example.org".into(),
        ];
        ZimbraDirectory {
            domains: vec![entry(
                "djki.go.id",
                &[
                    ("zimbraId", "d-1"),
                    ("description", "DJKI"),
                    ("zimbraDomainType", "local"),
                    ("zimbraDomainDefaultCOSId", "cos-pegawai"),
                    ("zimbraGalAccountId", "gal-old"),
                ],
            )],
            cos: vec![
                entry(
                    "default",
                    &[
                        ("zimbraId", "cos-default"),
                        ("zimbraMailHostPool", OLD_SERVER),
                    ],
                ),
                entry(
                    "pegawai",
                    &[
                        ("cn", "pegawai"),
                        ("zimbraId", "cos-pegawai"),
                        ("zimbraMailQuota", "1"),
                        ("zimbraMailHostPool", OLD_SERVER),
                    ],
                ),
                entry(
                    "pimpinan",
                    &[
                        ("zimbraId", "cos-pimpinan"),
                        ("zimbraMailQuota", "2"),
                        ("zimbraMailHostPool", OLD_SERVER),
                    ],
                ),
            ],
            accounts: vec![ani, umum],
            lists: vec![list],
            resources: Vec::new(),
            servers: vec![entry("mail.djki.go.id", &[("zimbraId", OLD_SERVER)])],
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
        }
    }

    /// A freshly installed server: its domain without a default class, `default` only.
    fn reinstalled() -> Server {
        Server {
            domains: [("djki.go.id".to_owned(), None)].into(),
            cos: [("default".to_owned(), "cos-new-default".to_owned())].into(),
            servers: [("mail.djki.go.id".to_owned(), NEW_SERVER.to_owned())].into(),
            accounts: ["admin@djki.go.id".to_owned()].into(),
            lists: BTreeMap::new(),
        }
    }

    #[test]
    fn onto_a_reinstalled_server_ids_are_mapped_by_name_and_the_list_keeps_its_addresses() {
        let z = directory();
        let accounts: Vec<&ZimbraEntry> = z.accounts.iter().collect();
        let scope = Scope::of(&z, accounts, true);
        let mut r = Rebuild::new(&z, reinstalled());
        let cos: Vec<String> = r.cos_batch(&scope).lines().map(str::to_owned).collect();
        assert_eq!(
            cos,
            [
                format!(
                    r#"cc "pegawai" "zimbraMailQuota" "1" "zimbraMailHostPool" "{NEW_SERVER}""#
                ),
                format!(
                    r#"cc "pimpinan" "zimbraMailQuota" "2" "zimbraMailHostPool" "{NEW_SERVER}""#
                ),
            ]
        );
        // The server gives the new classes their ids.
        r.server
            .cos
            .insert("pegawai".into(), "cos-new-pegawai".into());
        r.server
            .cos
            .insert("pimpinan".into(), "cos-new-pimpinan".into());
        let main = r.main_batch(&scope);
        let lines: Vec<&str> = main.lines().collect();
        assert_eq!(
            lines,
            [
                r#"md "djki.go.id" "zimbraDomainDefaultCOSId" "cos-new-pegawai""#,
                r#"ca "ani@djki.go.id" "" "cn" "Ani" "userPassword" "{SSHA512}a\"b\\c==" "zimbraId" "acc-ani" "zimbraMailSieveScript" "require \"fileinto\";\n\n# x\nkeep;" "zimbraSignatureId" "sig-1" "zimbraCOSId" "cos-new-pimpinan""#,
                r#"aaa "ani@djki.go.id" "ani.s@djki.go.id""#,
                r#"csig "ani@djki.go.id" "Resmi" "zimbraSignatureId" "sig-2""#,
                r#"ca "bagian/umum@djki.go.id" "" "userPassword" "{SSHA512}u" "zimbraId" "acc-umum""#,
                r#"cdl "semua@djki.go.id" "displayName" "Semua""#,
                r#"adla "semua@djki.go.id" "seluruh.pegawai@djki.go.id""#,
                r#"adlm "semua@djki.go.id" "ani@djki.go.id" "bagian/umum@djki.go.id" "mitra@example.org""#,
            ]
        );
        assert_eq!(
            r.made,
            [
                "class of service pegawai",
                "class of service pimpinan",
                "default class of service of domain djki.go.id (pegawai)",
                "list semua@djki.go.id",
                "list alias seluruh.pegawai@djki.go.id",
            ]
        );
        assert!(
            r.notes.iter().any(|n| n.contains("pegawai: its mail-host pool (zimbraMailHostPool) mapped by server name to this server's id for mail.djki.go.id")),
            "{:?}",
            r.notes
        );
        // A second plan against the server as the batch left it makes nothing.
        let mut again = Rebuild::new(&z, r.server.clone());
        assert_eq!(again.cos_batch(&scope), "");
        assert_eq!(again.main_batch(&scope), "");
    }

    #[test]
    fn a_pool_or_gal_account_of_a_server_that_is_not_there_is_left_for_the_new_server_and_said() {
        let z = directory();
        let mut server = reinstalled();
        server.servers = [("mail-baru.djki.go.id".to_owned(), NEW_SERVER.to_owned())].into();
        server.domains.clear();
        let scope = Scope::of(&z, vec![&z.accounts[1]], false);
        let mut r = Rebuild::new(&z, server);
        assert_eq!(
            r.cos_batch(&scope),
            "cc \"pegawai\" \"zimbraMailQuota\" \"1\"\n",
            "only the class the account needs (its domain's default), without the old pool"
        );
        assert!(r.notes[0].contains("named the old server mail.djki.go.id (id 11111111-0000-4000-8000-000000000001), which this server does not have; left for the new server to set"), "{:?}", r.notes);
        r.server
            .cos
            .insert("pegawai".into(), "cos-new-pegawai".into());
        let main = r.main_batch(&scope);
        assert!(
            main.starts_with(r#"cd "djki.go.id" "description" "DJKI" "zimbraDomainType" "local" "zimbraDomainDefaultCOSId" "cos-new-pegawai""#),
            "{main}"
        );
        assert!(!main.contains("gal-old"), "{main}");
        assert!(
            r.notes.iter().any(|n| n.contains("GAL sync account")),
            "{:?}",
            r.notes
        );
        // Only the asked account and the list's outside member join; ani is not asked.
        assert!(
            main.ends_with(
                "adlm \"semua@djki.go.id\" \"bagian/umum@djki.go.id\" \"mitra@example.org\"\n"
            ),
            "{main}"
        );
    }

    #[test]
    fn the_server_read_afterwards_decides_what_is_reported() {
        let z = directory();
        let ani = &z.accounts[0];
        let mut server = reinstalled();
        server
            .cos
            .insert("pimpinan".into(), "cos-new-pimpinan".into());
        let read = (
            Some(entry(
                "ani@djki.go.id",
                &[
                    ("userPassword", "{SSHA512}a\"b\\c=="),
                    ("zimbraCOSId", "cos-new-pimpinan"),
                    (
                        "zimbraMailSieveScript",
                        "require \"fileinto\";\n\n# x\nkeep;",
                    ),
                ],
            )),
            vec!["Ani".to_owned()],
            vec!["DEFAULT".to_owned()],
        );
        let errors = vec!["ERROR: account.ACCOUNT_EXISTS (email address already exists: ani.s@djki.go.id, at DN: uid=ani.s,ou=people,dc=djki,dc=go,dc=id)".to_owned()];
        let (done, differs) = compare_account(&z, &server, ani, &read, &errors);
        assert_eq!(done.filters_added, ["zimbraMailSieveScript"]);
        assert_eq!(
            differs,
            [
                "its alias ani.s@djki.go.id is not on the server (zmprov: ERROR: account.ACCOUNT_EXISTS (email address already exists: ani.s@djki.go.id, at DN: uid=ani.s,ou=people,dc=djki,dc=go,dc=id))",
                "its signature Resmi is not on the server",
                "it is not a member of list semua@djki.go.id",
            ]
        );
        // Its class of service through the domain, which the server does not give it.
        let (_, differs) = compare_account(
            &z,
            &server,
            &z.accounts[1],
            &(
                Some(entry(
                    "bagian/umum@djki.go.id",
                    &[("userPassword", "{SSHA512}u")],
                )),
                vec![],
                vec![],
            ),
            &[],
        );
        assert_eq!(
            differs,
            [
                "its class of service is default on the server, pegawai in the backup",
                "it is not a member of list semua@djki.go.id"
            ]
        );
    }
}
