//! The one policy module: "may this subject do this action on this object?", asked by every
//! REST handler, the MQTT broker and the live streams, so they cannot disagree.
//!
//! Rules:
//! - hospital isolation: nothing crosses hospitals, ever. An object of another hospital
//!   answers [`Denied::NotFound`], so its existence does not leak;
//! - doctor: the devices assigned to them and the patients on those devices (assigned now,
//!   or in a current or past session), plus the patients assigned to them; hospital-wide
//!   lists of staff, devices and patients of their own hospital;
//! - technician: its assigned devices, plus devices granted to it temporarily while the
//!   grant is active (expiry is checked here, at decision time); the patients on those
//!   devices, whose treatment data (dry weight, vascular access, last dialysis, notes) it
//!   may update; it may hand over a device it is assigned to, and maintain the devices it
//!   is responsible for (switching them between active and maintenance);
//! - patient: itself, its own device, its own data;
//! - admin: manages staff, devices and assignments of its hospital but reads no clinical data;
//! - device: its own device and nothing else.
//!
//! A visible object (same hospital) that the subject may not act on answers
//! [`Denied::Forbidden`]. The decisions themselves are pure functions over facts
//! ([`decide_device`], [`decide_patient`], [`decide_hospital`], and for lists, fields and
//! statuses [`patient_scope`], [`decide_patient_field`], [`decide_device_status`]), tested
//! exhaustively;
//! [`Policy`] loads the facts from the database and applies them.

mod alarms;
mod alert_lists;
mod bookings;
mod chat;
mod gateways;
mod maintenance;
mod objects;
mod patient_records;
mod rules;
mod subscriptions;

pub use alarms::{
    active_grant, alert_list_view, decide_alert, decide_alert_notice, tier_of_role, AlertAction, AlertFacts, AlertRef,
    AlertView, TOP_TIER,
};
pub use alert_lists::{AlertFilter, AlertScope};
pub use bookings::{
    decide_book, decide_booking, decide_plan_maintenance, BookFacts, BookingAction, BookingFacts, BookingScope,
};
pub use chat::{RoomGrant, RoomRequest};
pub use gateways::{decide_gateway_device, decide_gateway_patient};
pub use maintenance::decide_device_status;
pub use objects::{decide_revoke_grant, decide_visible, export_view, DeviceListScope, ExportView};
pub use patient_records::{
    decide_patient_field, patient_scope, patient_view, record_change_action, refused_patient_fields, sessions_in,
    PatientField, PatientRelations, PatientScope, PatientView, Relations,
};
pub use rules::*;
pub use subscriptions::{
    decide_subscribe, decide_subscription, subscription_scope, SubscriptionAction, SubscriptionScope,
};

use chrono::Utc;
use nc_domain::{AssignmentRole, DeviceId, HospitalId, PatientId, Role, SessionStatus, UserId};
use nc_entities::{device_assignments, device_sessions, devices, patients, temporary_access_grants};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};

/// Loads facts and applies the rules above.
#[derive(Clone)]
pub struct Policy {
    db: DatabaseConnection,
}

impl Policy {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The device, if `subject` may do `action` to it.
    pub async fn device(
        &self,
        subject: &Subject,
        id: DeviceId,
        action: DeviceAction,
    ) -> Result<devices::Model, PolicyError> {
        let (device, facts) = self.device_facts(subject, id).await?;
        decide_device(subject, &facts, action)?;
        Ok(device.expect("decide_device refuses a missing device"))
    }

    /// The device (if it exists) and what the device decisions depend on for `subject`.
    async fn device_facts(
        &self,
        subject: &Subject,
        id: DeviceId,
    ) -> Result<(Option<devices::Model>, DeviceFacts), DbErr> {
        let device = devices::Entity::find_by_id(id).one(&self.db).await?;
        let mut facts = DeviceFacts { device: device.as_ref().map(|d| (d.id, d.hospital_id)), ..Default::default() };
        if let (Some(d), Subject::User(u)) = (&device, subject) {
            if d.hospital_id == u.hospital {
                match u.role {
                    Role::Doctor => facts.assigned = self.assigned(u.id, id, AssignmentRole::Doctor).await?,
                    Role::Technician => {
                        facts.assigned = self.assigned(u.id, id, AssignmentRole::Technician).await?;
                        facts.granted = self.granted(u.id, id).await?;
                    }
                    Role::Patient => facts.own = self.patient_devices(u.id).await?.contains(&id),
                    Role::Admin => {}
                }
            }
        }
        Ok((device, facts))
    }

