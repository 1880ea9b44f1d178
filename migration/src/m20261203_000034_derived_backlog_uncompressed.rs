//! `derived_backlog`'s key arrays are stored out of line without compression: a batch's
//! keys (random device ids, rising sequence numbers and times: ~64 KB at 2,000 readings)
//! barely compress, the row lives until the deriver applies it (well under a second), and
//! `pglz` on every insert cost 4 % of PostgreSQL's CPU at saturation. Measured with
//! `bench copy` (the ingest statement at 2,000 readings, 3 connections, alternated):
//! 72.6–74.5k rows/s compressed, 77.3–83.4k without (bench/README.md, "Sixth round").

crate::sql_migration!(UP, DOWN);

const UP: &str = "
ALTER TABLE derived_backlog
    ALTER COLUMN device_ids SET STORAGE EXTERNAL,
    ALTER COLUMN seqs SET STORAGE EXTERNAL,
    ALTER COLUMN times SET STORAGE EXTERNAL;
";

const DOWN: &str = "
ALTER TABLE derived_backlog
    ALTER COLUMN device_ids SET STORAGE EXTENDED,
    ALTER COLUMN seqs SET STORAGE EXTENDED,
    ALTER COLUMN times SET STORAGE EXTENDED;
";
