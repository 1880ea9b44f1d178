//! Who talks to whom: the facts behind chat rooms. A doctor-patient room joins a patient
//! and the doctors responsible for them; a doctor-technician room (one per device) joins
//! the doctors and technicians of the device, a technician holding a hand-over while it
//! lasts. Taking part needs the relationship now, not only a participant row.

use nc_domain::{AssignmentRole, ChatRoomKind, DeviceId, PatientId, Role, RoomId, SessionStatus, UserId};
use nc_entities::{chat_room_participants, chat_rooms, device_sessions, patients, users};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};

use super::{decide_room, Denied, DeviceAction, Policy, PolicyError, RoomFacts, Subject, UserSubject};

/// A conversation someone asks to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRequest {
    /// Between the subject and `counterpart` (a patient and one of their doctors).
    DoctorPatient { counterpart: UserId },
    /// The device's room of its doctors and technicians (`counterpart`, if given, joins too).
    DoctorTechnician { device: DeviceId, counterpart: Option<UserId> },
}

/// A conversation that may be opened: its kind, what it is about and who joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomGrant {
    pub kind: ChatRoomKind,
    pub patient: Option<PatientId>,
    pub device: Option<DeviceId>,
    pub participants: Vec<UserId>,
    /// Identifies the conversation, so that opening it twice gives the same room.
    pub key: String,
}

impl Policy {
    /// The room, if `subject` takes part in it and the relationship it is about holds.
    pub async fn room(&self, subject: &Subject, room: RoomId) -> Result<chat_rooms::Model, PolicyError> {
        let found = chat_rooms::Entity::find_by_id(room).one(&self.db).await?;
        let mut facts =
            RoomFacts { room: found.as_ref().map(|r| (r.id, r.hospital_id)), participant: false, relationship: false };
        if let (Subject::User(u), Some(r)) = (subject, &found) {
            if r.hospital_id == u.hospital {
                facts.participant = chat_room_participants::Entity::find()
                    .filter(chat_room_participants::Column::RoomId.eq(room))
                    .filter(chat_room_participants::Column::UserId.eq(u.id))
                    .count(&self.db)
                    .await?
                    > 0;
                facts.relationship = facts.participant && self.relationship_holds(u, r).await?;
            }
        }
        decide_room(subject, &facts)?;
        Ok(found.expect("decide_room refuses a missing room"))
    }

    async fn relationship_holds(&self, u: &UserSubject, room: &chat_rooms::Model) -> Result<bool, DbErr> {
        match room.kind {
            ChatRoomKind::DoctorPatient => {
                let Some(patient) = room.patient_id else { return Ok(false) };
                let Some(p) = patients::Entity::find_by_id(patient).one(&self.db).await? else { return Ok(false) };
                match u.role {
                    // The patient keeps the room while one of its doctors is still
                    // responsible for them: otherwise nobody would read what they write.
                    Role::Patient if p.user_id == Some(u.id) => {
                        let doctors: Vec<UserId> = chat_room_participants::Entity::find()
                            .filter(chat_room_participants::Column::RoomId.eq(room.id))
                            .filter(chat_room_participants::Column::UserId.ne(u.id))
                            .all(&self.db)
                            .await?
                            .into_iter()
                            .map(|m| m.user_id)
                            .collect();
                        for d in doctors {
                            if self.responsible_doctor(d, &p).await? {
                                return Ok(true);
                            }
                        }
                        Ok(false)
                    }
                    Role::Doctor => self.responsible_doctor(u.id, &p).await,
                    _ => Ok(false),
                }
            }
            ChatRoomKind::DoctorTechnician => {
                let Some(device) = room.device_id else { return Ok(false) };
                if !matches!(u.role, Role::Doctor | Role::Technician) {
                    return Ok(false);
                }
                match self.device(&Subject::User(*u), device, DeviceAction::ReadClinical).await {
                    Ok(_) => Ok(true),
                    Err(PolicyError::Denied(_)) => Ok(false),
                    Err(PolicyError::Db(e)) => Err(e),
                }
            }
        }
    }