    /// How much of `device`'s clinical data `subject` may receive (see [`ClinicalView`]):
    /// its staff everything, the patient on it their own treatment only.
    pub async fn clinical_view(&self, subject: &Subject, device: DeviceId) -> Result<ClinicalView, PolicyError> {
        self.clinical_device(subject, device).await.map(|(_, view)| view)
    }

    /// The device, and how much of its clinical data `subject` may receive.
    pub async fn clinical_device(
        &self,
        subject: &Subject,
        device: DeviceId,
    ) -> Result<(devices::Model, ClinicalView), PolicyError> {
        if let Subject::User(u) = subject {
            if u.role == Role::Patient {
                let d = self.device(subject, device, DeviceAction::View).await?;
                let record = self.patient_of_user(u.id).await?.ok_or(Denied::Forbidden("no patient record"))?;
                return Ok((d, ClinicalView::OwnTreatment(record)));
            }
        }
        Ok((self.device(subject, device, DeviceAction::ReadClinical).await?, ClinicalView::Device))
    }

    /// The patient record linked to a patient account, if any.
    pub async fn patient_of_user(&self, user: UserId) -> Result<Option<PatientId>, DbErr> {
        patients::Entity::find()
            .select_only()
            .column(patients::Column::Id)
            .filter(patients::Column::UserId.eq(user))
            .into_tuple()
            .one(&self.db)
            .await
    }

    /// The patient record, if `subject` may do `action` to it.
    pub async fn patient(
        &self,
        subject: &Subject,
        id: PatientId,
        action: PatientAction,
    ) -> Result<patients::Model, PolicyError> {
        let patient = patients::Entity::find_by_id(id).one(&self.db).await?;
        let mut facts = PatientFacts { patient: patient.as_ref().map(|p| (p.id, p.hospital_id)), ..Default::default() };
        if let (Some(p), Subject::User(u)) = (&patient, subject) {
            if p.hospital_id == u.hospital {
                facts.is_self = p.user_id == Some(u.id);
                facts.is_assigned_doctor = u.role == Role::Doctor && p.assigned_doctor_id == Some(u.id);
                match u.role {
                    Role::Doctor => {
                        if let DeviceScope::Only(devices) = self.clinical_devices(subject).await? {
                            facts.on_subject_device = self.patient_on_devices(p, &devices).await?;
                        }
                    }
                    Role::Technician => {
                        let windows = self.technician_windows(u.id).await?;
                        facts.on_subject_device = self.patient_in_windows(p, &windows).await?;
                    }
                    Role::Admin | Role::Patient => {}
                }
            }
        }
        decide_patient(subject, &facts, action)?;
        Ok(patient.expect("decide_patient refuses a missing patient"))
    }

    /// Whether `subject` may point a patient to `device` and/or `doctor` (see [`decide_reassign`]).
    pub async fn reassign_patient(
        &self,
        subject: &Subject,
        device: Option<DeviceId>,
        doctor: Option<UserId>,
    ) -> Result<(), PolicyError> {
        let mut facts = ReassignFacts::default();
        if let Subject::User(u) = subject {
            if u.role == Role::Doctor {
                if let Some(d) = device {
                    facts.new_device_is_subjects = Some(self.assigned(u.id, d, AssignmentRole::Doctor).await?);
                }
                facts.new_doctor_is_subject = doctor.map(|d| d == u.id);
            }
        }
        Ok(decide_reassign(subject, &facts)?)
    }

    /// How much of a (readable) patient's data `subject` may read: technicians only what
    /// was recorded on their devices while they are responsible for them (see
    /// [`Policy::technician_windows`]); everyone else who may read the patient, all of it.
    pub async fn read_scope(&self, subject: &Subject) -> Result<ReadScope, DbErr> {
        match subject {
            Subject::User(u) if u.role == Role::Technician => {
                Ok(ReadScope::Windows(self.technician_windows(u.id).await?))
            }
            _ => Ok(ReadScope::All),
        }
    }

