//! `nephrocare bench connections`: many authenticated MQTT clients against a running
//! service, each its own identity, as in a unit: machines (device id and secret) and people
//! (a doctor's access token, client id `{user}-app`). Reports the time to connect them all,
//! then a reconnect storm: `storm` machines drop their connections abruptly (no DISCONNECT)
//! and all reconnect at once. `bench/run.sh connections` adds the server's RSS and
//! descriptors.
//!
//! The people are created in the bench's hospital (one doctor each, no password) and their
//! tokens signed with the service's own key (`NEPHROCARE_JWT_SECRET`): thousands of password
//! logins would measure argon2, not connections. With `--mqtt5` every client speaks MQTT 5
//! (rumqttc's MQTT 5 client).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nc_domain::{Role, TokenFamilyId, UserId};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::Config;

pub struct ConnectionsBench {
    pub host: String,
    pub port: u16,
    /// The hospital whose machines connect (provisioned as `simulate` does).
    pub hospital: String,
    pub machines: usize,
    pub people: usize,
    /// Machines that drop and reconnect at once, after all are connected.
    pub storm: usize,
    /// The clients speak MQTT 5 (default: 3.1.1).
    pub mqtt5: bool,
}

/// Connection attempts in flight at once (a client's own TCP and MQTT handshake).
const IN_FLIGHT: usize = 500;

struct Identity {
    client_id: String,
    user: String,
    password: String,
}

