//! The outbox of the channels outside MQTT (e-mail over SMTP, the hospital's alert manager
//! over MLLP): one row per message to deliver, kept until it is delivered or parked, so a
//! restart loses none (crate `outbox`).
//!
//! - Delivered in order per `ordering_key` (an alarm's messages in the order of its phases;
//!   a message without a key is its own).
//! - Claimed by a lease (`due_at` moved forward, `attempts` counted) with `FOR UPDATE SKIP
//!   LOCKED`, so several nodes share the work and a node that dies mid-send leaves the row to
//!   another once the lease is over (at least once).
//! - Retried with growing delays; parked (`state = 'parked'`) after the last attempt, visible in
//!   metrics and, for an alarm's message, in its history (`alert_events`, `delivered` /
//!   `delivery_failed` / `delivery_parked`).
//! - A hospital's alert manager (IHE PCD ACM, `alert_managers`): where every phase of its
//!   alarms is reported (PCD-04 over MLLP), whether patient data may go with it, and who
//!   the manager's recipients are here (`alert_manager_recipients`: a PCD-05 "accepted" by
//!   one acknowledges the alarm as that user).
//! - Every account message written to `outbound_messages` (registration codes, password
//!   resets) is queued here for e-mail by a trigger, in the same transaction; its `sent_at`
//!   is set when the SMTP server accepted it.

crate::sql_migration!(UP, DOWN);

const UP: &str = "
CREATE TABLE outbox (
    id            uuid PRIMARY KEY,
    channel       text NOT NULL CONSTRAINT outbox_channel_check CHECK (channel IN ('email', 'acm')),
    hospital_id   uuid REFERENCES hospitals(id) ON DELETE CASCADE,
    alert_id      uuid REFERENCES alerts(id) ON DELETE CASCADE,
    message_id    uuid REFERENCES outbound_messages(id) ON DELETE CASCADE,
    ordering_key  uuid NOT NULL,
    -- An e-mail address; an alert manager's host:port.
    destination   text NOT NULL CONSTRAINT outbox_destination_check CHECK (length(destination) BETWEEN 1 AND 320),
    -- What is sent: an e-mail's subject and body (JSON), an HL7 v2 message.
    payload       text NOT NULL CONSTRAINT outbox_payload_check CHECK (length(payload) <= 65536),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    due_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts      integer NOT NULL DEFAULT 0,
    state         text NOT NULL DEFAULT 'pending' CONSTRAINT outbox_state_check CHECK (state IN ('pending', 'sent', 'parked')),
    last_error    text,
    sent_at       timestamptz
);
CREATE INDEX outbox_due_idx ON outbox (due_at) WHERE state = 'pending';
CREATE INDEX outbox_order_idx ON outbox (ordering_key, created_at, id) WHERE state = 'pending';
CREATE INDEX outbox_alert_idx ON outbox (alert_id) WHERE alert_id IS NOT NULL;

CREATE TABLE alert_managers (
    hospital_id          uuid PRIMARY KEY REFERENCES hospitals(id) ON DELETE CASCADE,
    -- host:port of its MLLP listener.
    address              text NOT NULL CONSTRAINT alert_managers_address_check CHECK (length(address) BETWEEN 3 AND 255),
    receiving_application text NOT NULL DEFAULT 'ACM' CONSTRAINT alert_managers_app_check CHECK (length(receiving_application) BETWEEN 1 AND 64),
    receiving_facility   text NOT NULL DEFAULT '' CONSTRAINT alert_managers_facility_check CHECK (length(receiving_facility) <= 64),
    -- Whether the reports carry the patient (PID) and the value: off unless the hospital allows it.
    include_patient      boolean NOT NULL DEFAULT false,
    -- MLLP over TLS (the manager's certificate checked against NEPHROCARE_ACM_CA or the system's).
    tls                  boolean NOT NULL DEFAULT false,
    enabled              boolean NOT NULL DEFAULT true,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    updated_by           uuid REFERENCES users(id) ON DELETE SET NULL
);

