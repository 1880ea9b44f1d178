//! Access-change events: triggers that `pg_notify('nc_access', …)` whenever something that
//! grants or revokes access changes, so every service instance (each LISTENs) can cut live
//! MQTT and WebSocket access within a second. The payload is JSON with the affected
//! `user`, `device` and/or `room` ids and the `table`.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE FUNCTION nc_notify_access() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    payload jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    payload := jsonb_build_object('table', TG_TABLE_NAME);
    CASE TG_TABLE_NAME
        WHEN 'device_assignments' THEN
            payload := payload || jsonb_build_object('user', r.user_id, 'device', r.device_id);
        WHEN 'temporary_access_grants' THEN
            payload := payload || jsonb_build_object('user', r.granted_to, 'device', r.device_id);
        WHEN 'users' THEN
            payload := payload || jsonb_build_object('user', r.id);
        WHEN 'refresh_tokens' THEN
            payload := payload || jsonb_build_object('user', r.user_id, 'family', r.family_id);
        WHEN 'devices' THEN
            payload := payload || jsonb_build_object('device', r.id);
        WHEN 'patients' THEN
            payload := payload || jsonb_build_object('user', r.user_id, 'device', r.assigned_device_id);
            IF TG_OP = 'UPDATE' AND OLD.assigned_device_id IS DISTINCT FROM NEW.assigned_device_id THEN
                PERFORM pg_notify('nc_access', (jsonb_build_object('table', TG_TABLE_NAME, 'device', OLD.assigned_device_id))::text);
            END IF;
        WHEN 'chat_room_participants' THEN
            payload := payload || jsonb_build_object('user', r.user_id, 'room', r.room_id);
        WHEN 'device_sessions' THEN
            payload := payload || jsonb_build_object('device', r.device_id);
        ELSE
            NULL;
    END CASE;
    PERFORM pg_notify('nc_access', payload::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER device_assignments_access_event AFTER INSERT OR UPDATE OR DELETE ON device_assignments
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
CREATE TRIGGER temporary_access_grants_access_event AFTER INSERT OR UPDATE OR DELETE ON temporary_access_grants
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
CREATE TRIGGER users_access_event AFTER UPDATE OF is_active, deactivated_at, verified_at, role, hospital_id OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
CREATE TRIGGER refresh_tokens_access_event AFTER UPDATE OF revoked_at ON refresh_tokens
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL) EXECUTE FUNCTION nc_notify_access();
CREATE TRIGGER devices_access_event AFTER UPDATE OF status, secret_hash, hospital_id OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
CREATE TRIGGER patients_access_event AFTER UPDATE OF assigned_device_id, assigned_doctor_id, user_id OR DELETE ON patients
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
CREATE TRIGGER chat_room_participants_access_event AFTER DELETE ON chat_room_participants
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
CREATE TRIGGER device_sessions_access_event AFTER UPDATE OF status ON device_sessions
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
"#;

const DOWN: &str = r#"
DROP TRIGGER device_sessions_access_event ON device_sessions;
DROP TRIGGER chat_room_participants_access_event ON chat_room_participants;
DROP TRIGGER patients_access_event ON patients;
DROP TRIGGER devices_access_event ON devices;
DROP TRIGGER refresh_tokens_access_event ON refresh_tokens;
DROP TRIGGER users_access_event ON users;
DROP TRIGGER temporary_access_grants_access_event ON temporary_access_grants;
DROP TRIGGER device_assignments_access_event ON device_assignments;
DROP FUNCTION nc_notify_access();
"#;
