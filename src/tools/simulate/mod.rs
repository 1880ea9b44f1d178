//! `nephrocare simulate`: a fleet of dialysis machines over MQTT (rumqttc), for the demo and
//! for load tests.
//!
//! Each simulated machine connects with its own device credentials, starts a treatment
//! session for its patient, and sends readings at the chosen rate, QoS 1, with a sequence
//! number. A session lasts about four hours of treatment, compressed by `--speed` (speed 60:
//! four minutes); readings carry real timestamps. Physiology drifts with noise, and
//! occasional episodes happen: intradialytic hypotension, high venous pressure, a dialysate
//! conductivity fault (the machine reports warning/danger), and abrupt disconnects, after
//! which the client reconnects and resends what was not acknowledged.
//!
//! The machines are the demo hospital's: the first four are its bays (DM-001..DM-004); more
//! are created as SIM-0001... with patients, assigned to the demo doctors and technicians.
//!
//! With `--commands`, standard input takes one command a line, for deterministic demos and
//! the browser tests: `episode SERIAL hypotension|high-venous|conductivity|disconnect
//! [MINUTES]` starts that episode on that machine at its next reading, lasting MINUTES of
//! treatment time (default 8).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use nc_domain::*;
use nc_entities::{device_assignments, devices, hospitals, patients, users};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};

use crate::tools::demo::demo_device_secret;

mod commands;
mod history;
mod physiology;

use commands::{read_commands, Forced};
use physiology::{Body, Episode, Noise};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub devices: usize,
    /// Readings per second per device.
    pub rate: f64,
    /// Stop after this long (None: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Treatment time compression: 60 means a 4 h session lasts 4 min.
    pub speed: f64,
    /// The hospital whose devices are used (and extended).
    pub hospital_code: String,
    /// The service's MQTT addresses (several nodes: tried in turn when a connection breaks).
    pub mqtt: Vec<std::net::SocketAddr>,
    /// Probability per device per simulated minute of an abnormal episode.
    pub episode_rate: f64,
    /// Seconds between progress lines (0: none until the end).
    pub progress_every: u64,
    /// Abrupt disconnects enabled.
    pub disconnects: bool,
    /// Episodes on demand from standard input (see the module documentation).
    pub commands: bool,
    /// Days of past treatments each machine sends before going live (see `history`).
    pub history_days: u32,
}

/// A simulated machine: its credentials and patient.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub id: DeviceId,
    pub hospital: HospitalId,
    pub serial: String,
    pub secret: String,
    pub patient: PatientId,
    /// It has treatments from before yesterday (no history is sent for it).
    pub has_history: bool,
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    connected: AtomicU64,
    reconnects: AtomicU64,
    /// publish → PUBACK latencies, microseconds.
    latencies: Mutex<Vec<u32>>,
}

