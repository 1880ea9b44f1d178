#!/usr/bin/env bash
# The contract as integrators meet it, against a live server with the demo data:
#  1. Schemathesis (examples, coverage, fuzzing and stateful phases) once anonymously and
#     once per role (patient, technician, doctor, admin): any failure fails the run;
#  2. a TypeScript client (openapi-typescript + openapi-fetch) and a Rust client
#     (progenitor), both generated now from `nephrocare openapi`, compiled and run through a
#     short real flow (log in, devices, a reading, history, trends, an alert acknowledged,
#     a chat message, a slot found and booked);
#  3. a Python client (openapi-python-client), generated with no warning (every operation),
#     run through contract/python/flow.py (a user and an enrollment code created, errors
#     naming their fields);
#  4. the FHIR R4 API (scripts/check-fhir.sh, on this same server): every resource type and a
#     bulk export of the demo data validated with fhir.resources.
# Installs what it needs (Python venvs with Schemathesis, openapi-python-client and
# fhir.resources from PyPI into .tools/, npm packages from contract/ts/package-lock.json).
# Usage: scripts/contract.sh
# CONTRACT_EXAMPLES (default 5) sets Schemathesis' examples per operation, CONTRACT_SEED
# (default 1, reproducible) its seed ("random" for a new one each run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SCHEMATHESIS_VERSION=4.32.5
PYTHON_CLIENT_VERSION=0.29.1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_apt() {
    echo "==> installing $*"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

scripts/provision-db.sh >/dev/null
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt python3-venv python3-pip
command -v npm >/dev/null || need_apt nodejs npm

echo "==> building nephrocare"
cargo build --locked --quiet --bin nephrocare
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/nephrocare"

if [ "$(.tools/venv/bin/schemathesis --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    echo "==> installing schemathesis $SCHEMATHESIS_VERSION"
    rm -rf .tools/venv
    python3 -m venv .tools/venv
    .tools/venv/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The integrator's Python tools, in a venv of their own (their pins differ from Schemathesis').
if [ "$(.tools/integrator/bin/openapi-python-client --version 2>/dev/null)" != "openapi-python-client version: $PYTHON_CLIENT_VERSION" ]; then
    echo "==> installing openapi-python-client $PYTHON_CLIENT_VERSION"
    rm -rf .tools/integrator
    python3 -m venv .tools/integrator
    .tools/integrator/bin/pip install -q --disable-pip-version-check "openapi-python-client==$PYTHON_CLIENT_VERSION"
fi

# A database and ports of its own, so a running demo is left alone (CONTRACT_DB and
# CONTRACT_PORTS="http mqtt mqtt-ws" change them, e.g. for two runs side by side).
PG="postgres://nephrocare:nephrocare@127.0.0.1:5432"
DB="${CONTRACT_DB:-nephrocare_contract}"
read -r HTTP_PORT MQTT_PORT WS_PORT <<<"${CONTRACT_PORTS:-18080 11883 18083}"
PGPASSWORD=nephrocare psql -X -q -h 127.0.0.1 -U nephrocare -d nephrocare \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>/dev/null
export DATABASE_URL="$PG/$DB"
export NEPHROCARE_HTTP_ADDR=127.0.0.1:$HTTP_PORT NEPHROCARE_MQTT_ADDR=127.0.0.1:$MQTT_PORT NEPHROCARE_MQTT_WS_ADDR=127.0.0.1:$WS_PORT
NEPHROCARE_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
export NEPHROCARE_JWT_SECRET NEPHROCARE_LOG=warn
URL="http://$NEPHROCARE_HTTP_ADDR"

"$BIN" migrate up >/dev/null
DEVICE_LINE=$("$BIN" seed --demo | grep -m1 ' DM-001 ')
export NC_URL="$URL" NC_DEVICE_ID NC_DEVICE_SECRET
NC_DEVICE_ID=$(awk '{print $4}' <<<"$DEVICE_LINE")
NC_DEVICE_SECRET=$(awk '{print $6}' <<<"$DEVICE_LINE")

LOG=$(mktemp -d)
"$BIN" serve >"$LOG/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true; wait $SERVE 2>/dev/null || true; rm -rf "$LOG"' EXIT
for _ in $(seq 1 60); do
    curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
    kill -0 $SERVE 2>/dev/null || { cat "$LOG/serve.log" >&2; echo "error: the server exited" >&2; exit 1; }
    sleep 0.5
done
"$BIN" openapi > contract/openapi.json

token() {
    curl -fsS -X POST "$URL/api/auth/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"Nephro-demo-2026\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])'
}

