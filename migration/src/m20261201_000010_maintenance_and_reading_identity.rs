//! Account links.
//!
//! - Re-linking a patient record to another account (or unlinking it) tells the account that
//!   loses it (`pg_notify('nc_access', {"user": <old account>})`), as re-pointing a patient
//!   to another device tells the old device (migration `access_events`).

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE FUNCTION nc_notify_unlinked_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nc_access', jsonb_build_object('table', TG_TABLE_NAME, 'user', OLD.user_id, 'patient', OLD.id)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER patients_unlinked_account_event AFTER UPDATE OF user_id ON patients
    FOR EACH ROW WHEN (OLD.user_id IS NOT NULL AND OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION nc_notify_unlinked_account();
"#;

const DOWN: &str = r#"
DROP TRIGGER patients_unlinked_account_event ON patients;
DROP FUNCTION nc_notify_unlinked_account();
"#;
