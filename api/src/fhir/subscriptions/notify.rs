//! The `fhir` channel's sender: a queued notification (an outbox item: a handshake, a
//! heartbeat, or an event of a treatment that ended or an alarm raised or changed) becomes
//! the Backport IG's notification `Bundle` (type `history`: the `subscription-status`
//! Parameters first, then, by the subscription's payload content, nothing, the focus's URL
//! or the resources as they are now) and is POSTed to the subscription's endpoint.
//!
//! **Decided when sent**: the owner is loaded as the subject now (an account no longer live
//! ends the subscription in `error`) and the policy asked whether it may read the focus, as
//! a read would ([`Policy::session`] for a treatment, [`Policy::alert`] for an alarm: an
//! admin gets its administrative view). What it may not read is **withheld**: not sent, not
//! numbered (so the numbers stay without gaps) and recorded as such on the outbox item (a
//! retry of a notification numbered before, whose right ended meanwhile, goes out with its
//! number and without its focus). What is sent is audited as the owner's read.

use std::time::Duration;

use chrono::Utc;
use nc_access::policy::{AlertAction, AlertRef, AlertView};
use nc_access::{audit, Policy, PolicyError, Subject};
use nc_domain::{AuditAction, DeviceId, HospitalId, Interface, PatientId, SessionId};
use nc_outbox::http::{HttpSender, Post};
use nc_outbox::{Item, Receipt, SendError, SendFuture, Sender};
use nc_records::subscriptions::{Content, Focus, Queued, Status, Subscription, Subscriptions, WITHHELD};
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};
use uuid::Uuid;

use super::resource::{self, Event, BACKPORT};
use crate::fhir::issues::detected_issue;
use crate::fhir::observations::{instant, session_summaries};
use crate::fhir::procedures::{facts, procedure};

/// Builds each notification when it is sent and posts it.
pub struct RestHookSender {
    subscriptions: Subscriptions,
    policy: Policy,
    alarms: nc_alarms::Alarms,
    db: DatabaseConnection,
    http: HttpSender,
    /// `…/fhir/r4`, the base of the references notifications carry.
    base: String,
}

impl RestHookSender {
    pub fn new(
        subscriptions: Subscriptions,
        db: DatabaseConnection,
        alarms: nc_alarms::Alarms,
        http: HttpSender,
        public_base: &str,
    ) -> Self {
        let base = format!("{}/fhir/r4", public_base.trim_end_matches('/'));
        Self { subscriptions, policy: Policy::new(db.clone()), alarms, db, http, base }
    }

    /// The resources of `focus` the owner may read now (the focus first), or why not.
    async fn resources(&self, owner: &Subject, focus: &Focus) -> Result<Result<Vec<Value>, String>, SendError> {
        let retry = |e: String| SendError::Retry(format!("database: {e}"));
        match focus.kind.as_str() {
            "Procedure" => {
                let (s, patient) = match self.policy.session(owner, SessionId(focus.id)).await {
                    Ok(found) => found,
                    Err(PolicyError::Denied(d)) => return Ok(Err(d.to_string())),
                    Err(PolicyError::Db(e)) => return Err(retry(e.to_string())),
                };
                self.audit(owner, "fhir.notification.Procedure", Some(patient), Some(s.device_id)).await?;
                let summaries =
                    session_summaries(&facts(&self.alarms, &s, patient).await.map_err(|e| retry(e.to_string()))?);
                Ok(Ok(std::iter::once(procedure(&s, patient)).chain(summaries).collect()))
            }
            "DetectedIssue" => {
                let Some(a) = self.alarms.get(focus.id).await.map_err(|e| retry(e.to_string()))? else {
                    return Ok(Err("the alarm no longer exists".into()));
                };
                let target = AlertRef {
                    hospital: HospitalId(a.hospital_id),
                    device: DeviceId(a.device_id),
                    patient: a.patient_id.map(PatientId),
                    raised_at: a.raised_at,
                    escalation_level: a.level(),
                };
                let view = match self.policy.alert(owner, &target, AlertAction::Read).await {
                    Ok(v) => v,
                    Err(PolicyError::Denied(d)) => return Ok(Err(d.to_string())),
                    Err(PolicyError::Db(e)) => return Err(retry(e.to_string())),
                };
                let shown = match view {
                    AlertView::Full => a,
                    AlertView::Administrative => a.administrative(),
                };
                self.audit(
                    owner,
                    "fhir.notification.DetectedIssue",
                    shown.patient_id.map(PatientId),
                    Some(target.device),
                )
                .await?;
                Ok(Ok(vec![detected_issue(&shown)]))
            }
            other => Err(SendError::Refused(format!("not a focus of ours: {other}"))),
        }
    }

    async fn audit(
        &self,
        owner: &Subject,
        resource: &str,
        patient: Option<PatientId>,
        device: Option<DeviceId>,
    ) -> Result<(), SendError> {
        let access = audit::Access {
            subject: owner,
            action: AuditAction::Read,
            resource,
            patient,
            device,
            interface: Interface::Rest,
            client_addr: None,
        };
        audit::record(&self.db, access).await.map_err(|e| SendError::Retry(format!("database: {e}")))
    }

