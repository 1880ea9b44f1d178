//! The world most tests run in: two hospitals, their people and machines, logged in; and
//! the readings and timestamps the tests send.

use std::collections::HashMap;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use rumqttc::MqttOptions;
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::Executor;

use nc_domain::Role;

use super::{options, Client, EventClient, PatientLinks, RawClient, TestApp, TestDb};

pub const PASSWORD: &str = "EventClient-pass-2026";
pub const SECRET: &str = "device-secret-for-the-mqtt-tests-0123";

pub const DEVICES: [&str; 3] = ["d1", "d2", "d3"];
pub const USERS: [&str; 9] = ["adm", "doc", "doc2", "tec", "tec2", "pat", "pat2", "admB", "docB"];

/// Hospital A: admin `adm`; doctor `doc` and technician `tec` assigned to device `d1`;
/// unassigned doctor `doc2` and technician `tec2`; patient `pat` on `d1`, `pat2` on `d2`;
/// chat room `r1` between `doc` and `pat`. Hospital B: admin `admB`, doctor `docB` assigned
/// to its device `d3`. Every device's secret is [`SECRET`], every password [`PASSWORD`].
pub struct World {
    pub app: TestApp,
    pub ids: HashMap<&'static str, String>,
    pub access: HashMap<&'static str, String>,
    pub refresh: HashMap<&'static str, String>,
}

pub async fn exec(c: &mut sqlx::PgConnection, sql: &str) {
    c.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Ends every device assignment of the user `user_id` in SQL, as another instance or a
/// script would: no API call announces it, only the database's access event.
pub async fn end_assignments_in_sql(c: &mut sqlx::PgConnection, user_id: &str) {
    let sql =
        format!("UPDATE device_assignments SET ended_at = now() WHERE user_id = '{user_id}' AND ended_at IS NULL");
    exec(c, &sql).await;
}

pub fn hospital_of(who: &str) -> &'static str {
    if matches!(who, "d3" | "admB" | "docB") {
        "hb"
    } else {
        "ha"
    }
}

pub fn is_device(who: &str) -> bool {
    DEVICES.contains(&who)
}

