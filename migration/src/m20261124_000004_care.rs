//! Care workflow: the audit trail of medical-information changes, chat between doctor and
//! patient or doctor and technician, and dialysis session bookings.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE TABLE medical_updates (
    id          uuid PRIMARY KEY,
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    patient_id  uuid NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    field       text NOT NULL,
    old_value   jsonb,
    new_value   jsonb,
    updated_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX medical_updates_patient_updated_idx ON medical_updates (patient_id, updated_at DESC);

CREATE TABLE chat_rooms (
    id          uuid PRIMARY KEY,
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    kind        text NOT NULL CONSTRAINT chat_rooms_kind_check CHECK (kind IN ('doctor-patient', 'doctor-technician')),
    -- The device (and through it the patient) the conversation is about, where there is one.
    device_id   uuid REFERENCES devices(id) ON DELETE SET NULL,
    patient_id  uuid REFERENCES patients(id) ON DELETE SET NULL,
    created_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_rooms_hospital_idx ON chat_rooms (hospital_id, created_at DESC);

CREATE TABLE chat_room_participants (
    room_id           uuid NOT NULL REFERENCES chat_rooms(id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at         timestamptz NOT NULL DEFAULT now(),
    -- Read receipt watermark: everything up to this message has been read by this participant.
    last_read_message_id uuid,
    last_read_at      timestamptz,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX chat_room_participants_user_idx ON chat_room_participants (user_id);

CREATE TABLE chat_messages (
    id            uuid PRIMARY KEY,
    room_id       uuid NOT NULL REFERENCES chat_rooms(id) ON DELETE CASCADE,
    sender_id     uuid REFERENCES users(id) ON DELETE SET NULL,
    -- Client-chosen id, so a message resent after a lost acknowledgement is stored once.
    client_msg_id text CONSTRAINT chat_messages_client_msg_id_check CHECK (length(client_msg_id) BETWEEN 1 AND 64),
    body          text NOT NULL CONSTRAINT chat_messages_body_check CHECK (length(btrim(body)) BETWEEN 1 AND 4000),
    sent_at       timestamptz NOT NULL DEFAULT now(),
    edited_at     timestamptz
);
CREATE INDEX chat_messages_room_sent_idx ON chat_messages (room_id, sent_at DESC, id DESC);
CREATE UNIQUE INDEX chat_messages_client_msg_key ON chat_messages (room_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;

CREATE TABLE session_bookings (
    id               uuid PRIMARY KEY,
    hospital_id      uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    patient_id       uuid NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    device_id        uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    scheduled_start  timestamptz NOT NULL,
    duration_minutes integer NOT NULL CONSTRAINT session_bookings_duration_check CHECK (duration_minutes BETWEEN 15 AND 720),
    -- Stored rather than computed: timestamptz + interval is not immutable, and the
    -- exclusion constraints below need an immutable range expression.
    scheduled_end    timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'scheduled' CONSTRAINT session_bookings_status_check CHECK (status IN ('scheduled', 'confirmed', 'completed', 'cancelled')),
    notes            text,
    created_by       uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT session_bookings_end_check CHECK (scheduled_end = scheduled_start + make_interval(mins => duration_minutes)),
    -- One device cannot be booked twice for overlapping times; adjacent bookings ([) ranges) are fine.
    CONSTRAINT session_bookings_device_no_overlap_excl EXCLUDE USING gist (
        device_id WITH =, tstzrange(scheduled_start, scheduled_end, '[)') WITH &&
    ) WHERE (status IN ('scheduled', 'confirmed')),
    -- Nor can one patient be in two sessions at once.
    CONSTRAINT session_bookings_patient_no_overlap_excl EXCLUDE USING gist (
        patient_id WITH =, tstzrange(scheduled_start, scheduled_end, '[)') WITH &&
    ) WHERE (status IN ('scheduled', 'confirmed'))
);
CREATE INDEX session_bookings_device_start_idx ON session_bookings (device_id, scheduled_start);
CREATE INDEX session_bookings_patient_start_idx ON session_bookings (patient_id, scheduled_start);
"#;

const DOWN: &str = r#"
DROP TABLE session_bookings;
DROP TABLE chat_messages;
DROP TABLE chat_room_participants;
DROP TABLE chat_rooms;
DROP TABLE medical_updates;
"#;
