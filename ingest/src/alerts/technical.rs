//! Technical conditions that do not come with a reading: the device's connection
//! (`device_offline`, from the broker's presence events) and maintenance due
//! (`maintenance_due`, from the devices' due dates).
//!
//! Connection alarms that clinicians trust:
//! - an abrupt loss raises `device_offline` only if the device is still offline after the
//!   offline delay (default 15 s): a reconnect within it raises nothing. The check at the
//!   end of the delay also asks the database, so a device that reconnected through another
//!   node is not reported offline;
//! - a flapping link (`flapping_drops` abrupt losses within `flapping_window`) raises one
//!   `device_offline` at once ("unstable connection") and keeps it open until the link has
//!   been stable for the window: N drops make one alarm, not N;
//! - a graceful disconnect (the machine said goodbye) raises nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nc_alarms::{ClearCause, NewAlert, Subject};
use nc_domain::{AlertPriority, DeviceId, HospitalId};
use uuid::Uuid;

use super::{AlertEngine, Condition};

/// The connection history of one device.
#[derive(Debug, Default)]
pub(super) struct Link {
    /// Abrupt losses within the flapping window.
    drops: VecDeque<DateTime<Utc>>,
    /// Changes with every presence event: a timer set at one generation acts only if none came since.
    generation: u64,
    /// Unstable until then: the offline alert stays open.
    unstable_until: Option<DateTime<Utc>>,
}

const OFFLINE: &str = "device_offline";

