//! `/api/alerts/alert-manager`: where a hospital's alarms are reported to its alert manager
//! (IHE PCD ACM: PCD-04 over MLLP, see `alarms::acm`), set by its admins and audited.

use nc_access::HospitalAction;
use nc_domain::AuditAction;
use nc_domain::UserId;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::error::{ApiError, ApiResult, NoContent};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

/// A hospital's alert manager.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertManagerDto {
    /// `host:port` of its MLLP listener (HL7 v2 over TCP).
    #[oai(validator(min_length = 3, max_length = 255, custom = "crate::validate::NoNul"))]
    pub address: String,
    /// MSH-5, the receiving application (default `ACM`).
    #[oai(default = "default_app", validator(min_length = 1, max_length = 64, custom = "crate::validate::NoNul"))]
    pub receiving_application: String,
    /// MSH-6, the receiving facility.
    #[oai(default, validator(max_length = 64, custom = "crate::validate::NoNul"))]
    pub receiving_facility: String,
    /// Whether reports carry the patient (PID: the patient number and name) and the value
    /// that crossed its limit. Off unless the hospital allows patient data on its paging
    /// system: reports then carry the machine, its bay, the alarm's priority and type.
    #[oai(default)]
    pub include_patient: bool,
    /// MLLP over TLS: the manager's certificate is checked against `NEPHROCARE_ACM_CA` (or
    /// the system's certificates) and the address's host.
    #[oai(default)]
    pub tls: bool,
    /// Reports are sent only while enabled.
    #[oai(default = "default_enabled")]
    pub enabled: bool,
}

fn default_app() -> String {
    "ACM".into()
}

fn default_enabled() -> bool {
    true
}

impl From<nc_alarms::acm::AlertManager> for AlertManagerDto {
    fn from(m: nc_alarms::acm::AlertManager) -> Self {
        AlertManagerDto {
            address: m.address,
            receiving_application: m.receiving_application,
            receiving_facility: m.receiving_facility,
            include_patient: m.include_patient,
            tls: m.tls,
            enabled: m.enabled,
        }
    }
}

/// One of the alert manager's recipients (a person with a pager or phone there) and who they
/// are here: a status from the alert manager that they accepted an alarm acknowledges it as
/// this user.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct AlertManagerRecipient {
    /// Their id at the alert manager (PCD-05 PRT-5).
    pub recipient_id: String,
    pub user_id: UserId,
}

/// Who an alert manager's recipient is here.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecipientUser {
    pub user_id: UserId,
}

/// Where an alarm goes when its last tier reached nobody (and nobody further): at least one
/// of a unit e-mail address (priority, condition, machine, bay and a link; never patient
/// data) and a recipient at the alert manager (e.g. the charge nurse's phone; needs an alert
/// manager). Both empty: none (the alarm is then only logged as undelivered).
#[derive(Object, Debug, Clone, PartialEq, Default)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlarmFallbackDto {
    #[oai(validator(max_length = 320, custom = "crate::validate::Email"))]
    pub email: Option<String>,
    #[oai(validator(min_length = 1, max_length = 128, custom = "crate::validate::NoNul"))]
    pub acm_recipient: Option<String>,
}

/// Whether you get your alarms by e-mail too.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlarmEmailDto {
    /// On: every alarm sent to you (raised for your machines, escalated or re-alerted to
    /// your tier) also comes by e-mail to your account's address — priority, condition,
    /// machine, bay and a link, never patient data; the SMTP server's acceptance counts as
    /// reaching you, so escalation waits for its timer.
    pub enabled: bool,
}

pub struct AlertManagerApi;

#[OpenApi(tag = "Tag::Alerts")]
impl AlertManagerApi {
    /// Your hospital's alert manager (admins), 404 when none is set.
    #[oai(path = "/api/alerts/alert-manager", method = "get", operation_id = "getAlertManager")]
    async fn get(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<Json<AlertManagerDto>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        match state.alarms.alert_manager(auth.0.hospital).await? {
            Some(m) => Ok(Json(m.into())),
            None => Err(ApiError::NotFound("no alert manager is set").into()),
        }
    }

