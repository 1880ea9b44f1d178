//! What clients subscribe to: each filter decided by the policy module (and audited) when
//! asked, and again when a persistent session is resumed; the SUBACK in the client's order,
//! whether the core or (for a session kept here) the edge answers.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nc_access::{audit, Subject};
use nc_domain::{AuditAction, Interface};
use rumqttc::{Packet, QoS, SubAck, Subscribe, SubscribeFilter, Unsubscribe};

use super::upstream::Upstream;
use super::{Held, Session};
use crate::acl::{self, AclError, Grant};
use crate::edge::v5::{self, Answer, SubRefusal};
use crate::sessions::Carried;
use crate::topic::{DeviceChannel, Filter, RoomChannel, Topic};
use crate::Shared;

/// Most filters in one SUBSCRIBE.
const MAX_FILTERS: usize = 128;

/// A resumed session's subscriptions, decided with the current rights.
pub(in crate::edge) struct Reauthorized {
    pub kept: Vec<(Carried, Grant)>,
    pub dropped: Vec<Carried>,
}

/// Decides every subscription a resumed session carries, as if it were subscribed anew, and
/// audits the ones kept. A lookup or audit failure fails the whole CONNECT (code 3): nothing
/// is dropped for a transient error. A technician's subscription to a device is dropped too
/// when its current right on the device began after the session was left: the queue may
/// hold messages from the time it had none.
pub(in crate::edge) async fn reauthorize(
    shared: &Arc<Shared>,
    subject: &Subject,
    peer: SocketAddr,
    carried: Vec<Carried>,
    released_at: Option<DateTime<Utc>>,
) -> Result<Reauthorized, String> {
    let mut out = Reauthorized { kept: Vec::new(), dropped: Vec::new() };
    let windows = match (subject, released_at) {
        (Subject::User(u), Some(_)) if u.role == nc_domain::Role::Technician && !carried.is_empty() => {
            Some(shared.policy.technician_windows(u.id).await.map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    for c in carried {
        let gap = match (&windows, released_at, filter_device(&c.filter)) {
            (Some(w), Some(left), Some(device)) => !w.iter().any(|w| w.device == device && w.from <= left),
            _ => false,
        };
        match acl::may_subscribe(&shared.policy, subject, &c.filter).await {
            Ok(_) if gap => {
                tracing::info!(client = ?subject, filter = %c.path, "right regained after the session was left; removed");
                out.dropped.push(c);
            }
            Ok(until) => {
                audit_subscription(shared.clone(), *subject, peer, c.filter, "mqtt.subscription.resumed")
                    .await
                    .map_err(|e| e.to_string())?;
                out.kept.push((c, until));
            }
            Err(AclError::Denied(why)) => {
                tracing::info!(client = ?subject, filter = %c.path, %why, "resumed subscription no longer permitted; removed");
                out.dropped.push(c);
            }
            Err(AclError::Lookup(e)) => return Err(e),
        }
    }
    Ok(out)
}

/// A shared subscription's filter (`$share/{group}/{filter}`): `None` for another filter,
/// `Err` for a malformed one.
fn split_shared(path: &str) -> Option<Result<&str, &'static str>> {
    let rest = path.strip_prefix("$share/")?;
    Some(match rest.split_once('/') {
        Some((group, filter)) if !group.is_empty() && !group.contains(['+', '#']) && !filter.is_empty() => Ok(filter),
        _ => Err("a shared subscription is $share/{group}/{filter}, the group without wildcards"),
    })
}

/// The topic a filter names, if it names one (not a wildcard).
fn named_topic(filter: &Filter) -> Option<Topic> {
    match filter {
        Filter::Exact(t) => Some(*t),
        _ => None,
    }
}

fn filter_device(filter: &Filter) -> Option<nc_domain::DeviceId> {
    match filter {
        Filter::Exact(Topic::Device { device, .. }) | Filter::AnyDeviceChannel { device, .. } => Some(*device),
        _ => None,
    }
}

/// Makes access events about what `filter` rests on (its device, patient or room, and a
/// room's device and patient) reach connection `conn`.
pub(in crate::edge) async fn watch_filter(shared: &Shared, conn: u64, filter: &Filter) {
    let (device, room, patient) = match *filter {
        Filter::Exact(Topic::Device { device, .. }) | Filter::AnyDeviceChannel { device, .. } => {
            (Some(device), None, None)
        }
        Filter::Exact(Topic::Room { room, .. }) | Filter::AnyRoomChannel { room, .. } => (None, Some(room), None),
        Filter::Exact(Topic::Patient { patient, .. }) | Filter::AnyPatientChannel { patient, .. } => {
            (None, None, Some(patient))
        }
        Filter::Exact(Topic::Notifications { .. }) => (None, None, None),
    };
    shared.registry.watch(conn, device, room, patient);
    if let Some(room) = room {
        match shared.policy.room_subjects(room).await {
            Ok((device, patient)) => shared.registry.watch(conn, device, None, patient),
            Err(e) => tracing::warn!(error = %e, "cannot look up what a room is about"),
        }
    }
}

impl Session {
    /// Whether this connection may join shared subscriptions: MQTT 5, with a session in the
    /// embedded core (rumqttd shares a group's messages round robin; NATS has no `$share`).
    pub(in crate::edge) fn shares(&self) -> bool {
        self.v5.is_some() && !self.direct() && self.shared.core.embedded()
    }

    /// A granted subscription to a patient's or a device's clinical data is audited once
    /// (not per message): who, what, through MQTT, when.
    pub(super) fn audit(
        &self,
        filter: &Filter,
        resource: &'static str,
    ) -> impl Future<Output = Result<(), sea_orm::DbErr>> + Send + 'static {
        audit_subscription(self.shared.clone(), self.identity.subject, self.peer, *filter, resource)
    }

    pub(super) async fn client_subscribe(&mut self, subscribe: Subscribe) -> std::io::Result<()> {
        let subject = self.identity.subject;
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut forward = Vec::new();
        let mut forwarded = Vec::new();
        // Each filter costs policy lookups and an audit row: the rate counts filters, and a
        // SUBSCRIBE carries at most MAX_FILTERS of them.
        let n = NonZeroU32::new(subscribe.filters.len().max(1) as u32).expect("non-zero");
        let over_rate =
            subscribe.filters.len() > MAX_FILTERS || !matches!(self.subscribe_limiter.check_n(n), Ok(Ok(())));
        if over_rate {
            tracing::warn!(client = ?subject, filters = subscribe.filters.len(), "SUBSCRIBE rate or size exceeded; refusing its filters");
        }
        let mut withdrawn = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        for f in subscribe.filters {
            let parsed = if over_rate {
                Err((SubRefusal::QuotaExceeded, "too many subscriptions at once".to_owned()))
            } else {
                match split_shared(&f.path) {
                    None => Filter::parse(&f.path).map_err(|e| (SubRefusal::FilterInvalid, e.to_string())),
                    Some(_) if !self.shares() => {
                        Err((SubRefusal::SharedNotSupported, "shared subscriptions are not offered here".to_owned()))
                    }
                    Some(Err(why)) => Err((SubRefusal::FilterInvalid, why.to_owned())),
                    // The group shares what the filter under it names: the policy decides that.
                    Some(Ok(under)) => Filter::parse(under).map_err(|e| (SubRefusal::FilterInvalid, e.to_string())),
                }
            };
            let decision = match parsed {
                Err(e) => Err(e),
                Ok(filter) => {
                    // Watch first: an access event after the decision then reaches us.
                    watch_filter(&self.shared, self.conn_id, &filter).await;
                    match acl::may_subscribe(&self.shared.policy, &subject, &filter).await {
                        Ok(until) => match self.audit(&filter, "mqtt.subscription").await {
                            Ok(()) => Ok((filter, until)),
                            Err(e) => Err((SubRefusal::Unspecified, format!("cannot audit the access: {e}"))),
                        },
                        Err(e @ AclError::Denied(_)) => Err((SubRefusal::NotAuthorized, e.to_string())),
                        Err(e @ AclError::Lookup(_)) => Err((SubRefusal::Unspecified, e.to_string())),
                    }
                }
            };
            match decision {
                Ok((filter, until)) => {
                    self.note_grant(until);
                    // QoS 2 is not offered: granted QoS is at most 1.
                    let qos = if f.qos == QoS::ExactlyOnce { QoS::AtLeastOnce } else { f.qos };
                    self.subscriptions.insert(f.path.clone(), Held { filter, qos });
                    forwarded.push(Carried { path: f.path.clone(), filter, qos });
                    forward.push(SubscribeFilter { path: f.path, qos });
                    codes.push(None);
                }
                Err((refusal, why)) => {
                    tracing::warn!(client = ?subject, filter = %f.path, %why, "subscription refused");
                    // A refused re-SUBSCRIBE ends the earlier subscription to the same filter.
                    if self.subscriptions.remove(&f.path).is_some() {
                        withdrawn.push(f.path.clone());
                    }
                    if !over_rate || refused.is_empty() {
                        refused.push(format!("{}: {why}", f.path));
                    }
                    codes.push(Some(Answer::Refused(refusal)));
                }
            }
        }
        if !withdrawn.is_empty() {
            self.shared.sessions.unsubscribed(self.owner, self.generation, &withdrawn);
            self.shared.keep(self.owner, self.generation, false).await;
        }
        if !withdrawn.is_empty() && !self.direct() {
            let pkid = self.allocate_pkid();
            self.upstream.insert(pkid, Upstream::Internal);
            self.send_core(&Packet::Unsubscribe(Unsubscribe { pkid, topics: withdrawn })).await?;
        }
        let refused = (!refused.is_empty()).then(|| refused.join("; "));
        if forward.is_empty() {
            return self.subscribe_answered(subscribe.pkid, codes, Vec::new(), Vec::new(), refused).await;
        }
        self.shared.sessions.subscribing(self.owner, self.generation, forwarded.iter().map(|c| &c.filter));
        if self.direct() {
            // Kept here: granted as asked (at most QoS 1).
            let granted = forwarded.iter().map(|c| Answer::Granted(c.qos)).collect();
            return self.subscribe_answered(subscribe.pkid, codes, forwarded, granted, refused).await;
        }
        let pkid = self.allocate_pkid();
        self.upstream.insert(pkid, Upstream::Subscribe { client_pkid: subscribe.pkid, codes, forwarded, refused });
        self.send_core(&Packet::Subscribe(Subscribe { pkid, filters: forward })).await
    }

    /// The core (or, for a session kept here, the edge) answered the filters `forwarded`
    /// with `answers`: the book learns what is held, the client gets its SUBACK in the
    /// order it asked (`codes`: `Some` for a filter refused before).
    pub(super) async fn subscribe_answered(
        &mut self,
        client_pkid: u16,
        codes: Vec<Option<Answer>>,
        forwarded: Vec<Carried>,
        answers: Vec<Answer>,
        refused: Option<String>,
    ) -> std::io::Result<()> {
        let mut granted = Vec::new();
        let asked: Vec<Filter> = forwarded.iter().map(|c| c.filter).collect();
        for (c, code) in forwarded.into_iter().zip(answers.iter()) {
            if matches!(code, Answer::Refused(_)) {
                self.subscriptions.remove(&c.path);
            } else {
                granted.push(c);
            }
        }
        let named: Vec<Topic> = granted.iter().filter_map(|c| named_topic(&c.filter)).collect();
        self.shared.sessions.subscribed(self.owner, self.generation, asked, granted);
        self.shared.keep(self.owner, self.generation, false).await;
        let mut from_core = answers.into_iter();
        let answers: Vec<Answer> = codes
            .into_iter()
            .map(|c| c.unwrap_or_else(|| from_core.next().unwrap_or(Answer::Refused(SubRefusal::Unspecified))))
            .collect();
        let return_codes = answers.iter().copied().map(v5::Answer::v4).collect();
        let ack = Packet::SubAck(SubAck { pkid: client_pkid, return_codes });
        self.send_client_with(&ack, v5::Extra { answers: Some((answers, refused)), ..Default::default() }).await?;
        self.shared.subscriptions_hold(&self.identity.subject, named);
        Ok(())
    }
}

/// Writes the audit row of a granted subscription (see `Session::audit`).
async fn audit_subscription(
    shared: Arc<Shared>,
    subject: Subject,
    peer: SocketAddr,
    filter: Filter,
    resource: &'static str,
) -> Result<(), sea_orm::DbErr> {
    let (device, patient) = match filter {
        Filter::Exact(Topic::Device { channel: DeviceChannel::Status, .. }) => return Ok(()),
        Filter::Exact(Topic::Device { device, .. }) | Filter::AnyDeviceChannel { device, .. } => (Some(device), None),
        Filter::Exact(Topic::Patient { patient, .. }) | Filter::AnyPatientChannel { patient, .. } => {
            (None, Some(patient))
        }
        // Following a conversation is a read of it (chat is PHI): audited with what the room
        // is about.
        Filter::Exact(Topic::Room { room, channel: RoomChannel::Messages, .. })
        | Filter::AnyRoomChannel { room, .. } => shared.policy.room_subjects(room).await?,
        Filter::Exact(Topic::Room { .. } | Topic::Notifications { .. }) => return Ok(()),
    };
    if matches!(subject, Subject::Device { .. }) {
        return Ok(());
    }
    audit::record(
        &shared.db,
        audit::Access {
            subject: &subject,
            action: AuditAction::Subscribe,
            resource,
            patient,
            device,
            interface: Interface::Mqtt,
            client_addr: Some(peer.ip().to_string()),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::split_shared;

    #[test]
    fn shared_subscriptions_name_a_group_and_a_filter() {
        assert_eq!(split_shared("nc/v1/h/x"), None);
        assert_eq!(split_shared("$share/ward/nc/v1/h/x/d/y/#"), Some(Ok("nc/v1/h/x/d/y/#")));
        for bad in ["$share/", "$share/ward", "$share/ward/", "$share//nc/v1", "$share/w+/nc", "$share/#/nc"] {
            assert!(matches!(split_shared(bad), Some(Err(_))), "{bad}");
        }
    }
}
