#!/usr/bin/env bash
# Provision PostgreSQL (15 on Debian 12) + TimescaleDB for Nephrocare, idempotently.
#
# Works as root (CI) or as a normal user with sudo. Safe to re-run: on a ready
# machine it only checks state and takes a few seconds.
#
# Environment overrides:
#   NC_DB_USER      login role            (default: nephrocare)
#   NC_DB_PASSWORD  its password          (default: nephrocare)
#   NC_DB_NAME      service database      (default: nephrocare)
#   NC_DB_PORT      cluster port          (default: 5432)
#   NC_PG_VERSION   PostgreSQL major      (default: detected; 15 on bookworm)
#   NC_PG_CLUSTER   Debian cluster name   (default: main)
#   NC_TIMESCALEDB_VERSION  preferred Debian trixie source version
#                   (default: 2.19.3+dfsg-1+deb13u1; falls back to trixie's current one)
#
# See ARCHITECTURE.md ("Database") for why TimescaleDB is
# built from Debian trixie's source package: bookworm has no binary package.
set -euo pipefail

DB_USER="${NC_DB_USER:-nephrocare}"
DB_PASSWORD="${NC_DB_PASSWORD:-nephrocare}"
DB_NAME="${NC_DB_NAME:-nephrocare}"
DB_PORT="${NC_DB_PORT:-5432}"
DB_HOST=127.0.0.1
PG_CLUSTER="${NC_PG_CLUSTER:-main}"
TSDB_PREFERRED="${NC_TIMESCALEDB_VERSION:-2.19.3+dfsg-1+deb13u1}"
DEBIAN_ARCHIVE="http://deb.debian.org/debian"
DEBIAN_KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
else
    SUDO="sudo"
    command -v sudo >/dev/null 2>&1 || { echo "error: not root and sudo is not installed" >&2; exit 1; }
fi

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a noisy command; show only the tail of its output if it fails.
quiet() {
    local out rc=0
    out="$(mktemp)"
    "$@" >"$out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "---- last lines of output of: $* ----" >&2
        tail -n 60 "$out" >&2
        rm -f "$out"
        return "$rc"
    fi
    rm -f "$out"
}

# Run a command as the postgres OS user (from / so psql doesn't complain about cwd).
as_postgres() {
    if [ -z "$SUDO" ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -u postgres -- "$@")
    fi
}

# psql as superuser over the Unix socket. SQL comes on stdin.
pg_super() {
    local db="$1"; shift
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$DB_PORT" -d "$db" "$@"
}

# Quote a value for psql's \set (single-quoted: double ' and escape \).
psql_quote() {
    local v="$1"
    v="${v//\\/\\\\}"
    v="${v//\'/\'\'}"
    printf "'%s'" "$v"
}

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

APT_UPDATED=0
apt_install() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        $SUDO apt-get update -q
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'
}

