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
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::demo::demo_device_secret;

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
    pub mqtt_host: String,
    pub mqtt_port: u16,
    /// Probability per device per simulated minute of an abnormal episode.
    pub episode_rate: f64,
    /// Seconds between progress lines (0: none until the end).
    pub progress_every: u64,
    /// Abrupt disconnects enabled.
    pub disconnects: bool,
    /// Episodes on demand from standard input (see the module documentation).
    pub commands: bool,
}

/// A simulated machine: its credentials and patient.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub id: DeviceId,
    pub hospital: HospitalId,
    pub serial: String,
    pub secret: String,
    pub patient: PatientId,
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
            None => patients::ActiveModel {
                id: Set(PatientId::new()),
                hospital_id: Set(hospital.id),
                user_id: Set(None),
                patient_number: Set(format!("P-{serial}")),
                name: Set(format!("Simulated patient {serial}")),
                date_of_birth: Set(None),
                gender: Set(Gender::Unknown),
                blood_group: Set(None),
                assigned_doctor_id: Set(staff.iter().find(|u| u.role == Role::Doctor).map(|u| u.id)),
                assigned_device_id: Set(Some(device.id)),
                dialysis_schedule: Set(serde_json::json!({})),
                last_dialysis_at: Set(None),
                dry_weight_kg: Set(Some(70.0)),
                diagnosis: Set(None),
                vascular_access: Set(None),
                allergies: Set(None),
                medications: Set(None),
                notes: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(db)
            .await
            .map_err(|e| e.to_string())?,
        };
        out.push(SimDevice {
            id: device.id,
            hospital: hospital.id,
            secret: demo_device_secret(&serial),
            serial,
            patient: patient.id,
        });
    }
    Ok(out)
}

/// Small deterministic PRNG (xorshift): the simulator needs noise, not cryptography, and a
/// seed per device keeps runs reproducible.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal, mean 0, sd 1.
    fn gauss(&mut self) -> f64 {
        (0..6).map(|_| self.next()).sum::<f64>() - 3.0
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Episode {
    None,
    Hypotension,
    HighVenous,
    ConductivityFault,
    Disconnect,
}

/// Episodes asked for on standard input: machine serial → (episode, treatment minutes).
type Forced = Arc<Mutex<std::collections::HashMap<String, (Episode, f64)>>>;

/// Parses `episode SERIAL KIND [MINUTES]`.
fn parse_command(line: &str) -> Result<(String, Episode, f64), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [verb, serial, kind, rest @ ..] = words.as_slice() else {
        return Err("expected: episode SERIAL hypotension|high-venous|conductivity|disconnect [MINUTES]".into());
    };
    if *verb != "episode" || rest.len() > 1 {
        return Err(format!("unknown command '{line}'"));
    }
    let episode = match *kind {
        "hypotension" => Episode::Hypotension,
        "high-venous" => Episode::HighVenous,
        "conductivity" => Episode::ConductivityFault,
        "disconnect" => Episode::Disconnect,
        other => return Err(format!("unknown episode '{other}'")),
    };
    let minutes = match rest.first() {
        Some(m) => m.parse::<f64>().ok().filter(|m| *m > 0.0 && *m <= 600.0).ok_or(format!("bad minutes '{m}'"))?,
        None => 8.0,
    };
    Ok(((*serial).to_owned(), episode, minutes))
}

/// Reads commands from standard input until it closes (a thread: stdin blocks).
fn read_commands(forced: Forced) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match parse_command(&line) {
                Ok((serial, episode, minutes)) => {
                    println!("simulate: {episode:?} on {serial} for {minutes} min of treatment");
                    forced.lock().expect("forced").insert(serial, (episode, minutes));
                }
                Err(e) => eprintln!("simulate: {e}"),
            }
        }
    });
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

