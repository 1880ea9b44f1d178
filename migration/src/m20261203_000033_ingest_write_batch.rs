//! `ingest_write_batch(…)`: the ingest writer's batch as one statement, so that the commit
//! a PUBACK waits for is one round trip (the statement, committed at its Sync as an
//! implicit transaction) instead of three (BEGIN, the statement, COMMIT) — and, for a
//! resend or a seq used twice, four or five. At low load every reading is its own batch,
//! and each round trip is a wake-up of PostgreSQL and of the writer.
//!
//! What it does is the reading identity of `nephrocare_ingest::writer::identity`, step by
//! step, each step a statement of its own (so each sees what committed before it, in READ
//! COMMITTED):
//!
//! 1. inserts the candidates (the first reading of each (device, seq) in the batch)
//!    `ON CONFLICT (device_id, seq, time) DO NOTHING`;
//! 2. raises each device's watermark (`p_wm_device`, `p_wm_highest`, sorted by device so
//!    that concurrent batches lock them in the same order) and takes its previous value,
//!    row-locking it until the end of the statement's transaction;
//! 3. if every candidate was inserted with a seq above its device's previous watermark
//!    (a device counting up), records the inserted keys in `derived_backlog` and returns
//!    only that row's id, as `(0, NULL, id, NULL)`: every candidate is new;
//! 4. otherwise looks up the suspects (not inserted, or not above the watermark), after the
//!    lock, and returns one row per candidate that is not new: `(1, device, seq, time)` for
//!    the same reading stored before, `(2, device, seq, holder)` for a conflict with the
//!    reading at `holder` that holds the seq (a candidate inserted just now that collides is
//!    deleted again and left out of the backlog), and the backlog row's id as in step 3 if
//!    any reading was new. A suspect whose exact key was there when
//!    inserting and is gone now (deleted by a concurrent batch as a conflict) aborts the
//!    statement with SQLSTATE 40001, so that the writer writes the batch again.
//!
//! Measurements are passed as `real[]` in the column order of `health_metrics`' 16
//! measurement columns, so the same reading compares equal as stored.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
CREATE FUNCTION ingest_write_batch(
    p_time timestamptz[], p_device uuid[], p_seq int8[], p_hospital uuid[], p_patient uuid[],
    p_session uuid[], p_status text[],
    p_heart_rate real[], p_temperature_f real[], p_systolic_bp real[], p_diastolic_bp real[],
    p_spo2 real[], p_blood_flow_rate real[], p_total_volume_l real[], p_dialysate_flow_rate real[],
    p_arterial_pressure real[], p_venous_pressure real[], p_transmembrane_pressure real[],
    p_dialysate_conductivity real[], p_dialysate_temperature_c real[], p_uf_rate_ml_h real[],
    p_uf_volume_ml real[], p_uf_goal_ml real[],
    p_wm_device uuid[], p_wm_highest int8[])
