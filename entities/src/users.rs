//! `users`: people's accounts (doctors, patients, technicians, hospital admins), with their
//! login credentials and account state.

use nc_domain::{HospitalId, Role, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: UserId,
    pub hospital_id: HospitalId,
    /// Unique case-insensitively across the platform (`lower(email)` index).
    pub email: String,
    pub phone: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub name: String,
    pub ward: Option<String>,
    pub is_active: bool,
    pub verified_at: Option<DateTimeUtc>,
    pub deactivated_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