async fn machine(
    index: usize,
    d: SimDevice,
    o: SimulateOptions,
    stats: Arc<Stats>,
    stop: tokio_util::sync::CancellationToken,
    forced: Forced,
) {
    let mut options = MqttOptions::new(d.id.to_string(), o.mqtt_host.clone(), o.mqtt_port);
    options.set_credentials(d.id.to_string(), d.secret.clone());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(false);
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let topic = |channel: &str| format!("nc/v1/h/{}/d/{}/{channel}", d.hospital, d.id);
    let (telemetry, session) = (topic("telemetry"), topic("session"));

    // The event loop: connections, acknowledgements and their latency.
    let pending: Arc<Mutex<std::collections::HashMap<u16, Instant>>> = Default::default();
    let loop_stats = stats.clone();
    let loop_pending = pending.clone();
    let loop_stop = stop.clone();
    let events = tokio::spawn(async move {
        let mut connected = false;
        loop {
            let event = tokio::select! {
                _ = loop_stop.cancelled() => break,
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
                }
                Ok(_) => {}
                Err(_) => {
                    if connected {
                        loop_stats.connected.fetch_sub(1, Ordering::Relaxed);
                        loop_stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    connected = false;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        // Flush: keep polling briefly so queued publishes are acknowledged.
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && !loop_pending.lock().expect("pending").is_empty() {
            match tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                    loop_stats.acked.fetch_add(1, Ordering::Relaxed);
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
    // Stagger the fleet over one interval.
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(interval.mul_f64(index as f64 / (o.devices.max(1) as f64))) => {}
    }
    'sessions: loop {
        let start = serde_json::json!({"v": 1, "event": "start", "ts": Utc::now(), "patientId": d.patient, "expectedIntervalMs": interval.as_millis() as i64});
        if client.publish(&session, QoS::AtLeastOnce, false, start.to_string()).await.is_err() {
            break;
        }
        let began = Instant::now();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut episode, mut episode_until) = (Episode::None, Instant::now());
        let (base_hr, base_sbp) = (72.0 + noise.gauss() * 6.0, 135.0 + noise.gauss() * 10.0);
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
                None if episode == Episode::None && noise.next() < p => Some((
                    match (noise.next() * 4.0) as u32 {
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
                episode_until = Instant::now() + sim_minute.mul_f64(minutes);
                if episode == Episode::Disconnect {
                    // A lost connection: the client reconnects and resends what was not acknowledged.
                    let _ = client.disconnect().await;
                    episode = Episode::None;
                }
            }
            let mut sbp = base_sbp - 15.0 * progress + noise.gauss() * 4.0;
            let mut hr = base_hr + 4.0 * progress + noise.gauss() * 2.0;
            let mut venous = 160.0 + noise.gauss() * 12.0;
            let mut conductivity = 13.8 + noise.gauss() * 0.05;
            let mut status = "normal";
            match episode {
                Episode::Hypotension => {
                    sbp = 82.0 + noise.gauss() * 3.0;
                    hr += 18.0;
                }
                Episode::HighVenous => {
                    venous = 430.0 + noise.gauss() * 10.0;
                    status = "warning";
                }
                Episode::ConductivityFault => {
                    conductivity = 16.6 + noise.gauss() * 0.1;
                    status = "danger";
                }
                Episode::None | Episode::Disconnect => {}
            }
            sbp = sbp.clamp(60.0, 220.0);
            hr = hr.clamp(35.0, 180.0);
            let treated_hours = progress * 4.0;
            seq += 1;
            let reading = serde_json::json!({
                "v": 1, "seq": seq, "ts": Utc::now(), "patientId": d.patient,
                "heartRate": (hr * 10.0).round() / 10.0,
                "temperature": ((98.2 + noise.gauss() * 0.3) * 10.0).round() / 10.0,
                "bloodPressure": sbp.round(),
                "diastolicPressure": (sbp * 0.6).round(),
                "oxygenSaturation": (97.0 + noise.gauss() * 0.8).clamp(85.0, 100.0).round(),
                "flowRate": (400.0 + noise.gauss() * 8.0).round(),
                "totalVolume": ((400.0 * 60.0 * treated_hours / 1000.0) * 100.0).round() / 100.0,
                "systemStatus": status,
                "dialysateFlowRate": 500.0,
                "arterialPressure": (-150.0 + noise.gauss() * 10.0).round(),
                "venousPressure": venous.round(),
                "transmembranePressure": (80.0 + noise.gauss() * 8.0).round(),
                "conductivity": (conductivity * 100.0).round() / 100.0,
                "dialysateTemperature": ((36.8 + noise.gauss() * 0.1) * 10.0).round() / 10.0,
                "ufRate": 600.0,
                "ufVolume": (600.0 * treated_hours).round(),
                "ufGoal": 2400.0,
            });
            if client.publish(&telemetry, QoS::AtLeastOnce, false, reading.to_string()).await.is_err() {
                break 'sessions;
            }
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        let end = serde_json::json!({"v": 1, "event": "end", "ts": Utc::now()});
        let _ = client.publish(&session, QoS::AtLeastOnce, false, end.to_string()).await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(sim_minute * 10) => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(6), events).await;
    let _ = client.disconnect().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_a_machine_an_episode_and_its_length() {
        assert_eq!(parse_command("episode DM-002 hypotension"), Ok(("DM-002".into(), Episode::Hypotension, 8.0)));
        assert_eq!(
            parse_command(" episode SIM-0001 conductivity 2.5 "),
            Ok(("SIM-0001".into(), Episode::ConductivityFault, 2.5))
        );
        assert_eq!(parse_command("episode DM-001 disconnect 1").map(|c| c.1), Ok(Episode::Disconnect));
        for bad in [
            "episode DM-001",
            "episode DM-001 flood",
            "episode DM-001 hypotension -1",
            "stop DM-001 hypotension",
            "episode DM-001 hypotension 1 2",
        ] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }
}
