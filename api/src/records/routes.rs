//! The EMR endpoint of treatment records: read, set, remove (admins, audited).

use nc_access::HospitalAction;
use nc_domain::AuditAction;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::error::{ApiError, ApiResult, NoContent};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

/// Where a hospital's treatment records go.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmrEndpointDto {
    /// `host:port` of the EMR's MLLP listener (HL7 v2 over TCP).
    #[oai(validator(min_length = 3, max_length = 255, custom = "crate::validate::NoNul"))]
    pub address: String,
    /// MSH-5 of the records (default `EMR`).
    #[oai(default = "default_app", validator(min_length = 1, max_length = 64, custom = "crate::validate::NoNul"))]
    pub receiving_application: String,
    /// MSH-6 of the records.
    #[oai(default, validator(max_length = 64, custom = "crate::validate::NoNul"))]
    pub receiving_facility: String,
    /// MLLP over TLS: the EMR's certificate is checked against `NEPHROCARE_ACM_CA` (or the
    /// system's certificates) and the address's host.
    #[oai(default)]
    pub tls: bool,
    /// Records are queued only while enabled.
    #[oai(default = "default_enabled")]
    pub enabled: bool,
}

fn default_app() -> String {
    "EMR".into()
}

fn default_enabled() -> bool {
    true
}

impl From<nc_records::EmrEndpoint> for EmrEndpointDto {
    fn from(e: nc_records::EmrEndpoint) -> Self {
        EmrEndpointDto {
            address: e.address,
            receiving_application: e.receiving_application,
            receiving_facility: e.receiving_facility,
            tls: e.tls,
            enabled: e.enabled,
        }
    }
}

impl From<EmrEndpointDto> for nc_records::EmrEndpoint {
    fn from(e: EmrEndpointDto) -> Self {
        nc_records::EmrEndpoint {
            address: e.address,
            receiving_application: e.receiving_application,
            receiving_facility: e.receiving_facility,
            tls: e.tls,
            enabled: e.enabled,
        }
    }
}

pub struct RecordsApi;

#[OpenApi(tag = "Tag::Gateways")]
impl RecordsApi {
    /// Where your hospital's treatment records go (admins), 404 when nowhere.
    #[oai(path = "/api/records/emr", method = "get", operation_id = "getEmrEndpoint")]
    async fn get(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<Json<EmrEndpointDto>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureRecords)?;
        match state.records.emr(auth.0.hospital).await? {
            Some(e) => Ok(Json(e.into())),
            None => Err(ApiError::NotFound("EMR endpoint").into()),
        }
    }

    /// Send your hospital's treatment records to its EMR (admins; audited with the old and
    /// the new setting). Every treatment that ends from now on (completed or interrupted) is
    /// sent as an HL7 v2 `ORU^R01` over MLLP (see docs/hl7.md), in order per patient,
    /// retried until the EMR acknowledges it.
    #[oai(path = "/api/records/emr", method = "put", operation_id = "setEmrEndpoint")]
    async fn set(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<EmrEndpointDto>,
    ) -> ApiResult<Json<EmrEndpointDto>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureRecords)?;
        let before = state.records.emr(auth.0.hospital).await?;
        let after: nc_records::EmrEndpoint = body.0.clone().into();
        state.records.set_emr(auth.0.hospital, Some(&after), auth.0.id).await?;
        let detail = serde_json::json!({"before": before, "after": after});
        auth.audit_change(&state, AuditAction::Update, "emr_endpoint", detail).await?;
        Ok(body)
    }

    /// Stop sending treatment records (admins; audited). Records already queued are parked.
    #[oai(path = "/api/records/emr", method = "delete", operation_id = "deleteEmrEndpoint")]
    async fn delete(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<NoContent> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ConfigureRecords)?;
        let before = state.records.emr(auth.0.hospital).await?.ok_or(ApiError::NotFound("EMR endpoint"))?;
        state.records.set_emr(auth.0.hospital, None, auth.0.id).await?;
        auth.audit_change(&state, AuditAction::Delete, "emr_endpoint", serde_json::json!({"before": before})).await?;
        Ok(NoContent::Done)
    }
}
