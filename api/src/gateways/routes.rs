//! The admin API of device gateways: register (the secret is shown once), list, change,
//! rotate the secret, remove, and the codes a gateway sent that map to nothing. Every call
//! asks the policy (`ManageGateways`, admins) and a gateway of another hospital does not exist.

use chrono::{DateTime, Utc};
use nc_access::HospitalAction;
use nc_domain::{AuditAction, GatewayId};
use nc_gateways::codes::Mapping;
use nc_gateways::{Gateway, GatewaySpec};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::error::{ApiError, ApiResult, NoContent};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

/// One of the gateway's codes mapped to a measurement.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct CodeMappingDto {
    /// OBX-3.3, the coding system the gateway names (e.g. `99VENDOR`, `MDC`).
    #[oai(validator(min_length = 1, max_length = 64, custom = "crate::validate::NoNul"))]
    pub system: String,
    /// OBX-3.1.
    #[oai(validator(min_length = 1, max_length = 64, custom = "crate::validate::NoNul"))]
    pub code: String,
    /// The reading's measurement (`heartRate`, `venousPressure`, `ufRate`, …, see the
    /// `Reading` schema) or `systemStatus`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub measurement: String,
}

/// A gateway as its admins set it.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayIn {
    #[oai(validator(min_length = 1, max_length = 120, custom = "crate::validate::NoNul"))]
    pub name: String,
    /// MSH-3.1 of its messages.
    #[oai(validator(min_length = 1, max_length = 64, custom = "crate::validate::NoNul"))]
    pub sending_application: String,
    /// MSH-4.1 of its messages (empty when it sends none).
    #[oai(default, validator(max_length = 64, custom = "crate::validate::NoNul"))]
    pub sending_facility: String,
    /// Its own codes, checked before the built-in table (MDC, `99NCD`).
    #[oai(default, validator(max_items = 200))]
    pub codes: Vec<CodeMappingDto>,
    /// Connections it may hold at once.
    #[oai(default = "default_connections", validator(minimum(value = "1"), maximum(value = "64")))]
    pub max_connections: u16,
    /// Its messages are refused (AR) while disabled.
    #[oai(default = "default_enabled")]
    pub enabled: bool,
    /// The SHA-256 (64 lower-case hex digits) of the TLS client certificate it connects with
    /// (`openssl x509 -in cert.pem -outform der | sha256sum`): it then authenticates with that
    /// certificate (the listener needs `NEPHROCARE_HL7_TLS_CLIENT_CA`) and MSH-8 is not asked.
    #[oai(validator(pattern = "^[0-9a-f]{64}$"))]
    pub certificate_sha256: Option<String>,
}

fn default_connections() -> u16 {
    4
}

fn default_enabled() -> bool {
    true
}

/// A registered gateway.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct GatewayOut {
    pub id: GatewayId,
    pub name: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub codes: Vec<CodeMappingDto>,
    pub max_connections: u16,
    pub enabled: bool,
    pub certificate_sha256: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Mapping> for CodeMappingDto {
    fn from(m: Mapping) -> Self {
        CodeMappingDto { system: m.system, code: m.code, measurement: m.measurement }
    }
}

impl From<CodeMappingDto> for Mapping {
    fn from(m: CodeMappingDto) -> Self {
        Mapping { system: m.system, code: m.code, measurement: m.measurement }
    }
}

impl From<Gateway> for GatewayOut {
    fn from(g: Gateway) -> Self {
        let s = g.spec;
        GatewayOut {
            id: g.id,
            name: s.name,
            sending_application: s.sending_application,
            sending_facility: s.sending_facility,
            codes: s.codes.into_iter().map(Into::into).collect(),
            max_connections: s.max_connections,
            enabled: s.enabled,
            certificate_sha256: s.certificate_sha256,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

impl From<GatewayIn> for GatewaySpec {
    fn from(g: GatewayIn) -> Self {
        GatewaySpec {
            name: g.name,
            sending_application: g.sending_application,
            sending_facility: g.sending_facility,
            codes: g.codes.into_iter().map(Into::into).collect(),
            max_connections: g.max_connections,
            enabled: g.enabled,
            certificate_sha256: g.certificate_sha256,
        }
    }
}

/// A gateway and the secret it puts in MSH-8.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct GatewayCredentials {
    pub gateway: GatewayOut,
    /// MSH-8 (Security) of every message it sends. Shown once: only its digest is kept.
    pub secret: String,
}

#[derive(ApiResponse)]
pub enum GatewayCreated {
    #[oai(status = 201)]
    Created(Json<GatewayCredentials>),
}

/// A new secret for a gateway.
#[derive(Object, Debug)]
pub struct GatewaySecret {
    /// Shown once; the previous secret no longer works.
    pub secret: String,
}

/// A code a gateway sent that maps to no measurement (its observations were not stored).
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct UnknownCodeOut {
    pub system: String,
    pub code: String,
    pub text: String,
    /// Messages it came in.
    pub seen: i64,
    pub last_seen: DateTime<Utc>,
}

pub struct GatewaysApi;

impl GatewaysApi {
    /// The gateway, if the caller may manage it (a gateway of another hospital: 404).
    async fn visible(state: &ApiState, auth: &BearerAuth, id: GatewayId) -> Result<Gateway, ApiError> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ManageGateways)?;
        let g = state.gateways.get(id).await?.ok_or(ApiError::NotFound("gateway"))?;
        nc_access::policy::decide_visible(&auth.subject(), g.hospital).map_err(|_| ApiError::NotFound("gateway"))?;
        Ok(g)
    }
}

