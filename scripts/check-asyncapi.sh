#!/usr/bin/env bash
# Validates the AsyncAPI document of the MQTT contract, as the binary generates it
# (`nephrocare asyncapi`), with the AsyncAPI parser from npm: the library `asyncapi validate`
# is built on, with the same rules. Fails on any error or warning.
#
# The parser's version is pinned by contract/asyncapi/package-lock.json and installed with
# `npm ci` into .tools/asyncapi (git-ignored), again only when the lock file changes.
# Usage: scripts/check-asyncapi.sh [DOCUMENT]   (default: generated with cargo run)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null; then
    echo "==> installing Node.js and npm (apt)"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi

tools=.tools/asyncapi
if ! cmp -s contract/asyncapi/package-lock.json "$tools/package-lock.json" \
    || [ ! -d "$tools/node_modules/@asyncapi/parser" ]; then
    echo "==> installing the AsyncAPI parser into $tools"
    rm -rf "$tools"
    mkdir -p "$tools"
    cp contract/asyncapi/package.json contract/asyncapi/package-lock.json "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi

doc="${1:-}"
if [ -z "$doc" ]; then
    doc="$tools/asyncapi.json"
    echo "==> nephrocare asyncapi > $doc"
    cargo run --quiet --locked -- asyncapi >"$doc"
fi
echo "==> validating $doc"
NODE_PATH="$PWD/$tools/node_modules" node contract/asyncapi/validate.cjs "$doc"
