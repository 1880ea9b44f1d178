"""A FHIR subscriber's rest-hook endpoint: Python's own HTTP server, every notification
validated with fhir.resources (R4B models; R4B equals R4 for these resources).

    rest_hook.py --log FILE [--host 127.0.0.1] [--port 0] [--status 200]

Each POST's body must be application/fhir+json; it is parsed and validated as a Bundle with
fhir.resources, then each entry's resource against its own model, and checked as the
Subscriptions Backport IG's R4 notification: a `history` Bundle whose first entry is a
`subscription-status` Parameters (subscription, topic, status, type,
events-since-subscription-start; an event-notification's notification-event with its
event-number, timestamp and focus). A JSON line is appended to FILE (path, authorization
header, type, status, topic, events since start, event number, focus, the types and ids of
the other entries, problems) and the answer is --status (or what the `status N` command set).
Prints `listening PORT` once ready.

Commands on stdin: `status N`, `quit`. End of stdin also quits.
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fhir.resources.R4B import get_fhir_model_class

STATE = {"status": 200, "log": None, "lock": threading.Lock()}
STATUS_PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"


def read(bundle):
    """What the notification says, and what a subscriber would refuse in it."""
    problems, out = [], {}
    try:
        get_fhir_model_class("Bundle").model_validate(bundle)
    except Exception as e:  # noqa: BLE001 - any validation error is a problem
        problems.append(f"Bundle is not valid R4(B): {e}")
    for e in bundle.get("entry", []):
        r = e.get("resource")
        if r is None:
            continue
        try:
            get_fhir_model_class(r.get("resourceType")).model_validate(r)
        except Exception as ex:  # noqa: BLE001
            problems.append(f"{r.get('resourceType')} is not valid R4(B): {ex}")
    if bundle.get("type") != "history":
        problems.append(f"Bundle.type is {bundle.get('type')!r}, not history")
    entries = bundle.get("entry") or [{}]
    status = entries[0].get("resource") or {}
    if status.get("resourceType") != "Parameters" or STATUS_PROFILE not in status.get("meta", {}).get("profile", []):
        problems.append("the first entry is not a subscription-status Parameters")
    params = {p["name"]: p for p in status.get("parameter", [])}
    for name in ("subscription", "topic", "status", "type", "events-since-subscription-start"):
        if name not in params:
            problems.append(f"subscription-status has no {name}")
    out["subscription"] = params.get("subscription", {}).get("valueReference", {}).get("reference")
    out["topic"] = params.get("topic", {}).get("valueCanonical")
    out["status"] = params.get("status", {}).get("valueCode")
    out["type"] = params.get("type", {}).get("valueCode")
    out["since_start"] = params.get("events-since-subscription-start", {}).get("valueString")
    event = params.get("notification-event")
    if out["type"] == "event-notification":
        if not event:
            problems.append("an event-notification without notification-event")
        else:
            parts = {p["name"]: p for p in event.get("part", [])}
            out["number"] = parts.get("event-number", {}).get("valueString")
            out["timestamp"] = parts.get("timestamp", {}).get("valueInstant")
            out["focus"] = parts.get("focus", {}).get("valueReference", {}).get("reference")
            if out["number"] is None or out["timestamp"] is None:
                problems.append("notification-event lacks event-number or timestamp")
    out["entries"] = [
        {"fullUrl": e.get("fullUrl"), "type": (e.get("resource") or {}).get("resourceType"),
         "resource": e.get("resource")}
        for e in entries[1:]
    ]
    return out, problems


class Hook(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        problems = []
        if not (self.headers.get("content-type") or "").startswith("application/fhir+json"):
            problems.append(f"content-type is {self.headers.get('content-type')!r}")
        try:
            out, more = read(json.loads(body))
            problems += more
        except ValueError as e:
            out = {}
            problems.append(f"not JSON: {e}")
        with STATE["lock"]:
            code = STATE["status"]
            line = dict(out, path=self.path, authorization=self.headers.get("authorization"), answer=code,
                        problems=problems)
            with open(STATE["log"], "a") as f:
                f.write(json.dumps(line) + "\n")
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    STATE["status"], STATE["log"] = args.status, args.log
    server = ThreadingHTTPServer((args.host, args.port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening {server.server_address[1]}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["status"] and len(words) == 2:
            with STATE["lock"]:
                STATE["status"] = int(words[1])
            print(f"status {STATE['status']}", flush=True)
        elif words[:1] == ["quit"]:
            break
    server.shutdown()


if __name__ == "__main__":
    main()
