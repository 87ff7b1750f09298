//! Dovecot's directory: the `passwd-file`s its `passdb`/`userdb` blocks name, and each user's
//! Sieve scripts (see [`super`] for the capture's layout).

use std::collections::BTreeMap;

use super::{CaptureUnreadable, DirectoryCounts, US};

/// Makes `$1/.directory/directory.tar.gz` from a Dovecot server's configuration (`$2`: doveadm's
/// configuration file, or empty) and prints `SHA256 SIZE`.
pub const DOVECOT_CAPTURE: &str = concat!(
    super::super::server::sha256_fn!(),
    r#"set -eu
umask 077
dir=$1; conf=$2
if [ -n "$conf" ]; then set -- -c "$conf"; else set --; fi
stage=$dir/.directory
rm -rf -- "$stage"
mkdir -- "$stage"
d=$stage/directory
mkdir -- "$d"
printf 'dovecot\n' > "$d/KIND"
us=$(printf '\037')
doveconf "$@" passdb userdb > "$stage/blocks.conf"
awk -v us="$us" '
  /^(passdb|userdb) [{]$/ { role = $1; driver = ""; args = ""; next }
  /^[}]$/ { if (role != "") print role us driver us args; role = ""; next }
  role != "" && $1 == "driver" { v = $0; sub(/^[^=]*= ?/, "", v); driver = v }
  role != "" && $1 == "args" { v = $0; sub(/^[^=]*= ?/, "", v); args = v }
' "$stage/blocks.conf" > "$stage/blocks"
n=0
: > "$d/sources"
while IFS=$us read -r role driver args; do
  source=$args; file=
  if [ "$driver" = passwd-file ]; then
    # The file is the last word of the arguments (options such as scheme=… come first).
    source=${args##* }
    case $source in
      *%*) ;;
      /*)
        file=$(awk -F "$us" -v p="$source" '$3 == p && $4 != "" { print $4; exit }' "$d/sources")
        if [ -z "$file" ] && [ -f "$source" ]; then
          n=$((n + 1)); file=passwd-$n
          cat -- "$source" > "$d/$file"
        fi ;;
    esac
  fi
  printf '%s\037%s\037%s\037%s\n' "$role" "$driver" "$source" "$file" >> "$d/sources"
done < "$stage/blocks"
doveconf "$@" -h plugin/sieve > "$d/SIEVE" 2>/dev/null || : > "$d/SIEVE"
: > "$d/sieve"
if [ -s "$d/SIEVE" ]; then
  doveadm "$@" user '*' > "$stage/users" < /dev/null
  while IFS= read -r u; do
    case $u in ''|-*) continue ;; esac
    doveadm "$@" sieve list -u "$u" > "$stage/list" < /dev/null
    while IFS= read -r line; do
      case $line in
        *' ACTIVE') name=${line% ACTIVE}; active=1 ;;
        *) name=${line% }; active=0 ;;
      esac
      [ -n "$name" ] || continue
      f=$(mktemp -- "$d/sieve-XXXXXXXX")
      mv -- "$f" "$f.json"
      doveadm "$@" -f json sieve get -u "$u" "$name" > "$f.json" < /dev/null
      printf '%s\037%s\037%s\037%s\n' "$u" "$name" "$active" "${f##*/}.json" >> "$d/sieve"
    done < "$stage/list"
  done < "$stage/users"
fi
rm -f -- "$stage/blocks.conf" "$stage/blocks" "$stage/users" "$stage/list"
tar -czf "$stage/directory.tar.gz" -C "$stage" directory
rm -rf -- "$d"
printf '%s %s\n' "$(sha256 "$stage/directory.tar.gz")" "$(stat -c %s -- "$stage/directory.tar.gz")""#
);

/// One source of accounts the server's configuration names.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// `passdb` or `userdb`.
    pub role: String,
    pub driver: String,
    /// A `passwd-file`'s path, or the block's arguments.
    pub source: String,
    /// The copy's name in the capture, when the file was kept.
    pub file: Option<String>,
}

/// A Sieve script of a user, as captured.
#[derive(Clone, PartialEq)]
pub struct SieveScript {
    pub user: String,
    pub name: String,
    pub active: bool,
    pub text: String,
}

