"""A hospital alert manager (IHE PCD ACM Alert Manager) played with python-hl7 over real MLLP.

    alert_manager.py --log FILE [--host 127.0.0.1] [--port 0] [--mode aa|ae|ar]
                     [--tls-cert PEM --tls-key PEM]

Listens for PCD-04 Report Alert messages; parses each with python-hl7, checks it against IHE
PCD TF-2 (pcd04_checks.py), appends a JSON line to FILE (control id, alert id, phase,
priority, type, the answer, problems, raw message) and answers ORA^R41^ORA_R41: AA, or AE with
an ERR when a check failed, or the code set by --mode / the `mode` command. Prints
`listening PORT` once ready.

Commands on stdin, one a line:
    mode aa|ae|ar
    status <alert_id> <recipient_id> <accepted|delivered|read|rejected|...> <host:port>
        sends a PCD-05 Report Alert Status (ORA^R41^ORA_R41, TF-2 Rev 10 3.5 and B.10) about
        that alert to host:port over MLLP and prints `ack <MSA-1> <MSA-2>` for the answer
    quit
End of stdin also quits.
"""
import argparse
import asyncio
import datetime
import json
import os
import ssl
import sys
import uuid

import hl7
from hl7.mllp import open_hl7_connection, start_hl7_server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pcd04_checks import check  # noqa: E402

STATE = {"mode": "AA", "first_control_id": {}}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S+0000")


def esc(text):
    """HL7 escaping of a value we put in a message (python-hl7's own)."""
    return hl7.parse("MSH|^~\\&|\r").escape(str(text))


def answer(code, control_id, problems):
    segs = [f"MSH|^~\\&|AM_PEER||NEPHROCARE||{now()}||ORA^R41^ORA_R41|{uuid.uuid4().hex[:20]}|P|2.6",
            f"MSA|{code}|{esc(control_id)}"]
    for p in problems[:5]:
        segs.append(f"ERR||OBR^1|101^Required field missing^HL70357|E||||{esc(p)}")
    return hl7.parse("\r".join(segs) + "\r")


async def on_connection(reader, writer, log):
    try:
        while not writer.is_closing():
            msg = await reader.readmessage()
            summary, problems = check(str(msg))
            code = "AE" if problems else STATE["mode"]
            if summary["phase"] in ("start", "start_only", "present"):
                STATE["first_control_id"].setdefault(summary["alert_id"], summary["control_id"])
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({**summary, "ack": code, "problems": problems, "raw": str(msg)}) + "\n")
            writer.writemessage(answer(code, summary["control_id"], problems))
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    finally:
        writer.close()


async def send_status(alert_id, recipient, status, address):
    host, port = address.rsplit(":", 1)
    control_id = uuid.uuid4().hex[:20]
    first = STATE["first_control_id"].get(alert_id, "")
    text = "\r".join([
        f"MSH|^~\\&|AM_PEER||NEPHROCARE||{now()}||ORA^R41^ORA_R41|{control_id}|P|2.6|||AL|NE"
        "|||||IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.5.1^ISO",
        f"MSA|AA|{esc(first)}",
        f"OBR|1||{esc(alert_id)}|196616^MDC_EVT_ALARM^MDC" + "|" * 25 + f"^{esc(alert_id)}",
        f"PRT|{uuid.uuid4().hex[:12]}|AD|RESPONSE^{status.upper()}^IHE_PCD_ACM"
        f"|AAP^Alert Acknowledging Provider^HL70912|{esc(recipient)}^Peer^Nurse|||||pager-1|{now()}",
    ]) + "\r"
    reader, writer = await open_hl7_connection(host, int(port))
    try:
        writer.writemessage(hl7.parse(text))
        await writer.drain()
        reply = await asyncio.wait_for(reader.readmessage(), 10)
        print(f"ack {reply.extract_field('MSA', 1, 1)} {reply.extract_field('MSA', 1, 2)}", flush=True)
    finally:
        writer.close()


async def main():
    p = argparse.ArgumentParser(description="IHE PCD ACM alert manager played with python-hl7")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", required=True, help="file to append one JSON line per PCD-04 to")
    p.add_argument("--mode", default="aa", choices=["aa", "ae", "ar"])
    p.add_argument("--tls-cert", help="PEM certificate chain: MLLP over TLS")
    p.add_argument("--tls-key", help="its PEM private key")
    args = p.parse_args()
    STATE["mode"] = args.mode.upper()
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = await start_hl7_server(lambda r, w: on_connection(r, w, args.log), args.host, args.port, ssl=tls)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        words = line.split()
        if not line or words[:1] == ["quit"]:
            break
        try:
            if words[:1] == ["mode"] and len(words) == 2 and words[1] in ("aa", "ae", "ar"):
                STATE["mode"] = words[1].upper()
                print(f"mode {STATE['mode']}", flush=True)
            elif words[:1] == ["status"] and len(words) == 5:
                await send_status(*words[1:])
            elif words:
                print(f"error: unknown command {line.strip()!r}", flush=True)
        except Exception as e:  # a command's failure is reported, the manager goes on
            print(f"error: {e!r}", flush=True)
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
