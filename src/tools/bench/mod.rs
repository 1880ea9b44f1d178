//! `nephrocare bench …`: the benchmark commands whose results are recorded in
//! `bench/README.md`. Each prints one result block; none runs in CI.
//!
//! - `bench copy`: raw write rate into the hypertable: `COPY … FROM STDIN` versus the
//!   ingest path's batched `INSERT … SELECT FROM UNNEST … ON CONFLICT DO NOTHING`.
//! - `bench broker`: device → app fan-out through the edge versus the same clients on a
//!   bare embedded rumqttd, publish → delivery latency and throughput.
//! - `bench connections`: many authenticated MQTT clients against a running service.
//! - `bench queries`: trends and history latency on a year of one patient's 1 Hz data
//!   ([`crate::tools::bench::queries`]).
//! - `bench hl7`: a device gateway (IHE PCD-01, HL7 v2 over MLLP) against a running service
//!   ([`crate::tools::bench::hl7`]).

mod alarm_channels;
pub mod alarms;
pub mod chat;
pub mod connections;
pub mod fhir;
pub mod hl7;
pub mod ingest;
pub mod queries;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use uuid::Uuid;

/// A pool with the service's session settings ([`crate::app::SESSION_SETTINGS`]), on the
/// primary when `url` names several hosts.
pub(crate) async fn pool(url: &str, connections: u32) -> Result<PgPool, sqlx::Error> {
    if let Some(hosts) = crate::db::Hosts::parse(url).map_err(sqlx::Error::Protocol)? {
        let settings = crate::db::PoolSettings {
            max_connections: connections,
            connect_timeout: Duration::from_secs(30),
            session: &crate::app::SESSION_SETTINGS,
        };
        let (db, _) = crate::db::connect_primary(hosts, &settings).await.map_err(sqlx::Error::Protocol)?;
        return Ok(db.get_postgres_connection_pool().clone());
    }
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(options.options(crate::app::SESSION_SETTINGS))
        .await
}

pub(crate) fn pct(mut v: Vec<u64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0
}

/// Rows for `devices` devices, one per second each, ending now.
fn synthetic_rows(hospital: Uuid, devices: usize, rows: usize) -> Vec<nc_ingest::writer::Row> {
    let ids: Vec<Uuid> = (0..devices).map(|_| Uuid::now_v7()).collect();
    let start = Utc::now() - chrono::Duration::seconds((rows / devices.max(1)) as i64 + 10);
    (0..rows)
        .map(|i| {
            let d = i % devices;
            let t = start + chrono::Duration::milliseconds((i / devices) as i64 * 1000 + d as i64);
            let mut values = [None; 16];
            let wobble = (i % 20) as f64;
            // heart rate, temperature (°F), systolic, diastolic, SpO2, blood flow, volume
            let base = [70.0, 97.5, 120.0, 75.0, 95.0, 380.0, 20.0];
            for (k, v) in values.iter_mut().enumerate().take(7) {
                *v = Some(base[k] + wobble * if k == 1 || k == 4 { 0.1 } else { 1.0 });
            }
            nc_ingest::writer::Row {
                time: t,
                device_id: ids[d],
                seq: i as i64,
                hospital_id: hospital,
                patient_id: None,
                session_id: None,
                system_status: "normal",
                reading: nc_ingest::reading::ReadingIn::from_values(
                    i as i64,
                    t,
                    nc_domain::SystemStatus::Normal,
                    values,
                ),
            }
        })
        .collect()
}

