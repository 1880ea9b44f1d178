//! The AsyncAPI 3.0 document of the MQTT contract (served at `/api/asyncapi.json`, printed
//! by `nephrocare asyncapi`). Nothing in it is written by hand as JSON:
//!
//! - one channel per [`TopicKind`], its address from [`TopicKind::template`], its
//!   description, directions and messages from the exhaustive `match` in [`channels`] (a
//!   topic kind added to the broker without being described there does not compile);
//! - QoS and retain of every operation from [`Publisher::contract`], the rule the broker
//!   applies when it publishes and delivers;
//! - every payload schema from the Rust type the service serializes or parses (serde
//!   structs deriving `schemars::JsonSchema`, so the schema follows the same serde
//!   attributes as the bytes), with ranges from the constants the validators use.
//!
//! Operations are from **the service's point of view** (AsyncAPI 3: the application the
//! document describes): `receive` is what clients (machines, apps) publish and the service
//! consumes; `send` is what the service publishes (or relays once stored) and clients
//! subscribe to. A client's own view is the mirror image.

mod channels;

use std::collections::BTreeMap;

use nc_messaging::topic::TopicKind;
use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use channels::{Flow, Form, Msg, Party};

/// The AsyncAPI version the document follows.
pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// The MQTT bindings version of its bindings.
const MQTT_BINDING: &str = "0.2.0";
/// Where the schemas live in the document.
const SCHEMAS: &str = "/components/schemas";

/// The AsyncAPI document, as served at `/api/asyncapi.json`.
pub fn asyncapi_json() -> String {
    serde_json::to_string_pretty(&document()).expect("the document serializes")
}

/// The AsyncAPI document.
pub fn document() -> Value {
    // Payloads the service builds are described as serialized, payloads clients publish (and
    // those relayed as sent) as parsed: serde may differ (optional fields, defaults).
    let generator = |settings: SchemaSettings| settings.with(|s| s.definitions_path = SCHEMAS.into()).into_generator();
    let mut sent = generator(SchemaSettings::draft07().for_serialize());
    let mut received = generator(SchemaSettings::draft07().for_deserialize());

    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = BTreeMap::<&str, Value>::new();
    for kind in TopicKind::all() {
        let doc = channels::channel(kind);
        let (qos, retain) = nc_messaging::publish::contract(&kind.example());
        let qos = qos.level();
        let mut channel_messages = Map::new();
        for (action, flow) in [("receive", &doc.inbound), ("send", &doc.outbound)] {
            let Some(flow) = flow else { continue };
            for m in &flow.messages {
                let generator = match m.form {
                    Form::Serialized => &mut sent,
                    Form::Parsed => &mut received,
                };
                let described = message(m, generator);
                if let Some(before) = messages.insert(m.name, described.clone()) {
                    assert_eq!(before, described, "message {} is described twice, differently", m.name);
                }
                channel_messages.insert(m.name.into(), json!({"$ref": format!("#/components/messages/{}", m.name)}));
            }
            let expires = action == "send" && nc_messaging::publish::may_expire(&kind.example());
            operations.insert(operation_id(action, doc.id), operation(action, doc.id, flow, qos, retain, expires));
        }
        let parameters: Map<String, Value> = kind
            .parameters()
            .iter()
            .map(|p| ((*p).to_owned(), json!({"$ref": format!("#/components/parameters/{p}")})))
            .collect();
        channels.insert(
            doc.id.into(),
            json!({
                "address": kind.template(),
                "title": doc.title,
                "description": doc.description,
                "parameters": parameters,
                "messages": channel_messages,
            }),
        );
    }

    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:nephrocare:mqtt:v1",
        "info": {
            "title": "Nephrocare MQTT contract",
            "version": env!("CARGO_PKG_VERSION"),
            "description": INFO,
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": servers(),
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas(sent, received),
            "messages": messages,
            "parameters": parameters(),
            "securitySchemes": {
                "device": {"type": "userPassword", "description": DEVICE_LOGIN},
                "person": {"type": "userPassword", "description": PERSON_LOGIN},
            },
        },
    })
}

fn operation_id(action: &str, channel: &str) -> String {
    let mut id = action.to_owned();
    let mut chars = channel.chars();
    id.extend(chars.next().map(|c| c.to_ascii_uppercase()));
    id.extend(chars);
    id
}

