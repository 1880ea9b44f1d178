//! Device maintenance, account links and reading identity.
//!
//! - `device_maintenance`: the log of maintenance done on a machine (when, by whom, when the
//!   next one is due); `devices.last_maintenance_at` and `devices.maintenance_due_at` follow
//!   the latest one.
//! - Re-linking a patient record to another account (or unlinking it) tells the account that
//!   loses it (`pg_notify('nc_access', {"user": <old account>})`), as re-pointing a patient
//!   to another device tells the old device (migration `access_events`).
//! - A reading is identified by (device, seq). `health_metrics` is a hypertable, so its
//!   unique key must include `time` and cannot say so; ingest checks it per batch instead,
//!   against existing rows through that unique index's (device_id, seq) prefix. To skip the
//!   lookup for the usual reading (a seq higher than any stored for the device),
//!   `device_seq_watermarks` keeps the highest seq written per device; batches raise it with
//!   one upsert that also returns the previous value (`prev_max_seq`: an `UPDATE … RETURNING`
//!   shows only new values) and locks the rows, so that two batches carrying the same seq
//!   cannot both miss each other. No foreign key: `health_metrics` has none either.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE TABLE device_maintenance (
    id           uuid PRIMARY KEY,
    hospital_id  uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    device_id    uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    performed_at timestamptz NOT NULL,
    performed_by uuid REFERENCES users(id) ON DELETE SET NULL,
    next_due_at  timestamptz NOT NULL,
    notes        text CONSTRAINT device_maintenance_notes_check CHECK (length(notes) <= 4000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_maintenance_due_check CHECK (next_due_at > performed_at)
);
CREATE INDEX device_maintenance_device_performed_idx ON device_maintenance (device_id, performed_at DESC);
ALTER TABLE devices ADD COLUMN last_maintenance_at timestamptz;

CREATE FUNCTION nc_notify_unlinked_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nc_access', jsonb_build_object('table', TG_TABLE_NAME, 'user', OLD.user_id, 'patient', OLD.id)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER patients_unlinked_account_event AFTER UPDATE OF user_id ON patients
    FOR EACH ROW WHEN (OLD.user_id IS NOT NULL AND OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION nc_notify_unlinked_account();

CREATE TABLE device_seq_watermarks (
    device_id    uuid PRIMARY KEY,
    max_seq      bigint NOT NULL,
    prev_max_seq bigint NOT NULL
);
INSERT INTO device_seq_watermarks (device_id, max_seq, prev_max_seq)
    SELECT device_id, max(seq), max(seq) FROM health_metrics GROUP BY device_id;
"#;

const DOWN: &str = r#"
DROP TABLE device_seq_watermarks;
DROP TRIGGER patients_unlinked_account_event ON patients;
DROP FUNCTION nc_notify_unlinked_account();
ALTER TABLE devices DROP COLUMN last_maintenance_at;
DROP TABLE device_maintenance;
"#;
