//! The alert engine keeps the alarm limits (`alert_thresholds`) in memory instead of reading
//! them for every committed batch; every node learns of a change when it is committed: a
//! statement that changes the table sends `NOTIFY nc_alert_thresholds` (delivered at commit),
//! and the engine forgets what it kept (crate `ingest`, `alerts::rules`).

crate::sql_migration!(UP, DOWN);

const UP: &str = "
CREATE FUNCTION alert_thresholds_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nc_alert_thresholds', '');
    RETURN NULL;
END $$;

CREATE TRIGGER alert_thresholds_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON alert_thresholds
    FOR EACH STATEMENT EXECUTE FUNCTION alert_thresholds_notify();
";

const DOWN: &str = "
DROP TRIGGER alert_thresholds_notify ON alert_thresholds;
DROP FUNCTION alert_thresholds_notify();
";