-- Where an alarm goes when its last tier reached nobody (an alarm never ends with nobody
-- told): a unit e-mail address (no patient data) and/or a recipient at the alert manager
-- (e.g. the charge nurse's phone).
CREATE TABLE alarm_fallbacks (
    hospital_id   uuid PRIMARY KEY REFERENCES hospitals(id) ON DELETE CASCADE,
    email         text CONSTRAINT alarm_fallbacks_email_check CHECK (length(email) BETWEEN 3 AND 320),
    acm_recipient text CONSTRAINT alarm_fallbacks_acm_check CHECK (length(acm_recipient) BETWEEN 1 AND 128),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    uuid REFERENCES users(id) ON DELETE SET NULL,
    CONSTRAINT alarm_fallbacks_some_check CHECK (email IS NOT NULL OR acm_recipient IS NOT NULL)
);

-- A person who chose to get their alarms by e-mail too (priority, machine, bay and a link;
-- never patient data); an e-mail the SMTP server accepted counts as reaching them.
ALTER TABLE users ADD COLUMN alarm_email boolean NOT NULL DEFAULT false;

CREATE TABLE alert_manager_recipients (
    hospital_id  uuid NOT NULL REFERENCES hospitals(id) ON DELETE CASCADE,
    -- The alert manager's id of a recipient (PCD-05 PRT-5 / PRT-8).
    recipient_id text NOT NULL CONSTRAINT alert_manager_recipients_id_check CHECK (length(recipient_id) BETWEEN 1 AND 128),
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (hospital_id, recipient_id)
);

CREATE FUNCTION nc_outbox_account_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (id, channel, message_id, ordering_key, destination, payload)
    VALUES (gen_random_uuid(), 'email', NEW.id, NEW.id, NEW.recipient,
            json_build_object('subject', NEW.subject, 'body', NEW.body)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER outbound_messages_outbox AFTER INSERT ON outbound_messages
    FOR EACH ROW WHEN (NEW.channel = 'email') EXECUTE FUNCTION nc_outbox_account_message();

CREATE FUNCTION nc_outbox_sent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbound_messages SET sent_at = NEW.sent_at WHERE id = NEW.message_id;
    RETURN NEW;
END $$;
CREATE TRIGGER outbox_sent AFTER UPDATE OF state ON outbox
    FOR EACH ROW WHEN (NEW.state = 'sent' AND NEW.message_id IS NOT NULL) EXECUTE FUNCTION nc_outbox_sent();

ALTER TABLE alert_events DROP CONSTRAINT alert_events_event_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_event_check CHECK (event IN
    ('raised', 'notified', 'escalated', 'unreachable', 'reach_unknown', 'acknowledged', 'snoozed', 'realerted', 'cleared',
     'delivered', 'delivery_failed', 'delivery_parked', 'dissemination', 'fallback'));
-- An alarm accepted on a pager through the alert manager (PCD-05) is acknowledged over HL7.
ALTER TABLE access_audit_log DROP CONSTRAINT access_audit_log_interface_check;
ALTER TABLE access_audit_log ADD CONSTRAINT access_audit_log_interface_check CHECK (interface IN ('rest', 'mqtt', 'websocket', 'cli', 'hl7'));
";

const DOWN: &str = "
DELETE FROM alert_events WHERE event IN ('delivered', 'delivery_failed', 'delivery_parked', 'dissemination', 'fallback');
DELETE FROM access_audit_log WHERE interface = 'hl7';
ALTER TABLE access_audit_log DROP CONSTRAINT access_audit_log_interface_check;
ALTER TABLE access_audit_log ADD CONSTRAINT access_audit_log_interface_check CHECK (interface IN ('rest', 'mqtt', 'websocket', 'cli'));
ALTER TABLE alert_events DROP CONSTRAINT alert_events_event_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_event_check CHECK (event IN
    ('raised', 'notified', 'escalated', 'unreachable', 'reach_unknown', 'acknowledged', 'snoozed', 'realerted', 'cleared'));
DROP TRIGGER outbox_sent ON outbox;
DROP FUNCTION nc_outbox_sent();
DROP TRIGGER outbound_messages_outbox ON outbound_messages;
DROP FUNCTION nc_outbox_account_message();
DROP TABLE outbox;
DROP TABLE alert_manager_recipients;
DROP TABLE alarm_fallbacks;
ALTER TABLE users DROP COLUMN alarm_email;
DROP TABLE alert_managers;
";
