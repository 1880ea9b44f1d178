//! Devices: the hospital's dialysis machines (registration, descriptive fields, status,
//! secrets), the patients and sessions on them, who is assigned to them and to whom they
//! are handed over ([`assignments`]), and their upkeep ([`maintenance`]).

pub mod assignments;
pub mod maintenance;

use chrono::{DateTime, Utc};
use nc_access::policy::{sessions_in, ClinicalView, DeviceListScope, ReadScope};
use nc_access::secret;
use nc_domain::*;
use nc_entities::{device_sessions, devices, patients};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::fields::{check_name, ward};
use crate::{fetch_page, CareError, CareResult};

/// A page of the devices of `hospital` within the policy's `scope`, by name.
pub async fn list(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    scope: DeviceListScope,
    status: Option<DeviceStatus>,
    limit: u64,
    offset: u64,
) -> CareResult<(Vec<devices::Model>, u64)> {
    let mut query = devices::Entity::find().filter(devices::Column::HospitalId.eq(hospital));
    if let DeviceListScope::Only(ids) = scope {
        query = query.filter(devices::Column::Id.is_in(ids));
    }
    if let Some(s) = status {
        query = query.filter(devices::Column::Status.eq(s));
    }
    let ordered = query.order_by_asc(devices::Column::Name).order_by_asc(devices::Column::Id);
    Ok(fetch_page(db, ordered, limit, offset).await?)
}

/// A machine to register.
pub struct NewDevice {
    /// The physical device id printed on the machine: letters, digits, `.`, `_`, `-`.
    pub serial: String,
    pub name: String,
    pub model: Option<String>,
    pub location: Option<String>,
    pub ward: Option<String>,
    pub maintenance_due_at: Option<DateTime<Utc>>,
}

/// Registers a machine in `hospital`; its secret is returned once and stored only hashed.
pub async fn register(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    d: NewDevice,
) -> CareResult<(devices::Model, String)> {
    register_with_secret(db, hospital, d, secret::random_token()).await
}

/// [`register`] with a secret chosen by the caller (a machine whose secret was set at the
/// factory; the demo's and the tests' machines).
pub async fn register_with_secret(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    d: NewDevice,
    secret: String,
) -> CareResult<(devices::Model, String)> {
    let serial = d.serial.trim().to_owned();
    if serial.is_empty() || serial.len() > 64 || !serial.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(CareError::invalid("serial", "must be 1-64 letters, digits, '.', '_' or '-'"));
    }
    let name = check_name("name", &d.name)?;
    let hash = secret::hash_device_secret(&secret);
    let now = Utc::now();
    let device = devices::ActiveModel {
        id: Set(DeviceId::new()),
        hospital_id: Set(hospital),
        serial: Set(serial),
        name: Set(name),
        model: Set(d.model),
        location: Set(d.location),
        ward: Set(ward("ward", d.ward)?),
        status: Set(DeviceStatus::Active),
        online: Set(false),
        last_seen: Set(None),
        secret_hash: Set(hash),
        secret_rotated_at: Set(now),
        maintenance_due_at: Set(d.maintenance_due_at),
        last_maintenance_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok((device, secret))
}

/// A machine's descriptive fields (all replaced).
pub struct Description {
    pub name: String,
    pub model: Option<String>,
    pub location: Option<String>,
    pub ward: Option<String>,
}

/// Replaces a machine's name, model, location and ward.
pub async fn describe(db: &impl ConnectionTrait, device: devices::Model, d: Description) -> CareResult<devices::Model> {
    let mut active: devices::ActiveModel = device.into();
    active.name = Set(check_name("name", &d.name)?);
    active.model = Set(d.model);
    active.location = Set(d.location);
    active.ward = Set(ward("ward", d.ward)?);
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

/// Sets a machine's status.
pub async fn set_status(
    db: &impl ConnectionTrait,
    device: devices::Model,
    status: DeviceStatus,
) -> CareResult<devices::Model> {
    let mut active: devices::ActiveModel = device.into();
    active.status = Set(status);
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

/// Gives a machine a new secret (returned once); the old one stops working at once.
pub async fn rotate_secret(db: &impl ConnectionTrait, device: devices::Model) -> CareResult<(devices::Model, String)> {
    let secret = secret::random_token();
    let hash = secret::hash_device_secret(&secret);
    let now = Utc::now();
    let mut active: devices::ActiveModel = device.into();
    active.secret_hash = Set(hash);
    active.secret_rotated_at = Set(now);
    active.updated_at = Set(now);
    Ok((active.update(db).await?, secret))
}

/// The patients on a machine, by name: assigned to it now, or treated on it in a session
/// within `scope` (a technician's windows).
pub async fn patients_on(
    db: &impl ConnectionTrait,
    device: &devices::Model,
    scope: &ReadScope,
) -> CareResult<Vec<patients::Model>> {
    let mut sessions = device_sessions::Entity::find();
    if let ReadScope::Windows(w) = scope {
        sessions = sessions.filter(sessions_in(w));
    }
    let in_sessions: Vec<PatientId> = sessions
        .select_only()
        .column(device_sessions::Column::PatientId)
        .filter(device_sessions::Column::DeviceId.eq(device.id))
        .filter(device_sessions::Column::PatientId.is_not_null())
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    Ok(patients::Entity::find()
        .filter(patients::Column::HospitalId.eq(device.hospital_id))
        .filter(
            Condition::any()
                .add(patients::Column::AssignedDeviceId.eq(device.id))
                .add(patients::Column::Id.is_in(in_sessions)),
        )
        .order_by_asc(patients::Column::Name)
        .all(db)
        .await?)
}

/// A page of the treatment sessions on a machine, newest first: what `view` shows of them
/// (a patient their own), within `scope`.
pub async fn sessions(
    db: &impl ConnectionTrait,
    device: DeviceId,
    view: ClinicalView,
    scope: &ReadScope,
    status: Option<SessionStatus>,
    limit: u64,
    offset: u64,
) -> CareResult<(Vec<device_sessions::Model>, u64)> {
    let mut query = device_sessions::Entity::find().filter(device_sessions::Column::DeviceId.eq(device));
    if let ClinicalView::OwnTreatment(me) = view {
        query = query.filter(device_sessions::Column::PatientId.eq(me));
    }
    if let ReadScope::Windows(w) = scope {
        query = query.filter(sessions_in(w));
    }
    if let Some(s) = status {
        query = query.filter(device_sessions::Column::Status.eq(s));
    }
    Ok(fetch_page(db, query.order_by_desc(device_sessions::Column::StartedAt), limit, offset).await?)
}
