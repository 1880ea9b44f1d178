//! `refresh_tokens`: opaque refresh tokens, stored as SHA-256 hashes and rotated on every
//! use. A token presented after rotation revokes its whole family (RFC 9700 §4.14.2).

use nc_domain::{RefreshTokenId, TokenFamilyId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: RefreshTokenId,
    pub user_id: UserId,
    pub family_id: TokenFamilyId,
    /// SHA-256 of the token (unique).
    pub token_hash: Vec<u8>,
    pub issued_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub rotated_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// The token this one was rotated into.
    pub replaced_by: Option<RefreshTokenId>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
