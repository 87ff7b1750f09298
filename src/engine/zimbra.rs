//! Zimbra's server-side scripts (see `docs/ZIMBRA.md` for why the export is REST over HTTPS and
//! not `zmmailbox … getRestURL`).
//!
//! All of them run as root on the mail server through `sh -c SCRIPT sh ARGS…`; Zimbra's own tools
//! run as the `zimbra` user through `su - zimbra -c`, always with a fixed command string, so no
//! account name ever reaches a shell.

/// Prints every account, one per line (system accounts included: the caller skips them with
/// [`is_system_account`]). No arguments.
pub const LIST: &str = "exec su - zimbra -c 'zmprov -l gaa'";

/// Zimbra's system accounts, not backed up.
pub fn is_system_account(account: &str) -> bool {
    let local = account.split('@').next().unwrap_or(account);
    ["spam.", "ham.", "virus-quarantine.", "galsync"]
        .iter()
        .any(|p| local.starts_with(p))
}

/// What every script reaching the admin port shares after its own first lines (which set `account`,
/// `stage`, `what`, and `out`, the file `fail` removes): `fail`, the admin login read from localconfig,
/// and the auth token written to `$stage/cookie.conf` (0600), never to argv; then `path`, the
/// account percent-encoded for the URL.
macro_rules! admin_login {
    () => {
        r#"umask 077
fail() { printf 'zimbra %s of %s: %s\n' "$what" "$account" "$*" >&2; rm -f -- "$out" "$stage/auth.xml" "$stage/cookie.conf" "$stage/token" "$stage/folders.xml" "$stage/folders.out" "$stage/soap.xml" "$stage/info.xml" "$stage/info.out"; exit 1; }
[ -n "$account" ] || fail "empty account name"
[ -d "$stage" ] || fail "no stage folder $stage"
lc=$(su - zimbra -c 'zmlocalconfig -s -x zimbra_zmprov_default_soap_server zimbra_admin_service_port zimbra_ldap_user zimbra_ldap_password') || fail "zmlocalconfig failed"
lc_get() { printf '%s\n' "$lc" | sed -n "s/^$1 = //p" | head -n 1; }
host=$(lc_get zimbra_zmprov_default_soap_server); port=$(lc_get zimbra_admin_service_port)
user=$(lc_get zimbra_ldap_user); pass=$(lc_get zimbra_ldap_password)
case $host in ''|*[!A-Za-z0-9.-]*) fail "bad zimbra_zmprov_default_soap_server '$host'";; esac
case $port in ''|*[!0-9]*) fail "bad zimbra_admin_service_port '$port'";; esac
[ -n "$user" ] && [ -n "$pass" ] || fail "no admin credentials in localconfig"
base="https://$host:$port"
xml() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'; }
text() { head -c 4000 -- "$1" 2>/dev/null | sed -e 's/<[^>]*>/ /g' | tr -s ' \t\r\n' '    ' | cut -c 1-300; }
printf '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><AuthRequest xmlns="urn:zimbraAdmin"><name>%s</name><password>%s</password></AuthRequest></soap:Body></soap:Envelope>' "$(xml "$user")" "$(xml "$pass")" > "$stage/auth.xml"
pass=
code=$(curl -sS -k --proto =https --connect-timeout 30 --max-time 300 -H 'Content-Type: application/soap+xml; charset=utf-8' --data-binary "@$stage/auth.xml" -o "$stage/auth.out" -w '%{http_code}' "$base/service/admin/soap/") || fail "admin login at $base failed (curl exit $?)"
rm -f -- "$stage/auth.xml"
[ "$code" = 200 ] || fail "admin login at $base: HTTP $code: $(text "$stage/auth.out")"
token=$(sed -n 's/.*<authToken>\([^<]*\)<\/authToken>.*/\1/p' "$stage/auth.out" | head -n 1)
rm -f -- "$stage/auth.out"
case $token in ''|*[!A-Za-z0-9_.-]*) fail "admin login at $base: no usable authToken in the answer";; esac
printf 'cookie = "ZM_ADMIN_AUTH_TOKEN=%s"\n' "$token" > "$stage/cookie.conf"
printf '%s' "$token" > "$stage/token"
token=
path=$(printf '%s' "$account" | od -An -v -tx1 | LC_ALL=C awk '{ for (i = 1; i <= NF; i++) { d = (index("0123456789abcdef", substr($i, 1, 1)) - 1) * 16 + index("0123456789abcdef", substr($i, 2, 1)) - 1; c = sprintf("%c", d); if (d < 128 && c ~ /[A-Za-z0-9._~@-]/) printf "%s", c; else printf "%%%s", toupper($i) } }')
"#
    };
}

