//! `/api/alerts/alert-manager`: where a hospital's alarms are reported to its alert manager
//! (IHE PCD ACM: PCD-04 over MLLP, see `alarms::acm`), set by its admins and audited.

use nc_access::{audit, HospitalAction};
use nc_domain::{AuditAction, Interface};
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
            enabled: m.enabled,
        }
    }
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
        let port = m.address.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
        if !port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) {
            return Err(ApiError::field("address", "must be host:port, e.g. acm.hospital.example:2575").into());
        }
        let before = state.alarms.alert_manager(auth.0.hospital).await?;
        let manager = nc_alarms::acm::AlertManager {
            address: m.address,
            receiving_application: m.receiving_application,
            receiving_facility: m.receiving_facility,
            include_patient: m.include_patient,
            enabled: m.enabled,
        };
        state.alarms.set_alert_manager(auth.0.hospital, Some(&manager), auth.0.id).await?;
        record(&state, &auth, before, Some(&manager)).await?;
        Ok(Json(manager.into()))
    }

    /// Stop reporting to an alert manager (admins; audited).
    #[oai(path = "/api/alerts/alert-manager", method = "delete", operation_id = "deleteAlertManager")]
    async fn delete(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<NoContent> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureAlarms)?;
        let before = state.alarms.alert_manager(auth.0.hospital).await?;
        state.alarms.set_alert_manager(auth.0.hospital, None, auth.0.id).await?;
        record(&state, &auth, before, None).await?;
        Ok(NoContent::Done)
    }
}

async fn record(
    state: &ApiState,
    auth: &BearerAuth,
    before: Option<nc_alarms::acm::AlertManager>,
    after: Option<&nc_alarms::acm::AlertManager>,
) -> Result<(), ApiError> {
    audit::record_with(
        &state.db,
        audit::Access {
            subject: &auth.subject(),
            action: AuditAction::Update,
            resource: "alert_manager",
            patient: None,
            device: None,
            interface: Interface::Rest,
            client_addr: None,
        },
        Some(serde_json::json!({"before": before, "after": after})),
    )
    .await?;
    Ok(())
}
