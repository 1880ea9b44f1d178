//! `derived_backlog`: the keys of committed readings whose derived data (latest values,
//! rollups, session counters) is not applied yet, one row per written batch. The writer's
//! transaction inserts the row; the deriver applies and deletes it in one transaction, so
//! the table is the durable cursor of the derived data (see `nephrocare_ingest::derived`).
//! It is empty, or nearly, whenever the deriver keeps up.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE TABLE derived_backlog (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    device_ids uuid[] NOT NULL,
    seqs int8[] NOT NULL,
    times timestamptz[] NOT NULL,
    CONSTRAINT derived_backlog_lengths_check
        CHECK (cardinality(device_ids) = cardinality(seqs) AND cardinality(seqs) = cardinality(times))
);
"#;

const DOWN: &str = "DROP TABLE derived_backlog;";