/// Where an account's mailbox is on the REST endpoint: `$home` and `$by_id`. An account whose
/// name holds `/` (valid in Zimbra) cannot be named in the path: UserServletContext.parseParams
/// splits the decoded path at its first `/`. It is named by its zimbraId instead (admin
/// `GetAccountInfoRequest`): `/home/~/…&id=ZIMBRAID:1`, item 1 being its root folder, which is what
/// the path form names too (ArchiveFormatter takes the whole mailbox under the user root).
macro_rules! account_home {
    () => {
        r#"case $account in
  */*)
    printf '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header><context xmlns="urn:zimbra"><authToken>%s</authToken><nosession/></context></soap:Header><soap:Body><GetAccountInfoRequest xmlns="urn:zimbraAdmin"><account by="name">%s</account></GetAccountInfoRequest></soap:Body></soap:Envelope>' "$(cat -- "$stage/token")" "$(xml "$account")" > "$stage/info.xml"
    code=$(curl -sS -k --proto =https --connect-timeout 30 --max-time 300 -H 'Content-Type: application/soap+xml; charset=utf-8' --data-binary "@$stage/info.xml" -o "$stage/info.out" -w '%{http_code}' "$base/service/admin/soap/") || fail "looking up the account's zimbraId failed (curl exit $?)"
    rm -f -- "$stage/info.xml"
    [ "$code" = 200 ] || fail "looking up the account's zimbraId: HTTP $code: $(text "$stage/info.out")"
    zid=$(tr '\n' ' ' < "$stage/info.out" | grep -o '<a n="zimbraId">[^<]*</a>' | head -n 1 | sed -e 's/<[^>]*>//g')
    rm -f -- "$stage/info.out"
    case $zid in ''|*[!0-9a-fA-F-]*) fail "no zimbraId for the account in the answer";; esac
    home="$base/home/~"; by_id="&id=$zid:1" ;;
  *) home="$base/home/$path"; by_id= ;;
esac
"#
    };
}

/// Streams the `.tgz` export of ONE account into a file, never holding it in memory.
///
/// Contract: `sh -c "$EXPORT" sh OUT ACCOUNT STAGE`. `OUT` is the `.part` file that receives
/// the complete archive; `ACCOUNT` the account name (any bytes: it only travels percent-encoded
/// inside the URL); `STAGE` an empty private folder for the temporary files (the caller removes
/// it). Exit 0 only when `OUT` holds a complete gzip'd tar; otherwise non-zero, `OUT` removed and
/// the reason on stderr (the server's HTTP status and error text).
///
/// How: the admin endpoint and the credentials `zmmailbox -z` itself uses are read as the zimbra
/// user from localconfig; an admin `AuthRequest` (SOAP, `urn:zimbraAdmin`) gets an auth token;
/// curl downloads `https://HOST:PORT/home/ACCOUNT/?fmt=tgz` with the token as the
/// `ZM_ADMIN_AUTH_TOKEN` cookie straight into `OUT`. The password and the token only live in
/// shell variables (`printf` is a builtin) and in 0600 files under `STAGE`, never in argv.
pub const EXPORT: &str = concat!(
    r#"set -eu
out=$1; account=$2; stage=$3; what=export
"#,
    admin_login!(),
    account_home!(),
    // The server's count of what the export holds, just before and just after it: the
    // messages of the account's mail folders (`n`: a folder's own items, IMAP-deleted ones not
    // counted) without Trash and its subfolders (id 3) and Junk (id 4), which the export's
    // `is:local` search leaves out; contacts, calendars and briefcases (another view),
    // mountpoints (`<link>`) and search folders (`<search>`) are not mail of the account's.
    r#"printf '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header><context xmlns="urn:zimbra"><authToken>%s</authToken><account by="name">%s</account><nosession/></context></soap:Header><soap:Body><GetFolderRequest xmlns="urn:zimbraMail"/></soap:Body></soap:Envelope>' "$(cat -- "$stage/token")" "$(xml "$account")" > "$stage/folders.xml"
rm -f -- "$stage/token"
count() {
  code=$(curl -sS -k --proto =https --connect-timeout 30 --max-time 300 -H 'Content-Type: application/soap+xml; charset=utf-8' --data-binary "@$stage/folders.xml" -o "$stage/folders.out" -w '%{http_code}' "$base/service/admin/soap/") \
    || fail "cannot count the account's messages on the server (curl exit $?)"
  [ "$code" = 200 ] || fail "cannot count the account's messages on the server: HTTP $code: $(text "$stage/folders.out")"
  tr '\n' ' ' < "$stage/folders.out" | grep -o '<folder [^>]*>' | LC_ALL=C awk '
    function at(s, a) { return match(s, " " a "=\"[^\"]*\"") ? substr(s, RSTART + length(a) + 3, RLENGTH - length(a) - 4) : "" }
    { id = at($0, "id"); p = at($0, "absFolderPath"); v = at($0, "view")
      if (id == "3" || id == "4" || p == "/Trash" || index(p, "/Trash/") == 1) next
      if (v != "" && v != "message") next
      n += at($0, "n") }
    END { print n + 0 }'
}
before=$(count) || exit 1
url="$home/?fmt=tgz$by_id"
code=$(curl -sS -k --proto =https --connect-timeout 30 -K "$stage/cookie.conf" -o "$out" -w '%{http_code}' "$url") || fail "download of $url failed (curl exit $?)"
case $code in
  200) ;;
  204) rm -f -- "$out"; tar -czf "$out" -T /dev/null ;;
  *) fail "HTTP $code from $url: $(text "$out")" ;;
esac
[ "$(head -c 2 -- "$out" | od -An -tx1 | tr -d ' \n')" = 1f8b ] || fail "the answer from $url is not a gzip archive: $(text "$out")"
tar -tzf "$out" > /dev/null || fail "the archive from $url is incomplete or damaged"
after=$(count) || { rm -f -- "$out"; exit 1; }
rm -f -- "$stage/cookie.conf" "$stage/folders.xml" "$stage/folders.out"
[ -z "${MBB_COUNT:-}" ] || printf '%s %s\n' "$before" "$after" > "$MBB_COUNT""#
);

/// Imports a `.tgz` export into ONE account without touching what is there: the admin REST
/// import `POST /home/ACCOUNT?fmt=tgz&resolve=skip&callback=mbbImport`. `ArchiveFormatter`
/// (zm-mailbox, `saveCallback` → `addItem`: every message of a Zimbra export comes after its
/// `.meta`) puts each message into the folder of its `.meta` `Path`, made with its parents when
/// missing, and skips it when a message of that folder already has its blob digest. The folder's
/// digests are read once per request, so two copies of one message in one folder of the archive
/// both arrive in a folder that had neither, and a second import adds nothing. Nothing is
/// deleted. Folders come from their own `.meta` entries too, empty ones included.
///
/// The answer: without `callback`, Zimbra says 200 with an empty body even when messages were
/// refused (a quota reached half way, a line over 10240 bytes, a `.meta` it cannot read: the
/// formatter only collects them as warnings, `Formatter.updateClient`); with it, the page calls
/// `window.parent.mbbImport('success'|'warn'|'fail', FAULTS…)`. Anything but `success` fails
/// the import with the faults' codes and texts.
///
/// The archive is streamed from the file (`-T`), never read into memory.
///
/// Contract: `sh -c "$IMPORT" sh ARCHIVE ACCOUNT STAGE [noacl]`; `noacl` (a drill's scratch copy)
/// adds `acl=0`, so the folders' shares are not copied. Exit 0 when the server took every item,
/// otherwise non-zero with the HTTP status or the faults, and the server's text, on stderr.
pub const IMPORT: &str = concat!(
    r#"set -eu
archive=$1; account=$2; stage=$3; acl=${4:-}; out=$stage/import.out; what=import
"#,
    admin_login!(),
    account_home!(),
    // No trailing slash: with `-T`, curl would add the file's name to a URL ending in one.
    r#"rm -f -- "$stage/token"
url="$home?fmt=tgz&resolve=skip&callback=mbbImport$by_id"
[ "$acl" != noacl ] || url="$url&acl=0"
code=$(curl -sS -k --proto =https --connect-timeout 30 -K "$stage/cookie.conf" -X POST -H 'Content-Type: application/x-compressed-tar' -H 'Expect:' -T "$archive" -o "$out" -w '%{http_code}' "$url") || fail "upload to $url failed (curl exit $?)"
rm -f -- "$stage/cookie.conf"
[ "$code" = 200 ] || fail "HTTP $code from $url: $(text "$out")"
result=$(tr -d '\r' < "$out" | sed -n "s/.*window\.parent\.mbbImport('\([a-z]*\)'.*/\1/p" | head -n 1)
# One fault a line: its code, its text and the item's path when it names one.
faults=$(tr -d '\r' < "$out" | sed -n -E 's/.*"Reason": *\{"Text": *"(([^"\\]|\\.)*)"\}.*"Error": *\{"Code": *"([^"]*)"(.*"n": *"path"[^}]*"_content": *"(([^"\\]|\\.)*)")?.*/\3: \1 \5/p' | head -n 5 | sed 's/ *$//' | tr '\n' ';' | sed 's/;$//; s/;/; /g')
case $result in
  success) rm -f -- "$out" ;;
  warn) fail "the server imported the archive but refused items: $faults" ;;
  fail) fail "the server's import failed: $faults" ;;
  *) fail "the answer from $url is not the import's report: $(text "$out")" ;;
