# Shared by scripts/demo, scripts/test and scripts/bench: install what is missing and start the
# loopback services (PostgreSQL, sshd, Dovecot) under a throw-away folder. Source it; it exports
# what the tests and the bot read. Debian 12, as root.

set -euo pipefail

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# apt packages the project needs (a fresh Debian 12 may have none of them).
ensure_packages() {
  local want=(postgresql postgresql-client openssh-server openssh-client dovecot-core dovecot-imapd dovecot-sieve
              libssl-dev pkg-config gcc curl ca-certificates rsync python3 tar gzip coreutils procps
              openssl passwd exfat-fuse exfatprogs)
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Dovecot's package may start a system instance; ours runs on its own config.
  if ! getent passwd vmail >/dev/null; then useradd --system --no-create-home vmail; fi
  command -v cargo >/dev/null || { echo "cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
}

# Uses the server at DATABASE_URL when one answers; otherwise runs a private PostgreSQL cluster
# in DIR/pg (initdb as the `postgres` user, 127.0.0.1 on a free port, a random password), so the
# machine's own clusters are never started or changed. stop_services stops it; the folder goes
# with DIR. Exports DATABASE_URL, and TEST_PG_BIN for tests that run a cluster of their own.
ensure_postgres() {
  local dir=$1 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [[ -n "$bin" ]] || { echo "PostgreSQL's server binaries are missing (apt-get install postgresql)" >&2; return 1; }
  export TEST_PG_BIN=$bin
  if [[ -n "${DATABASE_URL:-}" ]] && psql "$DATABASE_URL" -qtAc 'select 1' >/dev/null 2>&1; then
    log "using PostgreSQL at DATABASE_URL"
    return
  fi
  local pg="$dir/pg" port password
  port=$(free_port); password=$(openssl rand -hex 16)
  log "starting a private PostgreSQL cluster in $pg (port $port)"
  chmod 0711 "$dir"
  mkdir -p "$pg"
  printf '%s\n' "$password" >"$pg/pwfile"
  chown -R postgres:postgres "$pg"; chmod 0700 "$pg"
  su postgres -s /bin/sh -c "$bin/initdb -D '$pg/data' -U postgres --auth=scram-sha-256 --pwfile='$pg/pwfile' -E UTF8 --locale=C.UTF-8" >"$pg/initdb.log" 2>&1 \
    || { cat "$pg/initdb.log" >&2; return 1; }
  rm -f "$pg/pwfile"
  su postgres -s /bin/sh -c "$bin/pg_ctl -D '$pg/data' -l '$pg/server.log' -w -o \"-p $port -c listen_addresses=127.0.0.1 -k '$pg' -c fsync=off -c max_connections=200\" start" >/dev/null \
    || { cat "$pg/server.log" >&2; return 1; }
  export DATABASE_URL="postgres://postgres:${password}@127.0.0.1:${port}/postgres"
  for _ in $(seq 50); do psql "$DATABASE_URL" -qtAc 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# sshd on 127.0.0.1 with its own host key and client key; exports MAIL_SSH_*.
start_sshd() {
  local dir=$1
  mkdir -p "$dir/ssh" /run/sshd
  local d="$dir/ssh" port
  port=$(free_port)
  ssh-keygen -q -t ed25519 -N '' -f "$d/hostkey"
  ssh-keygen -q -t ed25519 -N '' -f "$d/clientkey"
  cp "$d/clientkey.pub" "$d/authorized_keys"
  cat >"$d/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $d/hostkey
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxSessions 64
MaxStartups 64
CONF
  /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$d/hostkey.pub")" >"$d/known_hosts"
  for _ in $(seq 50); do ssh-keyscan -p "$port" 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
  export MAIL_SSH_HOST=127.0.0.1 MAIL_SSH_PORT=$port MAIL_SSH_USER=root
  export MAIL_SSH_KEY="$d/clientkey" MAIL_SSH_KNOWN_HOSTS="$d/known_hosts" TEST_SSHD_PIDFILE="$d/sshd.pid"
}

# Dovecot on its own config, with users whose mailboxes the tests fill; exports TEST_DOVECOT_*.
start_dovecot() {
  local dir=$1
  dovecot_instance "$dir" dovecot "" "${DOVECOT_USERS:-}"
  local d="$dir/dovecot"
  export TEST_DOVECOT_CONF="$d/dovecot.conf" TEST_DOVECOT_IMAP_PORT=$(cat "$d/port") TEST_DOVECOT_USERS_FILE="$d/users" TEST_DOVECOT_MAIL="$d/mail"
}

# Dovecots configured as many in the field are, for the tests of namespaces: separator `/`
# (Debian's 10-mail.conf calls it "usually a good one"), and an `INBOX.` prefix (servers that
# came from Courier); and one with Sieve (Pigeonhole) for the tests of rebuilding accounts. Each
# has its own users; exports TEST_DOVECOT_{SLASH,PREFIX,DR}_{CONF,IMAP_PORT}.
start_dovecot_variants() {
  local dir=$1 name ns
  for name in slash prefix dr; do
    case $name in
      slash) ns=$'namespace inbox {\n  inbox = yes\n  separator = /\n}' ;;
      prefix) ns=$'namespace inbox {\n  inbox = yes\n  separator = .\n  prefix = INBOX.\n}' ;;
      dr) ns=$'plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}' ;;
    esac
    dovecot_instance "$dir" "dovecot-$name" "$ns" "asal@djki.go.id pulih@djki.go.id ulang@djki.go.id"
    local upper=${name^^}
    export "TEST_DOVECOT_${upper}_CONF=$dir/dovecot-$name/dovecot.conf" "TEST_DOVECOT_${upper}_IMAP_PORT=$(cat "$dir/dovecot-$name/port")"
  done
}

