//! Zimbra's directory, read with `zmprov -l` as the zimbra user (ProvUtil over LDAP, with the
//! credentials zmprov itself reads from localconfig: no password on any command line). One
//! `zmprov -f` batch per kind of object, so one JVM start each, not one per account:
//! `gd -e` per domain, `gc` per class of service, `ga -e` per account (its own attributes only:
//! the password hash, status, COS id, aliases, forwarding, preferences, the Sieve script, the
//! account's signature), `gdl` per list (its members), `gcr` per resource, `gs` per server (so
//! that a rebuild can map the old server's ids to the new one's by name), `gsig` and `gid` per
//! account. The capture keeps each batch's output as zmprov printed it (`*.out`) with the names
//! it asked about (`*.list`); this module reads it back.

use std::collections::BTreeMap;

use super::{CaptureUnreadable, DirectoryCounts};
use crate::engine::zimbra::is_system_account as is_zimbra_system_account;

/// A shell function `zbatch`: runs the zmprov batch on its stdin as the zimbra user with
/// `zmprov -l -f FILE` (zmprov opens the file by name: a pipe of root's cannot be opened by the
/// zimbra user), the file in a private folder only the zimbra user and root can read, removed
/// afterwards whatever happened.
macro_rules! zbatch_fn {
    () => {
        r#"zbatch() {
  _t=$(mktemp -d) || return 1
  if chown zimbra -- "$_t" && chmod 0700 -- "$_t" && cat > "$_t/batch" && chown zimbra -- "$_t/batch"; then
    su - zimbra -c "zmprov -l -f $_t/batch" < /dev/null; _rc=$?
  else
    _rc=1
  fi
  rm -rf -- "$_t"
  return $_rc
}
"#
    };
}
pub(crate) use zbatch_fn;