    /// The stretches of device data a technician may read now: each device assigned to
    /// it, from the start of the assignment; each device handed over to it, from the start
    /// of the hand-over (or of the treatment session running on the device then, if
    /// earlier) until it expires. Ended assignments and grants give nothing.
    pub async fn technician_windows(&self, user: UserId) -> Result<Vec<Window>, DbErr> {
        let now = Utc::now();
        // Readings are at most 30 s ahead of the server's clock.
        let open_end = now + chrono::Duration::days(1);
        let mut windows: Vec<Window> = device_assignments::Entity::find()
            .filter(device_assignments::Column::UserId.eq(user))
            .filter(device_assignments::Column::Role.eq(AssignmentRole::Technician))
            .filter(device_assignments::Column::EndedAt.is_null())
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| Window { device: a.device_id, from: a.assigned_at, to: open_end })
            .collect();
        let grants = temporary_access_grants::Entity::find()
            .filter(temporary_access_grants::Column::GrantedTo.eq(user))
            .filter(active_grant())
            .all(&self.db)
            .await?;
        for g in grants {
            let running: Option<chrono::DateTime<Utc>> = device_sessions::Entity::find()
                .select_only()
                .column(device_sessions::Column::StartedAt)
                .filter(device_sessions::Column::DeviceId.eq(g.device_id))
                .filter(device_sessions::Column::StartedAt.lte(g.granted_at))
                .filter(
                    sea_orm::Condition::any()
                        .add(device_sessions::Column::EndedAt.is_null())
                        .add(device_sessions::Column::EndedAt.gt(g.granted_at)),
                )
                .into_tuple()
                .one(&self.db)
                .await?;
            let from = running.map_or(g.granted_at, |s| s.min(g.granted_at));
            windows.push(Window { device: g.device_id, from, to: g.expires_at });
        }
        Ok(windows)
    }

    /// Whether the patient is assigned to a window's device now, or had a session on it
    /// that overlaps the window.
    async fn patient_in_windows(&self, p: &patients::Model, windows: &[Window]) -> Result<bool, DbErr> {
        if p.assigned_device_id.is_some_and(|d| windows.iter().any(|w| w.device == d)) {
            return Ok(true);
        }
        let devices: Vec<DeviceId> = windows.iter().map(|w| w.device).collect();
        if devices.is_empty() {
            return Ok(false);
        }
        let sessions = device_sessions::Entity::find()
            .filter(device_sessions::Column::PatientId.eq(p.id))
            .filter(device_sessions::Column::DeviceId.is_in(devices))
            .all(&self.db)
            .await?;
        Ok(sessions
            .iter()
            .any(|s| windows.iter().any(|w| w.device == s.device_id && w.overlaps(s.started_at, s.ended_at))))
    }

    /// The patient accounts `subject` may list: `None` for all of the hospital's (admins,
    /// who link accounts to records); otherwise those of the patients it may list (see
    /// [`patient_scope`]).
    pub async fn listable_patient_accounts(&self, subject: &Subject) -> Result<Option<Vec<UserId>>, DbErr> {
        let scope = self.patient_scope(subject).await?;
        if scope == PatientScope::Hospital {
            return Ok(None);
        }
        let accounts: Vec<Option<UserId>> = patients::Entity::find()
            .select_only()
            .column(patients::Column::UserId)
            .filter(patients::Column::HospitalId.eq(subject.hospital()))
            .filter(scope.condition())
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(Some(accounts.into_iter().flatten().collect()))
    }

    /// When a technician's access to `device` ends if it rests only on temporary grants:
    /// the latest expiry among its active grants. `None` when it does not rest on a grant
    /// (an assignment, or another role).
    pub async fn grant_expiry(
        &self,
        subject: &Subject,
        device: DeviceId,
    ) -> Result<Option<chrono::DateTime<Utc>>, DbErr> {
        let Subject::User(u) = subject else { return Ok(None) };
        if u.role != Role::Technician || self.assigned(u.id, device, AssignmentRole::Technician).await? {
            return Ok(None);
        }
        let grants = temporary_access_grants::Entity::find()
            .filter(temporary_access_grants::Column::GrantedTo.eq(u.id))
            .filter(temporary_access_grants::Column::DeviceId.eq(device))
            .filter(active_grant())
            .all(&self.db)
            .await?;
        Ok(grants.into_iter().map(|g| g.expires_at).max())
    }

    /// Hospital-wide actions need no facts beyond the subject.
    pub fn hospital(&self, subject: &Subject, hospital: HospitalId, action: HospitalAction) -> Decision {
        decide_hospital(subject, hospital, action)
    }

    /// The devices whose clinical data `subject` may read now.
    pub async fn clinical_devices(&self, subject: &Subject) -> Result<DeviceScope, DbErr> {
        let user = match subject {
            Subject::Device { id, .. } => return Ok(DeviceScope::Only(vec![*id])),
            Subject::User(u) => u,
        };
        let mut ids = match user.role {
            Role::Admin => return Ok(DeviceScope::Nothing),
            Role::Patient => self.patient_devices(user.id).await?,
            Role::Doctor | Role::Technician => {
                let role = if user.role == Role::Doctor { AssignmentRole::Doctor } else { AssignmentRole::Technician };
                let mut ids: Vec<DeviceId> = device_assignments::Entity::find()
                    .select_only()
                    .column(device_assignments::Column::DeviceId)
                    .filter(device_assignments::Column::UserId.eq(user.id))
                    .filter(device_assignments::Column::Role.eq(role))
                    .filter(device_assignments::Column::EndedAt.is_null())
                    .filter(device_assignments::Column::HospitalId.eq(user.hospital))
                    .into_tuple()
                    .all(&self.db)
                    .await?;
                if user.role == Role::Technician {
                    let granted: Vec<DeviceId> = temporary_access_grants::Entity::find()
                        .select_only()
                        .column(temporary_access_grants::Column::DeviceId)
                        .filter(temporary_access_grants::Column::GrantedTo.eq(user.id))
                        .filter(active_grant())
                        .filter(temporary_access_grants::Column::HospitalId.eq(user.hospital))
                        .into_tuple()
                        .all(&self.db)
                        .await?;
                    ids.extend(granted);
                }
                ids
            }
        };
        ids.sort();
        ids.dedup();
        Ok(DeviceScope::Only(ids))
    }

    async fn assigned(&self, user: UserId, device: DeviceId, role: AssignmentRole) -> Result<bool, DbErr> {
        Ok(device_assignments::Entity::find()
            .filter(device_assignments::Column::UserId.eq(user))
            .filter(device_assignments::Column::DeviceId.eq(device))
            .filter(device_assignments::Column::Role.eq(role))
            .filter(device_assignments::Column::EndedAt.is_null())
            .count(&self.db)
            .await?
            > 0)
    }

    async fn granted(&self, user: UserId, device: DeviceId) -> Result<bool, DbErr> {
        Ok(temporary_access_grants::Entity::find()
            .filter(temporary_access_grants::Column::GrantedTo.eq(user))
            .filter(temporary_access_grants::Column::DeviceId.eq(device))
            .filter(active_grant())
            .count(&self.db)
            .await?
            > 0)
    }

    /// A patient user's devices: the one assigned to their record, and any in an active
    /// session with them.
    async fn patient_devices(&self, user: UserId) -> Result<Vec<DeviceId>, DbErr> {
        let Some(record) = patients::Entity::find().filter(patients::Column::UserId.eq(user)).one(&self.db).await?
        else {
            return Ok(Vec::new());
        };
        let mut ids: Vec<DeviceId> = device_sessions::Entity::find()
            .select_only()
            .column(device_sessions::Column::DeviceId)
            .filter(device_sessions::Column::PatientId.eq(record.id))
            .filter(device_sessions::Column::Status.eq(SessionStatus::Active))
            .into_tuple()
            .all(&self.db)
            .await?;
        ids.extend(record.assigned_device_id);
        Ok(ids)
    }

    /// Whether the patient is assigned to, or has had a session on, one of `devices`.
    async fn patient_on_devices(&self, p: &patients::Model, devices: &[DeviceId]) -> Result<bool, DbErr> {
        if p.assigned_device_id.is_some_and(|d| devices.contains(&d)) {
            return Ok(true);
        }
        if devices.is_empty() {
            return Ok(false);
        }
        Ok(device_sessions::Entity::find()
            .filter(device_sessions::Column::PatientId.eq(p.id))
            .filter(device_sessions::Column::DeviceId.is_in(devices.iter().copied()))
            .count(&self.db)
            .await?
            > 0)
    }
}
