//! The schema as the migrator builds it on the real PostgreSQL + TimescaleDB.

use sea_orm_migration::MigratorTrait;
use sqlx::{Executor, Row};

use crate::support::TestDb;

const TABLES: &[&str] = &[
    "hospitals",
    "users",
    "devices",
    "patients",
    "device_assignments",
    "temporary_access_grants",
    "refresh_tokens",
    "one_time_codes",
    "enrollment_codes",
    "outbound_messages",
    "access_audit_log",
    "device_sessions",
    "health_metrics",
    "device_latest_metrics",
    "health_metric_rollups_hourly",
    "health_metric_rollups_fine",
    "alert_thresholds",
    "alerts",
    "alert_events",
    "alert_escalation_rules",
    "medical_updates",
    "chat_rooms",
    "chat_room_participants",
    "chat_messages",
    "session_bookings",
    "booking_settings",
    "booking_series",
    "device_downtimes",
    "device_maintenance",
    "device_seq_watermarks",
    "fhir_export_jobs",
    "fhir_subscription_events",
    "fhir_subscriptions",
    "derived_backlog",
    "device_presence_events",
    "device_rejections",
    "mqtt_kept_sessions",
    "outbox",
    "alert_managers",
    "alert_manager_recipients",
    "alarm_fallbacks",
    "hl7_gateways",
    "hl7_gateway_messages",
    "hl7_gateway_unknown_codes",
    "emr_endpoints",
];

