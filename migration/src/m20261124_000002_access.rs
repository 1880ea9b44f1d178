//! Who may see what (assignments, temporary grants), how people prove who they are
//! (refresh tokens, one-time codes, enrollment codes, the outbound message outbox) and the
//! audit of every access to patient data.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
-- Doctors and technicians assigned to devices. An assignment ends (ended_at) rather than
-- being deleted, so "who was responsible for this device at time t" stays answerable.
CREATE TABLE device_assignments (
    id          uuid PRIMARY KEY,
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    device_id   uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        text NOT NULL CONSTRAINT device_assignments_role_check CHECK (role IN ('doctor', 'technician')),
    assigned_by uuid REFERENCES users(id) ON DELETE SET NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    ended_by    uuid REFERENCES users(id) ON DELETE SET NULL,
    CONSTRAINT device_assignments_period_check CHECK (ended_at IS NULL OR ended_at >= assigned_at)
);
CREATE UNIQUE INDEX device_assignments_active_key ON device_assignments (device_id, user_id) WHERE ended_at IS NULL;
-- Policy decisions: "which devices may this user see now".
CREATE INDEX device_assignments_user_active_idx ON device_assignments (user_id, device_id) WHERE ended_at IS NULL;

-- A technician hands a device over to another technician of the same hospital for a
-- bounded time. Expiry is enforced when a decision is made (expires_at > now()), so no
-- background job is needed for correctness.
CREATE TABLE temporary_access_grants (
    id          uuid PRIMARY KEY,
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    device_id   uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    granted_to  uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    granted_by  uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    revoked_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    reason      text,
    CONSTRAINT temporary_access_grants_period_check CHECK (expires_at > granted_at AND expires_at <= granted_at + interval '7 days'),
    CONSTRAINT temporary_access_grants_not_self_check CHECK (granted_to <> granted_by)
);
CREATE INDEX temporary_access_grants_grantee_idx ON temporary_access_grants (granted_to, expires_at) WHERE revoked_at IS NULL;
CREATE INDEX temporary_access_grants_device_idx ON temporary_access_grants (device_id, granted_at DESC);

-- Opaque refresh tokens, stored as SHA-256 hashes, rotated on every use. A token presented
-- after it was rotated revokes its whole family (RFC 9700 section 4.14.2).
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz,
    replaced_by uuid REFERENCES refresh_tokens(id) ON DELETE SET NULL,
    client_addr text,
    user_agent  text,
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT refresh_tokens_period_check CHECK (expires_at > issued_at)
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

-- Six-digit one-time codes for account verification and password reset; hashed, short
-- expiry, limited attempts.
CREATE TABLE one_time_codes (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose      text NOT NULL CONSTRAINT one_time_codes_purpose_check CHECK (purpose IN ('verify_account', 'reset_password')),
    code_hash    bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0 CONSTRAINT one_time_codes_attempts_check CHECK (attempts >= 0),
    max_attempts integer NOT NULL DEFAULT 5 CONSTRAINT one_time_codes_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 20),
    consumed_at  timestamptz,
    CONSTRAINT one_time_codes_period_check CHECK (expires_at > created_at)
);
CREATE INDEX one_time_codes_user_purpose_idx ON one_time_codes (user_id, purpose, created_at DESC);

-- Admin-issued codes with which a doctor or technician enrolls; the role comes from the
-- code, never from the person enrolling.
CREATE TABLE enrollment_codes (
    id          uuid PRIMARY KEY,
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE CASCADE,
    role        text NOT NULL CONSTRAINT enrollment_codes_role_check CHECK (role IN ('doctor', 'technician')),
    code_hash   bytea NOT NULL,
    created_by  uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    used_by     uuid REFERENCES users(id) ON DELETE SET NULL,
    CONSTRAINT enrollment_codes_code_hash_key UNIQUE (code_hash),
    CONSTRAINT enrollment_codes_period_check CHECK (expires_at > created_at)
);

-- Messages (codes, notices) to people. The development sender only records them here,
-- where tests and the demo read them; a production sender also delivers and sets sent_at.
CREATE TABLE outbound_messages (
    id         uuid PRIMARY KEY,
    user_id    uuid REFERENCES users(id) ON DELETE CASCADE,
    channel    text NOT NULL CONSTRAINT outbound_messages_channel_check CHECK (channel IN ('email', 'sms')),
    recipient  text NOT NULL,
    subject    text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX outbound_messages_recipient_idx ON outbound_messages (recipient, created_at DESC);

-- Who read or changed which patient's (or device's) data, when, and through which
-- interface (HIPAA 164.312(b) audit controls: reads too, not only writes).
CREATE TABLE access_audit_log (
    id          uuid PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid REFERENCES users(id) ON DELETE SET NULL,
    actor_role  text NOT NULL CONSTRAINT access_audit_log_actor_role_check CHECK (actor_role IN ('doctor', 'patient', 'technician', 'admin', 'device', 'system')),
    hospital_id uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    patient_id  uuid REFERENCES patients(id) ON DELETE SET NULL,
    device_id   uuid REFERENCES devices(id) ON DELETE SET NULL,
    action      text NOT NULL CONSTRAINT access_audit_log_action_check CHECK (action IN ('read', 'create', 'update', 'delete', 'subscribe', 'denied')),
    resource    text NOT NULL,
    interface   text NOT NULL CONSTRAINT access_audit_log_interface_check CHECK (interface IN ('rest', 'mqtt', 'websocket', 'cli')),
    client_addr text,
    detail      jsonb
);
CREATE INDEX access_audit_log_patient_at_idx ON access_audit_log (patient_id, at DESC) WHERE patient_id IS NOT NULL;
CREATE INDEX access_audit_log_actor_at_idx ON access_audit_log (actor_id, at DESC);
CREATE INDEX access_audit_log_hospital_at_idx ON access_audit_log (hospital_id, at DESC);
"#;

const DOWN: &str = r#"
DROP TABLE access_audit_log;
DROP TABLE outbound_messages;
DROP TABLE enrollment_codes;
DROP TABLE one_time_codes;
DROP TABLE refresh_tokens;
DROP TABLE temporary_access_grants;
DROP TABLE device_assignments;
"#;