fn operation(action: &str, channel: &str, flow: &Flow, qos: u8, retain: bool, expires: bool) -> Value {
    let messages: Vec<Value> =
        flow.messages.iter().map(|m| json!({"$ref": format!("#/channels/{channel}/messages/{}", m.name)})).collect();
    let security: Vec<Value> = flow.parties.iter().map(|p| json!({"$ref": security_ref(*p)})).collect();
    let mut mqtt = json!({"qos": qos, "retain": retain, "bindingVersion": MQTT_BINDING});
    if expires {
        mqtt["messageExpiryInterval"] = json!({
            "type": "integer", "minimum": 1, "maximum": 900,
            "description": "MQTT 5 only: the seconds left until the payload's `expiresAt`; a message past it is not delivered.",
        });
    }
    json!({
        "action": action,
        "channel": {"$ref": format!("#/channels/{channel}")},
        "summary": flow.summary,
        "messages": messages,
        "security": security,
        "bindings": {"mqtt": mqtt},
    })
}

fn security_ref(party: Party) -> &'static str {
    match party {
        Party::Device => "#/components/securitySchemes/device",
        Party::Person => "#/components/securitySchemes/person",
    }
}

fn message(m: &Msg, generator: &mut SchemaGenerator) -> Value {
    json!({
        "name": m.name,
        "title": m.title,
        "summary": m.summary,
        "contentType": "application/json",
        "payload": (m.payload)(generator),
    })
}

/// The definitions both generators collected. A type described by both must be described
/// alike (a type whose serialized and parsed forms differ would need two names).
fn schemas(mut sent: SchemaGenerator, mut received: SchemaGenerator) -> Map<String, Value> {
    let mut all = sent.take_definitions(true);
    for (name, schema) in received.take_definitions(true) {
        if let Some(before) = all.get(&name) {
            assert_eq!(before, &schema, "schema {name} differs between what is sent and what is received");
        }
        all.insert(name, schema);
    }
    all.sort_keys();
    all
}

fn parameters() -> Value {
    let id = |what: &str| json!({"description": format!("The {what} id: a canonical (lower-case) UUID.")});
    json!({
        "hospital": {"description": "The hospital id of the device, patient, room or user: a canonical (lower-case) UUID."},
        "device": id("device"),
        "patient": {"description": "The patient record id (`patientId` in `GET /api/users/profile`): a canonical (lower-case) UUID."},
        "room": id("chat room"),
        "user": id("user"),
    })
}

/// The listeners, with their default addresses (`mqtt.addr`, `mqtt.ws_addr`).
fn servers() -> Value {
    let split = |addr: &str| {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        json!({
            "host": {"default": host, "description": "The service's host name or address."},
            "port": {"default": port, "description": "The listener's port."},
        })
    };
    let (tcp, ws) = (split(nc_broker::DEFAULT_MQTT_ADDR), split(nc_broker::DEFAULT_MQTT_WS_ADDR));
    let security = json!([{"$ref": security_ref(Party::Device)}, {"$ref": security_ref(Party::Person)}]);
    let max = nc_broker::BrokerSettings::default().max_packet_size;
    let bindings = json!({"mqtt": {"maximumPacketSize": max, "bindingVersion": MQTT_BINDING}});
    let server = |protocol: &str, version: &str, variables: &Value, pathname: Option<&str>, description: &str| {
        let mut s = json!({
            "host": "{host}:{port}",
            "protocol": protocol,
            "protocolVersion": version,
            "description": description,
            "variables": variables,
            "security": security,
            "bindings": bindings,
        });
        if let Some(p) = pathname {
            s["pathname"] = p.into();
        }
        s
    };
    let tls = "when the service has a certificate (`NEPHROCARE_MQTT_TLS_CERT`/`_KEY`), instead of the plain listener";
    let mut servers = Map::new();
    // Both levels on every listener, chosen per connection by the CONNECT.
    for (version, suffix) in [("3.1.1", ""), ("5.0", "5")] {
        let level = format!("MQTT {version}");
        let both = "the same listener serves MQTT 3.1.1 and 5.0, chosen by each CONNECT";
        servers.insert(
            format!("mqtt{suffix}"),
            server("mqtt", version, &tcp, None, &format!("{level} over TCP (`NEPHROCARE_MQTT_ADDR`); {both}.")),
        );
        servers.insert(
            format!("mqtts{suffix}"),
            server("secure-mqtt", version, &tcp, None, &format!("{level} over TLS, {tls}.")),
        );
        servers.insert(
            format!("ws{suffix}"),
            server(
                "ws",
                version,
                &ws,
                Some(nc_broker::WS_PATH),
                &format!(
                    "{level} over WebSocket (`NEPHROCARE_MQTT_WS_ADDR`): subprotocol `mqtt`, binary frames; {both}."
                ),
            ),
        );
        servers.insert(
            format!("wss{suffix}"),
            server(
                "wss",
                version,
                &ws,
                Some(nc_broker::WS_PATH),
                &format!("{level} over WebSocket over TLS (subprotocol `mqtt`), {tls}."),
            ),
        );
    }
    Value::Object(servers)
}