    /// Set your hospital's alert manager (admins; audited with the old and the new
    /// setting). Every phase of every alarm of the hospital (raised, escalated,
    /// re-alerted, snoozed, acknowledged, cleared) is then reported to it as an IHE PCD-04
    /// over MLLP, in order per alarm, retried until it acknowledges; each attempt is in
    /// the alarm's history.
    #[oai(path = "/api/alerts/alert-manager", method = "put", operation_id = "setAlertManager")]
    async fn set(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<AlertManagerDto>,
    ) -> ApiResult<Json<AlertManagerDto>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        let m = body.0;
        let before = state.alarms.alert_manager(auth.0.hospital).await?;
        let manager = nc_alarms::acm::AlertManager {
            address: m.address,
            receiving_application: m.receiving_application,
            receiving_facility: m.receiving_facility,
            include_patient: m.include_patient,
            tls: m.tls,
            enabled: m.enabled,
        };
        state.alarms.set_alert_manager(auth.0.hospital, Some(&manager), auth.0.id).await?;
        auth.audit_change(
            &state,
            AuditAction::Update,
            "alert_manager",
            serde_json::json!({"before": before, "after": manager}),
        )
        .await?;
        Ok(Json(manager.into()))
    }

    /// Whether you get your alarms by e-mail too (doctors, technicians, admins).
    #[oai(path = "/api/alerts/email-preference", method = "get", operation_id = "getAlarmEmailPreference")]
    async fn get_email(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<Json<AlarmEmailDto>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ReadAlarmPolicy)?;
        Ok(Json(AlarmEmailDto { enabled: state.alarms.alarm_email(auth.0.id).await? }))
    }

    /// Choose whether you get your alarms by e-mail too (your own setting; audited).
    #[oai(path = "/api/alerts/email-preference", method = "put", operation_id = "setAlarmEmailPreference")]
    async fn set_email(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<AlarmEmailDto>,
    ) -> ApiResult<Json<AlarmEmailDto>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ReadAlarmPolicy)?;
        state.alarms.set_alarm_email(auth.0.id, body.0.enabled).await?;
        auth.audit_change(
            &state,
            AuditAction::Update,
            "alarm_email_preference",
            serde_json::json!({"enabled": body.0.enabled}),
        )
        .await?;
        Ok(body)
    }

    /// Your hospital's unit fallback for alarms that reach nobody (admins; empty when unset).
    #[oai(path = "/api/alerts/fallback", method = "get", operation_id = "getAlarmFallback")]
    async fn get_fallback(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
    ) -> ApiResult<Json<AlarmFallbackDto>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        let f = state.alarms.fallback(auth.0.hospital).await?;
        Ok(Json(f.map(|f| AlarmFallbackDto { email: f.email, acm_recipient: f.acm_recipient }).unwrap_or_default()))
    }

    /// Set your hospital's unit fallback (admins; audited): when the last tier of an alarm
    /// (or tier 1 of one that does not escalate) has nobody reachable, it is sent there
    /// through the outbox, and the alarm's history records `fallback`.
    #[oai(path = "/api/alerts/fallback", method = "put", operation_id = "setAlarmFallback")]
    async fn set_fallback(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<AlarmFallbackDto>,
    ) -> ApiResult<Json<AlarmFallbackDto>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        let before = state.alarms.fallback(auth.0.hospital).await?;
        let f =
            nc_alarms::fallback::Fallback { email: body.0.email.clone(), acm_recipient: body.0.acm_recipient.clone() };
        state.alarms.set_fallback(auth.0.hospital, &f, auth.0.id).await?;
        auth.audit_change(
            &state,
            AuditAction::Update,
            "alarm_fallback",
            serde_json::json!({"before": before, "after": f}),
        )
        .await?;
        Ok(Json(body.0))
    }

    /// The alert manager's recipients mapped to your hospital's people (admins).
    #[oai(path = "/api/alerts/alert-manager/recipients", method = "get", operation_id = "listAlertManagerRecipients")]
    async fn recipients(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
    ) -> ApiResult<Json<Vec<AlertManagerRecipient>>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        let mapped = state.alarms.alert_manager_recipients(auth.0.hospital).await?;
        Ok(Json(
            mapped.into_iter().map(|(recipient_id, user_id)| AlertManagerRecipient { recipient_id, user_id }).collect(),
        ))
    }

    /// Map the alert manager's recipient `recipientId` to one of your hospital's people
    /// (admins; audited). When the alert manager reports that this recipient accepted an
    /// alarm (PCD-05), the alarm is acknowledged here as that person, if they may
    /// acknowledge it.
    #[oai(
        path = "/api/alerts/alert-manager/recipients/:recipientId",
        method = "put",
        operation_id = "mapAlertManagerRecipient"
    )]
    async fn map_recipient(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "recipientId", validator(min_length = 1, max_length = 128, custom = "crate::validate::NoNul"))]
        recipient_id: Path<String>,
        body: Json<RecipientUser>,
    ) -> ApiResult<Json<AlertManagerRecipient>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        let user =
            state.policy.person(&auth.subject(), body.0.user_id).await.map_err(|e| ApiError::policy(e, "user"))?;
        state.alarms.map_alert_manager_recipient(auth.0.hospital, &recipient_id.0, Some(user.id)).await?;
        let mapped = AlertManagerRecipient { recipient_id: recipient_id.0, user_id: user.id };
        auth.audit_change(
            &state,
            AuditAction::Update,
            "alert_manager_recipient",
            serde_json::json!({"recipientId": mapped.recipient_id, "userId": user.id}),
        )
        .await?;
        Ok(Json(mapped))
    }

    /// Remove a recipient's mapping (admins; audited).
    #[oai(
        path = "/api/alerts/alert-manager/recipients/:recipientId",
        method = "delete",
        operation_id = "unmapAlertManagerRecipient"
    )]
    async fn unmap_recipient(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "recipientId", validator(min_length = 1, max_length = 128, custom = "crate::validate::NoNul"))]
        recipient_id: Path<String>,
    ) -> ApiResult<NoContent> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        if !state.alarms.map_alert_manager_recipient(auth.0.hospital, &recipient_id.0, None).await? {
            return Err(ApiError::NotFound("recipient").into());
        }
        auth.audit_change(
            &state,
            AuditAction::Update,
            "alert_manager_recipient",
            serde_json::json!({"recipientId": recipient_id.0, "userId": null}),
        )
        .await?;
        Ok(NoContent::Done)
    }

    /// Stop reporting to an alert manager (admins; audited).
    #[oai(path = "/api/alerts/alert-manager", method = "delete", operation_id = "deleteAlertManager")]
    async fn delete(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<NoContent> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        let before = state.alarms.alert_manager(auth.0.hospital).await?;
        state.alarms.set_alert_manager(auth.0.hospital, None, auth.0.id).await?;
        auth.audit_change(
            &state,
            AuditAction::Update,
            "alert_manager",
            serde_json::json!({"before": before, "after": null}),
        )
        .await?;
        Ok(NoContent::Done)
    }
}