WORK=""
cleanup() {
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        $SUDO rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# 1. Packages
# ---------------------------------------------------------------------------
log "checking system packages"
base_pkgs=(postgresql postgresql-contrib cmake dpkg-dev build-essential xz-utils mosquitto-clients ca-certificates)
[ -f "$DEBIAN_KEYRING" ] || base_pkgs+=(debian-archive-keyring)   # e.g. on Ubuntu
apt_install "${base_pkgs[@]}"

if [ -n "${NC_PG_VERSION:-}" ]; then
    PGV="$NC_PG_VERSION"
else
    # Highest installed server major (Debian layout /usr/lib/postgresql/<major>/bin/postgres).
    PGV="$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | awk -F/ '{print $5}' | sort -n | tail -n1)"
fi
[ -n "$PGV" ] && [ -x "/usr/lib/postgresql/$PGV/bin/postgres" ] \
    || die "no PostgreSQL server found under /usr/lib/postgresql (version '${PGV:-?}')"
apt_install "postgresql-$PGV" "postgresql-server-dev-$PGV"

PG_CONFIG="/usr/lib/postgresql/$PGV/bin/pg_config"
[ -x "$PG_CONFIG" ] || die "$PG_CONFIG not found"
PG_SHAREDIR="$("$PG_CONFIG" --sharedir)"
PG_PKGLIBDIR="$("$PG_CONFIG" --pkglibdir)"
log "using PostgreSQL $PGV ($("$PG_CONFIG" --version))"
[ -f "$PG_SHAREDIR/extension/btree_gist.control" ] || die "btree_gist not available in $PG_SHAREDIR/extension"

# ---------------------------------------------------------------------------
# 2. TimescaleDB
# ---------------------------------------------------------------------------
tsdb_installed() {
    [ -f "$PG_SHAREDIR/extension/timescaledb.control" ] && [ -f "$PG_PKGLIBDIR/timescaledb.so" ]
}

build_timescaledb_from_trixie_source() {
    WORK="$(mktemp -d /tmp/nephrocare-tsdb.XXXXXX)"
    chmod 755 "$WORK"
    local aptdir="$WORK/apt" dl="$WORK/download" src="$WORK/src"
    mkdir -p "$aptdir/sources.list.d" "$aptdir/lists/partial" "$aptdir/cache" "$dl" "$src"
    cat >"$aptdir/sources.list.d/debian-trixie-src.sources" <<EOF
Types: deb-src
URIs: $DEBIAN_ARCHIVE
Suites: trixie
Components: main
Signed-By: $DEBIAN_KEYRING
EOF
    # Throw-away apt state: the machine's own sources, lists and caches are untouched.
    local aptopts=(
        -q
        -o Dir::Etc::sourcelist=/dev/null
        -o Dir::Etc::sourceparts="$aptdir/sources.list.d"
        -o Dir::State::Lists="$aptdir/lists"
        -o Dir::Cache::pkgcache="$aptdir/cache/pkgcache.bin"
        -o Dir::Cache::srcpkgcache="$aptdir/cache/srcpkgcache.bin"
        -o Acquire::Languages=none
        -o APT::Sandbox::User=root
    )
    log "fetching Debian trixie source index (temporary apt lists in $aptdir)"
    quiet $SUDO apt-get "${aptopts[@]}" update

    log "downloading timescaledb source package (preferred $TSDB_PREFERRED)"
    if ! (cd "$dl" && quiet $SUDO apt-get "${aptopts[@]}" source --download-only "timescaledb=$TSDB_PREFERRED"); then
        log "version $TSDB_PREFERRED not available in trixie; using trixie's current timescaledb"
        (cd "$dl" && quiet $SUDO apt-get "${aptopts[@]}" source --download-only timescaledb)
    fi
    [ -z "$SUDO" ] || $SUDO chown -R "$(id -u):$(id -g)" "$WORK"

    local orig
    orig="$(ls "$dl"/timescaledb_*.orig.tar.* 2>/dev/null | head -n1)"
    [ -n "$orig" ] || die "no timescaledb orig tarball downloaded"
    log "unpacking $(basename "$orig")"
    tar -xf "$orig" -C "$src"
    local root
    root="$(find "$src" -maxdepth 2 -type f -name bootstrap | head -n1)"
    [ -n "$root" ] || die "bootstrap script not found in $(basename "$orig")"
    root="$(dirname "$root")"

    log "building TimescaleDB (Apache-2 edition) against PostgreSQL $PGV"
    (cd "$root" && quiet ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DAPACHE_ONLY=ON \
        -DWARNINGS_AS_ERRORS=OFF -DPG_CONFIG="$PG_CONFIG")
    quiet make -C "$root/build" -j"$(nproc)"
    log "installing TimescaleDB into $PG_PKGLIBDIR and $PG_SHAREDIR/extension"
    quiet $SUDO make -C "$root/build" install
    cleanup
    WORK=""
}

if tsdb_installed; then
    log "TimescaleDB already installed for PostgreSQL $PGV"
else
    bin_pkg=""
    for p in "timescaledb-2-postgresql-$PGV" "postgresql-$PGV-timescaledb"; do
        c="$(apt_candidate "$p")"
        if [ -n "$c" ] && [ "$c" != "(none)" ]; then bin_pkg="$p"; break; fi
    done
    if [ -n "$bin_pkg" ]; then
        log "installing TimescaleDB binary package $bin_pkg"
        apt_install "$bin_pkg"
    else
        log "no TimescaleDB binary package for PostgreSQL $PGV in apt; building from Debian trixie source"
        build_timescaledb_from_trixie_source
    fi
    tsdb_installed || die "TimescaleDB installation failed (no timescaledb.control/timescaledb.so)"
fi
TSDB_AVAILABLE="$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$PG_SHAREDIR/extension/timescaledb.control")"

# ---------------------------------------------------------------------------
# 3. Cluster and configuration
# ---------------------------------------------------------------------------
cluster_field() {  # prints "<port> <status>" of our cluster, empty if it doesn't exist
    pg_lsclusters -h 2>/dev/null | awk -v v="$PGV" -v c="$PG_CLUSTER" '$1 == v && $2 == c {print $3, $4; exit}'
}

