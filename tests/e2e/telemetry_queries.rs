//! The time-series reads against SQL over the raw readings, on the real database: the finer
//! rollup tiers as ingest writes them (a redelivered reading counted once), trends from them
//! with ragged range ends, and history walked in time slices over a long window of many
//! daily chunks.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use nc_ingest::query::{self, Cursor, Order, ReadingsQuery, TrendSource, Windows, FINE_TIERS};
use nc_ingest::writer::{write_batch, Row};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{PatientLinks, TestDb};

struct World {
    db: TestDb,
    pool: PgPool,
    hospital: Uuid,
    devices: [Uuid; 2],
    patient: Uuid,
}

async fn world() -> World {
    let db = TestDb::migrated().await;
    let pool = PgPool::connect(&db.url).await.expect("pool");
    let hospital = db.hospital("Q", "queries").await;
    let machine = |serial: &'static str| db.machine(hospital, serial, "M", None, "not-used-by-these-tests");
    let devices = [machine("q-0").await, machine("q-1").await];
    let patient = db.patient(hospital, "Q-1", "Q", PatientLinks::default()).await;
    World { db, pool, hospital, devices, patient }
}

/// A reading of the patient; heart rate always, temperature (not exact in `real`) on two in
/// three, SpO2 on odd seqs.
fn row(w: &World, device: usize, seq: i64, time: DateTime<Utc>) -> Row {
    let mut values = [None; 16];
    values[0] = Some(60.0 + (seq * 7 % 40) as f64);
    if seq % 3 != 0 {
        values[1] = Some(97.3 + (seq % 5) as f64 * 0.1);
    }
    if seq % 2 == 1 {
        values[4] = Some(90.0 + (seq % 10) as f64);
    }
    Row {
        time,
        device_id: w.devices[device],
        seq,
        hospital_id: w.hospital,
        patient_id: Some(w.patient),
        session_id: None,
        system_status: "normal",
        reading: nc_ingest::reading::ReadingIn::from_values(seq, time, nc_domain::SystemStatus::Normal, values),
    }
}

const METRICS: [(&str, &str); 3] =
    [("heartRate", "heart_rate"), ("temperature", "temperature_f"), ("oxygenSaturation", "spo2")];

/// A stored tier bucket of one metric: (bucket, n, sum, min, max).
type TierRow = (DateTime<Utc>, i64, f64, Option<f64>, Option<f64>);

/// (bucket, metric) → (n, sum, min, max)
type Figures = BTreeMap<(DateTime<Utc>, &'static str), (i64, f64, f64, f64)>;

/// The figures SQL computes over the raw readings in `[from, to)`.
async fn from_raw(w: &World, bucket: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Figures {
    let mut out = Figures::new();
    for (json, c) in METRICS {
        let rows: Vec<(DateTime<Utc>, i64, f64, f64, f64)> = sqlx::query_as(&format!(
            "SELECT time_bucket($2::interval, time) AS b, count({c}), sum({c}::float8), min({c})::float8, max({c})::float8
               FROM health_metrics WHERE patient_id = $1 AND time >= $3 AND time < $4 AND {c} IS NOT NULL GROUP BY b"
        ))
        .bind(w.patient)
        .bind(bucket)
        .bind(from)
        .bind(to)
        .fetch_all(&w.pool)
        .await
        .expect("raw figures");
        for (b, n, sum, min, max) in rows {
            out.insert((b, json), (n, sum, min, max));
        }
    }
    out
}

fn assert_same(what: &str, got: &Figures, want: &Figures) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}: the same buckets and metrics");
    for (k, (n, sum, min, max)) in want {
        let g = got[k];
        assert_eq!((g.0, g.2, g.3), (*n, *min, *max), "{what} {k:?}: count/min/max");
        assert!((g.1 - sum).abs() < 1e-6 * sum.abs().max(1.0), "{what} {k:?}: sum {} vs {sum}", g.1);
    }
}