/// Makes `$1/.directory/directory.tar.gz` from the Zimbra directory and prints `SHA256 SIZE`. A
/// batch that prints an error fails the capture (zmprov's batch mode exits 0 whatever happened).
pub const ZIMBRA_CAPTURE: &str = concat!(
    super::super::server::sha256_fn!(),
    zbatch_fn!(),
    r#"set -eu
umask 077
dir=$1
stage=$dir/.directory
rm -rf -- "$stage"
mkdir -- "$stage"
d=$stage/directory
mkdir -- "$d"
printf 'zimbra\n' > "$d/KIND"
one() { su - zimbra -c "zmprov -l $1" < /dev/null; }
# zmprov's own quoting: backslash escapes inside double quotes.
q() { printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"; }
each() {
  : > "$stage/batch"
  while IFS= read -r n; do
    [ -n "$n" ] && printf '%s %s%s\n' "$1" "$(q "$n")" "${4-}" >> "$stage/batch"
  done < "$2"
  if ! zbatch < "$stage/batch" > "$3" 2> "$stage/errors" || [ -s "$stage/errors" ]; then
    printf 'zmprov %s: %s\n' "$1" "$(head -c 2000 -- "$stage/errors")" >&2
    exit 1
  fi
}
one gad > "$d/domains.list"
one gac > "$d/cos.list"
one gaa > "$d/accounts.list"
one gadl > "$d/lists.list"
one gacr > "$d/resources.list"
one gas > "$d/servers.list"
each 'gd -e' "$d/domains.list" "$d/domains.out"
each gc "$d/cos.list" "$d/cos.out"
each 'ga -e' "$d/accounts.list" "$d/accounts.out"
each gdl "$d/lists.list" "$d/lists.out"
each gcr "$d/resources.list" "$d/resources.out"
# Only what names a server: its entry also holds its TLS private key.
each gs "$d/servers.list" "$d/servers.out" ' zimbraId zimbraServiceHostname'
each gsig "$d/accounts.list" "$d/signatures.out"
each gid "$d/accounts.list" "$d/identities.out"
rm -f -- "$stage/batch" "$stage/errors"
tar -czf "$stage/directory.tar.gz" -C "$stage" directory
rm -rf -- "$d"
printf '%s %s\n' "$(sha256 "$stage/directory.tar.gz")" "$(stat -c %s -- "$stage/directory.tar.gz")""#
);

/// One entry as zmprov printed it: `# name X` (or `# distributionList X memberCount=N`), its
/// attributes in order, a list's members.
#[derive(Clone, PartialEq, Default)]
pub struct ZimbraEntry {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub members: Vec<String>,
}

impl ZimbraEntry {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.attrs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A Zimbra directory capture read back. Holds password hashes: no `Debug`.
pub struct ZimbraDirectory {
    pub domains: Vec<ZimbraEntry>,
    pub cos: Vec<ZimbraEntry>,
    pub accounts: Vec<ZimbraEntry>,
    pub lists: Vec<ZimbraEntry>,
    pub resources: Vec<ZimbraEntry>,
    /// The servers, by name with their `zimbraId` (empty in captures made before they were kept).
    pub servers: Vec<ZimbraEntry>,
    /// By account: its signatures and identities as `gsig`/`gid` print them.
    pub signatures: BTreeMap<String, Vec<ZimbraEntry>>,
    pub identities: BTreeMap<String, Vec<ZimbraEntry>>,
}

impl ZimbraDirectory {
    pub(super) fn from_members(
        members: BTreeMap<String, Vec<u8>>,
    ) -> Result<ZimbraDirectory, CaptureUnreadable> {
        let text = |name: &str| -> Result<String, CaptureUnreadable> {
            let bytes = members
                .get(name)
                .cloned()
                .ok_or_else(|| CaptureUnreadable::Missing(name.to_owned()))?;
            String::from_utf8(bytes).map_err(|_| CaptureUnreadable::NotUtf8(name.to_owned()))
        };
        // `what`.out answers one command per name of `asked`.list.
        type Answers = (Vec<String>, Vec<Vec<ZimbraEntry>>);
        let kind = |what: &str, asked: &str| -> Result<Answers, CaptureUnreadable> {
            let names: Vec<String> = text(&format!("{asked}.list"))?
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            let out = text(&format!("{what}.out"))?;
            let outputs = command_outputs(&out);
            if outputs.len() < names.len() {
                return Err(CaptureUnreadable::ShortAnswers {
                    what: what.to_owned(),
                    answers: outputs.len(),
                    names: names.len(),
                });
            }
            Ok((names, outputs.into_iter().map(entries).collect()))
        };
        let flat = |(_, e): (Vec<String>, Vec<Vec<ZimbraEntry>>)| -> Vec<ZimbraEntry> {
            e.into_iter().flatten().collect()
        };
        let by_account = |(names, e): (Vec<String>, Vec<Vec<ZimbraEntry>>)| {
            names.into_iter().zip(e).collect::<BTreeMap<_, _>>()
        };
        Ok(ZimbraDirectory {
            domains: flat(kind("domains", "domains")?),
            cos: flat(kind("cos", "cos")?),
            lists: flat(kind("lists", "lists")?),
            resources: flat(kind("resources", "resources")?),
            servers: if members.contains_key("servers.list") {
                flat(kind("servers", "servers")?)
            } else {
                Vec::new()
            },
            signatures: by_account(kind("signatures", "accounts")?),
            identities: by_account(kind("identities", "accounts")?),
            accounts: flat(kind("accounts", "accounts")?),
        })
    }

    /// The accounts, Zimbra's own system accounts left out (a rebuilt server has its own).
    pub fn accounts(&self) -> Vec<String> {
        self.accounts
            .iter()
            .map(|a| a.name.clone())
            .filter(|n| !is_zimbra_system_account(n))
            .collect()
    }

    pub fn account(&self, name: &str) -> Option<&ZimbraEntry> {
        self.accounts.iter().find(|a| a.name == name)
    }

    pub fn counts(&self) -> DirectoryCounts {
        let names = self.accounts();
        let of = |n: &String| self.account(n);
        DirectoryCounts {
            accounts: names.len() as u64,
            passwords: names
                .iter()
                .filter_map(of)
                .filter(|a| a.get("userPassword").is_some())
                .count() as u64,
            filters: names
                .iter()
                .filter_map(of)
                .filter(|a| a.get("zimbraMailSieveScript").is_some())
                .count() as u64,
            lists: self.lists.len() as u64,
            aliases: names
                .iter()
                .filter_map(of)
                .map(|a| a.all("zimbraMailAlias").len() as u64)
                .sum(),
            names,
            not_captured: Vec::new(),
        }
    }
}

/// A batch's stdout cut into each command's output: zmprov prints `prov> ` before every line it
/// reads, also after the last.
pub fn command_outputs(text: &str) -> Vec<&str> {
    const PROMPT: &str = "prov> ";
    let Some(mut rest) = text.strip_prefix(PROMPT) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    loop {
        let next = rest
            .match_indices(PROMPT)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || rest.as_bytes()[i - 1] == b'\n');
        match next {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + PROMPT.len()..];
            }
            None => {
                // What follows the last prompt is nothing (the end of the batch).
                if !rest.trim().is_empty() {
                    out.push(rest);
                }
                return out;
            }
        }
    }
}

