#!/usr/bin/env bash
# Brings the whole platform up with demo data and leaves it serving (Ctrl-C stops it):
# provisions PostgreSQL + TimescaleDB if needed, builds nephrocare, applies migrations,
# creates the demo hospital (once) and prints the logins, then serves HTTP and MQTT.
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

cat <<EOT

==> Nephrocare is starting (Ctrl-C stops it)
    REST API docs   http://$NEPHROCARE_HTTP_ADDR/docs
    OpenAPI         http://$NEPHROCARE_HTTP_ADDR/api/openapi.json
    health          http://$NEPHROCARE_HTTP_ADDR/healthz   http://$NEPHROCARE_HTTP_ADDR/readyz
    MQTT            mqtt://$NEPHROCARE_MQTT_ADDR   ws://$NEPHROCARE_MQTT_WS_ADDR/mqtt

EOT
exec "$BIN" serve