#[OpenApi(tag = "Tag::Gateways")]
impl GatewaysApi {
    /// Your hospital's device gateways (admins).
    #[oai(path = "/api/gateways", method = "get", operation_id = "listGateways")]
    async fn list(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<Json<Vec<GatewayOut>>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ManageGateways)?;
        Ok(Json(state.gateways.list(auth.0.hospital).await?.into_iter().map(Into::into).collect()))
    }

    /// Register a device gateway (admins; audited). Its messages (IHE PCD-01 over MLLP, see
    /// README "Device gateways") carry the returned secret in MSH-8 and this sending
    /// application and facility in MSH-3/MSH-4; the machines it reports for are your
    /// hospital's, named by serial in OBX-18.
    #[oai(path = "/api/gateways", method = "post", operation_id = "createGateway")]
    async fn create(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<GatewayIn>,
    ) -> ApiResult<GatewayCreated> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ManageGateways)?;
        let (g, secret) = state.gateways.create(auth.0.hospital, &body.0.into(), auth.0.id).await?;
        auth.audit_change(
            &state,
            AuditAction::Create,
            "hl7_gateway",
            serde_json::json!({"gateway": g.id, "after": &g}),
        )
        .await?;
        Ok(GatewayCreated::Created(Json(GatewayCredentials { gateway: g.into(), secret })))
    }

    /// One gateway (admins).
    #[oai(path = "/api/gateways/:gatewayId", method = "get", operation_id = "getGateway")]
    async fn get(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "gatewayId")] id: Path<GatewayId>,
    ) -> ApiResult<Json<GatewayOut>> {
        Ok(Json(Self::visible(&state, &auth, id.0).await?.into()))
    }

    /// Change a gateway (admins; audited with the old and the new setting). Its secret stays.
    #[oai(path = "/api/gateways/:gatewayId", method = "put", operation_id = "updateGateway")]
    async fn update(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "gatewayId")] id: Path<GatewayId>,
        body: Json<GatewayIn>,
    ) -> ApiResult<Json<GatewayOut>> {
        let before = Self::visible(&state, &auth, id.0).await?;
        let after = state.gateways.update(id.0, &body.0.into()).await?;
        auth.audit_change(
            &state,
            AuditAction::Update,
            "hl7_gateway",
            serde_json::json!({"gateway": id.0, "before": before, "after": &after}),
        )
        .await?;
        Ok(Json(after.into()))
    }

    /// Issue a new secret (admins; audited): the old one stops working at once.
    #[oai(path = "/api/gateways/:gatewayId/secret", method = "post", operation_id = "rotateGatewaySecret")]
    async fn rotate(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "gatewayId")] id: Path<GatewayId>,
    ) -> ApiResult<Json<GatewaySecret>> {
        Self::visible(&state, &auth, id.0).await?;
        let secret = state.gateways.rotate_secret(id.0).await?;
        auth.audit_change(
            &state,
            AuditAction::Update,
            "hl7_gateway",
            serde_json::json!({"gateway": id.0, "secret": "rotated"}),
        )
        .await?;
        Ok(Json(GatewaySecret { secret }))
    }

    /// Remove a gateway (admins; audited). Its readings stay.
    #[oai(path = "/api/gateways/:gatewayId", method = "delete", operation_id = "deleteGateway")]
    async fn delete(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "gatewayId")] id: Path<GatewayId>,
    ) -> ApiResult<NoContent> {
        let before = Self::visible(&state, &auth, id.0).await?;
        state.gateways.delete(id.0).await?;
        auth.audit_change(
            &state,
            AuditAction::Delete,
            "hl7_gateway",
            serde_json::json!({"gateway": id.0, "before": before}),
        )
        .await?;
        Ok(NoContent::Done)
    }

    /// The codes the gateway sent that map to no measurement, newest first (admins): map them
    /// with `updateGateway`'s `codes` to have them stored.
    #[oai(path = "/api/gateways/:gatewayId/unknown-codes", method = "get", operation_id = "listGatewayUnknownCodes")]
    async fn unknown_codes(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "gatewayId")] id: Path<GatewayId>,
    ) -> ApiResult<Json<Vec<UnknownCodeOut>>> {
        Self::visible(&state, &auth, id.0).await?;
        let codes = state.gateways.unknown_codes(id.0).await?;
        Ok(Json(
            codes
                .into_iter()
                .map(|c| UnknownCodeOut {
                    system: c.system,
                    code: c.code,
                    text: c.text,
                    seen: c.seen,
                    last_seen: c.last_seen,
                })
                .collect(),
        ))
    }
}
