//! `WebSocket /ws/health-metrics/{deviceId}?token=JWT`: a device's live readings, status
//! changes and alerts as JSON messages, for dashboards. Browsers cannot set headers on a
//! WebSocket, so the access token comes in the query string; it is checked, with the policy
//! module, before the upgrade (401/403/404 as for REST). While the stream is open, the
//! viewer's rights are re-checked every second: when they are gone (assignment ended, grant
//! expired or revoked, logout, deactivation) the stream closes with code 4403.
//!
//! Messages: `{"type":"reading","reading":{...}}`, `{"type":"status","online":bool,...}`,
//! `{"type":"alert","event":"raised|acknowledged|cleared","alert":{...}}`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nc_access::{audit, DeviceAction, Subject};
use nc_domain::{AuditAction, DeviceId, Interface};
use poem::http::StatusCode;
use poem::web::websocket::{CloseCode, Message, WebSocket};
use poem::web::{Data, Path, Query};
use poem::{handler, IntoResponse, Request, Response};
use tokio::sync::broadcast::error::RecvError;

use crate::security::client_ip;
use crate::state::ApiState;

#[derive(serde::Deserialize)]
pub struct LiveQuery {
    token: Option<String>,
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    poem::web::Json(serde_json::json!({"code": code, "message": message})).with_status(status).into_response()
}

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
    let Some(token) = query.token else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "pass the access token as ?token=");
    };
    let user = match state.authn.user(&token).await {
        Ok(u) => u,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()),
    };
    let subject = Subject::User(user);
    if let Err(e) = state.policy.device(&subject, device, DeviceAction::ReadClinical).await {
        return match crate::error::ApiError::policy(e, "device") {
            crate::error::ApiError::NotFound(_) => refuse(StatusCode::NOT_FOUND, "not_found", "device not found"),
            crate::error::ApiError::Forbidden(m) => refuse(StatusCode::FORBIDDEN, "forbidden", &m),
            _ => refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "retry later"),
        };
    }
    let _ = audit::record(
        &state.db,
        audit::Access {
            subject: &subject,
            action: AuditAction::Subscribe,
            resource: "device.live",
            patient: None,
            device: Some(device),
            interface: Interface::Websocket,
            client_addr: client_ip(req).map(|ip| ip.to_string()),
        },
    )
    .await;
    let state = state.0.clone();
    // Subscribed before the upgrade is answered: whatever happens once the client has its
    // 101 reaches the stream (subscribing inside the upgraded task would lose the events of
    // the first moments, e.g. a reading the viewer's own action caused).
    let mut readings = state.ingest.committed();
    let mut alerts = state.ingest.alerts().subscribe();
    let mut presence = state.presence.subscribe();
    ws.on_upgrade(move |socket| async move {
        let (mut tx, mut rx) = socket.split();
        let mut recheck = tokio::time::interval(Duration::from_secs(1));
        let d = device.as_uuid();
        loop {
            let outgoing = tokio::select! {
                batch = readings.recv() => match batch {
                    Ok(rows) => {
                        let mut out = Vec::new();
                        for r in rows.iter().filter(|r| r.device_id == d) {
                            out.push(serde_json::json!({"type": "reading", "deviceId": device, "time": r.time, "seq": r.seq,
                                "patientId": r.patient_id, "sessionId": r.session_id, "reading": r.json}));
                        }
                        out
                    }
                    Err(RecvError::Lagged(n)) => vec![serde_json::json!({"type": "lagged", "missed": n})],
                    Err(RecvError::Closed) => break,
                },
                event = alerts.recv() => match event {
                    Ok(e) if e.alert.device_id == d => vec![serde_json::json!({"type": "alert", "event": e.event, "alert": e.alert})],
                    Ok(_) | Err(RecvError::Lagged(_)) => Vec::new(),
                    Err(RecvError::Closed) => break,
                },
                event = presence.recv() => match event {
                    Ok(p) if p.device == device => vec![serde_json::json!({"type": "status", "deviceId": device, "online": p.online, "reason": p.reason, "at": p.at})],
                    Ok(_) | Err(RecvError::Lagged(_)) => Vec::new(),
                    Err(RecvError::Closed) => break,
                },
                _ = recheck.tick() => {
                    let live = state.authn.recheck_user(&user).await.is_ok()
                        && state.policy.device(&subject, device, DeviceAction::ReadClinical).await.is_ok();
                    if !live {
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
