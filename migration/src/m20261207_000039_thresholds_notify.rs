//! The alert engine keeps the alarm limits (`alert_thresholds`) in memory instead of reading
//! them for every committed batch; every node learns of a change when it is committed: a
//! statement that changes the table sends `NOTIFY nc_alert_thresholds` (delivered at commit),
//! and the engine forgets what it kept (crate `ingest`, `alerts::rules`).

crate::sql_migration!(
    &crate::notify_trigger("alert_thresholds", "nc_alert_thresholds", "INSERT OR UPDATE OR DELETE OR TRUNCATE"),
    &crate::drop_notify_trigger("alert_thresholds")
);
