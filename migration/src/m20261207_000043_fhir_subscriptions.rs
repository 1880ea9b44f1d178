//! FHIR Subscriptions (R4, the Subscriptions R5 Backport IG): a user subscribes an endpoint
//! (`rest-hook`) to a topic — a treatment ended, an alarm raised or changed — optionally
//! filtered to one patient or machine (`fhir_subscriptions`). A trigger queues one outbox item
//! (channel `fhir`, ordered per subscription, in the transaction of what happened) for every
//! live subscription of the hospital whose topic and filter match; whether the owner may read
//! it is decided when it is sent, and only then is it numbered (`fhir_subscription_events`:
//! the event number a delivered notification carries, kept across retries).

crate::sql_migration!(UP, DOWN);

const UP: &str = "
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_check CHECK (channel IN ('email', 'acm', 'emr', 'fhir'));

CREATE TABLE fhir_subscriptions (
    id                 uuid PRIMARY KEY,
    hospital_id        uuid NOT NULL REFERENCES hospitals(id) ON DELETE CASCADE,
    owner_id           uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    topic              text NOT NULL CONSTRAINT fhir_subscriptions_topic_check CHECK (topic IN ('treatment-ended', 'alarm')),
    patient_id         uuid REFERENCES patients(id) ON DELETE CASCADE,
    device_id          uuid REFERENCES devices(id) ON DELETE CASCADE,
    status             text NOT NULL DEFAULT 'requested'
                       CONSTRAINT fhir_subscriptions_status_check CHECK (status IN ('requested', 'active', 'error', 'off')),
    endpoint           text NOT NULL CONSTRAINT fhir_subscriptions_endpoint_check CHECK (length(endpoint) BETWEEN 8 AND 2048),
    headers            text[] NOT NULL DEFAULT '{}',
    content            text NOT NULL CONSTRAINT fhir_subscriptions_content_check CHECK (content IN ('empty', 'id-only', 'full-resource')),
    heartbeat_secs     integer CONSTRAINT fhir_subscriptions_heartbeat_check CHECK (heartbeat_secs BETWEEN 10 AND 86400),
    timeout_secs       integer NOT NULL CONSTRAINT fhir_subscriptions_timeout_check CHECK (timeout_secs BETWEEN 1 AND 60),
    reason             text NOT NULL DEFAULT '' CONSTRAINT fhir_subscriptions_reason_check CHECK (length(reason) <= 1024),
    end_at             timestamptz,
    events_since_start bigint NOT NULL DEFAULT 0,
    heartbeat_due_at   timestamptz,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fhir_subscriptions_filter_check CHECK (patient_id IS NULL OR device_id IS NULL)
);
CREATE INDEX fhir_subscriptions_live_idx ON fhir_subscriptions (hospital_id, topic) WHERE status IN ('requested', 'active');
CREATE INDEX fhir_subscriptions_owner_idx ON fhir_subscriptions (owner_id);
CREATE INDEX fhir_subscriptions_heartbeat_idx ON fhir_subscriptions (heartbeat_due_at) WHERE status = 'active';

CREATE TABLE fhir_subscription_events (
    outbox_id       uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES fhir_subscriptions(id) ON DELETE CASCADE,
    event_number    bigint NOT NULL,
    focus           text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fhir_subscription_events_number_key UNIQUE (subscription_id, event_number)
);

CREATE FUNCTION nc_fhir_notify(h uuid, t text, p uuid, d uuid, focus_type text, focus uuid) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox (id, channel, hospital_id, ordering_key, destination, payload)
    SELECT gen_random_uuid(), 'fhir', s.hospital_id, s.id, 'Subscription/' || s.id,
           json_build_object('subscription', s.id, 'type', 'event-notification',
                             'focus', json_build_object('type', focus_type, 'id', focus),
                             'at', clock_timestamp())::text
      FROM fhir_subscriptions s
     WHERE s.hospital_id = h AND s.topic = t AND s.status IN ('requested', 'active')
       AND (s.end_at IS NULL OR s.end_at > now())
       AND (s.patient_id IS NULL OR s.patient_id = p)
       AND (s.device_id IS NULL OR s.device_id = d)
     ORDER BY s.id;
$$;

CREATE FUNCTION nc_fhir_treatment_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nc_fhir_notify(NEW.hospital_id, 'treatment-ended', NEW.patient_id, NEW.device_id, 'Procedure', NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER device_sessions_fhir_notify AFTER UPDATE OF status ON device_sessions
    FOR EACH ROW WHEN (OLD.status = 'active' AND NEW.status <> 'active' AND NEW.patient_id IS NOT NULL)
    EXECUTE FUNCTION nc_fhir_treatment_ended();

CREATE FUNCTION nc_fhir_alarm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nc_fhir_notify(NEW.hospital_id, 'alarm', NEW.patient_id, NEW.device_id, 'DetectedIssue', NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER alerts_fhir_raised AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION nc_fhir_alarm();
CREATE TRIGGER alerts_fhir_changed AFTER UPDATE OF state, escalation_level ON alerts
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.escalation_level IS DISTINCT FROM NEW.escalation_level)
    EXECUTE FUNCTION nc_fhir_alarm();
";

const DOWN: &str = "
DROP TRIGGER alerts_fhir_changed ON alerts;
DROP TRIGGER alerts_fhir_raised ON alerts;
DROP FUNCTION nc_fhir_alarm();
DROP TRIGGER device_sessions_fhir_notify ON device_sessions;
DROP FUNCTION nc_fhir_treatment_ended();
DROP FUNCTION nc_fhir_notify(uuid, text, uuid, uuid, text, uuid);
DROP TABLE fhir_subscription_events;
DROP TABLE fhir_subscriptions;
DELETE FROM outbox WHERE channel = 'fhir';
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_check CHECK (channel IN ('email', 'acm', 'emr'));
";
