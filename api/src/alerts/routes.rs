//! `/api/alerts`: the alarms a person may see (their devices' and, once escalated to them,
//! their ward's or hospital's), one alarm with everyone it was sent to, its history, its
//! acknowledgement, snooze and clearing, the hospital's escalation policy and the unit's
//! alarm burden. Every decision is the policy module's (`Policy::alert`,
//! `decide_hospital`); every action and policy change is audited.

use chrono::{DateTime, Duration, Utc};
use nc_access::policy::{AlertAction, AlertFilter, AlertRef, AlertView};
use nc_access::{audit, DeviceAction, HospitalAction, PatientAction};
use nc_domain::*;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;

use super::dto::*;
use crate::dto::page;
use crate::error::{ApiError, ApiResult};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

pub struct AlertsApi;

/// An alert and the view of it the caller may have for `action`.
async fn alert_for(
    state: &ApiState,
    auth: &BearerAuth,
    id: AlertId,
    action: AlertAction,
) -> std::result::Result<(nc_alarms::Alert, AlertView), ApiError> {
    let alert = state.alarms.get(id.as_uuid()).await?.ok_or(ApiError::NotFound("alert"))?;
    let target = AlertRef {
        hospital: HospitalId(alert.hospital_id),
        device: DeviceId(alert.device_id),
        patient: alert.patient_id.map(PatientId),
        raised_at: alert.raised_at,
        escalation_level: alert.level(),
    };
    let view = state.policy.alert(&auth.subject(), &target, action).await.map_err(|e| ApiError::policy(e, "alert"))?;
    Ok((alert, view))
}

fn shown(alert: impl Into<AlertOut>, view: AlertView) -> AlertOut {
    match view {
        AlertView::Full => alert.into(),
        AlertView::Administrative => alert.into().administrative(),
    }
}

/// Audits an action on an alert (who, what, which patient and device, through REST).
async fn audit_action(
    state: &ApiState,
    auth: &BearerAuth,
    alert: &nc_alarms::Alert,
    action: &str,
    detail: Option<serde_json::Value>,
) -> std::result::Result<(), ApiError> {
    let mut d = serde_json::json!({"alertId": alert.id, "code": alert.code, "action": action});
    if let (Some(extra), Some(map)) = (detail, d.as_object_mut()) {
        map.extend(extra.as_object().cloned().unwrap_or_default());
    }
    audit::record_with(
        &state.db,
        audit::Access {
            subject: &auth.subject(),
            action: AuditAction::Update,
            resource: "alert",
            patient: alert.patient_id.map(PatientId),
            device: Some(DeviceId(alert.device_id)),
            interface: Interface::Rest,
            client_addr: None,
        },
        Some(d),
    )
    .await?;
    Ok(())
}