RETURNS TABLE (o_kind smallint, o_device uuid, o_seq int8, o_time timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE
    i_device uuid[];
    i_seq int8[];
    i_time timestamptz[];
    w_device uuid[];
    w_prev int8[];
    s_kind smallint[];
    s_device uuid[];
    s_seq int8[];
    s_time timestamptz[];
    s_drop boolean[];
    vanished int;
    b_id int8;
BEGIN
    -- 1. The candidates.
    WITH ins AS (
        INSERT INTO health_metrics (time, device_id, seq, hospital_id, patient_id, session_id, system_status,
            heart_rate, temperature_f, systolic_bp, diastolic_bp, spo2, blood_flow_rate, total_volume_l,
            dialysate_flow_rate, arterial_pressure, venous_pressure, transmembrane_pressure,
            dialysate_conductivity, dialysate_temperature_c, uf_rate_ml_h, uf_volume_ml, uf_goal_ml)
        SELECT * FROM UNNEST(p_time, p_device, p_seq, p_hospital, p_patient, p_session, p_status,
            p_heart_rate, p_temperature_f, p_systolic_bp, p_diastolic_bp, p_spo2, p_blood_flow_rate,
            p_total_volume_l, p_dialysate_flow_rate, p_arterial_pressure, p_venous_pressure,
            p_transmembrane_pressure, p_dialysate_conductivity, p_dialysate_temperature_c,
            p_uf_rate_ml_h, p_uf_volume_ml, p_uf_goal_ml)
        ON CONFLICT (device_id, seq, time) DO NOTHING
        RETURNING device_id, seq, time)
    SELECT coalesce(array_agg(ins.device_id), '{}'), coalesce(array_agg(ins.seq), '{}'),
           coalesce(array_agg(ins.time), '{}')
      INTO i_device, i_seq, i_time FROM ins;

    -- 2. The watermarks.
    WITH wm AS (
        INSERT INTO device_seq_watermarks (device_id, max_seq, prev_max_seq)
        SELECT d, m, -1 FROM UNNEST(p_wm_device, p_wm_highest) AS x(d, m)
        ON CONFLICT (device_id) DO UPDATE SET prev_max_seq = device_seq_watermarks.max_seq,
            max_seq = GREATEST(device_seq_watermarks.max_seq, EXCLUDED.max_seq)
        RETURNING device_id, prev_max_seq)
    SELECT coalesce(array_agg(wm.device_id), '{}'), coalesce(array_agg(wm.prev_max_seq), '{}')
      INTO w_device, w_prev FROM wm;

    -- 3. A device counting up: every candidate new.
    IF cardinality(i_device) = cardinality(p_device) AND NOT EXISTS (
        SELECT 1 FROM UNNEST(p_device, p_seq) AS c(d, s) JOIN UNNEST(w_device, w_prev) AS w(d, prev) USING (d)
         WHERE c.s <= w.prev)
    THEN
        IF cardinality(i_device) > 0 THEN
            INSERT INTO derived_backlog (device_ids, seqs, times) VALUES (i_device, i_seq, i_time)
            RETURNING id INTO b_id;
            RETURN QUERY SELECT 0::smallint, NULL::uuid, b_id, NULL::timestamptz;
        END IF;
        RETURN;
    END IF;

    -- 4. The suspects, looked up after the lock.
    WITH c AS (
        SELECT * FROM UNNEST(p_time, p_device, p_seq, p_status,
            p_heart_rate, p_temperature_f, p_systolic_bp, p_diastolic_bp, p_spo2, p_blood_flow_rate,
            p_total_volume_l, p_dialysate_flow_rate, p_arterial_pressure, p_venous_pressure,
            p_transmembrane_pressure, p_dialysate_conductivity, p_dialysate_temperature_c,
            p_uf_rate_ml_h, p_uf_volume_ml, p_uf_goal_ml)
            AS c(time, device_id, seq, system_status,
            heart_rate, temperature_f, systolic_bp, diastolic_bp, spo2, blood_flow_rate, total_volume_l,
            dialysate_flow_rate, arterial_pressure, venous_pressure, transmembrane_pressure,
            dialysate_conductivity, dialysate_temperature_c, uf_rate_ml_h, uf_volume_ml, uf_goal_ml)),
    s AS (
        SELECT c.*, EXISTS (SELECT 1 FROM UNNEST(i_device, i_seq, i_time) AS i(d, s, t)
                             WHERE i.d = c.device_id AND i.s = c.seq AND i.t = c.time) AS inserted
          FROM c JOIN UNNEST(w_device, w_prev) AS w(d, prev) ON w.d = c.device_id),
    suspect AS (
        SELECT s.*,
               (SELECT min(h.time) FROM health_metrics h
                 WHERE h.device_id = s.device_id AND h.seq = s.seq AND h.time <> s.time) AS other,
               (SELECT row(h.system_status, h.heart_rate, h.temperature_f, h.systolic_bp, h.diastolic_bp,
                           h.spo2, h.blood_flow_rate, h.total_volume_l, h.dialysate_flow_rate,
                           h.arterial_pressure, h.venous_pressure, h.transmembrane_pressure,
                           h.dialysate_conductivity, h.dialysate_temperature_c, h.uf_rate_ml_h,
                           h.uf_volume_ml, h.uf_goal_ml)
                             IS NOT DISTINCT FROM
                       row(s.system_status, s.heart_rate, s.temperature_f, s.systolic_bp, s.diastolic_bp,
                           s.spo2, s.blood_flow_rate, s.total_volume_l, s.dialysate_flow_rate,
                           s.arterial_pressure, s.venous_pressure, s.transmembrane_pressure,
                           s.dialysate_conductivity, s.dialysate_temperature_c, s.uf_rate_ml_h,
                           s.uf_volume_ml, s.uf_goal_ml)
                  FROM health_metrics h
                 WHERE h.device_id = s.device_id AND h.seq = s.seq AND h.time = s.time) AS same
          FROM s JOIN UNNEST(w_device, w_prev) AS w(d, prev) ON w.d = s.device_id
         WHERE NOT s.inserted OR s.seq <= w.prev)
    SELECT array_agg(CASE WHEN inserted THEN 2 WHEN same THEN 1 ELSE 2 END::smallint),
           array_agg(device_id), array_agg(seq),
           array_agg(CASE WHEN inserted THEN other ELSE time END),
           array_agg(inserted AND other IS NOT NULL),
           count(*) FILTER (WHERE NOT inserted AND same IS NULL)
      INTO s_kind, s_device, s_seq, s_time, s_drop, vanished
      FROM suspect
     WHERE NOT inserted OR other IS NOT NULL;

    IF vanished > 0 THEN
        RAISE EXCEPTION 'a reading stored when this batch was inserted is gone; write the batch again'
            USING ERRCODE = 'serialization_failure';
    END IF;

    -- A candidate inserted just now that collides: any other reading with its seq was there first.
    DELETE FROM health_metrics h
     USING UNNEST(s_device, s_seq, s_drop) AS k(d, s, dropped), UNNEST(i_device, i_seq, i_time) AS i(d, s, t)
     WHERE k.dropped AND i.d = k.d AND i.s = k.s
       AND h.device_id = i.d AND h.seq = i.s AND h.time = i.t;

    INSERT INTO derived_backlog (device_ids, seqs, times)
    SELECT array_agg(i.d), array_agg(i.s), array_agg(i.t)
      FROM UNNEST(i_device, i_seq, i_time) AS i(d, s, t)
     WHERE NOT EXISTS (SELECT 1 FROM UNNEST(s_device, s_seq, s_drop) AS k(d, s, dropped)
                        WHERE k.dropped AND k.d = i.d AND k.s = i.s)
    HAVING count(*) > 0
    RETURNING id INTO b_id;

    RETURN QUERY SELECT * FROM UNNEST(s_kind, s_device, s_seq, s_time)
        UNION ALL SELECT 0::smallint, NULL::uuid, b_id, NULL::timestamptz WHERE b_id IS NOT NULL;
END
$fn$;
"#;

const DOWN: &str = "DROP FUNCTION ingest_write_batch;";
