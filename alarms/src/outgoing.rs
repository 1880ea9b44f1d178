//! What an alarm's messages outside MQTT (the alert manager's reports, e-mails) say about
//! its machine, its place and its patient, and where the hospital's alert manager is: read
//! with one query per step. A raise reads it before its transaction (concurrently with the
//! policy and the people) and writes its messages with one statement, so the transaction
//! that stores an alarm takes few round trips even when the database is busy.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::acm::AlertManager;

/// An alarm's surroundings (see the module).
#[derive(Debug, Clone)]
pub(crate) struct Surroundings {
    /// The hospital's alert manager, if it has one enabled.
    pub manager: Option<AlertManager>,
    pub hospital_code: String,
    pub device_serial: String,
    pub device_name: String,
    pub ward: Option<String>,
    pub patient_number: Option<String>,
    pub patient_name: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    hospital_code: String,
    device_serial: String,
    device_name: String,
    ward: Option<String>,
    patient_number: Option<String>,
    patient_name: Option<String>,
    address: Option<String>,
    receiving_application: Option<String>,
    receiving_facility: Option<String>,
    include_patient: Option<bool>,
    tls: Option<bool>,
}

/// The surroundings of an alarm of `device` (and `patient`'s treatment, if any).
pub(crate) async fn read<'e>(
    c: impl PgExecutor<'e>,
    device: Uuid,
    patient: Option<Uuid>,
) -> Result<Surroundings, sqlx::Error> {
    let r: Row = sqlx::query_as(
        "SELECT h.code AS hospital_code, d.serial AS device_serial, d.name AS device_name, d.ward,
                p.patient_number, p.name AS patient_name,
                m.address, m.receiving_application, m.receiving_facility, m.include_patient, m.tls
           FROM devices d JOIN hospitals h ON h.id = d.hospital_id
           LEFT JOIN patients p ON p.id = $2
           LEFT JOIN alert_managers m ON m.hospital_id = d.hospital_id AND m.enabled
          WHERE d.id = $1",
    )
    .bind(device)
    .bind(patient)
    .fetch_one(c)
    .await?;
    let manager = match (r.address, r.receiving_application, r.receiving_facility) {
        (Some(address), Some(receiving_application), Some(receiving_facility)) => Some(AlertManager {
            address,
            receiving_application,
            receiving_facility,
            include_patient: r.include_patient.unwrap_or(false),
            tls: r.tls.unwrap_or(false),
            enabled: true,
        }),
        _ => None,
    };
    Ok(Surroundings {
        manager,
        hospital_code: r.hospital_code,
        device_serial: r.device_serial,
        device_name: r.device_name,
        ward: r.ward,
        patient_number: r.patient_number,
        patient_name: r.patient_name,
    })
}
