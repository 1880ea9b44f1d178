//! `nephrocare bench ingest`: a lean fleet for the end-to-end durable ingest benchmark.
//!
//! A full MQTT client per machine (rumqttc's event loop, a JSON encoder per reading) costs
//! the load generator as much CPU as the service on a 2-core machine, and then the figure
//! measures the generator. Here a few writer tasks drive every connection: each reading is
//! a PUBLISH written from pre-encoded bytes (fixed header, topic and the constant part of
//! the JSON), with only `seq`, `ts` and the packet id filled in; one small reader per
//! connection takes PUBACKs and records publish→PUBACK latency. The generator's own CPU
//! and, with `--server-pid`, the service's CPU over the same measured window are reported,
//! so the result is the service's cost per acknowledged reading. With `--mqtt5` the same
//! fleet speaks MQTT 5 (CONNECT level 5, PUBLISH with an empty property list, PUBACKs read
//! with their reason code): the figures of both levels side by side.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chrono::{SecondsFormat, Utc};
use rumqttc::mqttbytes::v4::{Connect, Login, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tools::simulate::SimDevice;

/// Packet ids cycle through this many values: a connection never has more in flight.
const SLOTS: u16 = 4096;

/// What one connection shares between its writer and its reader.
struct Link {
    /// Send time per packet id slot, in microseconds since the start (0: none pending).
    sent_at: Vec<AtomicU64>,
    sent: AtomicU64,
    acked: AtomicU64,
}

pub struct IngestBench {
    pub host: String,
    pub port: u16,
    pub rate: f64,
    pub seconds: f64,
    pub tasks: usize,
    pub server_pid: Option<u32>,
    /// Speak MQTT 5 instead of 3.1.1.
    pub mqtt5: bool,
}

fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A QoS 1 PUBLISH's fixed and variable header (MQTT 5: with an empty property list).
fn publish_header(buf: &mut BytesMut, topic: &str, pkid: u16, payload_len: usize, v5: bool) {
    let mut remaining = 2 + topic.len() + 2 + usize::from(v5) + payload_len;
    buf.extend_from_slice(&[0x32]);
    loop {
        let mut byte = (remaining % 128) as u8;
        remaining /= 128;
        if remaining > 0 {
            byte |= 0x80;
        }
        buf.extend_from_slice(&[byte]);
        if remaining == 0 {
            break;
        }
    }
    buf.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    buf.extend_from_slice(topic.as_bytes());
    buf.extend_from_slice(&pkid.to_be_bytes());
    if v5 {
        buf.extend_from_slice(&[0]);
    }
}

/// A PUBACK read from `buf` (its packet id; MQTT 5: only a success), `Ok(None)` for another
/// packet, `Err(true)` when more bytes are needed.
fn read_puback(buf: &mut BytesMut, v5: bool) -> Result<Option<u16>, bool> {
    if v5 {
        use rumqttc::v5::mqttbytes::v5::{Packet as P5, PubAckReason};
        return match P5::read(buf, Some(1 << 20)) {
            Ok(P5::PubAck(a)) if a.reason == PubAckReason::Success => Ok(Some(a.pkid)),
            Ok(_) => Ok(None),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Err(true),
            Err(_) => Err(false),
        };
    }
    match Packet::read(buf, 1 << 20) {
        Ok(Packet::PubAck(a)) => Ok(Some(a.pkid)),
        Ok(_) => Ok(None),
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Err(true),
        Err(_) => Err(false),
    }
}

async fn connect(d: &SimDevice, host: &str, port: u16, v5: bool) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    if v5 {
        use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet as P5};
        let mut connect = rumqttc::v5::mqttbytes::v5::Connect {
            keep_alive: 120,
            client_id: d.id.to_string(),
            clean_start: true,
            properties: None,
        };
        connect.keep_alive = 120;
        let login = rumqttc::v5::mqttbytes::v5::Login::new(d.id.to_string(), d.secret.clone());
        let mut buf = BytesMut::new();
        P5::Connect(connect, None, Some(login)).write(&mut buf, None).map_err(|e| e.to_string())?;
        stream.write_all(&buf).await.map_err(|e| e.to_string())?;
        let mut answer = BytesMut::new();
        loop {
            match P5::read(&mut answer, None) {
                Ok(P5::ConnAck(a)) if a.code == ConnectReturnCode::Success => return Ok(stream),
                Ok(p) => return Err(format!("{}: refused: {p:?}", d.id)),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                    if stream.read_buf(&mut answer).await.map_err(|e| e.to_string())? == 0 {
                        return Err(format!("{}: closed before CONNACK", d.id));
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let mut connect = Connect::new(d.id.to_string());
    connect.keep_alive = 120;
    connect.clean_session = true;
    connect.login = Some(Login::new(d.id.to_string(), d.secret.clone()));
    let mut buf = BytesMut::new();
    connect.write(&mut buf).map_err(|e| e.to_string())?;
    stream.write_all(&buf).await.map_err(|e| e.to_string())?;
    let mut answer = BytesMut::new();
    loop {
        match Packet::read(&mut answer, 1024) {
            Ok(Packet::ConnAck(a)) if a.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success => {
                return Ok(stream)
            }
            Ok(p) => return Err(format!("{}: refused: {p:?}", d.id)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                if stream.read_buf(&mut answer).await.map_err(|e| e.to_string())? == 0 {
                    return Err(format!("{}: closed before CONNACK", d.id));
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads PUBACKs until the connection closes; returns the latencies (µs) of readings sent
/// after `warm_up`.
async fn read_acks(
    mut rx: tokio::net::tcp::OwnedReadHalf,
    link: Arc<Link>,
    origin: Instant,
    warm_up: u64,
    v5: bool,
) -> Vec<u32> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut latencies = Vec::new();
    loop {
        match read_puback(&mut buf, v5) {
            Ok(Some(pkid)) => {
                let at = link.sent_at[(pkid - 1) as usize].swap(0, Ordering::AcqRel);
                if at != 0 {
                    link.acked.fetch_add(1, Ordering::Relaxed);
                    if at >= warm_up {
                        let now = origin.elapsed().as_micros() as u64;
                        latencies.push(now.saturating_sub(at).min(u32::MAX as u64) as u32);
                    }
                }
            }
            Ok(None) => {}
            Err(true) => match rx.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return latencies,
                Ok(_) => {}
            },
            Err(false) => return latencies,
        }
    }
}

fn pct(v: &[u32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0
}

pub async fn run(fleet: Vec<SimDevice>, o: IngestBench) -> Result<String, String> {
    let n = fleet.len();
    // Connect (not measured), a few at a time, and start each patient's treatment.
    let mut streams = Vec::with_capacity(n);
    for chunk in fleet.chunks(50) {
        let connected =
            futures_util::future::join_all(chunk.iter().map(|d| connect(d, &o.host, o.port, o.mqtt5))).await;
        for (d, s) in chunk.iter().zip(connected) {
            streams.push((d.clone(), s?));
        }
    }
    for (d, s) in &mut streams {
        let start = format!(
            r#"{{"v":1,"event":"start","ts":"{}","patientId":"{}","expectedIntervalMs":{}}}"#,
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            d.patient,
            (1000.0 / o.rate).round().max(10.0) as i64
        );
        let topic = format!("nc/v1/h/{}/d/{}/session", d.hospital, d.id);
        let mut buf = BytesMut::new();
        publish_header(&mut buf, &topic, SLOTS + 1, start.len(), o.mqtt5);
        buf.extend_from_slice(start.as_bytes());
        s.write_all(&buf).await.map_err(|e| e.to_string())?;
    }
    for (d, s) in &mut streams {
        let mut answer = BytesMut::new();
        loop {
            match read_puback(&mut answer, o.mqtt5) {
                Ok(Some(pkid)) if pkid == SLOTS + 1 => break,
                Ok(_) => {}
                Err(true) => {
                    if s.read_buf(&mut answer).await.map_err(|e| e.to_string())? == 0 {
                        return Err(format!("{}: closed before the session was acknowledged", d.id));
                    }
                }
                Err(false) => return Err(format!("{}: unreadable answer to the session start", d.id)),
            }
        }
    }

    let origin = Instant::now();
    let warm_up = 1_000_000u64;
    let mut readers = tokio::task::JoinSet::new();
    let mut writers: Vec<Vec<(SimDevice, tokio::net::tcp::OwnedWriteHalf, Arc<Link>)>> =
        (0..o.tasks.max(1)).map(|_| Vec::new()).collect();
    for (i, (d, s)) in streams.into_iter().enumerate() {
        let (rx, tx) = s.into_split();
        let link = Arc::new(Link {
            sent_at: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
        });
        readers.spawn(read_acks(rx, link.clone(), origin, warm_up, o.mqtt5));
        writers[i % o.tasks.max(1)].push((d, tx, link));
    }
    let links: Vec<Arc<Link>> = writers.iter().flatten().map(|(_, _, l)| l.clone()).collect();
    let (self_cpu0, server_cpu0) =
        (cpu_seconds("self").unwrap_or(0.0), o.server_pid.and_then(|p| cpu_seconds(&p.to_string())));
    let skipped = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_secs_f64(o.seconds);
    let interval = Duration::from_secs_f64(1.0 / o.rate);
    let mut jobs = tokio::task::JoinSet::new();
    let tasks_n = writers.len();
    let v5 = o.mqtt5;
    for (w, mut conns) in writers.into_iter().enumerate() {
        let (skipped, tasks) = (skipped.clone(), tasks_n);
        jobs.spawn(async move {
            // Each connection publishes at its own fixed times, spread over the interval.
            let per = conns.len().max(1);
            let step = interval / per as u32;
            let topics: Vec<String> =
                conns.iter().map(|(d, _, _)| format!("nc/v1/h/{}/d/{}/telemetry", d.hospital, d.id)).collect();
            let tail = r#","systemStatus":"normal","heartRate":72.5,"bloodPressure":121.0,"diastolicPressure":79.0,"oxygenSaturation":97.0,"flowRate":350.0,"venousPressure":140.0,"arterialPressure":-150.0}"#;
            let mut seq = vec![0u64; per];
            let mut buf = BytesMut::with_capacity(512);
            let mut payload = Vec::with_capacity(400);
            let offset = step * w as u32 / tasks as u32;
            let mut ts = String::new();
            let mut ts_ms = 0i64;
            for j in 0u64.. {
                let (cycle, k) = (j / per as u64, (j % per as u64) as usize);
                let due = origin + interval * cycle as u32 + step * k as u32 + offset;
                if due.duration_since(origin) >= run_for {
                    break;
                }
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let now = Utc::now();
                if now.timestamp_millis() != ts_ms {
                    ts_ms = now.timestamp_millis();
                    ts = now.to_rfc3339_opts(SecondsFormat::Millis, true);
                }
                let (_, tx, link) = &mut conns[k];
                let s = seq[k];
                let pkid = (s % SLOTS as u64) as u16 + 1;
                let slot = &link.sent_at[(pkid - 1) as usize];
                if slot.load(Ordering::Acquire) != 0 {
                    // Still in flight after SLOTS readings: the service is far behind.
                    skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                seq[k] += 1;
                payload.clear();
                let _ = write!(payload, r#"{{"v":1,"seq":{s},"ts":"{ts}""#);
                payload.extend_from_slice(tail.as_bytes());
                buf.clear();
                publish_header(&mut buf, &topics[k], pkid, payload.len(), v5);
                buf.extend_from_slice(&payload);
                slot.store((origin.elapsed().as_micros() as u64).max(1), Ordering::Release);
                link.sent.fetch_add(1, Ordering::Relaxed);
                if tx.write_all(&buf).await.is_err() {
                    return Err("a connection closed while publishing".to_owned());
                }
            }
            Ok::<_, String>(conns)
        });
    }
    let mut held = Vec::new();
    while let Some(r) = jobs.join_next().await {
        held.push(r.map_err(|e| e.to_string())??);
    }
    let published = origin.elapsed().as_secs_f64();
    // Give what is in flight time to be acknowledged, then close.
    let sent: u64 = links.iter().map(|l| l.sent.load(Ordering::Relaxed)).sum();
    let drain = Instant::now();
    while links.iter().map(|l| l.acked.load(Ordering::Relaxed)).sum::<u64>() < sent
        && drain.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = origin.elapsed().as_secs_f64();
    let self_cpu = cpu_seconds("self").unwrap_or(0.0) - self_cpu0;
    let server_cpu = o.server_pid.and_then(|p| cpu_seconds(&p.to_string())).zip(server_cpu0).map(|(b, a)| b - a);
    for conns in held {
        for (_, mut tx, _) in conns {
            let _ = tx.write_all(&[0xE0, 0x00]).await;
        }
    }
    let mut latencies = Vec::new();
    while let Some(r) = readers.join_next().await {
        latencies.extend(r.map_err(|e| e.to_string())?);
    }
    latencies.sort_unstable();
    let acked: u64 = links.iter().map(|l| l.acked.load(Ordering::Relaxed)).sum();
    let mut out = format!(
        "bench ingest (MQTT {}): {n} devices x {} Hz for {:.0} s: {sent} sent, {acked} acknowledged ({:.0}/s over {wall:.1} s), \
         {} not sent (in flight too long), publish->PUBACK p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
         generator CPU {:.0}% of a core",
        if o.mqtt5 { "5" } else { "3.1.1" },
        o.rate,
        published,
        acked as f64 / wall,
        skipped.load(Ordering::Relaxed),
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0),
        self_cpu * 100.0 / wall,
    );
    if let Some(cpu) = server_cpu {
        out.push_str(&format!(
            "; server CPU {:.0}% of a core, {:.1} µs per acknowledged reading",
            cpu * 100.0 / wall,
            cpu * 1e6 / acked.max(1) as f64
        ));
    }
    Ok(out)
}