/// The people, machines and ids of a [`World`].
pub type Seeded = (HashMap<&'static str, String>, HashMap<&'static str, String>, HashMap<&'static str, String>);

impl World {
    pub async fn new(app: TestApp) -> World {
        let (ids, access, refresh) = World::seed(&app.db, &app.client).await;
        World { app, ids, access, refresh }
    }

    /// Writes the world into `db` and logs everyone in through `client`'s service: the ids,
    /// the access tokens and the refresh tokens.
    pub async fn seed(db: &TestDb, client: &Client) -> Seeded {
        let mut c = db.sql().await;
        let password = nc_access::password::hash(PASSWORD.to_owned()).await.unwrap();
        let mut ids: HashMap<&'static str, String> = HashMap::new();
        ids.insert("ha", db.hospital("A", "mqtt-a").await.to_string());
        ids.insert("hb", db.hospital("B", "mqtt-b").await.to_string());
        let uuid = |ids: &HashMap<&'static str, String>, k: &str| uuid::Uuid::parse_str(&ids[k]).unwrap();
        for k in USERS {
            let role = match k.trim_end_matches(['2', 'B']) {
                "adm" => Role::Admin,
                "doc" => Role::Doctor,
                "tec" => Role::Technician,
                "pat" => Role::Patient,
                other => unreachable!("{other}"),
            };
            let hospital = uuid(&ids, hospital_of(k));
            let user = db.person(hospital, &format!("{k}@mqtt.test"), role, k, None, &password).await;
            ids.insert(k, user.to_string());
        }
        for d in DEVICES {
            let hospital = uuid(&ids, hospital_of(d));
            let device = db.machine(hospital, &format!("SN-{d}"), &format!("Machine {d}"), None, SECRET).await;
            ids.insert(d, device.to_string());
        }
        for (d, u) in [("d1", "doc"), ("d1", "tec"), ("d3", "docB")] {
            db.assign(uuid(&ids, d), uuid(&ids, u)).await;
        }
        for (p, u, d) in [("p1", "pat", "d1"), ("p2", "pat2", "d2")] {
            let links = PatientLinks { account: Some(uuid(&ids, u)), device: Some(uuid(&ids, d)), doctor: None };
            let patient = db.patient(uuid(&ids, "ha"), p, &format!("Patient {p}"), links).await;
            ids.insert(p, patient.to_string());
        }
        ids.insert("r1", uuid::Uuid::now_v7().to_string());
        let id = |k: &str| ids[k].clone();
        exec(
            &mut c,
            &format!(
                "INSERT INTO chat_rooms (id, hospital_id, kind, device_id, patient_id) VALUES ('{}', '{}', 'doctor-patient', '{}', '{}');
                 INSERT INTO chat_room_participants (room_id, user_id) VALUES ('{0}', '{}'), ('{0}', '{}')",
                id("r1"),
                id("ha"),
                id("d1"),
                id("p1"),
                id("doc"),
                id("pat")
            ),
        )
        .await;

        let mut access = HashMap::new();
        let mut refresh = HashMap::new();
        for k in USERS {
            let r =
                client.post("/api/auth/login", json!({"email": format!("{k}@mqtt.test"), "password": PASSWORD})).await;
            assert_eq!(r.status, 200, "login {k}: {}", r.text);
            access.insert(k, r.body["accessToken"].as_str().unwrap().to_owned());
            refresh.insert(k, r.body["refreshToken"].as_str().unwrap().to_owned());
        }
        (ids, access, refresh)
    }

    pub fn id(&self, k: &str) -> &str {
        &self.ids[k]
    }

    /// Replaces every `{key}` with its id, and `{^key}` with its id in upper case.
    pub fn fill(&self, template: &str) -> String {
        let mut s = template.to_owned();
        for (k, v) in &self.ids {
            s = s.replace(&format!("{{{k}}}"), v).replace(&format!("{{^{k}}}"), &v.to_uppercase());
        }
        s
    }

    /// A device topic of the world: `topic("d1", "telemetry")`.
    pub fn topic(&self, device: &str, channel: &str) -> String {
        format!("nc/v1/h/{}/d/{}/{channel}", self.id(hospital_of(device)), self.id(device))
    }

    pub fn mqtt(&self) -> SocketAddr {
        self.app.running().mqtt_addr
    }

    pub fn ws(&self) -> SocketAddr {
        self.app.running().mqtt_ws_addr
    }

    pub fn as_user(&self, who: &str) -> Client {
        self.app.client.with_token(&self.access[who])
    }

    /// (client id, username, password) for `who`; a person's client id gets `suffix`.
    pub fn credentials(&self, who: &str, suffix: &str) -> (String, String, String) {
        let id = self.id(who).to_owned();
        if is_device(who) {
            (id.clone(), id, SECRET.to_owned())
        } else {
            (format!("{id}{suffix}"), id, self.access[who].clone())
        }
    }

    pub fn options(&self, who: &str, suffix: &str) -> MqttOptions {
        let (client_id, user, pass) = self.credentials(who, suffix);
        options(self.mqtt(), &client_id, &user, &pass)
    }

    /// `who`, connected with rumqttc over TCP.
    pub async fn connect(&self, who: &str, suffix: &str) -> EventClient {
        EventClient::connect(self.options(who, suffix), false).await.unwrap_or_else(|e| panic!("{who} connects: {e}"))
    }

    /// `who`, connected with raw packets over TCP.
    pub async fn raw(&self, who: &str, suffix: &str) -> RawClient {
        let (client_id, user, pass) = self.credentials(who, suffix);
        RawClient::connect(self.mqtt(), &client_id, Some((&user, &pass)))
            .await
            .unwrap_or_else(|code| panic!("{who} refused: {code:?}"))
    }

    /// The rows `sql` selects, its `$1`, `$2`, … bound to the ids of `keys` (as text: cast
    /// them, `$1::uuid`).
    pub async fn rows<T>(&self, sql: &str, keys: &[&str]) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut q = sqlx::query_as(sql);
        for k in keys {
            q = q.bind(self.id(k));
        }
        q.fetch_all(&mut self.app.db.sql().await).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first row `sql` selects ([`World::rows`]); there must be one.
    pub async fn row<T>(&self, sql: &str, keys: &[&str]) -> T
    where
        T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        self.rows(sql, keys).await.into_iter().next().unwrap_or_else(|| panic!("no row: {sql}"))
    }

    /// The one value `sql` selects ([`World::rows`]).
    pub async fn scalar<T>(&self, sql: &str, keys: &[&str]) -> T
    where
        (T,): for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        self.row::<(T,)>(sql, keys).await.0
    }

    pub async fn health_metrics(&self, device: &str) -> i64 {
        self.scalar("SELECT count(*) FROM health_metrics WHERE device_id = $1::uuid", &[device]).await
    }

    pub async fn alerts(&self, device: &str) -> i64 {
        self.scalar("SELECT count(*) FROM alerts WHERE device_id = $1::uuid", &[device]).await
    }

    pub async fn presence(&self, device: &str) -> (bool, Option<DateTime<Utc>>) {
        self.row("SELECT online, last_seen FROM devices WHERE id = $1::uuid", &[device]).await
    }
}

/// A valid reading.
pub fn reading(seq: i64) -> String {
    reading_at(seq, &now())
}

/// A valid reading taken at `ts`.
pub fn reading_at(seq: i64, ts: &str) -> String {
    json!({"v": 1, "seq": seq, "ts": ts, "systemStatus": "normal", "heartRate": 72, "oxygenSaturation": 97}).to_string()
}

/// A valid reading naming the patient being treated.
pub fn reading_for(seq: i64, patient: &str) -> String {
    json!({"v": 1, "seq": seq, "ts": now(), "patientId": patient, "systemStatus": "normal", "heartRate": 72})
        .to_string()
}

pub fn now() -> String {
    ago(0)
}

/// The time `ms` milliseconds ago, written as the tests write timestamps.
pub fn ago(ms: i64) -> String {
    (Utc::now() - chrono::Duration::milliseconds(ms)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether every change of `device`'s alerts has been handed to the broker (its event row,
/// the outbox, marked published), and there is at least one.
pub async fn alerts_published(w: &World, device: &str) -> bool {
    let mut c = w.app.db.sql().await;
    let (all, unpublished): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE e.published_at IS NULL)
           FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE a.device_id = $1::uuid",
    )
    .bind(w.id(device))
    .fetch_one(&mut c)
    .await
    .unwrap();
    all > 0 && unpublished == 0
}

/// tec hands device d1 over to tec2 (a temporary grant of an hour); the grant's id.
pub async fn grant(w: &World) -> String {
    hand_over(&w.as_user("tec"), &w.ids).await
}

/// `tec` (a client logged in as tec, on any node) hands d1 over to tec2 for an hour, with
/// the ids of a seeded world; the grant's id.
pub async fn hand_over(tec: &Client, ids: &HashMap<&'static str, String>) -> String {
    let grant = json!({"deviceId": ids["d1"], "technicianId": ids["tec2"], "durationMinutes": 60});
    let r = tec.post("/api/devices/temporary-access", grant).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}
