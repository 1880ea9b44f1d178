//! Technical conditions that do not come with a reading: the device going offline
//! abruptly (`device_offline`, from the broker's presence events) and maintenance due
//! (`maintenance_due`, from the devices' due dates).

use chrono::{DateTime, Utc};
use nc_domain::{DeviceId, HospitalId};
use uuid::Uuid;

use super::{AlertEngine, AlertError, Condition};

impl AlertEngine {
    /// A device went offline abruptly (raise `device_offline`) or came back (clear it).
    pub async fn presence(
        &self,
        device: DeviceId,
        hospital: HospitalId,
        online: bool,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let d = device.as_uuid();
        self.ensure_loaded(d).await?;
        let key = (d, std::borrow::Cow::Borrowed("device_offline"));
        let open = self.conditions.lock().await.get(&key).and_then(|c| c.open);
        let abrupt = matches!(reason, "connection_lost" | "keepalive_timeout");
        match (online, open) {
            (false, None) if abrupt => {
                let session: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
                    "SELECT id, patient_id FROM device_sessions WHERE device_id = $1 AND status = 'active'",
                )
                .bind(d)
                .fetch_optional(&self.pool)
                .await?;
                let message = format!("The device lost its connection ({})", reason.replace('_', " "));
                let id = self
                    .raise_for(
                        hospital.as_uuid(),
                        d,
                        session.and_then(|s| s.1),
                        session.map(|s| s.0),
                        "device_offline",
                        "technical",
                        None,
                        "medium",
                        message,
                        None,
                        None,
                        at,
                    )
                    .await?;
                self.conditions.lock().await.insert(key, Condition { since: Some(at), open: id });
            }
            (true, Some(id)) => {
                self.conditions.lock().await.insert(key, Condition::default());
                if let Err(AlertError::Db(e)) = self.clear(id, None, at).await {
                    return Err(e);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Raises `maintenance_due` for devices past their maintenance date, and clears it once
    /// the date has moved on (a maintenance was recorded). Runs every minute, and for one
    /// device when its maintenance is recorded ([`AlertEngine::check_maintenance_of`]).
    pub async fn check_maintenance(&self) -> Result<(), sqlx::Error> {
        self.check_maintenance_of(None).await
    }

    /// [`AlertEngine::check_maintenance`] for one device (`None`: every device).
    pub async fn check_maintenance_of(&self, device: Option<DeviceId>) -> Result<(), sqlx::Error> {
        let device = device.map(|d| d.as_uuid());
        let due: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT d.id, d.hospital_id, d.maintenance_due_at FROM devices d
              WHERE d.maintenance_due_at <= now() AND d.status <> 'inactive' AND ($1::uuid IS NULL OR d.id = $1)
                AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id AND a.code = 'maintenance_due' AND a.state <> 'cleared')",
        )
        .bind(device)
        .fetch_all(&self.pool)
        .await?;
        for (device, hospital, at) in due {
            let message = format!("Maintenance was due on {}", at.format("%Y-%m-%d"));
            self.raise_for(
                hospital,
                device,
                None,
                None,
                "maintenance_due",
                "technical",
                None,
                "low",
                message,
                None,
                None,
                Utc::now(),
            )
            .await?;
        }
        let done: Vec<Uuid> = sqlx::query_scalar(
            "SELECT a.id FROM alerts a JOIN devices d ON d.id = a.device_id
              WHERE a.code = 'maintenance_due' AND a.state <> 'cleared' AND (d.maintenance_due_at IS NULL OR d.maintenance_due_at > now())
                AND ($1::uuid IS NULL OR d.id = $1)",
        )
        .bind(device)
        .fetch_all(&self.pool)
        .await?;
        for id in done {
            if let Err(AlertError::Db(e)) = self.clear(id, None, Utc::now()).await {
                return Err(e);
            }
        }
        Ok(())
    }
}
