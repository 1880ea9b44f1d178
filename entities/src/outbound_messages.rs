//! `outbound_messages`: the outbox of messages (codes, notices) to people by e-mail or SMS.
//! The development sender only records them; a production sender also delivers them and
//! sets `sent_at`.

use nc_domain::{Channel, OutboundMessageId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbound_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: OutboundMessageId,
    pub user_id: Option<UserId>,
    pub channel: Channel,
    /// E-mail address or phone number.
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