#[OpenApi(tag = "Tag::Alerts")]
impl AlertsApi {
    /// Alerts you may see, newest first: those of the devices in your care (a technician's
    /// within its windows, a patient's own), and those escalated to your tier (doctors:
    /// tier 2 of their ward or hospital; admins: tier 3, in the administrative view without
    /// patient, values or clinical message). Narrowing the list is a read of what it
    /// narrows to: `patientId` needs the right to read that patient (403 for admins, who
    /// read no clinical data), `deviceId` the right to see that device (404 for another
    /// hospital's).
    #[oai(path = "/api/alerts", method = "get", operation_id = "listAlerts")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        /// Only alerts in this state.
        #[oai(name = "state")]
        state_filter: Query<Option<AlertState>>,
        /// Only alerts that need attention: not cleared, or latched (a high-priority alert that
        /// cleared by itself before anyone acknowledged it).
        #[oai(name = "openOnly")]
        open_only: Query<Option<bool>>,
        #[oai(name = "deviceId")] device_id: Query<Option<DeviceId>>,
        #[oai(name = "patientId")] patient_id: Query<Option<PatientId>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<u64>>,
        #[oai(validator(maximum(value = "1000000000")))] offset: Query<Option<u64>>,
    ) -> ApiResult<Json<AlertPage>> {
        let (limit, offset) = page(limit.0, offset.0)?;
        let filter = AlertFilter { device: device_id.0, patient: patient_id.0 };
        let scope =
            state.policy.alert_scope(&auth.subject(), filter).await.map_err(|(what, e)| ApiError::policy(e, what))?;
        let filter = nc_alarms::reads::ListFilter { state: state_filter.0, open_only: open_only.0 == Some(true) };
        let (items, total) = state.alarms.list(&scope, filter, limit, offset).await?;
        let items = items.into_iter().map(|a| shown(a, scope.view())).collect();
        Ok(Json(AlertPage { items, total, limit, offset }))
    }

    /// One alert, with everyone it was sent to so far (tier, when, whether reachable then).
    #[oai(path = "/api/alerts/:alertId", method = "get", operation_id = "getAlert")]
    async fn get(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "alertId")] alert_id: Path<AlertId>,
    ) -> ApiResult<Json<AlertDetail>> {
        let (alert, view) = alert_for(&state, &auth, alert_id.0, AlertAction::Read).await?;
        let notified = state.alarms.notified(alert.id).await?.into_iter().map(NotifiedOut::from).collect();
        Ok(Json(AlertDetail { alert: shown(alert, view), notified }))
    }

    /// An alert's full history, oldest first: raised, notified (to whom, who was reachable),
    /// escalated (tier), unreachable, acknowledged, snoozed (by whom, why, until when),
    /// re-alerted, cleared (by whom or why).
    #[oai(path = "/api/alerts/:alertId/history", method = "get", operation_id = "getAlertHistory")]
    async fn history(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "alertId")] alert_id: Path<AlertId>,
    ) -> ApiResult<Json<Vec<AlertHistoryEntry>>> {
        let (alert, view) = alert_for(&state, &auth, alert_id.0, AlertAction::Read).await?;
        let mut entries: Vec<AlertHistoryEntry> =
            state.alarms.history(alert.id).await?.into_iter().filter_map(AlertHistoryEntry::from_entry).collect();
        if view == AlertView::Administrative {
            for e in &mut entries {
                e.reason = e.reason.take().filter(|_| e.event != AlertEventKind::Snoozed);
            }
        }
        Ok(Json(entries))
    }

    /// Acknowledge an alert: you take it on. Its escalation stops (and a snooze ends); the
    /// condition keeps being tracked, and the alert clears when it ends. A latched alert
    /// (cleared by itself before anyone acknowledged it) is acknowledged too. The device's
    /// care team, a doctor it escalated to (tier 2), or an admin at tier 3. Acknowledging
    /// twice is harmless; 409 `already_cleared` for a cleared alert that is not latched.
    #[oai(path = "/api/alerts/:alertId/acknowledge", method = "post", operation_id = "acknowledgeAlert")]
    async fn acknowledge(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "alertId")] alert_id: Path<AlertId>,
    ) -> ApiResult<Json<AlertOut>> {
        let (alert, view) = alert_for(&state, &auth, alert_id.0, AlertAction::Acknowledge).await?;
        let updated = state.alarms.acknowledge(alert.id, &auth.0).await?;
        audit_action(&state, &auth, &updated, "acknowledge", None).await?;
        Ok(Json(shown(updated, view)))
    }

    /// Snooze (silence) an alert for a while, with a reason: no re-notification and no
    /// escalation meanwhile; if it is still present when the snooze ends, it re-alerts
    /// (needs acknowledging again, and escalates again if nobody does). Snoozing again
    /// replaces the snooze. The care team or a doctor it escalated to. 409
    /// `already_cleared` for a cleared alert; 422 for a length over the service's maximum.
    #[oai(path = "/api/alerts/:alertId/snooze", method = "post", operation_id = "snoozeAlert")]
    async fn snooze(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "alertId")] alert_id: Path<AlertId>,
        body: Json<SnoozeIn>,
    ) -> ApiResult<Json<AlertOut>> {
        let (alert, view) = alert_for(&state, &auth, alert_id.0, AlertAction::Snooze).await?;
        let updated = state.alarms.snooze(alert.id, &auth.0, body.0.minutes, &body.0.reason).await?;
        let detail = serde_json::json!({"minutes": body.0.minutes, "reason": body.0.reason.trim(), "until": updated.snoozed_until});
        audit_action(&state, &auth, &updated, "snooze", Some(detail)).await?;
        Ok(Json(shown(updated, view)))
    }

    /// Clear an alert by hand: a technical alarm at any time (it is raised again only once
    /// its condition has ended and recurs); a physiological alarm only while its value is
    /// back inside its limit (`inRangeSince` set) — one whose condition persists answers
    /// 409 `condition_persists` (acknowledge or snooze it instead). The care team or a
    /// doctor it escalated to.
    #[oai(path = "/api/alerts/:alertId/clear", method = "post", operation_id = "clearAlert")]
    async fn clear(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "alertId")] alert_id: Path<AlertId>,
    ) -> ApiResult<Json<AlertOut>> {
        let (alert, view) = alert_for(&state, &auth, alert_id.0, AlertAction::Clear).await?;
        let updated = state.alarms.clear_by_hand(alert.id, &auth.0).await?;
        audit_action(&state, &auth, &updated, "clear", None).await?;
        Ok(Json(shown(updated, view)))
    }

    /// Your hospital's escalation policy: per priority, how long an alert may stay
    /// unacknowledged before it escalates, and the tiers it escalates to (2: the doctors of
    /// the device's ward, or of the hospital when it has none; 3: the admins). Without a
    /// policy of its own, the service's defaults: high after 60 s to tier 2 then 3, medium
    /// after 180 s, low never. Staff.
    #[oai(path = "/api/alerts/escalation-policy", method = "get", operation_id = "getEscalationPolicy")]
    async fn escalation_policy(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
    ) -> ApiResult<Json<EscalationPolicyOut>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ReadAlarmPolicy)?;
        Ok(Json(state.alarms.escalation_policy(auth.0.hospital).await?.into()))
    }

    /// Set your hospital's escalation policy (admins; audited with the old and the new
    /// policy). Alerts already scheduled keep their next step's time; the tiers after it
    /// follow the new policy.
    #[oai(path = "/api/alerts/escalation-policy", method = "put", operation_id = "setEscalationPolicy")]
    async fn set_escalation_policy(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<EscalationPolicyIn>,
    ) -> ApiResult<Json<EscalationPolicyOut>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        let rule = |field: &'static str, r: &EscalationRuleDto| {
            let rule = nc_alarms::EscalationRule { after_seconds: r.after_seconds, tiers: r.tiers.clone() };
            match rule.problem() {
                Some(p) => Err(ApiError::field(field, p)),
                None => Ok(rule),
            }
        };
        let policy = nc_alarms::EscalationPolicy {
            high: rule("high", &body.0.high)?,
            medium: rule("medium", &body.0.medium)?,
            low: rule("low", &body.0.low)?,
            ..Default::default()
        };
        let before = EscalationPolicyOut::from(state.alarms.escalation_policy(auth.0.hospital).await?);
        policy.store(state.ingest.pool(), auth.0.hospital, auth.0.id).await?;
        let after = EscalationPolicyOut::from(state.alarms.escalation_policy(auth.0.hospital).await?);
        let json = |p: &EscalationPolicyOut| {
            let r = |r: &EscalationRuleDto| serde_json::json!({"afterSeconds": r.after_seconds, "tiers": r.tiers});
            serde_json::json!({"high": r(&p.high), "medium": r(&p.medium), "low": r(&p.low)})
        };
        audit::record_with(
            &state.db,
            audit::Access {
                subject: &auth.subject(),
                action: AuditAction::Update,
                resource: "alert_escalation_policy",
                patient: None,
                device: None,
                interface: Interface::Rest,
                client_addr: None,
            },
            Some(serde_json::json!({"before": json(&before), "after": json(&after)})),
        )
        .await?;
        Ok(Json(after))
    }

    /// Your unit's alarm burden over `[from, to)` (default: the last 30 days; at most 366
    /// days): alarms per treatment hour by priority and condition, share acknowledged,
    /// median and p90 time to acknowledge, share that cleared by themselves within 30 s
    /// (nuisance), escalations per tier, and the machines with most alarms. Computed in SQL
    /// over the stored alerts, their history and the treatment sessions. Doctors and admins
    /// of the hospital; filtering by a patient needs the right to read that patient.
    #[oai(path = "/api/alerts/burden", method = "get", operation_id = "getAlarmBurden")]
    #[allow(clippy::too_many_arguments)]
    async fn burden(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(validator(custom = "crate::validate::Time"))] from: Query<Option<DateTime<Utc>>>,
        #[oai(validator(custom = "crate::validate::Time"))] to: Query<Option<DateTime<Utc>>>,
        /// Only the devices of this ward.
        #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
        ward: Query<Option<String>>,
        #[oai(name = "deviceId")] device_id: Query<Option<DeviceId>>,
        #[oai(name = "patientId")] patient_id: Query<Option<PatientId>>,
    ) -> ApiResult<Json<BurdenOut>> {
        let subject = auth.subject();
        state.policy.hospital(&subject, auth.0.hospital, HospitalAction::ViewAlarmBurden)?;
        let to = to.0.unwrap_or_else(Utc::now);
        let from = from.0.unwrap_or(to - Duration::days(30));
        if from >= to {
            return Err(ApiError::field("from", "must be before to").into());
        }
        if to - from > Duration::days(366) {
            return Err(ApiError::field("from", "the range is at most 366 days").into());
        }
        if let Some(d) = device_id.0 {
            state.allowed_device(&subject, d, DeviceAction::View).await?;
        }
        if let Some(p) = patient_id.0 {
            state.allowed_patient(&subject, p, PatientAction::Read).await?;
        }
        let filter = nc_alarms::burden::BurdenFilter {
            hospital: auth.0.hospital,
            from,
            to,
            ward: ward.0,
            device: device_id.0,
            patient: patient_id.0,
        };
        let burden = state.alarms.burden(&filter).await?;
        Ok(Json(BurdenOut::new(from, to, burden)))
    }
}
