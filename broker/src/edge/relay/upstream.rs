//! The session's link to the core: what the edge sends up (forwarded messages, its own
//! packet ids, acknowledgements of deliveries) and what comes down (deliveries through the
//! gate, answers); and, for a machine's session kept here, the edge's own deliveries.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use nc_access::Subject;
use rumqttc::{Packet, PubAck, Publish, QoS, UnsubAck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::acks;
use super::{End, Session};
use crate::acl::{self, AclError};
use crate::edge::v5::{self, Answer};
use crate::publisher::ServicePublisher;
use crate::sessions::Carried;
use crate::topic::{DeviceChannel, Topic};
use crate::Shared;

/// Waiting acknowledgements from the core, by the packet id the edge used upstream.
pub(super) enum Upstream {
    /// A publish the edge forwarded; its PUBACK is swallowed, or resolves `done`.
    Publish(Option<tokio::sync::oneshot::Sender<()>>),
    /// A SUBSCRIBE carrying some of the client's filters: `codes[i]` is `Some` for a filter
    /// refused here, `None` for one whose answer comes from the core (`forwarded`, in order).
    Subscribe {
        client_pkid: u16,
        codes: Vec<Option<Answer>>,
        forwarded: Vec<Carried>,
        /// What the refusals among `codes` say (MQTT 5 reason string).
        refused: Option<String>,
    },
    Unsubscribe {
        client_pkid: u16,
        /// How many filters it named (an MQTT 5 UNSUBACK answers each).
        filters: usize,
    },
    /// The edge's own UNSUBSCRIBE (subscriptions a resumed session may no longer hold).
    Internal,
}

fn too_many_in_flight(_: acks::Overflow) -> std::io::Error {
    std::io::Error::other("too many deliveries in flight without acknowledgement")
}

impl Session {
    /// A notification about a device's alert (e.g. queued while a persistent session was
    /// away) is delivered only if the person may still receive that device's alerts.
    pub(super) fn notification_allowed(
        &self,
        payload: &[u8],
    ) -> impl Future<Output = Result<bool, String>> + Send + 'static {
        let (shared, subject, payload) = (self.shared.clone(), self.identity.subject, payload.to_vec());
        notification_allowed(shared, subject, payload)
    }

    pub(super) fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && !self.upstream.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Queues a packet for the core; [`Session::flush_core`] writes it.
    pub(super) async fn send_core(&mut self, packet: &Packet) -> std::io::Result<()> {
        packet.write(&mut self.core_out, usize::MAX).map_err(std::io::Error::other)?;
        if self.core_out.len() >= 64 * 1024 {
            self.flush_core().await?;
        }
        Ok(())
    }

    /// Writes what is queued for the core, in one write.
    pub(super) async fn flush_core(&mut self) -> std::io::Result<()> {
        if !self.core_out.is_empty() {
            if let Some(up) = self.up_tx.as_mut() {
                up.write_all(&self.core_out).await?;
                self.core_written_at = tokio::time::Instant::now();
            }
            self.core_out.clear();
        }
        Ok(())
    }

    /// Forwards a publish to the core at the same QoS (QoS 1 with the edge's own packet
    /// id, whose PUBACK resolves `done`). A session kept here forwards through the
    /// service's publisher (in order: one connection).
    pub(super) async fn forward(
        &mut self,
        mut publish: Publish,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> std::io::Result<()> {
        if self.direct() {
            if let Err(e) = self.shared.publisher.forward(&publish).await {
                tracing::warn!(error = %e, topic = %publish.topic, "could not forward a committed message");
            }
            if let Some(d) = done {
                let _ = d.send(());
            }
            return Ok(());
        }
        publish.dup = false;
        if publish.qos == QoS::AtMostOnce {
            publish.pkid = 0;
            if let Some(d) = done {
                let _ = d.send(());
            }
        } else {
            publish.qos = QoS::AtLeastOnce;
            let pkid = self.allocate_pkid();
            publish.pkid = pkid;
            self.upstream.insert(pkid, Upstream::Publish(done));
        }
        self.send_core(&Packet::Publish(publish)).await
    }

    /// Settles a QoS 1 delivery of the core at the edge: its PUBACK goes out once every
    /// earlier delivery is acknowledged too.
    pub(super) async fn settle_delivery_here(&mut self, pkid: u16) -> std::io::Result<()> {
        let due = self.delivery_acks.settled_here(pkid).map_err(too_many_in_flight)?;
        self.ack_core(due).await
    }

    pub(super) async fn ack_core(&mut self, due: Vec<u16>) -> std::io::Result<()> {
        for pkid in due {
            self.send_core(&Packet::PubAck(PubAck { pkid })).await?;
        }
        Ok(())
    }

    /// A delivery from the core: relayed if the gate lets it through, settled here otherwise.
    pub(super) async fn core_publish(&mut self, mut p: Publish) -> std::io::Result<Option<End>> {
        let mut allowed = self.may_deliver(&p.topic);
        if let Some(Topic::Notifications { .. }) = allowed {
            match self.notification_allowed(&p.payload).await {
                Ok(true) => {}
                Ok(false) => allowed = None,
                Err(why) => {
                    // Unacknowledged, so a persistent session gets it again.
                    tracing::warn!(client = ?self.identity.subject, %why, "cannot decide whether a notification may be delivered; closing without acknowledging it");
                    return Ok(Some(End::StorageUnavailable));
                }
            }
        }
        // MQTT 5: a message past its relevance is not delivered; one with a relevance says
        // how long it has left (Message Expiry Interval).
        let mut expiry = None;
        if let (Some(topic), true) = (&allowed, self.v5.is_some()) {
            match v5_expiry(topic, &p.payload) {
                Expiry::None => {}
                Expiry::Left(secs) => expiry = Some(secs),
                Expiry::Past => {
                    tracing::debug!(client = ?self.identity.subject, topic = %p.topic, "expired message withheld");
                    allowed = None;
                }
            }
        }
        if let Some(topic) = allowed {
            // Delivered at most at the contract's QoS (typing indicators: 0), whatever
            // the subscription asked for; the core's QoS 1 flow is settled here.
            let relayed = if ServicePublisher::contract(&topic).0 == QoS::AtMostOnce && p.qos != QoS::AtMostOnce {
                self.settle_delivery_here(p.pkid).await?;
                p.qos = QoS::AtMostOnce;
                p.pkid = 0;
                false
            } else {
                p.qos != QoS::AtMostOnce
            };
            p.retain = p.retain && ServicePublisher::contract(&topic).1;
            let pkid = p.pkid;
            let sent = self.send_client_with(&Packet::Publish(p), v5::Extra { expiry, ..Default::default() }).await?;
            if relayed {
                if sent {
                    self.delivery_acks.relayed(pkid).map_err(too_many_in_flight)?;
                } else {
                    // Too large for the client: settled as if delivered (MQTT 5 §3.1.2.11.4).
                    self.settle_delivery_here(pkid).await?;
                }
            }
            return Ok(None);
        }
        // Not for this client under its current rights (e.g. queued for a session
        // before a right ended): acknowledged to the core, never delivered.
        tracing::debug!(client = ?self.identity.subject, topic = %p.topic, "delivery withheld by the gate");
        if p.qos != QoS::AtMostOnce {
            self.settle_delivery_here(p.pkid).await?;
        }
        Ok(None)
    }

    /// Handles a packet from the core. `Ok(Some(end))` ends the connection.
    pub(super) async fn on_core(&mut self, packet: Packet) -> std::io::Result<Option<End>> {
        let done = match packet {
            Packet::PubAck(ack) => {
                if let Some(Upstream::Publish(Some(done))) = self.upstream.remove(&ack.pkid) {
                    let _ = done.send(());
                }
                Ok(())
            }
            Packet::SubAck(ack) => {
                let Some(Upstream::Subscribe { client_pkid, codes, forwarded, refused }) =
                    self.upstream.remove(&ack.pkid)
                else {
                    return Ok(None);
                };
                let answers = ack.return_codes.iter().map(Answer::of_core).collect();
                self.subscribe_answered(client_pkid, codes, forwarded, answers, refused).await
            }
            Packet::UnsubAck(ack) => match self.upstream.remove(&ack.pkid) {
                Some(Upstream::Unsubscribe { client_pkid, filters }) => {
                    let ack = Packet::UnsubAck(UnsubAck { pkid: client_pkid });
                    self.send_client_with(&ack, v5::Extra { unsubscribed: filters, ..Default::default() })
                        .await
                        .map(|_| ())
                }
                _ => Ok(()),
            },
            Packet::Publish(p) => return self.core_publish(p).await,
            // The answer to the edge's own keep-alive ping stays here.
            Packet::PingResp if self.own_pings > 0 => {
                self.own_pings -= 1;
                Ok(())
            }
            // The rest of the QoS flows of deliveries pass through.
            p @ (Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) | Packet::PingResp) => {
                self.send_client(&p).await
            }
            other => {
                tracing::debug!(packet = ?other, "ignoring unexpected packet from the core");
                Ok(())
            }
        };
        done.map(|()| None)
    }

    /// Delivers the service's message on `topic` straight to a session kept here, if one
    /// of its subscriptions matches (at the QoS granted; not queued while it is away: a
    /// machine's errors answer its own publishes).
    pub(super) async fn deliver_here(&mut self, topic: &Topic, payload: Vec<u8>) -> std::io::Result<()> {
        let path = topic.to_string();
        let Some(granted) =
            self.subscriptions.values().filter(|h| h.filter.matches(topic)).map(|h| h.qos).max_by_key(|q| *q as u8)
        else {
            return Ok(());
        };
        let qos = if ServicePublisher::contract(topic).0 == QoS::AtMostOnce { QoS::AtMostOnce } else { granted };
        let mut publish = Publish::new(path, qos, payload);
        if qos != QoS::AtMostOnce {
            publish.pkid = self.allocate_pkid();
        }
        self.send_client(&Packet::Publish(publish)).await
    }
}

