//! `nephrocare bench alarms`: the labelled corpus ([`crate::tools::corpus`]) replayed through the
//! real service (in-process, real MQTT clients, real database), scored against its ground
//! truth and against a naive threshold check, in one line:
//!
//! `alarms: sensitivity S/T, false alarms F, alarms per treatment hour A (naive N), reduction R %, raise latency beyond delay p50 X ms p99 Y ms`
//!
//! - The replay is compressed: each machine sends its treatment's readings (one per second
//!   of treatment, with their own timestamps in the past) at `rate` readings per second.
//!   The alert engine follows reading time, so delays and hysteresis act exactly as in real
//!   time; the connection rules follow the wall clock, so the offline delay and the
//!   flapping window are scaled by the same factor, and a link drop of n seconds is a real
//!   abrupt disconnect of n / rate seconds.
//! - Sensitivity: a true episode counts if an alarm of its condition is raised on its
//!   machine between its onset and its onset plus the condition's clinical delay plus 1 s
//!   (reading time).
//! - False alarms: alarms that no true episode explains (its conditions, from its onset to
//!   a minute after its end).
//! - Naive: every crossing of a limit, every change of the machine's status to warning or
//!   danger, every link drop.
//! - Latency: from publishing the reading whose time completes the delay (the alert's
//!   `raisedAt`) to the `raised` notification at a doctor's MQTT client subscribed to their
//!   notifications; and, the same way, to the hospital's alert manager's receipt of the
//!   alarm's first PCD-04 (an in-process MLLP acceptor answering `AA`, set as the hospital's
//!   alert manager): a second line, `alert manager: … p50 X ms p99 Y ms`.
//! - The channels outside MQTT ([`super::alarm_channels`]): halfway through the replay, under
//!   its load, PCD-05 "accepted on a pager" → acknowledged for up to 100 open alarms; after
//!   it, the outbox's queued → accepted per channel (e-mail when
//!   `NEPHROCARE_SMTP_URL` is set: bench/run.sh starts a real SMTP server, and the doctor
//!   gets every alarm by mail too).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use sqlx::PgPool;
use uuid::Uuid;

use super::alarm_channels::{accepted_on_pagers, alert_manager, outbox_latency};
use crate::bootstrap::DEFAULT_THRESHOLDS;
use crate::tools::corpus::{self, ArtifactKind, Limit, Sample, Treatment, Truth};

pub struct AlarmsBench {
    pub treatments: usize,
    /// Readings per second each machine sends (the compression factor).
    pub rate: f64,
    /// Where the corpus is (written there if absent).
    pub corpus: PathBuf,
    pub seed: u64,
}

const SECRET: &str = "bench-alarms-device-secret-0123456789";

/// The hospital's limits, as the scorer and the naive check see them.
fn limits() -> Vec<(&'static str, Limit)> {
    DEFAULT_THRESHOLDS
        .iter()
        .map(|t| {
            let code = |side: &str| -> &'static str { Box::leak(format!("{}_{side}", t.metric).into_boxed_str()) };
            (
                t.metric,
                Limit {
                    code_low: code("low"),
                    code_high: code("high"),
                    low: t.low,
                    high: t.high,
                    delay_seconds: t.delay_seconds,
                },
            )
        })
        .collect()
}

fn delay_of(code: &str, limits: &[(&str, Limit)]) -> i64 {
    limits
        .iter()
        .find(|(_, l)| l.code_low == code || l.code_high == code)
        .map_or(0, |(_, l)| i64::from(l.delay_seconds))
}

struct Machine {
    device: Uuid,
    patient: Uuid,
    /// The timestamp of the treatment's second 0.
    base: DateTime<Utc>,
}

