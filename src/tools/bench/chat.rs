//! `nephrocare bench chat`: conversations under load. `rooms` doctor-patient rooms, each
//! with its two participants connected (the patient over MQTT, the doctor over the chat
//! WebSocket); messages are sent at `rate` per second in all, alternately by patients (MQTT
//! `post`, QoS 1, PUBACK after commit) and doctors (WebSocket frames), and each is timed from
//! sending to its delivery to the other participant (the MQTT `messages` topic, the
//! WebSocket `message` event). Prints delivery counts and p50/p99 per direction.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    WsMessage,
>;

fn pct(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0
}

struct Pair {
    room: Uuid,
    doctor: Uuid,
    patient: Uuid,
}

/// Creates the hospital, the pairs and their rooms; returns the hospital and the pairs.
async fn seed(pool: &PgPool, rooms: usize) -> Result<(Uuid, Vec<Pair>), sqlx::Error> {
    let h = crate::tools::bench::insert_hospital(pool, "Bench chat").await?;
    let mut tx = pool.begin().await?;
    let mut pairs = Vec::new();
    for i in 0..rooms {
        let (doctor, patient, record, room) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for (id, role) in [(doctor, "doctor"), (patient, "patient")] {
            sqlx::query(
                "INSERT INTO users (id, hospital_id, email, password_hash, role, name, is_active, verified_at)
                 VALUES ($1, $2, $3, 'x', $4, $4, true, now())",
            )
            .bind(id)
            .bind(h)
            .bind(format!("{role}-{i}-{}@bench.test", id.simple()))
            .bind(role)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) VALUES (gen_random_uuid(), $1, $1, $2, now() + interval '1 day')")
                .bind(id).bind(nc_access::secret::digest(&Uuid::now_v7().to_string())).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO patients (id, hospital_id, user_id, patient_number, name, assigned_doctor_id) VALUES ($1, $2, $3, $4, 'Bench', $5)")
            .bind(record).bind(h).bind(patient).bind(format!("B-{i}")).bind(doctor).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO chat_rooms (id, hospital_id, kind, patient_id, conversation_key) VALUES ($1, $2, 'doctor-patient', $3, $4)")
            .bind(room).bind(h).bind(record).bind(format!("bench:{room}")).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO chat_room_participants (room_id, user_id) VALUES ($1, $2), ($1, $3)")
            .bind(room)
            .bind(doctor)
            .bind(patient)
            .execute(&mut *tx)
            .await?;
        pairs.push(Pair { room, doctor, patient });
    }
    tx.commit().await?;
    Ok((h, pairs))
}

/// Microseconds since `start`, carried in the message text.
fn stamp(start: Instant) -> String {
    format!("t:{}", start.elapsed().as_micros())
}

fn latency(start: Instant, text: &str) -> Option<u64> {
    let sent: u128 = text.strip_prefix("t:")?.parse().ok()?;
    Some((start.elapsed().as_micros().saturating_sub(sent)) as u64)
}

