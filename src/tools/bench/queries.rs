//! `nephrocare bench queries`: trends and history latency on a year of one patient's 1 Hz
//! data (loaded in SQL, its rollups built as the migration's backfill builds them), and the
//! cost of the rollups per ingest batch. Prints one result block.

use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::tools::bench::pct;

/// p50, p99 and max of `times` (µs), as a result line.
fn line(name: &str, times: Vec<u64>) -> String {
    format!(
        "\n  {name:<58} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        pct(times.clone(), 0.5),
        pct(times.clone(), 0.99),
        pct(times, 1.0)
    )
}

/// The cost of the rollups per ingest batch: `write_batch` of 2,000-row batches (1,000
/// devices at 1 Hz, 2 s per batch), once for devices without a patient (nothing rolled up)
/// and once with a patient each (the hourly and finer rollups written).
async fn batch_cost(pool: &PgPool, h: Uuid) -> Result<String, String> {
    let e = |e: sqlx::Error| e.to_string();
    const DEVICES: usize = 1000;
    const BATCHES: usize = 40;
    let mut report = String::new();
    for with_patients in [false, true] {
        let devices: Vec<Uuid> = (0..DEVICES).map(|_| Uuid::now_v7()).collect();
        let patients: Vec<Uuid> = (0..DEVICES).map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "INSERT INTO devices (id, hospital_id, serial, name, secret_hash)
             SELECT d, $2, 'BB-' || left(d::text, 8) || right(d::text, 12), 'Bench', 'x' FROM unnest($1::uuid[]) d",
        )
        .bind(&devices)
        .bind(h)
        .execute(pool)
        .await
        .map_err(e)?;
        sqlx::query(
            "INSERT INTO patients (id, hospital_id, patient_number, name)
             SELECT p, $2, 'BP-' || right(p::text, 12), 'Bench' FROM unnest($1::uuid[]) p",
        )
        .bind(&patients)
        .bind(h)
        .execute(pool)
        .await
        .map_err(e)?;
        let start = Utc::now() - chrono::Duration::seconds(BATCHES as i64 * 2 + 60);
        let mut times = Vec::new();
        for b in 0..BATCHES {
            let rows: Vec<nc_ingest::writer::Row> = (0..2 * DEVICES)
                .map(|i| {
                    let (d, second) = (i % DEVICES, (b * 2 + i / DEVICES) as i64);
                    let mut values = [None; 16];
                    let base = [70.0, 97.5, 120.0, 75.0, 95.0, 380.0, 20.0];
                    for (k, v) in values.iter_mut().enumerate().take(7) {
                        *v = Some(base[k] + (second % 10) as f64 * 0.5);
                    }
                    let time = start + chrono::Duration::seconds(second);
                    nc_ingest::writer::Row {
                        time,
                        device_id: devices[d],
                        seq: second,
                        hospital_id: h,
                        patient_id: with_patients.then_some(patients[d]),
                        session_id: None,
                        system_status: "normal",
                        reading: nc_ingest::reading::ReadingIn::from_values(
                            second,
                            time,
                            nc_domain::SystemStatus::Normal,
                            values,
                        ),
                    }
                })
                .collect();
            let t = Instant::now();
            nc_ingest::writer::write_batch(pool, &rows).await.map_err(e)?;
            if b >= 5 {
                times.push(t.elapsed().as_micros() as u64);
            }
        }
        let what = if with_patients {
            "write_batch, 2,000 rows of 1,000 patients (rollups)"
        } else {
            "write_batch, 2,000 rows without patients (no rollups)"
        };
        report.push_str(&line(what, times));
    }
    Ok(report)
}

