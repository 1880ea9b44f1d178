//! A machine's performance over a period, computed in SQL over what is stored: presence
//! (`device_presence_events`: uptime, connection drops; before the first event the
//! machine's presence is unknown, not offline), treatment sessions (`device_sessions`:
//! treatments, treatment hours, utilization against the unit's opening hours), readings
//! (`health_metrics`: count, `seq` numbers skipped within a session, ingest lag from
//! `received_at`, the live readings' apart from the late ones: see [`LATE_AFTER_MS`]),
//! refused messages (`device_rejections`), alarms by kind (read by the alarm system,
//! `Alarms::raised_per_day`), and the maintenance dates (`devices`). Per day of the unit's
//! time zone, and for the whole period.
//!
//! Periods are half-open `[from, to)`; what lies after now counts as not yet observed.

use chrono::{DateTime, NaiveDate, Utc};
use nc_domain::{AlertKind, DeviceId};
use sqlx::{FromRow, PgPool, Row};

/// The unit's opening hours per weekday (Monday first): minutes after local midnight of
/// opening and closing, `None` when closed.
pub type Hours = [Option<(u16, u16)>; 7];

/// A reading stored more than this long after its timestamp (`received_at - time`) is
/// late: a back-fill (a machine sending what it buffered through a long outage, or past
/// treatments), not live data. Live ingest lag ([`Lag`]) is measured over the other
/// readings; late ones are only counted ([`Performance::late_readings`]). Five minutes
/// covers a machine's buffering through a short loss of connection (the broker's keepalive
/// and a reconnection take seconds) with room to spare; a reading this old is no longer
/// what a central station shows as live.
pub const LATE_AFTER_MS: f64 = 300_000.0;

/// One day (of the unit's time zone), or the whole period.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct Figures {
    /// Seconds of the period that have passed (its part before now) since the machine's
    /// presence was first recorded: before its first `device_presence_events` row whether it
    /// was connected is unknown, and that time is not counted as offline.
    pub observed_seconds: f64,
    /// Seconds connected to the broker.
    pub connected_seconds: f64,
    /// Abrupt losses of the connection (`connection_lost`, `keepalive_timeout`).
    pub connection_drops: i64,
    /// Treatment sessions started.
    pub treatments: i64,
    /// Treatment time (sessions overlapping the period, the part inside it), seconds.
    pub treatment_seconds: f64,
    /// The unit's opening hours in the period, seconds.
    pub open_seconds: f64,
    /// Treatment time within the opening hours, seconds.
    pub treatment_open_seconds: f64,
    /// Readings stored (by reading time).
    pub readings: i64,
    /// `seq` numbers skipped within a treatment session, counted per day (a hole across
    /// midnight is not counted).
    pub missing_readings: i64,
    /// Messages refused by ingest (invalid payloads, seq conflicts).
    pub rejected_messages: i64,
    /// Alarms raised, by kind (from the alarm system, not this query's columns).
    #[sqlx(default)]
    pub technical_alarms: i64,
    #[sqlx(default)]
    pub physiological_alarms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub date: NaiveDate,
    pub figures: Figures,
}

/// Time from a reading's timestamp to its storage (`received_at - time`, at least 0), ms,
/// over the live readings (stored at most [`LATE_AFTER_MS`] after their timestamp).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Performance {
    pub days: Vec<Day>,
    pub total: Figures,
    /// None when no live reading was stored in the period.
    pub lag: Option<Lag>,
    /// Readings stored more than [`LATE_AFTER_MS`] after their timestamp (back-fill).
    pub late_readings: i64,
    /// The longest time from a late reading's timestamp to its storage, ms (None without
    /// late readings).
    pub late_lag_max_ms: Option<f64>,
    pub last_maintenance_at: Option<DateTime<Utc>>,
    pub maintenance_due_at: Option<DateTime<Utc>>,
    /// Days since the last recorded maintenance.
    pub days_since_maintenance: Option<f64>,
    /// Days until the next maintenance is due (negative: overdue).
    pub days_until_maintenance: Option<f64>,
}

