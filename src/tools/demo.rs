//! The demo data set (`nephrocare seed demo`): a hospital with staff, patients, machines,
//! conversations and bookings to try the product with. Tooling, not the product: a real
//! hospital starts from `crate::bootstrap`.

use std::fmt::Write;

use chrono::{NaiveDate, Utc};
use nc_domain::*;
use nc_entities::{device_assignments, devices, hospitals, patients};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, TransactionTrait};

use crate::bootstrap::{insert_hospital, insert_user, SeedError};

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "Nephro-demo-2026";

/// The secret of demo device `serial` (demo only: real device secrets are random and shown once).
pub fn demo_device_secret(serial: &str) -> String {
    format!("demo-device-secret-{serial}")
}

const DEMO_DOCTORS: &[(&str, &str)] = &[
    ("dr.okafor@demo.nephrocare.test", "Dr Ngozi Okafor"),
    ("dr.lindqvist@demo.nephrocare.test", "Dr Erik Lindqvist"),
];
const DEMO_TECHNICIANS: &[(&str, &str)] =
    &[("tech.mendes@demo.nephrocare.test", "Rui Mendes"), ("tech.sato@demo.nephrocare.test", "Aiko Sato")];
const DEMO_PATIENTS: &[(&str, &str, &str, &str, Gender, BloodGroup, f64)] = &[
    (
        "amara.diallo@demo.nephrocare.test",
        "Amara Diallo",
        "P-1001",
        "1961-03-14",
        Gender::Female,
        BloodGroup::OPos,
        68.5,
    ),
    ("jonas.weber@demo.nephrocare.test", "Jonas Weber", "P-1002", "1955-11-02", Gender::Male, BloodGroup::APos, 81.0),
    ("priya.nair@demo.nephrocare.test", "Priya Nair", "P-1003", "1972-07-29", Gender::Female, BloodGroup::BNeg, 59.2),
    ("tomas.novak@demo.nephrocare.test", "Tomas Novak", "P-1004", "1948-01-20", Gender::Male, BloodGroup::AbPos, 74.8),
];
const DEMO_DEVICES: &[(&str, &str, &str)] = &[
    ("DM-001", "Dialysis machine bay 1", "Dialysis unit"),
    ("DM-002", "Dialysis machine bay 2", "Dialysis unit"),
    ("DM-003", "Dialysis machine bay 3", "Dialysis unit"),
    ("DM-004", "Dialysis machine bay 4", "Dialysis unit"),
];

/// Creates the demo hospital (and a second hospital, to show isolation) unless it exists,
/// and returns a printable summary with the logins.
pub async fn seed_demo(db: &DatabaseConnection) -> Result<String, SeedError> {
    let existing = hospitals::Entity::find().filter(hospitals::Column::Code.eq("demo")).one(db).await?;
    let mut out = String::new();
    if existing.is_some() {
        writeln!(out, "demo data already present (hospital code 'demo'); logins:").ok();
    } else {
        create_demo(db).await?;
        writeln!(out, "demo data created; logins:").ok();
    }
    let demo = hospitals::Entity::find().filter(hospitals::Column::Code.eq("demo")).one(db).await?;
    let Some(demo) = demo else {
        return Err(SeedError::Invalid("demo hospital missing after seeding".into()));
    };
    writeln!(out, "  hospital      Demo General Hospital (id {})", demo.id).ok();
    writeln!(out, "  password      {DEMO_PASSWORD}   (every demo account)").ok();
    writeln!(out, "  admin         admin@demo.nephrocare.test").ok();
    for (email, name) in DEMO_DOCTORS {
        writeln!(out, "  doctor        {email}   ({name})").ok();
    }
    for (email, name) in DEMO_TECHNICIANS {
        writeln!(out, "  technician    {email}   ({name})").ok();
    }
    for (email, name, ..) in DEMO_PATIENTS {
        writeln!(out, "  patient       {email}   ({name})").ok();
    }
    let devices = devices::Entity::find().filter(devices::Column::HospitalId.eq(demo.id)).all(db).await?;
    for d in devices {
        writeln!(out, "  device        {} id {}  secret {}", d.serial, d.id, demo_device_secret(&d.serial)).ok();
    }
    writeln!(out, "  other hospital  admin@riverside.nephrocare.test (Riverside Kidney Centre: sees nothing of the demo hospital)").ok();
    Ok(out)
}