pub async fn chat(config: crate::Config, rooms: usize, rate: f64, seconds: f64) -> Result<String, String> {
    let e = |e: sqlx::Error| e.to_string();
    let pool = PgPool::connect(config.database.url.expose()).await.map_err(e)?;
    let (h, pairs) = seed(&pool, rooms).await.map_err(e)?;
    let (config, keys) = crate::tools::bench::in_process(config);
    let token = |id: Uuid, role| {
        keys.issue(nc_domain::UserId(id), role, nc_domain::HospitalId(h), nc_domain::TokenFamilyId(id))
    };
    // Far above the per-person limit, which is not what is measured here.
    let chat_settings = nc_chat::ChatSettings { messages_per_minute: 1_000_000 };
    let app = crate::App::new(config).with_chat_settings(chat_settings).start().await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mqtt_lat = Arc::new(Mutex::new(Vec::new()));
    let ws_lat = Arc::new(Mutex::new(Vec::new()));

    // Patients over MQTT: subscribed to their room's messages; they post there too.
    let mut patients: Vec<(AsyncClient, String)> = Vec::new();
    for p in &pairs {
        let mut o = MqttOptions::new(p.patient.to_string(), "127.0.0.1", app.mqtt_addr.port());
        o.set_credentials(p.patient.to_string(), token(p.patient, nc_domain::Role::Patient));
        o.set_keep_alive(Duration::from_secs(30));
        o.set_inflight(100);
        let (client, mut events) = AsyncClient::new(o, 256);
        let messages = format!("nc/v1/h/{h}/chat/{}/messages", p.room);
        client.subscribe(&messages, QoS::AtLeastOnce).await.map_err(|e| e.to_string())?;
        let lat = mqtt_lat.clone();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(m))) => {
                        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                        if v["message"]["senderRole"] == "doctor" {
                            if let Some(l) = v["message"]["message"].as_str().and_then(|t| latency(start, t)) {
                                lat.lock().expect("latencies").push(l);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        patients.push((client, format!("nc/v1/h/{h}/chat/{}/post", p.room)));
    }
    // Doctors over the chat WebSocket.
    let mut doctors: Vec<Arc<tokio::sync::Mutex<WsSink>>> = Vec::new();
    for p in &pairs {
        let url =
            format!("ws://{}/ws/chat/{}?token={}", app.http_addr, p.room, token(p.doctor, nc_domain::Role::Doctor));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("websocket: {e}"))?;
        let (tx, mut rx) = ws.split();
        let lat = ws_lat.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = rx.next().await {
                if let WsMessage::Text(t) = m {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["type"] == "message" && v["message"]["senderRole"] == "patient" {
                        if let Some(l) = v["message"]["message"].as_str().and_then(|t| latency(start, t)) {
                            lat.lock().expect("latencies").push(l);
                        }
                    }
                }
            }
        });
        doctors.push(Arc::new(tokio::sync::Mutex::new(tx)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The load: round-robin over rooms, alternating the direction.
    let total = (rate * seconds) as usize;
    let every = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut sent_mqtt, mut sent_ws) = (0usize, 0usize);
    for n in 0..total {
        ticker.tick().await;
        let i = (n / 2) % pairs.len();
        if n % 2 == 0 {
            let (client, topic) = &patients[i];
            let body = serde_json::json!({"v": 1, "clientMessageId": format!("m{n}"), "message": stamp(start)});
            if client.try_publish(topic, QoS::AtLeastOnce, false, body.to_string()).is_ok() {
                sent_mqtt += 1;
            }
        } else {
            let sink = doctors[i].clone();
            let frame =
                serde_json::json!({"type": "message", "clientMessageId": format!("m{n}"), "message": stamp(start)});
            tokio::spawn(async move {
                let _ = sink.lock().await.send(WsMessage::Text(frame.to_string().into())).await;
            });
            sent_ws += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.stop().await.map_err(|e| e.to_string())?;
    let mut to_ws = ws_lat.lock().expect("latencies").clone();
    let mut to_mqtt = mqtt_lat.lock().expect("latencies").clone();
    Ok(format!(
        "bench chat: {rooms} rooms, {} participants connected (patients MQTT, doctors WebSocket), {rate} msg/s offered for {seconds} s\n\
         \x20 patient (MQTT post, PUBACK after commit) -> doctor (WebSocket): {}/{} delivered, p50 {:.2} ms, p99 {:.2} ms\n\
         \x20 doctor (WebSocket frame) -> patient (MQTT messages):           {}/{} delivered, p50 {:.2} ms, p99 {:.2} ms",
        rooms * 2,
        to_ws.len(),
        sent_mqtt,
        pct(&mut to_ws, 0.5),
        pct(&mut to_ws, 0.99),
        to_mqtt.len(),
        sent_ws,
        pct(&mut to_mqtt, 0.5),
        pct(&mut to_mqtt, 0.99),
    ))
}