# One Dovecot in DIR/NAME: NAMESPACE is a namespace block or other settings (or empty: Dovecot's
# defaults), USERS the accounts (password "secret").
dovecot_instance() {
  local dir=$1 d="$1/$2" namespace=$3 users=$4 port
  mkdir -p "$d/base" "$d/state" "$d/mail"
  chmod 0711 "$dir" "$d"   # mktemp makes 0700; the mail user must reach its mail
  chown vmail:vmail "$d/mail"
  port=$(free_port)
  : >"$d/users"
  for u in $users; do echo "$u:{PLAIN}secret::::::" >>"$d/users"; done
  cat >"$d/dovecot.conf" <<CONF
base_dir = $d/base
state_dir = $d/state
log_path = $d/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_uid = vmail
mail_gid = vmail
first_valid_uid = 100
mail_location = maildir:$d/mail/%u/Maildir
mail_home = $d/mail/%u
$namespace
passdb {
  driver = passwd-file
  args = $d/users
}
userdb {
  driver = passwd-file
  args = $d/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
  dovecot -c "$d/dovecot.conf"
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  # The auth process answers a little after the listener: wait until a user resolves.
  local first=${users%% *}
  if [[ -n "$first" ]]; then
    for _ in $(seq 100); do doveadm -c "$d/dovecot.conf" user "$first" >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  echo "$port" >"$d/port"
}

# A simulated Zimbra server (tests/zimbra-sim): a `zimbra` user whose login shell finds zmprov,
# zmmailbox, zmhostname and zmlocalconfig, Maildir fixtures, and the admin HTTPS endpoint on
# 127.0.0.1. Everything lives under DIR/zimbra except the user itself, which stop_services removes.
# Refuses to run beside a real Zimbra (/opt/zimbra, or a zimbra user that is not the simulator's).
ZIMBRA_SIM_MARK=mbb-zimbra-sim
start_zimbra_sim() {
  local dir=$1 z="$1/zimbra" src entry port
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/zimbra-sim"
  if [[ -e /opt/zimbra ]]; then
    echo "refusing to start the Zimbra simulator: /opt/zimbra exists (a real Zimbra?)" >&2; return 1
  fi
  if entry=$(getent passwd zimbra); then
    # A simulator user left by a run that was killed (its folder is gone) is removed; anything
    # else is not ours.
    if [[ $(cut -d: -f5 <<<"$entry") == "$ZIMBRA_SIM_MARK" && ! -d $(cut -d: -f6 <<<"$entry") ]]; then
      userdel zimbra
    else
      echo "refusing to start the Zimbra simulator: a zimbra user exists that is not a stale simulator's" >&2; return 1
    fi
  fi
  if getent group zimbra >/dev/null; then
    echo "refusing to start the Zimbra simulator: a zimbra group exists" >&2; return 1
  fi
  mkdir -p "$z/bin" "$z/home"
  chmod 0711 "$dir"; chmod 0755 "$z"
  cp "$src"/{common.sh,zmprov,zmmailbox,zmhostname,zmlocalconfig,server.py,make_fixtures.py} "$z/bin/"
  useradd --system --user-group --no-create-home --home-dir "$z/home" --shell /bin/bash \
    --comment "$ZIMBRA_SIM_MARK" zimbra
  printf 'export ZIMBRA_SIM=%q\nexport PATH=%q:/usr/local/bin:/usr/bin:/bin\n' "$z" "$z/bin" >"$z/home/.bash_profile"
  chown -R zimbra:zimbra "$z/home"
  port=$(free_port)
  (umask 077; cat >"$z/localconfig" <<LC
zimbra_server_hostname = mail.djki.go.id
zimbra_zmprov_default_soap_server = 127.0.0.1
zimbra_admin_service_port = $port
zimbra_ldap_user = zimbra
zimbra_ldap_password = $(openssl rand -hex 6)&<"x'y\$z
LC
  )
  chown zimbra:zimbra "$z/localconfig"
  python3 "$z/bin/make_fixtures.py" "$z"
  # zmprov (as zimbra) keeps the directory and creates accounts: their entries and mail folders.
  chown zimbra:zimbra "$z/directory.json" "$z/accounts" "$z/store"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$z/key.pem" -out "$z/cert.pem" 2>/dev/null
  python3 "$z/bin/server.py" "$z" >"$z/server.log" 2>&1 &
  for _ in $(seq 100); do
    [[ -f "$z/server.pid" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1
  done
  export TEST_ZIMBRA_SIM="$z"
}

# A real exFAT file system (no hard links), as a backup disk formatted for Windows would be: an
# image on a loop device mounted through FUSE under DIR/exfat. Exports TEST_EXFAT_DIR when the
# machine allows loop devices and FUSE; says why not otherwise.
start_exfat() {
  local dir=$1 img="$1/exfat.img" mnt="$1/exfat" loop
  truncate -s 64M "$img" && mkfs.exfat "$img" >/dev/null 2>&1 \
    || { echo "no exFAT test disk: mkfs.exfat failed" >&2; rm -f "$img"; return 0; }
  if ! loop=$(losetup -f --show "$img" 2>/dev/null); then
    echo "no exFAT test disk: no loop device here" >&2; rm -f "$img"; return 0
  fi
  echo "$loop" > "$dir/exfat.loop"
  mkdir -p "$mnt"
  if ! mount.exfat-fuse "$loop" "$mnt" >/dev/null 2>&1; then
    echo "no exFAT test disk: FUSE would not mount it" >&2; losetup -d "$loop"; rm -f "$img" "$dir/exfat.loop"; return 0
  fi
  export TEST_EXFAT_DIR=$mnt
}

stop_services() {
  local dir=$1
  if [[ -f "$dir/exfat.loop" ]]; then
    umount "$dir/exfat" 2>/dev/null || true
    losetup -d "$(cat "$dir/exfat.loop")" 2>/dev/null || true
    rm -f "$dir/exfat.loop" "$dir/exfat.img"
  fi
  if [[ -f "$dir/pg/data/postmaster.pid" ]]; then
    su postgres -s /bin/sh -c "${TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}/pg_ctl -D '$dir/pg/data' -m fast -w stop" >/dev/null 2>&1 || true
  fi
  if [[ -f "$dir/zimbra/server.pid" ]]; then kill "$(cat "$dir/zimbra/server.pid")" 2>/dev/null || true; fi
  # The simulator's user, only when it is this run's (its home is in this folder).
  if [[ $(getent passwd zimbra | cut -d: -f5,6) == "$ZIMBRA_SIM_MARK:$dir/zimbra/home" ]]; then
    userdel zimbra 2>/dev/null || true
    getent group zimbra >/dev/null && groupdel zimbra 2>/dev/null || true
  fi
  [[ -f "$dir/ssh/sshd.pid" ]] && kill "$(cat "$dir/ssh/sshd.pid")" 2>/dev/null || true
  # ssh clients of this sshd still connected (a master whose bot was killed in a test); their
  # sshd session processes end with them.
  pkill -f -- "$dir/ssh/known_hosts" 2>/dev/null || true
  local conf
  for conf in "$dir"/dovecot*/dovecot.conf; do
    [[ -f "$conf" ]] && doveadm -c "$conf" stop 2>/dev/null || true
  done
}
