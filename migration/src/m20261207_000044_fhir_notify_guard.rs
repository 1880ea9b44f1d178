//! FHIR subscription events are queued only when a subscription could want them: the
//! trigger function of migration 43 inserted (nothing) into the outbox on every alarm and
//! every session end, and an insert, even of no rows, fires the outbox's statement trigger
//! (`NOTIFY nc_outbox`) in the ingest transaction. Now it looks first, and inserts only
//! when a live subscription of the hospital has the topic.

crate::sql_migration!(UP, DOWN);

const UP: &str = "
CREATE OR REPLACE FUNCTION nc_fhir_notify(h uuid, t text, p uuid, d uuid, focus_type text, focus uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM fhir_subscriptions s
                    WHERE s.hospital_id = h AND s.topic = t AND s.status IN ('requested', 'active')) THEN
        RETURN;
    END IF;
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
END $$;
";

const DOWN: &str = "
CREATE OR REPLACE FUNCTION nc_fhir_notify(h uuid, t text, p uuid, d uuid, focus_type text, focus uuid) RETURNS void
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
";