/// Makes sure `count` devices with patients exist in the hospital and returns them.
pub async fn provision(db: &DatabaseConnection, hospital_code: &str, count: usize) -> Result<Vec<SimDevice>, String> {
    let hospital = hospitals::Entity::find()
        .filter(hospitals::Column::Code.eq(hospital_code))
        .one(db)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no hospital with code '{hospital_code}': run `nephrocare seed --demo` first"))?;
    let staff = users::Entity::find()
        .filter(users::Column::HospitalId.eq(hospital.id))
        .filter(users::Column::Role.is_in([Role::Doctor, Role::Technician]))
        .order_by_asc(users::Column::Email)
        .all(db)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(count);
    let now = Utc::now();
    for i in 0..count {
        let serial = if i < 4 { format!("DM-{:03}", i + 1) } else { format!("SIM-{:04}", i - 3) };
        let device = match devices::Entity::find()
            .filter(devices::Column::HospitalId.eq(hospital.id))
            .filter(devices::Column::Serial.eq(serial.clone()))
            .one(db)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(d) => d,
            None => {
                let d = devices::ActiveModel {
                    id: Set(DeviceId::new()),
                    hospital_id: Set(hospital.id),
                    serial: Set(serial.clone()),
                    name: Set(format!("Simulated machine {serial}")),
                    model: Set(Some("HD-5008 (simulated)".into())),
                    location: Set(Some("Simulation".into())),
                    ward: Set(Some("Dialysis unit".into())),
                    status: Set(DeviceStatus::Active),
                    online: Set(false),
                    last_seen: Set(None),
                    secret_hash: Set(nc_access::secret::hash_device_secret(&demo_device_secret(&serial))),
                    secret_rotated_at: Set(now),
                    maintenance_due_at: Set(None),
                    last_maintenance_at: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(db)
                .await
                .map_err(|e| e.to_string())?;
                for u in staff
                    .iter()
                    .filter(|u| u.role == Role::Doctor)
                    .take(1)
                    .chain(staff.iter().filter(|u| u.role == Role::Technician).take(1))
                {
                    let role = if u.role == Role::Doctor { AssignmentRole::Doctor } else { AssignmentRole::Technician };
                    device_assignments::ActiveModel {
                        id: Set(AssignmentId::new()),
                        hospital_id: Set(hospital.id),
                        device_id: Set(d.id),
                        user_id: Set(u.id),
                        role: Set(role),
                        assigned_by: Set(None),
                        assigned_at: Set(now),
                        ended_at: Set(None),
                        ended_by: Set(None),
                    }
                    .insert(db)
                    .await
                    .map_err(|e| e.to_string())?;
                }
                d
            }
        };
        let patient = match patients::Entity::find()
            .filter(patients::Column::AssignedDeviceId.eq(device.id))
            .one(db)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(p) => p,
            None => {
                let record = nc_care::patients::NewPatient {
                    patient_number: format!("P-{serial}"),
                    name: format!("Simulated patient {serial}"),
                    date_of_birth: None,
                    gender: None,
                    blood_group: None,
                    user_id: None,
                    assigned_doctor_id: staff.iter().find(|u| u.role == Role::Doctor).map(|u| u.id),
                    assigned_device_id: Some(device.id),
                    dry_weight_kg: Some(70.0),
                    dialysis_schedule: None,
                    diagnosis: None,
                    vascular_access: None,
                };
                nc_care::patients::insert(db, hospital.id, record).await.map_err(|e| e.to_string())?
            }
        };
        let earlier = nc_entities::device_sessions::Entity::find()
            .filter(nc_entities::device_sessions::Column::DeviceId.eq(device.id))
            .filter(nc_entities::device_sessions::Column::StartedAt.lt(now - chrono::Duration::days(1)))
            .count(db)
            .await
            .map_err(|e| e.to_string())?;
        out.push(SimDevice {
            id: device.id,
            hospital: hospital.id,
            secret: demo_device_secret(&serial),
            serial,
            patient: patient.id,
            has_history: earlier > 0,
        });
    }
    Ok(out)
}

