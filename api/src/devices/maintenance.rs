//! `/api/devices/{deviceId}/maintenance`: the maintenance log of a machine. Recording a
//! maintenance moves the device's `lastMaintenanceAt` and `maintenanceDueAt`, and settles the
//! `maintenance_due` alert at once: cleared when the next due date lies ahead, raised when
//! it has already passed. (A due date that passes later raises it within a minute: the
//! alert engine checks every minute.) Switching a device between `active` and
//! `maintenance` is `setDeviceStatus`.

use chrono::{DateTime, Utc};
use nc_access::DeviceAction;
use nc_care::devices::maintenance;
use nc_domain::*;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::dto::{page, MaintenanceOut, MaintenancePage};
use crate::error::ApiResult;
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// When the maintenance was done (default: now); not in the future.
    #[oai(validator(custom = "crate::validate::Time"))]
    pub performed_at: Option<DateTime<Utc>>,
    /// When the next one is due: after `performedAt`, at most 10 years later.
    #[oai(validator(custom = "crate::validate::Time"))]
    pub next_due_at: DateTime<Utc>,
    /// What was done.
    #[oai(validator(max_length = 4000, custom = "crate::validate::NoNul"))]
    pub notes: Option<String>,
}

#[derive(ApiResponse)]
pub enum MaintenanceRecorded {
    /// Recorded; the device's dates follow it unless a later maintenance was already recorded.
    #[oai(status = 201)]
    Created(Json<MaintenanceOut>),
}

pub struct MaintenanceApi;

#[OpenApi(tag = "Tag::Devices")]
impl MaintenanceApi {
    /// Record a maintenance done on a device (its technicians: assigned, or holding a
    /// hand-over; admins).
    ///
    /// The device's `lastMaintenanceAt` and `maintenanceDueAt` become
    /// this maintenance's, unless one done later is already recorded (then it is only
    /// logged). An open `maintenance_due` alert is cleared when the new due date lies ahead;
    /// one is raised at once when it has already passed.
    #[oai(path = "/api/devices/:deviceId/maintenance", method = "post", operation_id = "recordDeviceMaintenance")]
    async fn record(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
        body: Json<MaintenanceRequest>,
    ) -> ApiResult<MaintenanceRecorded> {
        let device = state.allowed_device(&auth.subject(), device_id.0, DeviceAction::Maintain).await?;
        let b = body.0;
        let done =
            maintenance::Maintenance { performed_at: b.performed_at, next_due_at: b.next_due_at, notes: b.notes };
        let entry = maintenance::record(&state.db, &device, auth.0.id, done).await?;
        if let Err(e) = state.ingest.alerts().check_maintenance_of(Some(device.id)).await {
            // The minutely check settles it.
            tracing::warn!(error = %e, device = %device.id, "maintenance alert check failed");
        }
        Ok(MaintenanceRecorded::Created(Json(entry.into())))
    }

    /// A device's maintenance log, latest first (staff of the hospital).
    #[oai(path = "/api/devices/:deviceId/maintenance", method = "get", operation_id = "listDeviceMaintenance")]
    async fn list(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
        /// Page size, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// Items to skip (at most 1000000000).
        #[oai(validator(maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
    ) -> ApiResult<Json<MaintenancePage>> {
        let device = state.allowed_device(&auth.subject(), device_id.0, DeviceAction::ViewMaintenance).await?;
        let (limit, offset) = page(limit.0, offset.0)?;
        let (items, total) = maintenance::log(&state.db, device.id, limit, offset).await?;
        Ok(Json(MaintenancePage { items: items.into_iter().map(Into::into).collect(), total, limit, offset }))
    }
}
