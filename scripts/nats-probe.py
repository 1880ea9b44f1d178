#!/usr/bin/env python3
"""Probe the MQTT 3.1.1 behaviour of a 3-node NATS cluster started by scripts/nats-cluster.sh.

    python3 scripts/nats-probe.py DIR [BASE] [TESTS]     e.g. ... /tmp/ncl 14883 abcdeghij

Needs paho-mqtt 2.x (pip install paho-mqtt). Tests a..j (see the letters below); f kill -9s
node 1 and restarts it through scripts/nats-cluster.sh. Prints one line per finding.
"""
import os, queue, socket, struct, subprocess, sys, threading, time, uuid
import paho.mqtt.client as mqtt

DIR = sys.argv[1]
BASE = int(sys.argv[2]) if len(sys.argv) > 2 else 14883
TESTS = sys.argv[3] if len(sys.argv) > 3 else "abcdefghij"
USER, PW = "nephrocare", os.environ.get("NATS_PASSWORD", "nephrocare-cluster")
CLUSTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nats-cluster.sh")
H = str(uuid.uuid4())
port = lambda n: BASE + n - 1
topic = lambda d, kind: f"nc/v1/h/{H}/d/{d}/{kind}"
cid = lambda i: f"0190f3a2-1111-7000-8000-{i:012d}~0"
now = time.monotonic


def out(test, msg):
    print(f"{test}: {msg}", flush=True)


def client(node, client_id=None, clean=True, ka=60, manual_ack=False, pw=PW, wait=True, timeout=10):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or str(uuid.uuid4()),
                    clean_session=clean, protocol=mqtt.MQTTv311, manual_ack=manual_ack)
    c.username_pw_set(USER, pw)
    c.q, c.ready, c.gone, c.sp, c.gone_at = queue.Queue(), threading.Event(), threading.Event(), None, None

    def on_connect(cl, _u, flags, rc, _p):
        c.sp, c.rc = flags.session_present, rc
        c.ready.set()

    def on_disconnect(cl, _u, _f, rc, _p):
        c.gone_at = c.gone_at or now()
        c.gone.set()
        cl.loop_stop()  # no automatic reconnect

    c.on_connect, c.on_disconnect = on_connect, on_disconnect
    c.on_message = lambda cl, _u, m: c.q.put((now(), m.topic, m.payload, m.qos, m.retain, m.dup, m.mid))
    c.connect("127.0.0.1", port(node), keepalive=ka)
    c.loop_start()
    if wait and not c.ready.wait(timeout):
        c.loop_stop(); c.socket() and c.socket().close()
        raise RuntimeError("noCONNACK")
    return c


def suback(c, *filters, timeout=10):
    ev, res = threading.Event(), {}
    c.on_subscribe = lambda cl, _u, mid, rcs, _p: (res.update(rcs=[r.value for r in rcs]), ev.set())
    c.subscribe([(f, 1) for f in filters])
    if not ev.wait(timeout):
        raise RuntimeError("no SUBACK")
    return res["rcs"]


def publish(node, items, timeout=10):
    """items: [(topic, payload, retain)] QoS 1; returns seconds until the last PUBACK."""
    c, t = client(node, timeout=timeout), now()
    infos = [c.publish(tp, p, qos=1, retain=r) for tp, p, r in items]
    for i in infos:
        i.wait_for_publish(timeout)
        if not i.is_published():
            c.loop_stop(); c.socket() and c.socket().close()
            raise RuntimeError("noPUBACK")
    dt = now() - t
    c.disconnect(); c.loop_stop()
    return dt


def drain(c, n, timeout=10):
    got, end = [], now() + timeout
    while len(got) < n and now() < end:
        try:
            got.append(c.q.get(timeout=max(0.01, end - now())))
        except queue.Empty:
            break
    return got


def close(*cs):
    for c in cs:
        c.disconnect(); c.loop_stop()