/// Raw COPY rate versus the ingest path's UNNEST batches, on the same synthetic rows.
/// A hospital for a benchmark's data, created as every hospital is
/// (`nc_care::hospitals::create`), its code made unique.
pub(crate) async fn insert_hospital(pool: &PgPool, name: &str) -> Result<Uuid, sqlx::Error> {
    let db = sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
    let code = format!("bench-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let created = nc_care::hospitals::create(&db, name, &code).await;
    created.map(|h| h.as_uuid()).map_err(|e| sqlx::Error::Protocol(e.to_string()))
}

pub async fn copy(url: &str, rows: usize, connections: usize) -> Result<String, String> {
    let e = |e: sqlx::Error| e.to_string();
    let pool = pool(url, connections as u32 + 1).await.map_err(e)?;
    sqlx::query("TRUNCATE health_metrics").execute(&pool).await.map_err(e)?;
    // The machines exist (the latest-values table refers to them).
    let hospital = insert_hospital(&pool, "Bench").await.map_err(e)?;
    let data = Arc::new(synthetic_rows(hospital, 1000, rows));
    let devices: Vec<Uuid> = data.iter().take(1000).map(|r| r.device_id).collect();
    sqlx::query(
        "INSERT INTO devices (id, hospital_id, serial, name, secret_hash)
         SELECT d, $2, 'C-' || d::text, 'Bench', 'x' FROM UNNEST($1::uuid[]) AS d ON CONFLICT DO NOTHING",
    )
    .bind(&devices)
    .bind(hospital)
    .execute(&pool)
    .await
    .map_err(e)?;
    let columns: Vec<&str> = nc_ingest::reading::COLUMNS.iter().map(|(_, c)| *c).collect();
    let copy_sql = format!(
        "COPY health_metrics (time, device_id, seq, hospital_id, system_status, {}) FROM STDIN (FORMAT csv)",
        columns.join(", ")
    );
    // (a) COPY, 10,000-row batches, `connections` at once.
    let started = Instant::now();
    let chunks: Vec<(usize, usize)> = (0..rows).step_by(10_000).map(|s| (s, (s + 10_000).min(rows))).collect();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (pool, data, chunks, next, sql) =
            (pool.clone(), data.clone(), chunks.clone(), next.clone(), copy_sql.clone());
        tasks.spawn(async move {
            let mut conn = pool.acquire().await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((a, b)) = chunks.get(i).copied() else { return Ok::<_, sqlx::Error>(()) };
                let mut csv = String::with_capacity((b - a) * 120);
                for r in &data[a..b] {
                    csv.push_str(&format!(
                        "{},{},{},{},{}",
                        r.time.to_rfc3339(),
                        r.device_id,
                        r.seq,
                        r.hospital_id,
                        r.system_status
                    ));
                    for v in r.values() {
                        csv.push(',');
                        if let Some(v) = v {
                            csv.push_str(&v.to_string());
                        }
                    }
                    csv.push('\n');
                }
                let mut copy = conn.copy_in_raw(&sql).await?;
                copy.send(csv.into_bytes()).await?;
                copy.finish().await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())?.map_err(e)?;
    }
    let copy_rate = rows as f64 / started.elapsed().as_secs_f64();
    sqlx::query("TRUNCATE health_metrics").execute(&pool).await.map_err(e)?;
    // (b) The ingest path: UNNEST batches of 2,000 with ON CONFLICT DO NOTHING (+ latest values).
    let started = Instant::now();
    let batches: Vec<(usize, usize)> = (0..rows).step_by(2_000).map(|s| (s, (s + 2_000).min(rows))).collect();
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..connections {
        let (pool, data, batches, next) = (pool.clone(), data.clone(), batches.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((a, b)) = batches.get(i).copied() else { return Ok(()) };
                nc_ingest::writer::write_batch(&pool, &data[a..b]).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())?.map_err(e)?;
    }
    let unnest_rate = rows as f64 / started.elapsed().as_secs_f64();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM health_metrics").fetch_one(&pool).await.map_err(e)?;
    Ok(format!(
        "bench copy: {rows} rows, {connections} connections\n  COPY csv (10k-row batches):            {copy_rate:>9.0} rows/s\n  UNNEST + ON CONFLICT (2k-row batches): {unnest_rate:>9.0} rows/s ({stored} stored)"
    ))
}

/// One side of the broker comparison.
struct FanoutResult {
    delivered: u64,
    expected: u64,
    seconds: f64,
    p50: f64,
    p99: f64,
}

/// Subscribers (one per device topic) and publishers (one per device) at `rate` msg/s in
/// total for `seconds`; latency is measured from the timestamp in each payload.
#[allow(clippy::too_many_arguments)]
async fn fanout(
    host: &str,
    port: u16,
    devices: &[(String, String, String)],
    subscriber: &dyn Fn(usize) -> (String, String, String),
    topics: &[String],
    rate: f64,
    seconds: f64,
) -> Result<FanoutResult, String> {
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::<u64>::with_capacity((rate * seconds) as usize)));
    // Samples of messages sent before this instant (µs since `epoch`) are warm-up.
    let warm_from = Arc::new(AtomicU64::new(u64::MAX));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        let (id, user, pass) = subscriber(i);
        let mut o = MqttOptions::new(id, host, port);
        o.set_credentials(user, pass);
        o.set_keep_alive(Duration::from_secs(60));
        o.set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, mut ev) = AsyncClient::new(o, 64);
        client.subscribe(topic.clone(), QoS::AtLeastOnce).await.map_err(|e| e.to_string())?;
        let (lat, del, warm_from) = (latencies.clone(), delivered.clone(), warm_from.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        subs.push(tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(a))) => {
                        if let Some(r) = ready.take() {
                            let ok = a.return_codes.iter().all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure));
                            let _ = r.send(if ok { Ok(()) } else { Err("subscription refused".into()) });
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(sent) = std::str::from_utf8(&p.payload)
                            .ok()
                            .and_then(|s| s.split('"').nth(3))
                            .and_then(|s| s.parse::<u64>().ok())
                        {
                            let now = epoch.elapsed().as_micros() as u64;
                            if sent >= warm_from.load(Ordering::Relaxed) {
                                lat.lock().expect("latencies").push(now.saturating_sub(sent));
                            }
                            del.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Err(e.to_string()));
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }));
        ready_rx.await.map_err(|e| e.to_string())??;
    }
    let mut pubs = Vec::new();
    let up = Arc::new(AtomicU64::new(0));
    for (id, user, pass) in devices {
        let mut o = MqttOptions::new(id.clone(), host, port);
        o.set_credentials(user.clone(), pass.clone());
        o.set_keep_alive(Duration::from_secs(60));
        o.set_inflight(200);
        let (client, mut ev) = AsyncClient::new(o, 1024);
        let up = up.clone();
        tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        up.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        pubs.push(client);
    }
    // Every publisher connected, then a warm-up second whose samples are discarded.
    let waiting = Instant::now();
    while (up.load(Ordering::Relaxed) as usize) < devices.len() && waiting.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    warm_from.store(epoch.elapsed().as_micros() as u64 + 1_000_000, Ordering::Relaxed);
    let per_tick = 1000.0;
    let interval = Duration::from_secs_f64(1.0 / per_tick);
    let per_interval = rate / per_tick;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut due = 0.0;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let now_ts = Utc::now().to_rfc3339();
    while started.elapsed().as_secs_f64() < seconds {
        tick.tick().await;
        due += per_interval;
        while due >= 1.0 {
            due -= 1.0;
            let i = (sent as usize) % pubs.len();
            let stamp = epoch.elapsed().as_micros() as u64;
            let payload = format!(
                r#"{{"bench":"{stamp}","v":1,"seq":{sent},"ts":"{now_ts}","systemStatus":"normal","heartRate":70}}"#
            );
            let _ = pubs[i].try_publish(topics[i].clone(), QoS::AtLeastOnce, false, payload);
            sent += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for s in subs {
        s.abort();
    }
    let l = latencies.lock().expect("latencies").clone();
    Ok(FanoutResult {
        delivered: delivered.load(Ordering::Relaxed),
        expected: sent,
        seconds,
        p50: pct(l.clone(), 0.5),
        p99: pct(l, 0.99),
    })
}

/// A sink that stores nothing and commits at once: the broker bench measures the edge.
struct NoStorage;

impl nc_messaging::TelemetrySink for NoStorage {
    fn submit(&self, _: nc_messaging::DeviceMessage) -> nc_messaging::SinkFuture {
        Box::pin(async { Ok(nc_messaging::SinkOutcome::Committed { patient: None }) })
    }
}

/// Edge versus bare rumqttd, same clients and load.
/// The configuration for a service started in-process by a benchmark (every listener on
/// port 0, a signing key), and the keys that sign its tokens.
pub(crate) fn in_process(mut config: crate::Config) -> (crate::Config, nc_access::token::TokenKeys) {
    config.http.addr = "127.0.0.1:0".parse().expect("addr");
    config.mqtt.addr = "127.0.0.1:0".parse().expect("addr");
    config.mqtt.ws_addr = "127.0.0.1:0".parse().expect("addr");
    if config.auth.jwt_secret.is_empty() {
        config.auth.jwt_secret = crate::config::Secret::new(nc_access::secret::random_token());
    }
    let keys = nc_access::token::TokenKeys::new(config.auth.jwt_secret.expose().as_bytes(), 900);
    (config, keys)
}

pub async fn broker(config: crate::Config, devices: usize, rate: f64, seconds: f64) -> Result<String, String> {
    let e = |e: sqlx::Error| e.to_string();
    let pool = PgPool::connect(config.database.url.expose()).await.map_err(e)?;
    // A hospital, one doctor assigned to every device, devices with known secrets.
    let (h, doctor) = (insert_hospital(&pool, "Bench").await.map_err(e)?, Uuid::now_v7());
    let mut tx = pool.begin().await.map_err(e)?;
    let hash = nc_access::password::hash("Bench-password-1".into()).await.map_err(|e| e.to_string())?;
    sqlx::query("INSERT INTO users (id, hospital_id, email, password_hash, role, name, is_active, verified_at) VALUES ($1, $2, $3, $4, 'doctor', 'Bench doctor', true, now())")
        .bind(doctor).bind(h).bind(format!("bench-{}@bench.test", doctor.simple())).bind(&hash).execute(&mut *tx).await.map_err(e)?;
    let mut ids = Vec::new();
    for i in 0..devices {
        let d = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO devices (id, hospital_id, serial, name, secret_hash) VALUES ($1, $2, $3, 'Bench', $4)",
        )
        .bind(d)
        .bind(h)
        .bind(format!("B-{i}"))
        .bind(nc_access::secret::hash_device_secret("bench-secret"))
        .execute(&mut *tx)
        .await
        .map_err(e)?;
        sqlx::query("INSERT INTO device_assignments (id, hospital_id, device_id, user_id, role) VALUES (gen_random_uuid(), $1, $2, $3, 'doctor')")
            .bind(h).bind(d).bind(doctor).execute(&mut *tx).await.map_err(e)?;
        ids.push(d);
    }
    let family = Uuid::now_v7();
    sqlx::query("INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) VALUES (gen_random_uuid(), $1, $2, $3, now() + interval '1 day')")
        .bind(doctor).bind(family).bind(nc_access::secret::digest(&Uuid::now_v7().to_string())).execute(&mut *tx).await.map_err(e)?;
    tx.commit().await.map_err(e)?;

    let (config, keys) = in_process(config);
    let token = keys.issue(
        nc_domain::UserId(doctor),
        nc_domain::Role::Doctor,
        nc_domain::HospitalId(h),
        nc_domain::TokenFamilyId(family),
    );
    let app = crate::App::new(config).with_sink(Arc::new(NoStorage)).start().await.map_err(|e| e.to_string())?;
    let topics: Vec<String> = ids.iter().map(|d| format!("nc/v1/h/{h}/d/{d}/telemetry")).collect();
    let device_logins: Vec<(String, String, String)> =
        ids.iter().map(|d| (d.to_string(), d.to_string(), "bench-secret".to_owned())).collect();
    let user = doctor.to_string();
    let edge_sub = move |i: usize| (format!("{user}-s{i}"), user.clone(), token.clone());
    let edge = fanout("127.0.0.1", app.mqtt_addr.port(), &device_logins, &edge_sub, &topics, rate, seconds).await?;
    app.stop().await.map_err(|e| e.to_string())?;

    // The same clients on a bare embedded rumqttd (no edge: no authentication or ACL).
    let core = nc_broker::core::start(devices * 2 + 16, 1024 * 1024).await.map_err(|e| e.to_string())?;
    let _keep =
        nc_broker::ServicePublisher::start(&core, &nc_messaging::Bus::single()).await.map_err(|e| e.to_string())?;
    let cred = core.credential.clone();
    let bare_logins: Vec<(String, String, String)> =
        ids.iter().map(|d| (format!("p{d}"), nc_broker::core::INTERNAL_USER.to_owned(), cred.clone())).collect();
    let bare_sub = move |i: usize| (format!("s{i}"), nc_broker::core::INTERNAL_USER.to_owned(), cred.clone());
    let bare = fanout("127.0.0.1", core.addr().port, &bare_logins, &bare_sub, &topics, rate, seconds).await?;

    let line = |name: &str, r: &FanoutResult| {
        format!(
            "  {name:<14} {:>8.0} msg/s delivered ({}/{} = {:.2}%), p50 {:.2} ms, p99 {:.2} ms",
            r.delivered as f64 / r.seconds,
            r.delivered,
            r.expected,
            r.delivered as f64 * 100.0 / r.expected.max(1) as f64,
            r.p50,
            r.p99
        )
    };
    Ok(format!(
        "bench broker: {devices} devices -> {devices} subscribers, {rate} msg/s offered for {seconds} s, QoS 1\n{}\n{}\n  edge / bare p99: {:.2}x",
        line("edge", &edge),
        line("bare rumqttd", &bare),
        edge.p99 / bare.p99.max(0.001)
    ))
}
