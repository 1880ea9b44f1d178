//! Treatment sessions, the `health_metrics` hypertable and what is derived from it
//! (latest values, hourly rollups), and the alert engine's rules and alerts.
//!
//! Ranges in the CHECK constraints are physical plausibility bounds (a sensor cannot report
//! them), not clinical limits: clinical limits are `alert_thresholds`, per hospital and
//! patient. See shared/reference/clinical.md.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE TABLE device_sessions (
    id                 uuid PRIMARY KEY,
    hospital_id        uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    device_id          uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    patient_id         uuid REFERENCES patients(id) ON DELETE SET NULL,
    started_at         timestamptz NOT NULL,
    ended_at           timestamptz,
    status             text NOT NULL DEFAULT 'active' CONSTRAINT device_sessions_status_check CHECK (status IN ('active', 'completed', 'interrupted')),
    -- The interval at which the machine promised readings, for completeness %.
    expected_interval_ms integer CONSTRAINT device_sessions_interval_check CHECK (expected_interval_ms BETWEEN 10 AND 3600000),
    -- Summary, written when the session ends.
    readings_received  bigint NOT NULL DEFAULT 0,
    readings_expected  bigint,
    completeness_pct   double precision CONSTRAINT device_sessions_completeness_check CHECK (completeness_pct BETWEEN 0 AND 100),
    uf_rate_ml_kg_h    double precision,
    nadir_systolic     double precision,
    summary            jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_sessions_period_check CHECK (ended_at IS NULL OR ended_at >= started_at),
    CONSTRAINT device_sessions_ended_check CHECK ((status = 'active') = (ended_at IS NULL))
);
-- A machine treats one patient at a time.
CREATE UNIQUE INDEX device_sessions_one_active_key ON device_sessions (device_id) WHERE status = 'active';
CREATE INDEX device_sessions_device_started_idx ON device_sessions (device_id, started_at DESC);
CREATE INDEX device_sessions_patient_started_idx ON device_sessions (patient_id, started_at DESC) WHERE patient_id IS NOT NULL;