def raw_connect(node, client_id, pw=PW, ka=60, level=4, will=None):
    """CONNECT over a plain socket; returns (socket, CONNACK session-present, CONNACK code)."""
    st = lambda b: struct.pack(">H", len(b)) + (b.encode() if isinstance(b, str) else b)
    flags, payload = 0xC2, st(client_id)
    if will:
        flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retain
        payload += st(will[0]) + st(will[1])
    body = st("MQTT") + bytes([level, flags]) + struct.pack(">H", ka) + (b"\0" if level == 5 else b"")
    body += payload + st(USER) + st(pw)
    rl, n = b"", len(body)
    while True:
        rl += bytes([(n % 128) | (128 if n >= 128 else 0)]); n //= 128
        if not n:
            break
    s = socket.create_connection(("127.0.0.1", port(node)), timeout=10)
    s.sendall(b"\x10" + rl + body)
    ack = s.recv(16)
    return s, (ack[2] if len(ack) > 3 else None), (ack[3] if len(ack) > 3 else ack.hex() or "closed")


def cluster(*args):
    subprocess.run(["bash", CLUSTER, *args], check=True, stdout=subprocess.DEVNULL)


def test_a():
    d, d2 = uuid.uuid4(), uuid.uuid4()
    s = client(1)
    rcs = suback(s, topic(d, "telemetry"), f"nc/v1/h/{H}/d/+/status", f"nc/v1/h/{H}/d/{d2}/#")
    t = now()
    publish(2, [(topic(d, "telemetry"), b"t1", False), (topic(d2, "status"), b"s1", False),
                (topic(d2, "alerts"), b"x1", False)])
    got = drain(s, 4, 5)
    out("a", f"SUBACK {rcs}; node2->node1 got {[(m[1].split('/')[-1], m[2], m[3]) for m in got]} "
             f"(d2/status matches 2 filters), last after {1000 * (got[-1][0] - t):.0f} ms")
    lat = []
    for i in range(20):
        t = now(); publish(2, [(topic(d, "telemetry"), b"%d" % i, False)])
        m = drain(s, 1, 5); lat.append(1000 * (m[0][0] - t) if m else None)
    ok = [x for x in lat if x is not None]
    out("a", f"20 x (connect+publish on node2, deliver node1): {len(ok)}/20 delivered, "
             f"median {sorted(ok)[len(ok) // 2]:.1f} ms incl. publisher connect")
    for qos in (0, 1):
        ts = []
        for _ in range(5):
            ev = threading.Event(); s.on_subscribe = lambda *a: ev.set()
            t = now(); s.subscribe(topic(uuid.uuid4(), "telemetry"), qos); ev.wait(10); ts.append(1000 * (now() - t))
        out("a", f"SUBACK latency QoS {qos} subscription: {', '.join('%.0f' % x for x in ts)} ms")
    close(s)


def test_b():
    d = uuid.uuid4()
    publish(1, [(topic(d, "status"), b"online", True)])
    time.sleep(0.5)
    s = client(3); t = now()
    suback(s, f"nc/v1/h/{H}/d/+/status"); ts = now()
    m = drain(s, 1, 5)
    out("b", f"retained from node1, new sub on node3 after 0.5 s: {[(x[2], 'retain=%d' % x[4]) for x in m]} "
             f"{1000 * (m[0][0] - t):.0f} ms after SUBSCRIBE (SUBACK took {1000 * (ts - t):.0f} ms)"
        if m else "NOT delivered")
    close(s)
    miss = 0
    for _ in range(20):  # subscribe on node 3 right after the PUBACK on node 1
        d = uuid.uuid4(); publish(1, [(topic(d, "status"), b"online", True)])
        s = client(3); suback(s, topic(d, "status"))
        miss += not drain(s, 1, 2); close(s)
    out("b", f"subscribe on node3 immediately after PUBACK on node1: {20 - miss}/20 got the retained message")
    publish(1, [(topic(d, "status"), b"", True)]); time.sleep(0.5)
    s = client(3); suback(s, topic(d, "status"))
    out("b", f"0.5 s after an empty retained publish (clear) on node1, new sub on node3 gets "
             f"{[(x[2], 'retain=%d' % x[4]) for x in drain(s, 1, 2)]}")
    close(s)


