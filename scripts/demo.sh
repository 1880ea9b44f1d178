#!/usr/bin/env bash
# Brings the whole platform up with demo data and leaves it serving (Ctrl-C stops it):
# provisions PostgreSQL + TimescaleDB if needed, builds nephrocare, applies migrations,
# creates the demo hospital (once) and prints the logins, serves HTTP and MQTT, and runs
# simulated dialysis machines so live data, trends and alerts appear at once (each first
# sends four weeks of past treatments, once). The web dashboard is at http://127.0.0.1:8080/.
# DEMO_DEVICES (default 4) and DEMO_SPEED (default 60: a 4 h session in 4 min) tune them.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1; }

scripts/provision-db.sh

echo "==> building nephrocare"
cargo build --locked --bin nephrocare
BIN=target/debug/nephrocare

export DATABASE_URL="${DATABASE_URL:-postgres://nephrocare:nephrocare@127.0.0.1:5432/nephrocare}"
export NEPHROCARE_HTTP_ADDR="${NEPHROCARE_HTTP_ADDR:-127.0.0.1:8080}"
export NEPHROCARE_MQTT_ADDR="${NEPHROCARE_MQTT_ADDR:-127.0.0.1:1883}"
export NEPHROCARE_MQTT_WS_ADDR="${NEPHROCARE_MQTT_WS_ADDR:-127.0.0.1:8083}"
# A signing key kept across demo restarts (so logins survive them); never committed.
mkdir -p .nephrocare
if [ ! -s .nephrocare/jwt-secret ]; then
    head -c 48 /dev/urandom | base64 | tr -d '\n/+=' > .nephrocare/jwt-secret
    chmod 600 .nephrocare/jwt-secret
fi
NEPHROCARE_JWT_SECRET="${NEPHROCARE_JWT_SECRET:-$(cat .nephrocare/jwt-secret)}"
export NEPHROCARE_JWT_SECRET

echo "==> applying migrations"
"$BIN" migrate up
echo "==> demo data"
"$BIN" seed --demo

mkdir -p .nephrocare
"$BIN" serve &
SERVE=$!
SIM=""
stop() {
    [ -n "$SIM" ] && kill "$SIM" 2>/dev/null || true
    kill "$SERVE" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

for _ in $(seq 1 60); do
    curl -fsS "http://$NEPHROCARE_HTTP_ADDR/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVE" 2>/dev/null || { echo "error: nephrocare serve exited; see the messages above" >&2; exit 1; }
    sleep 0.5
done

"$BIN" simulate --devices "${DEMO_DEVICES:-4}" --rate 1 --speed "${DEMO_SPEED:-60}" \
    --episodes-per-hour "${DEMO_EPISODES_PER_HOUR:-0.1}" --progress-every 30 --history 28 &
SIM=$!

cat <<EOT

==> Nephrocare is running, with ${DEMO_DEVICES:-4} simulated dialysis machines (Ctrl-C stops everything)
    DASHBOARD       http://$NEPHROCARE_HTTP_ADDR/   (the logins above; password Nephro-demo-2026)
                    e.g. dr.okafor@demo.nephrocare.test (doctor), tech.mendes@demo.nephrocare.test
                    (technician), amara.diallo@demo.nephrocare.test (patient), admin@demo.nephrocare.test
    REST API docs   http://$NEPHROCARE_HTTP_ADDR/docs   (log in: POST /api/auth/login, then Authorize)
    OpenAPI         http://$NEPHROCARE_HTTP_ADDR/api/openapi.json
    health          http://$NEPHROCARE_HTTP_ADDR/healthz   http://$NEPHROCARE_HTTP_ADDR/readyz
    MQTT            mqtt://$NEPHROCARE_MQTT_ADDR   ws://$NEPHROCARE_MQTT_WS_ADDR/mqtt
    live readings   ws://$NEPHROCARE_HTTP_ADDR/ws/health-metrics/{deviceId}?token={accessToken}
    try             scripts/demo-watch.sh   (logs in as Dr Okafor and follows DM-001 over MQTT)
                    scripts/demo-watch.sh escalations   (Dr Lindqvist: alarms of Dr Okafor's machines
                    that nobody acknowledged within 60 s reach him, tier 2 of the ward)

EOT
wait "$SERVE"