-- Every reading, one row per reading. No foreign keys: TimescaleDB hypertables take them,
-- but the ingest path validates device/patient/session before writing, and a reading must
-- outlive a deleted session row.
CREATE TABLE health_metrics (
    time                    timestamptz NOT NULL,
    device_id               uuid NOT NULL,
    -- Per-device sequence number: (device_id, seq, time) makes a redelivered reading land once.
    seq                     bigint NOT NULL CONSTRAINT health_metrics_seq_check CHECK (seq >= 0),
    hospital_id             uuid NOT NULL,
    patient_id              uuid,
    session_id              uuid,
    received_at             timestamptz NOT NULL DEFAULT now(),
    -- The product spec's fields and units.
    heart_rate              real CONSTRAINT health_metrics_heart_rate_check CHECK (heart_rate BETWEEN 0 AND 350),          -- beats/min
    temperature_f           real CONSTRAINT health_metrics_temperature_check CHECK (temperature_f BETWEEN 70 AND 115),      -- degrees Fahrenheit
    systolic_bp             real CONSTRAINT health_metrics_systolic_check CHECK (systolic_bp BETWEEN 0 AND 300),           -- mmHg
    diastolic_bp            real CONSTRAINT health_metrics_diastolic_check CHECK (diastolic_bp BETWEEN 0 AND 250),         -- mmHg
    spo2                    real CONSTRAINT health_metrics_spo2_check CHECK (spo2 BETWEEN 0 AND 100),                      -- %
    blood_flow_rate         real CONSTRAINT health_metrics_blood_flow_check CHECK (blood_flow_rate BETWEEN 0 AND 1000),     -- mL/min (Qb)
    total_volume_l          real CONSTRAINT health_metrics_total_volume_check CHECK (total_volume_l BETWEEN 0 AND 500),    -- L processed
    system_status           text NOT NULL CONSTRAINT health_metrics_system_status_check CHECK (system_status IN ('normal', 'warning', 'danger')),
    -- Optional dialysis machine parameters.
    dialysate_flow_rate     real CONSTRAINT health_metrics_dialysate_flow_check CHECK (dialysate_flow_rate BETWEEN 0 AND 1500),  -- mL/min (Qd)
    arterial_pressure       real CONSTRAINT health_metrics_arterial_pressure_check CHECK (arterial_pressure BETWEEN -700 AND 500), -- mmHg
    venous_pressure         real CONSTRAINT health_metrics_venous_pressure_check CHECK (venous_pressure BETWEEN -200 AND 700),    -- mmHg
    transmembrane_pressure  real CONSTRAINT health_metrics_tmp_check CHECK (transmembrane_pressure BETWEEN -700 AND 700),          -- mmHg
    dialysate_conductivity  real CONSTRAINT health_metrics_conductivity_check CHECK (dialysate_conductivity BETWEEN 0 AND 30),    -- mS/cm
    dialysate_temperature_c real CONSTRAINT health_metrics_dialysate_temp_check CHECK (dialysate_temperature_c BETWEEN 20 AND 50), -- degrees Celsius
    uf_rate_ml_h            real CONSTRAINT health_metrics_uf_rate_check CHECK (uf_rate_ml_h BETWEEN 0 AND 5000),                -- mL/h
    uf_volume_ml            real CONSTRAINT health_metrics_uf_volume_check CHECK (uf_volume_ml BETWEEN 0 AND 10000),             -- mL removed so far
    uf_goal_ml              real CONSTRAINT health_metrics_uf_goal_check CHECK (uf_goal_ml BETWEEN 0 AND 10000)                  -- mL
);
SELECT create_hypertable('health_metrics', 'time', chunk_time_interval => interval '1 day');
-- Idempotent redelivery: a unique index on a hypertable must include the time column.
CREATE UNIQUE INDEX health_metrics_device_seq_key ON health_metrics (device_id, seq, time);
-- History and trends of one patient; live and history views of one device.
CREATE INDEX health_metrics_patient_time_idx ON health_metrics (patient_id, time DESC);
CREATE INDEX health_metrics_device_time_idx ON health_metrics (device_id, time DESC);