/// LDAP attribute names that are not `zimbra…`/`amavis…` but appear in Zimbra entries.
const PLAIN_ATTRS: &[&str] = &[
    "c",
    "cn",
    "co",
    "company",
    "dc",
    "description",
    "displayName",
    "facsimileTelephoneNumber",
    "givenName",
    "homePhone",
    "initials",
    "l",
    "mail",
    "mobile",
    "o",
    "objectClass",
    "ou",
    "pager",
    "physicalDeliveryOfficeName",
    "postalCode",
    "sn",
    "st",
    "street",
    "telephoneNumber",
    "title",
    "uid",
    "userPassword",
];

/// `name: value` when `line` starts an attribute: a known attribute name and `: `. Anything else
/// continues the value before it (zmprov prints a multi-line value, a Sieve script, raw).
fn attribute(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(": ")?;
    let known =
        name.starts_with("zimbra") || name.starts_with("amavis") || PLAIN_ATTRS.contains(&name);
    let word = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (known && word).then_some((name, value))
}

/// The entries of one command's output.
pub fn entries(output: &str) -> Vec<ZimbraEntry> {
    let mut out: Vec<ZimbraEntry> = Vec::new();
    let mut blanks = 0usize;
    let mut in_members = false;
    for line in output.lines() {
        let header = line.strip_prefix("# name ").map(str::to_owned).or_else(|| {
            line.strip_prefix("# distributionList ").map(|r| {
                r.rsplit_once(" memberCount=")
                    .map_or(r, |(n, _)| n)
                    .to_owned()
            })
        });
        if let Some(name) = header {
            out.push(ZimbraEntry {
                name,
                ..ZimbraEntry::default()
            });
            (blanks, in_members) = (0, false);
            continue;
        }
        let Some(entry) = out.last_mut() else {
            continue;
        };
        if in_members {
            if !line.is_empty() {
                entry.members.push(line.to_owned());
            }
            continue;
        }
        if line.is_empty() {
            blanks += 1;
            continue;
        }
        if line == "members" && blanks > 0 {
            (blanks, in_members) = (0, true);
            continue;
        }
        if let Some((name, value)) = attribute(line) {
            entry.attrs.push((name.to_owned(), value.to_owned()));
        } else if let Some((_, value)) = entry.attrs.last_mut() {
            // A value's own blank lines are kept; the blank line ending an entry is not.
            value.push_str(&"\n".repeat(blanks + 1));
            value.push_str(line);
        }
        blanks = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "# name ani@djki.go.id\ncn: Ani\nmail: ani@djki.go.id\nmail: ani.s@djki.go.id\nuserPassword: {SSHA512}abc==\nzimbraMailAlias: ani.s@djki.go.id\nzimbraMailSieveScript: require [\"fileinto\"];\n\n# arsip\nif header :contains \"subject\" \"x\" {\n    fileinto \"Arsip\";\n}\nzimbraPrefMailSignature: Salam,\nNote: ini bukan atribut\n\n";
    const LIST: &str = "# distributionList semua@djki.go.id memberCount=2\ndisplayName: Semua\nzimbraMailForwardingAddress: ani@djki.go.id\n\nmembers\nani@djki.go.id\nmitra@example.org\n";

    #[test]
    fn a_batch_is_cut_at_its_prompts_and_values_keep_their_lines() {
        let batch = format!("prov> {ACCOUNT}prov> {LIST}prov> prov> ");
        let outputs = command_outputs(&batch);
        assert_eq!(outputs.len(), 3, "{outputs:?}");
        assert_eq!(outputs[2], "", "a command without output");
        let a = &entries(outputs[0])[0];
        assert_eq!(a.name, "ani@djki.go.id");
        assert_eq!(a.all("mail"), ["ani@djki.go.id", "ani.s@djki.go.id"]);
        assert_eq!(
            a.get("zimbraMailSieveScript"),
            Some("require [\"fileinto\"];\n\n# arsip\nif header :contains \"subject\" \"x\" {\n    fileinto \"Arsip\";\n}")
        );
        assert_eq!(
            a.get("zimbraPrefMailSignature"),
            Some("Salam,\nNote: ini bukan atribut"),
            "an unknown name is a line of the value"
        );
        let l = &entries(outputs[1])[0];
        assert_eq!(l.name, "semua@djki.go.id");
        assert_eq!(l.members, ["ani@djki.go.id", "mitra@example.org"]);
    }

    #[test]
    fn several_entries_in_one_answer_are_each_kept() {
        let sigs = entries("# name Ani\nzimbraSignatureName: Ani\n\n# name Resmi\nzimbraSignatureName: Resmi\nzimbraPrefMailSignature: a\nb\n\n");
        let names: Vec<&str> = sigs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Ani", "Resmi"]);
        assert_eq!(sigs[1].get("zimbraPrefMailSignature"), Some("a\nb"));
    }
}
