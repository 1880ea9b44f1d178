//! `WebSocket /ws/health-metrics/{deviceId}?token=JWT`: a device's live readings, status
//! changes and alerts as JSON messages, for dashboards. Browsers cannot set headers on a
//! WebSocket, so the access token comes in the query string (never logged: the request log
//! omits query strings); it is checked, with the policy module, before the upgrade
//! (401/403/404 as for REST). The policy's [`ClinicalView`] decides what the viewer gets:
//! the device's doctors and technicians everything, the patient on it only their own
//! treatment (readings and alerts of other patients on a shared machine never reach them).
//! While the stream is open, the viewer's rights are re-checked every second: when they
//! are gone (assignment ended, grant expired or revoked, logout, deactivation) the stream
//! closes with code 4403; when the access token expires it closes with code 4401 (open a
//! new stream with a fresh token). At most [`STREAMS_PER_USER`] streams per person at once
//! (429 beyond).
//!
//! Messages: `{"type":"reading","reading":{...}}`, `{"type":"status","online":bool,...}`,
//! `{"type":"alert","event":"raised|escalated|acknowledged|snoozed|realerted|cleared","alert":{...}}`.
//! A person watching a device's stream counts as reachable for its alerts' escalation.

use nc_access::policy::ClinicalView;
use nc_access::{audit, Subject};
use nc_domain::{AuditAction, DeviceId, Interface, PatientId};
use poem::http::StatusCode;
use poem::web::websocket::WebSocket;
use poem::web::{Data, Path, Query};
use poem::{handler, IntoResponse, Request, Response};
use tokio::sync::broadcast::error::RecvError;

use crate::http::streams::{opening, refuse, too_many_streams, unavailable, Live, LiveQuery, Wake};
use crate::security::client_ip;
use crate::state::ApiState;

#[handler]
pub async fn health_metrics(
    Path(device): Path<String>,
    Query(query): Query<LiveQuery>,
    state: Data<&ApiState>,
    req: &Request,
    ws: WebSocket,
) -> Response {
    let (device, user, expires) = match opening::<DeviceId>(&device, "deviceId", &state.authn, query).await {
        Ok(opened) => opened,
        Err(refused) => return refused,
    };
    let subject = Subject::User(user);
    // Re-checked when access changes (an access event, or its grant's end), not per tick.
    let mut watch = nc_broker::registry::Watch::new(state.mqtt.clone());
    let epoch = watch.begin();
    // The hand-over's end is read before the decision (read after, a grant that ended in
    // between would look like an assignment, with no end).
    let Ok(until) = state.policy.grant_expiry(&subject, device).await else { return unavailable() };
    let view = match state.policy.clinical_view(&subject, device).await {
        Ok(v) => {
            watch.decided(epoch, until);
            v
        }
        Err(e) => {
            return match crate::error::ApiError::policy(e, "device") {
                crate::error::ApiError::NotFound(_) => refuse(StatusCode::NOT_FOUND, "not_found", "device not found"),
                crate::error::ApiError::Forbidden(m) => refuse(StatusCode::FORBIDDEN, "forbidden", &m),
                _ => unavailable(),
            }
        }
    };
    let Some(slot) = state.streams.take(user.id) else { return too_many_streams() };
    let own = match view {
        ClinicalView::OwnTreatment(p) => Some(p),
        ClinicalView::Device => None,
    };
    if audit::record(
        &state.db,
        audit::Access {
            subject: &subject,
            action: AuditAction::Subscribe,
            resource: "device.live",
            patient: own,
            device: Some(device),
            interface: Interface::Websocket,
            client_addr: client_ip(req).map(|ip| ip.to_string()),
        },
    )
    .await
    .is_err()
    {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "cannot audit the access now; retry later");
    }
    let state = state.0.clone();
    // Subscribed before the upgrade is answered: whatever happens once the client has its
    // 101 reaches the stream (subscribing inside the upgraded task would lose the events of
    // the first moments, e.g. a reading the viewer's own action caused).
    let mut readings = state.ingest.committed();
    let mut alerts = state.alarms.subscribe();
    let mut presence = state.presence.subscribe();
    ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        // Watching the device's alerts: reachable for its escalations (see nc_alarms::reach).
        let _watching = state.alarms.reach().watching(user.id, device);
        let mut live = Live::new(socket, expires, watch);
        let d = device.as_uuid();
        let shows = |patient: Option<uuid::Uuid>| view.shows(patient.map(PatientId));
        loop {
            // The stream's events: `None` when a source has closed.
            let events = async {
                tokio::select! {
                    batch = readings.recv() => match batch {
                        Ok(rows) => {
                            let mut out = Vec::new();
                            for r in rows.iter().filter(|r| r.device_id == d && shows(r.patient_id)) {
                                out.push(serde_json::json!({"type": "reading", "deviceId": device, "time": r.time, "seq": r.seq,
                                    "patientId": r.patient_id, "sessionId": r.session_id, "reading": &r.reading}));
                            }
                            Some(out)
                        }
                        Err(RecvError::Lagged(n)) => Some(vec![serde_json::json!({"type": "lagged", "missed": n})]),
                        Err(RecvError::Closed) => None,
                    },
                    event = alerts.recv() => match event {
                        Ok(e) if e.alert.device_id == d && shows(e.alert.patient_id) => Some(vec![serde_json::json!({"type": "alert", "event": e.event, "alert": e.alert})]),
                        Ok(_) | Err(RecvError::Lagged(_)) => Some(Vec::new()),
                        Err(RecvError::Closed) => None,
                    },
                    event = presence.recv() => match event {
                        Ok(p) if p.device == device => Some(vec![serde_json::json!({"type": "status", "deviceId": device, "online": p.online, "reason": p.reason, "at": p.at})]),
                        Ok(_) | Err(RecvError::Lagged(_)) => Some(Vec::new()),
                        Err(RecvError::Closed) => None,
                    },
                }
            };
            let outgoing = match live.next(events).await {
                Wake::Events(Some(frames)) => frames,
                Wake::Events(None) | Wake::Gone => break,
                Wake::Recheck(epoch) => {
                    let until = state.policy.grant_expiry(&subject, device).await.ok();
                    let allowed = until.is_some()
                        && state.authn.recheck_user(&user).await.is_ok()
                        && state.policy.clinical_view(&subject, device).await.is_ok_and(|v| v == view);
                    let (true, Some(until)) = (allowed, until) else {
                        live.revoke().await;
                        break;
                    };
                    live.decided(epoch, until);
                    Vec::new()
                }
                Wake::Frame(_) => Vec::new(),
            };
            if !live.send(outgoing).await {
                return;
            }
        }
    })
    .into_response()
}
