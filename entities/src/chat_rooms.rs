//! `chat_rooms`: conversations between a doctor and a patient or a doctor and a technician,
//! optionally about a device and patient.

use nc_domain::{ChatRoomKind, DeviceId, HospitalId, PatientId, RoomId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_rooms")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: RoomId,
    pub hospital_id: HospitalId,
    pub kind: ChatRoomKind,
    /// The device (and through it the patient) the conversation is about, if any.
    pub device_id: Option<DeviceId>,
    pub patient_id: Option<PatientId>,
    pub created_by: Option<UserId>,
    pub created_at: DateTimeUtc,
    /// Identifies the conversation (one room per doctor-patient pair, one per device).
    pub conversation_key: Option<String>,
    /// Last activity (a message).
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

/// The rooms' members, through `chat_room_participants`.
impl ActiveModelBehavior for ActiveModel {}
