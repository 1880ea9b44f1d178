//! Hospitals, people, devices and patient profiles: the objects every other table hangs off.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE hospitals (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CONSTRAINT hospitals_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    code        text NOT NULL CONSTRAINT hospitals_code_check CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,39}$'),
    timezone    text NOT NULL DEFAULT 'UTC',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hospitals_code_key UNIQUE (code)
);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    hospital_id   uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    email         text NOT NULL CONSTRAINT users_email_check CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    phone         text CONSTRAINT users_phone_check CHECK (phone ~ '^\+?[0-9 ()-]{6,20}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CONSTRAINT users_role_check CHECK (role IN ('doctor', 'patient', 'technician', 'admin')),
    name          text NOT NULL CONSTRAINT users_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    ward          text,
    is_active     boolean NOT NULL DEFAULT false,
    verified_at   timestamptz,
    deactivated_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Login is by e-mail, case-insensitively, across the platform.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- GET /api/users/{role}: hospital-scoped, ordered by name.
CREATE INDEX users_hospital_role_name_idx ON users (hospital_id, role, name, id);

CREATE TABLE devices (
    id                 uuid PRIMARY KEY,
    hospital_id        uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    serial             text NOT NULL CONSTRAINT devices_serial_check CHECK (serial ~ '^[A-Za-z0-9._-]{1,64}$'),
    name               text NOT NULL CONSTRAINT devices_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    model              text,
    location           text,
    status             text NOT NULL DEFAULT 'active' CONSTRAINT devices_status_check CHECK (status IN ('active', 'inactive', 'maintenance')),
    online             boolean NOT NULL DEFAULT false,
    last_seen          timestamptz,
    -- Hash of the device's MQTT/HTTP secret (`sha256:<hex>` of a 256-bit random value; shown once at registration or rotation).
    secret_hash        text NOT NULL,
    secret_rotated_at  timestamptz NOT NULL DEFAULT now(),
    maintenance_due_at timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- The physical device id printed on the machine is unique within its hospital.
    CONSTRAINT devices_hospital_serial_key UNIQUE (hospital_id, serial)
);
CREATE INDEX devices_hospital_status_idx ON devices (hospital_id, status, name);

CREATE TABLE patients (
    id                 uuid PRIMARY KEY,
    hospital_id        uuid NOT NULL REFERENCES hospitals(id) ON DELETE RESTRICT,
    -- The patient's own login, when the patient uses the app.
    user_id            uuid REFERENCES users(id) ON DELETE SET NULL,
    patient_number     text NOT NULL CONSTRAINT patients_number_check CHECK (patient_number ~ '^[A-Za-z0-9-]{1,32}$'),
    name               text NOT NULL CONSTRAINT patients_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    date_of_birth      date CONSTRAINT patients_dob_check CHECK (date_of_birth BETWEEN DATE '1900-01-01' AND DATE '2200-01-01'),
    gender             text NOT NULL DEFAULT 'unknown' CONSTRAINT patients_gender_check CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    blood_group        text CONSTRAINT patients_blood_group_check CHECK (blood_group IN ('A+', 'A-', 'B+', 'B-', 'AB+', 'AB-', 'O+', 'O-')),
    assigned_doctor_id uuid REFERENCES users(id) ON DELETE SET NULL,
    assigned_device_id uuid REFERENCES devices(id) ON DELETE SET NULL,
    -- e.g. {"days": ["mon", "wed", "fri"], "start": "08:00", "durationMinutes": 240}
    dialysis_schedule  jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_dialysis_at   timestamptz,
    -- Dry (target) weight, for the ultrafiltration rate in mL/kg/h.
    dry_weight_kg      double precision CONSTRAINT patients_dry_weight_check CHECK (dry_weight_kg BETWEEN 2 AND 400),
    diagnosis          text,
    vascular_access    text CONSTRAINT patients_vascular_access_check CHECK (vascular_access IN ('av_fistula', 'av_graft', 'catheter')),
    allergies          text,
    medications        text,
    notes              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT patients_hospital_number_key UNIQUE (hospital_id, patient_number),
    CONSTRAINT patients_user_key UNIQUE (user_id)
);
CREATE INDEX patients_hospital_name_idx ON patients (hospital_id, name, id);
CREATE INDEX patients_assigned_device_idx ON patients (assigned_device_id) WHERE assigned_device_id IS NOT NULL;
CREATE INDEX patients_assigned_doctor_idx ON patients (assigned_doctor_id) WHERE assigned_doctor_id IS NOT NULL;
"#;

const DOWN: &str = r#"
DROP TABLE patients;
DROP TABLE devices;
DROP TABLE users;
DROP TABLE hospitals;
"#;