/// A connected client: its event loop runs in `task`; dropping it drops the socket (no
/// DISCONNECT: the server sees a lost link).
struct Connected {
    _client: Box<dyn std::any::Any + Send>,
    task: JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn run(config: &Config, b: ConnectionsBench) -> Result<String, String> {
    let db = crate::app::connect(config).await.map_err(|e| format!("{e:?}"))?;
    let fleet = crate::tools::simulate::provision(&db, &b.hospital, b.machines).await?;
    let hospital = fleet.first().map(|d| d.hospital).ok_or("no machines")?;
    let mut ids: Vec<Identity> = fleet
        .iter()
        .map(|d| Identity { client_id: d.id.to_string(), user: d.id.to_string(), password: d.secret.clone() })
        .collect();

    // People: doctors of the hospital, each with a token of their own.
    let secret = config.auth.jwt_secret.expose();
    if secret.is_empty() {
        return Err("NEPHROCARE_JWT_SECRET must be the service's, to sign the people's tokens".into());
    }
    let keys = nc_access::token::TokenKeys::new(secret.as_bytes(), 900);
    let users: Vec<Uuid> = (0..b.people).map(|_| Uuid::now_v7()).collect();
    let pool = db.get_postgres_connection_pool();
    for chunk in users.chunks(5000) {
        sqlx::query(
            "INSERT INTO users (id, hospital_id, email, password_hash, role, name, is_active, verified_at)
             SELECT u, $2, 'bench-' || u || '@bench.test', 'bench: no password', 'doctor', 'Bench doctor', true, now()
               FROM UNNEST($1::uuid[]) AS u",
        )
        .bind(chunk)
        .bind(hospital.as_uuid())
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
        // A login session each (a token must name one), with the user's id as its family.
        sqlx::query(
            "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at)
             SELECT gen_random_uuid(), u, u, sha256(u::text::bytea), now() + interval '1 day' FROM UNNEST($1::uuid[]) AS u",
        )
        .bind(chunk)
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
    }
    ids.extend(users.iter().map(|&u| Identity {
        client_id: format!("{u}-app"),
        user: u.to_string(),
        password: keys.issue(UserId(u), Role::Doctor, hospital, TokenFamilyId(u)),
    }));

    let total = ids.len();
    let (mut clients, secs, failed, why) = connect_all(&b, &ids).await;
    let mut report = format!(
        "bench connections (MQTT {}): {} of {total} clients ({} machines, {} people, each its own identity) connected in {secs:.1} s ({:.0}/s), {failed} failed after 5 tries{why}",
        if b.mqtt5 { "5" } else { "3.1.1" },
        clients.len(),
        b.machines,
        b.people,
        clients.len() as f64 / secs
    );
    println!("{report}");
    println!("bench connections: holding connections for 10 s");
    tokio::time::sleep(Duration::from_secs(10)).await;

    // The storm: machines lose their links (no DISCONNECT) and all come back at once.
    let storm = b.storm.min(b.machines).min(clients.len());
    drop(clients.drain(..storm));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (back, secs, failed, why) = connect_all(&b, &ids[..storm]).await;
    let line = format!(
        "bench connections: reconnect storm of {storm} machines: {} back in {secs:.1} s, {failed} failed after 5 tries{why}",
        back.len()
    );
    println!("{line}");
    report.push('\n');
    report.push_str(&line);
    drop(back);
    drop(clients);
    Ok(report)
}

/// A client's event loop `ev` (either protocol level's), polled in a task until it ends:
/// its first CONNACK (`connack`, a pattern) releases `permit` and says `true` on `up`; a
/// refused or failed attempt is counted in `reasons` and retried after a second, as a
/// machine does, 5 tries in all (then `false` on `up`).
macro_rules! client_loop {
    ($ev:ident, $connack:pat, $permit:ident, $up:ident, $failed:ident, $reasons:ident) => {
        tokio::spawn(async move {
            let mut permit = Some($permit);
            let mut up = Some($up);
            let mut attempts = 0;
            loop {
                match $ev.poll().await {
                    Ok($connack) => {
                        permit.take();
                        if let Some(u) = up.take() {
                            let _ = u.send(true);
                        }
                    }
                    Ok(_) => {}
                    Err(e) if up.is_some() => {
                        *$reasons.lock().expect("reasons").entry(e.to_string()).or_default() += 1;
                        attempts += 1;
                        if attempts < 5 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        $failed.fetch_add(1, Ordering::Relaxed);
                        let _ = up.take().map(|u| u.send(false));
                        return;
                    }
                    // Connected once, then lost: the bench measures connecting, not this.
                    Err(_) => return,
                }
            }
        })
    };
}

/// Why connection attempts were refused or failed, with how many each ("" when none were).
type Reasons = Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>;

fn reasons_text(reasons: &Reasons) -> String {
    let r = reasons.lock().expect("reasons");
    if r.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = r.iter().map(|(why, n)| format!("{n}: {why}")).collect();
    format!("; attempts refused, then retried: {}", parts.join("; "))
}

/// Connects `ids` (at most [`IN_FLIGHT`] handshakes at once; a refused attempt is retried
/// after a second, 5 tries in all); returns the connected clients, the seconds it took, how
/// many never connected, and why attempts were refused.
async fn connect_all(b: &ConnectionsBench, ids: &[Identity]) -> (Vec<Connected>, f64, u64, String) {
    let started = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    let reasons: Reasons = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut pending = Vec::with_capacity(ids.len());
    for id in ids {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (up_tx, up_rx) = tokio::sync::oneshot::channel::<bool>();
        let (failed, reasons) = (failed.clone(), reasons.clone());
        let (client, task): (Box<dyn std::any::Any + Send>, _) = if b.mqtt5 {
            use rumqttc::v5::mqttbytes::v5::Packet;
            use rumqttc::v5::{AsyncClient, Event, MqttOptions};
            let mut o = MqttOptions::new(&id.client_id, &b.host, b.port);
            o.set_credentials(&id.user, &id.password);
            o.set_keep_alive(Duration::from_secs(120));
            o.set_max_packet_size(Some(64 * 1024));
            // rumqttc's MQTT 5 client sizes a table by this before the CONNACK (65,536 slots,
            // ~10 MB a client by default): 10,000 of them would not fit in the generator.
            o.set_outgoing_inflight_upper_limit(8);
            let (client, mut ev) = AsyncClient::new(o, 4);
            (Box::new(client), client_loop!(ev, Event::Incoming(Packet::ConnAck(_)), permit, up_tx, failed, reasons))
        } else {
            use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
            let mut o = MqttOptions::new(&id.client_id, &b.host, b.port);
            o.set_credentials(&id.user, &id.password);
            o.set_keep_alive(Duration::from_secs(120));
            o.set_max_packet_size(64 * 1024, 64 * 1024);
            let (client, mut ev) = AsyncClient::new(o, 4);
            (Box::new(client), client_loop!(ev, Event::Incoming(Packet::ConnAck(_)), permit, up_tx, failed, reasons))
        };
        pending.push((Connected { _client: client, task }, up_rx));
    }
    let mut connected = Vec::with_capacity(pending.len());
    for (c, up) in pending {
        match tokio::time::timeout(Duration::from_secs(120).saturating_sub(started.elapsed()), up).await {
            Ok(Ok(true)) => connected.push(c),
            Ok(_) => drop(c),
            Err(_) => {
                failed.fetch_add(1, Ordering::Relaxed);
                *reasons.lock().expect("reasons").entry("no CONNACK within 120 s".into()).or_default() += 1;
                drop(c);
            }
        }
    }
    (connected, started.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed), reasons_text(&reasons))
}
