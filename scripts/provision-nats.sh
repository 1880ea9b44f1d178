#!/usr/bin/env bash
# Install Debian's nats-server (bookworm: 2.9.10), the clustered MQTT 3.1.1 broker
# Nephrocare nodes use as their routing core (see scripts/nats-cluster.sh).
#
# Works as root (CI) or as a normal user with sudo. Idempotent: when nats-server
# is already on PATH it only prints its version. `apt-get update` runs only when
# apt has no candidate for the package yet. Needs no MQTT client package.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if command -v nats-server >/dev/null 2>&1; then
    log "nats-server already installed: $(nats-server --version 2>&1 | head -n1)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
else
    SUDO="sudo"
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is not installed"
fi

apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'
}

cand="$(apt_candidate nats-server)"
if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    log "apt has no candidate for nats-server yet: running apt-get update"
    $SUDO apt-get update -q
    cand="$(apt_candidate nats-server)"
    [ -n "$cand" ] && [ "$cand" != "(none)" ] || die "no nats-server package in the configured apt sources"
fi

log "installing nats-server $cand"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nats-server

command -v nats-server >/dev/null 2>&1 || die "nats-server not on PATH after installation"
log "nats-server ready: $(nats-server --version 2>&1 | head -n1)"
