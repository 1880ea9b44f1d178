#!/usr/bin/env bash
# Validates the FHIR R4 API of a live server that has the demo data (scripts/contract.sh runs
# it on its own server): simulated treatments first (readings, sessions, alarms), then every
# resource type and Bulk Data exports validated with fhir.resources (contract/fhir/check.py).
# Installs fhir.resources (pinned) into .tools/integrator. Environment: NC_URL (the server),
# NC_BIN (the nephrocare binary), NEPHROCARE_MQTT_ADDR and DATABASE_URL (the server's).
set -euo pipefail
cd "$(dirname "$0")/.."
FHIR_RESOURCES_VERSION=8.3.0
: "${NC_URL:?NC_URL is not set}" "${NC_BIN:?NC_BIN is not set}"

[ -x .tools/integrator/bin/python ] || python3 -m venv .tools/integrator
if [ "$(.tools/integrator/bin/python -c 'import importlib.metadata as m; print(m.version("fhir.resources"))' 2>/dev/null)" != "$FHIR_RESOURCES_VERSION" ]; then
    echo "==> installing fhir.resources $FHIR_RESOURCES_VERSION"
    .tools/integrator/bin/pip install -q --disable-pip-version-check "fhir.resources==$FHIR_RESOURCES_VERSION"
fi

# Four machines, sessions of 6 s (speed 2400), alarms: data for every resource type.
"$NC_BIN" simulate --duration 10s --speed 2400 --rate 2 --episodes-per-hour 20 --no-disconnects --progress-every 0 >/dev/null
.tools/integrator/bin/python contract/fhir/check.py
