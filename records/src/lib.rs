//! Treatment records out: when a treatment ends, its record goes to the hospital's record
//! system (EMR) without anyone copying numbers.
//!
//! - Where: a hospital's EMR endpoint ([`EmrEndpoint`], `emr_endpoints`), set by its admins.
//! - When: the session's end queues it in the outbox in the same transaction (a trigger on
//!   `device_sessions`, migration 42: every way a session ends), ordered per patient.
//! - What: an HL7 v2 `ORU^R01` ([`oru`]) built from the stored session and its summary when
//!   it is sent ([`emr::EmrSender`], an outbox `Sender` over the MLLP transport): the patient's
//!   identifiers in PID, the treatment in OBR, one OBX per figure. Retried until the EMR
//!   acknowledges (`AA`), parked on `AR`; the control id is the session's, so the EMR
//!   recognises a repeat.
//! - And FHIR subscriptions ([`subscriptions`]): a treatment that ended, an alarm raised or
//!   changed, notified to the subscribers' `rest-hook` endpoints through the same outbox.

pub mod emr;
pub mod oru;
pub mod subscriptions;

use chrono::{DateTime, Utc};
use nc_domain::{HospitalId, UserId};
use serde::Serialize;
use sqlx::PgPool;

/// Where a hospital's treatment records go.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmrEndpoint {
    /// `host:port` of its MLLP listener.
    pub address: String,
    /// MSH-5 and MSH-6 of the records.
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MLLP over TLS (the EMR's certificate checked against `NEPHROCARE_ACM_CA` or the
    /// system's, and the host).
    pub tls: bool,
    /// Records are queued only while enabled.
    pub enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// The treatment-records capability. Cheap to clone.
#[derive(Clone)]
pub struct Records {
    pool: PgPool,
    subscriptions: subscriptions::Subscriptions,
}

impl Records {
    /// `allow_internal`: subscription endpoints inside the service's networks are accepted.
    pub fn new(pool: PgPool, allow_internal: bool) -> Self {
        Self { subscriptions: subscriptions::Subscriptions::new(pool.clone(), allow_internal), pool }
    }

    /// FHIR subscriptions.
    pub fn subscriptions(&self) -> &subscriptions::Subscriptions {
        &self.subscriptions
    }

    /// The hospital's EMR endpoint, if set.
    pub async fn emr(&self, hospital: HospitalId) -> Result<Option<EmrEndpoint>, RecordsError> {
        let row: Option<(String, String, String, bool, bool)> = sqlx::query_as(
            "SELECT address, receiving_application, receiving_facility, tls, enabled FROM emr_endpoints
              WHERE hospital_id = $1",
        )
        .bind(hospital.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(address, receiving_application, receiving_facility, tls, enabled)| EmrEndpoint {
            address,
            receiving_application,
            receiving_facility,
            tls,
            enabled,
        }))
    }

    /// Sets (or with `None` removes) the hospital's EMR endpoint.
    pub async fn set_emr(
        &self,
        hospital: HospitalId,
        endpoint: Option<&EmrEndpoint>,
        by: UserId,
    ) -> Result<(), RecordsError> {
        let Some(e) = endpoint else {
            sqlx::query("DELETE FROM emr_endpoints WHERE hospital_id = $1")
                .bind(hospital.as_uuid())
                .execute(&self.pool)
                .await?;
            return Ok(());
        };
        nc_hl7::mllp::check_address(&e.address)
            .map_err(|message| RecordsError::Invalid { field: "address", message })?;
        sqlx::query(
            "INSERT INTO emr_endpoints (hospital_id, address, receiving_application, receiving_facility, tls, enabled, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (hospital_id) DO UPDATE SET address = $2, receiving_application = $3, receiving_facility = $4,
                    tls = $5, enabled = $6, updated_by = $7, updated_at = now()",
        )
        .bind(hospital.as_uuid())
        .bind(&e.address)
        .bind(&e.receiving_application)
        .bind(&e.receiving_facility)
        .bind(e.tls)
        .bind(e.enabled)
        .bind(by.as_uuid())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A finished treatment, as its record tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct TreatmentRecord {
    pub session: uuid::Uuid,
    /// `completed` or `interrupted`.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub patient_number: String,
    pub patient_name: String,
    pub date_of_birth: Option<chrono::NaiveDate>,
    /// `male`, `female`, `other`, `unknown`.
    pub gender: String,
    pub hospital_code: String,
    pub machine_serial: String,
    pub ward: Option<String>,
    pub readings_received: i64,
    pub readings_expected: Option<i64>,
    pub completeness_pct: Option<f64>,
    pub uf_rate_ml_kg_h: Option<f64>,
    pub nadir_systolic: Option<f64>,
    /// Per measurement (JSON name): min, mean, max.
    pub summary: Vec<(String, [f64; 3])>,
}