/// Loads a year of 1 Hz readings for one patient (generated in SQL), builds its rollups
/// (the hourly ones, and the finer tiers with the migration's backfill SQL), then times the
/// trends and history queries the API runs.
pub async fn queries(url: &str, days: i64, loaded: bool, load_only: bool) -> Result<String, String> {
    let e = |e: sqlx::Error| e.to_string();
    let pool = crate::tools::bench::pool(url, 3).await.map_err(e)?;
    if loaded {
        let (p, d, start, end): (Uuid, Uuid, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
            "SELECT patient_id, device_id, min(time), max(time) + interval '1 second' FROM health_metrics
              WHERE patient_id = (SELECT patient_id FROM health_metric_rollups_hourly LIMIT 1) GROUP BY 1, 2",
        )
        .fetch_one(&pool)
        .await
        .map_err(e)?;
        let report = format!("bench queries: on the data already loaded ({start} to {end})");
        return time_queries(url, &pool, (p, d), (start, end), report).await;
    }
    let h = crate::tools::bench::insert_hospital(&pool, "Bench").await.map_err(e)?;
    let (d, p) = (Uuid::now_v7(), Uuid::now_v7());
    let batches = batch_cost(&pool, h).await?;
    sqlx::query("TRUNCATE health_metrics, health_metric_rollups_hourly, health_metric_rollups_fine")
        .execute(&pool)
        .await
        .map_err(e)?;
    let end: DateTime<Utc> = Utc::now();
    let start = end - chrono::Duration::days(days);
    let load = Instant::now();
    // One day per statement (TimescaleDB routes each into its chunk).
    for day in 0..days {
        let from = start + chrono::Duration::days(day);
        sqlx::query(
            "INSERT INTO health_metrics (time, device_id, seq, hospital_id, patient_id, system_status, heart_rate, systolic_bp, spo2, temperature_f, blood_flow_rate, total_volume_l)
             SELECT t, $1, extract(epoch FROM t)::bigint, $2, $3, 'normal',
                    70 + 10 * sin(extract(epoch FROM t) / 600), 120 + 15 * cos(extract(epoch FROM t) / 900), 97, 98.4, 400, 10
               FROM generate_series($4::timestamptz, $4::timestamptz + interval '1 day' - interval '1 second', interval '1 second') t",
        )
        .bind(d).bind(h).bind(p).bind(from)
        .execute(&pool)
        .await
        .map_err(e)?;
    }
    let loaded = load.elapsed().as_secs_f64();
    let build = Instant::now();
    sqlx::query(
        "INSERT INTO health_metric_rollups_hourly (patient_id, bucket,
                 heart_rate_n, heart_rate_sum, heart_rate_min, heart_rate_max,
                 systolic_bp_n, systolic_bp_sum, systolic_bp_min, systolic_bp_max, spo2_n, spo2_sum, spo2_min, spo2_max)
         SELECT patient_id, time_bucket('1 hour', time),
                count(heart_rate), sum(heart_rate::float8), min(heart_rate), max(heart_rate),
                count(systolic_bp), sum(systolic_bp::float8), min(systolic_bp), max(systolic_bp),
                count(spo2), sum(spo2::float8), min(spo2), max(spo2)
           FROM health_metrics WHERE patient_id = $1 GROUP BY 1, 2",
    )
    .bind(p)
    .execute(&pool)
    .await
    .map_err(e)?;
    let hourly = build.elapsed().as_secs_f64();
    let build = Instant::now();
    sqlx::raw_sql(&nc_migration::backfill_fine_rollups_sql()).execute(&pool).await.map_err(e)?;
    let fine = build.elapsed().as_secs_f64();
    sqlx::query("ANALYZE health_metrics").execute(&pool).await.map_err(e)?;
    sqlx::query("ANALYZE health_metric_rollups_fine").execute(&pool).await.map_err(e)?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM health_metrics WHERE patient_id = $1")
        .bind(p)
        .fetch_one(&pool)
        .await
        .map_err(e)?;
    let mut report = format!(
        "bench queries: {rows} readings ({days} days at 1 Hz) loaded in {loaded:.0} s; hourly rollups built in {hourly:.0} s, \
         the finer tiers (migration backfill) in {fine:.0} s"
    );
    report.push_str(&batches);
    if load_only {
        return Ok(report);
    }
    time_queries(url, &pool, (p, d), (start, end), report).await
}

