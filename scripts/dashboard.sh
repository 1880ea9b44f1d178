#!/usr/bin/env bash
# The web dashboard (dashboard/): TypeScript built by esbuild into dashboard/dist, which is
# committed and embedded in the nephrocare binary (so building or running the service needs
# no Node.js). Both commands install the pinned npm packages (dashboard/package-lock.json)
# when needed, generate the API types from the server's own OpenAPI document
# (`nephrocare openapi` → openapi-typescript) and type-check the sources against them.
#
#   scripts/dashboard.sh build   rebuild dashboard/dist (commit it with the sources)
#   scripts/dashboard.sh check   fail if dashboard/dist is not exactly what the sources build
#                                (CI), or if the sources do not type-check against the API
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-check}"
case "$mode" in build | check) ;; *) echo "usage: scripts/dashboard.sh build|check" >&2; exit 2 ;; esac

if ! command -v npm >/dev/null; then
    echo "==> installing Node.js and npm (apt)"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if ! cmp -s dashboard/package-lock.json dashboard/node_modules/.nc-installed-lock 2>/dev/null; then
    echo "==> npm ci (dashboard)"
    (cd dashboard && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.nc-installed-lock)
fi

echo "==> API types from nephrocare openapi"
cargo build --locked --quiet --bin nephrocare
"${CARGO_TARGET_DIR:-target}/debug/nephrocare" openapi >dashboard/openapi.json
(cd dashboard && npx --no-install openapi-typescript openapi.json -o src/openapi.d.ts >/dev/null)
echo "==> type-check"
(cd dashboard && npx --no-install tsc -p . --noEmit && npx --no-install tsc -p test --noEmit)
echo "==> esbuild ($mode)"
if [ "$mode" = build ]; then
    (cd dashboard && node build.mjs --sizes)
else
    (cd dashboard && node build.mjs --check)
fi
