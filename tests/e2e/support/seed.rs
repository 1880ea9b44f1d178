//! A test's people, machines, assignments and patients, created through the capability
//! crates (`nc_care`) the way the product creates them — not by SQL that could drift from
//! their rules.

use nc_domain::{DeviceId, HospitalId, Role, UserId};
use sea_orm::EntityTrait;
use uuid::Uuid;

use crate::support::TestDb;

/// What a patient's record links to.
#[derive(Default)]
pub struct PatientLinks {
    pub account: Option<Uuid>,
    pub doctor: Option<Uuid>,
    pub device: Option<Uuid>,
}

impl TestDb {
    /// An active, verified account (`nc_care::accounts::create_hashed`) with the password
    /// whose hash is `password_hash` (hash once, seed many).
    pub async fn person(
        &self,
        hospital: Uuid,
        email: &str,
        role: Role,
        name: &str,
        ward: Option<&str>,
        password_hash: &str,
    ) -> Uuid {
        let account = nc_care::accounts::NewAccount {
            email: email.to_owned(),
            name: name.to_owned(),
            role,
            phone: None,
            ward: ward.map(str::to_owned),
        };
        nc_care::accounts::create_hashed(&self.db, HospitalId(hospital), account, password_hash.to_owned())
            .await
            .unwrap_or_else(|e| panic!("account {email}: {e:?}"))
            .id
            .as_uuid()
    }

    /// A registered machine (`nc_care::devices::register_with_secret`) whose secret is
    /// `secret`.
    pub async fn machine(&self, hospital: Uuid, serial: &str, name: &str, ward: Option<&str>, secret: &str) -> Uuid {
        let device = nc_care::devices::NewDevice {
            serial: serial.to_owned(),
            name: name.to_owned(),
            model: None,
            location: None,
            ward: ward.map(str::to_owned),
            maintenance_due_at: None,
        };
        nc_care::devices::register_with_secret(&self.db, HospitalId(hospital), device, secret.to_owned())
            .await
            .unwrap_or_else(|e| panic!("machine {serial}: {e:?}"))
            .0
            .id
            .as_uuid()
    }

    /// Assigns a doctor or technician to a machine (`nc_care::devices::assignments::assign`).
    pub async fn assign(&self, device: Uuid, user: Uuid) {
        let machine = nc_entities::devices::Entity::find_by_id(DeviceId(device))
            .one(&self.db)
            .await
            .expect("read the machine")
            .expect("the machine");
        let person = nc_care::accounts::get(&self.db, UserId(user)).await.expect("the person");
        nc_care::devices::assignments::assign(&self.db, &machine, &person, person.id, None)
            .await
            .unwrap_or_else(|e| panic!("assign {user} to {device}: {e:?}"));
    }

    /// A patient's record (`nc_care::patients::insert`).
    pub async fn patient(&self, hospital: Uuid, number: &str, name: &str, links: PatientLinks) -> Uuid {
        self.patient_with(hospital, number, name, links, |_| {}).await
    }

    /// [`TestDb::patient`] with more of the record filled in by `fill` (a diagnosis, a dry
    /// weight).
    pub async fn patient_with(
        &self,
        hospital: Uuid,
        number: &str,
        name: &str,
        links: PatientLinks,
        fill: impl FnOnce(&mut nc_care::patients::NewPatient),
    ) -> Uuid {
        let mut record = nc_care::patients::NewPatient {
            patient_number: number.to_owned(),
            name: name.to_owned(),
            date_of_birth: None,
            gender: None,
            blood_group: None,
            user_id: links.account.map(UserId),
            assigned_doctor_id: links.doctor.map(UserId),
            assigned_device_id: links.device.map(DeviceId),
            dry_weight_kg: None,
            dialysis_schedule: None,
            diagnosis: None,
            vascular_access: None,
        };
        fill(&mut record);
        nc_care::patients::insert(&self.db, HospitalId(hospital), record)
            .await
            .unwrap_or_else(|e| panic!("patient {number}: {e:?}"))
            .id
            .as_uuid()
    }
}
