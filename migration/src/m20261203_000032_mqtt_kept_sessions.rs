//! `mqtt_kept_sessions`: the persistent MQTT sessions (`clean_session = false`) the core
//! keeps, when several nodes share an external core: per identity and client id, the slot
//! (the core's client id `{identity}~{slot}`), the login session that created it and the
//! subscriptions the core holds for it. A node that takes over a session another node kept
//! (the client moved, or that node died) reads it here, so the session resumes with what it
//! carries — each subscription decided again by the policy first (see
//! `nephrocare_broker::sessions`). With the embedded core (one node) the table stays empty.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE TABLE mqtt_kept_sessions (
    owner_id uuid NOT NULL,
    client_id text NOT NULL,
    slot smallint NOT NULL,
    family_id uuid,
    -- [{"path": "nc/v1/…", "qos": 0|1}]
    subscriptions jsonb NOT NULL DEFAULT '[]',
    released_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, client_id),
    CONSTRAINT mqtt_kept_sessions_slot_check CHECK (slot >= 0 AND slot < 64),
    CONSTRAINT mqtt_kept_sessions_owner_slot_key UNIQUE (owner_id, slot)
);
"#;

const DOWN: &str = "DROP TABLE mqtt_kept_sessions;";
