//! After a start (or a failover of the MQTT core) nobody is known to be unreachable for a
//! grace while apps reconnect: an alert's history records `reach_unknown` for a tier whose
//! people had not been seen yet, and the decision (`unreachable`, escalating at once, or
//! nothing) once the grace is over.

crate::sql_migration!(UP, DOWN);

const UP: &str = "
ALTER TABLE alert_events DROP CONSTRAINT alert_events_event_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_event_check CHECK (event IN
    ('raised', 'notified', 'escalated', 'unreachable', 'reach_unknown', 'acknowledged', 'snoozed', 'realerted', 'cleared'));
";

const DOWN: &str = "
DELETE FROM alert_events WHERE event = 'reach_unknown';
ALTER TABLE alert_events DROP CONSTRAINT alert_events_event_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_event_check CHECK (event IN
    ('raised', 'notified', 'escalated', 'unreachable', 'acknowledged', 'snoozed', 'realerted', 'cleared'));
";
