#!/usr/bin/env bash
# A local PostgreSQL 15 + TimescaleDB cluster with automatic failover, managed by
# pg_auto_failover (Debian's postgresql-15-auto-failover, pg-auto-failover-cli): a monitor
# and two nodes streaming to each other, the standby synchronous while it is in sync.
# For the tests, the benchmarks and the demo of "Running several nodes" (README).
#
#   scripts/pg-ha.sh start        DIR [BASE]  create (first time) or start the monitor and both
#                                             nodes, wait until a primary and a synchronous
#                                             standby are up (60 s), ensure the role and
#                                             database, print the multi-host DATABASE_URL on
#                                             stdout (everything else goes to stderr)
#   scripts/pg-ha.sh stop         DIR         stop all three (pg_autoctl stop, then SIGKILL)
#   scripts/pg-ha.sh destroy      DIR         stop, and remove DIR and pg_autoctl's files of it
#   scripts/pg-ha.sh kill-primary DIR         kill -9 the primary node's pg_autoctl and its
#                                             postmaster (the server is lost), print its name
#   scripts/pg-ha.sh restart      DIR NODE    run node NODE (node1, node2) again: it rejoins
#                                             as a standby
#   scripts/pg-ha.sh status       DIR         pg_autoctl show state
#   scripts/pg-ha.sh url          DIR         print the DATABASE_URL again
#   scripts/pg-ha.sh install                  install pg_auto_failover if it is not (apt)
#
# Ports (127.0.0.1), default BASE 5440: monitor BASE, node1 BASE+1, node2 BASE+2; the other
# commands use the BASE the cluster in DIR was started with.
# DIR holds the data directories (monitor/, node1/, node2/) and logs (*.log); it is given to
# the postgres OS user, as pg_autoctl runs as that user (this script uses runuser or sudo).
# Role and database: NC_DB_USER / NC_DB_PASSWORD / NC_DB_NAME (default nephrocare), the
# role LOGIN CREATEDB with pg_monitor (to read pg_stat_replication's sync state).
#
# Failover settings (on the monitor; pg_auto_failover's defaults are for WANs): health
# checks every second, a node unhealthy after 3 s, a primary that cannot be reached demoted
# after 5 s. With them a lost primary is replaced in about 5-10 s.
#
# Durability: pg_auto_failover keeps synchronous_standby_names = 'ANY 1 (standby)' while the
# standby is in sync, so a COMMIT returns only once the standby has the WAL (synchronous_commit
# = on). When the standby is lost the primary goes to `wait_primary` and commits locally
# (availability over durability for that window): see docs/scaling.md.
set -euo pipefail