/// Trends of every metric over `[from, to)` at `resolution` come from the rollups and have
/// the figures SQL computes over the readings (`name`: the resolution as an interval).
async fn trends_match_the_readings(
    w: &World,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    resolution: Duration,
    name: &str,
) {
    let names: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
    let (source, buckets) =
        query::trends(&w.pool, w.patient, from, to, resolution, &names, None).await.expect("trends");
    assert_eq!(source, TrendSource::Rollup, "{name}");
    let mut got = Figures::new();
    for b in &buckets {
        for s in &b.stats {
            let json = METRICS.iter().find(|m| m.0 == s.metric).expect("metric").0;
            got.insert((b.bucket, json), (s.count, s.avg * s.count as f64, s.min, s.max));
        }
    }
    let want = from_raw(w, name, from, to).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{name}: buckets");
    for (k, (n, sum, min, max)) in &want {
        let g = got[k];
        assert_eq!((g.0, g.2, g.3), (*n, *min, *max), "{name} {k:?}");
        assert!((g.1 / g.0 as f64 - sum / *n as f64).abs() < 6e-4, "{name} {k:?}: avg");
    }
}

#[tokio::test]
async fn fine_rollup_tiers_agree_with_sql_over_the_readings_and_count_a_redelivery_once() {
    let w = world().await;
    // Three hours of readings from two machines, every 13 s, in batches of 50; two batches
    // are delivered again (whole, and mixed with new readings).
    let base = Utc::now().duration_trunc(Duration::hours(1)).expect("trunc") - Duration::hours(4);
    let rows: Vec<Row> =
        (0..830).map(|i| row(&w, (i % 2) as usize, i / 2 + 1, base + Duration::seconds(13 * i + 3))).collect();
    let batches: Vec<&[Row]> = rows.chunks(50).collect();
    for (i, batch) in batches.iter().enumerate() {
        let written = write_batch(&w.pool, batch).await.expect("batch");
        assert_eq!(written.new.len(), batch.len());
        if i == 4 {
            assert!(write_batch(&w.pool, batch).await.expect("again").new.is_empty(), "a redelivery is not new");
        }
        if i == 9 {
            let mixed: Vec<Row> = batches[3].iter().chain(batches[9].iter()).cloned().collect();
            assert!(write_batch(&w.pool, &mixed).await.expect("mixed").new.is_empty());
        }
    }
    // The deriver's work (no service runs here): the rollups of what was committed, once.
    let derived = nc_ingest::derived::catch_up(&w.pool).await.expect("derived");
    assert_eq!(derived, rows.len(), "each new reading derived once, redeliveries not at all");
    let (first, last) = (rows[0].time, rows.last().expect("rows").time);

    // The stored tiers (and the hourly rollups, of the same shape) = SQL over the readings
    // at their resolution.
    for minutes in FINE_TIERS.into_iter().chain([60]) {
        let mut stored = Figures::new();
        for (json, c) in METRICS {
            let (table, tier) = if minutes == 60 {
                ("health_metric_rollups_hourly", "$2 = 60")
            } else {
                ("health_metric_rollups_fine", "minutes = $2")
            };
            let rows: Vec<TierRow> = sqlx::query_as(&format!(
                "SELECT bucket, {c}_n::int8, {c}_sum, {c}_min::float8, {c}_max::float8 FROM {table}
                  WHERE patient_id = $1 AND {tier}"
            ))
            .bind(w.patient)
            .bind(minutes as i16)
            .fetch_all(&w.pool)
            .await
            .expect("tier");
            for (b, n, sum, min, max) in rows {
                if n > 0 {
                    stored.insert((b, json), (n, sum, min.expect("min"), max.expect("max")));
                } else {
                    assert_eq!((sum, min, max), (0.0, None, None), "an absent metric has no figures");
                }
            }
        }
        let raw = from_raw(&w, &format!("{minutes} minutes"), first, last + Duration::seconds(1)).await;
        assert_same(&format!("{minutes}-minute tier"), &stored, &raw);
        let counted: i64 = stored.iter().filter(|(k, _)| k.1 == "heartRate").map(|(_, v)| v.0).sum();
        assert_eq!(counted, rows.len() as i64, "{minutes}-minute tier: each reading counted once");
    }

    // Trends at each tier's resolution, over a range whose ends fall inside buckets: the
    // figures of the readings in [from, to) exactly (the ragged ends from the readings).
    let (from, to) = (first + Duration::seconds(17 * 60 + 29), last - Duration::seconds(23 * 60 + 41));
    for (minutes, name) in [(1, "1 minute"), (5, "5 minutes"), (15, "15 minutes"), (10, "10 minutes")] {
        trends_match_the_readings(&w, (from, to), Duration::minutes(minutes), name).await;
    }
    // Hourly and two-hourly trends from the hourly rollups: the readings' figures.
    let (from, to) = (first.duration_trunc(Duration::hours(1)).expect("trunc"), last + Duration::seconds(1));
    for (hours, name) in [(1, "1 hour"), (2, "2 hours")] {
        trends_match_the_readings(&w, (from, to), Duration::hours(hours), name).await;
    }
    // Limited to a device's window, trends come from the readings.
    let windows = Windows::new([(w.devices[0], from, to)]);
    let (source, _) = query::trends(&w.pool, w.patient, from, to, Duration::minutes(5), &["heartRate"], Some(&windows))
        .await
        .expect("trends");
    assert_eq!(source, TrendSource::Raw);
    w.pool.close().await;
    drop(w.db);
}