/// The days of the period in the unit's time zone `$4`: each one's bounds clipped to
/// `[$2, $3)`, its part before now, and its opening hours (`$5`/`$6`: opening and closing
/// minute per ISO weekday, -1 closed). `$1` is the device.
const DAYS: &str = r#"
days AS (
    SELECT d::date AS day, b.s, b.e, least(b.e, greatest(b.s, now())) AS seen_until, o.open_s, o.open_e
    FROM generate_series(($2::timestamptz AT TIME ZONE $4)::date,
                         (($3::timestamptz - interval '1 microsecond') AT TIME ZONE $4)::date,
                         interval '1 day') AS d
    CROSS JOIN LATERAL (SELECT greatest(d::date::timestamp AT TIME ZONE $4, $2) AS s,
                               least((d::date + 1)::timestamp AT TIME ZONE $4, $3) AS e) AS b
    CROSS JOIN LATERAL (SELECT ($5::int[])[extract(isodow FROM d)::int] AS om,
                               ($6::int[])[extract(isodow FROM d)::int] AS cm) AS h
    CROSS JOIN LATERAL (SELECT CASE WHEN h.om >= 0 THEN greatest((d::date + make_interval(mins => h.om)) AT TIME ZONE $4, b.s) END AS open_s,
                               CASE WHEN h.om >= 0 THEN least((d::date + make_interval(mins => h.cm)) AT TIME ZONE $4, b.e) END AS open_e) AS o
)"#;

/// Seconds of overlap of [a, b) and [c, d) (0 when apart or unknown).
fn overlap(a: &str, b: &str, c: &str, d: &str) -> String {
    format!("coalesce(greatest(extract(epoch FROM least({b}, {d}) - greatest({a}, {c})), 0), 0)")
}