failed=0
# The Rust client compiles (progenitor and its own dependencies, minutes on 2 cores) while
# the TypeScript one runs. Both flows run before any fuzzing: Schemathesis may retire the
# demo machine or unlink the demo patient's account.
cp contract/openapi.json contract/rust-client/openapi.json
( cd contract/rust-client && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" cargo build --locked --quiet ) \
    >"$LOG/rust-build.txt" 2>&1 &
RUST_BUILD=$!

echo "==> TypeScript client (openapi-typescript + openapi-fetch)"
(
    cd contract/ts
    cp ../openapi.json openapi.json
    npm ci --no-audit --no-fund --silent
    npm run --silent generate >/dev/null
    npm run --silent build
    npm run --silent flow
) || failed=1

echo "==> Python client (openapi-python-client $PYTHON_CLIENT_VERSION)"
(
    rm -rf "$LOG/py" && mkdir "$LOG/py"
    .tools/integrator/bin/openapi-python-client generate --path contract/openapi.json --meta none \
        --config contract/python/config.yaml --output-path "$LOG/py/nephrocare_api_client" >"$LOG/py/generate.txt" 2>&1 \
        || { cat "$LOG/py/generate.txt"; exit 1; }
    if grep -qi 'warning\|error\|will not be generated' "$LOG/py/generate.txt"; then
        cat "$LOG/py/generate.txt"; echo "the Python client was generated with warnings" >&2; exit 1
    fi
    PYTHONPATH="$LOG/py" .tools/integrator/bin/python contract/python/flow.py
) || failed=1

echo "==> Rust client (progenitor)"
if wait $RUST_BUILD; then
    ( cd contract/rust-client && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" cargo run --locked --quiet ) || failed=1
else
    cat "$LOG/rust-build.txt"
    failed=1
fi

# After the clients' flows (its simulated machines raise alarms), before any fuzzing.
echo "==> FHIR R4 (fhir.resources)"
NC_URL="$URL" NC_BIN="$BIN" scripts/check-fhir.sh || failed=1

# One run: $1 who (an e-mail, or "anonymous").
schemathesis_as() {
    local who=$1 auth=() start out="$LOG/st-${1%%@*}.txt"
    [ "$who" = anonymous ] || auth=(-H "Authorization: Bearer $(token "$who")")
    start=$(date +%s)
    if .tools/venv/bin/schemathesis --config-file contract/schemathesis.toml run "$URL/api/openapi.json" "${auth[@]}" \
        --phases examples,coverage,fuzzing,stateful --max-examples "${CONTRACT_EXAMPLES:-5}" \
        $( [ "${CONTRACT_SEED:-1}" = random ] || echo --seed "${CONTRACT_SEED:-1}" ) \
        --workers 1 --no-color >"$out" 2>&1; then
        echo "==> schemathesis as $who: 0 failures ($(( $(date +%s) - start )) s): $(grep -A1 '^Test cases:' "$out" | tail -1 | sed 's/^ *//')"
    else
        echo "==> schemathesis as $who: FAILED"
        cat "$out"
        return 1
    fi
}

# Two at a time; the admin last, alone: what it changes (staff, devices) cannot take the
# others' rights away mid-run.
for pair in "anonymous amara.diallo@demo.nephrocare.test" "tech.mendes@demo.nephrocare.test dr.okafor@demo.nephrocare.test"; do
    pids=()
    for who in $pair; do
        schemathesis_as "$who" & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
done

schemathesis_as admin@demo.nephrocare.test || failed=1

if [ $failed != 0 ]; then
    echo "contract: FAILED (server log follows)" >&2
    tail -50 "$LOG/serve.log" >&2
    exit 1
fi
echo "contract: ok"