DB_USER="${NC_DB_USER:-nephrocare}"
DB_PASSWORD="${NC_DB_PASSWORD:-nephrocare}"
DB_NAME="${NC_DB_NAME:-nephrocare}"
HOST=127.0.0.1
READY_TIMEOUT="${PG_HA_READY_TIMEOUT:-60}"

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }
usage() { sed -n '7,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else (cd / && sudo -n -u postgres -- "$@"); fi
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

PGBIN=""
ensure_packages() {
    if ! command -v pg_autoctl >/dev/null 2>&1; then
        log "installing pg_auto_failover (postgresql-15-auto-failover, pg-auto-failover-cli)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql-15-auto-failover pg-auto-failover-cli >/dev/null
    fi
    PGBIN=/usr/lib/postgresql/15/bin   # what postgresql-15-auto-failover is built for
    [ -x "$PGBIN/pg_ctl" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql (run scripts/provision-db.sh)"
    [ -f "$("$PGBIN/pg_config" --sharedir 2>/dev/null || echo /usr/share/postgresql/15)/extension/timescaledb.control" ] \
        || ls /usr/share/postgresql/*/extension/timescaledb.control >/dev/null 2>&1 \
        || die "TimescaleDB is not installed (run scripts/provision-db.sh)"
}

port_of() { case "$1" in monitor) echo "$BASE" ;; node1) echo $((BASE + 1)) ;; node2) echo $((BASE + 2)) ;; *) die "no node $1" ;; esac; }
monitor_uri() { echo "postgres://autoctl_node@$HOST:$BASE/pg_auto_failover?sslmode=disable"; }
psql_at() { psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$1" -U postgres "${@:2}"; }

running() {  # node -> true when its pg_autoctl runs
    pgrep -f "pg_autoctl run --pgdata $DIR/$1\$" >/dev/null 2>&1
}

run_node() {  # node
    running "$1" && return 0
    as_postgres bash -c "nohup pg_autoctl run --pgdata '$DIR/$1' >>'$DIR/$1.log' 2>&1 &"
}

wait_for() {  # description, command...
    local what="$1" i
    shift
    for i in $(seq 1 $((READY_TIMEOUT * 2))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "$what: not within ${READY_TIMEOUT}s (logs in $DIR/*.log)"
}

primary_port() {  # the port of the node that is read-write, if any
    local p
    for p in $((BASE + 1)) $((BASE + 2)); do
        if [ "$(psql_at "$p" -d postgres -Atc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = "f" ]; then echo "$p"; return 0; fi
    done
    return 1
}

synchronous() {  # the primary has a standby in sync
    local p
    p="$(primary_port)" || return 1
    [ "$(psql_at "$p" -d postgres -Atc "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync','quorum')")" -ge 1 ]
}

forget() {  # node: pg_autoctl's own files for DIR/node (kept under the postgres user's XDG
    # directories by data directory path: a new cluster in the same DIR must not find them)
    local home
    home="$(getent passwd postgres | cut -d: -f6)"
    as_root rm -rf "$home/.config/pg_autoctl$DIR/$1" "$home/.local/share/pg_autoctl$DIR/$1"
}

create_node() {  # node
    local n="$1"
    forget "$n"
    as_postgres pg_autoctl create postgres --pgdata "$DIR/$n" --pgport "$(port_of "$n")" --listen "$HOST" \
        --hostname "$HOST" --auth trust --no-ssl --ssl-mode disable --monitor "$(monitor_uri)" --name "$n" \
        --dbname "$DB_NAME" --pgctl "$PGBIN/pg_ctl" >>"$DIR/$n.log" 2>&1 || die "creating $n failed (see $DIR/$n.log)"
    # TimescaleDB on every node (a standby made by pg_basebackup copies this file); a small
    # footprint: pg_auto_failover sizes shared_buffers for a dedicated server.
    as_postgres tee -a "$DIR/$n/postgresql.conf" >/dev/null <<CONF
# Nephrocare (scripts/pg-ha.sh)
shared_preload_libraries = 'pg_stat_statements,timescaledb'
shared_buffers = '256MB'
effective_cache_size = '1GB'
wal_keep_size = '512MB'
max_connections = 200
timescaledb.telemetry_level = off
jit = off
CONF
}

start() {
    ensure_packages
    mkdir -p "$DIR"
    as_root chown postgres "$DIR"
    as_postgres touch "$DIR/monitor.log" "$DIR/node1.log" "$DIR/node2.log"
    if [ ! -f "$DIR/monitor/PG_VERSION" ]; then
        forget monitor
        log "creating the monitor on $HOST:$BASE"
        as_postgres pg_autoctl create monitor --pgdata "$DIR/monitor" --pgport "$BASE" --listen "$HOST" \
            --hostname "$HOST" --auth trust --no-ssl --ssl-mode disable --pgctl "$PGBIN/pg_ctl" >>"$DIR/monitor.log" 2>&1 \
            || die "creating the monitor failed (see $DIR/monitor.log)"
    fi
    run_node monitor
    wait_for "the monitor" psql_at "$BASE" -d pg_auto_failover -c 'SELECT 1'
    local s
    for s in "health_check_period = 1000" "health_check_timeout = 1000" "health_check_max_retries = 1" \
        "health_check_retry_delay = 500" "node_considered_unhealthy_timeout = 3000" "primary_demote_timeout = 5000"; do
        psql_at "$BASE" -d pg_auto_failover -c "ALTER SYSTEM SET pgautofailover.$s" >/dev/null
    done
    psql_at "$BASE" -d pg_auto_failover -c 'SELECT pg_reload_conf()' >/dev/null
    local n
    for n in node1 node2; do
        if [ ! -f "$DIR/$n/PG_VERSION" ]; then
            log "creating $n on $HOST:$(port_of "$n")"
            create_node "$n"
        fi
        run_node "$n"
        [ "$n" = node1 ] && wait_for "a primary" primary_port
    done
    wait_for "a synchronous standby" synchronous
    local p
    p="$(primary_port)"
    psql_at "$p" -d postgres -v role="$DB_USER" -v pw="$DB_PASSWORD" -v db="$DB_NAME" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw') \gexec
SELECT format('GRANT pg_monitor TO %I', :'role') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'role') \gexec
SQL
    printf 'SET client_min_messages = warning;\nCREATE EXTENSION IF NOT EXISTS timescaledb;\nCREATE EXTENSION IF NOT EXISTS btree_gist;\n' \
        | psql_at "$p" -d template1 >/dev/null
    printf 'SET client_min_messages = warning;\nCREATE EXTENSION IF NOT EXISTS timescaledb;\nCREATE EXTENSION IF NOT EXISTS btree_gist;\n' \
        | psql_at "$p" -d "$DB_NAME" >/dev/null
    log "primary on $HOST:$p, standby in sync"
    url
}

url() {
    printf 'postgres://%s:%s@%s:%s,%s:%s/%s?target_session_attrs=read-write\n' "$DB_USER" "$DB_PASSWORD" \
        "$HOST" $((BASE + 1)) "$HOST" $((BASE + 2)) "$DB_NAME"
}

stop() {
    local n
    for n in node2 node1 monitor; do
        [ -d "$DIR/$n" ] || continue
        as_postgres pg_autoctl stop --pgdata "$DIR/$n" >/dev/null 2>&1 || true
    done
    sleep 1
    for n in node2 node1 monitor; do
        kill_node "$n"
    done
    log "stopped"
}

kill_node() {  # node: its pg_autoctl (with the services it forked, whose titles no longer
    # name the data directory) and its postmaster, all with SIGKILL: the server is lost
    local n="$1" main kids pid
    for main in $(pgrep -f "pg_autoctl run --pgdata $DIR/$n\$" || true); do
        # The supervisor first (so it respawns nothing), then the services it had forked.
        kids="$(pgrep -P "$main" || true)"
        as_root kill -9 "$main" 2>/dev/null || true
        [ -n "$kids" ] && as_root kill -9 $kids 2>/dev/null || true
    done
    pid="$(as_root head -1 "$DIR/$n/postmaster.pid" 2>/dev/null || true)"
    # Only if that pid is still this node's postmaster (a stale file's pid may be reused).
    if [ -n "$pid" ] && as_root grep -qa -- "$DIR/$n" "/proc/$pid/cmdline" 2>/dev/null; then
        as_root kill -9 "$pid" 2>/dev/null || true
    fi
}

kill_primary() {
    local p n
    p="$(primary_port)" || die "no primary is up"
    for n in node1 node2; do [ "$(port_of "$n")" = "$p" ] && break; done
    kill_node "$n"
    sleep 0.2
    ! psql_at "$p" -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 || die "$n still answers on $HOST:$p"
    log "killed $n (pg_autoctl, its services and the postmaster, -9)"
    echo "$n"
}

if [ "${1:-}" = install ]; then
    ensure_packages
    exit 0
fi
[ $# -ge 2 ] || usage
CMD="$1"
DIR="$(realpath -m "$2")"
# The cluster's ports are those it was started with (kept in DIR/base).
BASE="$(cat "$DIR/base" 2>/dev/null || echo 5440)"
case "$CMD" in
    start)
        BASE="${3:-$BASE}"
        mkdir -p "$DIR"
        echo "$BASE" >"$DIR/base"
        start
        ;;
    stop) stop ;;
    destroy)
        stop
        home="$(getent passwd postgres | cut -d: -f6)"
        as_root rm -rf "$home/.config/pg_autoctl$DIR" "$home/.local/share/pg_autoctl$DIR" "$DIR"
        ;;
    kill-primary) kill_primary ;;
    restart) [ $# -ge 3 ] || usage; NODE="$3"; ensure_packages; run_node "$NODE"; log "$NODE running" ;;
    status) as_postgres pg_autoctl show state --pgdata "$DIR/monitor" >&2 ;;
    url) url ;;
    *) usage ;;
esac
