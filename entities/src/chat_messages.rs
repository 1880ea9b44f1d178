//! `chat_messages`: messages in chat rooms. A client-chosen `client_msg_id` makes a message
//! resent after a lost acknowledgement land once.

use nc_domain::{MessageId, RoomId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MessageId,
    pub room_id: RoomId,
    /// `None` once the sender's account is deleted.
    pub sender_id: Option<UserId>,
    /// 1 to 64 characters; unique per room and sender.
    pub client_msg_id: Option<String>,
    /// 1 to 4000 characters.
    pub body: String,
    pub sent_at: DateTimeUtc,
    pub edited_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