async fn seed(pool: &PgPool, truth: &Truth) -> Result<(Uuid, Uuid, Vec<Machine>), sqlx::Error> {
    let (h, doctor) = (crate::tools::bench::insert_hospital(pool, "Bench alarms").await?, Uuid::now_v7());
    let mut tx = pool.begin().await?;
    for t in DEFAULT_THRESHOLDS {
        sqlx::query(
            "INSERT INTO alert_thresholds (id, hospital_id, metric, low, high, priority, delay_seconds, hysteresis)
             VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(h)
        .bind(t.metric)
        .bind(t.low)
        .bind(t.high)
        .bind(t.priority.as_str())
        .bind(t.delay_seconds)
        .bind(t.hysteresis)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO users (id, hospital_id, email, password_hash, role, name, ward, is_active, verified_at)
         VALUES ($1, $2, $3, 'x', 'doctor', 'Bench doctor', 'Bench', true, now())",
    )
    .bind(doctor)
    .bind(h)
    .bind(format!("doctor-{}@bench.test", doctor.simple()))
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) VALUES (gen_random_uuid(), $1, $1, $2, now() + interval '1 day')")
        .bind(doctor)
        .bind(nc_access::secret::digest(&Uuid::now_v7().to_string()))
        .execute(&mut *tx)
        .await?;
    let hash = nc_access::secret::hash_device_secret(SECRET);
    let mut machines = Vec::new();
    // Whole seconds: the database keeps microseconds, and the scorer compares exactly.
    let now = chrono::DurationRound::duration_trunc(Utc::now(), chrono::Duration::seconds(1)).expect("whole seconds");
    for t in &truth.treatments {
        let (device, patient) = (Uuid::now_v7(), Uuid::now_v7());
        sqlx::query("INSERT INTO devices (id, hospital_id, serial, name, ward, secret_hash) VALUES ($1, $2, $3, 'Bench', 'Bench', $4)")
            .bind(device)
            .bind(h)
            .bind(format!("ALARM-{:04}", t.index))
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO device_assignments (id, hospital_id, device_id, user_id, role) VALUES (gen_random_uuid(), $1, $2, $3, 'doctor')")
            .bind(h)
            .bind(device)
            .bind(doctor)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO patients (id, hospital_id, patient_number, name, assigned_device_id, assigned_doctor_id) VALUES ($1, $2, $3, 'Bench', $4, $5)")
            .bind(patient)
            .bind(h)
            .bind(format!("A-{:04}", t.index))
            .bind(device)
            .bind(doctor)
            .execute(&mut *tx)
            .await?;
        // The treatment ends a minute ago (readings are never ahead of the clock).
        let base = now - chrono::Duration::seconds(i64::from(t.seconds) + 60);
        machines.push(Machine { device, patient, base });
    }
    tx.commit().await?;
    Ok((h, doctor, machines))
}

/// `raised` notifications as they arrived: (device, raisedAt, when).
type Received = Arc<Mutex<Vec<(Uuid, DateTime<Utc>, Instant, String)>>>;

/// When each reading was published: per machine, by second of treatment.
type Published = Arc<Vec<Mutex<Vec<Option<Instant>>>>>;