/// The figures of `device` per day of `tz` in `[from, to)`, and in total.
pub async fn device_performance(
    pool: &PgPool,
    alarms: &nc_alarms::Alarms,
    device: DeviceId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tz: &str,
    hours: &Hours,
) -> Result<Performance, sqlx::Error> {
    let opens: Vec<i32> = hours.iter().map(|h| h.map_or(-1, |(o, _)| i32::from(o))).collect();
    let closes: Vec<i32> = hours.iter().map(|h| h.map_or(-1, |(_, c)| i32::from(c))).collect();
    let presence_overlap = overlap("p.s", "p.e", "days.s", "days.seen_until");
    let session_overlap = overlap("x.started_at", "coalesce(x.ended_at, now())", "days.s", "days.e");
    let session_open_overlap = overlap(
        "greatest(x.started_at, days.open_s)",
        "least(coalesce(x.ended_at, now()), days.open_e)",
        "days.s",
        "days.e",
    );
    let sql = format!(
        r#"WITH {DAYS},
known AS (
    -- The machine's first recorded presence: before it, connected or not is unknown.
    SELECT min(at) AS since FROM device_presence_events WHERE device_id = $1
),
presence AS (
    SELECT at, online, reason FROM device_presence_events
    WHERE device_id = $1 AND at < $3
      AND at >= coalesce((SELECT max(at) FROM device_presence_events WHERE device_id = $1 AND at <= $2), '-infinity')
),
spans AS (
    SELECT online, at AS s, coalesce(lead(at) OVER (ORDER BY at), least(now(), $3)) AS e FROM presence
),
readings AS (
    -- Per day and session: the seqs a session's numbering skipped that day (seq is unique
    -- per device: max - min + 1 - count); one hash aggregate, no sort of the readings.
    SELECT day, sum(n)::int8 AS n, coalesce(sum(max - min + 1 - n) FILTER (WHERE session_id IS NOT NULL), 0)::int8 AS missing
    FROM (SELECT (time AT TIME ZONE $4)::date AS day, session_id, count(*) AS n, min(seq) AS min, max(seq) AS max
          FROM health_metrics WHERE device_id = $1 AND time >= $2 AND time < $3
          GROUP BY 1, 2) AS per_session
    GROUP BY day
)
SELECT days.day,
       CASE WHEN known.since IS NULL THEN 0
            ELSE greatest(extract(epoch FROM days.seen_until - greatest(days.s, known.since)), 0) END::float8 AS observed_seconds,
       (SELECT coalesce(sum({presence_overlap}), 0) FROM spans p WHERE p.online)::float8 AS connected_seconds,
       (SELECT count(*) FROM presence p WHERE NOT p.online AND p.reason IN ('connection_lost', 'keepalive_timeout')
            AND p.at >= days.s AND p.at < days.e) AS connection_drops,
       (SELECT count(*) FROM device_sessions x WHERE x.device_id = $1 AND x.started_at >= days.s AND x.started_at < days.e) AS treatments,
       (SELECT coalesce(sum({session_overlap}), 0) FROM device_sessions x
            WHERE x.device_id = $1 AND x.started_at < days.e AND (x.ended_at IS NULL OR x.ended_at > days.s))::float8 AS treatment_seconds,
       coalesce(greatest(extract(epoch FROM days.open_e - days.open_s), 0), 0)::float8 AS open_seconds,
       (SELECT coalesce(sum({session_open_overlap}), 0) FROM device_sessions x
            WHERE days.open_s IS NOT NULL AND x.device_id = $1 AND x.started_at < days.e
              AND (x.ended_at IS NULL OR x.ended_at > days.s))::float8 AS treatment_open_seconds,
       coalesce(rd.n, 0) AS readings,
       coalesce(rd.missing, 0) AS missing_readings,
       (SELECT coalesce(sum(j.count), 0) FROM device_rejections j
            WHERE j.device_id = $1 AND j.hour >= days.s AND j.hour < days.e)::int8 AS rejected_messages
FROM days CROSS JOIN known LEFT JOIN readings rd ON rd.day = days.day ORDER BY days.day"#
    );
    let rows = sqlx::query(&sql)
        .bind(device.as_uuid())
        .bind(from)
        .bind(to)
        .bind(tz)
        .bind(&opens)
        .bind(&closes)
        .fetch_all(pool)
        .await?;
    let mut days = Vec::with_capacity(rows.len());
    for r in rows {
        days.push(Day { date: r.try_get("day")?, figures: Figures::from_row(&r)? });
    }
    for (date, kind, n) in alarms.raised_per_day(device, from, to, tz).await? {
        if let Some(day) = days.iter_mut().find(|d| d.date == date) {
            match kind {
                AlertKind::Technical => day.figures.technical_alarms += n,
                AlertKind::Physiological => day.figures.physiological_alarms += n,
            }
        }
    }
    let mut total = Figures::default();
    for day in &days {
        total.add(&day.figures);
    }

    let lag = sqlx::query(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l) FILTER (WHERE l <= $4) AS p50, \
                percentile_cont(0.95) WITHIN GROUP (ORDER BY l) FILTER (WHERE l <= $4) AS p95, \
                max(l) FILTER (WHERE l <= $4) AS max, \
                count(*) FILTER (WHERE l > $4) AS late, max(l) FILTER (WHERE l > $4) AS late_max \
         FROM (SELECT greatest(extract(epoch FROM received_at - time) * 1000, 0)::float8 AS l \
               FROM health_metrics WHERE device_id = $1 AND time >= $2 AND time < $3) x",
    )
    .bind(device.as_uuid())
    .bind(from)
    .bind(to)
    .bind(LATE_AFTER_MS)
    .fetch_one(pool)
    .await?;
    let late_readings: i64 = lag.try_get("late")?;
    let late_lag_max_ms: Option<f64> = lag.try_get("late_max")?;
    let lag = match (lag.try_get::<Option<f64>, _>("p50")?, lag.try_get("p95")?, lag.try_get("max")?) {
        (Some(p50_ms), Some(p95_ms), Some(max_ms)) => Some(Lag { p50_ms, p95_ms, max_ms }),
        _ => None,
    };

    let m = sqlx::query(
        "SELECT last_maintenance_at, maintenance_due_at, \
                (extract(epoch FROM now() - last_maintenance_at) / 86400)::float8 AS since, \
                (extract(epoch FROM maintenance_due_at - now()) / 86400)::float8 AS until \
         FROM devices WHERE id = $1",
    )
    .bind(device.as_uuid())
    .fetch_one(pool)
    .await?;
    Ok(Performance {
        days,
        total,
        lag,
        late_readings,
        late_lag_max_ms,
        last_maintenance_at: m.try_get("last_maintenance_at")?,
        maintenance_due_at: m.try_get("maintenance_due_at")?,
        days_since_maintenance: m.try_get("since")?,
        days_until_maintenance: m.try_get("until")?,
    })
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.observed_seconds += o.observed_seconds;
        self.connected_seconds += o.connected_seconds;
        self.connection_drops += o.connection_drops;
        self.treatments += o.treatments;
        self.treatment_seconds += o.treatment_seconds;
        self.open_seconds += o.open_seconds;
        self.treatment_open_seconds += o.treatment_open_seconds;
        self.readings += o.readings;
        self.missing_readings += o.missing_readings;
        self.rejected_messages += o.rejected_messages;
        self.technical_alarms += o.technical_alarms;
        self.physiological_alarms += o.physiological_alarms;
    }

    /// Connected time as a percentage of the observed time (None when none is observed:
    /// the period has not begun, or no presence of the machine was recorded before its end).
    pub fn uptime_pct(&self) -> Option<f64> {
        (self.observed_seconds > 0.0).then(|| (100.0 * self.connected_seconds / self.observed_seconds).min(100.0))
    }

    /// Treatment time within opening hours as a percentage of the opening hours (None when
    /// the unit is closed throughout).
    pub fn utilization_pct(&self) -> Option<f64> {
        (self.open_seconds > 0.0).then(|| 100.0 * self.treatment_open_seconds / self.open_seconds)
    }
}
