//! The server folder's life: claimed with a marker, written by exports that leave a pid file,
//! checked for free space, closed with a manifest, and removed by retention — each a fixed
//! shell script whose values arrive only as positional arguments (escaped by the SSH layer).
//!
//! The rule that keeps the mail server safe: nothing is removed unless it lies in a folder that
//! carries the bot's marker, and processes are killed only when their command line names that
//! folder.

/// A shell function `sha256 FILE` printing the file's SHA-256 in hex: OpenSSL's when the server
/// has it (it uses the CPU's SHA instructions: 1 GiB in about 1 s here, where coreutils'
/// `sha256sum` takes 4.5 s), otherwise `sha256sum`'s.
macro_rules! sha256_fn {
    () => {
        r#"sha256() {
  if command -v openssl >/dev/null 2>&1; then
    _h=$(openssl dgst -sha256 -r < "$1" 2>/dev/null | cut -d' ' -f1)
    if [ ${#_h} = 64 ]; then printf '%s\n' "$_h"; return 0; fi
  fi
  sha256sum < "$1" | cut -d' ' -f1
}
"#
    };
}

pub(crate) use sha256_fn;

/// The marker file in every folder the bot makes, on the server and locally.
pub const MARKER_FILE: &str = ".mailbox-backup-bot";
/// Its first line.
pub const MARKER_HEAD: &str = "mailbox-backup-bot folder";

/// The marker's text: the head line, then `key=value` lines.
pub fn marker_text(owner: &str, created: &str) -> String {
    let owner: String = owner.chars().filter(|c| !c.is_control()).collect();
    format!("{MARKER_HEAD}\nowner={owner}\ncreated={created}\n")
}

/// Claims a new folder `$1/$2`, or `$2_2`, `_3` … when that name exists (the bot's or not: an
/// existing folder is never reused or emptied). Writes the marker `$3` into it and prints its path.
pub const CLAIM: &str = r#"set -eu
base=$1; name=$2; marker=$3
mkdir -p -- "$base"
n=1; d="$base/$name"
while ! mkdir -m 0711 -- "$d" 2>/dev/null; do
  [ -d "$d" ] || [ -e "$d" ] || { echo "cannot create $d" >&2; exit 1; }
  n=$((n+1)); [ "$n" -lt 1000 ] || { echo "more than 999 folders named $name" >&2; exit 1; }
  d="$base/${name}_$n"
done
printf '%s' "$marker" > "$d/.mailbox-backup-bot"
printf '%s' "$d""#;

/// Removes a folder the bot has just claimed when it holds nothing but the marker (a backup
/// refused before writing anything leaves no trace).
pub const RELEASE: &str = r#"[ "$(ls -A -- "$1")" = ".mailbox-backup-bot" ] && rm -f -- "$1/.mailbox-backup-bot" && rmdir -- "$1""#;

/// Exit 0 when `$1` is a folder carrying the bot's marker.
pub const IS_OURS: &str = r#"[ -d "$1" ] && [ -f "$1/.mailbox-backup-bot" ] && [ "$(head -n 1 -- "$1/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ]"#;

/// Stops whatever an earlier run still has going in the bot's folder `$1` (a killed bot, a
/// dropped connection, a cancel), then removes its temporary files. Only processes whose command
/// line names this folder are signalled; prints how many were stopped.
pub const STOP_WRITERS: &str = r#"set -u
dir=$1
[ -f "$dir/.mailbox-backup-bot" ] && [ "$(head -n 1 -- "$dir/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ] || exit 0
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' '\n' < "/proc/$1/cmdline" | grep -qxF -- "$dir"; }
stopped=0; alive=""; groups=""
for f in "$dir"/.run/*.pid; do
  [ -f "$f" ] || continue
  wrapper=""; group=""
  read -r wrapper group < "$f" || true
  case "$wrapper$group" in *[!0-9]*|'') continue;; esac
  # The wrapper first, so it cannot rename a half-killed export into place.
  if ours "$wrapper"; then
    kill -TERM "$wrapper" 2>/dev/null; alive="$alive $wrapper"
    # Its own children (the checksum of a finished archive) would go on reading a deleted file.
    command -v pkill >/dev/null 2>&1 && pkill -TERM -P "$wrapper" 2>/dev/null
  fi
  if ours "$group"; then
    kill -TERM "-$group" 2>/dev/null; alive="$alive $group"; groups="$groups $group"; stopped=$((stopped+1))
  fi
done
i=0
while [ -n "$alive" ] && [ $i -lt 50 ]; do
  left=""; for p in $alive; do ours "$p" && left="$left $p"; done; alive=$left
  [ -z "$alive" ] && break
  sleep 0.1; i=$((i+1))
done
for p in $alive; do kill -KILL "$p" 2>/dev/null; done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
rm -rf -- "$dir/.run" "$dir/.stage"
find "$dir" -maxdepth 1 -name '.*.part' -type f -exec rm -f -- {} +
echo "$stopped""#;

/// Exports one mailbox with the kind's script, in its own process group, watching the free
/// space of the server folder's file system. Arguments: `$1` folder, `$2` archive name (`-`:
/// the script writes into the folder itself), `$3` the floor in KiB, `$4` the kind's script,
/// then the script's own arguments after OUT (account, extras). The kind's script is called as
/// `sh -c SCRIPT sh OUT ACCOUNT STAGE EXTRA…`, and may write the server's message count of the
/// mailbox (`BEFORE AFTER`, counted around the export) to the file `$MBB_COUNT`. Exit 99:
/// stopped at the free-space floor.
///
/// A finished archive's record — `SHA256 SIZE BEFORE AFTER` (`-` for a count not known) — is
/// written to `.sums/NAME` before the archive gets its name, and printed: step 6 can copy it at
/// once, and a resumed run finds every finished archive's checksum without hashing it again.
pub const EXPORT_ONE: &str = concat!(
    sha256_fn!(),
    r#"set -u
dir=$1; file=$2; floor=$3; script=$4; shift 4
account=${1:-}; [ $# -gt 0 ] && shift
# Archive names are unique within a run; the command kind has one export.
if [ "$file" = - ]; then key=command; part=-; else key=$file; part="$dir/.$file.$$.part"; fi
run="$dir/.run"; stage="$dir/.stage/$key"; rc="$dir/.run/$key.rc"; count="$dir/.run/$key.count"
[ -f "$dir/.mailbox-backup-bot" ] || { echo "$dir is not the bot's folder" >&2; exit 1; }
mkdir -p -- "$run" "$dir/.stage"
rm -rf -- "$stage"; mkdir -m 0700 -- "$stage"; rm -f -- "$rc" "$count"
# Free KiB for unprivileged writers; a file system that cannot be read counts as full.
below() {
  a=$(stat -f -c '%a %S' -- "$dir" 2>/dev/null | awk '{printf "%d", $1 * $2 / 1024}')
  case $a in ''|*[!0-9]*) return 0;; esac
  [ "$a" -lt "$floor" ]
}
finish() { rm -rf -- "$stage"; rm -f -- "$rc" "$count" "$run/$key.pid"; }
if below; then
  finish; echo "free space at $dir is below the floor of $floor KiB" >&2; exit 99
fi
# setsid: the export gets a process group of its own (sh has no job control without a tty),
# whose leader names this folder on its command line (see STOP_WRITERS).
MBB_COUNT=$count; export MBB_COUNT
setsid sh -c 'dir=$1; rc=$2; script=$3; shift 3; (umask 077; sh -c "$script" sh "$@"); echo $? > "$rc"' \
  sh "$dir" "$rc" "$script" "$part" "$account" "$stage" "$@" &
group=$!
echo "$$ $group" > "$run/$key.pid"
status=running
gone() { st=$(cut -d' ' -f3 "/proc/$group/stat" 2>/dev/null); [ -z "$st" ] || [ "$st" = Z ]; }
# Small mailboxes export in tens of milliseconds: look often at first, then every 0.2 s.
polls=0
while [ ! -s "$rc" ]; do
  if below; then kill -TERM "-$group" 2>/dev/null; status=nospace; break; fi
  if gone; then sleep 0.2; [ -s "$rc" ] || echo "the export was killed" >&2; break; fi
  if [ $polls -lt 20 ]; then polls=$((polls+1)); sleep 0.01; else sleep 0.2; fi
done
wait "$group" 2>/dev/null
code=$(cat "$rc" 2>/dev/null); [ -n "$code" ] || code=1
# 99 means the floor only when this wrapper says so.
[ "$code" = 99 ] && code=1
if [ "$status" = nospace ]; then
  kill -KILL "-$group" 2>/dev/null
  [ "$part" = - ] || rm -f -- "$part"
  finish; echo "stopped: free space at $dir fell to the floor of $floor KiB" >&2; exit 99
fi
if [ "$code" != 0 ]; then
  [ "$part" = - ] || rm -f -- "$part"
  finish; exit "$code"
fi
if [ "$part" != - ]; then
  [ -f "$part" ] || { finish; echo "the export wrote no archive" >&2; exit 1; }
  h=$(sha256 "$part") && s=$(stat -c %s -- "$part") && [ ${#h} = 64 ] \
    || { rm -f -- "$part"; finish; echo "cannot checksum the archive of $file" >&2; exit 1; }
  n=$(head -n 1 -- "$count" 2>/dev/null); set -- $n
  case "${1:-x}${2:-x}" in *[!0-9]*) n="- -";; *) n="$1 $2";; esac
  mkdir -p -- "$dir/.sums" && printf '%s %s %s\n' "$h" "$s" "$n" > "$dir/.sums/$file" \
    || { rm -f -- "$part"; finish; echo "cannot record the checksum of $file" >&2; exit 1; }
  mv -fT -- "$part" "$dir/$file" || { rm -f -- "$part"; finish; echo "cannot put $file in place" >&2; exit 1; }
  printf '%s %s %s\n' "$h" "$s" "$n"
fi
finish"#
);

/// Every finished archive of the bot's folder `$1` with its record (see [`EXPORT_ONE`]), as
/// `SHA256 SIZE BEFORE AFTER NAME\0`; an archive whose record is missing or names another size
/// is hashed again. With `$2` = `close` (the end of step 5) it also writes `SHA256SUMS` and
/// `.manifest` (only when there is at least one archive) and removes the export's working files.
pub const SUMS: &str = concat!(
    sha256_fn!(),
    r#"set -eu
cd -- "$1"; mode=${2:-list}
[ -f .mailbox-backup-bot ] && [ "$(head -n 1 .mailbox-backup-bot)" = 'mailbox-backup-bot folder' ] \
  || { echo "$1 is not the bot's folder" >&2; exit 1; }
[ "$mode" = list ] || { : > .manifest.part; : > .SHA256SUMS.part; }
for f in *; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  case "$f" in SHA256SUMS) continue;; esac
  s=$(stat -c %s -- "$f"); rec=$(head -n 1 -- ".sums/$f" 2>/dev/null || true)
  set -- $rec
  if [ $# = 4 ] && [ "$2" != "$s" ]; then
    echo "$f changed on the server after its export ($2 bytes then, $s now)" >&2; exit 1
  fi
  if [ $# != 4 ]; then
    h=$(sha256 "$f"); [ ${#h} = 64 ] || { echo "cannot checksum $f" >&2; exit 1; }
    rec="$h $s - -"
    mkdir -p .sums; printf '%s\n' "$rec" > ".sums/$f"; set -- $rec
  fi
  printf '%s %s\0' "$rec" "$f"
  [ "$mode" = list ] || { printf '%s %s %s\0' "$1" "$2" "$f" >> .manifest.part; printf '%s  %s\n' "$1" "$f" >> .SHA256SUMS.part; }
done
[ "$mode" = list ] && exit 0
rm -rf .stage .run
if [ ! -s .manifest.part ]; then rm -f .manifest.part .SHA256SUMS.part; exit 0; fi
mv -f .SHA256SUMS.part SHA256SUMS
mv -f .manifest.part .manifest"#
);

/// Free space of the file system holding `$1`: `avail_kib size_kib mount_point`.
pub const FREE_SPACE: &str = r#"df -Pk -- "$1" | awk 'NR==2 {printf "%s %s ", $4, $2; for (i=6;i<=NF;i++) printf "%s%s", $i, (i<NF?" ":""); print ""}'"#;

/// The KiB the newest bot-made folder under `$1` holds (for the `command` kind's estimate).
pub const LAST_RUN_SIZE: &str = r#"cd -- "$1" 2>/dev/null || { echo 0; exit 0; }
best=""; bestc=""
for d in */; do
  d=${d%/}; m="$d/.mailbox-backup-bot"
  [ -f "$m" ] && [ -f "$d/.manifest" ] && [ "$(head -n 1 -- "$m")" = 'mailbox-backup-bot folder' ] || continue
  c=$(sed -n 's/^created=//p' "$m")
  if [ -z "$bestc" ] || [ "$c" \> "$bestc" ]; then best=$d; bestc=$c; fi
done
if [ -n "$best" ]; then du -sk -- "$best" | cut -f1; else echo 0; fi"#;

/// Size and SHA-256 of every archive in `$1`, as `sha256 size name\0`; also written to
/// `$1/SHA256SUMS` (for `sha256sum -c` on the server) and `$1/.manifest` (marks step 5 complete
/// — only when it lists at least one archive, so an empty step 5 is done again, never trusted).
pub const MANIFEST: &str = concat!(
    sha256_fn!(),
    r#"set -eu
cd -- "$1"
: > .manifest.part; : > .SHA256SUMS.part
for f in *; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  case "$f" in SHA256SUMS) continue;; esac
  h=$(sha256 "$f"); s=$(stat -c %s -- "$f")
  [ ${#h} = 64 ] || { echo "cannot checksum $f" >&2; exit 1; }
  printf '%s %s %s\0' "$h" "$s" "$f" >> .manifest.part
  printf '%s  %s\n' "$h" "$f" >> .SHA256SUMS.part
done
rm -rf .stage .run
if [ ! -s .manifest.part ]; then rm -f .manifest.part .SHA256SUMS.part; exit 0; fi
mv -f .SHA256SUMS.part SHA256SUMS
mv -f .manifest.part .manifest
cat .manifest"#
);

/// Removes the output an earlier, failed run of the `command` kind left in the bot's folder `$1`
/// (its visible files; the marker and the bot's own hidden files stay).
pub const CLEAR_OUTPUT: &str = r#"[ -f "$1/.mailbox-backup-bot" ] && [ "$(head -n 1 -- "$1/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ] || exit 0
find "$1" -mindepth 1 -maxdepth 1 ! -name '.*' -exec rm -rf -- {} +
rm -f -- "$1/.manifest" "$1/.failed""#;

/// Reads a finished step 5 back (for a resumed run): the manifest and the failures.
/// Exit 4: step 5 did not finish in this folder.
pub const READ_STATE: &str = r#"cd -- "$1" 2>/dev/null || exit 3
[ -f .manifest ] || exit 4
cat .manifest; printf '\n--failed--\n'; cat .failed 2>/dev/null || true"#;

/// The archives already complete in `$1` (NUL-separated), for a step 5 that goes on.
pub const LIST_DONE: &str =
    r#"cd -- "$1" && for f in *; do [ -f "$f" ] && printf '%s\0' "$f"; done; true"#;

/// Reopens step 5 of the bot's folder `$1` (the backup ordered again after a mailbox failed):
/// the manifest and the recorded failures go, the finished archives and their records stay.
pub const REOPEN: &str = r#"cd -- "$1" && [ -f .mailbox-backup-bot ] && [ "$(head -n 1 .mailbox-backup-bot)" = 'mailbox-backup-bot folder' ] && rm -f -- .manifest .failed"#;

/// Forgets the archive `$2` of the bot's folder `$1` that failed its count or its read-back
/// (account `$3`, why `$4`): the archive and its record go and the failure is recorded, so the
/// backup ordered again exports the mailbox again instead of repeating the result.
pub const FORGET: &str = r#"cd -- "$1" && [ -f .mailbox-backup-bot ] && [ "$(head -n 1 .mailbox-backup-bot)" = 'mailbox-backup-bot folder' ] || exit 1
case $2 in ''|.*|*/*) exit 1;; esac
rm -f -- "./$2" "./.sums/$2"
printf '%s\t%s\0' "$3" "$4" >> .failed"#;

pub const RECORD_FAILURE: &str = r#"printf '%s\t%s\0' "$2" "$3" >> "$1/.failed""#;
pub const CLEAR_FAILURES: &str = r#"rm -f -- "$1/.failed""#;

/// Server retention: of the bot-made folders under `$1` (marker present), keeps the newest `$2`
/// by the marker's creation time and removes the rest; never one without the marker, never one
/// with a live export (`.run`), never `$3` unless `$2` is 0. Prints what it removed.
pub const RETENTION: &str = r#"set -eu
base=$1; keep=$2; current=$3
cd -- "$base"
tab=$(printf '\t'); nl=$(printf '\nx'); nl=${nl%x}
ours() { [ -f "$1/.mailbox-backup-bot" ] && [ ! -L "$1" ] && [ "$(head -n 1 -- "$1/.mailbox-backup-bot")" = 'mailbox-backup-bot folder' ]; }
# A folder whose pid files name a live export of it is in use.
live() {
  for f in "$1"/.run/*.pid; do
    [ -f "$f" ] || continue
    for p in $(cat -- "$f"); do
      case $p in *[!0-9]*|'') continue;; esac
      [ -r "/proc/$p/cmdline" ] && tr '\0' '\n' < "/proc/$p/cmdline" | grep -qxF -- "$base/$1" && return 0
    done
  done
  return 1
}
for d in */; do
  d=${d%/}
  case $d in *"$tab"*|*"$nl"*|-*|'') continue;; esac
  ours "$d" || continue
  c=$(sed -n 's/^created=//p' -- "$d/.mailbox-backup-bot" | head -n 1)
  case $c in *[!0-9TZ:.+-]*|'') continue;; esac
  printf '%s\t%s\n' "$c" "$d"
