//! The tally of refused device messages (invalid, or a seq conflict) per device, hour and
//! error code. Refused messages are never stored as readings; a machine's performance
//! figures count them (`device_rejections`, read by [`crate::performance`]). Counting is in
//! memory, and the tally is added to the table by one upsert every
//! [`IngestSettings::rejections_flush`](crate::IngestSettings) (and at shutdown), so a
//! machine sending bad payloads at full speed costs one row update per interval, not one
//! per message. A tally that cannot be written is kept for the next attempt.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, Utc};
use nc_domain::{DeviceId, HospitalId};
use sqlx::PgPool;
use uuid::Uuid;

type Key = (Uuid, Uuid, DateTime<Utc>, &'static str);

#[derive(Default)]
pub struct Rejections {
    tally: Mutex<HashMap<Key, i64>>,
}

impl Rejections {
    /// Counts one refused message of `device`, now.
    pub fn count(&self, device: DeviceId, hospital: HospitalId, code: &'static str) {
        let hour = Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap_or_else(|_| Utc::now());
        *self
            .tally
            .lock()
            .expect("rejections")
            .entry((device.as_uuid(), hospital.as_uuid(), hour, code))
            .or_default() += 1;
    }

    /// Adds the tally to `device_rejections` (one statement); on failure the counts stay
    /// for the next attempt.
    pub async fn flush(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let taken = std::mem::take(&mut *self.tally.lock().expect("rejections"));
        if taken.is_empty() {
            return Ok(());
        }
        let devices: Vec<Uuid> = taken.keys().map(|k| k.0).collect();
        let hospitals: Vec<Uuid> = taken.keys().map(|k| k.1).collect();
        let hours: Vec<DateTime<Utc>> = taken.keys().map(|k| k.2).collect();
        let codes: Vec<&str> = taken.keys().map(|k| k.3).collect();
        let counts: Vec<i64> = taken.values().copied().collect();
        let written = sqlx::query(
            "INSERT INTO device_rejections (device_id, hospital_id, hour, code, count) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::bigint[]) \
             ON CONFLICT (device_id, hour, code) DO UPDATE SET count = device_rejections.count + EXCLUDED.count",
        )
        .bind(&devices)
        .bind(&hospitals)
        .bind(&hours)
        .bind(&codes)
        .bind(&counts)
        .execute(pool)
        .await;
        if let Err(e) = written {
            let mut tally = self.tally.lock().expect("rejections");
            for (k, n) in taken {
                *tally.entry(k).or_default() += n;
            }
            return Err(e);
        }
        Ok(())
    }
}
