//! Reads of the alarm system's tables for the other transports and capabilities (the REST
//! list, FHIR's DetectedIssue, Bulk export, session summaries, a machine's performance
//! figures): the `alerts` table is read here and nowhere else, so its columns and states
//! are this crate's business.

use chrono::{DateTime, NaiveDate, Utc};
use nc_access::policy::AlertScope;
use nc_domain::{AlertKind, AlertState, DeviceId, HospitalId, PatientId, SessionId};
use nc_entities::alerts;
use sea_orm::{ColumnTrait, Condition, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::model::{Alert, ALERT_COLUMNS};
use crate::Alarms;

/// What a list of alerts narrows to besides the policy's scope.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    pub state: Option<AlertState>,
    /// Only alerts that need attention: not cleared, or latched.
    pub open_only: bool,
}

impl Alarms {
    /// A page of the alerts `scope` lets its subject see, newest first, and how many there
    /// are in all.
    pub async fn list(
        &self,
        scope: &AlertScope,
        filter: ListFilter,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<alerts::Model>, u64), DbErr> {
        let mut query = alerts::Entity::find().filter(scope.condition());
        if let Some(s) = filter.state {
            query = query.filter(alerts::Column::State.eq(s));
        }
        if filter.open_only {
            query = query.filter(
                Condition::any()
                    .add(alerts::Column::State.ne(AlertState::Cleared))
                    .add(alerts::Column::Latched.eq(true)),
            );
        }
        let total = query.clone().count(&self.inner.db).await?;
        let items = query
            .order_by_desc(alerts::Column::RaisedAt)
            .order_by_desc(alerts::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.inner.db)
            .await?;
        Ok((items, total))
    }

    /// A hospital's alerts that are not cleared, of a patient and/or a device, newest first.
    pub async fn open_alarms(
        &self,
        hospital: HospitalId,
        patient: Option<PatientId>,
        device: Option<DeviceId>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Alert>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
              WHERE hospital_id = $1 AND state <> 'cleared'
                AND ($2::uuid IS NULL OR patient_id = $2) AND ($3::uuid IS NULL OR device_id = $3)
              ORDER BY raised_at DESC, id DESC LIMIT $4 OFFSET $5"
        ))
        .bind(hospital.as_uuid())
        .bind(patient.map(|p| p.as_uuid()))
        .bind(device.map(|d| d.as_uuid()))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await
    }

    /// An alert that is not cleared.
    pub async fn open_alarm(&self, id: Uuid) -> Result<Option<Alert>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND state <> 'cleared'"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
    }

    /// The alarms of condition `code` that are not cleared (of one device, or all).
    pub async fn open_with_code(&self, code: &str, device: Option<DeviceId>) -> Result<Vec<Alert>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE code = $1 AND state <> 'cleared' AND ($2::uuid IS NULL OR device_id = $2)"
        ))
        .bind(code)
        .bind(device.map(|d| d.as_uuid()))
        .fetch_all(self.pool())
        .await
    }

    /// How many alarms were raised during a treatment session (any state).
    pub async fn raised_in_session(&self, session: SessionId) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM alerts WHERE session_id = $1")
            .bind(session.as_uuid())
            .fetch_one(self.pool())
            .await
    }

    /// How many alarms `device` raised in `[from, to)`, per day of the time zone `tz` and
    /// kind: (day, kind, count), days without alarms left out.
    pub async fn raised_per_day(
        &self,
        device: DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        tz: &str,
    ) -> Result<Vec<(NaiveDate, AlertKind, i64)>, sqlx::Error> {
        let rows: Vec<(NaiveDate, String, i64)> = sqlx::query_as(
            "SELECT (raised_at AT TIME ZONE $4)::date AS day, kind, count(*) FROM alerts
              WHERE device_id = $1 AND raised_at >= $2 AND raised_at < $3 GROUP BY 1, 2",
        )
        .bind(device.as_uuid())
        .bind(from)
        .bind(to)
        .bind(tz)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(day, kind, n)| {
                let kind = kind.parse().map_err(|e: nc_domain::UnknownVariant| sqlx::Error::ColumnDecode {
                    index: "kind".into(),
                    source: e.to_string().into(),
                })?;
                Ok((day, kind, n))
            })
            .collect()
    }
}
