//! The server's side of incremental backups (see [`super::piece`]): per mailbox, a state
//! folder under `MAIL_SERVER_BACKUP_DIR/.incremental` (marked like every bot folder; hidden, so
//! no dated-folder retention ever counts it) holding the manifest of the last verified backup
//! (`list`), the day of its last full export (`full`) and, for Dovecot, the mirror that
//! `doveadm backup -s` keeps in step with the mailbox. An export compares the mailbox with
//! `list` and packs only what is new into its piece; the manifest it wrote (`list.pending`)
//! becomes `list` only when the bot has verified the piece ([`COMMIT`]).
//!
//! Which day a mailbox is exported whole: when it has no verified list, when the last export
//! of it was not verified, when it was restored into or its state is doubtful, when
//! `FULL_EVERY_DAYS` have passed since its last full, and on its own day of the rolling
//! schedule (the checksum of its name spreads the mailboxes over the days).

/// The folder name under `MAIL_SERVER_BACKUP_DIR`.
pub const STATE_FOLDER: &str = ".incremental";

/// Shell functions: `state_dir BASE ACCOUNT` prints (and makes) the mailbox's state folder;
/// `make_piece OUT STAGE TREE STATE TODAY EVERY ACCOUNT` writes the piece of the Maildir `TREE`.
macro_rules! piece_fn {
    () => {
        r#"state_base() {
  # Made by one export at a time: the one that makes it marks it, the others wait for the mark.
  if mkdir -m 0711 -- "$1" 2>/dev/null; then
    printf 'mailbox-backup-bot folder\nowner=incremental state\n' > "$1/.mailbox-backup-bot.part" \
      && mv -f -- "$1/.mailbox-backup-bot.part" "$1/.mailbox-backup-bot"
  fi
  _i=0
  while [ -d "$1" ] && [ ! -f "$1/.mailbox-backup-bot" ] && [ "$_i" -lt 50 ]; do sleep 0.1; _i=$((_i+1)); done
  [ -f "$1/.mailbox-backup-bot" ] && [ "$(head -n 1 -- "$1/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ] \
    || { echo "$1 is not the bot's folder" >&2; return 1; }
}
state_dir() {
  state_base "$1" || return 1
  _d="$1/$(printf '%s' "$2" | sha256sum | cut -c1-40)"
  [ -d "$_d" ] || mkdir -m 0711 -- "$_d"
  printf '%s' "$_d"
}
# full_reason STATE TODAY EVERY ACCOUNT STORE: why the mailbox is exported whole today, or
# nothing. STORE names the disk and the form (plain, or the recipients) the pieces are kept in.
full_reason() {
  if [ "$3" -le 1 ]; then echo always
  elif [ ! -f "$1/list" ] || [ ! -f "$1/full" ]; then echo first
  elif [ "$(head -n 1 -- "$1/store" 2>/dev/null)" != "$5" ]; then echo store
  elif [ -e "$1/list.pending" ]; then echo unfinished
  elif [ -e "$1/reset" ]; then echo reset
  else
    _last=$(head -n 1 -- "$1/full")
    case $_last in ''|*[!0-9]*) echo doubtful; return 0;; esac
    _slot=$(printf '%s' "$4" | cksum | cut -d' ' -f1)
    if [ $(($2 - _last)) -ge "$3" ]; then echo due
    elif [ $(( ($2 + _slot) % $3 )) = 0 ] && [ "$2" != "$_last" ]; then echo rolling
    fi
  fi
}
# make_piece OUT STAGE TREE STATE TODAY EVERY ACCOUNT STORE
make_piece() {
  _out=$1; _stage=$2; _tree=$3; _st=$4; _today=$5; _every=$6; _account=$7; _store=$8
  _p=$_stage/piece
  rm -rf -- "$_p" "$_stage/files" "$_stage/known" "$_stage/unknown" "$_stage/members" "$_stage/hashed" \
    "$_stage/objects" "$_stage/objects.count" "$_stage/new" "$_stage/tar.rc"
  mkdir -m 0700 -- "$_p"
  # Full when there is no verified list to build on, when the last one did not finish, when
  # the mailbox was restored into, when its turn in the rolling schedule comes, or always.
  _reason=$(full_reason "$_st" "$_today" "$_every" "$_account" "$_store")
  if [ -n "$_reason" ]; then _export=full; else _export=changes; fi
  if [ "$_export" = full ]; then _prev=/dev/null; else _prev=$_st/list; fi
  # Every file of the tree: folder TAB name TAB size TAB mtime. A message is a file of a cur/ or new/.
  # A file gone between the listing and its stat (a delivery's tmp/, a flag set): read again (75).
  ( cd -- "$_tree" && find . -ignore_readdir_race -type f -printf '%h\t%f\t%s\t%Ts\n' ) > "$_stage/files" || return 75
  LC_ALL=C awk -F'\t' -v OFS='\t' -v known="$_stage/known" -v unknown="$_stage/unknown" \
    -v meta="$_stage/members" -v prev="$_prev" '
    function key(p,  b) { b = p; sub(/:2,[^\/]*$/, "", b); sub(/(^|\/)(cur|new)\//, "/", b); return b }
    FILENAME == prev { if (NF == 5) { k = key($5); sha[k] = $1; sz[k] = $2; pc[k] = $3; mt[k] = $4 }; next }
    {
      if (NF != 4 || $2 ~ /\\/ || $4 !~ /^[0-9]+$/) { print "a file name the backup cannot carry under " $1 > "/dev/stderr"; bad = 1; exit 3 }
      d = $1; sub(/^\.\/?/, "", d)
      path = (d == "" ? "" : d "/") $2
      if (d ~ /(^|\/)(cur|new)$/) {
        k = key(path)
        if ((k in sha) && sz[k] == $3 && mt[k] == $4) print sha[k], $3, pc[k], $4, path > known
        else print $3, $4, path > unknown
      } else if (d !~ /(^|\/)tmp$/ && $2 !~ /^dovecot(\.list)?\.index/ && path !~ /^mbb-/) print path > meta
    }
    END { if (bad) exit 3 }' "$_prev" "$_stage/files" || return 1
  : >> "$_stage/known"; : >> "$_stage/unknown"; : >> "$_stage/members"
  # The new files hashed: OpenSSL's digest when the server has it, else coreutils'.
  # A file renamed meanwhile (a flag set on a live Maildir) fails the hash: look again (75).
  cut -f3- "$_stage/unknown" | sed 's|^|./|' | tr '\n' '\0' | ( cd -- "$_tree" && if command -v openssl >/dev/null 2>&1; then
      xargs -0 -r openssl dgst -sha256 -r; else xargs -0 -r sha256sum; fi ) > "$_stage/hashed" || return 75
  # The new ones: carried by an earlier piece when one holds the same bytes (a moved or copied
  # message), otherwise by this piece (`-`), each content once — but every file in a whole
  # export, whose piece is then the Maildir itself, restorable by hand with tar alone.
  LC_ALL=C awk -F'\t' -v OFS='\t' -v prev="$_prev" -v sizes="$_stage/unknown" -v whole="$_export" \
      -v objects="$_stage/objects" -v manifest="$_stage/new" '
    FILENAME == prev { if (NF == 5 && !($1 in pc)) pc[$1] = $3; next }
    FILENAME == sizes { p = $0; sub(/^[^\t]*\t[^\t]*\t/, "", p); size[p] = $1; mtime[p] = $2; next }
    {
      h = substr($0, 1, 64); p = substr($0, 67); sub(/^\.\//, "", p)
      if (length(h) != 64 || h !~ /^[0-9a-f]+$/ || !(p in size)) { print "cannot read the hash of " p > "/dev/stderr"; bad = 1; exit 3 }
      if (h in pc) piece = pc[h]
      else { piece = "-"; if (whole == "full" || !(h in mine)) { mine[h] = 1; print p > objects; n++; b += size[p] } }
      print h, size[p], piece, mtime[p], p > manifest
    }
    END { if (bad) exit 3; printf "%d %d\n", n, b > (objects ".count") }' "$_prev" "$_stage/unknown" "$_stage/hashed" || return 1
  : >> "$_stage/objects"; : >> "$_stage/new"
  [ -s "$_stage/objects.count" ] || echo "0 0" > "$_stage/objects.count"
  LC_ALL=C sort -t "$(printf '\t')" -k5 -- "$_stage/known" "$_stage/new" > "$_p/mbb-manifest"
  if [ "$_export" = changes ] && cmp -s -- "$_p/mbb-manifest" "$_st/list"; then _export=unchanged; fi
  read -r _n _b < "$_stage/objects.count"
  _m=$(wc -l < "$_p/mbb-manifest")
  printf 'mailbox-backup-bot piece 1\nexport=%s\nreason=%s\nmessages=%s\nnew=%s\nnew_bytes=%s\n' \
    "$_export" "$_reason" "$_m" "$_n" "$_b" > "$_p/mbb-piece"
  # The bot's two members carry no time of their own: the same mailbox makes the same piece.
  touch -d @0 -- "$_p/mbb-piece" "$_p/mbb-manifest"
  # The folders (their cur, new and tmp, also when empty), the small files beside the mail, and
  # the new messages, in one order: the same mailbox makes the same piece.
  ( cd -- "$_tree" && find . -type d \( -name cur -o -name new -o -name tmp \) -printf '%P\n' ) > "$_stage/dirs"
  LC_ALL=C sort -u -- "$_stage/dirs" "$_stage/members" "$_stage/objects" | tr '\n' '\0' > "$_stage/all"
  cp -- "$_p/mbb-manifest" "$_st/list.pending"
  printf '%s\n' "$_store" > "$_st/store.pending"
  if [ "$_export" = full ]; then printf '%s\n' "$_today" > "$_st/full.pending"; else rm -f -- "$_st/full.pending"; fi
  { tar --format=gnu --no-recursion --owner=0 --group=0 --numeric-owner --mode=u+rw,go-rwx \
      -cf - -C "$_p" mbb-piece mbb-manifest -C "$_tree" --null --verbatim-files-from --no-unquote -T "$_stage/all" \
      || echo $? > "$_stage/tar.rc"; } \
    | gzip -n > "$_out"
  [ ! -e "$_stage/tar.rc" ] || return 75
}
# piece_of: make_piece's arguments; a mailbox that changed under it is read again, twice.
piece_of() {
  _try=0
  while :; do
    set +e; ( set -e; make_piece "$@" ); _rc=$?; set -e
    [ "$_rc" = 0 ] && return 0
    _try=$((_try+1))
    if [ "$_rc" != 75 ] || [ "$_try" -ge 3 ]; then
      [ "$_rc" != 75 ] || echo "the mailbox kept changing while it was read" >&2
      return "$_rc"
    fi
  done
}
"#
    };
}

pub(crate) use piece_fn;

macro_rules! commit_fn {
    () => {
        r#"# commit_piece STATE SHA: the piece verified; its list becomes the one the next export builds on.
commit_piece() {
  _st=$1; _sha=$2
  [ -f "$_st/list.pending" ] || return 0
  LC_ALL=C awk -F'\t' -v OFS='\t' -v p="$_sha" '$3 == "-" { $3 = p } { print }' "$_st/list.pending" > "$_st/list.part" \
    && mv -f -- "$_st/list.part" "$_st/list" || { rm -f -- "$_st/list.part"; return 1; }
  wc -l < "$_st/list" | tr -d ' ' > "$_st/messages"
  [ ! -f "$_st/full.pending" ] || mv -f -- "$_st/full.pending" "$_st/full"
  [ ! -f "$_st/store.pending" ] || mv -f -- "$_st/store.pending" "$_st/store"
  rm -f -- "$_st/list.pending" "$_st/reset"
}
"#
    };
}

/// After the verified copy: `$1` the state base, `$2` the run's server folder, then `ACCOUNT
/// FILE SHA256` of the pieces verified. Each mailbox's pending list becomes the one its next
/// export builds on, the change markers taken before its export become the ones [`UNCHANGED`]
/// compares with, and its piece is kept (a hard link) for the days it does not change.
pub const COMMIT: &str = concat!(
    commit_fn!(),
    r#"set -u
umask 077
base=$1; dir=$2; shift 2
[ -f "$base/.mailbox-backup-bot" ] || exit 0
while [ $# -ge 3 ]; do
  st="$base/$(printf '%s' "$1" | sha256sum | cut -c1-40)"; file=$2; sha=$3; shift 3
  case $sha in *[!0-9a-f]*|'') continue;; esac
  case $file in ''|.*|*/*) continue;; esac
  [ -d "$st" ] || continue
  if [ -f "$st/list.pending" ]; then
    commit_piece "$st" "$sha" || { echo "cannot keep the verified list of $1" >&2; continue; }
    if [ -f "$st/sig.pending" ] && ln -f -- "$dir/$file" "$st/piece.part"; then
      mv -f -- "$st/piece.part" "$st/piece"; printf '%s\n' "$sha" > "$st/piece.sha"
      mv -f -- "$st/sig.pending" "$st/sig"
    else
      rm -f -- "$st/sig" "$st/piece" "$st/piece.sha" "$st/piece.part"
    fi
  fi
done
true"#
);

/// Before the exports: the mailboxes whose server's change markers are as at their last
/// verified backup, asked of the server once for all (`$6`, a script taking `$7`, prints
/// `ACCOUNT TAB MARKERS` lines). Arguments: `$1` the run's server folder, `$2` the state base,
/// `$3` today's day number, `$4` `FULL_EVERY_DAYS`, `$5` the store (the disk and the form the
/// pieces are kept in), then `ACCOUNT FILE` pairs. An unchanged
/// mailbox not due a whole export gets its last verified piece as today's (a hard link, with
/// its record: its SHA-256 and the server's count) and is not exported; prints their files.
pub const UNCHANGED: &str = concat!(
    piece_fn!(),
    r#"set -eu
umask 077
dir=$1; base=$2; today=$3; every=$4; store=$5; markers=$6; arg=$7; shift 7
[ -f "$dir/.mailbox-backup-bot" ] || exit 0
state_base "$base"
tmp="$dir/.run/unchanged"; rm -rf -- "$tmp"; mkdir -p -- "$tmp/m"
for a; do printf '%s\n' "$a"; done > "$tmp/pairs"
sh -c "$markers" sh "$arg" | LC_ALL=C sort > "$tmp/all" || { rm -rf -- "$tmp"; exit 0; }
# Each account's markers in a file of its own, by its place among the pairs.
LC_ALL=C awk -F'\t' -v out="$tmp/m" '
  FILENAME == ARGV[1] { if (FNR % 2 == 1) at[$0] = (FNR + 1) / 2; next }
  { a = $1; if (!(a in at)) next; rest = substr($0, length(a) + 2); print rest > (out "/" at[a]) }
' "$tmp/pairs" "$tmp/all"
mkdir -p -- "$dir/.sums"
i=0
while [ $# -ge 2 ]; do
  account=$1; file=$2; shift 2; i=$((i+1))
  case $file in ''|.*|*/*) continue;; esac
  st="$base/$(printf '%s' "$account" | sha256sum | cut -c1-40)"
  [ -d "$st" ] && [ -f "$st/sig" ] && [ -f "$st/piece" ] && [ -f "$st/piece.sha" ] || continue
  [ -z "$(full_reason "$st" "$today" "$every" "$account" "$store")" ] || continue
  [ -f "$tmp/m/$i" ] && cmp -s -- "$tmp/m/$i" "$st/sig" || continue
  [ ! -e "$dir/$file" ] || continue
  n=$(head -n 1 -- "$st/messages" 2>/dev/null || true)
  case $n in ''|*[!0-9]*) continue;; esac
  sha=$(head -n 1 -- "$st/piece.sha"); size=$(stat -c %s -- "$st/piece")
  printf '%s %s %s %s\n' "$sha" "$size" "$n" "$n" > "$dir/.sums/$file"
  ln -- "$st/piece" "$dir/$file" && printf '%s\n' "$file" || rm -f -- "$dir/.sums/$file"
done
rm -rf -- "$tmp""#
);

/// `$1` the state base, then accounts whose next export is whole (a piece that failed its
/// checks, a mailbox restored into).
pub const RESET: &str = r#"set -u
umask 077
base=$1; shift
[ -f "$base/.mailbox-backup-bot" ] || exit 0
for a in "$@"; do
  st="$base/$(printf '%s' "$a" | sha256sum | cut -c1-40)"
  [ -d "$st" ] && : > "$st/reset"
done
true"#;
