"""A real SMTP server (aiosmtpd) for the e-mail tests: accepts every message and prints it as
one JSON line on stdout ({"from", "to", "subject", "body"}). Prints `listening PORT` first.

Usage: smtp_server.py --port PORT [--host 127.0.0.1] [--reject CODE] [--until-killed] (CODE: answer every
message with that SMTP code instead, e.g. 451 for a temporary failure)."""

import argparse
import asyncio
import json
import signal
import sys
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, reject):
        self.reject = reject

    async def handle_DATA(self, server, session, envelope):
        if self.reject:
            return f"{self.reject} not now"
        msg = message_from_bytes(envelope.content, policy=policy.default)
        body = msg.get_body(preferencelist=("plain",))
        print(json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "body": body.get_content() if body else "",
        }), flush=True)
        return "250 OK queued"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--reject", type=int, default=0)
    p.add_argument("--until-killed", action="store_true", help="run until killed instead of until stdin closes")
    a = p.parse_args()
    controller = Controller(Keep(a.reject), hostname=a.host, port=a.port)
    controller.start()
    print(f"listening {a.port}", flush=True)
    try:
        if a.until_killed:
            signal.sigwait({signal.SIGTERM, signal.SIGINT})
        else:
            sys.stdin.read()  # until the test closes stdin (or dies)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
