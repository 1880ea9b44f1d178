"""A hospital's record system (EMR) receiving treatment records: hl7apy's MLLP server.

    emr.py --log FILE [--host 127.0.0.1] [--port 0] [--mode aa|ae|ar]

Each ORU^R01 is parsed by hl7apy as a v2.6 ORU_R01 (its groups found: PATIENT_RESULT,
PATIENT, ORDER_OBSERVATION, OBSERVATION) and by python-hl7 for its fields; a JSON line is
appended to FILE (control id, patient number and authority, sex, treatment status, start and
end, every OBX code with its value and units, the answer, problems) and the EMR answers
ACK^R01^ACK with MSA-1 AA (or AE with an ERR when a check failed, or the code set by --mode
or the `mode` command). Prints `listening PORT` once ready.

Commands on stdin: `mode aa|ae|ar`, `quit`. End of stdin also quits.
"""
import argparse
import datetime
import json
import sys
import threading
import uuid

import hl7
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message

STATE = {"mode": "AA", "log": None, "lock": threading.Lock()}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S+0000")


def check(text):
    """What a receiving EMR would refuse, as a list of problems, and what it read."""
    problems = []
    read = {}
    try:
        msg = parse_message(text.replace("\n", "\r"), find_groups=True)
        result = msg.oru_r01_patient_result
        if len(result.oru_r01_patient.pid.pid_3.value) == 0:
            problems.append("PID-3 empty")
        observations = result.oru_r01_order_observation.oru_r01_observation
        read["hl7apy_observations"] = len(observations)
    except Exception as e:  # hl7apy raises its own exceptions for structure errors
        problems.append(f"hl7apy: {type(e).__name__}: {e}")
    m = hl7.parse(text)
    msh = m.segment("MSH")
    read["type"] = str(msh[9])
    read["control"] = str(msh[10])
    pid = m.segment("PID")
    read["patient"] = str(pid[3][0][0]) if str(pid[3]) else ""
    read["authority"] = str(pid[3][0][3]) if str(pid[3]) else ""
    read["id_type"] = str(pid[3][0][4]) if str(pid[3]) else ""
    read["sex"] = str(pid[8])
    obr = m.segment("OBR")
    read["start"], read["end"], read["result_status"] = str(obr[7]), str(obr[8]), str(obr[25])
    figures = {}
    for seg in [s for s in m if str(s[0]) == "OBX"]:
        code = str(seg[3][0][0])
        value = str(seg[5][0][0]) if str(seg[2]) == "CWE" else str(seg[5])
        figures[code] = {"value": value, "units": str(seg[6][0][0]) if str(seg[6]) else "", "type": str(seg[2])}
        if str(seg[11]) != "F":
            problems.append(f"OBX {code}: OBX-11 is not F")
    read["figures"] = figures
    if read["type"] != "ORU^R01^ORU_R01":
        problems.append(f"MSH-9 is {read['type']}")
    return read, problems


def esc(text):
    return hl7.parse("MSH|^~\\&|\r").escape(str(text))


def ack(code, control, problems):
    segs = [f"MSH|^~\\&|EMR_PEER|MAIN|NEPHROCARE||{now()}||ACK^R01^ACK|{uuid.uuid4().hex[:20]}|P|2.6",
            f"MSA|{code}|{control}"]
    for p in problems[:3]:
        segs.append(f"ERR||PID^1|101^Required field missing^HL70357|E||||{esc(p)}")
    return "\x0b" + "\r".join(segs) + "\r\x1c\x0d"


class Record(AbstractHandler):
    def reply(self):
        text = self.incoming_message
        read, problems = check(text)
        code = "AE" if problems else STATE["mode"]
        with STATE["lock"]:
            with open(STATE["log"], "a") as f:
                f.write(json.dumps(dict(read, ack=code, problems=problems)) + "\n")
        return ack(code, read["control"], problems)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", default="aa")
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    STATE["mode"], STATE["log"] = args.mode.upper(), args.log
    server = MLLPServer(args.host, args.port, {"ORU^R01^ORU_R01": (Record,)})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening {server.server_address[1]}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["mode"] and len(words) == 2:
            STATE["mode"] = words[1].upper()
            print(f"mode {STATE['mode']}", flush=True)
        elif words[:1] == ["quit"]:
            break
    server.shutdown()


if __name__ == "__main__":
    main()