/// Times trends at every resolution's longest range and history pages on the loaded patient.
async fn time_queries(
    url: &str,
    pool: &PgPool,
    (p, d): (Uuid, Uuid),
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    mut report: String,
) -> Result<String, String> {
    let e = |e: sqlx::Error| e.to_string();
    let three = ["heartRate", "bloodPressure", "oxygenSaturation"];
    let six = ["heartRate", "temperature", "bloodPressure", "oxygenSaturation", "flowRate", "totalVolume"];
    let (m, h1, d1) = (chrono::Duration::minutes(1), chrono::Duration::hours(1), chrono::Duration::days(1));
    // The API allows at most 10,000 buckets: the longest range of each resolution.
    let longest = |res: chrono::Duration| (end - res * 10_000).max(start - d1);
    let cases: Vec<(String, DateTime<Utc>, chrono::Duration, &[&str])> = vec![
        ("trends 1d over the whole year".into(), start, d1, &three[..]),
        ("trends 1h over 30 days".into(), end - d1 * 30, h1, &three[..]),
        ("trends 1m over one day".into(), end - d1, m, &three[..]),
        ("trends 5m over 7 days".into(), end - d1 * 7, m * 5, &three[..]),
        ("trends 1m over 6.9 days (10,000 buckets)".into(), longest(m), m, &three[..]),
        ("trends 1m over 6.9 days (10,000 buckets), 6 metrics".into(), longest(m), m, &six[..]),
        ("trends 5m over 34.7 days (10,000 buckets), 6 metrics".into(), longest(m * 5), m * 5, &six[..]),
        ("trends 15m over 104 days (10,000 buckets), 6 metrics".into(), longest(m * 15), m * 15, &six[..]),
        ("trends 1h over the whole year, 6 metrics".into(), longest(h1), h1, &six[..]),
        ("trends 6h over the whole year, 6 metrics".into(), start, h1 * 6, &six[..]),
        ("trends 1d over the whole year, 6 metrics".into(), start, d1, &six[..]),
    ];
    for (name, from, res, metrics) in cases {
        let mut times = Vec::new();
        let mut source = None;
        for _ in 0..20 {
            let t = Instant::now();
            let (s, _) = nc_ingest::query::trends(pool, p, from, end, res, metrics, None).await.map_err(e)?;
            times.push(t.elapsed().as_micros() as u64);
            source = Some(s);
        }
        report.push_str(&line(&format!("{name} ({source:?})"), times));
    }
    // History over a one-year window: a cursor walk of 50 pages from the newest, then the
    // same page deep in the year (half a year back) 20 times.
    let mut times = Vec::new();
    let mut cursor = None;
    for _ in 0..50 {
        let t = Instant::now();
        let (_, next) = nc_ingest::query::history(pool, p, start, end, 100, cursor, None).await.map_err(e)?;
        times.push(t.elapsed().as_micros() as u64);
        cursor = next;
    }
    report.push_str(&line("history page of 100, whole window (cursor walk)", times));
    let deep = nc_ingest::query::Cursor { time: end - (end - start) / 2, device: d, seq: i64::MAX };
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (items, _) = nc_ingest::query::history(pool, p, start, end, 100, Some(deep), None).await.map_err(e)?;
        times.push(t.elapsed().as_micros() as u64);
        if items.len() != 100 {
            return Err(format!("the deep page has {} readings", items.len()));
        }
    }
    report.push_str(&line("history page of 100, whole window, half-way deep", times));
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(e)?;
    let t = Instant::now();
    let _: Option<(DateTime<Utc>,)> =
        sqlx::query_as("SELECT time FROM health_metrics WHERE patient_id = $1 ORDER BY time DESC LIMIT 1")
            .bind(p)
            .fetch_optional(&mut conn)
            .await
            .map_err(e)?;
    report.push_str(&format!(
        "\n  {:<58} {:>12.2} ms",
        "newest reading via (patient_id, time) index",
        t.elapsed().as_secs_f64() * 1000.0
    ));
    Ok(report)
}