done | LC_ALL=C sort -r | tail -n "+$((keep + 1))" | while IFS=$tab read -r created d; do
  [ -n "$d" ] || continue
  if [ "$base/$d" = "$current" ] && [ "$keep" -gt 0 ]; then continue; fi
  ours "$d" || continue
  live "$d" && continue
  rm -rf -- "$d" && printf '%s\n' "$d"
done"#;

/// The free space of the server folder's file system.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpace {
    pub avail: u64,
    pub size: u64,
    pub mount: String,
}

/// [`FREE_SPACE`] of `$1`, or of its nearest existing parent when it is not made yet.
pub const FREE_SPACE_NEAREST: &str = concat!(
    r#"d=$1; while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done; set -- "$d"; "#,
    r#"df -Pk -- "$1" | awk 'NR==2 {printf "%s %s ", $4, $2; for (i=6;i<=NF;i++) printf "%s%s", $i, (i<NF?" ":""); print ""}'"#
);

/// Parses [`FREE_SPACE`]'s output.
pub fn parse_space(out: &str) -> Option<ServerSpace> {
    let mut it = out.trim().splitn(3, ' ');
    let avail: u64 = it.next()?.parse().ok()?;
    let size: u64 = it.next()?.parse().ok()?;
    Some(ServerSpace {
        avail: avail * 1024,
        size: size * 1024,
        mount: it.next().unwrap_or("").to_owned(),
    })
}

