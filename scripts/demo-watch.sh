#!/usr/bin/env bash
# Follows the demo as its doctors would. Run it while scripts/demo.sh is running.
#
#   scripts/demo-watch.sh              Dr Okafor: lists the open alerts, then follows machine
#                                      DM-001 and her notifications over MQTT (mosquitto_sub)
#   scripts/demo-watch.sh escalations  Dr Lindqvist, the other doctor of the ward: his
#                                      notifications, where an alarm of Dr Okafor's machines
#                                      arrives as "escalated" (tier 2) when nobody acknowledged
#                                      it within 60 s (run the first one too, so that Dr Okafor
#                                      is reachable and the alarm waits its minute at tier 1)
set -euo pipefail
HTTP="${NEPHROCARE_HTTP_ADDR:-127.0.0.1:8080}"
MQTT="${NEPHROCARE_MQTT_ADDR:-127.0.0.1:1883}"
command -v mosquitto_sub >/dev/null || {
    echo "==> installing mosquitto-clients"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mosquitto-clients >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq mosquitto-clients >/dev/null; fi
}
who=dr.okafor
[ "${1:-}" = escalations ] && who=dr.lindqvist
login="$(curl -fsS -X POST "http://$HTTP/api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$who@demo.nephrocare.test\",\"password\":\"Nephro-demo-2026\"}")"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
token="$(json 'd["accessToken"]' <<<"$login")"
user="$(json 'd["user"]["id"]' <<<"$login")"
hospital="$(json 'd["user"]["hospitalId"]' <<<"$login")"
if [ "$who" = dr.lindqvist ]; then
    echo "==> Dr Lindqvist's notifications: nc/v1/h/$hospital/u/$user/notifications (Ctrl-C stops)"
    exec mosquitto_sub -h "${MQTT%:*}" -p "${MQTT##*:}" -i "$user-watch" -u "$user" -P "$token" -q 1 -v \
        -t "nc/v1/h/$hospital/u/$user/notifications"
fi
device="$(curl -fsS "http://$HTTP/api/devices?mine=true" -H "authorization: Bearer $token" | json '[x["id"] for x in d["items"] if x["serial"]=="DM-001"][0]')"
echo "==> open alerts of Dr Okafor's machines"
curl -fsS "http://$HTTP/api/alerts?openOnly=true" -H "authorization: Bearer $token" \
    | python3 -c 'import json, sys
items = json.load(sys.stdin)["items"]
print("\n".join("%-6s %-12s tier %s  %s" % (a["priority"], a["state"], a["escalationLevel"], a["message"]) for a in items) or "(none)")'
echo "==> live: nc/v1/h/$hospital/d/$device/# and her notifications (Ctrl-C stops)"
exec mosquitto_sub -h "${MQTT%:*}" -p "${MQTT##*:}" -i "$user-watch" -u "$user" -P "$token" -q 1 -v \
    -t "nc/v1/h/$hospital/d/$device/#" -t "nc/v1/h/$hospital/u/$user/notifications"
