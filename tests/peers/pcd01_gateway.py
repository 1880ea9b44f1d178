"""A device gateway (IHE PCD-01 Device Observation Reporter) played with python-hl7's MLLP client.

    pcd01_gateway.py --port PORT [--host 127.0.0.1] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]]

Builds ORU^R01^ORU_R01 messages (HL7 v2.6, the PCD-01 profile in MSH-21) from JSON specs, checks
each one parses as a v2.6 ORU_R01 with hl7apy (groups found, its structure as a third party reads
it), sends it over MLLP with python-hl7's MLLPClient (over TLS with --tls-ca, checking the server's
certificate for `localhost`, with a client certificate when --tls-cert is given) and prints the acknowledgement as parsed by
python-hl7, one JSON line per command:

    {"msa": "AA", "control": "<MSA-2>", "type": "ACK^R01^ACK",
     "errors": [{"location": "OBX^2^5", "code": "102", "severity": "E", "text": "..."}]}

Commands on stdin, one JSON object a line:
    {"send": SPEC}                      one message
    {"raw": "MSH|...\\r..."}             exactly this text, in an MLLP frame
    {"bytes": "<hex>"}                   these bytes as they are (broken framing); prints
                                         {"closed": true|false} (whether the server hung up)
    {"stream": {"from": 1, "to": 300, "spec": SPEC}}
                                         SPEC sent again and again with control id
                                         `<control>-<i>` and its OBX times i seconds after
                                         `time`; prints {"acked": i} for each AA, and at the
                                         end {"done": n} or {"down": i, "error": "..."}
    {"reconnect": true}                 a new connection
SPEC: {"control", "secret", "app", "facility", "time" (HL7 DTM),
       "patients": [{"mrn": str|null, "obx": [{"type": "NM", "code": "150021^MDC_...^MDC",
                     "sub": "1.1.1.1", "value": "80", "units": "266016^MDC_DIM_MMHG^MDC",
                     "status": "R", "time": DTM|null, "equipment": "serial"|null}]}]}
"""
import argparse
import datetime
import json
import socket
import ssl
import sys

import hl7
from hl7.client import MLLPClient
from hl7apy.parser import parse_message

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
PCD01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"


def esc(text):
    return hl7.parse("MSH|^~\\&|\r").escape(str(text))


def shifted(dtm, seconds):
    t = datetime.datetime.strptime(dtm[:14], "%Y%m%d%H%M%S") + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y%m%d%H%M%S") + dtm[14:]


def build(spec, shift=0):
    time = spec["time"]
    segs = [
        "|".join(["MSH", "^~\\&", esc(spec["app"]), esc(spec.get("facility", "")), "NEPHROCARE", "UNIT", time,
                  esc(spec.get("secret", "")), spec.get("type", "ORU^R01^ORU_R01"), esc(spec["control"]), "P",
                  spec.get("version", "2.6"), "", "", "NE", "AL", "", "", "", "", PCD01_PROFILE])
    ]
    n = 0
    for i, p in enumerate(spec["patients"]):
        if p.get("mrn"):
            segs.append(f"PID|||{esc(p['mrn'])}^^^HOSP^MR||Doe^Jane^^^^^L")
            segs.append("PV1||I|NORTH^^BAY1")
        segs.append(f"OBR|{i + 1}|{esc(spec['control'])}^GW|{esc(spec['control'])}^GW|182777000^monitoring of patient^SCT|||{time}")
        for o in p["obx"]:
            n += 1
            obx_time = shifted(o["time"], shift) if o.get("time") else ""
            fields = ["OBX", str(n), o.get("type", "NM"), o["code"], o.get("sub", "1.1.1.1"), o.get("value", ""),
                      o.get("units", ""), "", "", "", "", o.get("status", "R"), "", "", obx_time, "", "", "",
                      esc(o["equipment"]) if o.get("equipment") else ""]
            segs.append("|".join(fields))
    return "\r".join(segs) + "\r"


def check_structure(text):
    """hl7apy reads it as a v2.6 ORU_R01 with its groups (a third party's view of the structure)."""
    msg = parse_message(text, find_groups=True)
    assert msg.msh.msh_9.msh_9_1.value in ("ORU", "ADT", "ACK"), msg.msh.msh_9.value
    if msg.msh.msh_9.msh_9_1.value == "ORU" and msg.msh.msh_12.value.startswith("2."):
        results = msg.oru_r01_patient_result
        assert len(results) >= 1


class Gateway:
    def __init__(self, host, port, tls=None):
        self.host, self.port, self.tls = host, port, tls
        self.client = None

    def connect(self):
        if self.client is not None:
            try:
                self.client.close()
            except OSError:
                pass
        self.client = MLLPClient(self.host, self.port)
        if self.tls is not None:
            self.client.socket = self.tls.wrap_socket(self.client.socket, server_hostname="localhost")
        self.client.socket.settimeout(30)

    def exchange(self, text):
        if self.client is None:
            self.connect()
        first = self.client.send_message(text)
        data = first
        while not data.rstrip().endswith(EB) and not data.endswith(EB + CR):
            more = self.client.socket.recv(65536)
            if not more:
                raise ConnectionError("closed before the acknowledgement ended")
            data += more
        body = data.strip().lstrip(SB).rstrip(CR).rstrip(EB).decode("utf-8")
        ack = hl7.parse(body)
        errors = []
        for seg in [s for s in ack if str(s[0]) == "ERR"]:
            errors.append({
                "location": str(seg[2]) if len(seg) > 2 else "",
                "code": str(seg[3]).split("^")[0] if len(seg) > 3 else "",
                "severity": str(seg[4]) if len(seg) > 4 else "",
                "text": str(seg[7]) if len(seg) > 7 else "",
            })
        msa = ack.segment("MSA")
        return {"msa": str(msa[1]), "control": str(msa[2]), "type": str(ack.segment("MSH")[9]), "errors": errors}

    def raw_bytes(self, data):
        self.connect()
        self.client.socket.send(data)
        self.client.socket.settimeout(5)
        try:
            got = self.client.socket.recv(65536)
            closed = got == b""
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        except socket.timeout:
            closed = False
        self.client = None
        return {"closed": closed}


def say(obj):
    print(json.dumps(obj), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-ca")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    tls = None
    if args.tls_ca:
        tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.tls_ca)
        if args.tls_cert:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
    gw = Gateway(args.host, args.port, tls)
    say({"ready": True})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        try:
            if "send" in cmd:
                text = build(cmd["send"])
                check_structure(text)
                say(gw.exchange(text))
            elif "raw" in cmd:
                say(gw.exchange(cmd["raw"]))
            elif "bytes" in cmd:
                say(gw.raw_bytes(bytes.fromhex(cmd["bytes"])))
            elif "reconnect" in cmd:
                gw.connect()
                say({"connected": True})
            elif "stream" in cmd:
                s = cmd["stream"]
                done = 0
                for i in range(s["from"], s["to"] + 1):
                    spec = dict(s["spec"], control=f"{s['spec']['control']}-{i}")
                    try:
                        answer = gw.exchange(build(spec, shift=i))
                    except (OSError, ConnectionError) as e:
                        gw.client = None
                        say({"down": i, "error": str(e)})
                        break
                    if answer["msa"] != "AA":
                        say({"refused": i, "answer": answer})
                        break
                    say({"acked": i})
                    done += 1
                else:
                    say({"done": done})
            else:
                say({"error": f"unknown command {cmd}"})
        except (OSError, ConnectionError) as e:
            gw.client = None
            say({"error": str(e)})


if __name__ == "__main__":
    main()
