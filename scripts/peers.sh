#!/usr/bin/env bash
# The outside parties of the tests, from PyPI, pinned, in a venv of their own (.tools/peers):
# python-hl7 (parser, MLLP), hl7apy (v2 messages, MLLP server), aiosmtpd (a real SMTP server),
# paho-mqtt (an MQTT 5 client) and fhir.resources (FHIR R4B models: a rest-hook subscriber
# validates what it is sent). tests/peers/ uses them to play the hospital's alert
# manager, its mail server and MQTT 5 apps and machines; the hl7 crate's and the e2e tests run them. Idempotent: does nothing when the pins are installed.
# Prints the interpreter's path. Usage: scripts/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.tools/peers
PINS=(hl7==0.4.5 hl7apy==1.3.5 aiosmtpd==1.4.6 paho-mqtt==2.1.0 fhir.resources==8.3.0)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

installed() {
    "$VENV/bin/python" - "${PINS[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(any(version(name) != want for name, want in (p.split("==") for p in sys.argv[1:])))
PY
}

if ! installed; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        echo "==> installing python3-venv"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
    fi
    echo "==> installing ${PINS[*]} into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
    installed || { echo "error: $VENV does not have ${PINS[*]} after installing" >&2; exit 1; }
fi
echo "$(pwd)/$VENV/bin/python"