    /// The notification of `item` for `s`, or why it is withheld.
    async fn notification(
        &self,
        item: &Item,
        q: &Queued,
        s: &Subscription,
    ) -> Result<Result<Value, String>, SendError> {
        if q.kind != "event-notification" {
            if !["handshake", "heartbeat"].contains(&q.kind.as_str()) {
                return Err(SendError::Refused(format!("not a notification type of ours: {}", q.kind)));
            }
            return Ok(Ok(bundle(
                &self.base,
                s,
                resource::status(s, &self.base, &q.kind, s.events_since_start, None),
                Vec::new(),
            )));
        }
        let focus = q.focus.as_ref().ok_or_else(|| SendError::Refused("an event without its focus".into()))?;
        let owner = match self.policy.subscriber(s.owner).await {
            Ok(o) => o,
            Err(PolicyError::Denied(d)) => return Err(SendError::Refused(d.to_string())),
            Err(PolicyError::Db(e)) => return Err(SendError::Retry(format!("database: {e}"))),
        };
        let db = |e: sqlx::Error| SendError::Retry(format!("database: {e}"));
        let (resources, content) = match self.resources(&owner, focus).await? {
            Ok(r) => (r, s.spec.content),
            Err(why) => match self.subscriptions.numbered(item.id).await.map_err(db)? {
                None => return Ok(Err(why)),
                // Numbered on an earlier attempt (the receiver may have seen that number):
                // sent again without what the owner may no longer read, so no number is
                // skipped or given twice.
                Some(_) => (Vec::new(), Content::Empty),
            },
        };
        let path = format!("{}/{}", focus.kind, focus.id);
        let number = self
            .subscriptions
            .event_number(item.id, s.id, &path)
            .await
            .map_err(|e| SendError::Retry(format!("database: {e}")))?;
        let url = format!("{}/{path}", self.base);
        let full = content == Content::FullResource;
        let event = Event {
            number,
            at: q.at.unwrap_or(item.created_at),
            focus: (content != Content::Empty).then(|| url.clone()),
            additional: if full {
                resources.iter().skip(1).map(|r| reference(&self.base, r)).collect()
            } else {
                Vec::new()
            },
        };
        let status = resource::status(s, &self.base, "event-notification", number, Some(&event));
        let entries = match content {
            Content::Empty => Vec::new(),
            Content::IdOnly => vec![json!({
                "fullUrl": url,
                "request": {"method": "PUT", "url": path},
                "response": {"status": "200"},
            })],
            Content::FullResource => resources.into_iter().map(|r| entry(&self.base, r)).collect(),
        };
        Ok(Ok(bundle(&self.base, s, status, entries)))
    }
}

/// A resource's absolute URL.
fn reference(base: &str, r: &Value) -> String {
    format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""))
}

/// A resource as a `history` entry.
fn entry(base: &str, r: Value) -> Value {
    let path = format!("{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
    json!({
        "fullUrl": format!("{base}/{path}"),
        "resource": r,
        "request": {"method": "PUT", "url": path},
        "response": {"status": "200"},
    })
}

/// The notification Bundle: the status first, then `entries`.
fn bundle(base: &str, s: &Subscription, status: Value, entries: Vec<Value>) -> Value {
    let status_id = status["id"].as_str().unwrap_or_default().to_owned();
    let mut all = vec![json!({
        "fullUrl": format!("urn:uuid:{status_id}"),
        "resource": status,
        "request": {"method": "GET", "url": format!("{base}/Subscription/{}/$status", s.id)},
        "response": {"status": "200"},
    })];
    all.extend(entries);
    json!({
        "resourceType": "Bundle",
        "id": Uuid::new_v4().to_string(),
        "meta": {"profile": [format!("{BACKPORT}/backport-subscription-notification-r4")]},
        "type": "history",
        "timestamp": instant(Utc::now()),
        "entry": all,
    })
}

impl Sender for RestHookSender {
    fn send<'a>(&'a self, item: &'a Item) -> SendFuture<'a> {
        Box::pin(async move {
            let q: Queued = serde_json::from_str(&item.payload)
                .map_err(|e| SendError::Refused(format!("not a queued notification: {e}")))?;
            let s = self
                .subscriptions
                .get(q.subscription)
                .await
                .map_err(|e| SendError::Retry(format!("database: {e}")))?
                .ok_or_else(|| SendError::Refused("the subscription was deleted".into()))?;
            if matches!(s.status, Status::Error | Status::Off) {
                return Err(SendError::Refused(format!("the subscription is {}", s.status.as_str())));
            }
            if s.spec.end.is_some_and(|end| end <= Utc::now()) {
                self.subscriptions.switch_off(s.id).await.map_err(|e| SendError::Retry(format!("database: {e}")))?;
                return Err(SendError::Refused("the subscription ended".into()));
            }
            let body = match self.notification(item, &q, &s).await? {
                Ok(b) => b,
                Err(why) => return Ok(Receipt(format!("{WITHHELD}: the owner may not read it now ({why})"))),
            };
            self.http
                .post(Post {
                    url: &s.spec.endpoint,
                    content_type: "application/fhir+json",
                    headers: &s.spec.headers,
                    body: body.to_string(),
                    timeout: Duration::from_secs(u64::try_from(s.spec.timeout_secs).unwrap_or(10)),
                })
                .await
        })
    }
}