#[cfg(test)]
mod nearest_tests {
    #[test]
    fn the_nearest_folder_variant_ends_with_the_plain_script() {
        assert!(super::FREE_SPACE_NEAREST.ends_with(super::FREE_SPACE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Floor;

    #[test]
    fn the_floor_reads_percentages_and_sizes() {
        assert_eq!(Floor::parse("15%"), Some(Floor::Percent(15.0)));
        assert_eq!(Floor::parse("10G"), Some(Floor::Bytes(10 << 30)));
        assert_eq!(Floor::parse("500MiB"), Some(Floor::Bytes(500 << 20)));
        assert_eq!(Floor::parse("8m"), Some(Floor::Bytes(8 << 20)));
        assert_eq!(Floor::parse("4096"), Some(Floor::Bytes(4096)));
        for bad in ["", "x", "150%", "-1G", "5Q"] {
            assert_eq!(Floor::parse(bad), None, "{bad}");
        }
        assert_eq!(Floor::Percent(15.0).bytes(1000), 150);
        assert_eq!(Floor::Bytes(7).bytes(1000), 7);
    }

    #[test]
    fn df_output_is_read_with_the_mount_point() {
        assert_eq!(
            parse_space("1024 4096 /var/lib/my disk\n"),
            Some(ServerSpace {
                avail: 1 << 20,
                size: 4 << 20,
                mount: "/var/lib/my disk".into()
            })
        );
        assert_eq!(parse_space("garbage"), None);
    }

    #[test]
    fn the_marker_has_no_line_breaks_from_its_owner() {
        assert_eq!(
            marker_text("order 7\nx", "2026-11-25T00:00:00Z"),
            "mailbox-backup-bot folder\nowner=order 7x\ncreated=2026-11-25T00:00:00Z\n"
        );
    }
}

#[cfg(test)]
mod hash_tests {
    use std::process::Command;

    #[test]
    fn the_servers_sha256_is_the_same_with_openssl_and_with_coreutils_alone() {
        let dir = std::env::temp_dir().join(format!("mbb-sha256-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("scratch");
        let file = dir.join("archive.tar.gz");
        std::fs::write(&file, b"abc").expect("write");
        // A PATH with coreutils' sha256sum and cut only: no openssl.
        for tool in ["sha256sum", "cut"] {
            std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool)).expect("link");
        }
        let hash = |path: &str| {
            let out = Command::new("/bin/sh")
                .arg("-c")
                .arg(concat!(sha256_fn!(), r#"sha256 "$1""#))
                .arg("sh")
                .arg(&file)
                .env("PATH", path)
                .output()
                .expect("sh");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hash("/usr/bin:/bin"), abc);
        assert_eq!(hash(&bin.to_string_lossy()), abc);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
