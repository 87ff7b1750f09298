//! Dovecot's namespace as the field configures it: the hierarchy separator (`.` by default in
//! Maildir++, `/` in many set-ups) and a prefix (`INBOX.` on servers migrated from Courier).
//!
//! A backup archive is always a Maildir++ tree (`.Arsip.2024/cur/…`): that is what `doveadm
//! backup` writes into `maildir:DIR`, whatever the server's names look like. `doveadm import`
//! reads such a tree in its own namespace (separator `.`, no prefix) and converts names to the
//! account's separator itself; it is told the parent (the prefix) to put them under. So a folder
//! has three spellings: as listed through the account's namespace from the archive (the
//! *source view*), as `doveadm import` reads it (the *import view*), and as the account names it
//! (the *target view*). The functions here convert between them.

/// A shell function `inbox_namespace` (takes doveadm's `-c CONF` or nothing) printing the
/// inbox namespace of the configuration as `NAME<TAB>PREFIX<TAB>SEPARATOR` (the separator as
/// configured: empty means the storage's default); nothing when none is configured (Dovecot
/// then makes one with no prefix).
macro_rules! inbox_namespace_fn {
    () => {
        r#"inbox_namespace() {
  doveconf "$@" namespace 2>/dev/null | LC_ALL=C awk '
    /^namespace / { name = $2; gsub(/"/, "", name); inbox = ""; prefix = ""; sep = ""; next }
    /^  inbox = / { inbox = substr($0, 11); next }
    /^  prefix = / { prefix = substr($0, 12); next }
    /^  separator = / { sep = substr($0, 15); next }
    /^}$/ { if (inbox == "yes") { printf "%s\t%s\t%s\n", name, prefix, sep; exit } }'
}
"#
    };
}
pub(crate) use inbox_namespace_fn;

/// `$1` the account, `$2` the doveadm config (or empty): prints the inbox namespace as
/// `NAME<TAB>PREFIX<TAB>SEPARATOR<TAB>MAIL_LOCATION` (the account's own `mail` from the userdb
/// when it has one, the configured `mail_location` otherwise).
pub const NAMESPACE: &str = concat!(
    inbox_namespace_fn!(),
    r#"u=$1
if [ -n "$2" ]; then set -- -c "$2"; else set --; fi
loc=$(doveadm "$@" user -f mail -- "$u" 2>/dev/null || true)
[ -n "$loc" ] || loc=$(doveconf "$@" -h mail_location 2>/dev/null || true)
ns=$(inbox_namespace "$@")
[ -n "$ns" ] || ns=$(printf '\t\t')
printf '%s\t%s\n' "$ns" "$loc""#
);

/// The account's inbox namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The configuration's name for it (for `-o namespace/NAME/…`); empty when not configured.
    pub name: String,
    pub prefix: String,
    /// The separator in the account's own names.
    pub target_sep: char,
    /// The separator of the archive's names read through the account's namespace: the
    /// configured one, or Maildir++'s `.` when none is configured.
    pub source_sep: char,
}

impl Namespace {
    /// Parses [`NAMESPACE`]'s output.
    pub fn parse(text: &str) -> Namespace {
        let line = text.lines().next().unwrap_or("");
        let mut f = line.split('\t');
        let mut next = || f.next().unwrap_or("").to_owned();
        let (name, prefix, sep, location) = (next(), next(), next(), next());
        let configured = sep.chars().next();
        // Maildir++ (the default Maildir layout) separates with `.`; every other storage and
        // layout with `/`.
        let maildir_plus_plus = location.starts_with("maildir:") && !location.contains("LAYOUT=fs");
        let default = if maildir_plus_plus || location.is_empty() {
            '.'
        } else {
            '/'
        };
        Namespace {
            name,
            prefix,
            target_sep: configured.unwrap_or(default),
            source_sep: configured.unwrap_or('.'),
        }
    }

    /// The folder as `doveadm import` reads it from a Maildir++ archive.
    pub fn import_name(&self, source_view: &str) -> String {
        if source_view == "INBOX" {
            return source_view.to_owned();
        }
        let bare = source_view
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(source_view);
        bare.replace(self.source_sep, ".")
    }

    /// The folder as the account names it.
    pub fn target_name(&self, import_view: &str) -> String {
        if import_view == "INBOX" {
            return import_view.to_owned();
        }
        format!(
            "{}{}",
            self.prefix,
            import_view.replace('.', &self.target_sep.to_string())
        )
    }

    /// The parent `doveadm import` puts a folder under: the prefix (without its trailing
    /// separator) for every folder but INBOX itself.
    pub fn import_parent(&self, import_view: &str) -> String {
        if import_view == "INBOX" {
            return String::new();
        }
        self.prefix
            .strip_suffix(self.target_sep)
            .unwrap_or(&self.prefix)
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_maildir_namespace_keeps_every_name() {
        let ns = Namespace::parse("\t\t\tmaildir:~/Maildir\n");
        assert_eq!((ns.source_sep, ns.target_sep), ('.', '.'));
        for name in ["INBOX", "Arsip.2026", "Surat Masuk"] {
            assert_eq!(ns.target_name(&ns.import_name(name)), name);
            assert_eq!(ns.import_parent(name), "");
        }
    }

    #[test]
    fn a_slash_separator_maps_to_the_archives_dots_and_back() {
        let ns = Namespace::parse("inbox\t\t/\tmaildir:/var/vmail/%d/%n\n");
        assert_eq!(ns.import_name("Arsip/2024"), "Arsip.2024");
        assert_eq!(ns.target_name("Arsip.2024"), "Arsip/2024");
        assert_eq!(ns.import_parent("Arsip.2024"), "");
    }

    #[test]
    fn an_inbox_prefix_is_stripped_for_import_and_given_as_the_parent() {
        let ns = Namespace::parse("inbox\tINBOX.\t.\tmaildir:~/Maildir\n");
        assert_eq!(ns.import_name("INBOX.Arsip.2024"), "Arsip.2024");
        assert_eq!(ns.import_name("INBOX"), "INBOX");
        assert_eq!(ns.target_name("Arsip.2024"), "INBOX.Arsip.2024");
        assert_eq!(ns.target_name("INBOX"), "INBOX");
        assert_eq!(ns.import_parent("Arsip.2024"), "INBOX");
        assert_eq!(ns.import_parent("INBOX"), "");
    }

    #[test]
    fn an_unset_separator_follows_the_accounts_storage() {
        // Debian's own namespace block sets no separator; mdbox and LAYOUT=fs use `/`.
        let ns = Namespace::parse("inbox\t\t\tmdbox:~/mdbox\n");
        assert_eq!((ns.source_sep, ns.target_sep), ('.', '/'));
        assert_eq!(ns.target_name(&ns.import_name("Arsip.2024")), "Arsip/2024");
        let fs = Namespace::parse("inbox\t\t\tmaildir:~/Maildir:LAYOUT=fs\n");
        assert_eq!(fs.target_sep, '/');
    }
}
