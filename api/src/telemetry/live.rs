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

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};

use nc_access::policy::ClinicalView;
use nc_access::{audit, Subject};
use nc_domain::{AuditAction, DeviceId, Interface, PatientId};
use poem::http::StatusCode;
use poem::web::websocket::{CloseCode, Message, WebSocket};
use poem::web::{Data, Path, Query};
use poem::{handler, IntoResponse, Request, Response};
use tokio::sync::broadcast::error::RecvError;

use crate::http::streams::{refuse, too_many_streams, viewer, LiveQuery};
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
    let Ok(device) = device.parse::<DeviceId>() else {
        return refuse(StatusCode::BAD_REQUEST, "bad_request", "deviceId is not a valid id");
    };
    let (user, expires) = match viewer(&state.authn, query).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let subject = Subject::User(user);
    // Re-checked when access changes (an access event, or its grant's end), not per tick.
    let mut watch = nc_broker::registry::Watch::new(state.mqtt.clone());
    let epoch = watch.begin();
    // The hand-over's end is read before the decision (read after, a grant that ended in
    // between would look like an assignment, with no end).
    let Ok(until) = state.policy.grant_expiry(&subject, device).await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "retry later");
    };
    let view = match state.policy.clinical_view(&subject, device).await {
        Ok(v) => {
            watch.decided(epoch, until);
            v
        }
        Err(e) => {
            return match crate::error::ApiError::policy(e, "device") {
                crate::error::ApiError::NotFound(_) => refuse(StatusCode::NOT_FOUND, "not_found", "device not found"),
                crate::error::ApiError::Forbidden(m) => refuse(StatusCode::FORBIDDEN, "forbidden", &m),
                _ => refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "retry later"),
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
        let (mut tx, mut rx) = socket.split();
        let mut recheck = tokio::time::interval(Duration::from_secs(1));
        let until_expiry = (expires - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let expiry = tokio::time::sleep(until_expiry);
        tokio::pin!(expiry);
        let d = device.as_uuid();
        let shows = |patient: Option<uuid::Uuid>| view.shows(patient.map(PatientId));
        loop {
            let outgoing = tokio::select! {
                batch = readings.recv() => match batch {
                    Ok(rows) => {
                        let mut out = Vec::new();
                        for r in rows.iter().filter(|r| r.device_id == d && shows(r.patient_id)) {
                            out.push(serde_json::json!({"type": "reading", "deviceId": device, "time": r.time, "seq": r.seq,
                                "patientId": r.patient_id, "sessionId": r.session_id, "reading": &r.reading}));
                        }
                        out
                    }
                    Err(RecvError::Lagged(n)) => vec![serde_json::json!({"type": "lagged", "missed": n})],
                    Err(RecvError::Closed) => break,
                },
                event = alerts.recv() => match event {
                    Ok(e) if e.alert.device_id == d && shows(e.alert.patient_id) => vec![serde_json::json!({"type": "alert", "event": e.event, "alert": e.alert})],
                    Ok(_) | Err(RecvError::Lagged(_)) => Vec::new(),
                    Err(RecvError::Closed) => break,
                },
                event = presence.recv() => match event {
                    Ok(p) if p.device == device => vec![serde_json::json!({"type": "status", "deviceId": device, "online": p.online, "reason": p.reason, "at": p.at})],
                    Ok(_) | Err(RecvError::Lagged(_)) => Vec::new(),
                    Err(RecvError::Closed) => break,
                },
                _ = &mut expiry => {
                    let _ = tx.send(Message::Close(Some((CloseCode::from(4401), "access token expired".into())))).await;
                    break;
                }
                _ = recheck.tick() => {
                    if !watch.due() {
                        continue;
                    }
                    let epoch = watch.begin();
                    let until = state.policy.grant_expiry(&subject, device).await.ok();
                    let live = until.is_some()
                        && state.authn.recheck_user(&user).await.is_ok()
                        && state.policy.clinical_view(&subject, device).await.is_ok_and(|v| v == view);
                    if let (true, Some(until)) = (live, until) {
                        watch.decided(epoch, until);
                    } else {
                        let _ = tx.send(Message::Close(Some((CloseCode::from(4403), "access revoked".into())))).await;
                        break;
                    }
                    Vec::new()
                }
                incoming = rx.next() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => Vec::new(),
                },
            };
            for msg in outgoing {
                if tx.send(Message::Text(msg.to_string())).await.is_err() {
                    return;
                }
            }
        }
    })
    .into_response()
}