esac"#
);

/// What the drill's scratch-account scripts share after `admin_login!`: `soap ACCOUNT-CONTEXT
/// BODY` posts one admin SOAP request (the token in the 0600 request file) into `$out`, failing
/// unless HTTP 200; `items` prints the number of items of every folder of `$out`'s
/// `GetFolderResponse` (all views, Trash and Junk included).
macro_rules! admin_soap {
    () => {
        r#"soap() {
  printf '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header><context xmlns="urn:zimbra"><authToken>%s</authToken>%s<nosession/></context></soap:Header><soap:Body>%s</soap:Body></soap:Envelope>' "$(cat -- "$stage/token")" "$1" "$2" > "$stage/soap.xml"
  code=$(curl -sS -k --proto =https --connect-timeout 30 --max-time 600 -H 'Content-Type: application/soap+xml; charset=utf-8' --data-binary "@$stage/soap.xml" -o "$out" -w '%{http_code}' "$base/service/admin/soap/") || fail "SOAP request failed (curl exit $?)"
  rm -f -- "$stage/soap.xml"
  [ "$code" = 200 ] || fail "HTTP $code: $(text "$out")"
}
items() { tr '\n' ' ' < "$out" | grep -o '<folder [^>]*>' | sed -n 's/.* n="\([0-9]*\)".*/\1/p' | awk '{ n += $1 } END { print n + 0 }'; }
zimbra_id() {
  soap '' "<GetAccountInfoRequest xmlns=\"urn:zimbraAdmin\"><account by=\"name\">$(xml "$account")</account></GetAccountInfoRequest>"
  id=$(tr '\n' ' ' < "$out" | grep -o '<a n="zimbraId">[^<]*</a>' | head -n 1 | sed -e 's/<[^>]*>//g')
  case $id in ''|*[!0-9a-fA-F-]*) fail "no zimbraId for the account in the answer";; esac
  printf '%s' "$id"
}
"#
    };
}

