//! The alarm system: escalation until someone answers, snooze, latching and a full history
//! per alert.
//!
//! - `devices.ward`: the ward a machine stands in (escalation tier 2 is that ward's doctors).
//! - `alerts`: the tier reached (`escalation_level`) and when the next step is due
//!   (`next_escalation_at`, driven from stored state so a restart neither loses nor repeats
//!   a tier), a snooze (`snoozed_until`, by whom, why), `latched` (a high-priority alarm
//!   that cleared by itself before anyone acknowledged it stays shown until acknowledged)
//!   and `in_range_since` (a physiological alarm's value is back inside its limit, though
//!   not yet past the hysteresis band: from then on a person may clear it by hand).
//! - `alert_escalation_rules`: per hospital and priority, how long an alert may stay
//!   unacknowledged before it escalates and the tiers it escalates to (no row: the
//!   service's configured defaults).
//! - `alert_events`: every step of every alert (raised, notified to whom, escalated,
//!   unreachable, acknowledged, snoozed, re-alerted, cleared), with `published_at` as an
//!   outbox: an event whose notifications were not sent (a crash right after the commit) is
//!   sent again.
//!
//! Alerts already open keep escalating from now on with the documented defaults (high 60 s,
//! medium 180 s); the history of existing alerts is rebuilt from their columns.

const UP: &str = r#"
ALTER TABLE devices ADD COLUMN ward text CONSTRAINT devices_ward_check CHECK (char_length(ward) BETWEEN 1 AND 200);

ALTER TABLE alerts
    ADD COLUMN escalation_level   smallint NOT NULL DEFAULT 1
        CONSTRAINT alerts_escalation_level_check CHECK (escalation_level BETWEEN 1 AND 3),
    ADD COLUMN next_escalation_at timestamptz,
    ADD COLUMN snoozed_until      timestamptz,
    ADD COLUMN snoozed_by         uuid REFERENCES users(id) ON DELETE SET NULL,
    ADD COLUMN snooze_reason      text CONSTRAINT alerts_snooze_reason_check CHECK (char_length(snooze_reason) BETWEEN 1 AND 500),
    ADD COLUMN latched            boolean NOT NULL DEFAULT false,
    ADD COLUMN in_range_since     timestamptz,
    -- A cleared alert has nothing scheduled; a latched one waits only for its acknowledgement.
    ADD CONSTRAINT alerts_schedule_check CHECK (state <> 'cleared' OR (next_escalation_at IS NULL AND snoozed_until IS NULL)),
    ADD CONSTRAINT alerts_latched_check CHECK (NOT latched OR (state = 'cleared' AND acknowledged_at IS NULL));
CREATE INDEX alerts_next_escalation_idx ON alerts (next_escalation_at) WHERE next_escalation_at IS NOT NULL;
CREATE INDEX alerts_snoozed_until_idx ON alerts (snoozed_until) WHERE snoozed_until IS NOT NULL;
CREATE INDEX alerts_latched_idx ON alerts (hospital_id, raised_at DESC) WHERE latched;

UPDATE alerts SET next_escalation_at = GREATEST(now(), raised_at + CASE priority WHEN 'high' THEN interval '60 seconds' ELSE interval '180 seconds' END)
 WHERE state = 'active' AND priority IN ('high', 'medium');

CREATE TABLE alert_escalation_rules (
    hospital_id    uuid NOT NULL REFERENCES hospitals(id) ON DELETE CASCADE,
    priority       text NOT NULL CONSTRAINT alert_escalation_rules_priority_check CHECK (priority IN ('high', 'medium', 'low')),
    -- NULL: alerts of this priority never escalate.
    after_seconds  integer CONSTRAINT alert_escalation_rules_after_check CHECK (after_seconds BETWEEN 1 AND 3600),
    -- The tiers reached one after the other, each `after_seconds` after the previous step.
    tiers          smallint[] NOT NULL DEFAULT '{}'
        CONSTRAINT alert_escalation_rules_tiers_check CHECK (tiers <@ '{2,3}'::smallint[] AND cardinality(tiers) <= 2),
    updated_by     uuid REFERENCES users(id) ON DELETE SET NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hospital_id, priority),
    CONSTRAINT alert_escalation_rules_never_check CHECK (after_seconds IS NOT NULL OR cardinality(tiers) = 0)
);

