//! `fhir_export_jobs`: FHIR Bulk Data export requests (`$export`, the asynchronous
//! pattern). A job records who asked, for what (all the patients they may read, or a
//! group: a hospital or a ward), which resource types, `_since`, and the transaction time
//! the export stands at; once planned, `files` holds the manifest's files (resource type and
//! what each covers). The files themselves are produced when downloaded, streamed from the
//! data (nothing is written to disk). Deleting the row cancels the export.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE TABLE fhir_export_jobs (
    id uuid PRIMARY KEY,
    hospital_id uuid NOT NULL REFERENCES hospitals (id) ON DELETE CASCADE,
    requested_by uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    request text NOT NULL CONSTRAINT fhir_export_jobs_request_check CHECK (length(request) <= 2000),
    group_id uuid,
    types text[] NOT NULL,
    since timestamptz,
    transaction_time timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'in-progress'
        CONSTRAINT fhir_export_jobs_status_check CHECK (status IN ('in-progress', 'completed', 'failed')),
    files jsonb,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    expires_at timestamptz NOT NULL,
    CONSTRAINT fhir_export_jobs_completed_check CHECK ((status = 'completed') = (files IS NOT NULL))
);
CREATE INDEX fhir_export_jobs_requested_by_idx ON fhir_export_jobs (requested_by, created_at);
"#;

const DOWN: &str = "DROP TABLE fhir_export_jobs;";