/// Looks at the restore drill's scratch account before anything is written into it:
/// `sh -c "$SCRATCH" sh ACCOUNT STAGE` prints `ZIMBRAID ITEMS`, the account's zimbraId (admin
/// `GetAccountInfoRequest`, zm-mailbox `service/admin/GetAccountInfo.java`) and the items in all
/// its folders (`GetFolderRequest` as the account: mail, contacts, appointments, Trash and Junk
/// included). The drill writes only into an account with no item, and empties it afterwards by
/// that zimbraId ([`EMPTY`]), so a rename in between cannot turn the deletion on someone else.
pub const SCRATCH: &str = concat!(
    r#"set -eu
account=$1; stage=$2; out=$stage/scratch.out; what=check
"#,
    admin_login!(),
    admin_soap!(),
    r#"id=$(zimbra_id)
soap "<account by=\"name\">$(xml "$account")</account>" '<GetFolderRequest xmlns="urn:zimbraMail"/>'
held=$(items)
rm -f -- "$out" "$stage/token" "$stage/cookie.conf"
printf '%s %s\n' "$id" "$held"
"#
);

/// Empties the restore drill's scratch account: `sh -c "$EMPTY" sh ACCOUNT ZIMBRAID STAGE`, with
/// the zimbraId [`SCRATCH`] read before the drill wrote into it. The account must still have that
/// zimbraId (admin `GetAccountInfoRequest`); then the admin `DeleteMailboxRequest` on it
/// (zm-mailbox `service/admin/DeleteMailbox.java`: every item, blob and index entry of the
/// mailbox goes, the account with its password and class of service stays, and the next access
/// makes an empty mailbox), then `GetFolderRequest` as the account must count no item in any
/// folder. Only ever called with `RESTORE_DRILL_ACCOUNT`, after the drill found that account
/// empty.
pub const EMPTY: &str = concat!(
    r#"set -eu
account=$1; want=$2; stage=$3; out=$stage/empty.out; what=empty
"#,
    admin_login!(),
    admin_soap!(),
    r#"case $want in ''|*[!0-9a-fA-F-]*) fail "not a zimbraId: '$want'";; esac
id=$(zimbra_id)
[ "$id" = "$want" ] || fail "the account's zimbraId is $id, not the $want the drill checked: nothing deleted"
soap '' "<DeleteMailboxRequest xmlns=\"urn:zimbraAdmin\"><mbox id=\"$id\"/></DeleteMailboxRequest>"
grep -q 'DeleteMailboxResponse' "$out" || fail "no DeleteMailboxResponse: $(text "$out")"
soap "<account by=\"name\">$(xml "$account")</account>" '<GetFolderRequest xmlns="urn:zimbraMail"/>'
left=$(items)
rm -f -- "$out" "$stage/token" "$stage/cookie.conf"
[ "$left" = 0 ] || fail "$left item(s) are still in the account after DeleteMailbox"
"#
);

