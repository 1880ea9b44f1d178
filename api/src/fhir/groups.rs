//! The groups a Bulk Data export may name (`Group/{id}/$export`):
//!
//! - the hospital: group id = the hospital's id; its patients are the hospital's;
//! - each ward: group id = a UUID derived from the hospital id and the ward's name (SHA-256,
//!   as a version 8 UUID: stable, so a ward's id never changes), over the wards staff and
//!   patient accounts name (`users.ward`); its patients are those whose own account, or
//!   whose assigned doctor, is in the ward.
//!
//! What an export of a group holds is further limited to the patients the caller may list
//! (`Policy::patient_scope`): a doctor exporting the hospital gets their own patients.

use nc_access::HospitalAction;
use nc_domain::{HospitalId, PatientId};
use nc_entities::{hospitals, patients, users};
use poem::{Request, Response};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::search::{self, Params};
use super::{ok, Ctx, FhirError, FhirResult};

/// A group of patients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    Hospital { id: HospitalId, name: String },
    Ward { id: Uuid, hospital: HospitalId, ward: String },
}

impl Group {
    pub fn id(&self) -> Uuid {
        match self {
            Group::Hospital { id, .. } => id.as_uuid(),
            Group::Ward { id, .. } => *id,
        }
    }

    pub fn resource(&self) -> Value {
        let name = match self {
            Group::Hospital { name, .. } => name.clone(),
            Group::Ward { ward, .. } => format!("Ward: {ward}"),
        };
        json!({"resourceType": "Group", "id": self.id().to_string(), "type": "person", "actual": true, "name": name})
    }
}

/// A ward's group id.
pub fn ward_id(hospital: HospitalId, ward: &str) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"nephrocare ward\0");
    h.update(hospital.as_uuid().as_bytes());
    h.update(ward.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The groups of a hospital: itself, then its wards by name.
pub async fn groups(db: &DatabaseConnection, hospital: HospitalId) -> Result<Vec<Group>, DbErr> {
    let Some(h) = hospitals::Entity::find_by_id(hospital).one(db).await? else { return Ok(Vec::new()) };
    let wards: Vec<Option<String>> = users::Entity::find()
        .select_only()
        .column(users::Column::Ward)
        .distinct()
        .filter(users::Column::HospitalId.eq(hospital))
        .filter(users::Column::Ward.is_not_null())
        .order_by_asc(users::Column::Ward)
        .into_tuple()
        .all(db)
        .await?;
    let mut out = vec![Group::Hospital { id: hospital, name: h.name }];
    out.extend(wards.into_iter().flatten().map(|w| Group::Ward { id: ward_id(hospital, &w), hospital, ward: w }));
    Ok(out)
}

/// The group `id` of the hospital, if it exists.
pub async fn find(db: &DatabaseConnection, hospital: HospitalId, id: Uuid) -> Result<Option<Group>, DbErr> {
    Ok(groups(db, hospital).await?.into_iter().find(|g| g.id() == id))
}

/// The patients of a group (before the caller's scope).
pub async fn members(db: &DatabaseConnection, group: &Group) -> Result<Vec<PatientId>, DbErr> {
    match group {
        Group::Hospital { id, .. } => {
            patients::Entity::find()
                .select_only()
                .column(patients::Column::Id)
                .filter(patients::Column::HospitalId.eq(*id))
                .into_tuple()
                .all(db)
                .await
        }
        Group::Ward { hospital, ward, .. } => {
            let in_ward: Vec<nc_domain::UserId> = users::Entity::find()
                .select_only()
                .column(users::Column::Id)
                .filter(users::Column::HospitalId.eq(*hospital))
                .filter(users::Column::Ward.eq(ward.as_str()))
                .into_tuple()
                .all(db)
                .await?;
            patients::Entity::find()
                .select_only()
                .column(patients::Column::Id)
                .filter(patients::Column::HospitalId.eq(*hospital))
                .filter(
                    sea_orm::Condition::any()
                        .add(patients::Column::UserId.is_in(in_ward.clone()))
                        .add(patients::Column::AssignedDoctorId.is_in(in_ward)),
                )
                .into_tuple()
                .all(db)
                .await
        }
    }
}

/// Who may export (and so list groups): the policy's `HospitalAction::ExportBulk`.
pub fn may_export(ctx: &Ctx) -> FhirResult<()> {
    ctx.state
        .policy
        .hospital(&ctx.subject, ctx.subject.hospital(), HospitalAction::ExportBulk)
        .map_err(|d| FhirError::denied(d, "Group"))
}

/// `GET /Group`: the groups the caller may export (admins and doctors).
pub async fn search(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let params = Params::parse(&req, &[])?;
    may_export(&ctx)?;
    let entries =
        groups(&ctx.state.db, ctx.subject.hospital()).await?.iter().map(|g| (g.resource(), "match")).collect();
    let self_url = search::url(&ctx.base, "Group", &params.without(&[]));
    Ok(ok(&search::bundle(&ctx.base, self_url, entries, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ward_ids_are_stable_and_distinct() {
        let h = HospitalId(Uuid::from_u128(1));
        assert_eq!(ward_id(h, "Dialysis unit"), ward_id(h, "Dialysis unit"));
        assert_ne!(ward_id(h, "Dialysis unit"), ward_id(h, "Nephrology"));
        assert_ne!(ward_id(h, "A"), ward_id(HospitalId(Uuid::from_u128(2)), "A"));
        assert_eq!(ward_id(h, "A").get_version_num(), 8);
    }
}