impl AlertEngine {
    /// A device went offline (abruptly or gracefully) or came back.
    pub async fn presence(
        self: &Arc<Self>,
        device: DeviceId,
        hospital: HospitalId,
        online: bool,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let d = device.as_uuid();
        self.ensure_loaded(d).await?;
        let abrupt = matches!(reason, "connection_lost" | "keepalive_timeout");
        let window = chrono::Duration::from_std(self.settings.flapping_window).unwrap_or(chrono::Duration::zero());
        let (generation, flapping, unstable_until) = {
            let mut links = self.links.lock().expect("links");
            let link = links.entry(d).or_default();
            link.generation += 1;
            while link.drops.front().is_some_and(|t| *t < at - window) {
                link.drops.pop_front();
            }
            let mut flapping = None;
            if !online && abrupt {
                link.drops.push_back(at);
                if link.drops.len() >= self.settings.flapping_drops {
                    link.unstable_until = Some(at + window);
                    flapping = Some(link.drops.len());
                }
            }
            (link.generation, flapping, link.unstable_until.filter(|u| *u > at))
        };
        let open = self.conditions.lock().await.get(&(d, OFFLINE.into())).and_then(|c| c.open);
        match (online, open) {
            (false, None) if abrupt => match flapping {
                Some(drops) => {
                    let secs = self.settings.flapping_window.as_secs();
                    let message = format!("The device's connection is unstable: {drops} drops within {secs} s");
                    self.raise_offline(d, hospital, message, at).await?;
                }
                None => {
                    let this = self.clone();
                    let delay = self.settings.offline_delay;
                    let reason = reason.replace('_', " ");
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if let Err(e) = this.offline_for_delay(d, hospital, generation, &reason, at).await {
                            tracing::warn!(error = %e, "offline alert check failed");
                        }
                    });
                }
            },
            (true, Some(id)) => match unstable_until {
                // An unstable link stays alarmed until it has held for the window.
                Some(until) => {
                    let this = self.clone();
                    let wait = (until - Utc::now()).to_std().unwrap_or_default();
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        if this.generation(d) == generation {
                            this.clear_offline(d, id, Utc::now()).await;
                        }
                    });
                }
                None => self.clear_offline(d, id, at).await,
            },
            _ => {}
        }
        Ok(())
    }

    fn generation(&self, device: Uuid) -> u64 {
        self.links.lock().expect("links").get(&device).map_or(0, |l| l.generation)
    }

    /// The offline delay has passed since a loss at generation `generation`: raise if
    /// nothing happened since and the database agrees the device is offline.
    async fn offline_for_delay(
        &self,
        d: Uuid,
        hospital: HospitalId,
        generation: u64,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        if self.generation(d) != generation {
            return Ok(());
        }
        let online: Option<bool> =
            sqlx::query_scalar("SELECT online FROM devices WHERE id = $1").bind(d).fetch_optional(&self.pool).await?;
        if online != Some(false) {
            return Ok(());
        }
        let secs = self.settings.offline_delay.as_secs();
        let message = format!("The device lost its connection ({reason}) and has not come back for {secs} s");
        self.raise_offline(d, hospital, message, at).await
    }

    async fn raise_offline(
        &self,
        d: Uuid,
        hospital: HospitalId,
        message: String,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let session: Option<(Uuid, Option<Uuid>)> =
            sqlx::query_as("SELECT id, patient_id FROM device_sessions WHERE device_id = $1 AND status = 'active'")
                .bind(d)
                .fetch_optional(&self.pool)
                .await?;
        let id = self
            .alarms
            .raise(NewAlert::technical(
                Subject {
                    hospital: hospital.as_uuid(),
                    device: d,
                    patient: session.and_then(|s| s.1),
                    session: session.map(|s| s.0),
                },
                OFFLINE,
                AlertPriority::Medium,
                message,
                at,
            ))
            .await?;
        self.conditions
            .lock()
            .await
            .insert((d, OFFLINE.into()), Condition { since: Some(at), open: id, ..Default::default() });
        Ok(())
    }

    async fn clear_offline(&self, d: Uuid, id: Uuid, at: DateTime<Utc>) {
        self.conditions.lock().await.insert((d, OFFLINE.into()), Condition::default());
        self.links.lock().expect("links").entry(d).or_default().unstable_until = None;
        if let Err(e) = self.alarms.clear_auto(id, at, ClearCause::ConditionEnded).await {
            tracing::warn!(error = %e, "could not clear an offline alert");
        }
    }

    /// Raises `maintenance_due` for devices past their maintenance date, and clears it once
    /// the date has moved on (a maintenance was recorded). Runs every minute, and for one
    /// device when its maintenance is recorded ([`AlertEngine::check_maintenance_of`]).
    pub async fn check_maintenance(&self) -> Result<(), sqlx::Error> {
        self.check_maintenance_of(None).await
    }

    /// [`AlertEngine::check_maintenance`] for one device (`None`: every device).
    pub async fn check_maintenance_of(&self, device: Option<DeviceId>) -> Result<(), sqlx::Error> {
        // The open alarms are the alarm system's to read; the devices' dates are ours.
        let open = self.alarms.open_with_code("maintenance_due", device).await?;
        let alarmed: Vec<Uuid> = open.iter().map(|a| a.device_id).collect();
        let device = device.map(|d| d.as_uuid());
        let due: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT d.id, d.hospital_id, d.maintenance_due_at FROM devices d
              WHERE d.maintenance_due_at <= now() AND d.status <> 'inactive' AND ($1::uuid IS NULL OR d.id = $1)
                AND NOT (d.id = ANY($2))",
        )
        .bind(device)
        .bind(&alarmed)
        .fetch_all(&self.pool)
        .await?;
        for (device, hospital, at) in due {
            let message = format!("Maintenance was due on {}", at.format("%Y-%m-%d"));
            self.alarms
                .raise(NewAlert::technical(
                    Subject { hospital, device, patient: None, session: None },
                    "maintenance_due",
                    AlertPriority::Low,
                    message,
                    Utc::now(),
                ))
                .await?;
        }
        let settled: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE id = ANY($1) AND (maintenance_due_at IS NULL OR maintenance_due_at > now())",
        )
        .bind(&alarmed)
        .fetch_all(&self.pool)
        .await?;
        let done = open.iter().filter(|a| settled.contains(&a.device_id)).map(|a| a.id);
        for id in done {
            self.alarms.clear_auto(id, Utc::now(), ClearCause::MaintenanceDone).await?;
        }
        Ok(())
    }
}