/// Whether a notification may reach `subject` now; `Err` when storage cannot say (after a
/// few tries over about a second). An alert notification reaches the device's care team
/// (who may receive its alerts topic) and, once the alert has escalated, the people of the
/// tiers it reached (the policy's `escalation_tier`).
async fn notification_allowed(shared: Arc<Shared>, subject: Subject, payload: Vec<u8>) -> Result<bool, String> {
    #[derive(serde::Deserialize)]
    struct Note {
        #[serde(rename = "type")]
        kind: Option<String>,
        alert: Option<AlertRef>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AlertRef {
        hospital_id: nc_domain::HospitalId,
        device_id: nc_domain::DeviceId,
        #[serde(default)]
        escalation_level: Option<u8>,
    }
    let Ok(note) = serde_json::from_slice::<Note>(&payload) else { return Ok(true) };
    let (Some("alert"), Some(a)) = (note.kind.as_deref(), note.alert) else { return Ok(true) };
    let topic = Topic::Device { hospital: a.hospital_id, device: a.device_id, channel: DeviceChannel::Alerts };
    let mut wait = Duration::from_millis(100);
    loop {
        let decided = match acl::may_receive(&shared.policy, &subject, &topic).await {
            Ok(_) => Ok(true),
            Err(AclError::Denied(_)) if subject.hospital() != a.hospital_id => Ok(false),
            Err(AclError::Denied(_)) => match shared.policy.escalation_tier(&subject, a.device_id).await {
                Ok(tier) => Ok(nc_access::policy::decide_alert_notice(tier, a.escalation_level.unwrap_or(1)).is_ok()),
                Err(e) => Err(e.to_string()),
            },
            Err(AclError::Lookup(e)) => Err(e),
        };
        match decided {
            Ok(allowed) => return Ok(allowed),
            Err(e) if wait > Duration::from_millis(800) => return Err(e),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

/// What a message's payload says of its relevance.
enum Expiry {
    /// Nothing: it does not expire.
    None,
    /// Relevant this many more seconds (at least 1).
    Left(u32),
    /// No longer relevant.
    Past,
}

/// The relevance of a message the contract lets carry one (`expiresAt` of notifications and
/// alarm events: topics.md, "Message expiry").
fn v5_expiry(topic: &Topic, payload: &[u8]) -> Expiry {
    #[derive(serde::Deserialize)]
    struct Relevance {
        #[serde(rename = "expiresAt")]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    if !nc_messaging::publish::may_expire(topic) {
        return Expiry::None;
    }
    let Some(at) = serde_json::from_slice::<Relevance>(payload).ok().and_then(|r| r.expires_at) else {
        return Expiry::None;
    };
    let left = (at - chrono::Utc::now()).num_milliseconds();
    if left <= 0 {
        Expiry::Past
    } else {
        Expiry::Left(u32::try_from((left + 999) / 1000).unwrap_or(u32::MAX))
    }
}

/// Reads from the core, when the session is in the core (otherwise never ready).
pub(super) async fn read_core(up_rx: &mut Option<crate::core::CoreRx>, buf: &mut BytesMut) -> std::io::Result<usize> {
    match up_rx {
        Some(rx) => rx.read_buf(buf).await,
        None => std::future::pending().await,
    }
}
