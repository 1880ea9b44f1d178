//! `chat_room_participants`: the members of each chat room, with each member's read
//! receipt watermark.

use nc_domain::{MessageId, RoomId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_room_participants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub room_id: RoomId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: UserId,
    pub joined_at: DateTimeUtc,
    /// Everything up to this message has been read by this participant (not a foreign key).
    pub last_read_message_id: Option<MessageId>,
    pub last_read_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