def test_c():
    d = uuid.uuid4()
    s = client(1); suback(s, topic(d, "status"))
    w, sp, rc = raw_connect(2, cid(3), will=(topic(d, "status"), b"offline"))
    time.sleep(0.3); t = now(); w.close()
    m = drain(s, 1, 10)
    out("c", f"will (QoS1, retain) after TCP close without DISCONNECT: "
             + (f"{m[0][2]} qos={m[0][3]} after {1000 * (m[0][0] - t):.0f} ms" if m else "NOT delivered"))
    time.sleep(0.5); n = client(3); suback(n, topic(d, "status")); m = drain(n, 1, 3)
    out("c", f"new sub on node3 gets retained will: {[(x[2], x[4]) for x in m]}")
    close(n)
    w, sp, rc = raw_connect(2, cid(3), ka=2, will=(topic(d, "status"), b"silent")); t = now()
    m = drain(s, 1, 15)
    out("c", f"keep-alive 2 s, client silent (no FIN): will after "
             + (f"{m[0][0] - t:.1f} s" if m else "NEVER (15 s)"))
    w.close()
    g = client(2, cid(3)); time.sleep(0.2); g.disconnect(); g.loop_stop()
    out("c", f"clean DISCONNECT: will messages received {len(drain(s, 1, 2))} (expected 0)")
    close(s)


def test_d():
    d = uuid.uuid4()
    c = client(1, cid(4), clean=True); close(c)  # start from no session
    c = client(1, cid(4), clean=False); sp0 = c.sp; suback(c, topic(d, "telemetry")); close(c)
    publish(3, [(topic(d, "telemetry"), b"q%d" % i, False) for i in range(5)])
    t = now(); c = client(2, cid(4), clean=False); m = drain(c, 5, 10)
    out("d", f"first CONNECT sp={sp0}; reconnect on node2 clean=false: session_present={c.sp}, "
             f"got {[x[2].decode() for x in m]} within {1000 * (m[-1][0] - t) if m else 0:.0f} ms")
    publish(3, [(topic(d, "telemetry"), b"live", False)])
    out("d", f"subscription live on node2 afterwards: {[x[2] for x in drain(c, 1, 5)]}")
    close(c); c = client(2, cid(4), clean=True); close(c)


def test_e():
    for a_node, b_node in ((1, 2), (1, 1)):
        a = client(a_node, cid(5), clean=False); suback(a, topic(uuid.uuid4(), "telemetry"))
        time.sleep(0.3); t = now()
        b = client(b_node, cid(5), clean=False); tb = now()
        a.gone.wait(10); time.sleep(1)
        out("e", f"same client id node{a_node} then node{b_node}: new CONNACK after {1000 * (tb - t):.0f} ms "
                 f"(sp={b.sp}); old closed={a.gone.is_set()} "
                 f"after {1000 * ((a.gone_at or t) - t):.0f} ms; new still connected={b.is_connected()}")
        close(a, b)
    time.sleep(1.2)
    a = client(1, cid(5)); b = client(2, cid(5)); t = now()
    r = client(1, cid(5), wait=False); r.ready.wait(5); r.gone.wait(3)
    out("e", f"old client reconnects within 1 s (flapping): CONNACK={r.ready.is_set()} closed={r.gone.is_set()} "
             f"after {1000 * ((r.gone_at or now()) - t):.0f} ms")
    close(a, b, r)
    d = uuid.uuid4(); s = client(3); suback(s, topic(d, "status"))
    for a_node, b_node in ((1, 1), (1, 2)):
        time.sleep(1.5)
        a = raw_connect(a_node, cid(5), will=(topic(d, "status"), b"offline-%d" % b_node))[0]
        time.sleep(0.3); b = raw_connect(b_node, cid(5))[0]
        m = drain(s, 1, 3)
        out("e", f"takeover node{a_node}->node{b_node}: old client's will fired: {[x[2] for x in m]}")
        a.close(); b.close()
    close(s); time.sleep(1.5)
    c = client(1, cid(5), clean=True); close(c)


