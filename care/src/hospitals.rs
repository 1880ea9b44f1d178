//! Hospitals, the tenants: the one way one is created (the product's bootstrap, the
//! benchmarks and the tests all call [`create`]), and found by its code at registration.

use chrono::Utc;
use nc_domain::HospitalId;
use nc_entities::hospitals;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::{CareError, CareResult};

/// A hospital's code: 2 to 40 lowercase letters, digits and dashes, not starting with a
/// dash (the schema's CHECK says the same).
pub fn check_code(code: &str) -> CareResult<()> {
    let ok = (2..=40).contains(&code.len())
        && code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !code.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(CareError::invalid(
            "code",
            format!("hospital code '{code}' is invalid: use 2-40 lowercase letters, digits and dashes"),
        ))
    }
}

/// Creates a hospital (in UTC until its booking settings name its time zone); a code that
/// exists already is a unique violation (`hospitals_code_key`).
pub async fn create(db: &impl ConnectionTrait, name: &str, code: &str) -> CareResult<HospitalId> {
    check_code(code)?;
    let now = Utc::now();
    let id = HospitalId::new();
    hospitals::ActiveModel {
        id: Set(id),
        name: Set(name.to_owned()),
        code: Set(code.to_owned()),
        timezone: Set("UTC".into()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(id)
}

/// The hospital with this code (codes are lowercase; `code` is trimmed and lowercased).
pub async fn find_by_code(db: &impl ConnectionTrait, code: &str) -> CareResult<Option<hospitals::Model>> {
    Ok(hospitals::Entity::find().filter(hospitals::Column::Code.eq(code.trim().to_lowercase())).one(db).await?)
}