    /// A doctor responsible for a patient: their assigned doctor, or a doctor of the device
    /// the patient is on (assigned to it, or in an active session on it).
    async fn responsible_doctor(&self, doctor: UserId, p: &patients::Model) -> Result<bool, DbErr> {
        if p.assigned_doctor_id == Some(doctor) {
            return Ok(true);
        }
        let mut devices: Vec<DeviceId> = device_sessions::Entity::find()
            .select_only()
            .column(device_sessions::Column::DeviceId)
            .filter(device_sessions::Column::PatientId.eq(p.id))
            .filter(device_sessions::Column::Status.eq(SessionStatus::Active))
            .into_tuple()
            .all(&self.db)
            .await?;
        devices.extend(p.assigned_device_id);
        for d in devices {
            if self.assigned(doctor, d, AssignmentRole::Doctor).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The device and patient a room is about (access events about them concern it).
    pub async fn room_subjects(&self, room: RoomId) -> Result<(Option<DeviceId>, Option<PatientId>), DbErr> {
        let r = chat_rooms::Entity::find_by_id(room).one(&self.db).await?;
        Ok(r.map_or((None, None), |r| (r.device_id, r.patient_id)))
    }

    /// Whether `subject` may open the conversation asked for, and who joins it.
    pub async fn open_room(&self, subject: &Subject, request: RoomRequest) -> Result<RoomGrant, PolicyError> {
        let Subject::User(u) = subject else { return Err(Denied::Forbidden("devices do not chat").into()) };
        match request {
            RoomRequest::DoctorPatient { counterpart } => {
                let other = self.same_hospital_user(u, counterpart).await?;
                let (doctor, patient_user) = match (u.role, other.role) {
                    (Role::Doctor, Role::Patient) => (u.id, other.id),
                    (Role::Patient, Role::Doctor) => (other.id, u.id),
                    _ => {
                        return Err(
                            Denied::Forbidden("a doctor-patient conversation joins a doctor and a patient").into()
                        )
                    }
                };
                let record = patients::Entity::find()
                    .filter(patients::Column::UserId.eq(patient_user))
                    .one(&self.db)
                    .await?
                    .ok_or(Denied::Forbidden("this patient account is not linked to a patient record"))?;
                if !self.responsible_doctor(doctor, &record).await? {
                    return Err(Denied::Forbidden("this doctor is not responsible for this patient").into());
                }
                Ok(RoomGrant {
                    kind: ChatRoomKind::DoctorPatient,
                    patient: Some(record.id),
                    device: None,
                    participants: vec![doctor, patient_user],
                    key: format!("dp:{}:{doctor}", record.id),
                })
            }
            RoomRequest::DoctorTechnician { device, counterpart } => {
                if !matches!(u.role, Role::Doctor | Role::Technician) {
                    return Err(Denied::Forbidden("the device room is for its doctors and technicians").into());
                }
                self.device(subject, device, DeviceAction::ReadClinical).await?;
                let mut participants = vec![u.id];
                if let Some(c) = counterpart {
                    let other = self.same_hospital_user(u, c).await?;
                    let staff = Subject::User(UserSubject {
                        id: other.id,
                        role: other.role,
                        hospital: other.hospital_id,
                        family: None,
                    });
                    if !matches!(other.role, Role::Doctor | Role::Technician)
                        || self.device(&staff, device, DeviceAction::ReadClinical).await.is_err()
                    {
                        return Err(
                            Denied::Forbidden("the counterpart is not a doctor or technician of this device").into()
                        );
                    }
                    participants.push(other.id);
                }
                Ok(RoomGrant {
                    kind: ChatRoomKind::DoctorTechnician,
                    patient: None,
                    device: Some(device),
                    participants,
                    key: format!("dt:{device}"),
                })
            }
        }
    }

    /// An active account of the subject's hospital (another hospital's does not exist).
    async fn same_hospital_user(&self, u: &UserSubject, id: UserId) -> Result<users::Model, PolicyError> {
        match users::Entity::find_by_id(id).one(&self.db).await? {
            Some(other) if other.hospital_id == u.hospital && other.is_active && other.id != u.id => Ok(other),
            Some(other) if other.hospital_id == u.hospital && other.id != u.id => {
                Err(Denied::Forbidden("this account is not active").into())
            }
            Some(other) if other.id == u.id => Err(Denied::Forbidden("a conversation needs someone else").into()),
            _ => Err(Denied::NotFound.into()),
        }
    }
}