if [ -z "$(cluster_field)" ]; then
    log "creating cluster $PGV/$PG_CLUSTER on port $DB_PORT"
    $SUDO pg_createcluster "$PGV" "$PG_CLUSTER" --port "$DB_PORT"
fi
read -r cl_port cl_status <<<"$(cluster_field)"
[ "$cl_port" = "$DB_PORT" ] \
    || die "cluster $PGV/$PG_CLUSTER listens on port $cl_port, not $DB_PORT (set NC_DB_PORT or NC_PG_CLUSTER)"

CONF_DIR="/etc/postgresql/$PGV/$PG_CLUSTER"
MAIN_CONF="$CONF_DIR/postgresql.conf"
DROPIN="$CONF_DIR/conf.d/nephrocare.conf"
[ -f "$MAIN_CONF" ] || die "$MAIN_CONF not found"

if ! grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'conf\.d'" "$MAIN_CONF"; then
    log "enabling include_dir 'conf.d' in $MAIN_CONF"
    printf "\n# Added by nephrocare scripts/provision-db.sh\ninclude_dir = 'conf.d'\n" | $SUDO tee -a "$MAIN_CONF" >/dev/null
fi
$SUDO install -d -o postgres -g postgres -m 0755 "$CONF_DIR/conf.d"

# Keep any libraries that other config files already preload.
other_confs=("$MAIN_CONF")
for f in $($SUDO find "$CONF_DIR/conf.d" -maxdepth 1 -name '*.conf' ! -name "$(basename "$DROPIN")" | sort); do
    other_confs+=("$f")
done
existing_spl="$($SUDO cat "${other_confs[@]}" \
    | grep -E '^[[:space:]]*shared_preload_libraries[[:space:]]*(=|[[:space:]])' | tail -n1 \
    | sed -E "s/^[^=']*=?[[:space:]]*//; s/#.*$//; s/['\"]//g; s/[[:space:]]//g")" || true
spl="timescaledb"
IFS=',' read -r -a libs <<<"${existing_spl:-}"
for l in "${libs[@]}"; do
    [ -n "$l" ] && [ "$l" != "timescaledb" ] && spl="$spl,$l"
done

# A write-heavy time-series load (as timescaledb-tune would set it): with PostgreSQL's
# defaults (128 MB of buffers, max_wal_size 1 GB) the alarms benchmark's 5,000 readings/s
# forced a checkpoint every ~30 s, and after each one every first change of a page wrote the
# whole page into the WAL: commits (a PUBACK, an alarm's raise) slowed in waves. Checkpoints
# now come by time; full-page images are compressed; the buffer pool is a quarter of the
# memory, 128 MB to 2 GB.
mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
shared_mb=$(( mem_mb / 4 ))
[ "$shared_mb" -gt 2048 ] && shared_mb=2048
[ "$shared_mb" -lt 128 ] && shared_mb=128
desired_conf="# Managed by nephrocare scripts/provision-db.sh -- re-run the script instead of editing.
shared_preload_libraries = '$spl'
max_connections = 300
timescaledb.telemetry_level = off
shared_buffers = ${shared_mb}MB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 15min
checkpoint_completion_target = 0.9
wal_compression = lz4
"
conf_changed=0
if [ "$($SUDO cat "$DROPIN" 2>/dev/null || true)" != "${desired_conf%$'\n'}" ]; then
    log "writing $DROPIN (shared_preload_libraries = '$spl', max_connections = 300, shared_buffers = ${shared_mb}MB, checkpoints by time)"
    tmpconf="$(mktemp)"
    printf '%s' "$desired_conf" >"$tmpconf"
    $SUDO install -o postgres -g postgres -m 0644 "$tmpconf" "$DROPIN"
    rm -f "$tmpconf"
    conf_changed=1
else
    log "configuration $DROPIN up to date"
fi

start_cluster() {
    log "starting cluster $PGV/$PG_CLUSTER"
    if ! $SUDO pg_ctlcluster "$PGV" "$PG_CLUSTER" start; then
        log "pg_ctlcluster failed; trying 'service postgresql start'"
        $SUDO service postgresql start
    fi
}

wait_ready() {
    local i
    for i in $(seq 1 60); do
        pg_isready -q -h "$DB_HOST" -p "$DB_PORT" && return 0
        sleep 0.5
    done
    die "PostgreSQL did not become ready on $DB_HOST:$DB_PORT (see /var/log/postgresql/postgresql-$PGV-$PG_CLUSTER.log)"
}