def leaders(node):
    import json, urllib.request
    j = json.load(urllib.request.urlopen(f"http://127.0.0.1:{BASE + 29 + node}/jsz?streams=true&consumers=true"))
    st = j["account_details"][0]["stream_detail"]
    return f"meta={j['meta_cluster']['leader']} " + " ".join(
        f"{x['name']}={x['cluster']['leader']}" for x in st)


def nats_request(node, subject):
    """A request over the NATS protocol (client port) as the nephrocare user; returns the reply."""
    s = socket.create_connection(("127.0.0.1", BASE + 9 + node), timeout=5); s.recv(4096)
    s.sendall(b'CONNECT {"user":"%s","pass":"%s","verbose":false}\r\nSUB _INBOX.p 1\r\n'
              b"PUB %s _INBOX.p 0\r\n\r\nPING\r\n" % (USER.encode(), PW.encode(), subject.encode()))
    buf = b""
    while b"MSG " not in buf or not buf.endswith(b"\r\n"):
        buf += s.recv(65536)
    s.close()
    return buf


def lead_on(v):
    """Step stream and consumer leaders down until nc<v> leads all of them (best effort)."""
    import json, urllib.request
    for _ in range(30):
        j = json.load(urllib.request.urlopen(f"http://127.0.0.1:{BASE + 29 + v}/jsz?streams=true&consumers=true"))
        todo = []
        for st in j["account_details"][0]["stream_detail"]:
            if st["cluster"]["leader"] != f"nc{v}":
                todo.append(f"STREAM.LEADER.STEPDOWN.{st['name']}")
            todo += [f"CONSUMER.LEADER.STEPDOWN.{st['name']}.{co['name']}"
                     for co in st.get("consumer_detail") or [] if co["cluster"]["leader"] != f"nc{v}"]
        if not todo:
            return True
        for t in todo:
            nats_request(v % 3 + 1, "$JS.API." + t)
        time.sleep(1.5)
    return False


def test_f():
    """kill -9 node V (env PROBE_VICTIM, default 1); PROBE_LEAD=1 first moves all leaders to it."""
    v = int(os.environ.get("PROBE_VICTIM", "1")); o = [n for n in (1, 2, 3) if n != v]
    d = uuid.uuid4()
    c = client(v, cid(6), clean=False); suback(c, topic(d, "telemetry"))
    publish(o[1], [(topic(d, "telemetry"), b"before", False)]); drain(c, 1, 5)
    if os.environ.get("PROBE_LEAD"):
        out("f", f"all stream/consumer leaders moved to nc{v}: {lead_on(v)}")
    out("f", f"leaders before: {leaders(o[0])}")
    t0 = now(); cluster("kill9", DIR, str(v))
    log, acked, n = [], None, 0
    while now() - t0 < 60 and not acked:
        n += 1; t = now(); node = o[n % 2]
        try:
            publish(node, [(topic(d, "telemetry"), b"after%d" % n, False)], timeout=1); acked = now()
            log.append(f"+{t - t0:.1f}s node{node} ok")
        except Exception as e:
            log.append(f"+{t - t0:.1f}s node{node} {e}")
    out("f", f"kill -9 node{v}, QoS1 publish attempts (1 s timeouts): {', '.join(log)}")
    log = []
    while now() - t0 < 60 and not (log and log[-1].endswith("[1]")):
        t = now()
        try:
            s = client(o[0], timeout=2); rc = suback(s, topic(uuid.uuid4(), "x"), timeout=5); close(s)
            log.append(f"+{t - t0:.1f}s SUBACK {rc}")
        except Exception as e:
            log.append(f"+{t - t0:.1f}s {e}")
    out("f", f"new QoS1 SUBSCRIBE on node{o[0]}: {', '.join(log)}; leaders after: {leaders(o[0])}")
    publish(o[1], [(topic(d, "telemetry"), b"q%d" % i, False) for i in range(3)])
    t = now(); r = client(o[0], cid(6), clean=False); ta = now(); m = drain(r, n + 3, 5)
    out("f", f"reconnect on node{o[0]} at +{t - t0:.1f}s: CONNACK in {1000 * (ta - t):.0f} ms, "
             f"session_present={r.sp}, got {[x[2].decode() for x in m]} (after<k> without PUBACK may be lost)")
    publish(o[1], [(topic(d, "telemetry"), b"live", False)])
    out("f", f"subscription live on node{o[0]}: {[x[2] for x in drain(r, 1, 5)]}")
    close(r)
    t = now(); cluster("restart", DIR, str(v))
    out("f", f"node{v} restarted and ready in {now() - t:.1f} s; leaders: {leaders(v)}")
    r = client(v, cid(6), clean=True); close(r)


