//! `nephrocare bench hl7`: a device gateway (IHE PCD-01: HL7 v2 `ORU^R01` over MLLP) against
//! a running service's listener (`NEPHROCARE_HL7_LISTEN_ADDR`).
//!
//! A new hospital with `machines` machines (serials `HL7-0000`, …) and one gateway
//! registered for them (MSH-3/MSH-4 `GW-BENCH`/`WARD`, a fresh secret in MSH-8). Each message
//! is one reading: 15 observations of one machine at one instant (the five MDC codes of
//! docs/hl7.md and ten of our `99NCD` codes, in their units, inside the plausible ranges),
//! each OBX naming the machine in OBX-18 and the instant in OBX-14 (in milliseconds, growing
//! for each machine), a unique MSH-10 per message. The gateway holds `connections` MLLP
//! connections, machine k on connection k mod `connections`; a connection sends a message,
//! waits for its ACK, then sends the next (MLLP's rule).
//!
//! - Paced (`rate` > 0): every machine sends `rate` messages a second, at its own fixed
//!   times spread over the interval; the ACK latency is timed from the time a message was
//!   due, so a message that waits for its connection counts that wait.
//! - Saturation (`rate` = 0): each connection sends its next message as soon as the last
//!   one's ACK is back; the ACK latency is timed from sending.
//!
//! The first second's latencies are left out (warm-up). Every answer is counted by MSA-1
//! (the first refusal is printed); no `AA` at all is an error. Then the rows the hospital
//! has in `health_metrics` are counted: one per acknowledged message. The service's CPU is
//! measured around the command by bench/run.sh, which reads the OBX count from the output
//! (`(N OBX)`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nc_hl7::message::{format_dtm, Limits, Message};
use nc_hl7::mllp::MllpConnection;
use tokio::net::TcpStream;

use super::pct;

pub struct Hl7Bench {
    /// The service's MLLP listener for device gateways.
    pub addr: SocketAddr,
    pub machines: usize,
    /// Messages per machine per second; 0: back to back (saturation).
    pub rate: f64,
    pub seconds: f64,
    /// The gateway's MLLP connections (at most 64, the gateway's limit here).
    pub connections: usize,
}

const APP: &str = "GW-BENCH";
const FACILITY: &str = "WARD";
/// How long a connection waits for an ACK before it gives up on it and reconnects.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Latencies of messages sent (or due) in the first second are left out.
const WARM_UP: Duration = Duration::from_secs(1);

/// The observations of one reading: (OBX-3, OBX-6, typical value, swing around it).
const OBSERVATIONS: [(&str, &str, f64, f64); 15] = [
    ("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "266016^MDC_DIM_MMHG^MDC", 125.0, 8.0),
    ("150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "266016^MDC_DIM_MMHG^MDC", 78.0, 5.0),
    ("149546^MDC_PULS_RATE_NONINV^MDC", "264864^MDC_DIM_BEAT_PER_MIN^MDC", 72.0, 6.0),
    ("150456^MDC_PULS_OXIM_SAT_O2^MDC", "262688^MDC_DIM_PERCENT^MDC", 97.0, 1.5),
    ("150364^MDC_TEMP_BODY^MDC", "268192^MDC_DIM_DEGC^MDC", 36.8, 0.3),
    ("blood-flow-rate^Blood flow rate^99NCD", "mL/min^mL/min^UCUM", 350.0, 15.0),
    ("blood-volume-processed^Blood volume processed^99NCD", "L^L^UCUM", 40.0, 20.0),
    ("dialysate-flow-rate^Dialysate flow rate^99NCD", "mL/min^mL/min^UCUM", 500.0, 5.0),
    ("arterial-pressure^Arterial pressure^99NCD", "mm[Hg]^mm[Hg]^UCUM", -150.0, 10.0),
    ("venous-pressure^Venous pressure^99NCD", "mm[Hg]^mm[Hg]^UCUM", 140.0, 10.0),
    ("transmembrane-pressure^Transmembrane pressure^99NCD", "mm[Hg]^mm[Hg]^UCUM", 120.0, 15.0),
    ("dialysate-conductivity^Dialysate conductivity^99NCD", "mS/cm^mS/cm^UCUM", 14.0, 0.2),
    ("dialysate-temperature^Dialysate temperature^99NCD", "Cel^Cel^UCUM", 36.5, 0.2),
    ("uf-rate^Ultrafiltration rate^99NCD", "mL/h^mL/h^UCUM", 600.0, 50.0),
    ("uf-volume^Ultrafiltration volume^99NCD", "mL^mL^UCUM", 1200.0, 400.0),
];

/// One machine as its gateway sees it.
struct Machine {
    index: usize,
    serial: String,
    /// Messages sent so far (MSH-10 is `<prefix>-<index>-<n>`).
    sent: u64,
    /// The last OBX-14, in milliseconds since 1970.
    last_ms: i64,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// ACK latencies (µs) after the warm-up.
    latencies: Vec<u64>,
    sent: u64,
    aa: u64,
    ae: u64,
    ar: u64,
    /// Sent and never answered (timeout, connection lost): the connection was opened again.
    failed: u64,
    first_refusal: Option<String>,
    /// When the last answer came, since the start.
    last_answer: Duration,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.latencies.extend(o.latencies);
        self.sent += o.sent;
        self.aa += o.aa;
        self.ae += o.ae;
        self.ar += o.ar;
        self.failed += o.failed;
        self.first_refusal = self.first_refusal.take().or(o.first_refusal);
        self.last_answer = self.last_answer.max(o.last_answer);
    }
}

/// The ORU^R01 of machine `m`'s next reading, at `at`.
fn message(secret: &str, prefix: &str, m: &Machine, at: DateTime<Utc>) -> String {
    let control = format!("{prefix}-{}-{}", m.index, m.sent);
    let now = format_dtm(&Utc::now().fixed_offset());
    let when = format_dtm(&at.fixed_offset());
    let mut text = format!(
        "MSH|^~\\&|{APP}|{FACILITY}|NEPHROCARE|UNIT|{now}|{secret}|ORU^R01^ORU_R01|{control}|P|2.6|||NE|AL|||||\
         IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r\
         OBR|1|{control}^GW|{control}^GW|182777000^monitoring of patient^SCT|||{when}\r"
    );
    // Each machine wanders around the typical values, differently from the others.
    let phase = m.index as f64 * 0.7 + m.sent as f64 * 0.05;
    for (i, (code, units, typical, swing)) in OBSERVATIONS.iter().enumerate() {
        let n = i + 1;
        let value = typical + swing * (phase + i as f64).sin();
        text.push_str(&format!("OBX|{n}|NM|{code}|1.1.1.{n}|{value:.2}|{units}|||||R|||{when}||||{}\r", m.serial));
    }
    text
}

async fn connect(addr: SocketAddr) -> Result<MllpConnection<TcpStream>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(MllpConnection::new(stream, Limits::default()))
}