case "$cl_status" in
    online*)
        running_spl="$(echo 'SHOW shared_preload_libraries' | pg_super postgres -At)"
        if [ "$conf_changed" -eq 1 ] || [[ ",${running_spl// /}," != *",timescaledb,"* ]]; then
            log "restarting cluster $PGV/$PG_CLUSTER to apply configuration"
            $SUDO pg_ctlcluster "$PGV" "$PG_CLUSTER" restart || $SUDO service postgresql restart
        else
            log "cluster $PGV/$PG_CLUSTER already running with timescaledb preloaded"
        fi
        ;;
    *)
        start_cluster
        ;;
esac
wait_ready

running_spl="$(echo 'SHOW shared_preload_libraries' | pg_super postgres -At)"
[[ ",${running_spl// /}," == *",timescaledb,"* ]] \
    || die "server is running but shared_preload_libraries = '$running_spl' (another config file overrides $DROPIN?)"

# ---------------------------------------------------------------------------
# 4. Role, database, extensions
# ---------------------------------------------------------------------------
# template1 carries timescaledb and btree_gist so that every database created later with a
# plain CREATE DATABASE (one per test, as the nephrocare role) has them without superuser
# rights. The service database is created from template0 instead, with its extensions created
# in it: naming TEMPLATE template1 (or any template that allows connections) makes
# TimescaleDB's loader start a scheduler in that template which waits for the very CREATE
# DATABASE transaction, so PostgreSQL sees another session in template1 and the command fails
# ("source database "template1" is being accessed by other users") whenever the scheduler
# connects before its check: a race that brand-new clusters lost in 3 runs of 7 on a busy
# machine. template0 accepts no connections: nothing can hold it, and TimescaleDB leaves it
# alone. (A plain CREATE DATABASE names no template and starts no such scheduler; the
# short-lived one that CREATE EXTENSION starts in template1 ends by itself, well within
# PostgreSQL's 5 s wait for a template to become free.)
log "ensuring role '$DB_USER' (LOGIN CREATEDB), extensions in template1 and database '$DB_NAME'"
# Values go through stdin (never on a command line) and are quoted by psql.
{
    printf '\\set role %s\n' "$(psql_quote "$DB_USER")"
    printf '\\set pw %s\n' "$(psql_quote "$DB_PASSWORD")"
    printf '\\set db %s\n' "$(psql_quote "$DB_NAME")"
    cat <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I TEMPLATE template0', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
\c template1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS btree_gist;
SQL
} | pg_super postgres >/dev/null

log "ensuring extensions timescaledb and btree_gist in '$DB_NAME'"
printf 'SET client_min_messages = warning;\nCREATE EXTENSION IF NOT EXISTS timescaledb;\nCREATE EXTENSION IF NOT EXISTS btree_gist;\n' \
    | pg_super "$DB_NAME" >/dev/null

# ---------------------------------------------------------------------------
# 5. Verify password login over TCP as the service role
# ---------------------------------------------------------------------------
verify() {
    PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -At -v ON_ERROR_STOP=1 \
        -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" \
        -c "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'" \
        -c "SHOW timescaledb.license" 2>&1
}

log "verifying password login as '$DB_USER' over TCP $DB_HOST:$DB_PORT"
if ! out="$(verify)"; then
    HBA="$CONF_DIR/pg_hba.conf"
    if ! $SUDO grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+(scram-sha-256|md5|password)' "$HBA"; then
        log "adding 'host all all 127.0.0.1/32 scram-sha-256' to $HBA and reloading"
        printf '# Added by nephrocare scripts/provision-db.sh\nhost all all 127.0.0.1/32 scram-sha-256\n' \
            | $SUDO tee -a "$HBA" >/dev/null
        $SUDO pg_ctlcluster "$PGV" "$PG_CLUSTER" reload
        sleep 1
        out="$(verify)" || die "cannot log in as '$DB_USER' on $DB_HOST:$DB_PORT: $out"
    else
        die "cannot log in as '$DB_USER' on $DB_HOST:$DB_PORT: $out"
    fi
fi
ext_version="$(sed -n 1p <<<"$out")"
license="$(sed -n 2p <<<"$out")"
[ -n "$ext_version" ] || die "timescaledb extension missing in database '$DB_NAME'"
if [ -n "$TSDB_AVAILABLE" ] && [ "$ext_version" != "$TSDB_AVAILABLE" ]; then
    log "note: '$DB_NAME' has timescaledb $ext_version but $TSDB_AVAILABLE is installed (ALTER EXTENSION timescaledb UPDATE)"
fi
log "timescaledb.license = $license"

echo "database ready: postgres://$DB_USER:***@$DB_HOST:$DB_PORT/$DB_NAME (timescaledb $ext_version, license $license)"
