//! What a device gateway (IHE PCD-01 over MLLP, registered by its hospital's admins) may
//! write: readings of its own hospital's machines that are in service, for its own
//! hospital's patients. A machine or patient number of another hospital does not exist for
//! it (the same answer as an unknown one, so nothing leaks). The gateway authenticates with
//! its secret before any of this is asked (`gateways` crate).

use nc_domain::{DeviceId, DeviceStatus, HospitalId, PatientId};
use nc_entities::{devices, patients};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{Denied, Policy, PolicyError};

/// The machine a gateway of `hospital` reports for, among the machines with that serial
/// (`candidates`: id, hospital, status): its own hospital's, if in service (`inactive`
/// machines are retired: their readings are refused, as their MQTT connections are).
pub fn decide_gateway_device(
    hospital: HospitalId,
    candidates: &[(DeviceId, HospitalId, DeviceStatus)],
) -> Result<DeviceId, Denied> {
    match candidates.iter().find(|(_, h, _)| *h == hospital) {
        None => Err(Denied::NotFound),
        Some((_, _, DeviceStatus::Inactive)) => Err(Denied::Forbidden("the machine is retired (inactive)")),
        Some((id, _, _)) => Ok(*id),
    }
}

/// The patient a gateway of `hospital` names by patient number, among the patients with
/// that number (`candidates`: id, hospital): its own hospital's.
pub fn decide_gateway_patient(
    hospital: HospitalId,
    candidates: &[(PatientId, HospitalId)],
) -> Result<PatientId, Denied> {
    candidates.iter().find(|(_, h)| *h == hospital).map(|(id, _)| *id).ok_or(Denied::NotFound)
}

impl Policy {
    /// The machine numbered `serial` that a gateway of `hospital` may report for.
    pub async fn gateway_device(&self, hospital: HospitalId, serial: &str) -> Result<DeviceId, PolicyError> {
        let candidates: Vec<(DeviceId, HospitalId, DeviceStatus)> = devices::Entity::find()
            .select_only()
            .columns([devices::Column::Id, devices::Column::HospitalId, devices::Column::Status])
            .filter(devices::Column::Serial.eq(serial))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(decide_gateway_device(hospital, &candidates)?)
    }

    /// The patient numbered `number` (PID-3) that a gateway of `hospital` may report for.
    pub async fn gateway_patient(&self, hospital: HospitalId, number: &str) -> Result<PatientId, PolicyError> {
        let candidates: Vec<(PatientId, HospitalId)> = patients::Entity::find()
            .select_only()
            .columns([patients::Column::Id, patients::Column::HospitalId])
            .filter(patients::Column::PatientNumber.eq(number))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(decide_gateway_patient(hospital, &candidates)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_gateway_reaches_only_its_own_hospitals_machines_in_service_and_patients() {
        let (a, b) = (HospitalId(Uuid::now_v7()), HospitalId(Uuid::now_v7()));
        let (mine, theirs) = (DeviceId(Uuid::now_v7()), DeviceId(Uuid::now_v7()));
        assert_eq!(
            decide_gateway_device(a, &[(theirs, b, DeviceStatus::Active), (mine, a, DeviceStatus::Active)]),
            Ok(mine)
        );
        assert_eq!(decide_gateway_device(a, &[(mine, a, DeviceStatus::Maintenance)]), Ok(mine));
        assert_eq!(decide_gateway_device(a, &[(theirs, b, DeviceStatus::Active)]), Err(Denied::NotFound));
        assert_eq!(decide_gateway_device(a, &[]), Err(Denied::NotFound));
        assert!(matches!(decide_gateway_device(a, &[(mine, a, DeviceStatus::Inactive)]), Err(Denied::Forbidden(_))));
        let (p, q) = (PatientId(Uuid::now_v7()), PatientId(Uuid::now_v7()));
        assert_eq!(decide_gateway_patient(a, &[(q, b), (p, a)]), Ok(p));
        assert_eq!(decide_gateway_patient(b, &[(p, a)]), Err(Denied::NotFound));
    }
}