#[tokio::test]
async fn a_history_walk_over_a_long_window_returns_exactly_what_sql_returns() {
    let w = world().await;
    // Sixty days (sixty daily chunks) with bursts, gaps of ten days and more, and ties:
    // both machines at the same instants, and one machine twice at one instant.
    let day0 = Utc::now().duration_trunc(Duration::days(1)).expect("trunc") - Duration::days(62);
    let mut rows = Vec::new();
    let mut seq = [0i64; 2];
    let mut push = |device: usize, t: DateTime<Utc>, rows: &mut Vec<Row>| {
        seq[device] += 1;
        rows.push(row(&w, device, seq[device], t));
    };
    for day in [0, 1, 2, 14, 15, 30, 47, 48, 59, 60] {
        for k in 0..12 {
            let t = day0 + Duration::days(day) + Duration::minutes(113 * k + 7) + Duration::microseconds(k * 1001);
            push(0, t, &mut rows);
            if k % 3 == 0 {
                push(1, t, &mut rows);
            }
            if k % 5 == 0 {
                push(0, t, &mut rows);
            }
        }
    }
    // The last reading sits at midnight, where two chunks meet.
    push(1, day0 + Duration::days(61), &mut rows);
    for batch in rows.chunks(200) {
        write_batch(&w.pool, batch).await.expect("batch");
    }
    nc_ingest::derived::catch_up(&w.pool).await.expect("derived");
    let (from, to) = (day0 - Duration::hours(30), day0 + Duration::days(61) + Duration::seconds(1));
    let expected = |windows: Option<(Uuid, DateTime<Utc>, DateTime<Utc>)>| {
        let pool = w.pool.clone();
        let patient = w.patient;
        async move {
            let (d, f, t) = windows.unwrap_or((Uuid::nil(), from, to));
            sqlx::query_as::<_, (DateTime<Utc>, Uuid, i64)>(
                "SELECT time, device_id, seq FROM health_metrics
                  WHERE patient_id = $1 AND time >= $2 AND time < $3 AND time >= $4 AND time < $5 AND ($6 = device_id OR $7)
                  ORDER BY time DESC, device_id DESC, seq DESC",
            )
            .bind(patient)
            .bind(from)
            .bind(to)
            .bind(f)
            .bind(t)
            .bind(d)
            .bind(windows.is_none())
            .fetch_all(&pool)
            .await
            .expect("sql")
        }
    };
    let walk = |limit: i64, windows: Option<Windows>| {
        let pool = w.pool.clone();
        let patient = w.patient;
        async move {
            let (mut walked, mut cursor, mut pages) = (Vec::new(), None::<Cursor>, 0);
            loop {
                let (items, next) =
                    query::history(&pool, patient, from, to, limit, cursor, windows.as_ref()).await.expect("page");
                pages += 1;
                assert!(items.len() as i64 <= limit);
                walked.extend(items.iter().map(|r| (r.time, r.device_id, r.seq)));
                match next {
                    Some(c) => {
                        assert_eq!(items.len() as i64, limit, "only the last page is short");
                        // Through its text form, as the API hands it out.
                        cursor = Some(Cursor::decode(&c.encode()).expect("cursor"));
                    }
                    None => break,
                }
                assert!(pages < 1000, "the walk ends");
            }
            walked
        }
    };
    let all = expected(None).await;
    assert_eq!(all.len(), rows.len());
    for limit in [1, 7, 100, 1000] {
        assert_eq!(walk(limit, None).await, all, "pages of {limit} = SQL order, no gaps, no repeats");
    }
    let (wf, wt) = (day0 + Duration::days(1), day0 + Duration::days(48));
    let scoped = expected(Some((w.devices[1], wf, wt))).await;
    assert!(!scoped.is_empty());
    assert_eq!(walk(5, Some(Windows::new([(w.devices[1], wf, wt)]))).await, scoped, "within a device's window");
    // The same walk oldest first, by device, and only readings with SpO2 (`readings_page`,
    // which FHIR pages use).
    let walk_q = |q: ReadingsQuery<'static>| {
        let pool = w.pool.clone();
        async move {
            let (mut walked, mut cursor) = (Vec::new(), None::<Cursor>);
            loop {
                let (items, next) = query::readings_page(&pool, &q, cursor).await.expect("page");
                walked.extend(items.iter().map(|r| (r.time, r.device_id, r.seq)));
                match next {
                    Some(c) => cursor = Some(c),
                    None => break walked,
                }
            }
        }
    };
    let oldest_first = |limit| ReadingsQuery {
        patient: Some(w.patient),
        order: Order::OldestFirst,
        ..ReadingsQuery::new(from, to, limit)
    };
    let mut ascending = all.clone();
    ascending.reverse();
    for limit in [1, 7, 1000] {
        assert_eq!(walk_q(oldest_first(limit)).await, ascending, "oldest first, pages of {limit}");
    }
    let device0: Vec<_> = ascending.iter().filter(|r| r.1 == w.devices[0]).copied().collect();
    let by_device = ReadingsQuery { patient: None, device: Some(w.devices[0]), ..oldest_first(9) };
    assert_eq!(walk_q(by_device).await, device0, "a device's readings");
    let with_spo2: Vec<_> = all.iter().filter(|r| r.2 % 2 == 1).copied().collect();
    let measured = ReadingsQuery { measured: vec!["spo2"], ..ReadingsQuery::new(from, to, 4) };
    let measured = ReadingsQuery { patient: Some(w.patient), ..measured };
    assert_eq!(walk_q(measured).await, with_spo2, "readings with SpO2");
    // A cursor later than `to` pages from `to`; one before `from` gives nothing.
    let late = Cursor { time: to + Duration::days(400), device: Uuid::max(), seq: i64::MAX };
    let (items, _) = query::history(&w.pool, w.patient, from, to, 3, Some(late), None).await.expect("page");
    assert_eq!(items.iter().map(|r| (r.time, r.device_id, r.seq)).collect::<Vec<_>>(), all[..3].to_vec());
    let early = Cursor { time: from, device: Uuid::max(), seq: i64::MAX };
    let (items, next) = query::history(&w.pool, w.patient, from, to, 3, Some(early), None).await.expect("page");
    assert!(items.is_empty() && next.is_none());
    w.pool.close().await;
    drop(w.db);
}
