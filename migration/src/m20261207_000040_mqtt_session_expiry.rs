//! MQTT 5 sessions expire: a kept session records its Session Expiry Interval (seconds; NULL
//! for an MQTT 3.1.1 persistent session, kept until taken over), so that any node resuming it
//! knows whether it has expired since `released_at`.

crate::sql_migration!(UP, DOWN);

const UP: &str = "
ALTER TABLE mqtt_kept_sessions ADD COLUMN expiry_seconds integer
    CONSTRAINT mqtt_kept_sessions_expiry_check CHECK (expiry_seconds > 0);
";

const DOWN: &str = "ALTER TABLE mqtt_kept_sessions DROP COLUMN expiry_seconds;";