def test_g():
    for ka in (65535, 0):
        s, sp, rc = raw_connect(1, str(uuid.uuid4()), ka=ka)
        s.sendall(b"\xc0\x00"); s.settimeout(5); pr = s.recv(2)
        out("g", f"keep-alive {ka}: CONNACK code {rc}, PINGRESP {pr.hex()}"); s.close()


def test_h():
    d = uuid.uuid4()
    s = client(1, manual_ack=True); suback(s, topic(d, "telemetry"))
    publish(2, [(topic(d, "telemetry"), b"noack", False)])
    m = drain(s, 2, 40)
    out("h", "un-PUBACKed delivery: " + ", ".join(f"dup={x[5]} mid={x[6]} at +{x[0] - m[0][0]:.1f} s" for x in m))
    for x in m:
        s.ack(x[6], 1)
    drain(s, 5, 1)
    publish(2, [(topic(d, "telemetry"), b"m%d" % i, False) for i in range(3)])
    m = drain(s, 3, 5)
    for x in reversed(m):  # PUBACK in reverse order
        s.ack(x[6], 1)
    extra = drain(s, 5, 13)
    out("h", f"3 deliveries acked in reverse order: redelivered within 13 s: {len(extra)}, "
             f"still connected={s.is_connected()}")
    close(s)
    c = client(1, cid(8), clean=True); close(c)
    c = client(1, cid(8), clean=False, manual_ack=True); suback(c, topic(d, "telemetry"))
    publish(2, [(topic(d, "telemetry"), b"unacked", False)]); drain(c, 1, 5); close(c)
    t = now(); c = client(2, cid(8), clean=False, manual_ack=True); m = drain(c, 1, 15)
    out("h", f"delivered, not PUBACKed, DISCONNECT, reconnect (node2): redelivered "
             + (f"dup={m[0][5]} after {m[0][0] - t:.1f} s" if m else "not within 15 s"))
    for x in m:
        c.ack(x[6], 1)
    close(c); c = client(1, cid(8), clean=True); close(c)


def test_i():
    d = uuid.uuid4()
    s = client(1); suback(s, topic(d, "telemetry"))
    for size in (65536, 1000000, 1048576, 1100000):
        try:
            dt = publish(2, [(topic(d, "telemetry"), os.urandom(size), False)], timeout=5)
            m = drain(s, 1, 5)
            out("i", f"payload {size} B: PUBACK in {1000 * dt:.0f} ms, delivered "
                     f"{'%d B' % len(m[0][2]) if m else 'NO'}")
        except Exception as e:
            out("i", f"payload {size} B: {e}")
    close(s)


def test_j():
    for pw, lvl in (("wrong", 4), (PW, 5)):
        s, sp, rc = raw_connect(1, str(uuid.uuid4()), pw=pw, level=lvl)
        out("j", f"CONNECT level {lvl} password {'wrong' if pw != PW else 'right'}: CONNACK code {rc}"); s.close()


for letter in TESTS:
    globals()[f"test_{letter}"]()