/// Runs the fleet; returns the summary line.
pub async fn run(
    devices: Vec<SimDevice>,
    options: SimulateOptions,
    stop: tokio_util::sync::CancellationToken,
) -> String {
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let forced = Forced::default();
    if options.commands {
        read_commands(forced.clone());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, device) in devices.into_iter().enumerate() {
        let (stats, options, stop, forced) = (stats.clone(), options.clone(), stop.clone(), forced.clone());
        tasks.spawn(async move { machine(i, device, options, stats, stop, forced).await });
    }
    let reporter = {
        let (stats, stop, every) = (stats.clone(), stop.clone(), options.progress_every);
        tokio::spawn(async move {
            if every == 0 {
                return;
            }
            let mut last = (Instant::now(), 0u64);
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let acked = stats.acked.load(Ordering::Relaxed);
                        let rate = (acked - last.1) as f64 / last.0.elapsed().as_secs_f64();
                        last = (Instant::now(), acked);
                        let (p50, p99) = percentiles(&stats);
                        println!(
                            "simulate: {} connected, {} sent, {} acknowledged ({rate:.0}/s), publish->PUBACK p50 {p50:.1} ms p99 {p99:.1} ms, {} reconnects",
                            stats.connected.load(Ordering::Relaxed), stats.sent.load(Ordering::Relaxed), acked, stats.reconnects.load(Ordering::Relaxed)
                        );
                    }
                }
            }
        })
    };
    if let Some(d) = options.duration {
        tokio::select! {
            _ = tokio::time::sleep(d) => stop.cancel(),
            _ = stop.cancelled() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    reporter.abort();
    let secs = started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(&stats);
    let (sent, acked) = (stats.sent.load(Ordering::Relaxed), stats.acked.load(Ordering::Relaxed));
    format!(
        "simulate: done in {secs:.1} s: {sent} readings sent, {acked} acknowledged ({:.0}/s), publish->PUBACK p50 {p50:.2} ms p99 {p99:.2} ms, {} reconnects",
        acked as f64 / secs,
        stats.reconnects.load(Ordering::Relaxed)
    )
}

fn percentiles(stats: &Stats) -> (f64, f64) {
    let mut l = stats.latencies.lock().expect("latencies").clone();
    if l.is_empty() {
        return (0.0, 0.0);
    }
    l.sort_unstable();
    let at = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

/// A machine's MQTT client, counting the QoS 1 messages it has asked to send (its event loop
/// keeps polling at the end until as many were acknowledged, so a reading counted as sent
/// is never left in the client's queue).
pub(crate) struct Link {
    client: AsyncClient,
    published: Arc<AtomicU64>,
}

impl Link {
    pub(crate) async fn publish(&self, topic: &str, body: String) -> Result<(), rumqttc::ClientError> {
        self.client.publish(topic, QoS::AtLeastOnce, false, body).await?;
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn machine(
    index: usize,
    d: SimDevice,
    o: SimulateOptions,
    stats: Arc<Stats>,
    stop: tokio_util::sync::CancellationToken,
    forced: Forced,
) {
    let (id, secret) = (d.id.to_string(), d.secret.clone());
    let options_at = move |addr: std::net::SocketAddr| {
        let mut options = MqttOptions::new(id.clone(), addr.ip().to_string(), addr.port());
        options.set_credentials(id.clone(), secret.clone());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(false);
        options.set_inflight(100);
        options
    };
    // Machines start spread over the nodes; each moves on to the next when its link breaks.
    let addrs = o.mqtt.clone();
    let mut at = index % addrs.len().max(1);
    let (client, mut eventloop) = AsyncClient::new(options_at(addrs[at]), 256);
    let link = Link { client, published: Arc::default() };
    let topic = |channel: &str| format!("nc/v1/h/{}/d/{}/{channel}", d.hospital, d.id);
    let (telemetry, session) = (topic("telemetry"), topic("session"));

    // The event loop: connections, acknowledgements and their latency.
    let pending: Arc<Mutex<std::collections::HashMap<u16, Instant>>> = Default::default();
    let loop_stats = stats.clone();
    let loop_pending = pending.clone();
    let published = link.published.clone();
    // Cancelled when this machine has sent its last message (not on `stop`: what it sends
    // after `stop` is seen must still go out).
    let done = tokio_util::sync::CancellationToken::new();
    let loop_done = done.clone();
    let events = tokio::spawn(async move {
        let (mut connected, mut acked) = (false, 0_u64);
        loop {
            let event = tokio::select! {
                _ = loop_done.cancelled() => break,
                e = eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if !connected {
                        loop_stats.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    connected = true;
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    loop_pending.lock().expect("pending").insert(pkid, Instant::now());
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(at) = loop_pending.lock().expect("pending").remove(&ack.pkid) {
                        let mut l = loop_stats.latencies.lock().expect("latencies");
                        if l.len() < 5_000_000 {
                            l.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                    }
                    loop_stats.acked.fetch_add(1, Ordering::Relaxed);
                    acked += 1;
                }
                Ok(_) => {}
                Err(_) => {
                    if connected {
                        loop_stats.connected.fetch_sub(1, Ordering::Relaxed);
                        loop_stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    connected = false;
                    if addrs.len() > 1 {
                        // Unacknowledged publishes stay in the event loop: resent to the next node.
                        at = (at + 1) % addrs.len();
                        eventloop.mqtt_options = options_at(addrs[at]);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        // Flush: keep polling briefly until everything this machine asked to send (queued or
        // in flight) is acknowledged.
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && acked < published.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                    loop_stats.acked.fetch_add(1, Ordering::Relaxed);
                    acked += 1;
                }
                Ok(Ok(_)) => {}
                _ => break,
            }
        }
        if connected {
            loop_stats.connected.fetch_sub(1, Ordering::Relaxed);
        }
    });

    let mut noise = Noise(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let interval = Duration::from_secs_f64(1.0 / o.rate.max(0.001));
    let session_real = Duration::from_secs_f64(4.0 * 3600.0 / o.speed.max(1.0));
    let sim_minute = Duration::from_secs_f64(60.0 / o.speed.max(1.0));
    let mut seq: i64 = Utc::now().timestamp_millis() * 10 + index as i64 % 10;
    if o.history_days > 0 && !d.has_history {
        match history::send(&link, &d, index, o.history_days, &mut noise).await {
            Ok(n) => {
                stats.sent.fetch_add(n, Ordering::Relaxed);
                println!(
                    "simulate: {} sent {n} readings of past treatments ({} days)",
                    d.serial,
                    o.history_days.min(history::MAX_DAYS)
                );
            }
            Err(_) => {
                done.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(6), events).await;
                return;
            }
        }
    }
    // Stagger the fleet over one interval.
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(interval.mul_f64(index as f64 / (o.devices.max(1) as f64))) => {}
    }
    'sessions: loop {
        let start = serde_json::json!({"v": 1, "event": "start", "ts": Utc::now(), "patientId": d.patient, "expectedIntervalMs": interval.as_millis() as i64});
        if link.publish(&session, start.to_string()).await.is_err() {
            break;
        }
        let began = Instant::now();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut episode, mut episode_until) = (Episode::None, Instant::now());
        let body = Body::new(&mut noise);
        while began.elapsed() < session_real {
            tokio::select! {
                _ = stop.cancelled() => break 'sessions,
                _ = tick.tick() => {}
            }
            let progress = began.elapsed().as_secs_f64() / session_real.as_secs_f64();
            if episode != Episode::None && Instant::now() > episode_until {
                episode = Episode::None;
            }
            // Episodes start at `episode_rate` per simulated minute, or when asked for.
            let p = o.episode_rate * interval.as_secs_f64() / sim_minute.as_secs_f64();
            let asked = forced.lock().expect("forced").remove(&d.serial);
            let next = match asked {
                Some((e, minutes)) => Some((e, minutes)),
                None if episode == Episode::None && noise.uniform() < p => Some((
                    match (noise.uniform() * 4.0) as u32 {
                        0 => Episode::Hypotension,
                        1 => Episode::HighVenous,
                        2 => Episode::ConductivityFault,
                        _ if o.disconnects => Episode::Disconnect,
                        _ => Episode::None,
                    },
                    8.0,
                )),
                None => None,
            };
            if let Some((e, minutes)) = next {
                episode = e;
                // A clinical episode runs in real time, whatever the compression of the
                // session: long enough to outlast the alarm delays (and, unanswered, to
                // escalate).
                episode_until = Instant::now() + sim_minute.mul_f64(minutes).max(Duration::from_secs(150));
                if episode == Episode::Disconnect {
                    // A lost connection: the client reconnects and resends what was not acknowledged.
                    let _ = link.client.disconnect().await;
                    episode = Episode::None;
                }
            }
            seq += 1;
            let reading = body.reading(&mut noise, progress, episode, seq, Utc::now(), d.patient);
            if link.publish(&telemetry, reading.to_string()).await.is_err() {
                break 'sessions;
            }
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        let end = serde_json::json!({"v": 1, "event": "end", "ts": Utc::now()});
        let _ = link.publish(&session, end.to_string()).await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(sim_minute * 10) => {}
        }
    }
    done.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), events).await;
    let _ = link.client.disconnect().await;
}
