"""Readings across a database failover, over HTTP (bench/run.sh failover).

    failover.py --url http://127.0.0.1:18080 --devices ID:SECRET,... --seconds 30 \
        --kill-at 10 --kill-cmd "bash scripts/pg-ha.sh kill-primary DIR"

One sender per device posts readings (POST /api/health-metrics, seq increasing) as fast as
the service acknowledges them; a reading that is not acknowledged (201) is sent again until
it is. At --kill-at seconds the primary's server is lost (--kill-cmd). Prints one JSON line:
readings acknowledged, the first seq of the run per device, the longest gap between two
acknowledgements, seconds from the kill to the first acknowledgement of a reading sent after it, and the
refusals seen meanwhile by status. Standard library only.
"""
import argparse
import base64
import datetime
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--devices", required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--kill-at", type=float, default=10)
    ap.add_argument("--kill-cmd", required=True)
    ap.add_argument("--first-seq", type=int, default=10_000_000)
    args = ap.parse_args()
    devices = [d.split(":", 1) for d in args.devices.split(",")]
    lock = threading.Lock()
    acks = []  # (acknowledged, sent) times of every acknowledgement
    refused = {}
    start = time.monotonic()
    stop_at = start + args.seconds
    killed = {}
    t0 = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)

    def sender(device, secret):
        auth = "Basic " + base64.b64encode(f"{device}:{secret}".encode()).decode()
        seq = args.first_seq
        while time.monotonic() < stop_at:
            ts = (t0 + datetime.timedelta(milliseconds=seq - args.first_seq)).isoformat()
            body = json.dumps({"v": 1, "seq": seq, "ts": ts, "systemStatus": "normal", "heartRate": 70,
                               "bloodPressure": 120}).encode()
            deadline = time.monotonic() + 120
            while True:
                if time.monotonic() > deadline:
                    raise SystemExit(f"reading {seq} of {device} not acknowledged within 120 s")
                sent = time.monotonic()
                req = urllib.request.Request(args.url + "/api/health-metrics", data=body, method="POST",
                                             headers={"content-type": "application/json", "authorization": auth})
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                except Exception:  # noqa: BLE001 - a timeout or a closed connection: send again
                    status = 0
                if status == 201:
                    with lock:
                        acks.append((time.monotonic(), sent))
                    break
                with lock:
                    refused[status] = refused.get(status, 0) + 1
                time.sleep(0.1)
            seq += 1

    threads = [threading.Thread(target=sender, args=d) for d in devices]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start + args.kill_at - time.monotonic()))
    subprocess.run(args.kill_cmd, shell=True, check=True, capture_output=True)
    killed["at"] = time.monotonic()  # the server is gone once the command returns
    for t in threads:
        t.join()
    times = sorted(a for a, _ in acks)
    gaps = [b - a for a, b in zip(times, times[1:])]
    # The first reading sent after the kill and acknowledged (one in flight at the kill may
    # have been committed just before it).
    after = sorted(a for a, s in acks if s > killed["at"])
    print(json.dumps({
        "acknowledged": len(acks),
        "first_seq": args.first_seq,
        "longest_gap_s": round(max(gaps, default=0.0), 2),
        "kill_to_first_ack_s": round(after[0] - killed["at"], 2) if after else None,
        "refused": {str(k): v for k, v in sorted(refused.items())},
    }))


if __name__ == "__main__":
    main()
