//! Device gateways (IHE PCD-01 over MLLP): a hospital's admins register each gateway that
//! reports its machines' observations, with the sending application and facility it names
//! in MSH-3/MSH-4, the digest of the secret it sends in MSH-8 (or the fingerprint of the TLS
//! client certificate it connects with), and may map the vendor
//! codes it sends to our measurements. Each message taken is recorded by the gateway's
//! control id (MSH-10) with a digest of its content: a message sent again is acknowledged and
//! not stored twice; another message under a used control id is refused. Observation codes
//! a gateway sent that map to nothing are counted, for its admins to see and map.

crate::sql_migration!(UP, DOWN);

const UP: &str = "
CREATE TABLE hl7_gateways (
    id                  uuid PRIMARY KEY,
    hospital_id         uuid NOT NULL REFERENCES hospitals(id) ON DELETE CASCADE,
    name                text NOT NULL CONSTRAINT hl7_gateways_name_check CHECK (length(name) BETWEEN 1 AND 120),
    sending_application text NOT NULL CONSTRAINT hl7_gateways_app_check CHECK (length(sending_application) BETWEEN 1 AND 64),
    sending_facility    text NOT NULL DEFAULT '' CONSTRAINT hl7_gateways_facility_check CHECK (length(sending_facility) <= 64),
    -- sha256:<hex> of the secret in MSH-8 (256 random bits, issued by the server).
    secret_hash         text NOT NULL UNIQUE,
    -- The SHA-256 (hex) of the client certificate it connects with over TLS, if it does: it
    -- then authenticates with that certificate, and MSH-8 is not asked.
    certificate_sha256  text UNIQUE CONSTRAINT hl7_gateways_certificate_check CHECK (certificate_sha256 ~ '^[0-9a-f]{64}$'),
    -- [{\"system\": \"99VENDOR\", \"code\": \"123\", \"measurement\": \"venousPressure\"}]
    codes               jsonb NOT NULL DEFAULT '[]'::jsonb,
    max_connections     integer NOT NULL DEFAULT 4 CONSTRAINT hl7_gateways_connections_check CHECK (max_connections BETWEEN 1 AND 64),
    enabled             boolean NOT NULL DEFAULT true,
    created_by          uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (hospital_id, sending_application, sending_facility)
);

CREATE TABLE hl7_gateway_messages (
    gateway_id  uuid NOT NULL REFERENCES hl7_gateways(id) ON DELETE CASCADE,
    control_id  text NOT NULL,
    digest      bytea NOT NULL,
    readings    integer NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, control_id)
);
CREATE INDEX hl7_gateway_messages_received ON hl7_gateway_messages (received_at);

-- A gateway names machines by serial (OBX-18) and patients by number (PID-3); the policy
-- looks them up across hospitals and keeps the gateway's own (the unique keys lead with the
-- hospital, so they cannot serve these lookups).
CREATE INDEX devices_serial ON devices (serial);
CREATE INDEX patients_number ON patients (patient_number);

CREATE TABLE hl7_gateway_unknown_codes (
    gateway_id  uuid NOT NULL REFERENCES hl7_gateways(id) ON DELETE CASCADE,
    system      text NOT NULL,
    code        text NOT NULL,
    text        text NOT NULL DEFAULT '',
    seen        bigint NOT NULL DEFAULT 1,
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, system, code)
);
";

const DOWN: &str = "
DROP INDEX patients_number;
DROP INDEX devices_serial;
DROP TABLE hl7_gateway_unknown_codes;
DROP TABLE hl7_gateway_messages;
DROP TABLE hl7_gateways;
";
