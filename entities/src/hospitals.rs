//! `hospitals`: the tenants. Every person, device and patient belongs to exactly one
//! hospital, and no data crosses from one hospital to another.

use nc_domain::HospitalId;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "hospitals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: HospitalId,
    pub name: String,
    /// Short unique slug (`^[a-z0-9][a-z0-9-]{1,39}$`).
    pub code: String,
    /// IANA time zone name; defaults to `UTC`.
    pub timezone: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