const INFO: &str = "The topics, payloads, QoS and retain flags of Nephrocare's embedded MQTT broker, \
generated from the broker's typed topics and the Rust payload types (so it cannot drift from the code). \
The rules behind it (who may subscribe to what, persistent sessions, limits, CONNACK codes) are in \
topics.md.\n\n\
**Point of view: the service.** `receive` operations are what machines and apps publish and the \
service consumes; `send` operations are what the service publishes (or relays once stored) and \
clients subscribe to. Each operation's `security` names who may take part: `device` (a dialysis \
machine) or `person` (an app user).\n\n\
All payloads are JSON objects with `\"v\": 1`; times are RFC 3339 in UTC; ids are canonical UUIDs. \
QoS 2 is not offered. A subscription may end in `+` or `#` only directly below one device \
(`nc/v1/h/{hospital}/d/{device}/#`), patient (`…/p/{patient}/#`) or room (`…/chat/{room}/#`), and \
only if the subscriber may receive every topic it matches. A patient receives their own treatment \
only, on `…/p/{patient}/…`, never a machine's channels.\n\n\
**MQTT 3.1.1 and 5.0** are both served, on every listener, chosen by each CONNECT. In 3.1.1 a refused \
filter gets SUBACK 0x80 and a PUBLISH on a topic the client may not publish to ends the connection. \
In 5.0 every refusal carries its reason code and a reason string, and a refused PUBLISH is answered \
in its PUBACK (0x87 not authorized, 0x90 topic name invalid, 0x99 payload format invalid, 0x83 a \
reading's seq taken, 0x97 rate limited, 0x80 otherwise; user properties `code` and `field`) while the \
connection stays; SUBACK 0x87, 0x8F, 0x97, 0x9E, 0x80 per filter; sessions expire (Session Expiry \
Interval, bounded); notifications and alarm events carry `expiresAt`, sent as the Message Expiry \
Interval and never delivered after it; `$share/{group}/{filter}` shared subscriptions for people; \
a PUBLISH naming a Response Topic (one's own `errors` or `notifications`) is answered there with a \
`response` and its Correlation Data. \
topics.md, \"MQTT 5\", lists every reason code the server sends.";

const DEVICE_LOGIN: &str = "A dialysis machine: username = the device id (UUID), password = the device \
secret (shown once when the device is registered or its secret rotated), client id = exactly the \
device id. Its last will is always its retained offline status (published by the broker with several \
nodes; with one node the service announces every end of the connection itself).";

const PERSON_LOGIN: &str = "A person (app): username = the user id (UUID), password = a current access \
token (JWT) from `POST /api/auth/login`; the connection is closed when the token expires. Client id = \
the user id, or the user id + `-` + 1 to 23 letters/digits (one per app install). A will may only be \
a typing topic of the person's rooms.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_kind_has_a_channel_and_every_reference_resolves() {
        let doc = document();
        assert_eq!(doc["channels"].as_object().unwrap().len(), TopicKind::all().len());
        for kind in TopicKind::all() {
            let found = doc["channels"].as_object().unwrap().values().any(|c| c["address"] == kind.template());
            assert!(found, "no channel for {}", kind.template());
        }
        // Every `$ref` names something in the document.
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r);
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external reference {r}"));
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn qos_and_retain_follow_the_publisher() {
        let doc = document();
        let op = |id: &str| doc["operations"][id]["bindings"]["mqtt"].clone();
        assert_eq!(op("sendDeviceStatus"), json!({"qos": 1, "retain": true, "bindingVersion": MQTT_BINDING}));
        assert_eq!(op("receiveRoomTyping")["qos"], 0);
        assert_eq!(op("receiveDeviceTelemetry")["qos"], 1);
        assert!(doc["operations"]["receiveDeviceStatus"].is_null(), "only the service publishes status");
    }

    /// The document lets clients receive (a `send` operation of the service) exactly on the
    /// topics the edge lets them subscribe to (`TopicKind::subscribable`, which topics.md's
    /// "may subscribe" column follows: a test in `nc_messaging::topic`).
    #[test]
    fn received_channels_are_exactly_the_subscribable_ones() {
        for kind in TopicKind::all() {
            let doc = channels::channel(kind);
            assert_eq!(doc.outbound.is_some(), kind.subscribable(), "{}", kind.template());
        }
    }
}
