//! What clients publish, through one "hand to the service, then acknowledge" path: a
//! device's telemetry and session messages go to storage and are acknowledged (and
//! forwarded, also on the patient's own topic) only once committed; people's chat posts and
//! typing indicators go to the chat service, which stores or stamps them and publishes the
//! result itself. Acknowledgements follow publish order.

use std::time::Instant;

use futures_util::stream::StreamExt;
use nc_access::Subject;
use rumqttc::{Packet, PubAck, Publish, QoS};

use super::{AclError, End, Session, Settled};
use crate::acl;
use crate::edge::v5::{self, PubRefusal, Request};
use crate::payload::{kind, Response, ResponseOutcome, V1};
use crate::sink::{DeviceMessage, PersonMessage, SinkOutcome};
use crate::topic::{DeviceChannel, RoomChannel, Topic};

impl Session {
    pub(super) async fn client_publish(
        &mut self,
        publish: Publish,
        request: Option<Request>,
    ) -> std::io::Result<Option<End>> {
        self.limiter.until_ready().await;
        let subject = self.identity.subject;
        let topic = match Topic::parse(&publish.topic) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(client = ?subject, topic = %publish.topic, error = %e, "publish refused: not a contract topic");
                let why = format!("not a topic of the contract: {e}");
                return Ok(self.refuse(&publish, PubRefusal::TopicNameInvalid, why, request));
            }
        };
        if publish.qos == QoS::ExactlyOnce {
            tracing::warn!(client = ?subject, topic = %publish.topic, "publish refused: QoS 2 is not supported (use QoS 1)");
            return Ok(Some(End::Violation));
        }
        match acl::may_publish(&self.shared.policy, &subject, &topic).await {
            Ok(_) => {}
            Err(AclError::Denied(why)) => {
                tracing::warn!(client = ?subject, %topic, %why, "publish refused");
                return Ok(self.refuse(&publish, PubRefusal::NotAuthorized, why, request));
            }
            Err(AclError::Lookup(e)) => {
                tracing::error!(error = %e, "policy lookup failed; closing without acknowledging");
                return Ok(Some(End::StorageUnavailable));
            }
        }
        let pkid = (publish.qos == QoS::AtLeastOnce).then_some(publish.pkid);
        match (subject, topic) {
            (
                Subject::Device { id, hospital },
                Topic::Device { channel: channel @ (DeviceChannel::Telemetry | DeviceChannel::Session), .. },
            ) => {
                let message = DeviceMessage { device: id, hospital, channel, payload: publish.payload.clone() };
                // A session message is a sequence point: what the device sent before it is
                // settled first, and what it sends after waits until it is stored, so the
                // storage sees "start, readings, end" in the device's order.
                if channel == DeviceChannel::Session {
                    if let Some(end) = self.drain_pending().await? {
                        return Ok(Some(end));
                    }
                }
                let received = Some(Instant::now());
                let stored = self.shared.sink.submit(message);
                self.pending.push_back(Box::pin(async move {
                    let settled = match stored.await {
                        Ok(SinkOutcome::Committed { patient }) => {
                            let mut forward = publish;
                            // Never retained: a session or reading names a patient.
                            forward.retain = false;
                            Settled::Forward { pkid, publish: Some(forward), patient, received }
                        }
                        Ok(SinkOutcome::Rejected { error }) => Settled::Rejected { pkid, error, received },
                        Err(e) => Settled::Unavailable(e.0, received),
                    };
                    (settled, request)
                }));
                if channel == DeviceChannel::Session {
                    if let Some(end) = self.drain_pending().await? {
                        return Ok(Some(end));
                    }
                }
            }
            (Subject::User(sender), Topic::Room { channel: RoomChannel::Post | RoomChannel::Typing, .. }) => {
                // People's messages: the service stores (posts) or stamps (typing) them and
                // publishes what follows itself; the edge relays nothing as sent.
                let message = PersonMessage { sender, topic, payload: publish.payload.clone() };
                let handled = self.shared.people.submit(message);
                self.pending.push_back(Box::pin(async move {
                    let settled = match handled.await {
                        Ok(SinkOutcome::Committed { .. }) => {
                            Settled::Forward { pkid, publish: None, patient: None, received: None }
                        }
                        Ok(SinkOutcome::Rejected { error }) => Settled::Rejected { pkid, error, received: None },
                        Err(e) => Settled::Unavailable(e.0, None),
                    };
                    (settled, request)
                }));
            }
            _ => {
                tracing::warn!(client = ?subject, %topic, "publish refused: not a topic this client publishes on");
                let why = "not a topic this client publishes on".to_owned();
                return Ok(self.refuse(&publish, PubRefusal::NotAuthorized, why, request));
            }
        }
        Ok(None)
    }

    /// Refuses a publish before it reaches the service. MQTT 3.1.1 has no way to refuse one
    /// publish: the connection ends (logged). An MQTT 5 client is told in the PUBACK (in
    /// publish order) and stays connected; a refused QoS 0 publish is dropped.
    fn refuse(&mut self, publish: &Publish, refusal: PubRefusal, why: String, request: Option<Request>) -> Option<End> {
        if self.v5.is_none() {
            return Some(End::Violation);
        }
        let pkid = (publish.qos == QoS::AtLeastOnce).then_some(publish.pkid);
        self.pending.push_back(Box::pin(std::future::ready((Settled::Refused { pkid, refusal, why }, request))));
        None
    }

    /// Settles every waiting acknowledgement, in order.
    pub(super) async fn drain_pending(&mut self) -> std::io::Result<Option<End>> {
        while let Some(settled) = self.pending.next().await {
            if let Some(end) = self.settle(settled).await? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    /// Settles a waiting acknowledgement and, for a request, answers on its Response Topic.
    pub(super) async fn settle(
        &mut self,
        (settled, request): (Settled, Option<Request>),
    ) -> std::io::Result<Option<End>> {
        let answer = request.and_then(|r| Some((r, response_to(&settled)?)));
        let end = self.settle_one(settled).await?;
        if let (None, Some((request, response))) = (end, answer) {
            self.respond(request, &response).await?;
        }
        Ok(end)
    }

    /// Answers a request on its Response Topic, with its Correlation Data, at QoS 0: only to
    /// this connection, and only if the delivery gate lets the topic through (a subscription
    /// this connection holds under its current rights: a machine's own `errors`, a person's
    /// `notifications`).
    async fn respond(&mut self, request: Request, response: &Response) -> std::io::Result<()> {
        if self.may_deliver(&request.topic).is_none() {
            tracing::debug!(client = ?self.identity.subject, topic = %request.topic, "response topic not subscribed here; no response");
            return Ok(());
        }
        let publish = Publish::new(request.topic, QoS::AtMostOnce, crate::payload::to_bytes(response));
        let extra = v5::Extra { correlation: request.correlation, ..Default::default() };
        self.send_client_with(&Packet::Publish(publish), extra).await.map(|_| ())
    }

    async fn settle_one(&mut self, settled: Settled) -> std::io::Result<Option<End>> {
        match settled {
            Settled::Forward { pkid, publish, patient, received } => {
                if let Some(p) = publish {
                    let topic = Topic::parse(&p.topic);
                    // The patient's own copy, for the patient's apps (see topics.md).
                    let mirror = match (&topic, patient) {
                        (Ok(t), Some(patient)) => t.patient_copy(patient),
                        _ => None,
                    };
                    // Only what a subscription the core holds may match goes to the core (it
                    // is never retained, so the core would route the rest to no one).
                    let sessions = &self.shared.sessions;
                    let mirror = mirror.filter(|t| sessions.may_be_wanted(t));
                    let wanted = topic.as_ref().map_or(true, |t| sessions.may_be_wanted(t));
                    if let Some(topic) = mirror {
                        let mut copy = p.clone();
                        copy.topic = topic.to_string();
                        self.forward(copy, None).await?;
                    }
                    if wanted {
                        self.forward(p, None).await?;
                    }
                }
                if let Some(pkid) = pkid {
                    self.send_client(&Packet::PubAck(PubAck { pkid })).await?;
                }
                acknowledged(received, "committed");
                Ok(None)
            }
            Settled::Rejected { pkid, error, received } => {
                let topic = match self.identity.subject {
                    Subject::Device { id, hospital } => {
                        Topic::Device { hospital, device: id, channel: DeviceChannel::Errors }
                    }
                    Subject::User(u) => Topic::Notifications { hospital: u.hospital, user: u.id },
                };
                if self.direct() {
                    // The sender's own session is kept here, not in the core.
                    self.deliver_here(&topic, crate::payload::to_bytes(&error)).await?;
                }
                if let Err(e) = self.shared.publisher.publish_json(&topic, &error).await {
                    tracing::warn!(error = %e, "could not publish a rejection to its sender");
                }
                if let Some(pkid) = pkid {
                    let extra = v5::Extra { refusal: Some(refusal_of(&error)), ..Default::default() };
                    self.send_client_with(&Packet::PubAck(PubAck { pkid }), extra).await?;
                }
                acknowledged(received, "rejected");
                Ok(None)
            }
            Settled::Refused { pkid, refusal, why } => {
                if let Some(pkid) = pkid {
                    let extra = v5::Extra { refusal: Some((refusal, why, Vec::new())), ..Default::default() };
                    self.send_client_with(&Packet::PubAck(PubAck { pkid }), extra).await?;
                }
                Ok(None)
            }
            Settled::Unavailable(why, received) => {
                acknowledged(received, "unavailable");
                tracing::warn!(client = ?self.identity.subject, %why, "storage unavailable; closing without acknowledging");
                Ok(Some(End::StorageUnavailable))
            }
        }
    }
}

/// The answer to a request once its PUBLISH is settled (`None`: the connection ends instead).
fn response_to(settled: &Settled) -> Option<Response> {
    let answer = |outcome, code: Option<&str>, field: Option<&str>, message: Option<&str>| Response {
        v: V1,
        r#type: kind::Response,
        outcome,
        code: code.map(str::to_owned),
        field: field.map(str::to_owned),
        message: message.map(str::to_owned),
    };
    match settled {
        Settled::Forward { .. } => Some(answer(ResponseOutcome::Accepted, None, None, None)),
        Settled::Rejected { error, .. } => {
            let text = |k: &str| error.get(k).and_then(serde_json::Value::as_str);
            Some(answer(ResponseOutcome::Rejected, text("code"), text("field"), text("message")))
        }
        Settled::Refused { refusal, why, .. } => {
            let code = match refusal {
                PubRefusal::TopicNameInvalid => "topic_name_invalid",
                _ => "not_authorized",
            };
            Some(answer(ResponseOutcome::Refused, Some(code), None, Some(why)))
        }
        Settled::Unavailable(..) => None,
    }
}

/// What an MQTT 5 PUBACK says of a service's refusal (its error body, topics.md "Errors"):
/// the reason code, the message as reason string, and `code` and `field` as user properties.
fn refusal_of(error: &serde_json::Value) -> v5::Refusal {
    let text = |k: &str| error.get(k).and_then(serde_json::Value::as_str);
    let code = text("code").unwrap_or("");
    let mut user = vec![("code".to_owned(), code.to_owned())];
    if let Some(field) = text("field") {
        user.push(("field".to_owned(), field.to_owned()));
    }
    (PubRefusal::of_error_code(code), text("message").unwrap_or(code).to_owned(), user)
}

/// A device message's time from PUBLISH to its PUBACK (or to closing without one).
fn acknowledged(received: Option<Instant>, outcome: &'static str) {
    if let Some(at) = received {
        nc_metrics::get()
            .mqtt_puback_seconds
            .get_or_create(&nc_metrics::Outcome { outcome })
            .observe(at.elapsed().as_secs_f64());
    }
}
