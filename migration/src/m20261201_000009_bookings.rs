//! Bookings: hospital booking settings (opening hours, slot granularity, changeover,
//! cancellation notice), recurring series, device maintenance windows, and what a booking
//! needs beyond its first table:
//!
//! - `blocked_until` = end + the changeover (disinfection) buffer in force when it was
//!   booked: the device exclusion constraint now covers `[start, blocked_until)`, so two
//!   bookings of one machine are always at least a changeover apart, decided by the
//!   database even under concurrent requests. A patient cannot be in two sessions at once
//!   (`[start, end)`), as before;
//! - who confirmed or cancelled, when and why; the device session that completed it;
//! - a booking completes by itself when a session of its patient on its device ends having
//!   run in the booking's window (from an hour before its start to its end): a trigger, so
//!   every ingest path (MQTT, HTTP, a patient switch) completes it the same way.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE TABLE booking_settings (
    hospital_id              uuid PRIMARY KEY REFERENCES hospitals(id) ON DELETE CASCADE,
    -- {"mon": {"open": "06:00", "close": "22:00"}, ..., "sun": null}: local wall-clock times.
    opening_hours            jsonb NOT NULL CONSTRAINT booking_settings_hours_check CHECK (jsonb_typeof(opening_hours) = 'object'),
    slot_minutes             integer NOT NULL CONSTRAINT booking_settings_slot_check CHECK (slot_minutes BETWEEN 5 AND 240),
    changeover_minutes       integer NOT NULL CONSTRAINT booking_settings_changeover_check CHECK (changeover_minutes BETWEEN 0 AND 240),
    cancel_notice_minutes    integer NOT NULL CONSTRAINT booking_settings_notice_check CHECK (cancel_notice_minutes BETWEEN 0 AND 20160),
    patients_book_any_device boolean NOT NULL DEFAULT false,
    max_days_ahead           integer NOT NULL CONSTRAINT booking_settings_ahead_check CHECK (max_days_ahead BETWEEN 1 AND 400),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    updated_by               uuid REFERENCES users(id) ON DELETE SET NULL
);

CREATE TABLE booking_series (
    id               uuid PRIMARY KEY,
    hospital_id      uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    patient_id       uuid NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    device_id        uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    -- The rule as asked: {"weekdays": ["mon","wed","fri"], "startTime": "07:00", "timeZone": "...",
    -- "firstDate": "2026-12-07", "weeks": 8, "durationMinutes": 240}
    rule             jsonb NOT NULL CONSTRAINT booking_series_rule_check CHECK (jsonb_typeof(rule) = 'object'),
    created_by       uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device_downtimes (
    id           uuid PRIMARY KEY,
    hospital_id  uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    device_id    uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text CONSTRAINT device_downtimes_reason_check CHECK (length(reason) <= 500),
    created_by   uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    CONSTRAINT device_downtimes_period_check CHECK (ends_at > starts_at AND ends_at <= starts_at + interval '90 days')
);
CREATE INDEX device_downtimes_device_idx ON device_downtimes (device_id, starts_at) WHERE cancelled_at IS NULL;

ALTER TABLE session_bookings
    ADD COLUMN blocked_until        timestamptz,
    ADD COLUMN series_id            uuid REFERENCES booking_series(id) ON DELETE SET NULL,
    ADD COLUMN confirmed_at         timestamptz,
    ADD COLUMN confirmed_by         uuid REFERENCES users(id) ON DELETE SET NULL,
    ADD COLUMN cancelled_at         timestamptz,
    ADD COLUMN cancelled_by         uuid REFERENCES users(id) ON DELETE SET NULL,
    ADD COLUMN cancel_reason        text CONSTRAINT session_bookings_cancel_reason_check CHECK (length(cancel_reason) <= 500),
    ADD COLUMN completed_session_id uuid REFERENCES device_sessions(id) ON DELETE SET NULL;
UPDATE session_bookings SET blocked_until = scheduled_end;
ALTER TABLE session_bookings
    ALTER COLUMN blocked_until SET NOT NULL,
    ADD CONSTRAINT session_bookings_blocked_check CHECK (blocked_until >= scheduled_end AND blocked_until <= scheduled_end + interval '4 hours'),
    ADD CONSTRAINT session_bookings_notes_check CHECK (length(notes) <= 2000),
    DROP CONSTRAINT session_bookings_device_no_overlap_excl,
    ADD CONSTRAINT session_bookings_device_no_overlap_excl EXCLUDE USING gist (
        device_id WITH =, tstzrange(scheduled_start, blocked_until, '[)') WITH &&
    ) WHERE (status IN ('scheduled', 'confirmed'));
CREATE INDEX session_bookings_series_idx ON session_bookings (series_id, scheduled_start) WHERE series_id IS NOT NULL;
CREATE INDEX session_bookings_hospital_start_idx ON session_bookings (hospital_id, scheduled_start, id);

CREATE FUNCTION session_bookings_complete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE session_bookings
       SET status = 'completed', completed_session_id = NEW.id, updated_at = now()
     WHERE device_id = NEW.device_id
       AND patient_id = NEW.patient_id
       AND status IN ('scheduled', 'confirmed')
       AND tstzrange(scheduled_start - interval '1 hour', scheduled_end, '[)')
           && tstzrange(NEW.started_at, NEW.ended_at, '[]');
    RETURN NULL;
END
$$;
CREATE TRIGGER device_sessions_complete_bookings
    AFTER INSERT OR UPDATE OF ended_at, patient_id ON device_sessions
    FOR EACH ROW WHEN (NEW.ended_at IS NOT NULL AND NEW.patient_id IS NOT NULL)
    EXECUTE FUNCTION session_bookings_complete();
"#;

const DOWN: &str = r#"
DROP TRIGGER device_sessions_complete_bookings ON device_sessions;
DROP FUNCTION session_bookings_complete();
DROP INDEX session_bookings_hospital_start_idx;
DROP INDEX session_bookings_series_idx;
ALTER TABLE session_bookings
    DROP CONSTRAINT session_bookings_device_no_overlap_excl,
    DROP CONSTRAINT session_bookings_notes_check,
    DROP CONSTRAINT session_bookings_blocked_check,
    DROP COLUMN completed_session_id,
    DROP COLUMN cancel_reason,
    DROP COLUMN cancelled_by,
    DROP COLUMN cancelled_at,
    DROP COLUMN confirmed_by,
    DROP COLUMN confirmed_at,
    DROP COLUMN series_id,
    DROP COLUMN blocked_until,
    ADD CONSTRAINT session_bookings_device_no_overlap_excl EXCLUDE USING gist (
        device_id WITH =, tstzrange(scheduled_start, scheduled_end, '[)') WITH &&
    ) WHERE (status IN ('scheduled', 'confirmed'));
DROP TABLE device_downtimes;
DROP TABLE booking_series;
DROP TABLE booking_settings;
"#;