async fn create_demo(db: &DatabaseConnection) -> Result<(), SeedError> {
    let password_hash = nc_access::password::hash(DEMO_PASSWORD.to_owned()).await?;
    let txn = db.begin().await?;
    let now = Utc::now();
    let hospital = insert_hospital(&txn, "Demo General Hospital", "demo").await?;
    let admin =
        insert_user(&txn, hospital, "admin@demo.nephrocare.test", "Demo Admin", Role::Admin, &password_hash).await?;

    let mut device_ids = Vec::new();
    for (serial, name, location) in DEMO_DEVICES {
        let secret_hash = nc_access::secret::hash_device_secret(&demo_device_secret(serial));
        let id = DeviceId::new();
        devices::ActiveModel {
            id: Set(id),
            hospital_id: Set(hospital),
            serial: Set((*serial).into()),
            name: Set((*name).into()),
            model: Set(Some("HD-5008".into())),
            location: Set(Some((*location).into())),
            ward: Set(Some("Dialysis unit".into())),
            status: Set(DeviceStatus::Active),
            online: Set(false),
            last_seen: Set(None),
            secret_hash: Set(secret_hash),
            secret_rotated_at: Set(now),
            maintenance_due_at: Set(Some(now + chrono::Duration::days(90))),
            last_maintenance_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        device_ids.push(id);
    }

    let assign = |device: DeviceId, user: UserId, role: AssignmentRole| device_assignments::ActiveModel {
        id: Set(AssignmentId::new()),
        hospital_id: Set(hospital),
        device_id: Set(device),
        user_id: Set(user),
        role: Set(role),
        assigned_by: Set(Some(admin)),
        assigned_at: Set(now),
        ended_at: Set(None),
        ended_by: Set(None),
    };
    // Each doctor and each technician is assigned two machines of their own.
    let mut staff = [
        (DEMO_DOCTORS, Role::Doctor, AssignmentRole::Doctor, Vec::new()),
        (DEMO_TECHNICIANS, Role::Technician, AssignmentRole::Technician, Vec::new()),
    ];
    for (people, role, assignment, ids) in &mut staff {
        for (i, (email, name)) in people.iter().enumerate() {
            let id = insert_user(&txn, hospital, email, name, *role, &password_hash).await?;
            for d in &device_ids[i * 2..i * 2 + 2] {
                assign(*d, id, *assignment).insert(&txn).await?;
            }
            ids.push(id);
        }
    }
    let [(.., doctors), (.., technicians)] = staff;
    let mut patient_users = Vec::new();
    let mut patient_ids = Vec::new();
    for (i, (email, name, number, dob, gender, blood, weight)) in DEMO_PATIENTS.iter().enumerate() {
        let user = insert_user(&txn, hospital, email, name, Role::Patient, &password_hash).await?;
        patient_users.push(user);
        let patient = PatientId::new();
        patient_ids.push(patient);
        patients::ActiveModel {
            id: Set(patient),
            hospital_id: Set(hospital),
            user_id: Set(Some(user)),
            patient_number: Set((*number).into()),
            name: Set((*name).into()),
            date_of_birth: Set(NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok()),
            gender: Set(*gender),
            blood_group: Set(Some(*blood)),
            assigned_doctor_id: Set(Some(doctors[i / 2])),
            assigned_device_id: Set(Some(device_ids[i])),
            dialysis_schedule: Set(
                serde_json::json!({"days": ["mon", "wed", "fri"], "start": "08:00", "durationMinutes": 240}),
            ),
            last_dialysis_at: Set(None),
            dry_weight_kg: Set(Some(*weight)),
            diagnosis: Set(Some("End-stage kidney disease".into())),
            vascular_access: Set(Some(VascularAccess::AvFistula)),
            allergies: Set(None),
            medications: Set(None),
            notes: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
    }

    let other = insert_hospital(&txn, "Riverside Kidney Centre", "riverside").await?;
    insert_user(&txn, other, "admin@riverside.nephrocare.test", "Riverside Admin", Role::Admin, &password_hash).await?;
    txn.commit().await?;

    // Two conversations to start from: the first doctor with their first patient, and the
    // room of machine DM-001's doctor and technician. Seeding only writes data: nobody is
    // connected, so nothing is published.
    let chat = nc_chat::Chat::new(db.clone(), &nc_chat::ChatSettings::default(), &nc_messaging::Outbound::none());
    let person = |id: UserId, role: Role| nc_access::UserSubject { id, role, hospital, family: None };
    let doctor = person(doctors[0], Role::Doctor);
    let demo_chat = async {
        let request = nc_access::RoomRequest::DoctorPatient { counterpart: patient_users[0] };
        let (room, _) = chat.open(&doctor, request).await?;
        chat.post(&doctor, room.id, Some("demo-1"), "Good morning Amara, how did you feel after Monday's session?")
            .await?;
        let amara = person(patient_users[0], Role::Patient);
        chat.post(&amara, room.id, Some("demo-2"), "A little tired in the evening, otherwise fine.").await?;
        let request =
            nc_access::RoomRequest::DoctorTechnician { device: device_ids[0], counterpart: Some(technicians[0]) };
        let (room, _) = chat.open(&doctor, request).await?;
        chat.post(
            &doctor,
            room.id,
            Some("demo-3"),
            "DM-001: please check the venous pressure sensor before the 08:00 shift.",
        )
        .await?;
        Ok::<_, nc_chat::ChatError>(())
    };
    demo_chat.await.map_err(|e| SeedError::Invalid(format!("demo chat: {e}")))?;
    demo_bookings(db, person(admin, Role::Admin), &patient_ids, &device_ids)
        .await
        .map_err(|e| SeedError::Invalid(format!("demo bookings: {e}")))
}

/// The unit's week: Europe/Berlin, 06:00-22:00 Monday to Saturday, and each patient's
/// recurring series on their own machine for four weeks from next Monday (Mon/Wed/Fri or
/// Tue/Thu/Sat, mornings or afternoons), leaving free slots to book.
async fn demo_bookings(
    db: &DatabaseConnection,
    admin: nc_access::UserSubject,
    patients: &[PatientId],
    devices: &[DeviceId],
) -> Result<(), nc_bookings::BookingError> {
    use chrono::Datelike;
    let bookings = nc_bookings::Bookings::new(db.clone(), nc_messaging::Outbound::none().publisher);
    let tz: nc_bookings::Tz = "Europe/Berlin".parse().expect("a known time zone");
    bookings.set_settings(&admin, nc_bookings::Settings::defaults(tz)).await?;
    let today = Utc::now().with_timezone(&tz).date_naive();
    let monday = today + chrono::Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
    for (i, (patient, device)) in patients.iter().zip(devices).enumerate() {
        let weekdays = if i % 2 == 0 {
            vec![Weekday::Mon, Weekday::Wed, Weekday::Fri]
        } else {
            vec![Weekday::Tue, Weekday::Thu, Weekday::Sat]
        };
        let rule = nc_bookings::series::Rule {
            weekdays,
            start_minutes: if i < 2 { 7 * 60 } else { 13 * 60 },
            first_date: monday,
            weeks: 4,
            duration_minutes: 240,
        };
        let request = nc_bookings::SeriesRequest {
            patient: Some(*patient),
            device: *device,
            rule,
            book_what_fits: true,
            notes: Some("Regular dialysis".into()),
        };
        bookings.create_series(&admin, request).await?;
    }
    Ok(())
}