/// A captured account's lines: its entry in each `passwd-file` it is in.
#[derive(Clone, PartialEq)]
pub struct AccountEntry {
    /// The path of the file on the server the backup came from.
    pub path: String,
    /// The roles that file has (`passdb`, `userdb`).
    pub roles: Vec<String>,
    /// The whole line (holds the password hash: never logged or shown).
    pub line: String,
}

/// A Dovecot directory capture read back. Holds password hashes: no `Debug`.
pub struct DovecotDirectory {
    pub sources: Vec<Source>,
    /// `passwd-N` copies by name.
    files: BTreeMap<String, String>,
    pub sieve_setting: String,
    pub sieve: Vec<SieveScript>,
}

impl DovecotDirectory {
    pub(super) fn from_members(
        mut members: BTreeMap<String, Vec<u8>>,
    ) -> Result<DovecotDirectory, CaptureUnreadable> {
        let mut text = |name: &str| -> Result<String, CaptureUnreadable> {
            let bytes = members
                .remove(name)
                .ok_or_else(|| CaptureUnreadable::Missing(name.to_owned()))?;
            String::from_utf8(bytes).map_err(|_| CaptureUnreadable::NotUtf8(name.to_owned()))
        };
        let sources: Vec<Source> = text("sources")?
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(US).collect();
                let [role, driver, source, file] = f[..] else {
                    return None;
                };
                Some(Source {
                    role: role.to_owned(),
                    driver: driver.to_owned(),
                    source: source.to_owned(),
                    file: (!file.is_empty()).then(|| file.to_owned()),
                })
            })
            .collect();
        let sieve_setting = text("SIEVE").unwrap_or_default().trim().to_owned();
        let sieve_index = text("sieve").unwrap_or_default();
        let mut sieve = Vec::new();
        for line in sieve_index.lines() {
            let f: Vec<&str> = line.split(US).collect();
            let [user, name, active, file] = f[..] else {
                return Err(CaptureUnreadable::BadSieveLine(line.to_owned()));
            };
            let json = text(file)?;
            sieve.push(SieveScript {
                user: user.to_owned(),
                name: name.to_owned(),
                active: active == "1",
                text: sieve_text(&json)
                    .ok_or_else(|| CaptureUnreadable::NotSieve(file.to_owned()))?,
            });
        }
        let mut files = BTreeMap::new();
        for s in &sources {
            if let Some(f) = &s.file {
                if !files.contains_key(f) {
                    files.insert(f.clone(), text(f)?);
                }
            }
        }
        Ok(DovecotDirectory {
            sources,
            files,
            sieve_setting,
            sieve,
        })
    }

    /// Every account with an entry in a kept `passwd-file`, each once, in order.
    pub fn accounts(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        self.files
            .values()
            .flat_map(|text| text.lines())
            .filter_map(passwd_user)
            .filter(|u| seen.insert(u.to_string()))
            .map(str::to_owned)
            .collect()
    }

    /// `account`'s entries, one per kept file (a file that is both passdb and userdb once).
    pub fn entries_of(&self, account: &str) -> Vec<AccountEntry> {
        let mut out: Vec<AccountEntry> = Vec::new();
        for s in &self.sources {
            let Some(text) = s.file.as_ref().and_then(|f| self.files.get(f)) else {
                continue;
            };
            if let Some(e) = out.iter_mut().find(|e| e.path == s.source) {
                if !e.roles.contains(&s.role) {
                    e.roles.push(s.role.clone());
                }
                continue;
            }
            if let Some(line) = text.lines().find(|l| passwd_user(l) == Some(account)) {
                out.push(AccountEntry {
                    path: s.source.clone(),
                    roles: vec![s.role.clone()],
                    line: line.to_owned(),
                });
            }
        }
        out
    }

    pub fn sieve_of<'a>(&'a self, account: &'a str) -> impl Iterator<Item = &'a SieveScript> {
        self.sieve.iter().filter(move |s| s.user == account)
    }

    pub fn counts(&self) -> DirectoryCounts {
        let accounts = self.accounts();
        let passwords = accounts
            .iter()
            .filter(|a| {
                self.entries_of(a).iter().any(|e| {
                    e.roles.iter().any(|r| r == "passdb")
                        && e.line.split(':').nth(1).is_some_and(|p| !p.is_empty())
                })
            })
            .count();
        let not_captured = self
            .sources
            .iter()
            .filter(|s| s.file.is_none())
            .map(|s| {
                format!("{} {} {}", s.role, s.driver, s.source)
                    .trim_end()
                    .to_owned()
            })
            .collect();
        DirectoryCounts {
            accounts: accounts.len() as u64,
            passwords: passwords as u64,
            filters: self.sieve.len() as u64,
            names: accounts,
            not_captured,
            ..DirectoryCounts::default()
        }
    }
}

