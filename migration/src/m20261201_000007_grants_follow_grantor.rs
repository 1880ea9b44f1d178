//! A temporary hand-over rests on the grantor's own right: when the granting technician's
//! assignment to the device ends (or is deleted), or the grantor's account is deactivated,
//! the grants they gave end too (`revoked_at` set, `revoked_by` NULL: the system). Updating
//! the grants fires their own access events (migration `access_events`), so live MQTT and
//! WebSocket access of the grantees is cut within a second like any other revocation.
//!
//! Also: changes of who treats a patient (assigned device or doctor, account link) and of
//! a patient's sessions send an access event naming the patient, so that subscriptions to
//! the patient's own topics are re-checked too.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE FUNCTION nc_end_grants_of_grantor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'device_assignments' THEN
        IF OLD.role = 'technician' THEN
            UPDATE temporary_access_grants
               SET revoked_at = now(),
                   reason = left(coalesce(reason || ' — ', '') || 'ended: the granting technician is no longer assigned to the device', 1000)
             WHERE granted_by = OLD.user_id AND device_id = OLD.device_id
               AND revoked_at IS NULL AND expires_at > now();
        END IF;
    ELSE
        UPDATE temporary_access_grants
           SET revoked_at = now(),
               reason = left(coalesce(reason || ' — ', '') || 'ended: the granting technician was deactivated', 1000)
         WHERE granted_by = OLD.id AND revoked_at IS NULL AND expires_at > now();
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION nc_notify_patient_access() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'patients' THEN
        PERFORM pg_notify('nc_access', jsonb_build_object('table', TG_TABLE_NAME, 'patient', r.id)::text);
    ELSIF r.patient_id IS NOT NULL THEN
        PERFORM pg_notify('nc_access', jsonb_build_object('table', TG_TABLE_NAME, 'patient', r.patient_id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER patients_patient_access_event AFTER UPDATE OF assigned_device_id, assigned_doctor_id, user_id OR DELETE ON patients
    FOR EACH ROW EXECUTE FUNCTION nc_notify_patient_access();
CREATE TRIGGER device_sessions_patient_access_event AFTER UPDATE OF status ON device_sessions
    FOR EACH ROW EXECUTE FUNCTION nc_notify_patient_access();

-- A hand-over is given only by a technician who holds the device now (also under a race
-- with the grantor's unassignment: the check runs in the inserting transaction).
CREATE FUNCTION nc_check_grantor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users u WHERE u.id = NEW.granted_by AND u.is_active)
       OR NOT EXISTS (SELECT 1 FROM device_assignments a WHERE a.user_id = NEW.granted_by AND a.device_id = NEW.device_id
                      AND a.role = 'technician' AND a.ended_at IS NULL) THEN
        RAISE EXCEPTION 'the granting technician is not assigned to the device'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'temporary_access_grants_grantor_check';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER temporary_access_grants_grantor_check BEFORE INSERT ON temporary_access_grants
    FOR EACH ROW EXECUTE FUNCTION nc_check_grantor();

-- Grants whose grantor already lost the right before this migration end now.
UPDATE temporary_access_grants g
   SET revoked_at = now(), reason = left(coalesce(g.reason || ' — ', '') || 'ended: the granting technician no longer holds the device', 1000)
 WHERE g.revoked_at IS NULL AND g.expires_at > now()
   AND (NOT EXISTS (SELECT 1 FROM users u WHERE u.id = g.granted_by AND u.is_active)
        OR NOT EXISTS (SELECT 1 FROM device_assignments a WHERE a.user_id = g.granted_by AND a.device_id = g.device_id
                       AND a.role = 'technician' AND a.ended_at IS NULL));

CREATE TRIGGER device_assignments_end_grants AFTER UPDATE OF ended_at ON device_assignments
    FOR EACH ROW WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
    EXECUTE FUNCTION nc_end_grants_of_grantor();
CREATE TRIGGER device_assignments_end_grants_on_delete AFTER DELETE ON device_assignments
    FOR EACH ROW WHEN (OLD.ended_at IS NULL)
    EXECUTE FUNCTION nc_end_grants_of_grantor();
CREATE TRIGGER users_end_grants AFTER UPDATE OF is_active ON users
    FOR EACH ROW WHEN (OLD.is_active AND NOT NEW.is_active)
    EXECUTE FUNCTION nc_end_grants_of_grantor();
"#;

const DOWN: &str = r#"
DROP TRIGGER temporary_access_grants_grantor_check ON temporary_access_grants;
DROP FUNCTION nc_check_grantor();
DROP TRIGGER device_sessions_patient_access_event ON device_sessions;
DROP TRIGGER patients_patient_access_event ON patients;
DROP FUNCTION nc_notify_patient_access();
DROP TRIGGER users_end_grants ON users;
DROP TRIGGER device_assignments_end_grants_on_delete ON device_assignments;
DROP TRIGGER device_assignments_end_grants ON device_assignments;
DROP FUNCTION nc_end_grants_of_grantor();
"#;
