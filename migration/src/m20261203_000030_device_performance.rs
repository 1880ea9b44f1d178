//! What a machine's performance figures need beyond the readings, sessions and alerts
//! already stored (`GET /api/devices/{id}/performance`, `ingest::performance`):
//!
//! - `device_presence_events`: every connect and disconnect of a machine (the broker's
//!   presence writes one row with each change of `devices.online`), for uptime and
//!   connection drops (`reason` `connection_lost` or `keepalive_timeout`: an abrupt loss);
//! - `device_rejections`: messages of a machine that ingest refused (invalid, or a seq
//!   conflict), counted per hour and error code (ingest adds its tally every few seconds),
//!   since refused messages are never stored as readings.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE TABLE device_presence_events (
    device_id   uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    at          timestamptz NOT NULL,
    online      boolean NOT NULL,
    reason      text NOT NULL CONSTRAINT device_presence_events_reason_check CHECK (reason ~ '^[a-z_]{1,32}$')
);
CREATE INDEX device_presence_events_device_at_idx ON device_presence_events (device_id, at);

CREATE TABLE device_rejections (
    device_id   uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    hour        timestamptz NOT NULL CONSTRAINT device_rejections_hour_check CHECK (date_trunc('hour', hour AT TIME ZONE 'UTC') = hour AT TIME ZONE 'UTC'),
    code        text NOT NULL CONSTRAINT device_rejections_code_check CHECK (code ~ '^[a-z_]{1,32}$'),
    count       bigint NOT NULL CONSTRAINT device_rejections_count_check CHECK (count > 0),
    PRIMARY KEY (device_id, hour, code)
);
"#;

const DOWN: &str = r#"
DROP TABLE device_rejections;
DROP TABLE device_presence_events;
"#;