/// One connection's machines, paced or back to back, until `run_for` has passed.
async fn drive(
    addr: SocketAddr,
    secret: Arc<str>,
    prefix: &'static str,
    mut mine: Vec<Machine>,
    schedule: Option<(Duration, Duration)>,
    origin: Instant,
    run_for: Duration,
) -> Result<Tally, String> {
    let limits = Limits::default();
    let mut conn = connect(addr).await?;
    let mut t = Tally::default();
    tokio::time::sleep_until(origin.into()).await;
    'run: for cycle in 0u32.. {
        for m in &mut mine {
            // Paced: machine k's message of cycle c is due at c × interval + k × step.
            let due = match schedule {
                Some((interval, step)) => {
                    let offset = interval * cycle + step * m.index as u32;
                    if offset >= run_for {
                        break 'run;
                    }
                    let due = origin + offset;
                    tokio::time::sleep_until(due.into()).await;
                    due
                }
                None if origin.elapsed() >= run_for => break 'run,
                None => Instant::now(),
            };
            let now_ms = Utc::now().timestamp_millis();
            m.last_ms = now_ms.max(m.last_ms + 1);
            let at = DateTime::from_timestamp_millis(m.last_ms).unwrap_or_else(Utc::now);
            let text = message(&secret, prefix, m, at);
            m.sent += 1;
            let msg = Message::parse(&text, &limits).map_err(|e| format!("the bench's own message: {e:?}"))?;
            let sent = Instant::now();
            t.sent += 1;
            match conn.send_and_await_ack(&msg, ACK_TIMEOUT).await {
                Ok(ack) => {
                    let answered = Instant::now();
                    t.last_answer = answered.duration_since(origin);
                    match ack.get("MSA", 0, 1, 1) {
                        Some("AA") => t.aa += 1,
                        Some("AR") => t.ar += 1,
                        _ => t.ae += 1,
                    }
                    if ack.get("MSA", 0, 1, 1) != Some("AA") && t.first_refusal.is_none() {
                        t.first_refusal = Some(ack.encode().replace('\r', " | "));
                    }
                    let from = if schedule.is_some() { due } else { sent };
                    if from.duration_since(origin) >= WARM_UP {
                        t.latencies.push(answered.duration_since(from).as_micros() as u64);
                    }
                }
                Err(e) => {
                    t.failed += 1;
                    if t.first_refusal.is_none() {
                        t.first_refusal = Some(format!("no answer: {e}"));
                    }
                    conn = connect(addr).await?;
                }
            }
        }
    }
    Ok(t)
}

