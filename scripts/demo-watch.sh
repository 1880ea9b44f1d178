#!/usr/bin/env bash
# Follows a demo machine as its doctor would: logs in as Dr Okafor over REST, then
# subscribes over MQTT (mosquitto_sub) to everything of machine DM-001, and prints the
# current alerts. Run it while scripts/demo.sh is running.
set -euo pipefail
HTTP="${NEPHROCARE_HTTP_ADDR:-127.0.0.1:8080}"
MQTT="${NEPHROCARE_MQTT_ADDR:-127.0.0.1:1883}"
login="$(curl -fsS -X POST "http://$HTTP/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"dr.okafor@demo.nephrocare.test","password":"Nephro-demo-2026"}')"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
token="$(json 'd["accessToken"]' <<<"$login")"
user="$(json 'd["user"]["id"]' <<<"$login")"
hospital="$(json 'd["user"]["hospitalId"]' <<<"$login")"
device="$(curl -fsS "http://$HTTP/api/devices?mine=true" -H "authorization: Bearer $token" | json '[x["id"] for x in d["items"] if x["serial"]=="DM-001"][0]')"
echo "==> open alerts of Dr Okafor's machines"
curl -fsS "http://$HTTP/api/alerts?openOnly=true" -H "authorization: Bearer $token" \
    | python3 -c 'import json, sys
items = json.load(sys.stdin)["items"]
print("\n".join("%-6s %-12s %s" % (a["priority"], a["state"], a["message"]) for a in items) or "(none)")'
echo "==> live: nc/v1/h/$hospital/d/$device/# (Ctrl-C stops)"
exec mosquitto_sub -h "${MQTT%:*}" -p "${MQTT##*:}" -i "$user-watch" -u "$user" -P "$token" -q 1 -v \
    -t "nc/v1/h/$hospital/d/$device/#" -t "nc/v1/h/$hospital/u/$user/notifications"