fn connect(m: &Machine, addr: std::net::SocketAddr) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut o = MqttOptions::new(m.device.to_string(), addr.ip().to_string(), addr.port());
    o.set_credentials(m.device.to_string(), SECRET);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(false);
    o.set_inflight(200);
    let (client, mut events) = AsyncClient::new(o, 1024);
    let task = tokio::spawn(async move {
        loop {
            match events.poll().await {
                // Said goodbye: polling on would connect again (and the abort that follows
                // would then be an abrupt loss, a real `device_offline`).
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (client, task)
}

/// One machine's replay.
struct Replay {
    i: usize,
    plan: Treatment,
    samples: Vec<Sample>,
    m: Machine,
    hospital: Uuid,
    addr: std::net::SocketAddr,
    rate: f64,
    published: Published,
}

async fn replay(r: Replay) {
    let Replay { i, plan, samples, m, hospital, addr, rate, published } = r;
    let topic = |c: &str| format!("nc/v1/h/{hospital}/d/{}/{c}", m.device);
    let (telemetry, session) = (topic("telemetry"), topic("session"));
    let ts = |t: u32| m.base + chrono::Duration::seconds(i64::from(t));
    let (mut client, mut task) = connect(&m, addr);
    let start =
        serde_json::json!({"v": 1, "event": "start", "ts": ts(0), "patientId": m.patient, "expectedIntervalMs": 1000});
    let _ = client.publish(&session, QoS::AtLeastOnce, false, start.to_string()).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0u32;
    for s in samples {
        // A gap is a link drop: an abrupt disconnect for its (compressed) length.
        if s.t > next && plan.artifacts.iter().any(|a| a.kind == ArtifactKind::LinkDrop && a.start == next) {
            task.abort();
            let _ = (&mut task).await;
            tokio::time::sleep(Duration::from_secs_f64(f64::from(s.t - next) / rate)).await;
            (client, task) = connect(&m, addr);
        }
        next = s.t + 1;
        tick.tick().await;
        let body = serde_json::json!({
            "v": 1, "seq": i64::from(s.t) + 1, "ts": ts(s.t), "patientId": m.patient, "systemStatus": s.status,
            "bloodPressure": s.sbp, "diastolicPressure": (s.sbp * 0.6).round(), "heartRate": s.hr,
            "venousPressure": s.venous, "arterialPressure": s.arterial, "conductivity": s.conductivity,
            "flowRate": 400, "dialysateFlowRate": 500,
        });
        published[i].lock().expect("published")[s.t as usize] = Some(Instant::now());
        let _ = client.publish(&telemetry, QoS::AtLeastOnce, false, body.to_string()).await;
    }
    let end = serde_json::json!({"v": 1, "event": "end", "ts": ts(plan.seconds)});
    let _ = client.publish(&session, QoS::AtLeastOnce, false, end.to_string()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = client.disconnect().await;
    // The DISCONNECT written (the poller returns), or given up after a while.
    if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
        task.abort();
    }
}

pub async fn alarms(config: crate::Config, o: AlarmsBench) -> Result<String, String> {
    let e = |e: sqlx::Error| e.to_string();
    let truth: Truth = match std::fs::read(o.corpus.join("truth.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string())?,
        Err(_) => corpus::write(&o.corpus, o.treatments, o.seed).map_err(|e| e.to_string())?,
    };
    if truth.treatments.len() != o.treatments || truth.seed != o.seed {
        return Err(format!(
            "{} holds a corpus of {} treatments (seed {}); remove it or ask for that",
            o.corpus.display(),
            truth.treatments.len(),
            truth.seed
        ));
    }
    let pool = PgPool::connect(config.database.url.expose()).await.map_err(e)?;
    let (hospital, doctor, machines) = seed(&pool, &truth).await.map_err(e)?;
    let (mut config, keys) = crate::tools::bench::in_process(config);
    // The wall-clock rules, compressed like the replay.
    let defaults = crate::config::AlarmsConfig::default();
    config.alarms.offline_delay_secs = defaults.offline_delay_secs / o.rate;
    config.alarms.flapping_window_secs = defaults.flapping_window_secs / o.rate;
    config.alarms.acm_listen_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let email = config.email.smtp_url.is_some();
    let app = crate::App::new(config).start().await.map_err(|e| e.to_string())?;
    let (manager, reports) = alert_manager(hospital, &pool).await?;
    if email {
        // The doctor chose e-mail too: every alarm of theirs is also mailed (the SMTP server
        // of bench/run.sh).
        sqlx::query("UPDATE users SET alarm_email = true WHERE id = $1")
            .bind(doctor)
            .execute(&pool)
            .await
            .map_err(e)?;
    }

    // The doctor, listening to their notifications.
    let token = keys.issue(
        nc_domain::UserId(doctor),
        nc_domain::Role::Doctor,
        nc_domain::HospitalId(hospital),
        nc_domain::TokenFamilyId(doctor),
    );
    let mut opts = MqttOptions::new(format!("{doctor}-bench"), "127.0.0.1", app.mqtt_addr.port());
    opts.set_credentials(doctor.to_string(), token);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (listener, mut events) = AsyncClient::new(opts, 1024);
    listener
        .subscribe(format!("nc/v1/h/{hospital}/u/{doctor}/notifications"), QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let received: Received = Arc::default();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let notes = {
        let received = received.clone();
        tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                        if v["event"] == "raised" {
                            let (Some(d), Some(r), Some(id)) = (
                                v["alert"]["deviceId"].as_str(),
                                v["alert"]["raisedAt"].as_str(),
                                v["alert"]["id"].as_str(),
                            ) else {
                                continue;
                            };
                            if let (Ok(d), Ok(r)) = (d.parse(), DateTime::parse_from_rfc3339(r)) {
                                received.lock().expect("received").push((d, r.with_timezone(&Utc), at, id.to_owned()));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(10), subscribed).await.map_err(|_| "no SUBACK".to_owned())?.ok();

    // Halfway through the replay, under its load, the doctor's pager accepts up to 100 open
    // alarms (PCD-05): each acknowledges its alarm.
    let half = truth.treatments.iter().map(|t| f64::from(t.seconds)).fold(0.0, f64::max) / o.rate / 2.0;
    let pagers = {
        let (pool, status) = (pool.clone(), app.acm_addr.ok_or("no status listener")?);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(half)).await;
            accepted_on_pagers(&pool, status, hospital, doctor, 100).await
        })
    };
    let started = Instant::now();
    let published: Published =
        Arc::new(truth.treatments.iter().map(|t| Mutex::new(vec![None; t.seconds as usize + 1])).collect());
    let mut tasks = tokio::task::JoinSet::new();
    let mut bases = HashMap::new();
    for (i, (plan, m)) in truth.treatments.iter().cloned().zip(machines).enumerate() {
        bases.insert(m.device, (i, m.base));
        let samples = corpus::read_samples(&o.corpus, plan.index).map_err(|e| e.to_string())?;
        let r =
            Replay { i, plan, samples, m, hospital, addr: app.mqtt_addr, rate: o.rate, published: published.clone() };
        tasks.spawn(replay(r));
    }
    while tasks.join_next().await.is_some() {}
    let replay_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    notes.abort();

    // Score.
    let alerts: Vec<(Uuid, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT device_id, code, raised_at FROM alerts WHERE hospital_id = $1")
            .bind(hospital)
            .fetch_all(&pool)
            .await
            .map_err(e)?;
    let limits = limits();
    let (mut found, mut episodes) = (0, 0);
    let mut explained = vec![false; alerts.len()];
    let mut naive = 0;
    let mut hours = 0.0;
    let mut missed = Vec::new();
    for (plan, (device, (_, base))) in truth.treatments.iter().zip({
        let mut v: Vec<_> = bases.iter().collect();
        v.sort_by_key(|(_, (i, _))| *i);
        v
    }) {
        let at = |t: u32| *base + chrono::Duration::seconds(i64::from(t));
        hours += f64::from(plan.seconds) / 3600.0;
        naive += corpus::naive_alarms(
            plan,
            &corpus::read_samples(&o.corpus, plan.index).map_err(|e| e.to_string())?,
            &limits,
        );
        for ep in &plan.episodes {
            episodes += 1;
            let (required, others) = ep.kind.codes();
            let (onset, end) = (at(ep.start), at(ep.end) + chrono::Duration::seconds(60));
            let deadline = onset + chrono::Duration::seconds(delay_of(required, &limits) + 1);
            if alerts.iter().any(|(d, c, r)| d == device && c == required && *r >= onset && *r <= deadline) {
                found += 1;
            } else {
                missed.push(format!("{:?} on {} at {}", ep.kind, plan.index, ep.start));
            }
            for (k, (d, c, r)) in alerts.iter().enumerate() {
                if d == device && (c == required || others.contains(&c.as_str())) && *r >= onset && *r <= end {
                    explained[k] = true;
                }
            }
        }
    }
    let false_alarms = explained.iter().filter(|x| !**x).count();
    let per_hour = alerts.len() as f64 / hours;
    let naive_per_hour = naive as f64 / hours;
    let mut latencies: Vec<u64> = Vec::new();
    let mut slowest: Vec<(u64, String)> = Vec::new();
    for (device, raised, got, id) in received.lock().expect("received").iter() {
        let Some((i, base)) = bases.get(device) else { continue };
        let t = (*raised - *base).num_seconds();
        if let Some(Some(sent)) =
            usize::try_from(t).ok().and_then(|t| published[*i].lock().expect("published").get(t).copied())
        {
            let us = got.saturating_duration_since(sent).as_micros() as u64;
            latencies.push(us);
            slowest.push((us, id.clone()));
        }
    }
    slowest.sort_by_key(|b| std::cmp::Reverse(b.0));
    slowest.truncate(8);
    // The alert manager's receipts, the same way: from the completing reading's publish.
    let raised: HashMap<Uuid, (Uuid, DateTime<Utc>)> = sqlx::query_as::<_, (Uuid, Uuid, DateTime<Utc>)>(
        "SELECT id, device_id, raised_at FROM alerts WHERE hospital_id = $1",
    )
    .bind(hospital)
    .fetch_all(&pool)
    .await
    .map_err(e)?
    .into_iter()
    .map(|(id, d, r)| (id, (d, r)))
    .collect();
    let mut to_manager: Vec<u64> = Vec::new();
    for (alert, got) in reports.lock().expect("reports").iter() {
        let Some((device, raised)) = raised.get(alert) else { continue };
        let Some((i, base)) = bases.get(device) else { continue };
        let t = (*raised - *base).num_seconds();
        if let Some(Some(sent)) =
            usize::try_from(t).ok().and_then(|t| published[*i].lock().expect("published").get(t).copied())
        {
            to_manager.push(got.saturating_duration_since(sent).as_micros() as u64);
        }
    }
    let (pagers, not_taken) = pagers.await.map_err(|e| e.to_string())??;
    // What is still queued goes out before the figures are read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outbox = outbox_latency(&pool).await?;
    manager.abort();
    let unexplained: Vec<String> =
        alerts.iter().zip(&explained).filter(|(_, x)| !**x).take(10).map(|((_, c, _), _)| c.clone()).collect();
    app.stop().await.map_err(|e| e.to_string())?;
    let mut out = format!(
        "alarms: sensitivity {found}/{episodes}, false alarms {false_alarms}, alarms per treatment hour {per_hour:.2} (naive {naive_per_hour:.2}), reduction {:.1} %, raise latency beyond delay p50 {:.1} ms p99 {:.1} ms",
        100.0 * (1.0 - per_hour / naive_per_hour),
        crate::tools::bench::pct(latencies.clone(), 0.5),
        crate::tools::bench::pct(latencies.clone(), 0.99),
    );
    out.push_str(&format!(
        "\n  corpus: {} treatments, {hours:.0} treatment hours, {episodes} true episodes, {} alarms raised, {naive} naive; replayed in {replay_secs:.0} s at {} readings/s per machine; {} latencies measured",
        truth.treatments.len(),
        alerts.len(),
        o.rate,
        latencies.len()
    ));
    out.push_str(&format!(
        "\nalert manager: {} of {} alarms reported, first PCD-04 received (ACK AA) beyond delay p50 {:.1} ms p99 {:.1} ms",
        to_manager.len(),
        alerts.len(),
        crate::tools::bench::pct(to_manager.clone(), 0.5),
        crate::tools::bench::pct(to_manager, 0.99),
    ));
    out.push_str(&format!(
        "\n  PCD-05 accepted on a pager halfway through the replay -> acknowledged (its AA after the commit): {} alarms, p50 {:.1} ms p99 {:.1} ms{}",
        pagers.len(),
        crate::tools::bench::pct(pagers.clone(), 0.5),
        crate::tools::bench::pct(pagers, 0.99),
        if not_taken > 0 { format!(", {not_taken} NOT taken") } else { String::new() }
    ));
    for (channel, n, p50, p99) in outbox {
        out.push_str(&format!("\noutbox {channel}: {n} sent, queued -> accepted p50 {p50:.1} ms p99 {p99:.1} ms"));
    }
    if !email {
        out.push_str("\n  (no e-mail: NEPHROCARE_SMTP_URL unset)");
    }
    out.push_str(&format!(
        "\n  slowest raises: {}",
        slowest.iter().map(|(us, id)| format!("{id} {:.0} ms", *us as f64 / 1e3)).collect::<Vec<_>>().join(", ")
    ));
    if !missed.is_empty() {
        out.push_str(&format!("\n  missed: {}", missed.join("; ")));
    }
    if !unexplained.is_empty() {
        out.push_str(&format!("\n  false alarms (first 10 codes): {}", unexplained.join(", ")));
    }
    Ok(out)
}
