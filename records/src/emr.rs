//! The EMR channel's sender: an outbox item (`{"session": id}`, queued when the treatment
//! ended) becomes the treatment's `ORU^R01`, built from what is stored now, and goes over the
//! MLLP transport to where the hospital's endpoint is now. A session that no longer exists, or a hospital whose EMR endpoint was
//! removed, parks the item (nothing to send, nowhere to send it).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use nc_domain::HospitalId;
use nc_outbox::{Item, SendError, SendFuture, Sender};
use serde::Deserialize;
use uuid::Uuid;

use crate::{oru, Records, TreatmentRecord};

#[derive(Deserialize)]
struct Queued {
    session: Uuid,
}

/// Builds each record when it is sent and hands it to the MLLP transport.
pub struct EmrSender {
    records: Records,
    mllp: Arc<dyn Sender>,
}

impl EmrSender {
    pub fn new(records: Records, mllp: Arc<dyn Sender>) -> Self {
        Self { records, mllp }
    }
}

/// A finished treatment as stored.
#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    status: String,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    patient_number: String,
    patient_name: String,
    date_of_birth: Option<chrono::NaiveDate>,
    gender: String,
    hospital_code: String,
    serial: String,
    ward: Option<String>,
    readings_received: i64,
    readings_expected: Option<i64>,
    completeness_pct: Option<f64>,
    uf_rate_ml_kg_h: Option<f64>,
    nadir_systolic: Option<f64>,
    summary: Option<serde_json::Value>,
}

impl Records {
    /// The finished treatment `session`, if it exists and has ended.
    pub async fn treatment(&self, session: Uuid) -> Result<Option<TreatmentRecord>, sqlx::Error> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT s.id, s.status, s.started_at, s.ended_at, p.patient_number, p.name AS patient_name, p.date_of_birth,
                    p.gender, h.code AS hospital_code, d.serial, d.ward, s.readings_received,
                    s.readings_expected, s.completeness_pct, s.uf_rate_ml_kg_h, s.nadir_systolic, s.summary
               FROM device_sessions s
               JOIN patients p ON p.id = s.patient_id
               JOIN devices d ON d.id = s.device_id
               JOIN hospitals h ON h.id = s.hospital_id
              WHERE s.id = $1",
        )
        .bind(session)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let Some(ended_at) = r.ended_at else { return Ok(None) };
        let metrics = r.summary.as_ref().and_then(|s| s.get("metrics")).and_then(|m| m.as_object());
        let summary = metrics
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        let f = |n: &str| v.get(n).and_then(serde_json::Value::as_f64);
                        Some((k.clone(), [f("min")?, f("avg")?, f("max")?]))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(TreatmentRecord {
            session: r.id,
            status: r.status,
            started_at: r.started_at,
            ended_at,
            patient_number: r.patient_number,
            patient_name: r.patient_name,
            date_of_birth: r.date_of_birth,
            gender: r.gender,
            hospital_code: r.hospital_code,
            machine_serial: r.serial,
            ward: r.ward,
            readings_received: r.readings_received,
            readings_expected: r.readings_expected,
            completeness_pct: r.completeness_pct,
            uf_rate_ml_kg_h: r.uf_rate_ml_kg_h,
            nadir_systolic: r.nadir_systolic,
            summary,
        }))
    }
}

impl Sender for EmrSender {
    fn send<'a>(&'a self, item: &'a Item) -> SendFuture<'a> {
        Box::pin(async move {
            let queued: Queued = serde_json::from_str(&item.payload)
                .map_err(|e| SendError::Refused(format!("not a queued treatment record: {e}")))?;
            let retry = |e: sqlx::Error| SendError::Retry(format!("database: {e}"));
            let record = self
                .records
                .treatment(queued.session)
                .await
                .map_err(retry)?
                .ok_or_else(|| SendError::Refused(format!("no finished treatment {}", queued.session)))?;
            let hospital = item.hospital_id.map(HospitalId).ok_or_else(|| SendError::Refused("no hospital".into()))?;
            let endpoint = self
                .records
                .emr(hospital)
                .await
                .map_err(|e| SendError::Retry(e.to_string()))?
                .filter(|e| e.enabled)
                .ok_or_else(|| SendError::Refused("the hospital has no EMR endpoint now".into()))?;
            let message = oru::treatment_record(&record, &endpoint, &Utc::now().fixed_offset());
            // Where the endpoint is now (it may have moved since the record was queued).
            let mut out = item.clone();
            out.destination =
                if endpoint.tls { format!("mllps://{}", endpoint.address) } else { endpoint.address.clone() };
            out.payload = message.encode();
            self.mllp.send(&out).await
        })
    }
}
