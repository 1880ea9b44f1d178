#!/usr/bin/env bash
# The web dashboard in a real browser (dashboard/test/browser.test.ts): headless Chromium
# from Debian's `chromium` package driven by Playwright (playwright-core, pinned in
# dashboard/package-lock.json, with the system browser), against the real service with the
# demo data and the simulator running, on a database and ports of its own.
#
# Installs what it needs (chromium via apt, the npm packages), checks that the committed
# dashboard/dist is what the sources build (scripts/dashboard.sh check), reuses the debug
# binary cargo has built, and leaves screenshots of every view and the overview's timings in
# target/browser-artifacts/ (BROWSER_ARTIFACTS), copying the overview's and a patient's
# trends into docs/. Usage: scripts/browser-test.sh
# BROWSER_DB, BROWSER_HTTP_ADDR, BROWSER_MQTT_ADDR, BROWSER_MQTT_WS_ADDR change the
# database name and addresses.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ART="${BROWSER_ARTIFACTS:-$ROOT/target/browser-artifacts}"
DB="${BROWSER_DB:-nephrocare_browser}"
HTTP="${BROWSER_HTTP_ADDR:-127.0.0.1:28080}"
MQTT="${BROWSER_MQTT_ADDR:-127.0.0.1:21883}"
MQTT_WS="${BROWSER_MQTT_WS_ADDR:-127.0.0.1:28083}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v chromium >/dev/null; then
    echo "==> installing chromium (apt)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

scripts/provision-db.sh >/dev/null
# Type-checks the dashboard against the API, checks dashboard/dist, installs the npm packages.
scripts/dashboard.sh check
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/nephrocare"

echo "==> service and simulator ($HTTP, database $DB)"
PGPASSWORD=nephrocare psql -X -q -h 127.0.0.1 -U nephrocare -d nephrocare \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>/dev/null
export DATABASE_URL="postgres://nephrocare:nephrocare@127.0.0.1:5432/$DB"
export NEPHROCARE_HTTP_ADDR="$HTTP" NEPHROCARE_MQTT_ADDR="$MQTT" NEPHROCARE_MQTT_WS_ADDR="$MQTT_WS"
NEPHROCARE_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
export NEPHROCARE_JWT_SECRET NEPHROCARE_LOG="warn,rumqttd::server::broker=off,rumqttd::router=off"
# Short-lived access tokens, so the pages renew theirs (and reconnect MQTT) during the run.
export NEPHROCARE_ACCESS_TOKEN_TTL_SECS=40
"$BIN" migrate up >/dev/null
"$BIN" seed --demo >/dev/null

WORK=$(mktemp -d)
SERVE="" SIM=""
cleanup() {
    [ -n "$SIM" ] && kill "$SIM" 2>/dev/null || true
    [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null || true
    wait 2>/dev/null || true
    exec 3>&- 2>/dev/null || true
    PGPASSWORD=nephrocare psql -X -q -h 127.0.0.1 -U nephrocare -d nephrocare \
        -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN" serve >"$WORK/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 1 60); do
    curl -fsS "http://$HTTP/readyz" >/dev/null 2>&1 && break
    kill -0 $SERVE 2>/dev/null || { cat "$WORK/serve.log" >&2; echo "error: the server exited" >&2; exit 1; }
    sleep 0.5
done
# The simulator takes episodes on demand from a pipe the tests write to (held open here).
mkfifo "$WORK/sim-commands"
exec 3<>"$WORK/sim-commands"
# Each machine first sends 14 days of past treatments (trends, summaries, performance), then
# treats at speed 20: a session lasts 12 minutes, longer than the whole run, so no treatment
# ends (and clears its alarms) while a test looks at it.
"$BIN" simulate --devices 4 --rate 1 --speed 20 --episodes-per-hour 0 --no-disconnects --progress-every 0 \
    --history 14 --mqtt "$MQTT" --commands <"$WORK/sim-commands" >"$WORK/sim.log" 2>&1 &
SIM=$!
for _ in $(seq 1 120); do
    [ "$(grep -c 'readings of past treatments' "$WORK/sim.log" || true)" = 4 ] && break
    kill -0 $SIM 2>/dev/null || { cat "$WORK/sim.log" >&2; echo "error: the simulator exited" >&2; exit 1; }
    sleep 0.5
done

echo "==> browser tests"
rm -rf "$ART"
mkdir -p "$ART"
(cd dashboard && npx --no-install esbuild test/browser.test.ts --bundle --platform=node --format=esm \
    --packages=external --log-level=warning --outfile=test-dist/browser.test.mjs)
status=0
NC_URL="http://$HTTP" NC_MQTT="mqtt://$MQTT" NC_SIM_COMMANDS="$WORK/sim-commands" NC_ARTIFACTS="$ART" \
    NC_TOKEN_TTL_SECS="$NEPHROCARE_ACCESS_TOKEN_TTL_SECS" \
    node --test --test-reporter=spec dashboard/test-dist/browser.test.mjs || status=$?
cp "$WORK/serve.log" "$WORK/sim.log" "$ART/" 2>/dev/null || true
if [ $status = 0 ]; then
    mkdir -p docs
    cp "$ART/overview-alarm.png" docs/dashboard-overview.png
    cp "$ART/patient-trends.png" docs/dashboard-patient-trends.png
    echo "browser tests: ok (screenshots in $ART)"
else
    echo "browser tests: FAILED (screenshots and logs in $ART)" >&2
    tail -30 "$WORK/serve.log" >&2
fi
exit $status