async fn tables(t: &TestDb) -> Vec<String> {
    let mut c = t.sql().await;
    sqlx::query(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'seaql_migrations' ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect()
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let t = TestDb::empty().await;
    nc_migration::Migrator::up(&t.db, None).await.unwrap();
    let mut expected: Vec<String> = TABLES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(tables(&t).await, expected);

    nc_migration::Migrator::down(&t.db, None).await.unwrap();
    assert!(tables(&t).await.is_empty(), "down removes every table");

    nc_migration::Migrator::up(&t.db, None).await.unwrap();
    assert_eq!(tables(&t).await, expected);
    assert!(nc_migration::Migrator::get_pending_migrations(&t.db).await.unwrap().is_empty());
}

/// The hourly rollups as they were stored before the wide shape (patient, metric, hour) →
/// (n, sum, min, max), ordered.
type Narrow = Vec<(uuid::Uuid, String, chrono::DateTime<chrono::Utc>, i64, f64, f64, f64)>;

/// (patient, hour, heart rate n/sum/min/max, spo2 n, UF goal n) in the wide shape.
type Wide = (uuid::Uuid, chrono::DateTime<chrono::Utc>, i32, f64, Option<f32>, Option<f32>, i32, i32);

async fn narrow_rollups(c: &mut sqlx::PgConnection) -> Narrow {
    sqlx::query_as(
        "SELECT patient_id, metric, bucket, n, sum, min, max FROM health_metric_rollups_hourly ORDER BY 1, 2, 3",
    )
    .fetch_all(c)
    .await
    .unwrap()
}

#[tokio::test]
async fn hourly_rollups_are_carried_over_to_one_row_per_patient_hour_and_back() {
    let t = TestDb::empty().await;
    nc_migration::Migrator::up(&t.db, Some(11)).await.unwrap();
    let mut c = t.sql().await;
    let (p, q) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    c.execute(
        format!(
            "INSERT INTO health_metric_rollups_hourly (patient_id, metric, bucket, n, sum, min, max) VALUES
             ('{p}', 'heart_rate', '2026-11-30 10:00+00', 3, 216, 70.5, 75.25),
             ('{p}', 'spo2', '2026-11-30 10:00+00', 2, 195, 97, 98),
             ('{p}', 'heart_rate', '2026-11-30 11:00+00', 1, 80, 80, 80),
             ('{q}', 'uf_goal_ml', '2026-11-30 10:00+00', 4, 8000, 2000, 2000)"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let before = narrow_rollups(&mut c).await;

    // Migration 12 only, so that one step down is that migration's down.
    nc_migration::Migrator::up(&t.db, Some(1)).await.unwrap();
    let wide: Vec<Wide> = sqlx::query_as(
        "SELECT patient_id, bucket, heart_rate_n, heart_rate_sum, heart_rate_min, heart_rate_max, spo2_n, uf_goal_ml_n
               FROM health_metric_rollups_hourly ORDER BY 1, 2",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let hour = |h: u32| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 30, h, 0, 0).unwrap();
    let mut want = vec![
        (p, hour(10), 3, 216.0, Some(70.5), Some(75.25), 2, 0),
        (p, hour(11), 1, 80.0, Some(80.0), Some(80.0), 0, 0),
        (q, hour(10), 0, 0.0, None, None, 0, 4),
    ];
    want.sort_by_key(|r| (r.0, r.1));
    assert_eq!(wide, want, "one row per patient and hour, each metric in its columns");
    let key: String = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE conrelid = 'health_metric_rollups_hourly'::regclass AND contype = 'p'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(key, "health_metric_rollups_hourly_pkey", "the key keeps the table's name");

    // Migration 12 reverted, back to 11.
    nc_migration::Migrator::down(&t.db, Some(1)).await.unwrap();
    assert_eq!(narrow_rollups(&mut c).await, before, "down gives the same rows back");
}

#[tokio::test]
async fn health_metrics_is_a_hypertable_with_one_day_chunks_and_its_indexes() {
    let t = TestDb::migrated().await;
    let mut c = t.sql().await;
    let interval: String = sqlx::query_scalar(
        "SELECT time_interval::text FROM timescaledb_information.dimensions
          WHERE hypertable_name = 'health_metrics' AND column_name = 'time'",
    )
    .fetch_one(&mut c)
    .await
    .expect("health_metrics is a hypertable partitioned by time");
    assert_eq!(interval, "1 day");

    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE tablename = 'health_metrics'")
            .fetch_all(&mut c)
            .await
            .unwrap();
    for wanted in ["health_metrics_patient_time_idx", "health_metrics_device_time_idx", "health_metrics_device_seq_key"]
    {
        assert!(indexes.iter().any(|i| i == wanted), "{wanted} missing from {indexes:?}");
    }
    let patient_idx: String =
        sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE indexname = 'health_metrics_patient_time_idx'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert!(patient_idx.contains("(patient_id, \"time\" DESC)"), "{patient_idx}");

    // A reading lands in a chunk; a redelivered reading (same device, seq, time) is stored once.
    let insert = "INSERT INTO health_metrics (time, device_id, seq, hospital_id, system_status, heart_rate)
                  VALUES ('2026-11-20T10:00:00Z', '0190c0de-0000-7000-8000-000000000001', 7,
                          '0190c0de-0000-7000-8000-000000000002', 'normal', 72)
                  ON CONFLICT (device_id, seq, time) DO NOTHING";
    c.execute(insert).await.unwrap();
    c.execute(insert).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM health_metrics").fetch_one(&mut c).await.unwrap();
    assert_eq!(n, 1);
    let chunks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM show_chunks('health_metrics')").fetch_one(&mut c).await.unwrap();
    assert_eq!(chunks, 1);
}

/// Inserts a hospital, a patient and two devices; returns (hospital, patient, device, device2).
async fn fixtures(db: &TestDb, c: &mut sqlx::PgConnection) -> (uuid::Uuid, uuid::Uuid, uuid::Uuid, uuid::Uuid) {
    let h = db.hospital("H", "h1").await;
    let (p, d, d2) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    sqlx::query("INSERT INTO patients (id, hospital_id, patient_number, name) VALUES ($1, $2, 'P1', 'Pat')")
        .bind(p)
        .bind(h)
        .execute(&mut *c)
        .await
        .unwrap();
    for (id, serial) in [(d, "DM-1"), (d2, "DM-2")] {
        sqlx::query(
            "INSERT INTO devices (id, hospital_id, serial, name, secret_hash) VALUES ($1, $2, $3, 'Machine', 'x')",
        )
        .bind(id)
        .bind(h)
        .bind(serial)
        .execute(&mut *c)
        .await
        .unwrap();
    }
    (h, p, d, d2)
}

async fn book(
    c: &mut sqlx::PgConnection,
    h: uuid::Uuid,
    p: uuid::Uuid,
    d: uuid::Uuid,
    start: &str,
    minutes: i32,
    status: &str,
) -> Result<(), String> {
    sqlx::query(
        "INSERT INTO session_bookings (id, hospital_id, patient_id, device_id, scheduled_start, duration_minutes, scheduled_end, blocked_until, status)
         VALUES ($1, $2, $3, $4, $5::timestamptz, $6, $5::timestamptz + make_interval(mins => $6), $5::timestamptz + make_interval(mins => $6), $7)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(h)
    .bind(p)
    .bind(d)
    .bind(start)
    .bind(minutes)
    .bind(status)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(|e| e.as_database_error().and_then(|d| d.constraint().map(str::to_owned)).unwrap_or(e.to_string()))
}

#[tokio::test]
async fn a_device_cannot_be_double_booked_but_adjacent_bookings_are_fine() {
    let t = TestDb::migrated().await;
    let mut c = t.sql().await;
    let (h, p, d, d2) = fixtures(&t, &mut c).await;
    // A second patient, so the device rule is tested on its own.
    let p2 = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO patients (id, hospital_id, patient_number, name) VALUES ($1, $2, 'P2', 'Pat 2')")
        .bind(p2)
        .bind(h)
        .execute(&mut c)
        .await
        .unwrap();

    book(&mut c, h, p, d, "2026-12-01T08:00:00Z", 240, "scheduled").await.unwrap();
    assert_eq!(
        book(&mut c, h, p2, d, "2026-12-01T11:00:00Z", 60, "confirmed").await,
        Err("session_bookings_device_no_overlap_excl".into()),
        "overlapping booking of the same device"
    );
    book(&mut c, h, p2, d, "2026-12-01T12:00:00Z", 60, "scheduled").await.expect("adjacent booking");
    book(&mut c, h, p2, d2, "2026-12-01T09:00:00Z", 60, "cancelled").await.expect("cancelled bookings do not block");
    assert_eq!(
        book(&mut c, h, p, d2, "2026-12-01T09:00:00Z", 60, "scheduled").await,
        Err("session_bookings_patient_no_overlap_excl".into()),
        "one patient cannot be in two sessions at once"
    );
    assert_eq!(
        book(&mut c, h, p2, d2, "2026-12-02T09:00:00Z", 5, "scheduled").await,
        Err("session_bookings_duration_check".into())
    );
}

#[tokio::test]
async fn check_constraints_reject_bad_enumerations_and_ranges() {
    let t = TestDb::migrated().await;
    let mut c = t.sql().await;
    let (h, p, d, _) = fixtures(&t, &mut c).await;
    let cases: Vec<(&str, String)> = vec![
        ("users_role_check", format!("INSERT INTO users (id, hospital_id, email, password_hash, role, name) VALUES (gen_random_uuid(), '{h}', 'a@b.c', 'x', 'superuser', 'A')")),
        ("devices_status_check", format!("UPDATE devices SET status = 'broken' WHERE id = '{d}'")),
        ("patients_blood_group_check", format!("UPDATE patients SET blood_group = 'C+' WHERE id = '{p}'")),
        ("health_metrics_system_status_check", format!("INSERT INTO health_metrics (time, device_id, seq, hospital_id, system_status) VALUES (now(), '{d}', 1, '{h}', 'ok')")),
        ("health_metrics_spo2_check", format!("INSERT INTO health_metrics (time, device_id, seq, hospital_id, system_status, spo2) VALUES (now(), '{d}', 1, '{h}', 'normal', 140)")),
        ("alerts_priority_check", format!("INSERT INTO alerts (id, hospital_id, device_id, kind, code, priority, message, raised_at) VALUES (gen_random_uuid(), '{h}', '{d}', 'technical', 'x', 'urgent', 'm', now())")),
        ("device_sessions_status_check", format!("INSERT INTO device_sessions (id, hospital_id, device_id, started_at, ended_at, status) VALUES (gen_random_uuid(), '{h}', '{d}', now(), now(), 'paused')")),
        ("chat_rooms_kind_check", format!("INSERT INTO chat_rooms (id, hospital_id, kind) VALUES (gen_random_uuid(), '{h}', 'patient-patient')")),
        ("session_bookings_status_check", format!("INSERT INTO session_bookings (id, hospital_id, patient_id, device_id, scheduled_start, duration_minutes, scheduled_end, blocked_until, status) VALUES (gen_random_uuid(), '{h}', '{p}', '{d}', '2026-12-01T08:00:00Z', 60, '2026-12-01T09:00:00Z', '2026-12-01T09:00:00Z', 'pending')")),
        ("alert_thresholds_limits_check", format!("INSERT INTO alert_thresholds (id, hospital_id, metric, low, high, priority) VALUES (gen_random_uuid(), '{h}', 'spo2', 95, 90, 'high')")),
    ];
    for (constraint, sql) in cases {
        let err = c.execute(sql.as_str()).await.expect_err(constraint);
        let got = err.as_database_error().and_then(|e| e.constraint()).unwrap_or_default().to_owned();
        assert_eq!(got, constraint, "{sql}: {err}");
    }
}

#[tokio::test]
async fn one_open_alert_per_device_and_condition() {
    let t = TestDb::migrated().await;
    let mut c = t.sql().await;
    let (h, _, d, _) = fixtures(&t, &mut c).await;
    let raise = format!(
        "INSERT INTO alerts (id, hospital_id, device_id, kind, code, priority, message, raised_at)
         VALUES (gen_random_uuid(), '{h}', '{d}', 'technical', 'device_offline', 'medium', 'offline', now())"
    );
    c.execute(raise.as_str()).await.unwrap();
    let err = c.execute(raise.as_str()).await.unwrap_err();
    assert_eq!(err.as_database_error().and_then(|e| e.constraint()), Some("alerts_open_condition_key"));
    c.execute("UPDATE alerts SET state = 'cleared', cleared_at = now()").await.unwrap();
    c.execute(raise.as_str()).await.expect("a new alert once the previous one cleared");
}

/// A database error becomes the same API error whichever path it came through (sqlx, or
/// sea-orm over sqlx), classified by its SQLSTATE and constraint name: a named unique
/// constraint is its own 409, an unnamed one a plain 409, a CHECK or foreign key a 422, a
/// NUL character a 422 — the caller's fault, never a 500.
#[tokio::test]
async fn database_errors_map_the_same_way_through_sqlx_and_sea_orm() {
    use nc_api::ApiError;
    use sea_orm::ConnectionTrait;

    let db = TestDb::migrated().await;
    let mut c = db.sql().await;
    let h = db.hospital("H", "h-errors").await;
    let user = |email: &str| {
        format!(
            "INSERT INTO users (id, hospital_id, email, password_hash, role, name, is_active) \
             VALUES ('{}', '{h}', '{email}', 'x', 'doctor', 'D', true)",
            uuid::Uuid::now_v7()
        )
    };
    c.execute(user("taken@errors.test").as_str()).await.unwrap();
    let cases: Vec<(String, &str, u16)> = vec![
        (user("taken@errors.test"), "email_taken", 409),
        // A unique constraint the API does not name: still the caller's conflict.
        (
            format!("INSERT INTO hospitals (id, name, code) VALUES ('{}', 'Again', 'h-errors')", uuid::Uuid::now_v7()),
            "conflict",
            409,
        ),
        (format!("UPDATE users SET role = 'surgeon' WHERE hospital_id = '{h}'"), "validation_failed", 422),
        (
            format!("UPDATE users SET hospital_id = '{}' WHERE hospital_id = '{h}'", uuid::Uuid::now_v7()),
            "validation_failed",
            422,
        ),
        // U+0000 in a JSON string, which PostgreSQL cannot store.
        (r#"SELECT '"a\u0000b"'::jsonb"#.to_owned(), "validation_failed", 422),
    ];
    for (sql, code, status) in cases {
        let via_sqlx = ApiError::from(c.execute(sql.as_str()).await.expect_err(&sql));
        let via_sea_orm = ApiError::from(db.db.execute_unprepared(&sql).await.expect_err(&sql));
        for (path, e) in [("sqlx", via_sqlx), ("sea-orm", via_sea_orm)] {
            let got = match nc_api::ErrorResponse::from(e) {
                nc_api::ErrorResponse::Conflict(body) => (409, body.0.code),
                nc_api::ErrorResponse::Unprocessable(body) => (422, body.0.code),
                other => panic!("{path}: {sql}: {other:?}"),
            };
            assert_eq!(got, (status, code.to_owned()), "{path}: {sql}");
        }
    }
}