/// Creates the hospital, its machines and the gateway; returns the hospital, the serials and
/// the gateway's secret.
async fn seed(
    pool: &sqlx::PgPool,
    machines: usize,
    max_connections: usize,
) -> Result<(uuid::Uuid, Vec<String>, String), String> {
    let hospital = super::insert_hospital(pool, "Bench HL7").await.map_err(|e| e.to_string())?;
    let db = sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
    let mut serials = Vec::with_capacity(machines);
    for i in 0..machines {
        let serial = format!("HL7-{i:04}");
        let device = nc_care::devices::NewDevice {
            serial: serial.clone(),
            name: format!("Bench HL7 {i}"),
            model: None,
            location: None,
            ward: None,
            maintenance_due_at: None,
        };
        nc_care::devices::register_with_secret(
            &db,
            nc_domain::HospitalId(hospital),
            device,
            nc_access::secret::random_token(),
        )
        .await
        .map_err(|e| e.to_string())?;
        serials.push(serial);
    }
    let secret = nc_access::secret::random_token();
    sqlx::query(
        "INSERT INTO hl7_gateways (id, hospital_id, name, sending_application, sending_facility, secret_hash, max_connections)
         VALUES (gen_random_uuid(), $1, 'bench', $2, $3, $4, $5)",
    )
    .bind(hospital)
    .bind(APP)
    .bind(FACILITY)
    .bind(nc_access::secret::hash_device_secret(&secret))
    .bind(max_connections as i32)
    .execute(pool)
    .await
    .map_err(|e| e.to_string())?;
    Ok((hospital, serials, secret))
}

pub async fn run(url: &str, o: Hl7Bench) -> Result<String, String> {
    let pool = super::pool(url, 2).await.map_err(|e| e.to_string())?;
    let (hospital, serials, secret) = seed(&pool, o.machines, o.connections).await?;
    let secret: Arc<str> = secret.into();
    let paced = o.rate > 0.0;
    let (prefix, schedule) = if paced {
        let interval = Duration::from_secs_f64(1.0 / o.rate);
        ("P", Some((interval, interval / o.machines as u32)))
    } else {
        ("S", None)
    };
    let mut shares: Vec<Vec<Machine>> = (0..o.connections).map(|_| Vec::new()).collect();
    for (index, serial) in serials.into_iter().enumerate() {
        shares[index % o.connections].push(Machine { index, serial, sent: 0, last_ms: 0 });
    }
    let run_for = Duration::from_secs_f64(o.seconds);
    let origin = Instant::now() + Duration::from_millis(200);
    let mut tasks = tokio::task::JoinSet::new();
    for mine in shares {
        tasks.spawn(drive(o.addr, secret.clone(), prefix, mine, schedule, origin, run_for));
    }
    let mut t = Tally::default();
    while let Some(r) = tasks.join_next().await {
        t.merge(r.map_err(|e| e.to_string())??);
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM health_metrics WHERE hospital_id = $1")
        .bind(hospital)
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())?;

    let window = t.last_answer.as_secs_f64().max(1e-3);
    let obx = t.aa * OBSERVATIONS.len() as u64;
    let (p50, p99, max) = (pct(t.latencies.clone(), 0.50), pct(t.latencies.clone(), 0.99), pct(t.latencies, 1.0));
    let how = if paced {
        format!("{} machines x {} msg/s", o.machines, o.rate)
    } else {
        format!("{} machines, back to back (saturation)", o.machines)
    };
    let mut out = format!(
        "bench hl7: {how}, {} OBX a message, {} MLLP connection{} for {:.0} s\n  \
         sent {}: {} AA, {} AE, {} AR, {} unanswered\n  \
         acknowledged (AA) {} messages ({obx} OBX) over {window:.1} s: {:.1} msg/s, {:.0} OBX/s; \
         ACK latency (from {}) p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms\n  \
         rows in health_metrics {stored}, messages acknowledged {}: {}",
        OBSERVATIONS.len(),
        o.connections,
        if o.connections == 1 { "" } else { "s" },
        o.seconds,
        t.sent,
        t.aa,
        t.ae,
        t.ar,
        t.failed,
        t.aa,
        t.aa as f64 / window,
        obx as f64 / window,
        if paced { "the time due" } else { "sending" },
        t.aa,
        if stored == t.aa as i64 { "equal" } else { "DIFFERENT" },
    );
    if let Some(first) = &t.first_refusal {
        out.push_str(&format!("\n  first answer other than AA: {first}"));
    }
    if t.aa == 0 {
        return Err(format!("{out}\nbench hl7: no message was acknowledged with AA"));
    }
    if stored != t.aa as i64 {
        return Err(format!("{out}\nbench hl7: the rows stored are not the messages acknowledged"));
    }
    Ok(out)
}