/// The user of a `passwd-file` line (`user:password:uid:gid:gecos:home:shell:extra`); none for
/// a comment or an empty line.
fn passwd_user(line: &str) -> Option<&str> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    line.split(':').next().filter(|u| !u.is_empty())
}

/// The script of `doveadm -f json sieve get`: `[{"sieve script":"…"}]`.
fn sieve_text(json: &str) -> Option<String> {
    let rows: Vec<BTreeMap<String, String>> = serde_json::from_str(json).ok()?;
    rows.into_iter().next()?.remove("sieve script")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn members(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn sample() -> DovecotDirectory {
        DovecotDirectory::from_members(members(&[
            (
                "sources",
                "passdb\u{1f}passwd-file\u{1f}/etc/dovecot/users\u{1f}passwd-1\n\
                 userdb\u{1f}passwd-file\u{1f}/etc/dovecot/users\u{1f}passwd-1\n\
                 passdb\u{1f}sql\u{1f}/etc/dovecot/dovecot-sql.conf.ext\u{1f}\n",
            ),
            (
                "passwd-1",
                "# pengguna\nani@djki.go.id:{SHA512-CRYPT}$6$x$y:5000:5000::/home/ani::\n\
                 budi@djki.go.id::5000:5000::/home/budi::\n",
            ),
            ("SIEVE", "file:~/sieve;active=~/.dovecot.sieve\n"),
            (
                "sieve",
                "ani@djki.go.id\u{1f}filter\u{1f}1\u{1f}sieve-a.json\n",
            ),
            ("sieve-a.json", r#"[{"sieve script":"keep;\n"}]"#),
        ]))
        .expect("a capture")
    }

    #[test]
    fn a_dovecot_capture_counts_accounts_passwords_filters_and_what_it_cannot_hold() {
        let d = sample();
        assert_eq!(d.accounts(), ["ani@djki.go.id", "budi@djki.go.id"]);
        assert_eq!(
            d.counts(),
            DirectoryCounts {
                accounts: 2,
                passwords: 1,
                filters: 1,
                names: vec!["ani@djki.go.id".into(), "budi@djki.go.id".into()],
                not_captured: vec!["passdb sql /etc/dovecot/dovecot-sql.conf.ext".into()],
                ..DirectoryCounts::default()
            }
        );
    }

    #[test]
    fn an_account_has_one_entry_per_file_with_the_roles_of_that_file() {
        let d = sample();
        let e = d.entries_of("ani@djki.go.id");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "/etc/dovecot/users");
        assert_eq!(e[0].roles, ["passdb", "userdb"]);
        assert!(e[0].line.starts_with("ani@djki.go.id:{SHA512-CRYPT}"));
        assert!(d.entries_of("ani").is_empty());
        let s: Vec<_> = d.sieve_of("ani@djki.go.id").collect();
        assert_eq!(
            (s[0].name.as_str(), s[0].active, s[0].text.as_str()),
            ("filter", true, "keep;\n")
        );
    }

    #[test]
    fn a_capture_missing_a_listed_file_is_refused() {
        let mut m = members(&[(
            "sources",
            "passdb\u{1f}passwd-file\u{1f}/etc/u\u{1f}passwd-1\n",
        )]);
        assert!(DovecotDirectory::from_members(m.clone()).is_err());
        m.insert("KIND".into(), b"exchange\n".to_vec());
        assert!(super::super::Directory::from_members(m).is_err());
    }
}