CREATE TABLE alert_events (
    id            uuid PRIMARY KEY,
    alert_id      uuid NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    hospital_id   uuid NOT NULL REFERENCES hospitals(id) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    event         text NOT NULL CONSTRAINT alert_events_event_check CHECK (event IN
                    ('raised', 'notified', 'escalated', 'unreachable', 'acknowledged', 'snoozed', 'realerted', 'cleared')),
    -- The tier concerned (notified, escalated, unreachable, re-alerted).
    tier          smallint CONSTRAINT alert_events_tier_check CHECK (tier BETWEEN 1 AND 3),
    -- Who acted (acknowledged, snoozed, cleared by hand); NULL for the service.
    actor_id      uuid REFERENCES users(id) ON DELETE SET NULL,
    -- Who was notified, and which of them were reachable then (connected to MQTT with their
    -- notifications subscribed, or watching the device's live stream).
    recipients    uuid[] NOT NULL DEFAULT '{}',
    reachable     uuid[] NOT NULL DEFAULT '{}',
    -- A snooze's reason and length, a clearing's cause (`condition_ended`, `treatment_ended`, `by_hand`), …
    reason        text CONSTRAINT alert_events_reason_check CHECK (char_length(reason) <= 500),
    snooze_until  timestamptz,
    -- The outbox: NULL until the event's notifications went out.
    published_at  timestamptz
);
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, at, id);
CREATE INDEX alert_events_hospital_event_idx ON alert_events (hospital_id, event, at);
CREATE INDEX alert_events_unpublished_idx ON alert_events (at) WHERE published_at IS NULL;

-- Venous pressure: a low limit too (a disconnected line or dislodged needle), high priority,
-- 8 s delay; only where the hospital still has the untouched former default.
UPDATE alert_thresholds SET low = 50, priority = 'high', delay_seconds = 8, updated_at = now()
 WHERE patient_id IS NULL AND metric = 'venous_pressure' AND updated_by IS NULL
   AND low IS NULL AND high = 400 AND priority = 'medium' AND delay_seconds = 10;

INSERT INTO alert_events (id, alert_id, hospital_id, at, event, tier, published_at)
    SELECT gen_random_uuid(), id, hospital_id, raised_at, 'raised', 1, raised_at FROM alerts;
INSERT INTO alert_events (id, alert_id, hospital_id, at, event, actor_id, published_at)
    SELECT gen_random_uuid(), id, hospital_id, acknowledged_at, 'acknowledged', acknowledged_by, acknowledged_at
      FROM alerts WHERE acknowledged_at IS NOT NULL;
INSERT INTO alert_events (id, alert_id, hospital_id, at, event, actor_id, reason, published_at)
    SELECT gen_random_uuid(), id, hospital_id, cleared_at, 'cleared', cleared_by,
           CASE WHEN cleared_by IS NULL THEN 'condition_ended' ELSE 'by_hand' END, cleared_at
      FROM alerts WHERE cleared_at IS NOT NULL;
"#;

const DOWN: &str = r#"
UPDATE alert_thresholds SET low = NULL, priority = 'medium', delay_seconds = 10, updated_at = now()
 WHERE patient_id IS NULL AND metric = 'venous_pressure' AND updated_by IS NULL
   AND low = 50 AND high = 400 AND priority = 'high' AND delay_seconds = 8;
DROP TABLE alert_events;
DROP TABLE alert_escalation_rules;
DROP INDEX alerts_latched_idx;
DROP INDEX alerts_snoozed_until_idx;
DROP INDEX alerts_next_escalation_idx;
ALTER TABLE alerts
    DROP CONSTRAINT alerts_latched_check,
    DROP CONSTRAINT alerts_schedule_check,
    DROP COLUMN in_range_since,
    DROP COLUMN latched,
    DROP COLUMN snooze_reason,
    DROP COLUMN snoozed_by,
    DROP COLUMN snoozed_until,
    DROP COLUMN next_escalation_at,
    DROP COLUMN escalation_level;
ALTER TABLE devices DROP COLUMN ward;
"#;

crate::sql_migration!(UP, DOWN);
