//! A ward is an access fact: tier 2 of a machine's alarms is the doctors of its ward, so a
//! change of a person's or a machine's ward fires an access event (migration
//! `access_events`) like a change of role or hospital: kept decisions end and live
//! subscriptions are decided again within a second. (A person's ward is set by the
//! hospital's admins only: `PUT /api/users/{userId}/ward`.)

crate::sql_migration!(UP, DOWN);

const UP: &str = "
DROP TRIGGER users_access_event ON users;
CREATE TRIGGER users_access_event AFTER UPDATE OF is_active, deactivated_at, verified_at, role, hospital_id, ward OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
DROP TRIGGER devices_access_event ON devices;
CREATE TRIGGER devices_access_event AFTER UPDATE OF status, secret_hash, hospital_id, ward OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
";

const DOWN: &str = "
DROP TRIGGER devices_access_event ON devices;
CREATE TRIGGER devices_access_event AFTER UPDATE OF status, secret_hash, hospital_id OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
DROP TRIGGER users_access_event ON users;
CREATE TRIGGER users_access_event AFTER UPDATE OF is_active, deactivated_at, verified_at, role, hospital_id OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION nc_notify_access();
";
