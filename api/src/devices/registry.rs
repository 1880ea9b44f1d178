//! `/api/devices/*`: the hospital's dialysis machines, their patients and sessions, device
//! registration and secret rotation, technician assignment and temporary hand-over.

use chrono::Utc;
use nc_access::{audit, DeviceAction, HospitalAction};
use nc_care::devices::{self, assignments};
use nc_domain::*;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::accounts::users::{assign, visible_user};
use crate::dto::page;
use crate::dto::{AssignmentOut, DeviceOut, DevicePage, GrantOut, PatientOut, SessionPage};
use crate::error::{ApiError, ApiResult, NoContent};
use crate::security::{client_ip, BearerAuth};
use crate::state::ApiState;
use crate::Tag;

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterDeviceRequest {
    /// The physical device id printed on the machine: letters, digits, `.`, `_`, `-`.
    #[oai(validator(max_length = 64, custom = "crate::validate::NoNul"))]
    pub serial: String,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub name: String,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub model: Option<String>,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub location: Option<String>,
    /// The ward the machine stands in: escalation tier 2 of its alarms is that ward's doctors.
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub ward: Option<String>,
    #[oai(validator(custom = "crate::validate::Time"))]
    pub maintenance_due_at: Option<chrono::DateTime<Utc>>,
}

