#!/usr/bin/env bash
# Runs the full test suite: provisions PostgreSQL + TimescaleDB and nats-server if needed
# (idempotent, seconds when ready), then every unit and end-to-end test of the workspace.
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1; }

scripts/provision-db.sh
# The multi-node tests (tests/e2e/cluster.rs) run a 3-node NATS cluster (Debian's nats-server).
scripts/provision-nats.sh
# The hospital-interface peers (python-hl7, hl7apy, aiosmtpd in .tools/peers): the hl7 crate's
# tests play the alert manager with them and fail without them.
scripts/peers.sh >/dev/null
# The database failover tests (tests/e2e/failover.rs) run pg_auto_failover clusters
# (scripts/pg-ha.sh): installed once here, not by two tests at the same time.
bash scripts/pg-ha.sh install
export NEPHROCARE_TEST_DATABASE_URL="${NEPHROCARE_TEST_DATABASE_URL:-postgres://nephrocare:nephrocare@127.0.0.1:5432/nephrocare}"

# Leftovers of interrupted earlier runs (each test drops its own database when it ends).
PGPASSWORD=nephrocare psql -X -q -At -h 127.0.0.1 -U nephrocare -d nephrocare \
    -c "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname) FROM pg_database WHERE datname LIKE 'nc\_test\_%'" \
    | PGPASSWORD=nephrocare psql -X -q -h 127.0.0.1 -U nephrocare -d nephrocare >/dev/null 2>&1 || true

echo "==> cargo test --workspace"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
