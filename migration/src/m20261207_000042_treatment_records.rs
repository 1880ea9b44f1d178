//! Treatment records pushed to the hospital's record system (EMR): a hospital's admins set
//! where (`emr_endpoints`: an MLLP address, receiving application and facility, TLS); when a
//! treatment session ends (completed or interrupted, whichever way: an explicit `end`, the
//! next patient, the inactivity sweep), a trigger queues its record in the outbox (channel
//! `emr`, in the transaction that ends it), ordered per patient; the sender builds the HL7 v2
//! `ORU^R01` from the stored summary when it sends it.

crate::sql_migration!(UP, DOWN);

const UP: &str = "
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_check CHECK (channel IN ('email', 'acm', 'emr'));

CREATE TABLE emr_endpoints (
    hospital_id           uuid PRIMARY KEY REFERENCES hospitals(id) ON DELETE CASCADE,
    address               text NOT NULL CONSTRAINT emr_endpoints_address_check CHECK (length(address) BETWEEN 3 AND 255),
    receiving_application text NOT NULL DEFAULT 'EMR' CONSTRAINT emr_endpoints_app_check CHECK (length(receiving_application) BETWEEN 1 AND 64),
    receiving_facility    text NOT NULL DEFAULT '' CONSTRAINT emr_endpoints_facility_check CHECK (length(receiving_facility) <= 64),
    tls                   boolean NOT NULL DEFAULT false,
    enabled               boolean NOT NULL DEFAULT true,
    updated_by            uuid REFERENCES users(id) ON DELETE SET NULL,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION nc_outbox_treatment_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (id, channel, hospital_id, ordering_key, destination, payload)
    SELECT gen_random_uuid(), 'emr', NEW.hospital_id, NEW.patient_id,
           CASE WHEN e.tls THEN 'mllps://' || e.address ELSE e.address END,
           json_build_object('session', NEW.id)::text
      FROM emr_endpoints e
     WHERE e.hospital_id = NEW.hospital_id AND e.enabled;
    RETURN NEW;
END $$;
CREATE TRIGGER device_sessions_treatment_record AFTER UPDATE OF status ON device_sessions
    FOR EACH ROW WHEN (OLD.status = 'active' AND NEW.status <> 'active' AND NEW.patient_id IS NOT NULL)
    EXECUTE FUNCTION nc_outbox_treatment_record();
";

const DOWN: &str = "
DROP TRIGGER device_sessions_treatment_record ON device_sessions;
DROP FUNCTION nc_outbox_treatment_record();
DROP TABLE emr_endpoints;
DELETE FROM outbox WHERE channel = 'emr';
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_check CHECK (channel IN ('email', 'acm'));
";