/// A device's descriptive fields (all replaced).
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDeviceRequest {
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub name: String,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub model: Option<String>,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub location: Option<String>,
    /// The ward the machine stands in (null: none; tier 2 of its alarms is then every
    /// doctor of the hospital).
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub ward: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct DeviceCredentials {
    pub device: DeviceOut,
    /// The device's MQTT/HTTP secret. Shown once: it is stored only as a hash.
    pub secret: String,
}

#[derive(ApiResponse)]
pub enum DeviceCreated {
    #[oai(status = 201)]
    Created(Json<DeviceCredentials>),
}

#[derive(Object, Debug)]
#[oai(deny_unknown_fields)]
pub struct StatusChange {
    pub status: DeviceStatus,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignTechnicianRequest {
    pub device_id: DeviceId,
    pub technician_id: UserId,
}

#[derive(ApiResponse)]
pub enum AssignmentCreated {
    #[oai(status = 201)]
    Created(Json<AssignmentOut>),
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemporaryAccessRequest {
    pub device_id: DeviceId,
    /// Another technician of your hospital.
    pub technician_id: UserId,
    /// How long the hand-over lasts: 1 minute to 7 days (10080).
    #[oai(validator(minimum(value = "1"), maximum(value = "10080")))]
    pub duration_minutes: i64,
    #[oai(validator(max_length = 1000, custom = "crate::validate::NoNul"))]
    pub reason: Option<String>,
}

#[derive(ApiResponse)]
pub enum GrantCreated {
    /// Granted: the technician may read the device until `expiresAt` (or revocation).
    #[oai(status = 201)]
    Created(Json<GrantOut>),
}

pub struct DevicesApi;

#[OpenApi(tag = "Tag::Devices")]
impl DevicesApi {
    /// Devices of your hospital (patients: only their own), by name.
    #[oai(path = "/api/devices", method = "get", operation_id = "listDevices")]
    async fn list(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        /// Only devices in this status.
        status: Query<Option<DeviceStatus>>,
        /// Only devices whose clinical data you may read (assigned or handed over to you).
        mine: Query<Option<bool>>,
        /// Page size, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// Items to skip (at most 1000000000).
        #[oai(validator(maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
    ) -> ApiResult<Json<DevicePage>> {
        let subject = auth.subject();
        let scope = state
            .policy
            .device_list_scope(&subject, mine.0 == Some(true))
            .await
            .map_err(|e| ApiError::policy(e, "device"))?;
        let (limit, offset) = page(limit.0, offset.0)?;
        let (items, total) = devices::list(&state.db, auth.0.hospital, scope, status.0, limit, offset).await?;
        Ok(Json(DevicePage { items: items.into_iter().map(Into::into).collect(), total, limit, offset }))
    }

    /// Register a device (admins). Its secret is returned once and stored only as a hash.
    #[oai(path = "/api/devices", method = "post", operation_id = "registerDevice")]
    async fn register(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<RegisterDeviceRequest>,
    ) -> ApiResult<DeviceCreated> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ManageDevices)?;
        let b = body.0;
        let new = devices::NewDevice {
            serial: b.serial,
            name: b.name,
            model: b.model,
            location: b.location,
            ward: b.ward,
            maintenance_due_at: b.maintenance_due_at,
        };
        let (device, secret) = devices::register(&state.db, auth.0.hospital, new).await?;
        Ok(DeviceCreated::Created(Json(DeviceCredentials { device: device.into(), secret })))
    }

    /// One device.
    #[oai(path = "/api/devices/:deviceId", method = "get", operation_id = "getDevice")]
    async fn get(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
    ) -> ApiResult<Json<DeviceOut>> {
        let device = state.allowed_device(&auth.subject(), device_id.0, DeviceAction::View).await?;
        Ok(Json(device.into()))
    }

    /// Change a device's name, model, location and ward (admins).
    #[oai(path = "/api/devices/:deviceId", method = "put", operation_id = "updateDevice")]
    async fn update(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
        body: Json<UpdateDeviceRequest>,
    ) -> ApiResult<Json<DeviceOut>> {
        let device = state.allowed_device(&auth.subject(), device_id.0, DeviceAction::Manage).await?;
        let b = body.0;
        let description = devices::Description { name: b.name, model: b.model, location: b.location, ward: b.ward };
        Ok(Json(devices::describe(&state.db, device, description).await?.into()))
    }

    /// Change a device's status.
    ///
    /// `inactive` retires it (it can no longer connect), `maintenance` marks it out of
    /// service. Admins make any change; the device's
    /// technicians (assigned, or holding a hand-over) switch it between `active` and
    /// `maintenance` only (403 for anything to or from `inactive`).
    #[oai(path = "/api/devices/:deviceId/status", method = "put", operation_id = "setDeviceStatus")]
    async fn set_status(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
        body: Json<StatusChange>,
    ) -> ApiResult<Json<DeviceOut>> {
        let device = state
            .policy
            .device_status_change(&auth.subject(), device_id.0, body.status)
            .await
            .map_err(|e| ApiError::policy(e, "device"))?;
        Ok(Json(devices::set_status(&state.db, device, body.status).await?.into()))
    }

    /// Issue a new secret for a device (admins); the old one stops working at once.
    #[oai(path = "/api/devices/:deviceId/rotate-secret", method = "post", operation_id = "rotateDeviceSecret")]
    async fn rotate(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
    ) -> ApiResult<Json<DeviceCredentials>> {
        let device = state.allowed_device(&auth.subject(), device_id.0, DeviceAction::Manage).await?;
        let (device, secret) = devices::rotate_secret(&state.db, device).await?;
        Ok(Json(DeviceCredentials { device: device.into(), secret }))
    }

    /// The patients on a device: assigned to it now, or treated on it in a session.
    /// Clinical data: doctors and technicians of the device, and the patient themself.
    #[oai(path = "/api/devices/:deviceId/patients", method = "get", operation_id = "listDevicePatients")]
    async fn patients(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
    ) -> ApiResult<Json<Vec<PatientOut>>> {
        let subject = auth.subject();
        let (device, view) =
            state.policy.clinical_device(&subject, device_id.0).await.map_err(|e| ApiError::policy(e, "device"))?;
        let scope = state.policy.read_scope(&subject).await?;
        let mut found = devices::patients_on(&state.db, &device, &scope).await?;
        // A patient sees only themself, even on their own device.
        found.retain(|p| view.shows(Some(p.id)));
        audit::record_each(
            &state.db,
            audit::Access {
                subject: &subject,
                action: AuditAction::Read,
                resource: "device.patients",
                patient: None,
                device: Some(device.id),
                interface: Interface::Rest,
                client_addr: client_ip(req).map(|ip| ip.to_string()),
            },
            found.iter().map(|p| (Some(p.id), Some(device.id))),
        )
        .await?;
        Ok(Json(found.into_iter().map(Into::into).collect()))
    }

    /// Treatment sessions on a device, newest first.
    #[oai(path = "/api/devices/:deviceId/sessions", method = "get", operation_id = "listDeviceSessions")]
    #[allow(clippy::too_many_arguments)]
    async fn sessions(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
        /// Only sessions in this status.
        status: Query<Option<SessionStatus>>,
        /// Page size, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// Items to skip (at most 1000000000).
        #[oai(validator(maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
    ) -> ApiResult<Json<SessionPage>> {
        let subject = auth.subject();
        let (device, view) =
            state.policy.clinical_device(&subject, device_id.0).await.map_err(|e| ApiError::policy(e, "device"))?;
        let (limit, offset) = page(limit.0, offset.0)?;
        let scope = state.policy.read_scope(&subject).await?;
        let (items, total) = devices::sessions(&state.db, device.id, view, &scope, status.0, limit, offset).await?;
        audit::record(
            &state.db,
            audit::Access {
                subject: &subject,
                action: AuditAction::Read,
                resource: "device.sessions",
                patient: None,
                device: Some(device.id),
                interface: Interface::Rest,
                client_addr: client_ip(req).map(|ip| ip.to_string()),
            },
        )
        .await?;
        Ok(Json(SessionPage { items: items.into_iter().map(Into::into).collect(), total, limit, offset }))
    }

    /// Assign a technician of your hospital to a device (admins).
    #[oai(path = "/api/devices/assign-technician", method = "post", operation_id = "assignTechnician")]
    async fn assign_technician(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<AssignTechnicianRequest>,
    ) -> ApiResult<AssignmentCreated> {
        Ok(AssignmentCreated::Created(Json(
            assign(&state, &auth, body.technician_id, body.device_id, Some(Role::Technician)).await?,
        )))
    }

    /// Hand a device over to another technician of your hospital for a bounded time
    /// (technicians assigned to the device). Expiry is enforced at every access decision.
    #[oai(path = "/api/devices/temporary-access", method = "post", operation_id = "grantTemporaryAccess")]
    async fn grant(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<TemporaryAccessRequest>,
    ) -> ApiResult<GrantCreated> {
        let device = state.allowed_device(&auth.subject(), body.device_id, DeviceAction::GrantAccess).await?;
        let b = body.0;
        let hand_over =
            assignments::HandOver { to: b.technician_id, by: auth.0.id, minutes: b.duration_minutes, reason: b.reason };
        hand_over.check()?;
        let grantee = visible_user(&state, &auth.subject(), b.technician_id).await?;
        Ok(GrantCreated::Created(Json(assignments::hand_over(&state.db, &device, &grantee, hand_over).await?.into())))
    }

    /// Revoke a temporary hand-over: by the technician who granted it, the one who received
    /// it, or an admin of the hospital. Access ends at once.
    #[oai(path = "/api/devices/temporary-access/:grantId", method = "delete", operation_id = "revokeTemporaryAccess")]
    async fn revoke(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "grantId")] grant_id: Path<GrantId>,
    ) -> ApiResult<NoContent> {
        let grant = assignments::grant(&state.db, grant_id.0).await?;
        nc_access::policy::decide_revoke_grant(&auth.subject(), grant.hospital_id, grant.granted_by, grant.granted_to)
            .map_err(|e| ApiError::policy(e.into(), "grant"))?;
        assignments::revoke(&state.db, &grant, auth.0.id).await?;
        Ok(NoContent::Done)
    }
}