-- Latest reading per device, upserted by ingest: "current values" without scanning the
-- hypertable (DISTINCT ON over it is orders of magnitude slower).
CREATE TABLE device_latest_metrics (
    device_id   uuid PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    patient_id  uuid REFERENCES patients(id) ON DELETE SET NULL,
    session_id  uuid,
    time        timestamptz NOT NULL,
    seq         bigint NOT NULL,
    reading     jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_latest_metrics_patient_idx ON device_latest_metrics (patient_id, time DESC) WHERE patient_id IS NOT NULL;

-- Hourly rollups per patient and metric, maintained by ingest; long-range trends read these
-- (continuous aggregates need TimescaleDB's community edition, which these machines lack).
-- They outlive the raw-data retention period.
CREATE TABLE health_metric_rollups_hourly (
    patient_id uuid NOT NULL,
    metric     text NOT NULL,
    bucket     timestamptz NOT NULL CONSTRAINT health_metric_rollups_bucket_check CHECK (date_trunc('hour', bucket AT TIME ZONE 'UTC') = bucket AT TIME ZONE 'UTC'),
    n          bigint NOT NULL CONSTRAINT health_metric_rollups_n_check CHECK (n > 0),
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    PRIMARY KEY (patient_id, metric, bucket)
);

-- Alert limits: a hospital default per metric (patient_id NULL) and optional per-patient overrides.
CREATE TABLE alert_thresholds (
    id               uuid PRIMARY KEY,
    hospital_id      uuid NOT NULL REFERENCES hospitals(id) ON DELETE CASCADE,
    patient_id       uuid REFERENCES patients(id) ON DELETE CASCADE,
    metric           text NOT NULL CONSTRAINT alert_thresholds_metric_check CHECK (metric IN (
                        'heart_rate', 'temperature_f', 'systolic_bp', 'diastolic_bp', 'spo2', 'blood_flow_rate',
                        'dialysate_flow_rate', 'arterial_pressure', 'venous_pressure', 'transmembrane_pressure',
                        'dialysate_conductivity', 'dialysate_temperature_c', 'uf_rate_ml_h')),
    low              double precision,
    high             double precision,
    -- IEC 60601-1-8 alarm priorities.
    priority         text NOT NULL CONSTRAINT alert_thresholds_priority_check CHECK (priority IN ('high', 'medium', 'low')),
    -- The condition must persist this long before an alert is raised.
    delay_seconds    integer NOT NULL DEFAULT 0 CONSTRAINT alert_thresholds_delay_check CHECK (delay_seconds BETWEEN 0 AND 3600),
    -- The value must come back inside the limits by this margin before the alert clears.
    hysteresis       double precision NOT NULL DEFAULT 0 CONSTRAINT alert_thresholds_hysteresis_check CHECK (hysteresis >= 0),
    enabled          boolean NOT NULL DEFAULT true,
    updated_by       uuid REFERENCES users(id) ON DELETE SET NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_thresholds_limits_check CHECK ((low IS NOT NULL OR high IS NOT NULL) AND (low IS NULL OR high IS NULL OR low < high))
);
CREATE UNIQUE INDEX alert_thresholds_hospital_metric_key ON alert_thresholds (hospital_id, metric) WHERE patient_id IS NULL;
CREATE UNIQUE INDEX alert_thresholds_patient_metric_key ON alert_thresholds (patient_id, metric) WHERE patient_id IS NOT NULL;

CREATE TABLE alerts (
    id               uuid PRIMARY KEY,
    hospital_id      uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    device_id        uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    patient_id       uuid REFERENCES patients(id) ON DELETE SET NULL,
    session_id       uuid REFERENCES device_sessions(id) ON DELETE SET NULL,
    kind             text NOT NULL CONSTRAINT alerts_kind_check CHECK (kind IN ('physiological', 'technical')),
    -- What condition: e.g. 'systolic_bp_low', 'system_status_danger', 'device_offline', 'maintenance_due'.
    code             text NOT NULL CONSTRAINT alerts_code_check CHECK (code ~ '^[a-z0-9_]{1,64}$'),
    metric           text,
    priority         text NOT NULL CONSTRAINT alerts_priority_check CHECK (priority IN ('high', 'medium', 'low')),
    state            text NOT NULL DEFAULT 'active' CONSTRAINT alerts_state_check CHECK (state IN ('active', 'acknowledged', 'cleared')),
    message          text NOT NULL,
    value            double precision,
    threshold        double precision,
    raised_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    cleared_at       timestamptz,
    -- NULL with cleared_at set: cleared automatically when the condition cleared.
    cleared_by       uuid REFERENCES users(id) ON DELETE SET NULL,
    escalated_at     timestamptz,
    CONSTRAINT alerts_ack_check CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL)),
    CONSTRAINT alerts_cleared_check CHECK ((state = 'cleared') = (cleared_at IS NOT NULL))
);
-- One open alert per device and condition: a persisting condition raises one alert, not a storm.
CREATE UNIQUE INDEX alerts_open_condition_key ON alerts (device_id, code) WHERE state <> 'cleared';
CREATE INDEX alerts_hospital_state_raised_idx ON alerts (hospital_id, state, raised_at DESC);
CREATE INDEX alerts_device_raised_idx ON alerts (device_id, raised_at DESC);
CREATE INDEX alerts_patient_raised_idx ON alerts (patient_id, raised_at DESC) WHERE patient_id IS NOT NULL;
"#;

const DOWN: &str = r#"
DROP TABLE alerts;
DROP TABLE alert_thresholds;
DROP TABLE health_metric_rollups_hourly;
DROP TABLE device_latest_metrics;
DROP TABLE health_metrics;
DROP TABLE device_sessions;
"#;