/// Parses [`SCRATCH`]'s `ZIMBRAID ITEMS`.
pub fn parse_scratch(text: &str) -> Option<(String, u64)> {
    let (id, items) = text.trim().split_once(' ')?;
    let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    Some((id.to_owned(), items.parse().ok()?)).filter(|_| valid)
}

/// Prints `ACCOUNT BYTES` per line: the mailbox sizes this server reports (`zmprov
/// getQuotaUsage SERVER` prints `name limit used`; SOAP only, so no `-l`). No arguments.
pub const SIZES: &str = r#"set -eu
q=$(su - zimbra -c 'zmprov gqu "$(zmhostname)"') || { echo "zmprov getQuotaUsage failed" >&2; exit 1; }
printf '%s\n' "$q" | LC_ALL=C awk 'NF >= 3 && $(NF-1) ~ /^-?[0-9]+$/ && $NF ~ /^[0-9]+$/ { used = $NF; name = $0; sub(/[ \t]+-?[0-9]+[ \t]+[0-9]+[ \t]*$/, "", name); print name, used }'"#;

/// Parses the output of [`SIZES`].
pub fn parse_sizes(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (name, bytes) = l.trim_end().rsplit_once(' ')?;
            Some((name.to_owned(), bytes.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn the_listing_is_zmprov_over_ldap_as_the_zimbra_user() {
        // ProvUtil: getAllAccounts "gaa" "[-v] [-e] [-s server] [{domain}]", Via.ldap.
        assert_eq!(LIST, "exec su - zimbra -c 'zmprov -l gaa'");
    }

    #[test]
    fn sizes_use_getquotausage_over_soap_for_this_server() {
        // ProvUtil: getQuotaUsage "gqu" "{server}", SOAP only; prints "%s %d %d" name limit used.
        assert!(SIZES.contains(r#"su - zimbra -c 'zmprov gqu "$(zmhostname)"'"#));
        assert!(!SIZES.contains("zmprov -l"), "gqu refuses -l");
        assert_eq!(
            parse_sizes("ani@djki.go.id 1000\nodd name@x 5\nbad line\n"),
            vec![("ani@djki.go.id".into(), 1000), ("odd name@x".into(), 5)]
        );
    }

    #[test]
    fn the_export_streams_the_rest_answer_into_the_file_with_curl() {
        // Not zmmailbox: ZMailbox.getResource reads the whole answer into a ByteArrayOutputStream
        // on ZCS 10.1.9 (maldua/zimbra-foss#21), with or without getRestURL's -o.
        assert!(!EXPORT.contains("zmmailbox"));
        // The localconfig keys ZMailboxUtil's -z and DEFAULT_ADMIN_URL read, shown unmasked (-s).
        assert!(EXPORT.contains(
            "su - zimbra -c 'zmlocalconfig -s -x zimbra_zmprov_default_soap_server \
             zimbra_admin_service_port zimbra_ldap_user zimbra_ldap_password'"
        ));
        assert!(EXPORT.contains(r#"<AuthRequest xmlns="urn:zimbraAdmin">"#));
        assert!(EXPORT.contains(r#""$base/service/admin/soap/""#));
        assert!(EXPORT.contains(r#"url="$home/?fmt=tgz$by_id""#));
        // The body goes to the file as it arrives: `-o "$out"`, never through a variable or pipe.
        assert!(EXPORT.contains(r#"-K "$stage/cookie.conf" -o "$out" -w '%{http_code}' "$url""#));
        assert!(EXPORT.contains(r#"cookie = "ZM_ADMIN_AUTH_TOKEN=%s""#));
        // No secret on a command line: the password only reaches printf (a builtin) and sed's
        // stdin; curl reads the request body and the cookie from files.
        for line in EXPORT.lines() {
            if line.contains("curl ") {
                assert!(
                    !line.contains("$pass") && !line.contains("$token"),
                    "{line}"
                );
                assert!(!line.contains(" -u ") && !line.contains("--user"), "{line}");
            }
        }
        assert!(EXPORT.contains("umask 077"));
    }

    /// Runs EXPORT with stand-ins for `su` and `curl` on PATH that record their argv.
    fn run_with_stubs(
        account: &str,
        status: &str,
    ) -> (std::process::Output, String, std::path::PathBuf) {
        run_script(EXPORT, &["@out", account, "@stage"], status)
    }

    /// Runs `script` with stand-ins for `su` and `curl` on PATH that record their argv; in
    /// `args`, `@out` is the `x.tgz.part` file and `@stage` the stage folder. `status` picks the
    /// stand-in server's answers.
    fn run_script(
        script: &str,
        args: &[&str],
        status: &str,
    ) -> (std::process::Output, String, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("mbb-zimbra-unit-{}-{}", std::process::id(), status));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.join("stage")).unwrap();
        let write = |name: &str, body: &str| {
            let p = bin.join(name);
            std::fs::write(&p, body).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write(
            "su",
            r#"#!/bin/sh
printf 'su' >> "$LOG"; for a in "$@"; do printf ' [%s]' "$a" >> "$LOG"; done; echo >> "$LOG"
printf 'zimbra_zmprov_default_soap_server = localhost\nzimbra_admin_service_port = 7071\nzimbra_ldap_user = zimbra\nzimbra_ldap_password = s3cr&t"pw\n'
"#,
        );
        write(
            "curl",
            r#"#!/bin/sh
printf 'curl' >> "$LOG"; for a in "$@"; do printf ' [%s]' "$a" >> "$LOG"; done; echo >> "$LOG"
out=; url=; prev=; kind=auth
for a in "$@"; do
  [ "$prev" = -o ] && out=$a
  if [ "$prev" = --data-binary ]; then
    for k in GetFolderRequest GetAccountInfoRequest DeleteMailboxRequest; do
      grep -q "$k" "${a#@}" && kind=$k
    done
    if [ "$kind" = auth ]; then cp "${a#@}" "$LOGDIR/request.xml"; else cp "${a#@}" "$LOGDIR/$kind.xml"; fi
  fi
  [ "$prev" = -K ] && cp "$a" "$LOGDIR/cookie.conf"
  prev=$a; url=$a
done
case $url in
  */service/admin/soap/) case $kind in
      GetFolderRequest)
        if [ "$STATUS" = emptied ] && [ -e "$LOGDIR/deleted" ]; then n=0; else n=1; fi
        printf '<soap:Envelope><soap:Body><GetFolderResponse xmlns="urn:zimbraMail"><folder id="1" name="USER_ROOT" absFolderPath="/" n="0"><folder id="2" name="Inbox" absFolderPath="/Inbox" view="message" n="%s"/><folder id="3" name="Trash" absFolderPath="/Trash" n="4"/><folder id="7" name="Contacts" absFolderPath="/Contacts" view="contact" n="9"/></folder></GetFolderResponse></soap:Body></soap:Envelope>' "$n" > "$out"
        [ "$n" = 0 ] && sed -i 's/n="[49]"/n="0"/g' "$out"; printf 200 ;;
      GetAccountInfoRequest) printf '<soap:Envelope><soap:Body><GetAccountInfoResponse xmlns="urn:zimbraAdmin"><name>latihan@djki.go.id</name><a n="zimbraId">0a1b-2c3d</a><a n="zimbraMailHost">mail</a></GetAccountInfoResponse></soap:Body></soap:Envelope>' > "$out"; printf 200 ;;
      DeleteMailboxRequest) touch "$LOGDIR/deleted"; printf '<soap:Envelope><soap:Body><DeleteMailboxResponse xmlns="urn:zimbraAdmin"><mbox mbxid="7"/></DeleteMailboxResponse></soap:Body></soap:Envelope>' > "$out"; printf 200 ;;
      *) printf '<soap:Envelope><soap:Body><AuthResponse xmlns="urn:zimbraAdmin"><authToken>0_abc123</authToken><lifetime>1</lifetime></AuthResponse></soap:Body></soap:Envelope>' > "$out"; printf 200 ;;
    esac ;;
  *'?fmt=tgz&resolve=skip'*) case $STATUS in
       imported) printf "<html>\n<head>\n</head>\n<body onload='onLoad()'>\n<script>\nfunction onLoad() {\n    window.parent.mbbImport('success');\n}\n</script>\n</body>\n</html>\n" > "$out"; printf 200 ;;
       refused) printf "<html>\n<head>\n</head>\n<body onload='onLoad()'>\n<script>\nfunction onLoad() {\n    window.parent.mbbImport('warn',\n\t{\"Code\":{\"Value\":\"soap:Sender\"},\"Reason\":{\"Text\":\"mailbox exceeded quota of 100 bytes\"},\"Detail\":{\"Error\":{\"Code\":\"mail.QUOTA_EXCEEDED\",\"Trace\":\"qtp1\",\"a\":[{\"n\":\"limit\",\"t\":\"NUM\",\"_content\":\"100\"}],\"_jsns\":\"urn:zimbra\"}},\"_jsns\":\"urn:zimbraSoap\"},\n\t{\"Code\":{\"Value\":\"soap:Sender\"},\"Reason\":{\"Text\":\"item content missing meta information\"},\"Detail\":{\"Error\":{\"Code\":\"formatter.MISSING_META\",\"Trace\":\"qtp1\",\"a\":[{\"n\":\"path\",\"t\":\"STR\",\"_content\":\"Inbox/0000000300-a.eml\"}],\"_jsns\":\"urn:zimbra\"}},\"_jsns\":\"urn:zimbraSoap\"});\n}\n</script>\n</body>\n</html>\n" > "$out"; printf 200 ;;
       *) : > "$out"; printf 200 ;;
     esac ;;
  *) case $STATUS in
       ok) tmp=$LOGDIR/t; mkdir -p "$tmp/Inbox"; echo hi > "$tmp/Inbox/0000000257-hi.eml"; tar -czf "$out" -C "$tmp" Inbox; printf 200 ;;
       error) printf '<html><body><h2>HTTP ERROR 500</h2><pre>mail.NO_SUCH_BLOB</pre></body></html>' > "$out"; printf 500 ;;
       html) printf '<html>login</html>' > "$out"; printf 200 ;;
     esac ;;
esac
"#,
        );
        let log = dir.join("log");
        let out = dir.join("x.tgz.part");
        let stage = dir.join("stage");
        let args: Vec<std::ffi::OsString> = args
            .iter()
            .map(|a| match *a {
                "@out" => out.clone().into_os_string(),
                "@stage" => stage.clone().into_os_string(),
                other => other.into(),
            })
            .collect();
        // The fake tools first on the PATH the shell already has.
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("PATH=\"$MBB_FAKE_BIN:$PATH\"\n{script}"))
            .arg("sh")
            .args(&args)
            .current_dir(&dir)
            .env("MBB_FAKE_BIN", &bin)
            .env("LOG", &log)
            .env("LOGDIR", &dir)
            .env("STATUS", status)
            .output()
            .unwrap();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        (output, log, dir)
    }

    #[test]
    fn the_import_asks_for_the_report_page_and_fails_on_refused_items() {
        let archive =
            std::env::temp_dir().join(format!("mbb-zimbra-unit-{}.tgz", std::process::id()));
        std::fs::write(&archive, b"\x1f\x8b").unwrap();
        let a = archive.to_string_lossy().into_owned();
        // Every item taken: 0, and the URL asks for the callback page.
        let (out, log, dir) = run_script(IMPORT, &[&a, "ani@djki.go.id", "@stage"], "imported");
        assert!(out.status.success(), "{out:?} {log}");
        assert!(
            log.contains("[https://localhost:7071/home/ani@djki.go.id?fmt=tgz&resolve=skip&callback=mbbImport]"),
            "{log}"
        );
        assert_eq!(std::fs::read_dir(dir.join("stage")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
        // A drill's copy: no shares.
        let (out, log, dir) = run_script(
            IMPORT,
            &[&a, "latihan@djki.go.id", "@stage", "noacl"],
            "imported",
        );
        assert!(out.status.success(), "{out:?} {log}");
        assert!(log.contains("&callback=mbbImport&acl=0]"), "{log}");
        let _ = std::fs::remove_dir_all(&dir);
        // Items refused (HTTP 200 all the same): failed with every fault's code and text.
        let (out, log, dir) = run_script(IMPORT, &[&a, "ani@djki.go.id", "@stage"], "refused");
        assert!(!out.status.success(), "{log}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refused items: mail.QUOTA_EXCEEDED: mailbox exceeded quota of 100 bytes; formatter.MISSING_META: item content missing meta information Inbox/0000000300-a.eml"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        // An answer that is not the report (an empty 200): not taken as success.
        let (out, _, dir) = run_script(IMPORT, &[&a, "ani@djki.go.id", "@stage"], "plain");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not the import's report"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&archive);
    }

    #[test]
    fn the_scratch_account_is_counted_in_every_folder_and_emptied_only_by_its_zimbra_id() {
        // Inbox 1, Trash 4, Contacts 9: everything counts, not only what an export holds.
        let (out, log, dir) = run_script(SCRATCH, &["latihan@djki.go.id", "@stage"], "held");
        assert!(out.status.success(), "{out:?} {log}");
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(parse_scratch(&printed), Some(("0a1b-2c3d".into(), 14)));
        let info = std::fs::read_to_string(dir.join("GetAccountInfoRequest.xml")).unwrap();
        assert!(
            info.contains("<GetAccountInfoRequest xmlns=\"urn:zimbraAdmin\"><account by=\"name\">latihan@djki.go.id</account>"),
            "{info}"
        );
        assert_eq!(std::fs::read_dir(dir.join("stage")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);

        // Emptied: DeleteMailbox on the id, then nothing left.
        let (out, log, dir) = run_script(
            EMPTY,
            &["latihan@djki.go.id", "0a1b-2c3d", "@stage"],
            "emptied",
        );
        assert!(out.status.success(), "{out:?} {log}");
        let delete = std::fs::read_to_string(dir.join("DeleteMailboxRequest.xml")).unwrap();
        assert!(
            delete.contains("<DeleteMailboxRequest xmlns=\"urn:zimbraAdmin\"><mbox id=\"0a1b-2c3d\"/></DeleteMailboxRequest>"),
            "{delete}"
        );
        assert!(
            !log.contains("0_abc123"),
            "the token never on a command line: {log}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        // Items left after the deletion: failed.
        let (out, _, dir) = run_script(
            EMPTY,
            &["latihan@djki.go.id", "0a1b-2c3d", "@stage"],
            "held",
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("14 item(s) are still"));
        let _ = std::fs::remove_dir_all(&dir);
        // The account has another zimbraId now: nothing deleted.
        let (out, _, dir) = run_script(
            EMPTY,
            &["latihan@djki.go.id", "ffff-0000", "@stage"],
            "emptied",
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("nothing deleted"));
        assert!(!dir.join("deleted").exists());
        let _ = std::fs::remove_dir_all(&dir);

        assert_eq!(parse_scratch("0a1b 0\n"), Some(("0a1b".into(), 0)));
        assert_eq!(parse_scratch("x;y 0"), None);
        assert_eq!(parse_scratch("0a1b"), None);
    }

    #[test]
    fn the_export_keeps_secrets_and_the_account_off_command_lines_and_fails_on_http_errors() {
        let hostile = "-x $(touch pwned) o'b\"c;@djki.go.id";
        let (out, log, dir) = run_with_stubs(hostile, "ok");
        assert!(out.status.success(), "{out:?} {log}");
        assert!(dir.join("x.tgz.part").is_file());
        assert!(!dir.join("pwned").exists() && !Path::new("pwned").exists());
        // su got the fixed command string only; curl never saw the password or the token.
        assert!(log.contains("su [-] [zimbra] [-c] [zmlocalconfig -s -x zimbra_zmprov_default_soap_server zimbra_admin_service_port zimbra_ldap_user zimbra_ldap_password]"), "{log}");
        assert!(!log.contains("s3cr") && !log.contains("0_abc123"), "{log}");
        assert!(log.contains(
            "[https://localhost:7071/home/-x%20%24%28touch%20pwned%29%20o%27b%22c%3B@djki.go.id/?fmt=tgz]"
        ), "{log}");
        let req = std::fs::read_to_string(dir.join("request.xml")).unwrap();
        assert!(
            req.contains("<name>zimbra</name><password>s3cr&amp;t&quot;pw</password>"),
            "{req}"
        );
        let cookie = std::fs::read_to_string(dir.join("cookie.conf")).unwrap();
        assert_eq!(cookie, "cookie = \"ZM_ADMIN_AUTH_TOKEN=0_abc123\"\n");
        // The server's count: GetFolderRequest acting as the account, the token in the file.
        let folders = std::fs::read_to_string(dir.join("GetFolderRequest.xml")).unwrap();
        assert!(
            folders.contains("<authToken>0_abc123</authToken><account by=\"name\">-x $(touch pwned) o'b&quot;c;@djki.go.id</account>"),
            "{folders}"
        );
        // Nothing secret left in the stage.
        assert_eq!(std::fs::read_dir(dir.join("stage")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);

        let (out, log, dir) = run_with_stubs("rusak@djki.go.id", "error");
        assert!(!out.status.success(), "{log}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("HTTP 500") && err.contains("mail.NO_SUCH_BLOB"),
            "{err}"
        );
        assert!(
            !dir.join("x.tgz.part").exists(),
            "no HTML page left as an archive"
        );
        let _ = std::fs::remove_dir_all(&dir);

        let (out, _, dir) = run_with_stubs("ani@djki.go.id", "html");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a gzip archive"));
        assert!(!dir.join("x.tgz.part").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
