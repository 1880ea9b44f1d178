"""An MQTT 5 client played by paho-mqtt (Eclipse Paho, from PyPI), driven over stdin/stdout.

Commands, one JSON object per line on stdin:
  {"op": "connect", "host", "port", "client_id", "username", "password", "clean_start",
   "session_expiry", "keepalive", "transport": "tcp"|"websockets", "receive_maximum",
   "request_problem_info"}
  {"op": "subscribe", "filters": [[path, qos], ...]}
  {"op": "publish", "topic", "payload", "qos", "topic_alias", "user_properties": [[k, v]],
   "response_topic", "correlation_data"}
  {"op": "disconnect", "reason": int}
  {"op": "quit"}
Events, one JSON object per line on stdout: connack, puback, suback, unsuback, message,
disconnect, error, and refused_locally (what paho itself will not send: a malformed topic or
filter). Each names what the server sent, reason codes as numbers, and the
properties paho read (reason string, user properties, message expiry, ...).
"""

import json
import os
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

out_lock = threading.Lock()


def emit(event, **fields):
    with out_lock:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()


def props(p):
    """The properties paho read, as plain JSON."""
    if p is None:
        return {}
    out = {}
    for name in ("ReasonString", "MessageExpiryInterval", "SessionExpiryInterval", "ReceiveMaximum",
                 "MaximumPacketSize", "AssignedClientIdentifier", "TopicAliasMaximum", "ServerKeepAlive",
                 "SharedSubscriptionAvailable", "SubscriptionIdentifierAvailable", "MaximumQoS",
                 "WildcardSubscriptionAvailable"):
        if hasattr(p, name):
            out[name] = getattr(p, name)
    if hasattr(p, "UserProperty"):
        out["UserProperty"] = [list(kv) for kv in p.UserProperty]
    if hasattr(p, "CorrelationData"):
        out["CorrelationData"] = bytes(p.CorrelationData).decode("utf-8", "replace")
    if hasattr(p, "ResponseTopic"):
        out["ResponseTopic"] = p.ResponseTopic
    return out


def rc(code):
    return code.value if hasattr(code, "value") else int(code)


client = None


def on_connect(c, userdata, flags, reason_code, properties):
    emit("connack", rc=rc(reason_code), session_present=bool(flags.session_present), props=props(properties))


def on_publish(c, userdata, mid, reason_code, properties):
    emit("puback", mid=mid, rc=rc(reason_code), props=props(properties))


def on_subscribe(c, userdata, mid, reason_codes, properties):
    emit("suback", mid=mid, codes=[rc(r) for r in reason_codes], props=props(properties))


def on_unsubscribe(c, userdata, mid, reason_codes, properties):
    emit("unsuback", mid=mid, codes=[rc(r) for r in reason_codes])


def on_message(c, userdata, message):
    emit("message", topic=message.topic, payload=message.payload.decode("utf-8", "replace"), qos=message.qos,
         retain=bool(message.retain), props=props(getattr(message, "properties", None)))


def on_disconnect(c, userdata, flags, reason_code, properties):
    emit("disconnect", rc=rc(reason_code), props=props(properties))


def connect(cmd):
    global client
    transport = cmd.get("transport", "tcp")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cmd.get("client_id", ""),
                         protocol=mqtt.MQTTv5, transport=transport, reconnect_on_failure=False)
    if transport == "websockets":
        client.ws_set_options(path="/mqtt")
    if os.environ.get("PAHO_DEBUG"):
        client.on_log = lambda c, userdata, level, buf: sys.stderr.write(f"paho {cmd.get('client_id')}: {buf}\n")
    client.username_pw_set(cmd["username"], cmd["password"])
    client.on_connect, client.on_publish, client.on_subscribe = on_connect, on_publish, on_subscribe
    client.on_unsubscribe, client.on_message, client.on_disconnect = on_unsubscribe, on_message, on_disconnect
    p = Properties(PacketTypes.CONNECT)
    if cmd.get("session_expiry") is not None:
        p.SessionExpiryInterval = cmd["session_expiry"]
    if cmd.get("receive_maximum") is not None:
        p.ReceiveMaximum = cmd["receive_maximum"]
    if cmd.get("request_problem_info") is not None:
        p.RequestProblemInformation = cmd["request_problem_info"]
    if cmd.get("topic_alias_maximum") is not None:
        p.TopicAliasMaximum = cmd["topic_alias_maximum"]
    client.on_connect_fail = lambda c, userdata: emit("error", op="connect", message="connection failed")
    client.connect_async(cmd.get("host", "127.0.0.1"), cmd["port"], keepalive=cmd.get("keepalive", 30),
                         clean_start=cmd.get("clean_start", True), properties=p)
    client.loop_start()


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "connect":
                connect(cmd)
            elif op == "subscribe":
                result, mid = client.subscribe([(f, q) for f, q in cmd["filters"]])
                emit("subscribing", mid=mid, result=result)
            elif op == "unsubscribe":
                result, mid = client.unsubscribe(cmd["filters"])
                emit("unsubscribing", mid=mid, result=result)
            elif op == "publish":
                p = None
                if cmd.get("topic_alias") is not None or cmd.get("user_properties") or cmd.get("response_topic"):
                    p = Properties(PacketTypes.PUBLISH)
                    if cmd.get("topic_alias") is not None:
                        p.TopicAlias = cmd["topic_alias"]
                    if cmd.get("response_topic"):
                        p.ResponseTopic = cmd["response_topic"]
                        p.CorrelationData = cmd.get("correlation_data", "").encode("utf-8")
                    for k, v in cmd.get("user_properties") or []:
                        p.UserProperty = (k, v)
                info = client.publish(cmd["topic"], cmd["payload"], qos=cmd.get("qos", 1), properties=p)
                emit("publishing", mid=info.mid, result=info.rc)
            elif op == "disconnect":
                client.disconnect(reasoncode=None)
                client.loop_stop()
            elif op == "quit":
                break
        except ValueError as e:  # paho will not send it (a malformed topic or filter)
            emit("refused_locally", op=op, message=str(e))
        except Exception as e:  # told to the test, which fails on it
            emit("error", op=op, message=repr(e))
    if client is not None:
        client.loop_stop()


if __name__ == "__main__":
    main()
