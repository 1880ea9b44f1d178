//! Deliveries from the broker to a person, as a raw MQTT client sees them: the broker
//! (rumqttd) takes a connection's PUBACKs only in the order it sent the PUBLISHes and drops
//! the connection otherwise, so the ones the edge gives itself (for deliveries its gate
//! withholds) must wait for the client's earlier ones.

use rumqttc::mqttbytes::v4::{Connect, Login, PubAck};
use rumqttc::{Packet, QoS};
use serde_json::json;

use crate::sessions::refreshed;
use crate::support::{alerts_published, eventually, grant, now, Got, RawClient, TestApp, World, GRANTED, QUIET, WAIT};

/// `who`'s persistent session over a raw client, with `token`.
async fn persistent_raw(w: &World, who: &str, token: &str) -> RawClient {
    let mut connect = Connect::new(format!("{}-raw", w.id(who)));
    connect.keep_alive = 30;
    connect.clean_session = false;
    connect.login = Some(Login::new(w.id(who), token));
    RawClient::open(w.mqtt(), connect).await.expect("connects")
}

/// `device` reports danger (an alert); the machine stays connected (else its going offline
/// is an alert too).
async fn danger(w: &World, device: &str) -> crate::support::EventClient {
    let mut machine = w.connect(device, "").await;
    let reading = json!({"v": 1, "seq": 1, "ts": now(), "systemStatus": "danger", "heartRate": 70}).to_string();
    machine.publish_acked(&w.topic(device, "telemetry"), reading).await;
    // The alert is stored, and its notifications handed to the broker.
    eventually(&format!("an alert for {device}, notified"), WAIT, || async {
        alerts_published(w, device).await.then_some(())
    })
    .await;
    machine
}

#[tokio::test]
async fn a_withheld_delivery_is_acknowledged_after_the_clients_earlier_ones() {
    let w = World::new(TestApp::spawn().await).await;
    // tec2 looks after d2 and holds a hand-over of d1.
    let uuid = |k: &str| uuid::Uuid::parse_str(w.id(k)).unwrap();
    w.app.db.assign(uuid("d2"), uuid("tec2")).await;
    let id = grant(&w).await;
    let mut refresh = w.refresh["tec2"].clone();
    let notes = w.fill("nc/v1/h/{ha}/u/{tec2}/notifications");

    let token = refreshed(&w, &mut refresh).await;
    let mut c = persistent_raw(&w, "tec2", &token).await;
    assert_eq!(c.subscribe(&[(notes.clone(), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    c.disconnect().await;

    // While tec2 is away: an alert on d2 (still tec2's), then one on d1, whose hand-over
    // then ends. The session's queue holds both notifications, in that order.
    let _d2 = danger(&w, "d2").await;
    let _d1 = danger(&w, "d1").await;
    let r = w.as_user("tec").delete(&format!("/api/devices/temporary-access/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);

    let token = refreshed(&w, &mut refresh).await;
    let mut c = persistent_raw(&w, "tec2", &token).await;
    let first = match c.recv(WAIT).await {
        Got::Packet(Packet::Publish(p)) => p,
        other => panic!("expected d2's alert notification, got {other:?}"),
    };
    assert_eq!(first.topic, notes);
    assert_eq!(first.qos, QoS::AtLeastOnce);
    let note: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(note["alert"]["deviceId"], w.id("d2"), "{note}");
    // The client takes its time to acknowledge; meanwhile d1's notification is withheld by
    // the gate. Its acknowledgement must not overtake the client's: the connection stays.
    match c.recv(QUIET * 2).await {
        Got::Timeout => {}
        Got::Packet(Packet::Publish(p)) => panic!("nothing else may arrive: {}", String::from_utf8_lossy(&p.payload)),
        other => panic!("nothing else may arrive, and the connection must stay: {other:?}"),
    }
    c.send(Packet::PubAck(PubAck::new(first.pkid))).await.unwrap();
    c.send(Packet::PingReq).await.unwrap();
    match c.recv(WAIT).await {
        Got::Packet(Packet::PingResp) => {}
        other => panic!("the connection must stay after the acknowledgement: {other:?}"),
    }
    // Both acknowledgements reached the broker: a new connection of the session gets neither
    // notification again.
    c.disconnect().await;
    let token = refreshed(&w, &mut refresh).await;
    let mut c = persistent_raw(&w, "tec2", &token).await;
    match c.recv(QUIET * 2).await {
        Got::Timeout => {}
        other => panic!("nothing is delivered again: {other:?}"),
    }
    w.app.stop().await;
}
