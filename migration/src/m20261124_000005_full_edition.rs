//! Features of TimescaleDB's community ("timescale") edition, gated on
//! `timescaledb.license`: on the Apache edition (what Debian builds) this migration does
//! nothing, and the code never depends on what it adds.
//!
//! On the community edition, raw health_metrics chunks older than 7 days are compressed,
//! segmented by device, which cuts their size roughly tenfold without changing any query.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        ALTER TABLE health_metrics SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id',
            timescaledb.compress_orderby = 'time DESC, seq'
        );
        PERFORM add_compression_policy('health_metrics', interval '7 days');
    END IF;
END
$$;
"#;

const DOWN: &str = r#"
DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        PERFORM remove_compression_policy('health_metrics', if_exists => true);
        PERFORM decompress_chunk(c, true) FROM show_chunks('health_metrics') c;
        ALTER TABLE health_metrics SET (timescaledb.compress = false);
    END IF;
END
$$;
"#;
